//! Keycloak's OpenID Connect token endpoint
//! (`POST /realms/{realm}/protocol/openid-connect/token`): the client-credentials grant
//! the service account logs in with (its token cached per realm until shortly before it
//! expires, dropped on a 401), and the refresh grant the token API renews users' access
//! tokens with. Tokens are `SecretString`s; errors never quote a body that may hold one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::error::{self, KeycloakError};
use super::transport::{error_message, retry_after, Transport};

/// A token is renewed this long before Keycloak says it expires (at most half its life).
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// What the token endpoint answered a grant with.
pub struct TokenSet {
    pub access_token: SecretString,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The (rotated) refresh or offline token, when Keycloak sent one.
    pub refresh_token: Option<SecretString>,
    /// Seconds the refresh token lives; 0 for an offline token without a maximum.
    pub refresh_expires_in: Option<u64>,
    pub scope: Option<String>,
    pub session_state: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    expires_in: u64,
    refresh_token: Option<SecretString>,
    refresh_expires_in: Option<u64>,
    scope: Option<String>,
    session_state: Option<String>,
}

/// The token endpoint of the Keycloak at `keycloak.url`.
#[derive(Clone)]
pub struct TokenEndpoint {
    transport: Transport,
}

impl TokenEndpoint {
    pub fn new(transport: Transport) -> Self {
        TokenEndpoint { transport }
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The client-credentials grant of `client_id`.
    pub async fn client_credentials(
        &self,
        realm: &str,
        client_id: &str,
        secret: &SecretString,
    ) -> Result<TokenSet, KeycloakError> {
        self.grant(
            realm,
            client_id,
            Some(secret),
            &[("grant_type", "client_credentials")],
        )
        .await
    }

    /// The refresh grant: a new access token (and, with rotation, a new refresh token)
    /// for a stored refresh or offline token of `client_id` (`secret`: none for a public
    /// client). Keycloak's `invalid_grant` (session ended, token revoked or reused) is
    /// [`KeycloakError::InvalidGrant`].
    pub async fn refresh(
        &self,
        realm: &str,
        client_id: &str,
        secret: Option<&SecretString>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, KeycloakError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        if secret.is_none() {
            form.push(("client_id", client_id));
        }
        self.grant(realm, client_id, secret, &form).await
    }

    async fn grant(
        &self,
        realm: &str,
        client_id: &str,
        secret: Option<&SecretString>,
        form: &[(&str, &str)],
    ) -> Result<TokenSet, KeycloakError> {
        let url =
            self.transport
                .endpoint(&["realms", realm, "protocol", "openid-connect", "token"]);
        let request = format!("POST {} (client {client_id})", url.path());
        let mut post = self.transport.http.post(url).form(form);
        if let Some(secret) = secret {
            post = post.basic_auth(client_id, Some(secret.expose_secret()));
        }
        let sent = post
            .send()
            .await
            .map_err(|e| self.transport.transport_error(&request, &e))?;
        let status = sent.status();
        let wait = retry_after(sent.headers());
        let body = sent
            .bytes()
            .await
            .map_err(|e| self.transport.transport_error(&request, &e))?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let mut reason = format!("{status}{}", error::detail(&error_message(&body)));
            if let Some(wait) = wait {
                reason.push_str(&format!(" (Retry-After {}s)", wait.as_secs()));
            }
            return Err(KeycloakError::unavailable(&request, reason));
        }
        if !status.is_success() {
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
            if status == StatusCode::BAD_REQUEST && code.as_deref() == Some("invalid_grant") {
                return Err(KeycloakError::InvalidGrant {
                    request,
                    message: error_message(&body),
                });
            }
            return Err(KeycloakError::Refused {
                request,
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        // The body holds tokens: its parse error is described without quoting it.
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| KeycloakError::BadResponse {
                request: request.clone(),
                problem: format!(
                    "expected access_token and expires_in (error at line {} column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        Ok(TokenSet {
            access_token: answer.access_token,
            expires_in: answer.expires_in,
            refresh_token: answer.refresh_token,
            refresh_expires_in: answer.refresh_expires_in,
            scope: answer.scope,
            session_state: answer.session_state,
        })
    }
}

struct CachedToken {
    value: SecretString,
    renew_at: Instant,
}

/// The service account (`keycloak.client_id`/`client_secret`) and its access tokens, by
/// the realm it logs in to; shared by every Admin API client of the process.
pub struct ServiceAccount {
    endpoint: TokenEndpoint,
    pub(super) client_id: String,
    client_secret: SecretString,
    /// Where it logs in (`keycloak.token_realm`); else the realm it reads.
    token_realm: Option<String>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl ServiceAccount {
    pub fn new(
        endpoint: TokenEndpoint,
        client_id: String,
        client_secret: SecretString,
        token_realm: Option<String>,
    ) -> Arc<Self> {
        Arc::new(ServiceAccount {
            endpoint,
            client_id,
            client_secret,
            token_realm,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The cached token for reading `realm`, renewed if due.
    pub async fn token(&self, realm: &str) -> Result<SecretString, KeycloakError> {
        let login_realm = self.token_realm.as_deref().unwrap_or(realm);
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(login_realm) {
            if Instant::now() < token.renew_at {
                return Ok(token.value.clone());
            }
        }
        let issued = self
            .endpoint
            .client_credentials(login_realm, &self.client_id, &self.client_secret)
            .await?;
        let lifetime = Duration::from_secs(issued.expires_in);
        let margin = RENEW_MARGIN.min(lifetime / 2);
        let value = issued.access_token;
        tokens.insert(
            login_realm.to_string(),
            CachedToken {
                value: value.clone(),
                renew_at: Instant::now() + lifetime - margin,
            },
        );
        Ok(value)
    }

    /// Drops `rejected` (Keycloak answered 401 with it), unless already replaced.
    pub async fn forget_token(&self, realm: &str, rejected: &SecretString) {
        let login_realm = self.token_realm.as_deref().unwrap_or(realm);
        let mut tokens = self.tokens.lock().await;
        if tokens
            .get(login_realm)
            .is_some_and(|t| t.value.expose_secret() == rejected.expose_secret())
        {
            tokens.remove(login_realm);
        }
    }
}
