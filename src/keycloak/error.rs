use std::time::Duration;

use thiserror::Error;

/// What went wrong talking to Keycloak. Messages name the request (method and path, never
/// a token or the client secret) and Keycloak's own explanation.
#[derive(Debug, Error)]
pub enum KeycloakError {
    /// An answer that retrying will not change (403, 400, a 401 after logging in again…).
    #[error("{request}: Keycloak refused with HTTP {status}{}", detail(message))]
    Refused {
        request: String,
        status: u16,
        message: String,
    },
    /// Keycloak could not be reached or kept failing within the retry budget.
    #[error("{request}: Keycloak unavailable: {reason}{}", given_up(*attempts, *elapsed))]
    Unavailable {
        request: String,
        reason: String,
        attempts: u32,
        elapsed: Duration,
    },
    /// The token endpoint refused a refresh with `invalid_grant`: the token is no longer
    /// usable (its session ended, it was revoked, or a rotated token was reused).
    #[error(
        "{request}: Keycloak refused the grant (invalid_grant){}",
        detail(message)
    )]
    InvalidGrant { request: String, message: String },
    /// Keycloak answered, but not in the documented shape.
    #[error("{request}: unexpected answer from Keycloak: {problem}")]
    BadResponse { request: String, problem: String },
    #[error("keycloak: {0}")]
    Config(String),
}

impl KeycloakError {
    pub(super) fn unavailable(request: &str, reason: String) -> Self {
        KeycloakError::Unavailable {
            request: request.to_string(),
            reason,
            attempts: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, KeycloakError::Unavailable { .. })
    }

    /// Records how long the request was retried before this error was final.
    pub(super) fn gave_up(self, tries: u32, waited: Duration) -> Self {
        match self {
            KeycloakError::Unavailable {
                request, reason, ..
            } => KeycloakError::Unavailable {
                request,
                reason,
                attempts: tries,
                elapsed: waited,
            },
            other => other,
        }
    }
}

/// `: message`, or nothing for an empty message.
pub(super) fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn given_up(attempts: u32, elapsed: Duration) -> String {
    if attempts == 0 {
        String::new()
    } else {
        format!(
            " (gave up after {attempts} attempt{} in {:.1} s)",
            if attempts == 1 { "" } else { "s" },
            elapsed.as_secs_f64()
        )
    }
}
