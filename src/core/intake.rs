//! The front of the apply path shared by every input: parse a message and decide
//! whether this deployment can take it.

use crate::core::event::{parse_message, Action, Event, ParseError};

/// Why a message is rejected; its text goes to the rejects file or the dead-letter headers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "token message rejected: no vault key ring is configured (vault.keys, vault.active_key)"
    )]
    NoVault,
    #[error("{0}")]
    Database(String),
}

impl Rejection {
    /// A bounded label for metrics: never input text.
    pub fn class(&self) -> &'static str {
        match self {
            Rejection::Parse(_) => "invalid",
            Rejection::NoVault => "no_vault",
            Rejection::Database(_) => "database",
        }
    }
}

/// What this deployment accepts.
#[derive(Debug, Clone, Copy)]
pub struct Intake {
    pub max_message_bytes: usize,
    /// Token messages are rejected (not ignored, so they can be replayed later) without a vault.
    pub vault_enabled: bool,
}

impl Intake {
    pub fn accept(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        let event = parse_message(bytes, self.max_message_bytes)?;
        if matches!(event.action, Action::StoreToken(_)) && !self.vault_enabled {
            return Err(Rejection::NoVault);
        }
        Ok(event)
    }
}
