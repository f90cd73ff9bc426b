//! `keycloak-sync backfill`: Keycloak's stored events (`…/events`, `…/admin-events`)
//! through the apply path, for events lost before keycloak-sync ran or during an
//! outage.
//!
//! Pages are read oldest first and each is applied in one transaction; the offset
//! reached is then saved in Postgres, so an interrupted run resumes where it stopped and
//! a page applied twice (crash between apply and save) only meets the inbox. Windows are
//! asked of Keycloak by whole days, widened by one on each side (older versions read
//! only `yyyy-MM-dd`, in the server's time zone), and cut exactly here.

use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::core::event::{parse_message, Event, MAX_EPOCH_MS};
use crate::core::ids::RealmName;
use crate::keycloak::{AdminClient, EventStream, KeycloakError};
use crate::store::{ApplyError, BackfillWindow, Store, Tally};
use crate::telemetry::progress::{Progress, Unit};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Epoch ms, inclusive.
    pub since_ms: i64,
    /// Epoch ms, exclusive; `None`: up to now and whatever arrives while reading.
    pub until_ms: Option<i64>,
    pub streams: Vec<EventStream>,
    /// Start the window over instead of resuming (the inbox makes this harmless).
    pub restart: bool,
    pub max_message_bytes: usize,
    pub progress: bool,
}

/// What backfilling one realm's list did.
#[derive(Debug, Clone)]
pub struct BackfillReport {
    pub realm: RealmName,
    pub stream: EventStream,
    /// The offset the run started from (non-zero: resumed).
    pub resumed_from: u64,
    pub fetched: u64,
    /// Fetched, but outside the window (Keycloak is asked for whole days).
    pub outside_window: u64,
    pub tally: Tally,
    /// Events rejected by the parser or the database (each logged with its position).
    pub rejected: u64,
    pub elapsed: Duration,
}

impl fmt::Display for BackfillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backfill {} {}: from offset {}, fetched {}, outside the window {}, applied {}, \
             duplicates {}, ignored {}, rejected {} ({:.1}s)",
            self.realm,
            self.stream,
            self.resumed_from,
            self.fetched,
            self.outside_window,
            self.tally.applied,
            self.tally.duplicates,
            self.tally.ignored,
            self.rejected,
            self.elapsed.as_secs_f64()
        )
    }
}

#[derive(Debug, Error)]
pub enum BackfillError {
    #[error("backfill {realm} {stream} stopped at offset {offset} (the next run resumes there): {source}")]
    Keycloak {
        realm: RealmName,
        stream: EventStream,
        offset: u64,
        source: KeycloakError,
    },
    #[error("backfill {realm} {stream} stopped at offset {offset} (the next run resumes there): {source}")]
    Store {
        realm: RealmName,
        stream: EventStream,
        offset: u64,
        source: ApplyError,
    },
}

/// Backfills every configured realm and list, one after the other.
pub async fn backfill_all(
    store: &Store,
    keycloak: &AdminClient,
    options: &BackfillOptions,
) -> Vec<Result<BackfillReport, BackfillError>> {
    let mut results = Vec::new();
    for realm in keycloak.realms() {
        for stream in &options.streams {
            results.push(backfill(store, keycloak, realm, *stream, options).await);
        }
    }
    results
}

/// Parses and applies one page of Keycloak's list, counting into `report`; `offset` is
/// the page's position in the list, for the log.
async fn apply_page(
    store: &Store,
    page: &[serde_json::Value],
    options: &BackfillOptions,
    report: &mut BackfillReport,
    offset: u64,
) -> Result<(), ApplyError> {
    let (realm, stream) = (report.realm.to_string(), report.stream.path());
    let mut events = Vec::with_capacity(page.len());
    for (i, item) in page.iter().enumerate() {
        match read_event(item, options) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => report.outside_window += 1,
            Err(reason) => {
                report.rejected += 1;
                tracing::warn!(realm, stream, offset = offset + i as u64, %reason, "stored event not applied");
            }
        }
    }
    let outcomes = store.apply_isolating(&events).await?;
    for (event, outcome) in events.iter().zip(outcomes) {
        match outcome {
            Ok(outcome) => report.tally.add(outcome),
            Err(reason) => {
                report.rejected += 1;
                tracing::warn!(realm, stream, event_id = %event.id, %reason, "stored event not applied");
            }
        }
    }
    Ok(())
}

pub async fn backfill(
    store: &Store,
    keycloak: &AdminClient,
    realm: &RealmName,
    stream: EventStream,
    options: &BackfillOptions,
) -> Result<BackfillReport, BackfillError> {
    let started = Instant::now();
    let window = BackfillWindow {
        realm: realm.clone(),
        stream,
        since_ms: options.since_ms,
        until_ms: options.until_ms,
    };
    let store_error = |offset, source: ApplyError| BackfillError::Store {
        realm: realm.clone(),
        stream,
        offset,
        source,
    };
    let mut first = if options.restart {
        0
    } else {
        store
            .backfill_position(&window)
            .await
            .map_err(|e| store_error(0, e.into()))?
    };
    let mut report = BackfillReport {
        realm: realm.clone(),
        stream,
        resumed_from: first,
        fetched: 0,
        outside_window: 0,
        tally: Tally::default(),
        rejected: 0,
        elapsed: Duration::ZERO,
    };
    let date_from = day(options.since_ms - DAY_MS);
    let date_to = options.until_ms.map(|until| day(until + DAY_MS));
    let bar = Progress::new(
        options.progress,
        format!("{realm} {}", stream.path()),
        None,
        Unit::Items("events"),
    );
    let max = keycloak.page_size();
    loop {
        let page = keycloak
            .events(realm, stream, &date_from, date_to.as_deref(), first, max)
            .await
            .map_err(|source| BackfillError::Keycloak {
                realm: realm.clone(),
                stream,
                offset: first,
                source,
            })?;
        apply_page(store, &page, options, &mut report, first)
            .await
            .map_err(|e| store_error(first, e))?;
        let finished = page.len() < max as usize;
        first += page.len() as u64;
        report.fetched += page.len() as u64;
        store
            .save_backfill_position(&window, first, page.len() as u64, finished)
            .await
            .map_err(|e| store_error(first, e.into()))?;
        bar.inc(page.len() as u64);
        if finished {
            break;
        }
    }
    bar.finish();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A stored event as an [`Event`], or `None` if it lies outside the window.
fn read_event(
    item: &serde_json::Value,
    options: &BackfillOptions,
) -> Result<Option<Event>, String> {
    let bytes = serde_json::to_vec(item).map_err(|e| e.to_string())?;
    let event = parse_message(&bytes, options.max_message_bytes).map_err(|e| e.to_string())?;
    let inside =
        event.time >= options.since_ms && options.until_ms.is_none_or(|until| event.time < until);
    Ok(inside.then_some(event))
}

/// `yyyy-MM-dd` (UTC) of an epoch-ms instant, clamped to the representable range.
fn day(ms: i64) -> String {
    let ms = ms.clamp(0, MAX_EPOCH_MS);
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.date()
        .format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_else(|_| "1970-01-01".to_string())
}

/// Reads `--since`/`--until`: epoch milliseconds, a `yyyy-MM-dd` day (UTC midnight) or an
/// RFC 3339 instant.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .filter(|ms| *ms <= MAX_EPOCH_MS)
            .ok_or_else(|| format!("{text:?} is out of range for epoch milliseconds"));
    }
    let ms = |at: OffsetDateTime| (at.unix_timestamp_nanos() / 1_000_000) as i64;
    if let Ok(date) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Ok(ms(date.midnight().assume_utc()));
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(ms(at));
    }
    Err(format!(
        "{text:?} is not epoch milliseconds, a yyyy-MM-dd date or an RFC 3339 time"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_three_notations() {
        assert_eq!(parse_instant("1732270000123"), Ok(1_732_270_000_123));
        assert_eq!(parse_instant("2024-11-22"), Ok(1_732_233_600_000));
        assert_eq!(
            parse_instant("2024-11-22T10:00:00+01:00"),
            Ok(1_732_266_000_000)
        );
        let error = parse_instant("last tuesday").unwrap_err();
        assert!(error.contains("last tuesday"), "{error}");
        assert!(parse_instant("99999999999999999999").is_err());
    }

    #[test]
    fn days_asked_of_keycloak() {
        assert_eq!(day(1_732_233_600_000), "2024-11-22");
        assert_eq!(day(1_732_233_600_000 - 1), "2024-11-21");
        assert_eq!(day(-5), "1970-01-01");
    }
}
