//! What the probes report: whether the loops are alive, and whether the daemon can do
//! its job right now (database reachable, consumer attached).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` at the consumer loop's last turn.
    heartbeat_ms: AtomicU64,
    /// The broker node (`host:port`) the consumer is attached to.
    attached_node: Mutex<Option<String>>,
    database_up: AtomicBool,
    /// Why the apply path holds its batch (the database refuses it for a reason that is
    /// not the events'); cleared by the next commit.
    database_fault: Mutex<Option<&'static str>>,
    /// The last readiness check of the database, and when it was made.
    last_ping: Mutex<Option<(Instant, Result<(), &'static str>)>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            attached_node: Mutex::new(None),
            database_up: AtomicBool::new(false),
            database_fault: Mutex::new(None),
            last_ping: Mutex::new(None),
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

    /// `Some(node)` once consuming through `node`, `None` when the connection is gone.
    pub fn set_consumer_attached(&self, node: Option<String>) {
        if let Ok(mut attached) = self.attached_node.lock() {
            crate::telemetry::metrics::consumer_attached(attached.as_deref(), node.as_deref());
            *attached = node;
        }
    }

    pub fn consumer_attached(&self) -> bool {
        self.attached_node().is_some()
    }

    pub fn attached_node(&self) -> Option<String> {
        self.attached_node.lock().ok().and_then(|node| node.clone())
    }

    pub fn set_database_up(&self, up: bool) {
        if up {
            if let Ok(mut fault) = self.database_fault.lock() {
                *fault = None;
            }
        }
        self.database_up.store(up, Ordering::Relaxed);
        crate::telemetry::metrics::database_up(up);
    }

    /// The apply path cannot commit, for `reason` (in words, no driver text).
    pub fn set_database_fault(&self, reason: &'static str) {
        if let Ok(mut fault) = self.database_fault.lock() {
            *fault = Some(reason);
        }
        self.set_database_up(false);
    }

    pub fn database_fault(&self) -> Option<&'static str> {
        self.database_fault.lock().ok().and_then(|f| *f)
    }

    pub fn database_up(&self) -> bool {
        self.database_up.load(Ordering::Relaxed)
    }

    /// The last database check if it is younger than `max_age`: probes then cost the
    /// database nothing, however often they come.
    pub fn recent_ping(&self, max_age: Duration) -> Option<Result<(), &'static str>> {
        let last = self.last_ping.lock().ok()?;
        last.filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, result)| result)
    }

    pub fn record_ping(&self, result: Result<(), &'static str>) {
        if let Ok(mut last) = self.last_ping.lock() {
            *last = Some((Instant::now(), result));
        }
    }
}
