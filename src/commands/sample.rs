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
    /// Weight of admin changes to groups, roles and organizations (memberships, role
    /// grants, renames, deletions) against 100 for the rest of the event catalogue and
    /// 200 for everyday traffic; 0 leaves them out.
    #[arg(long, default_value_t = 0)]
    directory_weight: u32,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = SampleOptions {
        events: args.events,
        users: args.users,
        seed: args.seed,
        directory_weight: args.directory_weight,
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
