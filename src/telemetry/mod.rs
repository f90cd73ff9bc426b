//! What the process tells about itself: logs ([`init`]), Prometheus [`metrics`], the
//! [`health`] the probes report, and [`progress`] for a person watching a command.
//!
//! Logs are human-readable text on a terminal, JSON lines for log collectors, and go to
//! stderr so that command output on stdout stays clean.

pub mod health;
pub mod metrics;
pub mod progress;

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},sqlx::postgres::notice=warn", settings.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // A subscriber already set (tests) is fine.
    drop(result);
}
