use serde_json::json;

use super::*;

#[test]
fn a_request_is_read_with_its_defaults() {
    let request = AccessRequest::read(&json!({"realm": "acme", "userId": "u1", "clientId": "web"}))
        .expect("valid");
    assert_eq!(request.realm, "acme");
    assert_eq!(request.session_id, None);
    assert!(!request.offline);
    assert_eq!(request.min_validity_secs, DEFAULT_MIN_VALIDITY_SECS);
}

#[test]
fn a_bad_request_names_its_field() {
    let cases = [
        (json!([]), "body"),
        (json!({"userId": "u1", "clientId": "web"}), "realm"),
        (json!({"realm": "acme", "clientId": "web"}), "userId"),
        (
            json!({"realm": "acme", "userId": 7, "clientId": "web"}),
            "userId",
        ),
        (
            json!({"realm": "acme", "userId": "", "clientId": "web"}),
            "userId",
        ),
        (
            json!({"realm": "acme", "userId": "u\n1", "clientId": "web"}),
            "userId",
        ),
        (json!({"realm": "acme", "userId": "u1"}), "clientId"),
        (
            json!({"realm": "acme", "userId": "u1", "clientId": "web", "offline": "yes"}),
            "offline",
        ),
        (
            json!({"realm": "acme", "userId": "u1", "clientId": "web", "minValiditySecs": -1}),
            "minValiditySecs",
        ),
        (
            json!({"realm": "acme", "userId": "u1", "clientId": "web", "minValiditySecs": 100000}),
            "minValiditySecs",
        ),
        (
            json!({"realm": "acme", "userId": "u1", "clientId": "web", "sesionId": "s"}),
            "body",
        ),
        (
            json!({"realm": "acme", "userId": "x".repeat(300), "clientId": "web"}),
            "userId",
        ),
    ];
    for (body, field) in cases {
        let error = AccessRequest::read(&body).expect_err("invalid");
        assert_eq!(error.field, field, "{body}: {error}");
    }
}

fn grant() -> CallerGrant {
    CallerGrant {
        realm: "acme".into(),
        client_id: "backend".into(),
        read: ["web".to_string()].into(),
        store: ["web".to_string(), "mobile".to_string()].into(),
    }
}

#[test]
fn callers_may_only_what_a_grant_of_their_realm_names() {
    let grants = [grant()];
    assert!(may(&grants, "acme", "backend", Action::Read, "acme", "web"));
    assert!(!may(
        &grants,
        "acme",
        "backend",
        Action::Read,
        "acme",
        "mobile"
    ));
    assert!(may(
        &grants,
        "acme",
        "backend",
        Action::Store,
        "acme",
        "mobile"
    ));
    assert!(!may(&grants, "acme", "other", Action::Read, "acme", "web"));
    assert!(!may(
        &grants,
        "beta",
        "backend",
        Action::Read,
        "beta",
        "web"
    ));
    assert!(!may(
        &grants,
        "acme",
        "backend",
        Action::Read,
        "beta",
        "web"
    ));
    assert!(!may(&[], "acme", "backend", Action::Read, "acme", "web"));
}

#[test]
fn a_token_is_refreshed_when_it_has_less_than_asked_or_as_fresh_as_keycloak_gives() {
    // Lifespan 300 s, 30 s wanted.
    assert!(!needs_refresh(100_000, 0, 300_000, 30_000));
    assert!(needs_refresh(280_000, 0, 300_000, 30_000));
    assert!(needs_refresh(300_000, 0, 300_000, 0));
    // Lifespan 60 s, 120 s wanted: Keycloak cannot give it; fresh ones are served.
    assert!(!needs_refresh(3_000, 0, 60_000, 120_000));
    assert!(needs_refresh(7_000, 0, 60_000, 120_000));
    // Expired is always refreshed.
    assert!(needs_refresh(61_000, 0, 60_000, 0));
}

fn claims() -> CallerClaims {
    CallerClaims {
        iss: Some("http://kc/realms/acme".into()),
        azp: Some("backend".into()),
        exp: Some(1_000),
        nbf: None,
        typ: Some("Bearer".into()),
    }
}

#[test]
fn the_caller_is_the_azp_of_a_valid_token_of_the_realm() {
    let issuer = "http://kc/realms/acme";
    assert_eq!(caller_of(&claims(), issuer, 900), Ok("backend".into()));
    assert_eq!(
        caller_of(&claims(), "http://kc/realms/beta", 900),
        Err(ClaimProblem::Issuer)
    );
    assert_eq!(
        caller_of(&claims(), issuer, 1_100),
        Err(ClaimProblem::Expired)
    );
    let mut later = claims();
    later.nbf = Some(2_000);
    assert_eq!(
        caller_of(&later, issuer, 900),
        Err(ClaimProblem::NotYetValid)
    );
    let mut refresh = claims();
    refresh.typ = Some("Refresh".into());
    assert_eq!(
        caller_of(&refresh, issuer, 900),
        Err(ClaimProblem::NotAnAccessToken)
    );
    let mut anonymous = claims();
    anonymous.azp = None;
    assert_eq!(
        caller_of(&anonymous, issuer, 900),
        Err(ClaimProblem::NoAuthorizedParty)
    );
}

#[test]
fn the_realm_is_read_from_the_issuer_under_the_configured_server() {
    assert_eq!(
        realm_of_issuer("http://kc/", "http://kc/realms/acme"),
        Some("acme")
    );
    assert_eq!(
        realm_of_issuer("http://kc/auth/", "http://kc/auth/realms/acme"),
        Some("acme")
    );
    assert_eq!(
        realm_of_issuer("http://kc/", "http://evil/realms/acme"),
        None
    );
    assert_eq!(
        realm_of_issuer("http://kc/", "http://kc/realms/acme/x"),
        None
    );
    assert_eq!(realm_of_issuer("http://kc/", "http://kc/realms/"), None);
}

fn jwt(claims: serde_json::Value) -> String {
    use base64::Engine;
    let part = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.c2lnbmF0dXJl",
        part(&json!({"alg": "HS512", "typ": "JWT"})),
        part(&claims)
    )
}

#[test]
fn a_stored_token_is_dated_by_its_own_issue_time_never_later_than_now() {
    let now = 1_800_000_000_000;
    let issued = jwt(json!({"iat": 1_700_000_000, "typ": "Refresh"}));
    assert_eq!(stored_token_time(&issued, now), 1_700_000_000_000);
    // A clock ahead of ours, or a claim from the future, dates it now.
    let ahead = jwt(json!({"iat": 1_900_000_000}));
    assert_eq!(stored_token_time(&ahead, now), now);
    // Not a JWT, no iat, a non-numeric or absurd iat: now.
    for token in [
        "opaque-token".to_string(),
        "a.b.c".to_string(),
        jwt(json!({"sub": "x"})),
        jwt(json!({"iat": "1700000000"})),
        jwt(json!({"iat": -5})),
        jwt(json!({"iat": i64::MAX})),
    ] {
        assert_eq!(stored_token_time(&token, now), now, "{token}");
    }
}
