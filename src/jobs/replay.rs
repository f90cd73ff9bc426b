//! `keycloak-sync replay`: applies a JSONL event log through the apply path.
//!
//! A reader thread streams and parses lines and deals the events out to `workers` lanes
//! by user (see [`Event::lane`]); each lane applies its batches one after another, so
//! two concurrent transactions seldom touch the same user. A bounded channel per lane
//! holds at most one batch besides the one forming and the one applying: memory stays
//! flat whatever the size of the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::core::event::Event;
use crate::core::intake::{Intake, Rejection};
use crate::core::redact::redacted_text;
use crate::store::{EventResult, Store, Tally};
use crate::telemetry::progress::{Progress, Unit};

/// A line rejected by the parser or the database.
#[derive(Debug, Clone)]
pub struct RejectedLine {
    pub line: u64,
    pub reason: String,
    /// The line as text (lossy for invalid UTF-8), token values redacted.
    pub input: String,
}

/// The end-of-run report.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub lines: u64,
    pub tally: Tally,
    pub rejected: u64,
    pub elapsed: Duration,
}

impl ReplayReport {
    /// The counts so far, for progress lines.
    fn counts(&self) -> String {
        format!(
            "line {} · applied {} · duplicates {} · ignored {} · rejected {}",
            self.lines,
            self.tally.applied,
            self.tally.duplicates,
            self.tally.ignored,
            self.rejected
        )
    }

    pub fn events_per_second(&self) -> f64 {
        let events = self.tally.applied + self.tally.ignored + self.tally.duplicates;
        events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replay summary: lines {}, applied {}, duplicates {}, ignored {}, rejected {} ({:.2}s, {:.0} events/s)",
            self.lines,
            self.tally.applied,
            self.tally.duplicates,
            self.tally.ignored,
            self.rejected,
            self.elapsed.as_secs_f64(),
            self.events_per_second()
        )
    }
}

pub struct ReplayOptions {
    pub batch_size: usize,
    /// Batches applied at once, each in its own transaction.
    pub workers: usize,
    pub intake: Intake,
    pub rejects: Option<PathBuf>,
    /// Draw a progress bar (a terminal); otherwise log progress every few seconds.
    pub progress: bool,
}

/// Where the events come from: a file, or `-` for standard input.
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    pub fn from_arg(arg: &Path) -> Self {
        if arg == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(arg.to_path_buf())
        }
    }

    fn open(&self) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
        match self {
            Source::Stdin => Ok((Box::new(io::stdin()), None)),
            Source::File(path) => {
                let file =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let len = file.metadata().ok().map(|m| m.len());
                Ok((Box::new(file), len))
            }
        }
    }
}

/// A file only its owner may read (rejected lines are input, whatever was redacted).
fn create_private(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// One batch handed from the reader thread to the applier.
struct Chunk {
    events: Vec<Event>,
    lines: Vec<u64>,
    inputs: Vec<Vec<u8>>,
    rejected: Vec<RejectedLine>,
    last_line: u64,
    bytes_read: u64,
}

pub async fn replay(
    store: &Store,
    source: Source,
    options: ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    let (reader, total_bytes) = source.open()?;
    let mut rejects_out = match &options.rejects {
        Some(path) => {
            Some(BufWriter::new(create_private(path).with_context(|| {
                format!("cannot create {}", path.display())
            })?))
        }
        None => None,
    };
    let batch_size = options.batch_size.max(1);
    let intake = options.intake;
    // Each lane applies its batches in turn; the outcome is the same in any order.
    let workers = options.workers.max(1);
    let (done_sender, mut done) = mpsc::channel(workers);
    let mut lanes = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (sender, mut receiver) = mpsc::channel::<Chunk>(1);
        senders.push(sender);
        let (store, done_sender) = (store.clone(), done_sender.clone());
        lanes.spawn(async move {
            while let Some(chunk) = receiver.recv().await {
                let results = store.apply_isolating(&chunk.events).await;
                if done_sender.send((chunk, results)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(done_sender);
    let reader_thread =
        std::thread::spawn(move || read_chunks(reader, batch_size, intake, senders));

    let progress = Progress::new(options.progress, "replay", total_bytes, Unit::Bytes);
    let mut summary = ReplayReport::default();
    while let Some((chunk, results)) = done.recv().await {
        let bytes_read = chunk.bytes_read;
        let results = results
            .with_context(|| format!("applying the batch ending at line {}", chunk.last_line))?;
        let last_line = chunk.last_line;
        let rejected = count_results(chunk, results, &mut summary);
        for reject in &rejected {
            tracing::warn!(line = reject.line, reason = %reject.reason, "line rejected");
            if let Some(out) = rejects_out.as_mut() {
                write_reject(out, reject)?;
            }
        }
        summary.rejected += rejected.len() as u64;
        summary.lines = summary.lines.max(last_line);
        progress.set_position(bytes_read);
        progress.report(summary.counts());
    }
    while let Some(joined) = lanes.join_next().await {
        joined.context("an apply task failed")?;
    }
    reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?
        .context("reading the event log")?;
    if let Some(mut out) = rejects_out {
        out.flush().context("writing the rejects file")?;
    }
    // Concurrent batches can leave an organization member added by username waiting
    // for a user another batch wrote meanwhile.
    store
        .resolve_pending_members()
        .await
        .context("writing waiting organization members")?;
    summary.elapsed = started.elapsed();
    progress.finish();
    Ok(summary)
}

/// Counts a chunk's outcomes into `summary` and returns its rejected lines in line order:
/// those the parser rejected and those the apply path did.
fn count_results(
    chunk: Chunk,
    results: Vec<EventResult>,
    summary: &mut ReplayReport,
) -> Vec<RejectedLine> {
    let mut rejected = chunk.rejected;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(outcome) => summary.tally.add(outcome),
            Err(rejection) => rejected.push(RejectedLine {
                line: chunk.lines[i],
                reason: rejection.to_string(),
                input: redacted_text(&chunk.inputs[i]),
            }),
        }
    }
    rejected.sort_by_key(|r| r.line);
    rejected
}

#[derive(Serialize)]
struct RejectRecord<'a> {
    line: u64,
    reason: &'a str,
    input: &'a str,
}

fn write_reject(out: &mut impl Write, reject: &RejectedLine) -> anyhow::Result<()> {
    let record = RejectRecord {
        line: reject.line,
        reason: &reject.reason,
        input: &reject.input,
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n").context("writing the rejects file")?;
    Ok(())
}

/// Reads, parses and deals out lines until the end of the input (or until the lanes are
/// gone: the replay stopped); full batches go to their lane, the rest at the end.
fn read_chunks(
    reader: Box<dyn Read + Send>,
    batch_size: usize,
    intake: Intake,
    lanes: Vec<mpsc::Sender<Chunk>>,
) -> io::Result<()> {
    let mut lines = LineReader::new(
        BufReader::with_capacity(1 << 16, reader),
        intake.max_message_bytes,
    );
    let new_chunk = || Chunk {
        events: Vec::with_capacity(batch_size),
        lines: Vec::with_capacity(batch_size),
        inputs: Vec::with_capacity(batch_size),
        rejected: Vec::new(),
        last_line: 0,
        bytes_read: 0,
    };
    let mut forming: Vec<Chunk> = lanes.iter().map(|_| new_chunk()).collect();
    let mut buf = Vec::new();
    while let Some(line) = lines.next_line(&mut buf)? {
        // Lines the parser rejects have no lane: they travel with the first.
        let mut lane = 0;
        match line {
            LineStatus::Blank => continue,
            LineStatus::TooLong { length } => forming[lane].rejected.push(RejectedLine {
                line: lines.line_number,
                reason: Rejection::from(crate::core::event::ParseError::TooLarge {
                    size: length,
                    limit: intake.max_message_bytes,
                })
                .to_string(),
                input: format!("{}…", redacted_text(&buf[..buf.len().min(200)])),
            }),
            LineStatus::Line => match intake.accept(&buf) {
                Ok(event) => {
                    lane = event.lane(lanes.len());
                    let chunk = &mut forming[lane];
                    chunk.events.push(event);
                    chunk.lines.push(lines.line_number);
                    // Kept as read: redacted only if the database rejects it.
                    chunk.inputs.push(buf.clone());
                }
                Err(rejection) => forming[lane].rejected.push(RejectedLine {
                    line: lines.line_number,
                    reason: rejection.to_string(),
                    input: redacted_text(&buf),
                }),
            },
        }
        let chunk = &mut forming[lane];
        chunk.last_line = lines.line_number;
        chunk.bytes_read = lines.bytes_read;
        let full = chunk.events.len() >= batch_size || chunk.rejected.len() >= batch_size;
        if full
            && lanes[lane]
                .blocking_send(std::mem::replace(chunk, new_chunk()))
                .is_err()
        {
            return Ok(());
        }
    }
    // The line count includes trailing blank lines.
    forming[0].last_line = lines.line_number;
    forming[0].bytes_read = lines.bytes_read;
    for (chunk, lane) in forming.into_iter().zip(&lanes) {
        if chunk.last_line > 0 && lane.blocking_send(chunk).is_err() {
            break;
        }
    }
    Ok(())
}

enum LineStatus {
    Line,
    Blank,
    TooLong { length: usize },
}

/// Reads `\n`-separated lines without ever holding more than `max` bytes of one.
struct LineReader<R> {
    inner: R,
    max: usize,
    line_number: u64,
    bytes_read: u64,
}

impl<R: BufRead> LineReader<R> {
    fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            line_number: 0,
            bytes_read: 0,
        }
    }

    fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineStatus>> {
        buf.clear();
        let mut length = 0usize;
        let mut saw_any = false;
        loop {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                break;
            }
            saw_any = true;
            let (part, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            length += part.len();
            let room = (self.max + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            let consumed = done.unwrap_or(available.len());
            self.inner.consume(consumed);
            self.bytes_read += consumed as u64;
            if done.is_some() {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        self.line_number += 1;
        if buf.last() == Some(&b'\r') && length <= self.max + 1 {
            buf.pop();
            length -= 1;
        }
        Ok(Some(if length > self.max {
            LineStatus::TooLong { length }
        } else if buf.iter().all(u8::is_ascii_whitespace) {
            LineStatus::Blank
        } else {
            LineStatus::Line
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<(u64, String)> {
        let mut reader = LineReader::new(BufReader::with_capacity(7, input), max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(status) = reader.next_line(&mut buf).expect("read") {
            let text = match status {
                LineStatus::Line => String::from_utf8_lossy(&buf).into_owned(),
                LineStatus::Blank => "<blank>".into(),
                LineStatus::TooLong { length } => format!("<too long: {length}>"),
            };
            out.push((reader.line_number, text));
        }
        out
    }

    #[test]
    fn lines_are_split_and_numbered_across_buffer_boundaries() {
        let lines = read_all(b"{\"a\":1}\r\n\n  \nabcdefghijklmnop\nlast", 100);
        assert_eq!(
            lines,
            vec![
                (1, "{\"a\":1}".to_string()),
                (2, "<blank>".to_string()),
                (3, "<blank>".to_string()),
                (4, "abcdefghijklmnop".to_string()),
                (5, "last".to_string()),
            ]
        );
    }

    #[test]
    fn over_long_lines_are_reported_without_being_held() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nshort\n");
        let lines = read_all(&input, 64);
        assert_eq!(
            lines,
            vec![
                (1, "<too long: 10000>".to_string()),
                (2, "short".to_string())
            ]
        );
    }

    #[test]
    fn rejected_lines_keep_no_token_even_in_broken_json() {
        let text = redacted_text(b"{\"kind\":\"token\",\"token\":\"eyJsecret");
        assert!(!text.contains("eyJsecret"), "{text}");
        assert!(text.contains("withheld"), "{text}");
    }
}
