use super::*;
use crate::core::event::parse_message;
use crate::core::sample::{history, SampleOptions};
use proptest::prelude::*;
use serde_json::Map;

fn event(json: &str) -> Event {
    parse_message(json.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn user(id: &str, time: i64, event_type: &str, extra: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"r","type":"{event_type}","userId":"u1","sessionId":"s1","clientId":"web","ipAddress":"203.0.113.1"{extra}}}"#
    ))
}

fn admin_update(id: &str, time: i64, representation: &str) -> Event {
    let rep = serde_json::to_string(representation).expect("string");
    event(&format!(
        r#"{{"schema":1,"kind":"admin","id":"{id}","time":{time},"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u1","representation":{rep}}}"#
    ))
}

#[test]
fn profile_fields_are_last_writer_wins_per_field() {
    let events = [
        admin_update("b", 200, r#"{"firstName":"New","lastName":"Kept"}"#),
        admin_update("a", 100, r#"{"firstName":"Old","email":"old@example.com"}"#),
    ];
    let plan = plan(events.iter());
    let user = &plan.users[0];
    assert_eq!(
        user.first_name.as_ref().and_then(|v| v.value.as_deref()),
        Some("New")
    );
    assert_eq!(
        user.last_name.as_ref().and_then(|v| v.value.as_deref()),
        Some("Kept")
    );
    // The older event still sets the field nobody newer touched.
    assert_eq!(
        user.email.as_ref().and_then(|v| v.value.as_deref()),
        Some("old@example.com")
    );
}

#[test]
fn equal_times_are_ordered_by_content_key_whatever_the_message_ids() {
    let events = [
        admin_update("id-b", 100, r#"{"firstName":"B"}"#),
        admin_update("id-a", 100, r#"{"firstName":"A"}"#),
    ];
    let forward = plan(events.iter());
    let backward = plan(events.iter().rev());
    assert_eq!(forward, backward);
    let winner = events.iter().max_by(|a, b| a.id.cmp(&b.id)).expect("two");
    let name = if winner.message_id == "id-b" {
        "B"
    } else {
        "A"
    };
    assert_eq!(
        forward.users[0]
            .first_name
            .as_ref()
            .and_then(|v| v.value.as_deref()),
        Some(name)
    );
    // The same event under another message id (another path) has the same version.
    let again = admin_update("id-other-path", 100, r#"{"firstName":"B"}"#);
    assert_eq!(Version::of(&again), Version::of(&events[0]));
}

#[test]
fn login_username_is_only_a_placeholder() {
    let events = [
        user("login", 500, "LOGIN", r#","details":{"username":"guess"}"#),
        admin_update("admin", 100, r#"{"username":"real"}"#),
    ];
    let plan = plan(events.iter());
    let user = &plan.users[0];
    assert_eq!(
        user.username.as_ref().and_then(|v| v.value.as_deref()),
        Some("real")
    );
    assert_eq!(user.login_count, 1);
    assert_eq!(user.last_login_at, Some(500));
}

#[test]
fn counters_and_extremes() {
    let events = [
        user("l1", 300, "LOGIN", ""),
        user("l2", 100, "LOGIN", ""),
        user("e1", 50, "LOGIN_ERROR", ""),
        user("e2", 70, "LOGIN_ERROR", ""),
        user("r1", 400, "REFRESH_TOKEN", ""),
        user("r2", 350, "REFRESH_TOKEN", ""),
    ];
    let plan = plan(events.iter());
    let u = &plan.users[0];
    assert_eq!((u.login_count, u.last_login_at), (2, Some(300)));
    assert_eq!((u.login_error_count, u.last_login_error_at), (2, Some(70)));
    let s = &plan.sessions[0];
    assert_eq!(s.started_at, 100);
    assert_eq!((s.refresh_count, s.last_refresh_at), (2, Some(400)));
    assert!(s.end.is_none());
}

#[test]
fn the_earliest_end_wins_and_logout_revokes_session_tokens() {
    let end_admin = event(
        r#"{"schema":1,"kind":"admin","id":"adm","time":900,"realmId":"r","resourceType":"USER_SESSION","operationType":"DELETE","resourcePath":"sessions/s1"}"#,
    );
    let events = [
        user("out", 800, "LOGOUT", ""),
        end_admin,
        user("in", 10, "LOGIN", ""),
    ];
    let plan = plan(events.iter());
    let session = &plan.sessions[0];
    assert_eq!(session.started_at, 10);
    let end = session.end.as_ref().expect("ended");
    assert_eq!((end.at, end.reason), (800, EndReason::Logout));
    assert!(plan.revocations.contains(&Revocation::Session {
        session_id: "s1".into(),
        at: 800,
        offline: true,
    }));
}

#[test]
fn deletion_and_disabling_cut_off_sessions_and_tokens() {
    let events = [
        user("del", 700, "DELETE_ACCOUNT", ""),
        user("lock", 600, "USER_DISABLED_BY_PERMANENT_LOCKOUT", ""),
        admin_update("off", 650, r#"{"enabled":false}"#),
        admin_update("on", 660, r#"{"enabled":true}"#),
    ];
    let plan = plan(events.iter());
    let u = &plan.users[0];
    assert_eq!(u.deleted_at, Some(700));
    assert_eq!(
        u.enabled.as_ref().map(|v| v.value),
        Some(true),
        "re-enabled last"
    );
    let reasons: Vec<(i64, EndReason)> = plan.cutoffs.iter().map(|c| (c.at, c.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (600, EndReason::UserDisabled),
            (650, EndReason::UserDisabled),
            (700, EndReason::UserDeleted)
        ]
    );
    assert!(plan.revocations.contains(&Revocation::User {
        user_id: "u1".into(),
        at: 700
    }));
    assert_eq!(
        plan.user_locks().into_iter().collect::<Vec<_>>(),
        vec![("u1", LockMode::Exclusive)]
    );
}

#[test]
fn revoke_grant_revokes_offline_tokens_of_the_client() {
    let plan = plan(
        [user(
            "g",
            5,
            "REVOKE_GRANT",
            r#","details":{"revoked_client":"cli"}"#,
        )]
        .iter(),
    );
    assert_eq!(
        plan.revocations,
        vec![Revocation::OfflineGrant {
            user_id: "u1".into(),
            client_id: "cli".into(),
            at: 5
        }]
    );
    // Keycloak ends the user's offline-only sessions of the client with the consent.
    let cutoffs: Vec<_> = plan
        .cutoffs
        .iter()
        .map(|c| (c.at, c.reason, c.client_id.clone()))
        .collect();
    assert_eq!(cutoffs, vec![(5, EndReason::Revoked, Some("cli".into()))]);
    assert!(plan.users.is_empty() && plan.sessions.is_empty());
}

#[test]
fn an_offline_login_makes_an_offline_only_session() {
    let offline = plan(
        [user(
            "o",
            5,
            "LOGIN",
            r#","details":{"grant_type":"password","refresh_token_type":"Offline"}"#,
        )]
        .iter(),
    );
    assert!(offline.sessions[0].offline_only);
    let online = plan(
        [user(
            "n",
            5,
            "LOGIN",
            r#","details":{"grant_type":"password","refresh_token_type":"Refresh"}"#,
        )]
        .iter(),
    );
    assert!(!online.sessions[0].offline_only);
}

#[test]
fn ignored_events_plan_nothing() {
    let plan = plan([user("c", 5, "SEND_VERIFY_EMAIL", "")].iter());
    assert!(plan.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Folding is order-independent: any permutation of a history plans the same rows.
    #[test]
    fn plans_do_not_depend_on_event_order(seed in any::<u64>(), shuffle in any::<u64>()) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let options = SampleOptions { events: 300, users: 12, seed, everyday_weight: 0, ..SampleOptions::default() };
        let events: Vec<Event> = history(options).map(|line| event(&line)).collect();
        let mut shuffled = events.clone();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(shuffle));
        prop_assert_eq!(plan(events.iter()), plan(shuffled.iter()));
    }
}

fn read_whole(first: Option<&str>, enabled: bool) -> Profile {
    Profile {
        username: Some("alice".into()),
        email: None,
        first_name: first.map(str::to_string),
        enabled: Some(enabled),
        email_verified: Some(true),
        attributes: Some(Map::new()),
        complete: true,
        ..Profile::default()
    }
}

fn read_at(version: Version, at: i64, profile: Profile) -> Observation {
    Observation::Profile {
        realm_id: "r".into(),
        user_id: "u1".into(),
        profile,
        at,
        version,
    }
}

#[test]
fn a_profile_read_whole_clears_what_keycloak_no_longer_has_but_a_partial_one_does_not() {
    let register = user(
        "reg",
        100,
        "REGISTER",
        r#","details":{"username":"alice","email":"a@example.com"}"#,
    );
    let base = Version::of(&register);
    let partial = plan([&register]);
    assert_eq!(
        partial.users[0]
            .email
            .as_ref()
            .and_then(|v| v.value.as_deref()),
        Some("a@example.com")
    );
    let observed = plan_observations([&read_at(
        Version::read_after(&base),
        500,
        read_whole(None, true),
    )]);
    let user = &observed.users[0];
    assert_eq!(
        user.email.as_ref().map(|v| v.value.clone()),
        Some(None),
        "cleared"
    );
    assert_eq!(user.read_ver, Some(Version::read_after(&base)));
    assert!(observed.cutoffs.is_empty());
}

#[test]
fn a_read_just_after_an_event_sorts_before_anything_newer() {
    let event_at = |n: u32, time| {
        user(
            &format!("m{n}"),
            time,
            "LOGIN",
            &format!(r#","details":{{"n":"{n}"}}"#),
        )
    };
    let base = Version::of(&event_at(0, 100));
    let read = Version::read_after(&base);
    assert!(read > base);
    for other in (1..8).map(|n| event_at(n, 100)) {
        let version = Version::of(&other);
        assert_eq!(read < version, base < version, "{:?}", other.id);
    }
    assert!(read < Version::of(&event_at(0, 101)));
    assert!(Version::observed(99, "reconcile") < base);
}

#[test]
fn a_disabled_user_read_whole_or_gone_ends_sessions_like_events_do() {
    let disabled = plan_observations([&read_at(
        Version::observed(500, "reconcile"),
        500,
        read_whole(Some("A"), false),
    )]);
    assert_eq!(disabled.cutoffs.len(), 1);
    assert_eq!(
        (disabled.cutoffs[0].at, disabled.cutoffs[0].reason),
        (500, EndReason::UserDisabled)
    );

    let gone = Observation::UserGone {
        realm_id: "r".into(),
        user_id: "u1".into(),
        at: 700,
        version: Version::observed(700, "reconcile"),
    };
    let session_gone = Observation::SessionGone {
        realm_id: "r".into(),
        user_id: "u1".into(),
        session_id: "s9".into(),
        at: 650,
        version: Version::observed(650, "reconcile"),
    };
    let plan = plan_observations([&gone, &session_gone]);
    assert_eq!(plan.users[0].deleted_at, Some(700));
    assert_eq!(plan.cutoffs[0].reason, EndReason::UserDeleted);
    let end = plan.sessions[0].end.as_ref().expect("ended");
    assert_eq!((end.at, end.reason), (650, EndReason::Expired));
    // A session Keycloak no longer has timed out: only its refresh tokens die with it.
    assert!(plan.revocations.contains(&Revocation::Session {
        session_id: "s9".into(),
        at: 650,
        offline: false,
    }));
}

#[test]
fn differences_follow_the_rules_applying_would() {
    let stored = StoredProfile {
        profile: Profile {
            username: Some("alice".into()),
            email: Some("a@example.com".into()),
            first_name: Some("A".into()),
            email_verified: Some(true),
            enabled: Some(true),
            attributes: Some(Map::new()),
            created_at: Some(1000),
            ..Profile::default()
        },
        deleted: false,
    };
    let mut read = read_whole(Some("A"), true);
    read.email = Some("a@example.com".into());
    read.created_at = Some(1000);
    assert!(profile_differences(&stored, &read).is_empty());

    read.created_at = Some(2000);
    assert!(
        profile_differences(&stored, &read).is_empty(),
        "created_at only moves earlier"
    );
    read.created_at = Some(10);
    read.email = None;
    read.enabled = Some(false);
    assert_eq!(
        profile_differences(&stored, &read),
        ["email", "enabled", "created_at"]
    );

    let partial = Profile {
        email: None,
        ..read.clone()
    };
    let partial = Profile {
        complete: false,
        ..partial
    };
    assert!(
        !profile_differences(&stored, &partial).contains(&"email"),
        "absent is unknown"
    );

    let deleted = StoredProfile {
        deleted: true,
        ..stored
    };
    assert!(
        profile_differences(&deleted, &read).is_empty(),
        "never revived"
    );
}

#[test]
fn only_events_that_leave_a_profile_incomplete_ask_for_enrichment() {
    use crate::core::event::Enrichment;
    let cases = [
        ("REGISTER", Some(Enrichment::IfReadBefore)),
        ("UPDATE_PROFILE", Some(Enrichment::IfReadBefore)),
        ("LOGIN", Some(Enrichment::IfNeverRead)),
        ("LOGOUT", None),
        ("DELETE_ACCOUNT", None),
        ("CODE_TO_TOKEN", None),
    ];
    for (event_type, expected) in cases {
        assert_eq!(
            user("x", 1, event_type, "").action.enrichment(),
            expected,
            "{event_type}"
        );
    }
}

/// Versions are stored and compared as text: the written form must stay what it was.
#[test]
fn versions_keep_their_written_form() {
    for time in [0, 7, 1_732_270_000_123] {
        let mut e = user("x", time, "LOGIN", "");
        let key = e.id.to_string();
        assert_eq!(Version::of(&e).as_str(), format!("1{time:015}:{key}"));
        assert_eq!(
            Version::placeholder(&e).as_str(),
            format!("0{time:015}:{key}")
        );
        // An id that is not plain text (a token message's own id) keeps its escaping.
        e.id = crate::core::ids::EventId::new("a\"b\\c\u{7}");
        assert_eq!(
            Version::of(&e).as_str(),
            format!("1{time:015}:{}", "a\"b\\c\u{7}".escape_debug())
        );
    }
}
