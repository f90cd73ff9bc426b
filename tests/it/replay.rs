//! `keycloak-sync replay` as a user runs it: the real binary, a file, a fresh database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use keycloak_sync::core::sample::{history, SampleOptions};

use crate::support::*;

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kcs-{}-{name}", uuid::Uuid::new_v4().simple()))
}

fn replay_cmd(db: &TestDb, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
    command
        .arg("replay")
        .args(args)
        .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
        .env("KEYCLOAK_SYNC__LOG__LEVEL", "warn")
        .env_remove("RUST_LOG");
    command
}

fn run(db: &TestDb, args: &[&str]) -> Output {
    replay_cmd(db, args).output().expect("run keycloak-sync")
}

fn summary_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|l| l.starts_with("replay summary:"))
        .unwrap_or_else(|| panic!("no summary in {output:?}"))
        .to_string()
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut file = std::fs::File::create(path).expect("create");
    for line in lines {
        file.write_all(line).expect("write");
        file.write_all(b"\n").expect("write");
    }
}

const GOOD_1: &str = r#"{"schema":1,"kind":"user","id":"good-1","time":1000,"realmId":"r","type":"REGISTER","userId":"u1","details":{"username":"alice","email":"alice@example.com"}}"#;
const GOOD_2: &str = r#"{"@class":"com.github.aznamier.keycloak.event.provider.EventClientNotificationMqMsg","time":2000,"type":"LOGIN","realmId":"r","clientId":"web","userId":"u1","sessionId":"s1","ipAddress":"203.0.113.1","details":{"username":"alice"}}"#;
const GOOD_3: &str = r#"{"id":"good-3","time":3000,"type":"LOGOUT","realmId":"r","clientId":"web","userId":"u1","sessionId":"s1"}"#;

#[tokio::test]
async fn bad_lines_are_rejected_with_reasons_and_the_rest_is_applied() {
    let db = TestDb::new().await;
    // Detail values may be long (Keycloak puts PAR redirect URIs there); ids may not.
    let huge_user_id = format!(
        r#"{{"schema":1,"kind":"user","id":"huge","time":1,"realmId":"r","type":"LOGIN","userId":"{}"}}"#,
        "x".repeat(200_000)
    );
    let over_limit = format!(r#"{{"pad":"{}"}}"#, "y".repeat(2 << 20));
    let mut invalid_utf8 = br#"{"schema":1,"kind":"user","id":"bin","time":1,"realmId":"r","type":"LOGIN","userId":"u"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xc3, 0x28]);
    invalid_utf8.extend_from_slice(b"\"}");
    let lines: Vec<Vec<u8>> = vec![
        GOOD_1.into(),                                                                          // 1
        br#"{"schema":1,"kind":"user","id":"t","time":1,"realmId":"r","type":"LOG"#.to_vec(), // 2 truncated
        br#"{"schema":1,"kind":"user","id":"w","time":"noon","realmId":"r","type":"LOGIN","userId":"u"}"#.to_vec(), // 3 wrong type
        br#"{"schema":1,"kind":"user","time":1,"realmId":"r","type":"LOGIN","userId":"u"}"#.to_vec(), // 4 no id
        br#"{"schema":1,"kind":"user","id":"nt","realmId":"r","type":"LOGIN","userId":"u"}"#.to_vec(), // 5 no time
        huge_user_id.into_bytes(),                                                              // 6 huge id
        invalid_utf8,                                                                           // 7
        br#"{"schema":7,"kind":"user","id":"s7","time":1,"realmId":"r","type":"LOGIN","userId":"u"}"#.to_vec(), // 8
        GOOD_2.into(),                                                                          // 9
        Vec::new(),                                                                             // 10 blank: skipped
        over_limit.into_bytes(),                                                                // 11 over the size limit
        br#"{"schema":1,"kind":"token","id":"tk","time":1,"realmId":"r","userId":"u1","tokenType":"refresh","token":"SECRET-MARKER-42"}"#.to_vec(), // 12
        GOOD_3.into(),                                                                          // 13
    ];
    let input = temp_path("bad.jsonl");
    write_lines(&input, &lines);
    let rejects = temp_path("rejects.jsonl");
    let output = run(
        &db,
        &[
            input.to_str().expect("path"),
            "--rejects",
            rejects.to_str().expect("path"),
        ],
    );

    assert_eq!(
        output.status.code(),
        Some(3),
        "non-zero exit when lines are rejected: {output:?}"
    );
    assert_eq!(
        summary_of(&output).split(" (").next().expect("summary"),
        "replay summary: lines 13, applied 3, duplicates 0, ignored 0, rejected 9"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("SECRET-MARKER-42"),
        "token leaked to the log: {stderr}"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&rejects)
        .expect("rejects file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the rejects file is its owner's only");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&rejects)
        .expect("rejects file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("rejects are JSONL"))
        .collect();
    let got: Vec<(u64, String)> = records
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    let expected: [(u64, &str); 9] = [
        (2, "truncated JSON"),
        (
            3,
            "field `time`: expected an integer of epoch milliseconds, got a string \"noon\"",
        ),
        (4, "field `id` is missing"),
        (5, "field `time` is missing"),
        (
            6,
            "field `userId`: expected a shorter string, got a string of 200000 characters",
        ),
        (7, "not valid UTF-8"),
        (8, "unsupported schema version the number 7"),
        (11, "over the limit of 1048576"),
        (12, "no vault key ring is configured"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for ((line, reason), (want_line, want_reason)) in got.iter().zip(expected) {
        assert_eq!(*line, want_line);
        assert!(
            reason.contains(want_reason),
            "line {line}: {reason:?} should contain {want_reason:?}"
        );
    }
    let token_copy = records[8]["input"].as_str().expect("input");
    assert!(
        !token_copy.contains("SECRET-MARKER-42") && token_copy.contains("[redacted]"),
        "{token_copy}"
    );

    let store = db.store().await;
    let user = user(&store, "u1").await;
    assert_eq!(
        (user.username.as_deref(), user.login_count),
        (Some("alice"), 1)
    );
    let session = session(&store, "s1").await;
    assert_eq!(
        (session.ended_at, session.end_reason.as_deref()),
        (Some(3000), Some("logout"))
    );
    let _ = std::fs::remove_file(input);
    let _ = std::fs::remove_file(rejects);
}

#[tokio::test]
async fn replaying_the_same_file_twice_changes_nothing_the_second_time() {
    let db = TestDb::new().await;
    let input = temp_path("history.jsonl");
    let lines: Vec<Vec<u8>> = history(SampleOptions {
        events: 3000,
        users: 80,
        seed: 11,
        ..SampleOptions::default()
    })
    .map(String::into_bytes)
    .collect();
    write_lines(&input, &lines);
    let path = input.to_str().expect("path");

    let first = run(&db, &[path, "--batch-size", "97"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let summary = summary_of(&first);
    assert!(
        summary.contains("lines 3000")
            && summary.contains("duplicates 0")
            && summary.contains("rejected 0"),
        "{summary}"
    );
    let store = db.store().await;
    let before = full_rows(&store).await;

    let second = run(&db, &[path]);
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let summary = summary_of(&second);
    assert!(
        summary.contains("applied 0, duplicates 3000, ignored 0, rejected 0"),
        "{summary}"
    );
    assert_eq!(full_rows(&store).await, before);
    let _ = std::fs::remove_file(input);
}

#[tokio::test]
async fn replay_reads_standard_input() {
    let db = TestDb::new().await;
    let mut child = replay_cmd(&db, &["-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for line in [GOOD_1, GOOD_2, GOOD_3] {
            writeln!(stdin, "{line}").expect("write");
        }
    }
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(summary_of(&output).contains("applied 3"));
}

#[tokio::test]
async fn an_invalid_configuration_stops_with_the_key_named() {
    let db = TestDb::new().await;
    let output = replay_cmd(&db, &["-"])
        .env("KEYCLOAK_SYNC__DATABASE__SCHEMA", "Not A Name")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("database.schema") && stderr.contains("KEYCLOAK_SYNC__DATABASE__SCHEMA"),
        "{stderr}"
    );
}

#[test]
fn config_check_prints_the_configuration_without_secrets() {
    let output = Command::new(env!("CARGO_BIN_EXE_keycloak-sync"))
        .args(["config", "check"])
        .env(
            "KEYCLOAK_SYNC__DATABASE__URL",
            "postgres://app:pg-secret-pw@db:5432/app",
        )
        .env("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET", "kc-secret-value")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("[database]") && stdout.contains("db:5432"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("pg-secret-pw") && !stdout.contains("kc-secret-value"),
        "{stdout}"
    );
}

/// A corpus built from Keycloak's source (`EventType`, every value and its `_ERROR`, up
/// to 26.5; admin events of many resource types; missing optional fields as Keycloak
/// leaves them out; federated ids `f:<provider>:<name>`; unicode), in the three input
/// shapes: replayed with no reject, and the rows Keycloak's semantics give.
#[tokio::test]
async fn every_keycloak_event_type_replays_without_a_reject() {
    let db = TestDb::new().await;
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/keycloak-events.jsonl"
    );
    let output = run(&db, &[corpus]);
    let summary = summary_of(&output);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(summary.contains("rejected 0"), "{summary}");
    let store = db.store().await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM processed_events").await,
        157,
        "each event once"
    );
    let types = count(
        &store,
        "SELECT count(DISTINCT type) FROM processed_events WHERE kind = 'user'",
    )
    .await;
    assert!(types >= 120, "{types} user event types");
    let jurgen = user(&store, "5b0c2f7e-0d1a-4c3e-9b7a-user00000001").await;
    assert_eq!(jurgen.first_name.as_deref(), Some("Jürgen"));
    let federated = user(&store, "f:ldap-corp:ünïcødé.user").await;
    assert_eq!(federated.first_name.as_deref(), Some("Ünï"));
    let deleted = user(&store, "f:3c1f2d9a-ad:alice").await;
    assert!(deleted.deleted_at.is_some());
    // The admin logout-all came last: no session of the realm is open.
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM user_sessions WHERE ended_at IS NULL"
        )
        .await,
        0
    );
    assert!(count(&store, "SELECT count(*) FROM user_sessions").await >= 5);
    let login = session(&store, "corpus-session-000").await;
    assert_eq!(
        login.user_id.as_deref(),
        Some("5b0c2f7e-0d1a-4c3e-9b7a-user00000001")
    );
    assert_eq!(login.end_reason.as_deref(), Some("admin"));
    assert!(
        count(
            &store,
            "SELECT count(*) FROM processed_events WHERE outcome = 'ignored'"
        )
        .await
            > 60,
        "most types have no effect and are recorded as ignored"
    );
}
