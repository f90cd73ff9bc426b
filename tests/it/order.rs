//! Order independence and idempotence, as a property over generated histories: any
//! permutation, with duplicates, cut into random batches and applied by concurrent
//! workers — with an expiry pass running meanwhile, so activity arrives after inferred
//! ends — leaves exactly the rows that applying each event once in time order and then
//! one expiry pass leaves (same policy, same clock).

use std::time::Duration;

use keycloak_sync::config::SessionsSettings;
use keycloak_sync::core::event::Event;
use keycloak_sync::core::ids::RealmId;
use keycloak_sync::core::sample::{history, SampleOptions, REALM_ID};
use keycloak_sync::core::session_policy::SessionPolicy;
use keycloak_sync::jobs::expiry::{expire, learn_policies, PolicyRead};
use keycloak_sync::store::Store;
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

/// The sample realm's policy, known before any event, as configuration gives it.
fn expiry_settings() -> SessionsSettings {
    SessionsSettings {
        expire_interval: None,
        expiry_margin: Duration::from_secs(300),
        idle_grace: Duration::from_secs(120),
        policy_refresh: Duration::from_secs(3600),
        realm_policies: vec![(
            RealmId::from(REALM_ID),
            SessionPolicy {
                idle: 1800,
                max_lifespan: 36_000,
                idle_remember_me: 86_400,
                max_lifespan_remember_me: 604_800,
            },
        )],
        expire_batch: 50,
    }
}

async fn store_with_policy(db: &TestDb, schema: &str) -> Store {
    let store = db.store_in(schema).await;
    learn_policies(&store, None, &expiry_settings(), PolicyRead::All)
        .await
        .expect("policy");
    store
}

async fn expiry_pass(store: &Store) {
    expire(store, &expiry_settings(), None, false, Default::default())
        .await
        .expect("expiry pass");
}

async fn check(db: &TestDb, case: usize, scenario: &Scenario) -> Result<(), TestCaseError> {
    let options = SampleOptions {
        events: scenario.events,
        users: scenario.users,
        seed: scenario.history_seed,
        everyday_weight: 0,
        directory_weight: 60,
        ..SampleOptions::default()
    };
    let events: Vec<Event> = history(options).map(|line| event(&line)).collect();

    let reference = store_with_policy(db, &format!("reference_{case}")).await;
    for event in &events {
        reference
            .apply(std::slice::from_ref(event))
            .await
            .expect("apply in order");
    }
    expiry_pass(&reference).await;

    let shuffled = store_with_policy(db, &format!("shuffled_{case}")).await;
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
    // Passes while the workers apply: later activity meets inferred ends.
    let passes = {
        let store = shuffled.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                expiry_pass(&store).await;
                tokio::task::yield_now().await;
            }
        })
    };
    for worker in workers {
        worker.await.expect("worker");
    }
    passes.await.expect("passes");
    expiry_pass(&shuffled).await;
    // What the daemon's sweep does now and then: members added by username while
    // another worker was writing their user.
    shuffled
        .resolve_pending_members()
        .await
        .expect("resolve waiting members");

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
    let want_directory = directory_rows(&reference).await;
    let got_directory = directory_rows(&shuffled).await;
    for (table, want) in &want_directory {
        let got = &got_directory[table];
        let first_difference = got.iter().zip(want).find(|(g, w)| g != w);
        prop_assert!(
            got.len() == want.len() && first_difference.is_none(),
            "{table}: {} rows against {}; first difference: {first_difference:#?}",
            got.len(),
            want.len()
        );
    }
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

/// Runs a case the property test once found, `runs` times (races may need several),
/// each into its own schemas numbered from `first_case`.
fn found_case(scenario: Scenario, first_case: usize, runs: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::new());
    for case in first_case..first_case + runs {
        if let Err(error) = runtime.block_on(check(&db, case, &scenario)) {
            panic!("{error}");
        }
    }
}

/// A case the property test found: three concurrent workers, where an admin ending a
/// session raced the deletion of its user and the later end overwrote the earlier one.
#[test]
fn an_admin_session_end_racing_a_user_deletion_keeps_the_earlier_end() {
    found_case(
        Scenario {
            history_seed: 13_521_875_203_162_511_818,
            users: 5,
            events: 463,
            shuffle_seed: 12_136_729_847_709_862_554,
            duplicate_percent: 5,
            max_batch: 12,
            workers: 3,
        },
        1000,
        4,
    );
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

/// A case the property test found once memberships were in the histories: a membership
/// decided before a group's deletion, learnt in another order.
#[test]
fn a_membership_and_a_group_deletion_in_any_order() {
    found_case(
        Scenario {
            history_seed: 5_483_185_825_549_275_217,
            users: 6,
            events: 331,
            shuffle_seed: 17_734_643_106_957_332_201,
            duplicate_percent: 29,
            max_batch: 1,
            workers: 1,
        },
        2000,
        1,
    );
}

/// A case the property test found: an organization member added by username (waiting for
/// its user) and removed by id, learnt in another order.
#[test]
fn an_organization_member_added_by_name_and_removed_by_id_in_any_order() {
    found_case(
        Scenario {
            history_seed: 12_181_060_825_425_784_039,
            users: 3,
            events: 197,
            shuffle_seed: 9_243_110_705_347_233_458,
            duplicate_percent: 0,
            max_batch: 21,
            workers: 1,
        },
        3000,
        1,
    );
}

/// A case the property test found: a membership of a subgroup whose parent's deletion
/// was learnt before the subgroup.
#[test]
fn a_subgroup_membership_and_its_parents_deletion_in_any_order() {
    found_case(
        Scenario {
            history_seed: 9_570_687_097_410_689_090,
            users: 12,
            events: 411,
            shuffle_seed: 11_006_008_323_768_819_608,
            duplicate_percent: 0,
            max_batch: 1,
            workers: 1,
        },
        4000,
        1,
    );
}

/// A case the property test found: two workers, one deleting a role by name while the
/// other wrote a grant naming it; neither saw the other's uncommitted row.
#[test]
fn a_role_deleted_by_name_racing_a_grant_of_it() {
    found_case(
        Scenario {
            history_seed: 9_618_757_472_354_891_415,
            users: 5,
            events: 431,
            shuffle_seed: 1_480_161_228_479_534_015,
            duplicate_percent: 15,
            max_batch: 41,
            workers: 2,
        },
        5000,
        4,
    );
}

/// A case the property test found with one worker: role0 deleted, made again and deleted
/// again, both deletions in one batch; folded into the earlier one, the later role was
/// never deleted.
#[test]
fn a_role_deleted_by_name_in_a_shuffled_history_stays_deleted() {
    found_case(
        Scenario {
            history_seed: 7_821_757_558_245_610_257,
            users: 13,
            events: 365,
            shuffle_seed: 9_046_406_625_282_830_002,
            duplicate_percent: 25,
            max_batch: 46,
            workers: 1,
        },
        1100,
        2,
    );
}

/// A case the property test found: two workers, one writing a group and the other its
/// subgroup; neither transaction saw the other's row, so the subgroup's path was never
/// derived. Writers of a realm's group tree now take its lock alone.
#[test]
fn a_group_and_its_subgroup_written_concurrently_get_their_paths() {
    found_case(
        Scenario {
            history_seed: 8_839_390_801_339_629_553,
            users: 21,
            events: 234,
            shuffle_seed: 6_089_384_768_464_594_815,
            duplicate_percent: 37,
            max_batch: 31,
            workers: 2,
        },
        0,
        12,
    );
}
