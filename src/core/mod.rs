//! The pure core: no I/O. Bytes become typed events ([`event`]), events become row
//! changes ([`plan`]); what a deployment accepts is decided in [`intake`].

pub mod change;
pub mod event;
pub mod ids;
pub mod import;
pub mod intake;
pub mod outcome;
pub mod plan;
pub mod redact;
pub mod sample;
pub mod session_policy;
pub mod token_api;
