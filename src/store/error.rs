//! Which database errors may pass by themselves, and retrying those under the product's
//! back-off policy.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StoreError;
use crate::retry::{Policy, Verdict};
use crate::telemetry::health::Health;

/// SQLSTATEs worth retrying: serialization failure, deadlock, lock timeout, too many
/// connections, server shutting down or starting, and the connection-exception class.
const TRANSIENT_SQLSTATES: &[&str] = &[
    "40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03", "08000", "08001", "08003",
    "08004", "08006", "08007",
];

pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| TRANSIENT_SQLSTATES.contains(&code.as_ref())),
        _ => false,
    }
}

/// Runs `operation` until it succeeds, fails permanently, or `max_elapsed` has passed.
pub async fn with_backoff<T, F, Fut>(
    max_elapsed: Duration,
    what: &str,
    mut operation: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    Policy::calls(max_elapsed)
        .retry(
            || {
                let attempt = operation();
                async move {
                    attempt.await.map_err(|error| {
                        if is_transient(&error) {
                            Verdict::Retry(error)
                        } else {
                            Verdict::Stop(error)
                        }
                    })
                }
            },
            |error, wait| {
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "could not {what}; retrying");
            },
        )
        .await
        .map_err(StoreError::from_sqlx)
}

/// Errors that say whether waiting may make them pass.
pub trait MayPass: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

impl MayPass for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

impl MayPass for super::ApplyError {
    fn is_transient(&self) -> bool {
        super::ApplyError::is_transient(self)
    }
}

/// Runs `operation` until the database lets it through: transient errors are retried
/// for as long as it takes while the daemon reports not ready and its loops stay alive.
/// `Ok(None)` when shutdown came first; permanent errors are returned.
pub async fn until_database_answers<T, E, F, Fut>(
    health: &Health,
    shutdown: &CancellationToken,
    what: &str,
    mut operation: F,
) -> Result<Option<T>, E>
where
    E: MayPass,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pauses = Policy::reconnect(Duration::from_secs(10)).pauses();
    loop {
        health.beat();
        match operation().await {
            Ok(value) => {
                health.set_database_up(true);
                return Ok(Some(value));
            }
            Err(error) if error.is_transient() => {
                health.set_database_up(false);
                let wait = pauses.next_wait();
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "database unavailable; {what} waits until it returns");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}
