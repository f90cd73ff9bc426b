//! The Admin API client against an HTTP fake: tokens, retries, timeouts, errors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use keycloak_sync::keycloak::{AdminClient, KeycloakError};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::keycloak_fake::{realm, settings_for, user_rep, FakeKeycloak, CLIENT_SECRET};

const TOKEN_PATH: &str = "/realms/acme/protocol/openid-connect/token";
const USER_PATH: &str = "/admin/realms/acme/users/u1";

/// Issues `token-1`, `token-2`… valid for `expires_in` seconds.
struct Tokens {
    issued: AtomicU32,
    expires_in: u64,
}

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("token-{n}"), "expires_in": self.expires_in, "token_type": "Bearer"
        }))
    }
}

async fn server_with_tokens(expires_in: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(Tokens {
            issued: AtomicU32::new(0),
            expires_in,
        })
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer, timeout: Duration, retry_max: Duration) -> AdminClient {
    let mut settings = settings_for(&server.uri(), 100);
    settings.timeout = timeout;
    settings.retry_max = retry_max;
    AdminClient::new(&settings).expect("client")
}

async fn count(server: &MockServer, wanted: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

fn ok_user() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(user_rep("u1", "alice", "Alice", "Liddell"))
}

#[tokio::test]
async fn the_token_is_cached_and_renewed_before_it_expires() {
    // 1 s lifetime: renewed after half of it.
    let server = server_with_tokens(1).await;
    Mock::given(path(USER_PATH))
        .respond_with(ok_user())
        .mount(&server)
        .await;
    let client = client(&server, Duration::from_secs(5), Duration::from_secs(2));
    for _ in 0..3 {
        assert!(client
            .user(&realm(), &"u1".into())
            .await
            .expect("user")
            .is_some());
    }
    assert_eq!(
        count(&server, TOKEN_PATH).await,
        1,
        "one login for three requests"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(client
        .user(&realm(), &"u1".into())
        .await
        .expect("user")
        .is_some());
    assert_eq!(
        count(&server, TOKEN_PATH).await,
        2,
        "renewed once it was due"
    );
    let auth: Vec<String> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == USER_PATH)
        .filter_map(|r| {
            r.headers
                .get("authorization")?
                .to_str()
                .ok()
                .map(String::from)
        })
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer token-1",
            "Bearer token-1",
            "Bearer token-1",
            "Bearer token-2"
        ]
    );
}

/// Rejects `token-1` as Keycloak does a token issued before a restart.
struct RejectsFirstToken;

impl Respond for RejectsFirstToken {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some("Bearer token-1") => ResponseTemplate::new(401),
            _ => ok_user(),
        }
    }
}

#[tokio::test]
async fn a_401_logs_in_again_once() {
    let server = server_with_tokens(300).await;
    Mock::given(path(USER_PATH))
        .respond_with(RejectsFirstToken)
        .mount(&server)
        .await;
    let client = client(&server, Duration::from_secs(5), Duration::from_secs(2));
    assert!(client
        .user(&realm(), &"u1".into())
        .await
        .expect("user")
        .is_some());
    assert_eq!(count(&server, TOKEN_PATH).await, 2);
    assert_eq!(count(&server, USER_PATH).await, 2);

    // A 401 that logging in again does not cure is final, not retried for ever.
    Mock::given(path("/admin/realms/acme/users/u2"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": "HTTP 401 Unauthorized"})),
        )
        .mount(&server)
        .await;
    let error = client
        .user(&realm(), &"u2".into())
        .await
        .expect_err("401 twice");
    assert!(
        matches!(error, KeycloakError::Refused { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(count(&server, "/admin/realms/acme/users/u2").await, 2);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let server = server_with_tokens(300).await;
    Mock::given(path(USER_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(USER_PATH))
        .respond_with(ok_user())
        .with_priority(2)
        .mount(&server)
        .await;
    let client = client(&server, Duration::from_secs(5), Duration::from_secs(5));
    let started = Instant::now();
    assert!(client
        .user(&realm(), &"u1".into())
        .await
        .expect("user")
        .is_some());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(990),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");

    // A Retry-After longer than the retry budget is not waited for.
    Mock::given(path("/admin/realms/acme/users/u3"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .mount(&server)
        .await;
    let started = Instant::now();
    let error = client.user(&realm(), &"u3".into()).await.expect_err("429");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(error.to_string().contains("429"), "{error}");
}

#[tokio::test]
async fn server_errors_are_retried_then_given_up_with_a_clear_error() {
    let server = server_with_tokens(300).await;
    Mock::given(path(USER_PATH))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": "down for maintenance"})),
        )
        .mount(&server)
        .await;
    let client = client(&server, Duration::from_secs(5), Duration::from_millis(1500));
    let started = Instant::now();
    let error = client.user(&realm(), &"u1".into()).await.expect_err("503");
    let tries = count(&server, USER_PATH).await;
    assert!(tries >= 3, "retried {tries} times");
    // Backed off between tries, and gave up within the budget (plus one last try).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(error.is_transient());
    let text = error.to_string();
    for part in [
        "GET /admin/realms/acme/users/u1",
        "503",
        "down for maintenance",
        "gave up after",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn requests_time_out() {
    let server = server_with_tokens(300).await;
    Mock::given(path(USER_PATH))
        .respond_with(ok_user().set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let client = client(
        &server,
        Duration::from_millis(300),
        Duration::from_millis(800),
    );
    let started = Instant::now();
    let error = client
        .user(&realm(), &"u1".into())
        .await
        .expect_err("timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = error.to_string();
    assert!(text.contains("timed out after 300ms"), "{text}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn other_client_errors_are_final_with_keycloaks_message() {
    let server = server_with_tokens(300).await;
    Mock::given(path(USER_PATH))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                json!({"error": "unknown_error", "errorMessage": "missing view-users"}),
            ),
        )
        .mount(&server)
        .await;
    let client = client(&server, Duration::from_secs(5), Duration::from_secs(2));
    let error = client.user(&realm(), &"u1".into()).await.expect_err("403");
    assert_eq!(count(&server, USER_PATH).await, 1, "not retried");
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("HTTP 403") && text.contains("missing view-users"),
        "{text}"
    );
    // 404 on a user is an answer: no such user.
    assert!(client
        .user(&realm(), &"nobody".into())
        .await
        .expect("404")
        .is_none());
}

#[tokio::test]
async fn wrong_credentials_are_reported_without_the_secret() {
    let fake = FakeKeycloak::start().await;
    let mut settings = fake.settings(100);
    settings.client_secret = Some("wrong-secret-value".to_string().into());
    let client = AdminClient::new(&settings).expect("client");
    let error = client
        .user(&realm(), &"u1".into())
        .await
        .expect_err("login refused");
    let text = error.to_string();
    assert!(text.contains("openid-connect/token"), "{text}");
    assert!(
        text.contains("401") && text.contains("Invalid client"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"));
    let debug = format!("{client:?} {error:?}");
    assert!(
        !debug.contains("wrong-secret-value") && !debug.contains(CLIENT_SECRET),
        "{debug}"
    );
}

#[tokio::test]
async fn a_path_prefix_such_as_auth_is_kept() {
    let server = MockServer::start().await;
    Mock::given(path("/auth/realms/acme/protocol/openid-connect/token"))
        .respond_with(Tokens {
            issued: AtomicU32::new(0),
            expires_in: 300,
        })
        .mount(&server)
        .await;
    Mock::given(path("/auth/admin/realms/acme/users/u1"))
        .respond_with(ok_user())
        .mount(&server)
        .await;
    let settings = settings_for(&format!("{}/auth", server.uri()), 100);
    let client = AdminClient::new(&settings).expect("client");
    assert!(client
        .user(&realm(), &"u1".into())
        .await
        .expect("user")
        .is_some());
}

#[tokio::test]
async fn the_realm_id_is_learnt_once() {
    let fake = FakeKeycloak::start().await;
    let client = fake.client(100);
    let id = client.realm_id(&realm()).await.expect("realm id");
    assert_eq!(id, crate::keycloak_fake::REALM_ID);
    assert_eq!(
        client.realm_named(&id).await.expect("lookup"),
        Some(realm())
    );
    assert_eq!(
        client.realm_named(&"other".into()).await.expect("lookup"),
        None
    );
    assert_eq!(fake.requests_to("/admin/realms/acme").len(), 1);
}
