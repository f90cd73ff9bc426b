//! What the probes report: whether the loops are alive, and whether the daemon can do
//! its job right now (database reachable, consumer attached).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
        crate::telemetry::metrics::consumer_connected(attached);
    }

    pub fn consumer_attached(&self) -> bool {
        self.consumer_attached.load(Ordering::Relaxed)
    }

    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::Relaxed);
        crate::telemetry::metrics::database_up(up);
    }

    pub fn database_up(&self) -> bool {
        self.database_up.load(Ordering::Relaxed)
    }
}
