//! The one progress display of the commands: a bar on a terminal, a log line every few
//! seconds otherwise (so a command run by a scheduler still shows it is moving).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// What the position counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Bytes of an input file (the bar shows sizes).
    Bytes,
    /// Items, named in the plural (`users`, `events`, `rows`).
    Items(&'static str),
}

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    last_log: Mutex<Instant>,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

/// Whether to draw bars: only when a person is watching stderr.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

impl Progress {
    /// A bar when `shown`, toward `total` if known (a spinner if not).
    pub fn new(shown: bool, label: impl Into<String>, total: Option<u64>, unit: Unit) -> Self {
        let label = label.into();
        let bar = shown.then(|| {
            let (bar, template) = match (total, unit) {
                (Some(total), Unit::Bytes) => (
                    ProgressBar::new(total),
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}"
                        .to_string(),
                ),
                (Some(total), Unit::Items(items)) => (
                    ProgressBar::new(total),
                    format!("{{prefix}} {{wide_bar}} {{pos}}/{{len}} {items} ({{per_sec}}, {{eta}}) {{msg}}"),
                ),
                (None, Unit::Bytes) => (
                    ProgressBar::new_spinner(),
                    "{spinner} {prefix}: {bytes} ({bytes_per_sec}) {msg}".to_string(),
                ),
                (None, Unit::Items(items)) => (
                    ProgressBar::new_spinner(),
                    format!("{{spinner}} {{prefix}}: {{pos}} {items} ({{per_sec}}) {{msg}}"),
                ),
            };
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            label,
            last_log: Mutex::new(Instant::now()),
        }
    }

    pub fn inc(&self, by: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(by);
        }
    }

    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    /// The counts so far: beside the bar, or logged every few seconds without one.
    pub fn report(&self, message: String) {
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None => {
                let Ok(mut last) = self.last_log.lock() else {
                    return;
                };
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    tracing::info!("{} progress: {message}", self.label);
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
