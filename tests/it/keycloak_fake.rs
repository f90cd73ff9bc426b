//! An HTTP fake of Keycloak's Admin API serving the documented shapes (GUIDE §2.3):
//! client-credentials tokens, realm, users (paged), user sessions, stored user and admin
//! events (paged, day windows, oldest first). State is shared with the test, which
//! changes it between calls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use keycloak_sync::config::KeycloakSettings;
use keycloak_sync::core::ids::RealmName;
use keycloak_sync::keycloak::AdminClient;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const REALM: &str = "acme";

/// [`REALM`] as the Admin API client takes it.
pub fn realm() -> RealmName {
    RealmName::from(REALM)
}
pub const REALM_ID: &str = "0c6f5d2e-acme-realm-id";
pub const CLIENT_ID: &str = "keycloak-sync";
pub const CLIENT_SECRET: &str = "s3cret-never-printed";
/// Internal id of the client `web`.
pub const WEB_CLIENT: &str = "5b0e-web-client-id";

#[derive(Default)]
pub struct FakeState {
    /// In listing order.
    pub users: Vec<Value>,
    /// Found by id but left out of the listing (as if created while it was paged).
    pub unlisted: HashSet<String>,
    pub sessions: HashMap<String, Vec<String>>,
    /// Sessions (ids) no client session holds: listed per user, never per client.
    pub clientless: HashSet<String>,
    /// `client-session-stats` answers 403 (a service account without view-realm).
    pub no_view_realm: bool,
    pub events: Vec<Value>,
    pub admin_events: Vec<Value>,
    /// Fields `GET /admin/realms/{realm}` adds to the realm's id and name (its session
    /// timeouts, when the service account may view the realm).
    pub realm_fields: serde_json::Map<String, Value>,
    /// Every admin request answers 503.
    pub down: bool,
    /// Event-list requests at or past this offset answer 500.
    pub fail_events_from: Option<u64>,
    /// Delay of `GET …/users/{id}`.
    pub user_delay: Duration,
    tokens_issued: u32,
    /// Every request, as `METHOD path?query`.
    pub requests: Vec<String>,
    /// Per user: its groups (`GET …/users/{id}/groups`, brief representations).
    pub groups: HashMap<String, Vec<Value>>,
    /// Per user: its effective realm roles (`…/role-mappings/realm/composite`).
    pub realm_roles: HashMap<String, Vec<Value>>,
    /// Per (user, client id): its effective client roles
    /// (`…/role-mappings/clients/{client}/composite`).
    pub client_roles: HashMap<(String, String), Vec<Value>>,
}

pub struct FakeKeycloak {
    pub server: MockServer,
    state: Arc<Mutex<FakeState>>,
}

impl FakeKeycloak {
    pub async fn start() -> FakeKeycloak {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(FakeState::default()));
        Mock::given(any())
            .respond_with(Responder {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        FakeKeycloak { server, state }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    pub fn settings(&self, page_size: u32) -> KeycloakSettings {
        settings_for(&self.server.uri(), page_size)
    }

    pub fn client(&self, page_size: u32) -> Arc<AdminClient> {
        Arc::new(AdminClient::new(&self.settings(page_size)).expect("client"))
    }

    /// The variables that point a `keycloak-sync` process at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEYCLOAK_SYNC__KEYCLOAK__URL", self.server.uri()),
            ("KEYCLOAK_SYNC__KEYCLOAK__REALMS", REALM.to_string()),
            ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID", CLIENT_ID.to_string()),
            (
                "KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET",
                CLIENT_SECRET.to_string(),
            ),
        ]
    }

    /// Requests whose path ends with `suffix`, in order.
    pub fn requests_to(&self, suffix: &str) -> Vec<String> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.split('?').next().is_some_and(|p| p.ends_with(suffix)))
            .cloned()
            .collect()
    }
}

pub fn settings_for(url: &str, page_size: u32) -> KeycloakSettings {
    KeycloakSettings {
        url: Some(url.parse().expect("url")),
        realms: vec![realm()],
        client_id: Some(CLIENT_ID.to_string()),
        client_secret: Some(CLIENT_SECRET.to_string().into()),
        token_realm: None,
        timeout: Duration::from_secs(5),
        retry_max: Duration::from_secs(2),
        page_size,
        enrich: true,
        enrich_concurrency: 2,
        ca_file: None,
    }
}

/// A `UserRepresentation` as `GET …/users/{id}` returns it.
pub fn user_rep(id: &str, username: &str, first: &str, last: &str) -> Value {
    json!({
        "id": id,
        "username": username,
        "firstName": first,
        "lastName": last,
        "email": format!("{username}@example.com"),
        "emailVerified": true,
        "enabled": true,
        "createdTimestamp": 1_700_000_000_000i64,
        "attributes": {"department": ["research"]},
        "totp": false,
        "disableableCredentialTypes": [],
        "requiredActions": [],
        "notBefore": 0
    })
}

struct Responder {
    state: Arc<Mutex<FakeState>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(mut state) = self.state.lock() else {
            return ResponseTemplate::new(500);
        };
        let path = request.url.path().to_string();
        let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        state.requests.push(match request.url.query() {
            Some(q) => format!("{} {path}?{q}", request.method),
            None => format!("{} {path}", request.method),
        });
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let ["realms", REALM, "protocol", "openid-connect", "token"] = segments.as_slice() {
            return token(&mut state, request);
        }
        let Some(["admin", "realms", REALM, rest @ ..]) = Some(segments.as_slice()) else {
            return ResponseTemplate::new(404).set_body_json(json!({"error": "Realm not found."}));
        };
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bearer.starts_with("Bearer token-") {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"error": "HTTP 401 Unauthorized"}));
        }
        if state.down {
            return ResponseTemplate::new(503).set_body_string("Service Unavailable");
        }
        let number = |key: &str, default: u64| {
            query
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let page = |items: Vec<&Value>| {
            let first = number("first", 0) as usize;
            let max = number("max", 100) as usize;
            let slice: Vec<Value> = items.into_iter().skip(first).take(max).cloned().collect();
            ResponseTemplate::new(200).set_body_json(Value::Array(slice))
        };
        match rest {
            [] => {
                let mut realm = json!({"id": REALM_ID, "realm": REALM});
                if let Value::Object(fields) = &mut realm {
                    fields.extend(state.realm_fields.clone());
                }
                ResponseTemplate::new(200).set_body_json(realm)
            }
            ["users"] => page(
                state
                    .users
                    .iter()
                    .filter(|u| !state.unlisted.contains(id_of(u)))
                    .collect(),
            ),
            ["users", "count"] => {
                ResponseTemplate::new(200).set_body_json(json!(state.users.len()))
            }
            ["users", id] => match state.users.iter().find(|u| id_of(u) == *id) {
                Some(user) => ResponseTemplate::new(200)
                    .set_body_json(user.clone())
                    .set_delay(state.user_delay),
                None => {
                    ResponseTemplate::new(404).set_body_json(json!({"error": "User not found"}))
                }
            },
            ["users", id, "sessions"] => {
                if !state.users.iter().any(|u| id_of(u) == *id) {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({"error": "User not found"}));
                }
                let sessions: Vec<Value> = state
                    .sessions
                    .get(*id)
                    .into_iter()
                    .flatten()
                    .map(|s| json!({"id": s, "userId": id, "ipAddress": "203.0.113.9", "start": 1, "lastAccess": 2, "clients": {}}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(Value::Array(sessions))
            }
            ["users", id, rest @ ..]
                if matches!(
                    rest,
                    ["groups"]
                        | ["role-mappings", "realm", "composite"]
                        | ["role-mappings", "clients", _, "composite"]
                ) =>
            {
                if !state.users.iter().any(|u| id_of(u) == *id) {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({"error": "User not found"}));
                }
                match rest {
                    ["groups"] => page(state.groups.get(*id).into_iter().flatten().collect()),
                    ["role-mappings", "realm", "composite"] => ResponseTemplate::new(200)
                        .set_body_json(json!(state
                            .realm_roles
                            .get(*id)
                            .cloned()
                            .unwrap_or_default())),
                    ["role-mappings", "clients", client, "composite"] => {
                        let key = (id.to_string(), client.to_string());
                        ResponseTemplate::new(200).set_body_json(json!(state
                            .client_roles
                            .get(&key)
                            .cloned()
                            .unwrap_or_default()))
                    }
                    _ => ResponseTemplate::new(404),
                }
            }
            // Every session with a client session belongs to client `web` (internal id
            // WEB_CLIENT): its count as a string, as RealmAdminResource gives it.
            ["client-session-stats"] => {
                if state.no_view_realm {
                    return ResponseTemplate::new(403)
                        .set_body_json(json!({"error": "HTTP 403 Forbidden"}));
                }
                let active = client_sessions(&state).len();
                let stats = if active == 0 {
                    json!([])
                } else {
                    json!([{"id": WEB_CLIENT, "clientId": "web", "active": active.to_string(), "offline": "0"}])
                };
                ResponseTemplate::new(200).set_body_json(stats)
            }
            ["clients", WEB_CLIENT, "user-sessions"] => {
                let sessions: Vec<Value> = client_sessions(&state)
                    .into_iter()
                    .map(|(user, s)| json!({"id": s, "username": user, "userId": user, "ipAddress": "203.0.113.9", "start": 1, "lastAccess": 2, "clients": {WEB_CLIENT: "web"}}))
                    .collect();
                page(sessions.iter().collect())
            }
            [list @ ("events" | "admin-events")] => {
                if state
                    .fail_events_from
                    .is_some_and(|from| number("first", 0) >= from)
                {
                    return ResponseTemplate::new(500)
                        .set_body_json(json!({"error": "unknown_error"}));
                }
                let source = if *list == "events" {
                    &state.events
                } else {
                    &state.admin_events
                };
                let from = query.get("dateFrom").map(|d| day_start(d));
                let to = query.get("dateTo").map(|d| day_start(d) + 86_400_000);
                let mut items: Vec<&Value> = source
                    .iter()
                    .filter(|e| {
                        let t = e["time"].as_i64().unwrap_or_default();
                        from.is_none_or(|f| t >= f) && to.is_none_or(|u| t < u)
                    })
                    .collect();
                items.sort_by_key(|e| e["time"].as_i64());
                if query.get("direction").map(String::as_str) != Some("asc") {
                    items.reverse();
                }
                page(items)
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({"error": "Not Found"})),
        }
    }
}

/// (user, session) of every session a client session holds, in a stable order.
fn client_sessions(state: &FakeState) -> Vec<(String, String)> {
    let mut sessions: Vec<(String, String)> = state
        .sessions
        .iter()
        .flat_map(|(user, ids)| ids.iter().map(move |s| (user.clone(), s.clone())))
        .filter(|(_, s)| !state.clientless.contains(s))
        .collect();
    sessions.sort();
    sessions
}

fn token(state: &mut FakeState, request: &Request) -> ResponseTemplate {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let given = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = String::from_utf8_lossy(&request.body);
    if given != expected || !body.contains("grant_type=client_credentials") {
        return ResponseTemplate::new(401).set_body_json(json!({
            "error": "unauthorized_client",
            "error_description": "Invalid client or Invalid client credentials"
        }));
    }
    state.tokens_issued += 1;
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": format!("token-{}", state.tokens_issued),
        "expires_in": 300,
        "token_type": "Bearer",
        "scope": "profile email"
    }))
}

fn id_of(user: &Value) -> &str {
    user["id"].as_str().unwrap_or_default()
}

/// Midnight UTC of a `yyyy-MM-dd` day, in epoch ms.
fn day_start(day: &str) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, format)
        .map(|d| (d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or_default()
}
