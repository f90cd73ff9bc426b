//! What the probes report: whether the loops are alive, and whether the daemon can do
//! its job right now (database reachable, consumer attached).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;

#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` at the consumer loop's last turn.
    heartbeat_ms: AtomicU64,
    consumer_attached: AtomicBool,
    database_up: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            consumer_attached: AtomicBool::new(false),
            database_up: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// Called by the consumer loop on every turn, including while it waits or retries.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether the loop turned within `max_silence`.
    pub fn alive(&self, max_silence: Duration) -> bool {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) <= max_silence
    }

    pub fn set_consumer_attached(&self, attached: bool) {
        self.consumer_attached.store(attached, Ordering::Relaxed);
        crate::metrics::consumer_connected(attached);
    }

    pub fn consumer_attached(&self) -> bool {
        self.consumer_attached.load(Ordering::Relaxed)
    }

    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::Relaxed);
        crate::metrics::database_up(up);
    }

    pub fn database_up(&self) -> bool {
        self.database_up.load(Ordering::Relaxed)
    }

    /// Runs `operation` until the database lets it through: transient errors are retried
    /// with capped, jittered backoff while the daemon reports not ready and its loops stay
    /// alive. `Ok(None)` when shutdown came first; permanent errors are returned.
    pub async fn until_database_answers<T, F, Fut>(
        &self,
        shutdown: &CancellationToken,
        what: &str,
        mut operation: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut pause = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(200))
            .with_max_interval(Duration::from_secs(10))
            .with_max_elapsed_time(None)
            .build();
        loop {
            self.beat();
            match operation().await {
                Ok(value) => {
                    self.set_database_up(true);
                    return Ok(Some(value));
                }
                Err(error) if error.is_transient() => {
                    self.set_database_up(false);
                    let wait = pause.next_backoff().unwrap_or(Duration::from_secs(10));
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
}
