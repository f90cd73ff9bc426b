//! Which database errors may pass by themselves, and retrying those under the product's
//! back-off policy.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StoreError;
use crate::retry::{Policy, Verdict};
use crate::telemetry::health::Health;

/// Whether the event's own data caused the error: a data exception (SQLSTATE class 22) or
/// an integrity constraint violation (23). Only such an error may refuse an event.
pub fn is_event_fault(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Whether waiting (or fixing the environment) may make the error pass: everything but
/// the event's own faults and a malformed configuration. A read-only standby, missing
/// privileges, a full disk, a statement timeout, a pooler that lost a prepared statement:
/// the database is unavailable for now, and nothing is refused for it.
pub fn is_transient(error: &sqlx::Error) -> bool {
    !is_event_fault(error)
        && !matches!(error, sqlx::Error::Configuration(_))
        && !is_certificate_failure(error)
}

/// A TLS failure that waiting cannot fix: the server's certificate is not trusted by the
/// configured root (`sslrootcert`), or is not valid for the host name (`verify-full`).
pub fn is_certificate_failure(error: &sqlx::Error) -> bool {
    // rustls reports it through the connection's I/O error, or as a TLS error.
    let text = match error {
        sqlx::Error::Tls(tls) => tls.to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        _ => return false,
    }
    .to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "notvalidforname",
        "invalid peer",
        "sslrootcert",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// What is wrong with the database, in words for probes and logs (never the driver's
/// text, which may quote data).
pub fn fault_summary(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref().unwrap_or("") {
            "25006" => "read-only: the database refuses writes (a standby after a failover?)",
            "42501" => "insufficient privilege",
            "53100" => "disk full",
            "53200" => "out of memory",
            "53300" => "too many connections",
            "57014" => "statement timeout or cancelled",
            "57P01" | "57P02" | "57P03" => "server shutting down or starting",
            "26000" => "prepared statement missing (a pooler in transaction mode?)",
            "42P05" => "prepared statement already exists (a pooler in transaction mode?)",
            "3D000" => "database does not exist",
            "3F000" => "schema does not exist",
            "42P01" => "table missing (migrations not applied, or the wrong search_path)",
            "28000" | "28P01" => "authentication failed",
            "40001" | "40P01" => "transaction rolled back (serialization failure or deadlock)",
            "55P03" => "lock not available",
            code if code.starts_with("08") => "connection failure",
            code if code.starts_with("22") || code.starts_with("23") => "the data was refused",
            _ => "database error",
        },
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) if is_certificate_failure(error) => {
            "TLS: the server's certificate is not trusted or not valid for its host name"
        }
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            "connection failure"
        }
        sqlx::Error::Tls(_) => "TLS failure",
        sqlx::Error::PoolTimedOut => "no connection within database.connect_timeout_secs",
        sqlx::Error::PoolClosed => "connection pool closed",
        sqlx::Error::Configuration(_) => "invalid database configuration",
        _ => "database error",
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

/// Errors that say whether waiting may make them pass, and what is wrong in words.
pub trait MayPass: std::fmt::Display {
    fn is_transient(&self) -> bool;
    fn summary(&self) -> &'static str;
}

impl MayPass for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }

    fn summary(&self) -> &'static str {
        match self {
            StoreError::Unavailable(error) | StoreError::Permanent(error) => fault_summary(error),
            StoreError::Schema(_) => "invalid schema name",
        }
    }
}

impl MayPass for super::ApplyError {
    fn is_transient(&self) -> bool {
        super::ApplyError::is_transient(self)
    }

    fn summary(&self) -> &'static str {
        match self {
            super::ApplyError::Unavailable(error) | super::ApplyError::Rejected(error) => {
                fault_summary(error)
            }
            super::ApplyError::NoVault { .. } => "no vault keys",
            super::ApplyError::Seal { .. } => "vault sealing failed",
        }
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
                health.set_database_fault(error.summary());
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
