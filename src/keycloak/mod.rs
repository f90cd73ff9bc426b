//! Keycloak's Admin REST API (GUIDE §2.3): the adapter behind enrichment, reconcile and
//! backfill.
//!
//! One client per process. It logs in with the client-credentials grant, keeps the
//! access token until shortly before it expires (and drops it on a 401), and retries
//! what may pass by itself — connection errors, timeouts, 5xx, 429 after its
//! `Retry-After` — within a time budget. Every other answer is final and reported with
//! Keycloak's own message. Answers are handed out as JSON values: reading them is the
//! pure core's job (`event::read_admin_user`).

mod error;

pub use error::KeycloakError;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::config::KeycloakSettings;
use crate::core::event::json_kind;
pub use crate::core::event::EventStream;
use crate::core::ids::{ClientUuid, RealmId, RealmName, SessionId, UserId};
use crate::core::session_policy::SessionPolicy;
use crate::retry::{Policy, Verdict};

/// A token is renewed this long before Keycloak says it expires (at most half its life).
const RENEW_MARGIN: Duration = Duration::from_secs(30);

struct AccessToken {
    value: SecretString,
    renew_at: Instant,
}

/// A client (by Keycloak's internal id) and its number of active sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSessions {
    pub id: String,
    pub active: u64,
}

/// The Admin API client. Its `Debug` shows neither the client secret nor tokens.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    client_secret: SecretString,
    token_realm: Option<String>,
    realms: Vec<RealmName>,
    page_size: u32,
    timeout: Duration,
    retry_max: Duration,
    /// Access tokens by the realm they were issued in.
    tokens: Mutex<HashMap<String, AccessToken>>,
    /// Realm name → realm id, learnt once.
    realm_ids: Mutex<HashMap<RealmName, RealmId>>,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("realms", &self.realms)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the configured Keycloak; fails if `keycloak.url`, the client id or
    /// its secret is not set.
    pub fn new(settings: &KeycloakSettings) -> Result<Self, KeycloakError> {
        let missing = |key: &str| KeycloakError::Config(format!("keycloak.{key} is not set"));
        let mut base = settings.url.clone().ok_or_else(|| missing("url"))?;
        let client_id = settings
            .client_id
            .clone()
            .ok_or_else(|| missing("client_id"))?;
        let client_secret = settings
            .client_secret
            .clone()
            .ok_or_else(|| missing("client_secret"))?;
        if settings.realms.is_empty() {
            return Err(missing("realms"));
        }
        // Keep a path prefix such as `/auth` (Keycloak before 17): it must end in `/`.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        crate::install_tls_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                KeycloakError::Config(format!("keycloak.ca_file {}: {e}", path.display()))
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                KeycloakError::Config(format!(
                    "keycloak.ca_file {}: not PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if roots.is_empty() {
                return Err(KeycloakError::Config(format!(
                    "keycloak.ca_file {}: holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("keycloak-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KeycloakError::Config(format!("HTTP client: {e}")))?;
        Ok(AdminClient {
            http,
            base,
            client_id,
            client_secret,
            token_realm: settings.token_realm.clone(),
            realms: settings.realms.clone(),
            page_size: settings.page_size,
            timeout: settings.timeout,
            retry_max: settings.retry_max,
            tokens: Mutex::new(HashMap::new()),
            realm_ids: Mutex::new(HashMap::new()),
        })
    }

    /// The same client with another retry budget (the enrichment worker keeps it short
    /// and retries through its queue instead).
    pub fn with_retry_max(mut self, retry_max: Duration) -> Self {
        self.retry_max = retry_max;
        self
    }

    pub fn realms(&self) -> &[RealmName] {
        &self.realms
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The id of a realm given by name (events and rows carry ids, URLs take names).
    /// Read from the realm itself, or, when the service account may not view the realm,
    /// from its newest stored event.
    pub async fn realm_id(&self, realm: &RealmName) -> Result<RealmId, KeycloakError> {
        if let Some(id) = self.realm_ids.lock().await.get(realm) {
            return Ok(id.clone());
        }
        let found = match self.get(realm, &["admin", "realms", realm], &[]).await? {
            Some(rep) => rep.get("id").and_then(Value::as_str).map(RealmId::from),
            None => {
                return Err(KeycloakError::Config(format!(
                    "realm {realm:?} does not exist (keycloak.realms)"
                )))
            }
        };
        let found = match found {
            Some(id) => Some(id),
            None => self.realm_id_from_events(realm).await?,
        };
        let id = found.ok_or_else(|| {
            KeycloakError::Config(format!(
                "cannot learn the id of realm {realm:?}: give the service account the \
                 realm-management role view-realm"
            ))
        })?;
        self.realm_ids
            .lock()
            .await
            .insert(realm.clone(), id.clone());
        Ok(id)
    }

    /// A realm's id and session policy (`GET /admin/realms/{realm}`); `None` for the
    /// policy when Keycloak leaves the timeouts out (no view-realm role).
    pub async fn session_policy(
        &self,
        realm: &RealmName,
    ) -> Result<(RealmId, Option<SessionPolicy>), KeycloakError> {
        let path = ["admin", "realms", realm];
        let Some(rep) = self.get(realm, &path, &[]).await? else {
            return Err(KeycloakError::Config(format!(
                "realm {realm:?} does not exist (keycloak.realms)"
            )));
        };
        let policy =
            SessionPolicy::from_realm(&rep).map_err(|problem| KeycloakError::BadResponse {
                request: self.request_name(&path),
                problem,
            })?;
        Ok((self.realm_id(realm).await?, policy))
    }

    async fn realm_id_from_events(
        &self,
        realm: &RealmName,
    ) -> Result<Option<RealmId>, KeycloakError> {
        for stream in [EventStream::User, EventStream::Admin] {
            let query = [("first", "0".to_string()), ("max", "1".to_string())];
            let page = self
                .get(realm, &["admin", "realms", realm, stream.path()], &query)
                .await;
            // Without view-events this is refused too; the caller reports what to grant.
            if let Ok(Some(Value::Array(events))) = page {
                let id = events
                    .first()
                    .and_then(|e| e.get("realmId"))
                    .and_then(Value::as_str);
                if let Some(id) = id {
                    return Ok(Some(RealmId::from(id)));
                }
            }
        }
        Ok(None)
    }

    /// The configured realm with this id, if any.
    pub async fn realm_named(
        &self,
        realm_id: &RealmId,
    ) -> Result<Option<RealmName>, KeycloakError> {
        for realm in &self.realms {
            if self.realm_id(realm).await? == *realm_id {
                return Ok(Some(realm.clone()));
            }
        }
        Ok(None)
    }

    /// `GET …/users/{id}`; `None` if Keycloak has no such user.
    pub async fn user(
        &self,
        realm: &RealmName,
        user_id: &UserId,
    ) -> Result<Option<Value>, KeycloakError> {
        self.get(realm, &["admin", "realms", realm, "users", user_id], &[])
            .await
    }

    /// One page of `GET …/users`, full representations.
    pub async fn users(
        &self,
        realm: &RealmName,
        first: u64,
        max: u32,
    ) -> Result<Vec<Value>, KeycloakError> {
        let query = [
            ("first", first.to_string()),
            ("max", max.to_string()),
            ("briefRepresentation", "false".to_string()),
        ];
        let path = ["admin", "realms", realm, "users"];
        self.get_list(realm, &path, &query).await
    }

    /// `GET …/users/count` (for progress bars).
    pub async fn user_count(&self, realm: &RealmName) -> Result<u64, KeycloakError> {
        let path = ["admin", "realms", realm, "users", "count"];
        match self.get(realm, &path, &[]).await? {
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
            other => Err(KeycloakError::BadResponse {
                request: self.request_name(&path),
                problem: format!(
                    "expected a number, got {}",
                    other.as_ref().map_or("nothing", json_kind)
                ),
            }),
        }
    }

    /// The ids of a user's active sessions; `None` if Keycloak has no such user.
    pub async fn user_session_ids(
        &self,
        realm: &RealmName,
        user_id: &UserId,
    ) -> Result<Option<Vec<SessionId>>, KeycloakError> {
        #[derive(Deserialize)]
        struct Session {
            id: String,
        }
        let path = ["admin", "realms", realm, "users", user_id, "sessions"];
        let Some(answer) = self.get(realm, &path, &[]).await? else {
            return Ok(None);
        };
        let sessions: Vec<Session> =
            serde_json::from_value(answer).map_err(|e| KeycloakError::BadResponse {
                request: self.request_name(&path),
                problem: format!("expected a list of sessions with ids: {e}"),
            })?;
        Ok(Some(
            sessions.into_iter().map(|s| SessionId::new(s.id)).collect(),
        ))
    }

    /// `GET …/client-session-stats`: each client with active sessions, by its internal id,
    /// and how many (Keycloak gives the counts as strings). Needs view-realm.
    pub async fn client_session_counts(
        &self,
        realm: &RealmName,
    ) -> Result<Vec<ClientSessions>, KeycloakError> {
        let path = ["admin", "realms", realm, "client-session-stats"];
        let bad = |problem: String| KeycloakError::BadResponse {
            request: self.request_name(&path),
            problem,
        };
        let mut counts = Vec::new();
        for (index, entry) in self.get_list(realm, &path, &[]).await?.iter().enumerate() {
            let id = entry.get("id").and_then(Value::as_str);
            let active = match entry.get("active") {
                Some(Value::String(text)) => text.parse::<u64>().ok(),
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            };
            match (id, active) {
                (Some(id), Some(active)) => counts.push(ClientSessions {
                    id: id.to_string(),
                    active,
                }),
                _ => {
                    return Err(bad(format!(
                        "entry {index}: expected an id and an active session count"
                    )))
                }
            }
        }
        Ok(counts)
    }

    /// One page of `GET …/clients/{id}/user-sessions`: (session, user) pairs.
    pub async fn client_sessions(
        &self,
        realm: &RealmName,
        client: &str,
        first: u64,
        max: u32,
    ) -> Result<Vec<(SessionId, UserId)>, KeycloakError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Session {
            id: String,
            user_id: String,
        }
        let query = [("first", first.to_string()), ("max", max.to_string())];
        let path = ["admin", "realms", realm, "clients", client, "user-sessions"];
        let page = self.get_list(realm, &path, &query).await?;
        let sessions: Vec<Session> =
            serde_json::from_value(Value::Array(page)).map_err(|e| KeycloakError::BadResponse {
                request: self.request_name(&path),
                problem: format!("expected a list of sessions with ids and user ids: {e}"),
            })?;
        Ok(sessions
            .into_iter()
            .map(|s| (SessionId::new(s.id), UserId::new(s.user_id)))
            .collect())
    }

    /// Every group of the user (`GET …/users/{id}/groups`, paged, brief: id, name, path);
    /// `None` if Keycloak has no such user.
    pub async fn user_groups(
        &self,
        realm: &RealmName,
        user_id: &UserId,
    ) -> Result<Option<Vec<Value>>, KeycloakError> {
        let path = ["admin", "realms", realm, "users", user_id, "groups"];
        let max = self.page_size();
        let mut groups = Vec::new();
        loop {
            let query = [
                ("first", groups.len().to_string()),
                ("max", max.to_string()),
                ("briefRepresentation", "true".to_string()),
            ];
            let page = match self.get(realm, &path, &query).await? {
                None => return Ok(None),
                Some(Value::Array(page)) => page,
                Some(other) => {
                    return Err(KeycloakError::BadResponse {
                        request: self.request_name(&path),
                        problem: format!("expected a JSON array, got {}", json_kind(&other)),
                    })
                }
            };
            let full = page.len() >= max as usize;
            groups.extend(page);
            if !full {
                return Ok(Some(groups));
            }
        }
    }

    /// The user's effective roles, realm roles (`…/role-mappings/realm/composite`) or
    /// those of one client (`…/role-mappings/clients/{id}/composite`): held directly,
    /// through groups, composites or the realm's default roles. `None` if Keycloak has no
    /// such user (or client).
    pub async fn user_effective_roles(
        &self,
        realm: &RealmName,
        user_id: &UserId,
        client: Option<&ClientUuid>,
    ) -> Result<Option<Vec<Value>>, KeycloakError> {
        let base = ["admin", "realms", realm, "users", user_id, "role-mappings"];
        let path: Vec<&str> = match client {
            None => base.iter().copied().chain(["realm", "composite"]).collect(),
            Some(client) => base
                .iter()
                .copied()
                .chain(["clients", client.as_str(), "composite"])
                .collect(),
        };
        match self.get(realm, &path, &[]).await? {
            None => Ok(None),
            Some(Value::Array(roles)) => Ok(Some(roles)),
            Some(other) => Err(KeycloakError::BadResponse {
                request: self.request_name(&path),
                problem: format!("expected a JSON array, got {}", json_kind(&other)),
            }),
        }
    }

    /// One page of stored events, oldest first where Keycloak supports it (26.2+).
    /// `date_from`/`date_to` are `yyyy-MM-dd` days, which every supported version reads.
    pub async fn events(
        &self,
        realm: &RealmName,
        stream: EventStream,
        date_from: &str,
        date_to: Option<&str>,
        first: u64,
        max: u32,
    ) -> Result<Vec<Value>, KeycloakError> {
        let mut query = vec![
            ("first", first.to_string()),
            ("max", max.to_string()),
            ("direction", "asc".to_string()),
            ("dateFrom", date_from.to_string()),
        ];
        if let Some(to) = date_to {
            query.push(("dateTo", to.to_string()));
        }
        let path = ["admin", "realms", realm, stream.path()];
        self.get_list(realm, &path, &query).await
    }

    async fn get_list(
        &self,
        realm: &str,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, KeycloakError> {
        match self.get(realm, path, query).await? {
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(KeycloakError::BadResponse {
                request: self.request_name(path),
                problem: format!("expected a JSON array, got {}", json_kind(&other)),
            }),
            None => Err(KeycloakError::Refused {
                request: self.request_name(path),
                status: StatusCode::NOT_FOUND.as_u16(),
                message: format!("realm {realm:?} not found"),
            }),
        }
    }

    /// A request that got no (whole) answer: connection refused, reset, timed out.
    fn transport_error(&self, request: &str, error: &reqwest::Error) -> KeycloakError {
        KeycloakError::unavailable(request, describe_send_error(error, self.timeout))
    }

    /// How errors name a GET of `segments`: method and path, never the query.
    fn request_name(&self, segments: &[&str]) -> String {
        format!("GET {}", self.endpoint(segments).path())
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A GET with the realm's token; `None` on 404. Retries as the module says.
    async fn get(
        &self,
        realm: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Option<Value>, KeycloakError> {
        let mut url = self.endpoint(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.request_name(segments);
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let renewed = AtomicBool::new(false);
        let policy = Policy::calls(self.retry_max).starting_at(Duration::from_millis(200));
        let outcome = policy.retry(
            || async {
                attempts.fetch_add(1, Ordering::Relaxed);
                let token = self.token(realm).await.map_err(into_verdict)?;
                let sent = self
                    .http
                    .get(url.clone())
                    .bearer_auth(token.expose_secret())
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => {
                        return Err(Verdict::Retry(self.transport_error(&request, &error)))
                    }
                };
                let status = response.status();
                if status.is_success() {
                    let body = response.bytes().await.map_err(|e| {
                        Verdict::Retry(self.transport_error(&request, &e))
                    })?;
                    return serde_json::from_slice(&body).map(Some).map_err(|e| {
                        Verdict::Stop(KeycloakError::BadResponse {
                            request: request.clone(),
                            problem: format!("body is not JSON ({e})"),
                        })
                    });
                }
                if status == StatusCode::UNAUTHORIZED && !renewed.swap(true, Ordering::Relaxed) {
                    // The token may have been revoked or the server restarted: log in again.
                    self.forget_token(realm, &token).await;
                    let error = KeycloakError::unavailable(&request, "401 Unauthorized".into());
                    return Err(Verdict::RetryAfter(error, Duration::ZERO));
                }
                self.failure(&request, response, started).await
            },
            |error: &KeycloakError, wait: Duration| {
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "Keycloak request failed; retrying");
            },
        )
        .await;
        outcome.map_err(|error| error.gave_up(attempts.into_inner(), started.elapsed()))
    }

    /// What an unsuccessful answer means: nothing there (404), a wait (429, 5xx), or a
    /// final refusal with Keycloak's own message.
    async fn failure(
        &self,
        request: &str,
        response: reqwest::Response,
        started: Instant,
    ) -> Result<Option<Value>, Verdict<KeycloakError>> {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let message = error_message(&response.bytes().await.unwrap_or_default());
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                let reason = format!("429 Too Many Requests (Retry-After {wait:?})");
                let error = KeycloakError::unavailable(request, reason);
                if started.elapsed() + wait > self.retry_max {
                    Err(Verdict::Stop(error))
                } else {
                    Err(Verdict::RetryAfter(error, wait))
                }
            }
            s if s.is_server_error() => Err(Verdict::Retry(KeycloakError::unavailable(
                request,
                format!("{s}{}", error::detail(&message)),
            ))),
            s => Err(Verdict::Stop(KeycloakError::Refused {
                request: request.to_string(),
                status: s.as_u16(),
                message,
            })),
        }
    }

    /// The cached token of the realm the service account logs in to, renewed if due.
    async fn token(&self, realm: &str) -> Result<SecretString, KeycloakError> {
        let login_realm = self.token_realm.as_deref().unwrap_or(realm);
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(login_realm) {
            if Instant::now() < token.renew_at {
                return Ok(token.value.clone());
            }
        }
        let token = self.log_in(login_realm).await?;
        let value = token.value.clone();
        tokens.insert(login_realm.to_string(), token);
        Ok(value)
    }

    async fn forget_token(&self, realm: &str, rejected: &SecretString) {
        let login_realm = self.token_realm.as_deref().unwrap_or(realm);
        let mut tokens = self.tokens.lock().await;
        if tokens
            .get(login_realm)
            .is_some_and(|t| t.value.expose_secret() == rejected.expose_secret())
        {
            tokens.remove(login_realm);
        }
    }

    /// `POST /realms/{realm}/protocol/openid-connect/token`, client credentials.
    async fn log_in(&self, realm: &str) -> Result<AccessToken, KeycloakError> {
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: SecretString,
            expires_in: u64,
        }
        let url = self.endpoint(&["realms", realm, "protocol", "openid-connect", "token"]);
        let request = format!("POST {} (client {})", url.path(), self.client_id);
        let sent = self
            .http
            .post(url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| self.transport_error(&request, &e))?;
        let status = sent.status();
        let body = sent
            .bytes()
            .await
            .map_err(|e| self.transport_error(&request, &e))?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(KeycloakError::unavailable(
                &request,
                format!("{status}{}", error::detail(&error_message(&body))),
            ));
        }
        if !status.is_success() {
            return Err(KeycloakError::Refused {
                request,
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        // The body holds the token: its parse error is described without quoting it.
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| KeycloakError::BadResponse {
                request: request.clone(),
                problem: format!(
                    "expected access_token and expires_in (error at line {} column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let margin = RENEW_MARGIN.min(lifetime / 2);
        Ok(AccessToken {
            value: answer.access_token,
            renew_at: Instant::now() + lifetime - margin,
        })
    }
}

fn into_verdict(error: KeycloakError) -> Verdict<KeycloakError> {
    if error.is_transient() {
        Verdict::Retry(error)
    } else {
        Verdict::Stop(error)
    }
}

fn describe_send_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut text = if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Keycloak's own explanation from an error body, shortened.
fn error_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        ["errorMessage", "error_description", "error"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
    });
    let message = from_json.unwrap_or_else(|| text.trim().to_string());
    let mut short: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX)
        .collect();
    if message.chars().count() > MAX {
        short.push('…');
    }
    short
}
