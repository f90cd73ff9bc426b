//! The messages the provider published inside a real Keycloak during the end-to-end suite
//! (`tests/fixtures/keycloak-<version>/*.jsonl`, kept by `tests/e2e/fixtures.rs`), parsed without Keycloak:
//! every one is a valid event, and the kinds the apply path acts on carry what it needs.

use keycloak_sync::core::event::parse_message;

/// Every line of `tests/fixtures/keycloak-*/*.jsonl` (one directory per version tested).
fn fixtures() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    for version in std::fs::read_dir(&dir).expect("tests/fixtures") {
        let version = version.expect("entry").path();
        if version.is_dir() {
            for entry in std::fs::read_dir(&version).expect("a version's fixtures") {
                files.push(entry.expect("entry").path());
            }
        }
    }
    let mut lines = Vec::new();
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture");
        let name = path
            .strip_prefix(&dir)
            .expect("under tests/fixtures")
            .to_string_lossy()
            .to_string();
        lines.extend(text.lines().map(|l| (name.clone(), l.to_string())));
    }
    lines
}

#[test]
fn every_message_keycloak_published_parses() {
    let lines = fixtures();
    assert!(lines.len() >= 20, "the suite's fixtures are there");
    for (file, line) in &lines {
        let event = parse_message(line.as_bytes(), 1 << 20)
            .unwrap_or_else(|e| panic!("{file}: {e}\n{line}"));
        let json: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(
            event.realm_id.as_str(),
            json["realmId"].as_str().expect("realmId")
        );
        assert!(
            json["realmName"].is_string(),
            "{file}: the provider names the realm"
        );
    }
}

#[test]
fn logins_and_admin_user_events_carry_what_the_apply_path_needs() {
    let lines = fixtures();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|(_, l)| serde_json::from_str(l).expect("json"))
        .collect();
    let logins: Vec<_> = json.iter().filter(|j| j["type"] == "LOGIN").collect();
    assert!(!logins.is_empty());
    for login in logins {
        assert!(
            login["userId"].is_string() && login["sessionId"].is_string(),
            "{login}"
        );
        assert!(login["details"]["username"].is_string(), "{login}");
    }
    let created: Vec<_> = json
        .iter()
        .filter(|j| j["resourceType"] == "USER" && j["operationType"] == "CREATE")
        .collect();
    assert!(!created.is_empty());
    for user in created {
        let representation: serde_json::Value =
            serde_json::from_str(user["representation"].as_str().expect("representation"))
                .expect("representation is JSON");
        assert!(representation["username"].is_string(), "{user}");
        assert!(
            representation.get("credentials").is_none(),
            "the provider strips the initial password: {user}"
        );
    }
}
