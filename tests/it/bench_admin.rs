//! Throughput of the Admin API tools against the HTTP fake, page sizes side by side:
//! `scripts/bench-admin-api.sh` (ignored in the normal run; figures in BENCHMARKS.md).

use std::time::Instant;

use keycloak_sync::config::SessionCheck;
use keycloak_sync::jobs::backfill::{backfill, BackfillOptions};
use keycloak_sync::jobs::reconcile::{reconcile_realm, ReconcileOptions};
use keycloak_sync::keycloak::EventStream;
use serde_json::json;

use crate::keycloak_fake::{realm, user_rep, FakeKeycloak, REALM_ID};
use crate::support::{count, TestDb};

const USERS: usize = 20_000;
const EVENTS: i64 = 20_000;
const T0: i64 = 1_732_233_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-admin-api.sh"]
async fn bench_reconcile_and_backfill_by_page_size() {
    let fake = FakeKeycloak::start().await;
    {
        let mut state = fake.state();
        state.users = (0..USERS)
            .map(|i| user_rep(&format!("u{i:06}"), &format!("user{i:06}"), "First", "Last"))
            .collect();
        state.events = (0..EVENTS)
            .map(|n| {
                json!({"id": format!("e{n:06}"), "time": T0 + n, "type": if n % 4 == 0 { "REGISTER" } else { "LOGIN" },
                       "realmId": REALM_ID, "userId": format!("u{:06}", n % 5_000), "sessionId": format!("s{}", n / 4),
                       "details": {"username": "x"}})
            })
            .collect();
    }
    for page_size in [100, 1_000] {
        let db = TestDb::new().await;
        let store = db.store().await;
        let client = fake.client(page_size);
        let options = ReconcileOptions {
            dry_run: false,
            allow_mass_delete: false,
            max_delete_percent: 10.0,
            sessions: SessionCheck::None,
            directory: false,
            progress: false,
        };
        let started = Instant::now();
        let report = reconcile_realm(&store, &client, &realm(), &options)
            .await
            .expect("reconcile");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(report.created, USERS as u64);
        println!(
            "reconcile, page size {page_size}: {USERS} users in {seconds:.2} s = {:.0} users/s",
            USERS as f64 / seconds
        );

        let started = Instant::now();
        let options = BackfillOptions {
            since_ms: T0,
            until_ms: Some(T0 + EVENTS),
            streams: vec![EventStream::User],
            restart: false,
            max_message_bytes: 1 << 20,
            progress: false,
        };
        let report = backfill(&store, &client, &realm(), EventStream::User, &options)
            .await
            .expect("backfill");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(report.tally.applied, EVENTS as u64);
        assert_eq!(
            count(&store, "SELECT count(*) FROM processed_events").await,
            EVENTS
        );
        println!(
            "backfill, page size {page_size}: {EVENTS} events in {seconds:.2} s = {:.0} events/s",
            EVENTS as f64 / seconds
        );
    }
}
