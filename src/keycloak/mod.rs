//! Keycloak over HTTP: the transport (timeouts, CA bundle, what an answer means), the
//! Admin REST API (enrichment, reconcile, backfill) and the OpenID Connect token endpoint
//! (the service account's client credentials; the refresh grant of the token API).

mod admin;
mod error;
mod oidc;
mod transport;

pub use admin::{AdminClient, ClientSessions};
pub use error::KeycloakError;
pub use oidc::{TokenEndpoint, TokenSet};
pub use transport::Transport;

pub use crate::core::event::EventStream;
