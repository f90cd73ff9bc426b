//! The apply path's own CPU, without a database: parsing messages and planning batches
//! of 500, per event, over a JSONL history (a `keycloak-sync sample` file).
//!
//!     cargo bench --bench core -- FILE

use std::time::Instant;

use keycloak_sync::core::event::parse_message;
use keycloak_sync::core::plan::plan;

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        eprintln!("usage: cargo bench --bench core -- EVENTS.jsonl");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).expect("readable JSONL file");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for round in 1..=3 {
        let started = Instant::now();
        let events: Vec<_> = lines
            .iter()
            .filter_map(|line| parse_message(line.as_bytes(), 1 << 20).ok())
            .collect();
        let parsed = started.elapsed();
        let started = Instant::now();
        let mut planned = 0;
        for batch in events.chunks(500) {
            planned += plan(batch).sessions.len();
        }
        let planning = started.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / lines.len() as f64;
        println!(
            "round {round}: {} lines, {} parsed: parse {:.2} µs/event, plan {:.2} µs/event ({planned} session rows)",
            lines.len(),
            events.len(),
            per(parsed),
            per(planning)
        );
    }
}
