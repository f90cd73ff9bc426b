//! Which database errors may pass by themselves, and retrying those with capped,
//! jittered exponential backoff.

use std::future::Future;
use std::time::Duration;

use backoff::ExponentialBackoffBuilder;

use super::StoreError;

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
    let policy = ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::from_millis(50))
        .with_max_interval(Duration::from_secs(5))
        .with_randomization_factor(0.5)
        .with_max_elapsed_time(Some(max_elapsed))
        .build();
    backoff::future::retry_notify(
        policy,
        || {
            let attempt = operation();
            async move {
                attempt.await.map_err(|error| {
                    if is_transient(&error) {
                        backoff::Error::transient(error)
                    } else {
                        backoff::Error::permanent(error)
                    }
                })
            }
        },
        |error: sqlx::Error, wait: Duration| {
            tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "could not {what}; retrying");
        },
    )
    .await
    .map_err(StoreError::from_sqlx)
}
