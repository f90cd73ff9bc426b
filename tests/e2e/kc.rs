//! The real Keycloak of `scripts/keycloak.sh`, driven over its own HTTP endpoints: the
//! Admin REST API (as the master realm's admin) and the OpenID Connect endpoints (as the
//! test realm's clients and users). Each test makes a fresh realm, so tests run in parallel.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

pub const WEB_SECRET: &str = "web-secret-e2e";
pub const SYNC_SECRET: &str = "sync-secret-e2e";
pub const PASSWORD: &str = "Pa55word!e2e";

pub fn keycloak_url() -> String {
    std::env::var("KEYCLOAK_URL").unwrap_or_else(|_| {
        panic!("KEYCLOAK_URL is not set: start Keycloak with scripts/keycloak.sh up and eval \"$(scripts/keycloak.sh env)\"")
    })
}

fn admin_credentials() -> (String, String) {
    (
        std::env::var("KEYCLOAK_ADMIN_USER").unwrap_or_else(|_| "admin".into()),
        std::env::var("KEYCLOAK_ADMIN_PASSWORD").unwrap_or_else(|_| "admin".into()),
    )
}

/// A response's status and JSON body (null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub location: Option<String>,
}

impl Answer {
    pub fn ok(self, what: &str) -> Value {
        assert!(
            self.status.is_success(),
            "{what}: {} {}",
            self.status,
            self.body
        );
        self.body
    }

    /// The id at the end of a `Location` header (what Keycloak answers a creation with).
    pub fn created_id(&self, what: &str) -> String {
        assert_eq!(self.status, StatusCode::CREATED, "{what}: {}", self.body);
        let location = self.location.as_deref().expect("Location");
        location.rsplit('/').next().expect("id").to_string()
    }
}

/// One test's realm: made with the keycloak-sync listener, stored user and admin events
/// (with representations), three clients and a service account for keycloak-sync.
pub struct Realm {
    pub name: String,
    pub id: String,
    pub url: String,
    http: Client,
}

impl Realm {
    /// A realm name no other test uses; bind the test's queue to `kc.<name>.#` before
    /// [`Realm::create`], so no event of the realm is ever unroutable.
    pub fn fresh_name() -> String {
        format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
    }

    /// With realm attributes set at creation (`extra` is merged into the representation),
    /// in the Keycloak at `url`.
    pub async fn create_with(url: &str, name: &str, extra: Value) -> Realm {
        let url = url.to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No pooled connections: a restarted Keycloak would leave them dead.
        let http = Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let realm = Realm {
            name: name.to_string(),
            id: String::new(),
            url,
            http,
        };
        let mut representation = json!({
            "realm": name,
            "enabled": true,
            "eventsEnabled": true,
            "eventsListeners": ["jboss-logging", "keycloak-sync"],
            "adminEventsEnabled": true,
            "adminEventsDetailsEnabled": true,
            "registrationAllowed": true,
            "clients": [
                {"clientId": "web", "enabled": true, "publicClient": false, "secret": WEB_SECRET,
                 "directAccessGrantsEnabled": true, "standardFlowEnabled": true,
                 "redirectUris": ["http://127.0.0.1/*"], "consentRequired": false},
                {"clientId": "mobile", "enabled": true, "publicClient": true,
                 "directAccessGrantsEnabled": true, "redirectUris": ["http://127.0.0.1/*"]},
                {"clientId": "sync", "enabled": true, "publicClient": false, "secret": SYNC_SECRET,
                 "serviceAccountsEnabled": true, "standardFlowEnabled": false,
                 "directAccessGrantsEnabled": false}
            ],
            "users": [
                {"username": "service-account-sync", "enabled": true, "serviceAccountClientId": "sync",
                 "clientRoles": {"realm-management": ["view-users", "query-users", "view-events", "view-realm", "view-clients"]}}
            ]
        });
        if let (Some(base), Some(more)) = (representation.as_object_mut(), extra.as_object()) {
            for (key, value) in more {
                base.insert(key.clone(), value.clone());
            }
        }
        realm
            .admin_at(Method::POST, "/admin/realms", Some(representation))
            .await
            .ok("create realm");
        let info = realm.admin(Method::GET, "", None).await.ok("read realm");
        Realm {
            id: info["id"].as_str().expect("realm id").to_string(),
            ..realm
        }
    }

    /// The daemon's Keycloak settings for this realm (Admin API through the `sync` client).
    pub fn daemon_settings(&self) -> Vec<(String, String)> {
        vec![
            ("KEYCLOAK_SYNC__KEYCLOAK__URL".into(), self.url.clone()),
            ("KEYCLOAK_SYNC__KEYCLOAK__REALMS".into(), self.name.clone()),
            ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID".into(), "sync".into()),
            (
                "KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET".into(),
                SYNC_SECRET.into(),
            ),
        ]
    }

    async fn admin_token(&self) -> String {
        let body = self
            .admin_token_answer()
            .await
            .expect("admin token request");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no admin token: {body}"))
            .to_string()
    }

    /// The master realm's answer to the admin's password grant; None if Keycloak did not
    /// answer with JSON (killed, restarting).
    async fn admin_token_answer(&self) -> Option<Value> {
        let (user, password) = admin_credentials();
        self.http
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.url
            ))
            .timeout(Duration::from_secs(10))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", user.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    async fn admin_at(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let token = self.admin_token().await;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            location,
        }
    }

    /// An Admin API call on this realm: `path` after `/admin/realms/{realm}`.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.admin_at(method, &format!("/admin/realms/{}{path}", self.name), body)
            .await
    }

    /// The server's version as `(major, minor)`, from `/admin/serverinfo`.
    pub async fn server_version(&self) -> (u32, u32) {
        let info = self
            .admin_at(Method::GET, "/admin/serverinfo", None)
            .await
            .ok("server info");
        let version = info["systemInfo"]["version"].as_str().unwrap_or_default();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Creates a user with a password; returns its id.
    pub async fn create_user(&self, username: &str, email: &str) -> String {
        let answer = self
            .admin(
                Method::POST,
                "/users",
                Some(json!({
                    "username": username, "email": email, "enabled": true, "emailVerified": false,
                    "firstName": "First", "lastName": username,
                    "credentials": [{"type": "password", "value": PASSWORD, "temporary": false}]
                })),
            )
            .await;
        answer.created_id("create user")
    }

    pub async fn client_uuid(&self, client_id: &str) -> String {
        let found = self
            .admin(Method::GET, &format!("/clients?clientId={client_id}"), None)
            .await
            .ok("find client");
        found[0]["id"].as_str().expect("client uuid").to_string()
    }

    /// Keycloak's users (service accounts excluded, as the Admin API lists them).
    pub async fn users(&self) -> Vec<Value> {
        let list = self
            .admin(
                Method::GET,
                "/users?max=1000&briefRepresentation=false",
                None,
            )
            .await
            .ok("list users");
        list.as_array().cloned().unwrap_or_default()
    }

    /// The ids of a user's live online sessions.
    pub async fn session_ids(&self, user_id: &str) -> Vec<String> {
        self.ids(&format!("/users/{user_id}/sessions")).await
    }

    /// The ids of a user's live sessions, online or offline (of the realm's two
    /// user-facing clients), as the tables keep them.
    pub async fn live_session_ids(&self, user_id: &str) -> Vec<String> {
        let mut ids = self.session_ids(user_id).await;
        for client in ["web", "mobile"] {
            let uuid = self.client_uuid(client).await;
            ids.extend(
                self.ids(&format!("/users/{user_id}/offline-sessions/{uuid}"))
                    .await,
            );
        }
        ids.sort();
        ids.dedup();
        ids
    }

    async fn ids(&self, path: &str) -> Vec<String> {
        let list = self.admin(Method::GET, path, None).await.ok(path);
        let mut ids: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    fn token_url(&self) -> String {
        format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.url, self.name
        )
    }

    async fn form(&self, url: String, form: &[(&str, &str)]) -> Answer {
        // The client's own timeout.
        self.send_form(url, form, Duration::from_secs(60))
            .await
            .expect("token endpoint")
    }

    /// A form posted to Keycloak; None when no answer came (Keycloak killed or restarting).
    async fn send_form(
        &self,
        url: String,
        form: &[(&str, &str)],
        timeout: Duration,
    ) -> Option<Answer> {
        let response = self
            .http
            .post(url)
            .timeout(timeout)
            .form(form)
            .send()
            .await
            .ok()?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Some(Answer {
            status,
            body,
            location: None,
        })
    }

    /// A password-grant login through `client` (`web` is confidential, `mobile` public);
    /// `offline` asks for an offline token.
    pub async fn login(&self, client: &str, username: &str, offline: bool) -> Tokens {
        let answer = self.try_login(client, username, PASSWORD, offline).await;
        Tokens::from(answer.ok(&format!("login {username} via {client}")))
    }

    pub async fn try_login(
        &self,
        client: &str,
        username: &str,
        password: &str,
        offline: bool,
    ) -> Answer {
        // The client's own timeout.
        self.login_request(client, username, password, offline, Duration::from_secs(60))
            .await
            .expect("token endpoint")
    }

    /// [`Realm::try_login`]'s request, which may get no answer (None).
    async fn login_request(
        &self,
        client: &str,
        username: &str,
        password: &str,
        offline: bool,
        timeout: Duration,
    ) -> Option<Answer> {
        let scope = if offline {
            "openid offline_access"
        } else {
            "openid"
        };
        let form = [
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("scope", scope),
        ];
        self.send_form(self.token_url(), &as_client(client, &form), timeout)
            .await
    }

    pub async fn refresh(&self, client: &str, tokens: &Tokens) -> Answer {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh.as_str()),
        ];
        self.form(self.token_url(), &as_client(client, &form)).await
    }

    /// The OpenID Connect logout endpoint with the refresh token, as an application's
    /// back end logs its user out.
    pub async fn logout(&self, client: &str, tokens: &Tokens) {
        let form = as_client(client, &[("refresh_token", tokens.refresh.as_str())]);
        let answer = self
            .form(
                format!(
                    "{}/realms/{}/protocol/openid-connect/logout",
                    self.url, self.name
                ),
                &form,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "logout: {}",
            answer.body
        );
    }

    /// Deletes the realm (its events stay in the test's database).
    /// A login that may fail (Keycloak killed or restarting): the session id of a 200, else
    /// None. Only what Keycloak answered counts.
    pub async fn attempt_login(&self, username: &str) -> Option<String> {
        let answer = self
            .login_request("web", username, PASSWORD, false, Duration::from_secs(10))
            .await?;
        (answer.status == StatusCode::OK && !answer.body.is_null())
            .then(|| Tokens::from(answer.body).session_id)
    }

    /// A user creation that may fail as [`Realm::attempt_login`] may: the id of a 201.
    pub async fn attempt_create_user(&self, username: &str) -> Option<String> {
        let token = self.admin_token_answer().await?;
        let response = self
            .http
            .post(format!("{}/admin/realms/{}/users", self.url, self.name))
            .timeout(Duration::from_secs(10))
            .bearer_auth(token["access_token"].as_str()?)
            .json(&json!({"username": username, "enabled": true}))
            .send()
            .await
            .ok()?;
        if response.status() != StatusCode::CREATED {
            return None;
        }
        let location = response.headers().get("location")?.to_str().ok()?;
        location.rsplit('/').next().map(str::to_string)
    }

    /// How many events of `kind` Keycloak's event store holds for `user_id`: what committed.
    pub async fn stored_events(&self, kind: &str, user_id: &str) -> usize {
        let events = self
            .admin(
                Method::GET,
                &format!("/events?type={kind}&user={user_id}&max=100000"),
                None,
            )
            .await
            .ok("stored events");
        events.as_array().map(Vec::len).unwrap_or(0)
    }

    /// The same Keycloak realm seen through another node at `url` (sharing its database).
    pub fn through(&self, url: &str) -> Realm {
        Realm {
            name: self.name.clone(),
            id: self.id.clone(),
            url: url.to_string(),
            http: self.http.clone(),
        }
    }

    pub async fn delete(&self) {
        let _ = self.admin(Method::DELETE, "", None).await;
    }
}

/// `form` sent as `client`: its id, and its secret for the confidential `web`.
fn as_client<'a>(client: &'a str, form: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut sent = vec![("client_id", client)];
    if client == "web" {
        sent.push(("client_secret", WEB_SECRET));
    }
    sent.extend_from_slice(form);
    sent
}

/// What a login answered.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

impl From<Value> for Tokens {
    fn from(body: Value) -> Tokens {
        Tokens {
            access: body["access_token"].as_str().expect("access token").into(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh token")
                .into(),
            session_id: body["session_state"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| claim(body["access_token"].as_str().unwrap_or(""), "sid")),
        }
    }
}

/// A claim of a JWT's payload (no verification: the test reads its own tokens).
pub fn claim(jwt: &str, name: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap_or("");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match &value[name] {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
