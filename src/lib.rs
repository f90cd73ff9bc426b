//! keycloak-sync keeps an application's Postgres in step with Keycloak.
//!
//! The pure core — [`event`] (bytes → typed events) and [`plan`] (events → row changes) —
//! knows nothing of I/O. The adapters around it: [`store`] (Postgres, the one apply path),
//! [`replay`] (JSONL files), and the command line in [`cli`].

pub mod cli;
pub mod config;
pub mod event;
pub mod ingest;
pub mod plan;
pub mod replay;
pub mod sample;
pub mod store;
pub mod telemetry;
