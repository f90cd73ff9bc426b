//! Keycloak's Admin REST API (GUIDE §2.3): the adapter behind enrichment, reconcile and
//! backfill. It reads with the service account's token ([`ServiceAccount`], shared by
//! every clone) and retries what may pass by itself within a time budget. Answers are
//! handed out as JSON values: reading them is the pure core's job
//! (`event::read_admin_user`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::error::KeycloakError;
use super::oidc::{ServiceAccount, TokenEndpoint};
use super::transport::{into_verdict, Transport};
use crate::config::KeycloakSettings;
use crate::core::event::json_kind;
use crate::core::event::EventStream;
use crate::core::ids::{ClientUuid, RealmId, RealmName, SessionId, UserId};
use crate::core::session_policy::SessionPolicy;
use crate::retry::{Policy, Verdict};

/// A client (by Keycloak's internal id) and its number of active sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSessions {
    pub id: String,
    pub active: u64,
}

/// The Admin API client. Cheap to clone: clones share the connection pool, the service
/// account's tokens and the realm ids learnt. Its `Debug` shows neither the client
/// secret nor tokens.
#[derive(Clone)]
pub struct AdminClient {
    transport: Transport,
    account: Arc<ServiceAccount>,
    realms: Vec<RealmName>,
    page_size: u32,
    retry_max: Duration,
    /// Realm name → realm id, learnt once.
    realm_ids: Arc<Mutex<HashMap<RealmName, RealmId>>>,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.transport.base().as_str())
            .field("client_id", &self.account.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("realms", &self.realms)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the configured Keycloak; fails if `keycloak.url`, the client id or
    /// its secret is not set.
    pub fn new(settings: &KeycloakSettings) -> Result<Self, KeycloakError> {
        let transport = Transport::new(settings)?;
        Self::with_transport(settings, transport)
    }

    /// Over an existing transport (one connection pool per process).
    pub fn with_transport(
        settings: &KeycloakSettings,
        transport: Transport,
    ) -> Result<Self, KeycloakError> {
        let missing = |key: &str| KeycloakError::Config(format!("keycloak.{key} is not set"));
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
        let account = ServiceAccount::new(
            TokenEndpoint::new(transport.clone()),
            client_id,
            client_secret,
            settings.token_realm.clone(),
        );
        Ok(AdminClient {
            transport,
            account,
            realms: settings.realms.clone(),
            page_size: settings.page_size,
            retry_max: settings.retry_max,
            realm_ids: Arc::default(),
        })
    }

    /// The same client (sharing tokens and connections) with another retry budget (the
    /// enrichment worker keeps it short and retries through its queue instead).
    pub fn with_retry_max(&self, retry_max: Duration) -> Self {
        AdminClient {
            retry_max,
            ..self.clone()
        }
    }

    /// The same client (sharing tokens and connections) for other realms.
    pub fn limited_to(&self, realms: Vec<RealmName>) -> Self {
        AdminClient {
            realms,
            ..self.clone()
        }
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
                request: self.transport.request_name(&path),
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
                request: self.transport.request_name(&path),
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
                request: self.transport.request_name(&path),
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
            request: self.transport.request_name(&path),
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
                request: self.transport.request_name(&path),
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
                        request: self.transport.request_name(&path),
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
                request: self.transport.request_name(&path),
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
                request: self.transport.request_name(path),
                problem: format!("expected a JSON array, got {}", json_kind(&other)),
            }),
            None => Err(KeycloakError::Refused {
                request: self.transport.request_name(path),
                status: StatusCode::NOT_FOUND.as_u16(),
                message: format!("realm {realm:?} not found"),
            }),
        }
    }

    /// A GET with the realm's token; `None` on 404. Retries as the module says.
    async fn get(
        &self,
        realm: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Option<Value>, KeycloakError> {
        let mut url = self.transport.endpoint(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.transport.request_name(segments);
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let renewed = AtomicBool::new(false);
        let policy = Policy::calls(self.retry_max).starting_at(Duration::from_millis(200));
        let outcome = policy.retry(
            || async {
                attempts.fetch_add(1, Ordering::Relaxed);
                let token = self.account.token(realm).await.map_err(into_verdict)?;
                let sent = self
                    .transport
                    .http
                    .get(url.clone())
                    .bearer_auth(token.expose_secret())
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => {
                        return Err(Verdict::Retry(self.transport.transport_error(&request, &error)))
                    }
                };
                let status = response.status();
                if status.is_success() {
                    let body = response.bytes().await.map_err(|e| {
                        Verdict::Retry(self.transport.transport_error(&request, &e))
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
                    self.account.forget_token(realm, &token).await;
                    let error = KeycloakError::unavailable(&request, "401 Unauthorized".into());
                    return Err(Verdict::RetryAfter(error, Duration::ZERO));
                }
                self.transport
                    .failure(&request, response, started, self.retry_max)
                    .await
            },
            |error: &KeycloakError, wait: Duration| {
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "Keycloak request failed; retrying");
            },
        )
        .await;
        outcome.map_err(|error| error.gave_up(attempts.into_inner(), started.elapsed()))
    }
}
