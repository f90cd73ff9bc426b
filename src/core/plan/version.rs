//! Versions: the position of a write, and the commutative merges built on it.

use crate::core::event::Event;

/// Position of a write: `(time, event id)`, encoded so that byte order is that order.
///
/// The leading digit ranks whole sources: placeholders (`0`, values a LOGIN guesses
/// for a user it has never seen) lose to every real profile change (`1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(String);

impl Version {
    pub fn of(event: &Event) -> Self {
        Self::of_event('1', event)
    }

    pub fn placeholder(event: &Event) -> Self {
        Self::of_event('0', event)
    }

    fn of_event(rank: char, event: &Event) -> Self {
        Self(format!("{rank}{:015}:{}", event.time, event.id))
    }

    /// Just after `base` (a stored version) and before anything newer than it: where
    /// the profile read from the Admin API in answer to the event at `base` goes.
    pub fn read_after(base: &Version) -> Self {
        Version(format!("{} read", base.0))
    }

    /// What the Admin API showed at `at_ms` (epoch ms), e.g. during a reconcile.
    pub fn observed(at_ms: i64, source: &str) -> Self {
        Version(format!("1{at_ms:015}:{source}"))
    }

    /// A version as the database stored it.
    pub fn stored(text: String) -> Self {
        Version(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// Keeps the value with the highest version.
pub(super) fn last_writer<T>(slot: &mut Option<Versioned<T>>, value: T, version: &Version) {
    if slot
        .as_ref()
        .is_none_or(|current| *version > current.version)
    {
        *slot = Some(Versioned {
            value,
            version: version.clone(),
        });
    }
}

/// Keeps the value with the lowest version.
pub(super) fn first_writer<T>(slot: &mut Option<Versioned<T>>, value: T, version: &Version) {
    if slot
        .as_ref()
        .is_none_or(|current| *version < current.version)
    {
        *slot = Some(Versioned {
            value,
            version: version.clone(),
        });
    }
}

pub(super) fn min_opt(slot: &mut Option<i64>, value: i64) {
    *slot = Some(slot.map_or(value, |current| current.min(value)));
}

pub(super) fn max_opt(slot: &mut Option<i64>, value: i64) {
    *slot = Some(slot.map_or(value, |current| current.max(value)));
}
