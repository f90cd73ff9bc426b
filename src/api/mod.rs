//! The token API on a listener of its own (`api.listen`; HTTPS with `api.tls_cert` and
//! `api.tls_key`): `POST /v1/tokens/access` hands an application a valid access token
//! for a user, refreshing at Keycloak when needed (`access.rs`); `PUT /v1/tokens` stores
//! a token through the apply path (`store.rs`). Callers authenticate with an access
//! token Keycloak issued to their own client (`auth.rs`); what they may do is granted in
//! `[[api.callers]]` (default deny). Every answer is JSON; errors are
//! `{"error": code, "message": text}` and never hold a token.

mod access;
mod audit;
mod auth;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use auth::Caller;
use auth::{AuthError, Verifier};

use crate::context::AppContext;
use crate::core::token_api::Action;

/// The largest request body read (a token message with metadata fits many times over).
const MAX_BODY: usize = 64 * 1024;

/// An answer other than 200: status, code, message, and how long to wait for a 503.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "keycloak_unavailable",
                message,
            )
        }
    }

    fn database(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "token API: the database failed");
        ApiError {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    context: AppContext,
    verifier: Arc<Verifier>,
    /// Per caller: requests served at once (`api.caller_concurrency`).
    callers: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Per token: one request of this process refreshes, the others wait for it.
    flights: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// Names this replica's refresh leases.
    holder: Arc<str>,
    audit: audit::AuditLog,
}

impl ApiState {
    /// The token API of `context`; needs `keycloak.url` (the realms' keys, the token
    /// endpoint, realm ids) and the vault's keys.
    pub fn new(context: AppContext) -> anyhow::Result<Self> {
        let transport = context
            .token_endpoint()
            .map(|t| t.transport().clone())
            .ok_or_else(|| {
                anyhow::anyhow!("api.listen needs keycloak.url (and its service account)")
            })?;
        if context.store.vault_keys().is_none() {
            anyhow::bail!("api.listen needs vault.keys: the API reads and writes the vault");
        }
        let verifier = Verifier::new(transport, context.settings.api.jwks_min_refresh);
        Ok(ApiState {
            audit: audit::AuditLog::start(context.store.clone()),
            context,
            verifier: Arc::new(verifier),
            callers: Arc::default(),
            flights: Arc::default(),
            holder: format!("replica-{}", uuid::Uuid::new_v4().simple()).into(),
        })
    }

    /// The caller a request's `Authorization: Bearer …` authenticates.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "no Authorization: Bearer header",
                )
            })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the Authorization header is not Bearer",
                )
            })?;
        self.verifier
            .caller(token.trim())
            .await
            .map_err(|error| match error {
                AuthError::Unauthenticated(message) => {
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
                }
                AuthError::KeysUnavailable(message) => ApiError::unavailable(
                    format!("cannot read the realm's keys: {message}"),
                    Duration::from_secs(5),
                ),
            })
    }

    /// Waits for one of the caller's request slots.
    async fn slot(&self, caller: &Caller) -> Result<OwnedSemaphorePermit, ApiError> {
        let semaphore = {
            let mut callers = self.callers.lock().await;
            callers
                .entry(format!("{}/{}", caller.realm, caller.client_id))
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.context.settings.api.caller_concurrency))
                })
                .clone()
        };
        semaphore
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("shutting down", Duration::from_secs(1)))
    }

    /// Default deny: 403 unless a grant of the caller's realm names the client.
    fn allow(
        &self,
        caller: &Caller,
        action: Action,
        realm: &str,
        client: &str,
    ) -> Result<(), ApiError> {
        let grants = &self.context.settings.api.callers;
        if crate::core::token_api::may(
            grants,
            &caller.realm,
            &caller.client_id,
            action,
            realm,
            client,
        ) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "client {} of realm {} may not {} tokens of client {client} of realm {realm}",
                    caller.client_id,
                    caller.realm,
                    action.as_str()
                ),
            ))
        }
    }

    /// Records the request in `token_audit` and the metrics (never a token).
    async fn audit(
        &self,
        caller: Option<&Caller>,
        action: Action,
        target: Target<'_>,
        outcome: &str,
    ) {
        let name = caller.map_or("unauthenticated".to_string(), |c| {
            format!("{}/{}", c.realm, c.client_id)
        });
        crate::telemetry::metrics::token_api(&name, action.as_str(), outcome);
        let record = audit::Record {
            caller: name,
            realm_id: target.realm_id.map(str::to_string),
            user_id: target.user_id.map(str::to_string),
            client_id: target.client_id.map(str::to_string),
            action: action.as_str(),
            outcome: outcome.to_string(),
        };
        // A failed write is logged by the writer; the answer is given all the same.
        self.audit.write(record).await;
    }
}

/// Whose token a request is about, as far as it is known.
#[derive(Default, Clone, Copy)]
struct Target<'a> {
    realm_id: Option<&'a str>,
    user_id: Option<&'a str>,
    client_id: Option<&'a str>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/tokens/access", post(access::handle))
        .route("/v1/tokens", put(store::handle))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Reads a JSON body, or says why not (400).
fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "body: not JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Serves the API on `api.listen` until `shutdown`.
pub async fn serve(state: ApiState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = state.context.settings.clone();
    let Some(address) = settings.api.listen else {
        return Ok(());
    };
    if address == settings.http.listen {
        anyhow::bail!("api.listen must differ from http.listen (the probes and metrics)");
    }
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address} (api.listen): {e}"))?;
    let app = router(state);
    match &settings.api.tls {
        None => {
            tracing::info!(address = %listener.local_addr()?, "serving the token API over HTTP");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await?;
        }
        Some((cert, key)) => {
            let acceptor = tls_acceptor(cert, key)?;
            tracing::info!(address = %listener.local_addr()?, "serving the token API over HTTPS");
            serve_tls(listener, acceptor, app, shutdown).await;
        }
    }
    Ok(())
}

fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_tls_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| anyhow::anyhow!("api.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("api.tls_cert {}: holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("api.tls_key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("api.tls_cert/api.tls_key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections until `shutdown`; each is served over HTTP/1.1.
async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "token API: accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                tracing::debug!(%peer, "token API: TLS handshake failed");
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
