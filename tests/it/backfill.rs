//! `backfill` against the fake Admin API: pages, the exact window, resuming after an
//! interruption, idempotence.

use std::sync::Arc;
use std::time::Duration;

use keycloak_sync::jobs::backfill::{backfill, BackfillOptions};
use keycloak_sync::keycloak::{AdminClient, EventStream};
use keycloak_sync::store::{BackfillWindow, Store};
use serde_json::{json, Value};

use crate::keycloak_fake::{realm, FakeKeycloak, REALM_ID};
use crate::support::{admin_url, full_rows, rows_of_clean_replay, TestDb};

const DAY: i64 = 86_400_000;
/// 2024-11-22T00:00:00Z.
const SINCE: i64 = 1_732_233_600_000;
const UNTIL: i64 = SINCE + 2 * DAY;

fn options(restart: bool) -> BackfillOptions {
    BackfillOptions {
        since_ms: SINCE,
        until_ms: Some(UNTIL),
        streams: vec![EventStream::User, EventStream::Admin],
        restart,
        max_message_bytes: 1 << 20,
        progress: false,
    }
}

/// A stored user event; odd ones without `id`, as Keycloak before 26.2 returns them.
fn user_event(n: i64, time: i64, kind: &str, user: &str) -> Value {
    let mut event = json!({
        "time": time, "type": kind, "realmId": REALM_ID, "clientId": "web",
        "userId": user, "sessionId": format!("s-{user}-{}", n / 3), "ipAddress": "198.51.100.4",
        "details": {"username": format!("name-{user}"), "email": format!("{user}@example.com")}
    });
    if n % 2 == 0 {
        event["id"] = json!(format!("ev-{n:03}"));
    }
    event
}

fn admin_update(n: i64, time: i64, user: &str, first: &str) -> Value {
    json!({
        "id": format!("adm-{n:03}"), "time": time, "realmId": REALM_ID,
        "authDetails": {"realmId": REALM_ID, "clientId": "admin-cli", "userId": "admin", "ipAddress": "10.0.0.1"},
        "operationType": "UPDATE", "resourceType": "USER", "resourcePath": format!("users/{user}"),
        "representation": json!({"id": user, "firstName": first, "enabled": true}).to_string()
    })
}

/// 13 user events (11 inside the window, one just before, one at its end) and 4 admin
/// events (3 inside).
fn history(fake: &FakeKeycloak) -> Vec<Vec<u8>> {
    let mut user_events = vec![user_event(100, SINCE - 1, "LOGIN", "early")];
    for n in 0..11 {
        let user = format!("u{}", n % 4);
        let kind = if n < 4 {
            "REGISTER"
        } else if n % 5 == 0 {
            "LOGOUT"
        } else {
            "LOGIN"
        };
        user_events.push(user_event(n, SINCE + n * 3 * 3_600_000, kind, &user));
    }
    user_events.push(user_event(101, UNTIL, "LOGIN", "late"));
    let admin_events = vec![
        admin_update(1, SINCE + 1_000, "u0", "Ann"),
        admin_update(2, SINCE + DAY, "u1", "Ben"),
        admin_update(3, UNTIL - 1, "u2", "Cy"),
        admin_update(4, UNTIL + 5, "u3", "Dee"),
    ];
    let inside: Vec<Vec<u8>> = user_events
        .iter()
        .chain(&admin_events)
        .filter(|e| (SINCE..UNTIL).contains(&e["time"].as_i64().unwrap_or_default()))
        .map(|e| serde_json::to_vec(e).expect("json"))
        .collect();
    let mut state = fake.state();
    state.events = user_events;
    state.admin_events = admin_events;
    inside
}

fn client(fake: &FakeKeycloak) -> Arc<AdminClient> {
    let mut settings = fake.settings(4);
    settings.retry_max = Duration::from_millis(300);
    Arc::new(AdminClient::new(&settings).expect("client"))
}

async fn run(
    store: &Store,
    client: &AdminClient,
    stream: EventStream,
    restart: bool,
) -> keycloak_sync::jobs::backfill::BackfillReport {
    backfill(store, client, &realm(), stream, &options(restart))
        .await
        .expect("backfill")
}

#[tokio::test]
async fn backfill_applies_the_window_across_pages() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = FakeKeycloak::start().await;
    let inside = history(&fake);
    let client = client(&fake);

    let users = run(&store, &client, EventStream::User, false).await;
    // Keycloak is asked for whole days around the window; the edges are cut here.
    assert_eq!(users.fetched, 13);
    assert_eq!(users.outside_window, 2);
    assert_eq!(users.tally.applied + users.tally.ignored, 11);
    assert_eq!(users.rejected, 0);
    let pages: Vec<String> = fake.requests_to("/admin/realms/acme/events");
    assert_eq!(pages.len(), 4, "13 events in pages of 4: {pages:?}");
    assert!(
        pages.iter().all(|p| p.contains("direction=asc")
            && p.contains("dateFrom=2024-11-21")
            && p.contains("dateTo=2024-11-25")),
        "{pages:?}"
    );

    let admins = run(&store, &client, EventStream::Admin, false).await;
    assert_eq!(
        (admins.fetched, admins.outside_window, admins.tally.applied),
        (4, 1, 3)
    );

    assert_eq!(
        full_rows(&store).await,
        rows_of_clean_replay(&admin_url(), &inside).await
    );
}

#[tokio::test]
async fn an_interrupted_backfill_resumes_where_it_stopped() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = FakeKeycloak::start().await;
    let inside = history(&fake);
    let client = client(&fake);

    fake.state().fail_events_from = Some(8);
    let error = backfill(
        &store,
        &client,
        &realm(),
        EventStream::User,
        &options(false),
    )
    .await
    .expect_err("Keycloak fails at offset 8");
    let text = error.to_string();
    assert!(text.contains("offset 8") && text.contains("500"), "{text}");
    let window = BackfillWindow {
        realm: realm(),
        stream: EventStream::User,
        since_ms: SINCE,
        until_ms: Some(UNTIL),
    };
    assert_eq!(store.backfill_position(&window).await.expect("position"), 8);

    fake.state().fail_events_from = None;
    fake.state().requests.clear();
    let resumed = run(&store, &client, EventStream::User, false).await;
    assert_eq!(resumed.resumed_from, 8);
    let first_request = fake.requests_to("/admin/realms/acme/events").remove(0);
    assert!(first_request.contains("first=8"), "{first_request}");
    assert_eq!(resumed.fetched, 5);
    run(&store, &client, EventStream::Admin, false).await;

    assert_eq!(
        full_rows(&store).await,
        rows_of_clean_replay(&admin_url(), &inside).await
    );
}

#[tokio::test]
async fn backfilling_the_same_window_twice_changes_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let fake = FakeKeycloak::start().await;
    history(&fake);
    let client = client(&fake);
    run(&store, &client, EventStream::User, false).await;
    run(&store, &client, EventStream::Admin, false).await;
    let rows = full_rows(&store).await;

    // Resuming a finished window reads only what was added since: nothing.
    let again = run(&store, &client, EventStream::User, false).await;
    assert_eq!((again.resumed_from, again.fetched), (13, 0));

    // Reading it all again meets the inbox.
    let restarted = run(&store, &client, EventStream::User, true).await;
    assert_eq!(restarted.tally.applied, 0);
    assert_eq!(restarted.tally.duplicates, 11);
    let admins = run(&store, &client, EventStream::Admin, true).await;
    assert_eq!((admins.tally.applied, admins.tally.duplicates), (0, 3));
    assert_eq!(full_rows(&store).await, rows);
}
