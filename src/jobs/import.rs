//! `vault import`: the tokens an application already keeps, moved into the vault through
//! the apply path, page by page (users whole, in byte order), resumable from the last page
//! applied, each page verified by opening what was written and comparing digests with the
//! source. Tokens are never printed; rows are reported by their slot.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::core::import::{digest, newest_per_slot, read_row, slot_of, token_event, SourceToken};
use crate::core::outcome::Outcome;
use crate::core::plan::Version;
use crate::store::import::{ImportCheckpoint, SourceReader};
use crate::store::vault::Vault;
use crate::store::Store;
use crate::telemetry::progress::{Progress, Unit};
use crate::vault::{KeyRing, LegacyKey};

pub struct ImportOptions {
    /// The application's query (columns named as `vault import --help` says).
    pub query: String,
    /// Identifies the run for resuming: a digest of the query, the source and the format.
    pub import_id: String,
    pub page_size: i64,
    pub dry_run: bool,
    /// Start from the beginning even if an earlier run of the same import stopped midway.
    pub restart: bool,
    /// Stop after this many pages, as an interruption would (the next run resumes).
    pub max_pages: Option<u64>,
    pub legacy: Option<LegacyKey>,
    pub progress: bool,
}

/// What an import did, cumulative over resumed runs.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportReport {
    pub read: u64,
    pub imported: u64,
    /// Imported by an earlier, interrupted run of this import.
    pub already_imported: u64,
    /// Older than another token for the same slot, in the source or in the vault.
    pub superseded: u64,
    /// Not stored by the vault's rules: the user deleted or disabled, the session ended
    /// or the grant revoked at or after the token's time.
    pub skipped_by_rule: u64,
    /// With a legacy format: rows not in its shape, taken as the token itself (stored
    /// before the application began encrypting). Counted among the rows read, not apart.
    pub plaintext: u64,
    /// With a legacy format: rows in its shape that do not open.
    pub undecryptable: u64,
    /// Rows whose columns are wrong (missing, unknown token type, bad time).
    pub invalid: u64,
    /// Imported rows opened and found equal to their source.
    pub verified: u64,
    pub mismatched: u64,
    #[serde(skip)]
    pub dry_run: bool,
    /// Read with a legacy format (the summary then counts plaintext rows).
    #[serde(skip)]
    pub legacy: bool,
    #[serde(skip)]
    pub resumed: bool,
    /// Stopped before the end (`--max-pages`): the next run resumes.
    #[serde(skip)]
    pub stopped_early: bool,
    #[serde(skip)]
    pub seconds: f64,
}

impl ImportReport {
    pub fn failed(&self) -> bool {
        self.undecryptable > 0 || self.invalid > 0 || self.mismatched > 0
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.read as f64 / self.seconds.max(0.001);
        write!(
            f,
            "vault import summary{}: read {}, {} {}, already imported {}, superseded {}, \
             skipped by rule {}, {}undecryptable {}, invalid {}, verified {} of {}{} ({:.2}s, {:.0} rows/s)",
            if self.dry_run { " (dry run, nothing written)" } else { "" },
            self.read,
            if self.dry_run { "would import" } else { "imported" },
            self.imported,
            self.already_imported,
            self.superseded,
            self.skipped_by_rule,
            if self.legacy {
                format!("plaintext {}, ", self.plaintext)
            } else {
                String::new()
            },
            self.undecryptable,
            self.invalid,
            self.verified,
            self.imported + self.already_imported,
            match (self.resumed, self.stopped_early) {
                (_, true) => ", stopped early: run again to resume",
                (true, false) => ", resumed",
                _ => "",
            },
            self.seconds,
            rate,
        )
    }
}

pub async fn import(
    store: &Store,
    source: &PgPool,
    keys: Arc<KeyRing>,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let mut checkpoint = if options.restart || options.dry_run {
        ImportCheckpoint::default()
    } else {
        store.import_checkpoint(&options.import_id).await?
    };
    if checkpoint.finished {
        // A finished import run again starts over (what it finds again is a duplicate).
        checkpoint = ImportCheckpoint::default();
    }
    let mut report: ImportReport =
        serde_json::from_value(checkpoint.counts.clone()).unwrap_or_default();
    report.resumed = checkpoint.after.is_some();
    report.dry_run = options.dry_run;
    report.legacy = options.legacy.is_some();
    let progress = Progress::new(options.progress, "vault import", None, Unit::Items("rows"));
    let vault = Vault::new(store, keys);
    let mut after = checkpoint.after.clone();
    let mut reader = SourceReader::open(source, &options.query, after.as_ref()).await?;
    let mut pages = 0u64;
    let mut complete = true;
    loop {
        if options.max_pages.is_some_and(|max| pages >= max) {
            complete = false;
            break;
        }
        pages += 1;
        let rows = reader.next_page(options.page_size).await?;
        let Some(last) = rows.last() else {
            break;
        };
        let slot = slot_of(last);
        after = Some((slot.realm_id, slot.user_id));
        report.read += rows.len() as u64;
        let tokens = open_rows(&rows, options.legacy.as_ref(), &mut report);
        let (kept, superseded) = newest_per_slot(tokens);
        report.superseded += superseded;
        if options.dry_run {
            report.imported += kept.len() as u64;
        } else {
            apply_page(store, &vault, &kept, &mut report).await?;
            checkpoint.after = after.clone();
            checkpoint.counts = serde_json::to_value(&report)?;
            store
                .save_import_checkpoint(&options.import_id, &checkpoint)
                .await?;
        }
        progress.inc(rows.len() as u64);
    }
    reader.close().await?;
    if !options.dry_run && complete {
        checkpoint.finished = true;
        checkpoint.counts = serde_json::to_value(&report)?;
        store
            .save_import_checkpoint(&options.import_id, &checkpoint)
            .await?;
    }
    progress.finish();
    report.stopped_early = !complete;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads and opens a page's rows; what cannot be read or opened is counted and named by
/// its slot in the log, never with its value.
fn open_rows(
    rows: &[serde_json::Value],
    legacy: Option<&LegacyKey>,
    report: &mut ImportReport,
) -> Vec<SourceToken> {
    let mut tokens = Vec::with_capacity(rows.len());
    for row in rows {
        let mut plaintext = false;
        let read = read_row(row, |stored| match legacy {
            Some(key) if key.format().is_sealed(stored) => {
                key.open(stored).map_err(|e| e.to_string())
            }
            _ => {
                plaintext = legacy.is_some();
                Ok(SecretString::from(stored.to_string()))
            }
        });
        if plaintext && matches!(read, Ok(Ok(_))) {
            report.plaintext += 1;
        }
        match read {
            Ok(Ok(token)) => tokens.push(token),
            Ok(Err(problem)) => {
                report.undecryptable += 1;
                tracing::warn!(row = %slot_of(row), %problem, "source row does not decrypt; not imported");
            }
            Err(problem) => {
                report.invalid += 1;
                tracing::warn!(row = %slot_of(row), %problem, "source row cannot be imported");
            }
        }
    }
    tokens
}

/// Applies a page's tokens as token messages, then sorts each into imported (and
/// verified), superseded by a newer vault token, or skipped by the vault's rules.
async fn apply_page(
    store: &Store,
    vault: &Vault,
    kept: &[SourceToken],
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    if kept.is_empty() {
        return Ok(());
    }
    let events: Vec<_> = kept.iter().map(token_event).collect();
    let results = store.apply_isolating(&events).await?;
    let versions: Vec<String> = events
        .iter()
        .map(|e| Version::of(e).as_str().to_string())
        .collect();
    let users: Vec<&str> = kept.iter().map(|t| t.slot.user_id.as_str()).collect();
    let held: HashMap<String, [u8; 32]> = vault
        .holding_versions(&users, &versions)
        .await?
        .into_iter()
        .map(|(version, stored)| (version, digest(&stored.token)))
        .collect();
    let mut missing = Vec::new();
    for ((token, version), result) in kept.iter().zip(&versions).zip(&results) {
        match result {
            Err(rejection) => {
                report.invalid += 1;
                tracing::warn!(row = %token.slot, reason = %rejection, "token refused");
                continue;
            }
            Ok(outcome) => match held.get(version) {
                Some(stored) => {
                    if matches!(outcome, Outcome::Duplicate) {
                        report.already_imported += 1;
                    } else {
                        report.imported += 1;
                    }
                    if *stored == digest(&token.token) {
                        report.verified += 1;
                    } else {
                        report.mismatched += 1;
                        tracing::error!(row = %token.slot, "the vault row does not match its source");
                    }
                }
                None => missing.push((token, version)),
            },
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let slots: Vec<_> = missing.iter().map(|(t, _)| t.slot.clone()).collect();
    let now_held = store.slot_versions(&slots).await?;
    for ((_, version), held) in missing.iter().zip(now_held) {
        match held {
            Some(newer) if newer.as_str() > version.as_str() => report.superseded += 1,
            _ => report.skipped_by_rule += 1,
        }
    }
    Ok(())
}
