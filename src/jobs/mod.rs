//! Work that moves data from a source through the one apply path, shared by the
//! commands and the daemon.

pub mod backfill;
pub mod directory;
pub mod enrichment;
pub mod expiry;
pub mod import;
pub mod reconcile;
pub mod replay;
pub mod rotation;
