//! `keycloak-sync sample`: a synthetic event history on standard output.

use std::io::Write;
use std::process::ExitCode;

use crate::core::sample::{history, SampleOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    events: usize,
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = SampleOptions {
        events: args.events,
        users: args.users,
        seed: args.seed,
        ..SampleOptions::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in history(options) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
