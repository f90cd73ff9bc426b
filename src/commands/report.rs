//! How every command ends: its report on stdout, its errors on stderr, and one exit
//! status rule — 1 if anything failed, 3 if input was rejected, 0 otherwise.

use std::fmt::Display;
use std::process::ExitCode;

use crate::jobs::import::ImportReport;

/// Exit status of a command that finished but rejected some input.
pub const EXIT_REJECTED: u8 = 3;

/// What a job's report says about the exit status.
pub trait Report: Display {
    /// Input the job rejected (lines or events).
    fn rejected(&self) -> u64 {
        0
    }

    /// Work the job could not do (rows it could not rewrite, rows left behind).
    fn failed(&self) -> bool {
        false
    }
}

/// Prints each report, or each error, and returns the exit status they add up to.
pub fn finish<R: Report, E: Display>(results: impl IntoIterator<Item = Result<R, E>>) -> ExitCode {
    let (mut failed, mut rejected) = (false, false);
    for result in results {
        match result {
            Ok(report) => {
                failed |= report.failed();
                rejected |= report.rejected() > 0;
                println!("{report}");
            }
            Err(error) => {
                failed = true;
                eprintln!("{error}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else if rejected {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// A command's single report.
pub fn finish_one<R: Report>(report: R) -> ExitCode {
    finish([Ok::<R, String>(report)])
}

impl Report for crate::jobs::replay::ReplayReport {
    fn rejected(&self) -> u64 {
        self.rejected
    }
}

impl Report for crate::jobs::backfill::BackfillReport {
    fn rejected(&self) -> u64 {
        self.rejected
    }
}

impl Report for crate::jobs::reconcile::ReconcileReport {}

impl Report for crate::jobs::rotation::RotationReport {
    fn failed(&self) -> bool {
        self.failed > 0 || self.remaining > 0
    }
}

impl Report for crate::jobs::import::ImportReport {
    fn failed(&self) -> bool {
        ImportReport::failed(self)
    }
}

impl Report for crate::amqp::dlq::DlqListing {}

impl Report for crate::amqp::dlq::RequeueReport {}

impl Report for crate::jobs::expiry::ExpiryReport {
    fn failed(&self) -> bool {
        !self.policies.unknown.is_empty()
    }
}
