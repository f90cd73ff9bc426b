//! `vault rotate`: re-encrypts every vault row under the active key, in batches that are
//! safe while the daemon writes, then verifies nothing is left under a retired key.

use std::fmt;
use std::time::{Duration, Instant};

use crate::store::vault::{rotate_batch, rows_to_rotate, VaultError};
use crate::store::Store;
use crate::telemetry::progress::{Progress, Unit};
use crate::vault::KeyRing;

pub struct RotationOptions {
    /// Rows per transaction.
    pub batch_size: i64,
    /// Stop after this many batches (the next run resumes).
    pub max_batches: Option<u64>,
    pub progress: bool,
}

/// What a rotation did, and what its verification pass found left.
#[derive(Debug, Default, Clone, Copy)]
pub struct RotationReport {
    pub rotated: u64,
    /// Rows another writer changed between read and re-encryption: left for the next
    /// batch (they are re-read), never overwritten.
    pub raced: u64,
    /// Rows that could not be opened (logged one by one).
    pub failed: u64,
    /// Rows still under a retired key after the run.
    pub remaining: i64,
    pub elapsed: Duration,
}

impl fmt::Display for RotationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            "vault rotate summary: rotated {}, changed meanwhile {}, failed {}, remaining under retired keys {} ({:.2}s, {:.0} rows/s)",
            self.rotated,
            self.raced,
            self.failed,
            self.remaining,
            seconds,
            self.rotated as f64 / seconds.max(1e-9)
        )
    }
}

pub async fn rotate(
    store: &Store,
    keys: &KeyRing,
    options: &RotationOptions,
) -> Result<RotationReport, VaultError> {
    let started = Instant::now();
    let total = rows_to_rotate(store, keys).await?;
    let progress = Progress::new(
        options.progress,
        "vault rotate",
        Some(total.max(0) as u64),
        Unit::Items("rows"),
    );
    let mut report = RotationReport::default();
    let mut batches = 0u64;
    let mut after = String::from("00000000-0000-0000-0000-000000000000");
    while options.max_batches.is_none_or(|max| batches < max) {
        let done = rotate_batch(store, keys, options.batch_size, &after).await?;
        batches += 1;
        report.rotated += done.rotated;
        report.raced += done.raced;
        report.failed += done.failed;
        progress.inc(done.rotated);
        // Rows that cannot be opened (counted as failed) are passed over, not read again.
        match done.last_id {
            Some(last) => after = last,
            None => break,
        }
    }
    progress.finish();
    report.remaining = rows_to_rotate(store, keys).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}
