//! Rotation on (`revokeRefreshToken`, reuse 0): many callers on two replicas (one
//! through the transaction-mode PgBouncer) cause one refresh, counted by Keycloak's own
//! event store; a forced second refresh uses the rotated token; a deleted session answers
//! 409 and the token leaves the vault; callers outside their grant, unknown or forged are
//! refused.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    api_settings, call, caller_token, pairs, refresh_events, service_client, store, BACKEND_SECRET,
};
use crate::kc::Realm;
use crate::support::{amqp_url, count, free_port, Daemon};
use crate::World;

const STRANGER_SECRET: &str = "stranger-secret-e2e";

#[tokio::test]
async fn one_refresh_for_many_callers_on_two_replicas_and_the_rotated_token_is_kept() {
    let name = Realm::fresh_name();
    let (port_a, port_b) = (free_port(), free_port());
    let settings = api_settings(&name, port_a);
    let world = World::named(
        &name,
        json!({"revokeRefreshToken": true, "refreshTokenMaxReuse": 0, "accessTokenLifespan": 60,
               "enabledEventTypes": ["LOGIN", "REFRESH_TOKEN", "REFRESH_TOKEN_ERROR", "LOGOUT"]}),
        &pairs(&settings),
    )
    .await;
    let realm = &world.realm;
    service_client(realm, "backend", BACKEND_SECRET).await;
    service_client(realm, "stranger", STRANGER_SECRET).await;
    // The second replica reaches Postgres through the transaction-mode PgBouncer.
    let pooled = crate::support::through_pooler(&world.db);
    let mut second = api_settings(&name, port_b);
    second.extend(realm.daemon_settings());
    second.push((
        "KEYCLOAK_SYNC__DATABASE__PREPARED_STATEMENTS".into(),
        "false".into(),
    ));
    second.push((
        "KEYCLOAK_SYNC__AMQP__BINDING_KEY".into(),
        format!("kc.{name}.#"),
    ));
    let replica = Daemon::start(&pooled, &amqp_url(), &world.names, &pairs(&second));
    replica.wait_ready(Duration::from_secs(60)).await;

    let alice = realm.create_user("alice", "alice@example.com").await;
    let login = realm.login("web", "alice", false).await;
    let backend = caller_token(realm, "backend", BACKEND_SECRET).await;
    store(port_a, &backend, &name, &alice, &login, "refresh").await;

    // 40 callers at once, alternating replicas: one refresh at Keycloak, one token.
    let ask = json!({"realm": name, "userId": alice, "clientId": "web"});
    let calls = (0..40).map(|i| {
        let port = if i % 2 == 0 { port_a } else { port_b };
        call(
            Method::POST,
            port,
            "/v1/tokens/access",
            &backend,
            ask.clone(),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut tokens = std::collections::BTreeSet::new();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["tokenType"], "Bearer");
        assert_eq!(body["sessionId"], json!(login.session_id));
        tokens.insert(
            body["accessToken"]
                .as_str()
                .expect("accessToken")
                .to_string(),
        );
    }
    assert_eq!(tokens.len(), 1, "every caller got the one refreshed token");
    assert_eq!(
        refresh_events(realm, &alice).await,
        1,
        "Keycloak counted one refresh"
    );

    // A token Keycloak cannot give fresher than its 60 s lifespan: served while young,
    // refreshed (with the rotated token) once a tenth of its life is used.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let forced =
        json!({"realm": name, "userId": alice, "clientId": "web", "minValiditySecs": 3600});
    let (status, body) = call(Method::POST, port_b, "/v1/tokens/access", &backend, forced).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!tokens.contains(body["accessToken"].as_str().unwrap_or_default()));
    let refreshes = refresh_events(realm, &alice).await;
    assert_eq!(refreshes, 2, "the second refresh used the rotated token");
    // The application stores the token it logged in with once more (a retry, another
    // process): older than the rotated one the vault holds, it does not replace it.
    let (status, stale) = call(
        Method::PUT,
        port_b,
        "/v1/tokens",
        &backend,
        json!({"realm": name, "userId": alice, "sessionId": login.session_id,
               "clientId": "web", "tokenType": "refresh", "token": login.refresh}),
    )
    .await;
    assert_eq!(
        (status, stale["stored"].clone()),
        (StatusCode::OK, json!(false)),
        "{stale}"
    );
    // Keycloak's REFRESH_TOKEN events of these refreshes come back through the queue:
    // they count the session's refreshes and leave the rotated token and its access
    // token in place, which the next request is served from.
    let rotated = body["accessToken"].clone();
    let settled = crate::support::wait_until(crate::SETTLE, || async {
        count(
            &world.store,
            &format!(
                "SELECT count(*) FROM user_sessions WHERE id = '{}' AND refresh_count = 2",
                login.session_id
            ),
        )
        .await
            == 1
    })
    .await;
    assert!(
        settled,
        "both refreshes reached user_sessions through the queue"
    );
    let (status, body) = call(
        Method::POST,
        port_a,
        "/v1/tokens/access",
        &backend,
        ask.clone(),
    )
    .await;
    assert_eq!(
        (status, body["accessToken"].clone()),
        (StatusCode::OK, rotated)
    );
    assert_eq!(refresh_events(realm, &alice).await, 2);

    // Callers outside their grant, unknown to the grants, or forged.
    let mobile = json!({"realm": name, "userId": alice, "clientId": "mobile"});
    let (status, body) = call(Method::POST, port_a, "/v1/tokens/access", &backend, mobile).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    let stranger = caller_token(realm, "stranger", STRANGER_SECRET).await;
    let (status, _) = call(
        Method::POST,
        port_a,
        "/v1/tokens/access",
        &stranger,
        ask.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut forged = backend.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let (status, body) = call(
        Method::POST,
        port_a,
        "/v1/tokens/access",
        &forged,
        ask.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthenticated"))
    );
    let (status, body) = call(
        Method::POST,
        port_a,
        "/v1/tokens/access",
        &backend,
        json!({"realm": name}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("userId"),
        "{body}"
    );

    // Rotation: the token the application first stored no longer works at Keycloak, and
    // its reuse makes Keycloak end the client's session: the next refresh is refused
    // (409) and the token leaves the vault, announced; afterwards there is none (404).
    let reused = realm.refresh("web", &login).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST, "{}", reused.body);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let forced =
        json!({"realm": name, "userId": alice, "clientId": "web", "minValiditySecs": 3600});
    let (status, body) = call(
        Method::POST,
        port_a,
        "/v1/tokens/access",
        &backend,
        forced.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::CONFLICT, json!("grant_revoked")),
        "{body}"
    );
    let (status, body) = call(Method::POST, port_a, "/v1/tokens/access", &backend, forced).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::NOT_FOUND, json!("no_token")),
        "{body}"
    );
    let announced = count(
        &world.store,
        "SELECT count(*) FROM changes WHERE kind = 'token_revoked' AND detail->>'reason' = 'grant_revoked'",
    )
    .await;
    assert_eq!(announced, 1);
    let audited = count(
        &world.store,
        "SELECT count(*) FROM token_audit WHERE outcome = 'refreshed'",
    )
    .await;
    assert_eq!(audited, 2, "each refresh is audited once");
    let leaked = count(
        &world.store,
        &format!(
            "SELECT count(*) FROM token_audit WHERE caller LIKE '%{}%'",
            &login.refresh[..20]
        ),
    )
    .await;
    assert_eq!(leaked, 0);
    for log in [world.daemon.log_text(), replica.log_text()] {
        assert!(!log.contains(&login.refresh), "a token reached a log");
    }
    realm.delete().await;
}
