//! Order independence and idempotence, as a property over generated histories: any
//! permutation, with duplicates, cut into random batches and applied by concurrent
//! workers, leaves exactly the rows that applying each event once in time order leaves.

use keycloak_sync::core::event::Event;
use keycloak_sync::core::sample::{history, SampleOptions};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::support::*;

const CASES: u32 = 40;

#[derive(Debug, Clone)]
struct Scenario {
    history_seed: u64,
    users: usize,
    events: usize,
    shuffle_seed: u64,
    duplicate_percent: u32,
    max_batch: usize,
    workers: usize,
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        3usize..25,
        150usize..500,
        any::<u64>(),
        0u32..40,
        1usize..80,
        1usize..4,
    )
        .prop_map(
            |(history_seed, users, events, shuffle_seed, duplicate_percent, max_batch, workers)| {
                Scenario {
                    history_seed,
                    users,
                    events,
                    shuffle_seed,
                    duplicate_percent,
                    max_batch,
                    workers,
                }
            },
        )
}

/// Shuffles, sprinkles duplicates, and cuts into batches of 1..=max_batch.
fn deliveries(events: &[Event], scenario: &Scenario) -> Vec<Vec<Event>> {
    let mut rng = StdRng::seed_from_u64(scenario.shuffle_seed);
    let mut stream: Vec<Event> = events.to_vec();
    for event in events {
        if rng.random_range(0..100) < scenario.duplicate_percent {
            stream.push(event.clone());
        }
    }
    stream.shuffle(&mut rng);
    let mut batches = Vec::new();
    let mut rest = stream.as_slice();
    while !rest.is_empty() {
        let size = rng.random_range(1..=scenario.max_batch).min(rest.len());
        let (batch, tail) = rest.split_at(size);
        batches.push(batch.to_vec());
        rest = tail;
    }
    batches
}

async fn check(db: &TestDb, case: usize, scenario: &Scenario) -> Result<(), TestCaseError> {
    let options = SampleOptions {
        events: scenario.events,
        users: scenario.users,
        seed: scenario.history_seed,
        everyday_weight: 0,
        ..SampleOptions::default()
    };
    let events: Vec<Event> = history(options).map(|line| event(&line)).collect();

    let reference = db.store_in(&format!("reference_{case}")).await;
    for event in &events {
        reference
            .apply(std::slice::from_ref(event))
            .await
            .expect("apply in order");
    }

    let shuffled = db.store_in(&format!("shuffled_{case}")).await;
    let batches = deliveries(&events, scenario);
    let mut workers = Vec::new();
    for worker in 0..scenario.workers {
        let store = shuffled.clone();
        let mine: Vec<Vec<Event>> = batches
            .iter()
            .skip(worker)
            .step_by(scenario.workers)
            .cloned()
            .collect();
        workers.push(tokio::spawn(async move {
            for batch in mine {
                store.apply(&batch).await.expect("apply shuffled");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }

    let (want_users, want_sessions) = full_rows(&reference).await;
    let (got_users, got_sessions) = full_rows(&shuffled).await;
    prop_assert!(!want_users.is_empty(), "the history touched no user");
    let differing = |got: &[serde_json::Value], want: &[serde_json::Value]| -> Vec<String> {
        let want: std::collections::HashMap<String, &serde_json::Value> = want
            .iter()
            .map(|row| (row["id"].to_string(), row))
            .collect();
        let got_ids: std::collections::HashSet<String> =
            got.iter().map(|row| row["id"].to_string()).collect();
        let mut out: Vec<String> = got
            .iter()
            .filter(|row| want.get(&row["id"].to_string()) != Some(row))
            .map(|row| format!("got {row}\nwant {:?}", want.get(&row["id"].to_string())))
            .collect();
        out.extend(
            want.keys()
                .filter(|id| !got_ids.contains(*id))
                .map(|id| format!("missing {id}")),
        );
        out
    };
    let users_differing = differing(&got_users, &want_users);
    prop_assert!(
        users_differing.is_empty(),
        "users differ:\n{}",
        users_differing.join("\n")
    );
    let sessions_differing = differing(&got_sessions, &want_sessions);
    prop_assert!(
        sessions_differing.is_empty(),
        "sessions differ:\n{}",
        sessions_differing.join("\n")
    );
    let inbox = |store: keycloak_sync::store::Store| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM processed_events")
            .fetch_one(store.pool())
            .await
            .expect("count")
    };
    prop_assert_eq!(
        inbox(shuffled.clone()).await,
        inbox(reference.clone()).await
    );
    reference.pool().close().await;
    shuffled.pool().close().await;
    Ok(())
}

/// A case the property test found: three concurrent workers, where an admin ending a
/// session raced the deletion of its user and the later end overwrote the earlier one.
#[test]
fn an_admin_session_end_racing_a_user_deletion_keeps_the_earlier_end() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::new());
    let scenario = Scenario {
        history_seed: 13_521_875_203_162_511_818,
        users: 5,
        events: 463,
        shuffle_seed: 12_136_729_847_709_862_554,
        duplicate_percent: 5,
        max_batch: 12,
        workers: 3,
    };
    for case in 0..4 {
        if let Err(error) = runtime.block_on(check(&db, 1000 + case, &scenario)) {
            panic!("{error}");
        }
    }
}

#[test]
fn any_order_any_batches_any_duplicates_give_the_same_rows() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::new());
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&scenarios(), |scenario| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(check(&db, n, &scenario))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
