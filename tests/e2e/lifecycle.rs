//! Users and sessions through their whole life in a real Keycloak: admin-created users,
//! logins over two clients, refresh, logout, profile edits, admin session deletion, user
//! logout, disable, delete, realm logout-all. After each step the tables say what
//! Keycloak's Admin API says.

use reqwest::Method;
use serde_json::json;

use crate::support::{count, session, user};
use crate::World;

#[tokio::test]
async fn users_and_sessions_follow_keycloak_through_their_whole_life() {
    let world = World::new().await;
    let realm = &world.realm;
    let alice = realm.create_user("alice", "alice@example.com").await;
    let bob = realm.create_user("bob", "bob@example.com").await;
    let carol = realm.create_user("carol", "carol@example.com").await;

    let a1 = realm.login("web", "alice", false).await;
    let a2 = realm.login("web", "alice", false).await;
    let a3 = realm.login("mobile", "alice", false).await;
    let b1 = realm.login("web", "bob", false).await;
    let c1 = realm.login("mobile", "carol", false).await;
    let refreshed = realm.refresh("web", &a1).await.ok("refresh");
    assert!(refreshed["access_token"].is_string());
    let wrong = realm
        .try_login("web", "bob", "not-the-password", false)
        .await;
    // Wrong credentials on the token endpoint: invalid_grant, answered 401 by Keycloak
    // 26.4 and 400 (OAuth's status for it) by 26.7.
    assert!(
        [
            reqwest::StatusCode::BAD_REQUEST,
            reqwest::StatusCode::UNAUTHORIZED
        ]
        .contains(&wrong.status),
        "{} {}",
        wrong.status,
        wrong.body
    );
    assert_eq!(wrong.body["error"], "invalid_grant");
    world.settle("after logins").await;

    let row = user(&world.store, &alice).await;
    assert_eq!(row.login_count, 3, "every login Keycloak answered, once");
    assert_eq!(user(&world.store, &bob).await.login_error_count, 1);
    let s1 = session(&world.store, &a1.session_id).await;
    assert_eq!(s1.client_id.as_deref(), Some("web"));
    assert_eq!(s1.refresh_count, 1, "one REFRESH_TOKEN");
    assert_eq!(
        session(&world.store, &a3.session_id)
            .await
            .client_id
            .as_deref(),
        Some("mobile")
    );

    // The application logs alice out of one session.
    realm.logout("web", &a2).await;
    world.settle("after a logout").await;
    assert_eq!(
        session(&world.store, &a2.session_id)
            .await
            .end_reason
            .as_deref(),
        Some("logout")
    );

    // Profile and email edits by an admin.
    realm
        .admin(
            Method::PUT,
            &format!("/users/{bob}"),
            Some(json!({"email": "robert@example.com", "firstName": "Robert", "emailVerified": true})),
        )
        .await
        .ok("update bob");
    world.settle("after a profile edit").await;

    // An admin ends one of alice's sessions, then logs carol out everywhere.
    realm
        .admin(
            Method::DELETE,
            &format!("/sessions/{}", a3.session_id),
            None,
        )
        .await
        .ok("delete a session");
    realm
        .admin(Method::POST, &format!("/users/{carol}/logout"), None)
        .await
        .ok("log carol out");
    world
        .settle("after admin session deletion and user logout")
        .await;
    assert_eq!(
        session(&world.store, &a3.session_id)
            .await
            .end_reason
            .as_deref(),
        Some("admin")
    );
    assert_eq!(
        session(&world.store, &c1.session_id)
            .await
            .end_reason
            .as_deref(),
        Some("admin")
    );

    // Disabled (Keycloak refuses the session's refresh but keeps it), enabled again, and
    // another user deleted.
    realm
        .admin(
            Method::PUT,
            &format!("/users/{bob}"),
            Some(json!({"enabled": false})),
        )
        .await
        .ok("disable bob");
    let refused = realm.refresh("web", &b1).await;
    assert_eq!(
        refused.status,
        reqwest::StatusCode::BAD_REQUEST,
        "a disabled user's refresh fails"
    );
    realm
        .admin(
            Method::PUT,
            &format!("/users/{bob}"),
            Some(json!({"enabled": true})),
        )
        .await
        .ok("enable bob");
    let again = realm.refresh("web", &b1).await;
    eprintln!(
        "PROBE refresh after re-enable: {} {}",
        again.status, again.body
    );
    eprintln!("PROBE sessions of bob: {:?}", realm.session_ids(&bob).await);
    realm
        .admin(Method::DELETE, &format!("/users/{carol}"), None)
        .await
        .ok("delete carol");
    world.settle("after disable, enable and delete").await;
    assert!(user(&world.store, &carol).await.deleted_at.is_some());

    // Everyone out.
    realm
        .admin(Method::POST, "/logout-all", None)
        .await
        .ok("logout-all");
    world.settle("after realm logout-all").await;
    assert_eq!(
        count(
            &world.store,
            "SELECT count(*) FROM user_sessions WHERE is_active"
        )
        .await,
        0
    );
    crate::fixtures::keep(&world, "lifecycle").await;
    realm.delete().await;
}
