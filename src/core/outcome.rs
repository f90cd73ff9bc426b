//! What became of each event of a batch, and the counts reports print.

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Applied,
    Ignored,
    /// Already in the inbox (or earlier in the same batch): changed nothing.
    Duplicate,
}

impl Outcome {
    /// What a new (not duplicate) event's inbox entry records.
    pub fn of_new(event: &crate::core::event::Event) -> Outcome {
        if event.action.is_ignored() {
            Outcome::Ignored
        } else {
            Outcome::Applied
        }
    }

    /// `processed_events.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// Outcome counts of one or more batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub applied: u64,
    pub ignored: u64,
    pub duplicates: u64,
}

impl Tally {
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Ignored => self.ignored += 1,
            Outcome::Duplicate => self.duplicates += 1,
        }
    }
}
