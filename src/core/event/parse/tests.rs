use super::*;

const LIMIT: usize = 1 << 20;

fn parse(text: &str) -> Result<Event, ParseError> {
    parse_message(text.as_bytes(), LIMIT)
}

fn ok(text: &str) -> Event {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn err(text: &str) -> String {
    parse(text)
        .map(|e| format!("{e:?}"))
        .expect_err(text)
        .to_string()
}

const ENVELOPE_LOGIN: &str = r#"{"schema":1,"kind":"user","id":"3f1d0a52-9c1e-4c55-9a49-0d6f0b8f3a10","time":1732270000123,"realmId":"0c6f6a0e-realm","realmName":"acme","type":"LOGIN","clientId":"web-app","userId":"8d2b5c1e-user","sessionId":"a41e7f00-session","ipAddress":"203.0.113.7","error":null,"details":{"username":"alice","auth_method":"openid-connect","redirect_uri":"https://app/cb"}}"#;

#[test]
fn envelope_user_event() {
    let event = ok(ENVELOPE_LOGIN);
    assert_eq!(event.message_id, "3f1d0a52-9c1e-4c55-9a49-0d6f0b8f3a10");
    assert_eq!(event.time, 1_732_270_000_123);
    assert_eq!(event.realm_id, "0c6f6a0e-realm");
    assert_eq!(event.kind, Kind::User);
    assert_eq!(event.type_name, "LOGIN");
    assert_eq!(event.shape, Shape::Envelope);
    assert_eq!(
        event.action,
        Action::Login {
            user_id: "8d2b5c1e-user".into(),
            session_id: Some("a41e7f00-session".into()),
            client_id: Some("web-app".into()),
            ip_address: Some("203.0.113.7".into()),
            username: Some("alice".into()),
            remember_me: false,
            offline: false,
        }
    );
}

#[test]
fn envelope_admin_event_with_representation() {
    let event = ok(
        r#"{"schema":1,"kind":"admin","id":"e-1","time":1732270000456,"realmId":"r1","realmName":"acme",
        "authDetails":{"realmId":"master","clientId":"admin-cli","userId":"admin-1","ipAddress":"10.0.0.1"},
        "resourceType":"USER","operationType":"UPDATE","resourcePath":"users/8d2b",
        "representation":"{\"id\":\"8d2b\",\"username\":\"alice\",\"firstName\":\"Alice\",\"enabled\":false,\"emailVerified\":true,\"createdTimestamp\":1700000000000,\"attributes\":{\"dept\":[\"ops\"]}}",
        "error":null,"details":{}}"#,
    );
    assert_eq!(event.kind, Kind::Admin);
    assert_eq!(event.type_name, "USER.UPDATE");
    let Action::UpdateProfile { user_id, profile } = event.action else {
        panic!("expected a profile update, got {:?}", event.action)
    };
    assert_eq!(user_id, "8d2b");
    assert_eq!(profile.username.as_deref(), Some("alice"));
    assert_eq!(profile.first_name.as_deref(), Some("Alice"));
    assert_eq!(profile.enabled, Some(false));
    assert_eq!(profile.email_verified, Some(true));
    assert_eq!(profile.created_at, Some(1_700_000_000_000));
    assert_eq!(profile.email, None, "absent fields stay unset");
    assert_eq!(
        profile.attributes.expect("attributes")["dept"],
        serde_json::json!(["ops"])
    );
}

#[test]
fn admin_event_without_representation_still_names_the_user() {
    let event = ok(
        r#"{"schema":1,"kind":"admin","id":"e-2","time":5,"realmId":"r1","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u-9"}"#,
    );
    assert_eq!(
        event.action,
        Action::UpdateProfile {
            user_id: "u-9".into(),
            profile: Profile::default()
        }
    );
}

#[test]
fn envelope_token_message_keeps_the_token_secret() {
    let event = ok(
        r#"{"schema":1,"kind":"token","id":"t-1","time":1732270000789,"realmId":"r1","userId":"u1","sessionId":"s1","clientId":"web-app","tokenType":"offline","token":"eyJhbGciOiJSUzI1NiJ9.SECRET-MARKER","expiresAt":1734862000789,"metadata":{"email":"alice@example.com"}}"#,
    );
    assert_eq!(event.kind, Kind::Token);
    assert_eq!(event.type_name, "offline");
    let Action::StoreToken(token) = &event.action else {
        panic!("expected a token")
    };
    assert_eq!(token.token_type, TokenType::Offline);
    assert_eq!(token.expires_at, Some(1_734_862_000_789));
    assert_eq!(token.metadata["email"], "alice@example.com");
    let debug = format!("{event:?}");
    assert!(!debug.contains("SECRET-MARKER"), "{debug}");
}

#[test]
fn token_errors_never_show_the_token() {
    let message = err(
        r#"{"schema":1,"kind":"token","id":"t","time":1,"realmId":"r","userId":"u","tokenType":"weird","token":"SECRET-MARKER"}"#,
    );
    assert!(message.contains("tokenType"), "{message}");
    assert!(!message.contains("SECRET-MARKER"));
    let long = format!(
        r#"{{"schema":1,"kind":"token","id":"t","time":1,"realmId":"r","userId":"u","tokenType":"refresh","token":"{}"}}"#,
        "SECRET-MARKER".repeat(2000)
    );
    let message = err(&long);
    assert!(message.contains("`token`"), "{message}");
    assert!(!message.contains("SECRET-MARKER"));
    let message = err(
        r#"{"schema":1,"kind":"token","id":"t","time":1,"realmId":"r","userId":"u","tokenType":"refresh","token":42}"#,
    );
    assert_eq!(message, "field `token`: expected a string, got a number");
}

const AZNAMIER_LOGIN: &str = r#"{
  "@class" : "com.github.aznamier.keycloak.event.provider.EventClientNotificationMqMsg",
  "time" : 1732270000123,
  "type" : "LOGIN",
  "realmId" : "0c6f6a0e-realm",
  "clientId" : "web-app",
  "userId" : "8d2b5c1e-user",
  "sessionId" : "a41e7f00-session",
  "ipAddress" : "203.0.113.7",
  "details" : {
    "auth_method" : "openid-connect",
    "username" : "alice"
  }
}"#;

#[test]
fn aznamier_user_event_gets_a_deterministic_id() {
    let event = ok(AZNAMIER_LOGIN);
    assert_eq!(event.shape, Shape::Aznamier);
    assert_eq!(event.type_name, "LOGIN");
    assert!(Uuid::parse_str(&event.id).is_ok(), "{}", event.id);
    // Same content, other layout and key order: same id.
    let compact = r#"{"details":{"username":"alice","auth_method":"openid-connect"},"userId":"8d2b5c1e-user","@class":"com.github.aznamier.keycloak.event.provider.EventClientNotificationMqMsg","time":1732270000123,"type":"LOGIN","realmId":"0c6f6a0e-realm","clientId":"web-app","sessionId":"a41e7f00-session","ipAddress":"203.0.113.7"}"#;
    assert_eq!(ok(compact).id, event.id);
    // A Keycloak REST representation of the same event (before 26.2, no id): same id.
    let rest = r#"{"time":1732270000123,"type":"LOGIN","realmId":"0c6f6a0e-realm","clientId":"web-app","userId":"8d2b5c1e-user","sessionId":"a41e7f00-session","ipAddress":"203.0.113.7","error":null,"details":{"username":"alice","auth_method":"openid-connect"}}"#;
    assert_eq!(ok(rest).id, event.id);
    // Different content: different id.
    let later = AZNAMIER_LOGIN.replace("1732270000123", "1732270000124");
    assert_ne!(ok(&later).id, event.id);
}

#[test]
fn aznamier_custom_resource_types_are_named() {
    let event = ok(r#"{
  "@class" : "com.github.aznamier.keycloak.event.provider.EventAdminNotificationMqMsg",
  "time" : 1732270000999,
  "realmId" : "0c6f6a0e-realm",
  "resourceType" : "CUSTOM",
  "resourceTypeAsString" : "ORGANIZATION_INVITATION",
  "operationType" : "CREATE",
  "resourcePath" : "organizations/o1/members/invite-user"
}"#);
    assert_eq!(event.type_name, "ORGANIZATION_INVITATION.CREATE");
    assert_eq!(event.action, Action::Ignore(Ignored::NoEffect));
}

#[test]
fn aznamier_admin_event() {
    let event = ok(r#"{
  "@class" : "com.github.aznamier.keycloak.event.provider.EventAdminNotificationMqMsg",
  "time" : 1732270000999,
  "realmId" : "0c6f6a0e-realm",
  "authDetails" : { "realmId" : "master", "clientId" : "security-admin-console", "userId" : "adm", "ipAddress" : "10.1.1.1" },
  "resourceType" : "USER",
  "operationType" : "DELETE",
  "resourcePath" : "users/8d2b5c1e-user",
  "resourceTypeAsString" : "USER"
}"#);
    assert_eq!(event.shape, Shape::Aznamier);
    assert_eq!(event.type_name, "USER.DELETE");
    assert_eq!(
        event.action,
        Action::DeleteUser {
            user_id: "8d2b5c1e-user".into()
        }
    );
}

/// RealmAdminResource records `{"offline": <isOffline>}` as a session deletion's
/// representation (Keycloak 24+); older versions record none and delete online sessions.
#[test]
fn admin_session_deletion_says_whether_the_offline_session_went() {
    let delete = |rep: &str| {
        ok(&format!(
            r#"{{"time":1,"realmId":"r","operationType":"DELETE","resourceType":"USER_SESSION","resourcePath":"sessions/s1"{rep}}}"#
        ))
        .action
    };
    let ends = |offline| Action::EndSession {
        session_id: "s1".into(),
        offline,
    };
    assert_eq!(
        delete(r#","representation":"{\"offline\":true}""#),
        ends(true)
    );
    assert_eq!(
        delete(r#","representation":"{\"offline\":\"true\"}""#),
        ends(true)
    );
    assert_eq!(
        delete(r#","representation":"{\"offline\":false}""#),
        ends(false)
    );
    assert_eq!(delete(""), ends(false));
}

#[test]
fn keycloak_rest_representations() {
    let user = ok(
        r#"{"id":"0a1b2c3d-rest","time":1732270000001,"type":"REGISTER","realmId":"r1","clientId":"web-app","userId":"u1","sessionId":"s1","ipAddress":"198.51.100.1","details":{"username":"bob","email":"bob@example.com","first_name":"Bob","last_name":"Brown","register_method":"form"}}"#,
    );
    assert_eq!(user.shape, Shape::KeycloakRest);
    assert_eq!(user.message_id, "0a1b2c3d-rest");
    assert_eq!(
        user.action,
        Action::Register {
            user_id: "u1".into(),
            profile: Profile {
                username: Some("bob".into()),
                email: Some("bob@example.com".into()),
                first_name: Some("Bob".into()),
                last_name: Some("Brown".into()),
                enabled: Some(true),
                created_at: Some(1_732_270_000_001),
                ..Profile::default()
            }
        }
    );
    let admin = ok(
        r#"{"time":1732270000002,"realmId":"r1","authDetails":{"realmId":"master","clientId":"admin-cli","userId":"adm","ipAddress":"10.0.0.9"},"operationType":"DELETE","resourceType":"USER_SESSION","resourcePath":"sessions/s-77","representation":null,"error":null,"details":{}}"#,
    );
    assert_eq!(admin.shape, Shape::KeycloakRest);
    assert_eq!(
        admin.action,
        Action::EndSession {
            session_id: "s-77".into(),
            offline: false,
        }
    );
}

fn user_event(event_type: &str, extra: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"x","time":1000,"realmId":"r","type":"{event_type}","userId":"u","sessionId":"s"{extra}}}"#
    )
}

#[test]
// One assertion per event type: a table that reads better whole.
fn user_event_types_map_to_actions() {
    let action = |t: &str, extra: &str| ok(&user_event(t, extra)).action;
    assert_eq!(
        action("LOGIN_ERROR", ""),
        Action::LoginError {
            user_id: "u".into()
        }
    );
    assert_eq!(
        action("LOGOUT", ""),
        Action::Logout {
            user_id: "u".into(),
            session_id: "s".into()
        }
    );
    assert_eq!(
        action(
            "UPDATE_PROFILE",
            r#","details":{"updated_first_name":"Al","updated_last_name":"Ice","previous_first_name":"A"}"#
        ),
        Action::UpdateProfile {
            user_id: "u".into(),
            profile: Profile {
                first_name: Some("Al".into()),
                last_name: Some("Ice".into()),
                ..Profile::default()
            }
        }
    );
    assert_eq!(
        action(
            "UPDATE_EMAIL",
            r#","details":{"updated_email":"new@example.com","previous_email":"old@example.com"}"#
        ),
        Action::UpdateProfile {
            user_id: "u".into(),
            profile: Profile {
                email: Some("new@example.com".into()),
                ..Profile::default()
            }
        }
    );
    assert_eq!(
        action("VERIFY_EMAIL", ""),
        Action::UpdateProfile {
            user_id: "u".into(),
            profile: Profile {
                email_verified: Some(true),
                ..Profile::default()
            }
        }
    );
    assert_eq!(
        action("DELETE_ACCOUNT", ""),
        Action::DeleteUser {
            user_id: "u".into()
        }
    );
    assert_eq!(
        action("USER_DISABLED_BY_PERMANENT_LOCKOUT", ""),
        Action::DisableUser {
            user_id: "u".into()
        }
    );
    assert_eq!(
        action("REVOKE_GRANT", r#","details":{"revoked_client":"web-app"}"#),
        Action::RevokeGrant {
            user_id: "u".into(),
            client_id: "web-app".into()
        }
    );
    assert_eq!(
        action(
            "USER_SESSION_DELETED",
            r#","details":{"reason":"user_session_expired"}"#
        ),
        Action::SessionExpired {
            user_id: "u".into(),
            session_id: "s".into()
        }
    );
    for activity in ["CODE_TO_TOKEN", "IMPERSONATE"] {
        assert_eq!(
            action(activity, ""),
            Action::SessionActivity {
                user_id: "u".into(),
                session_id: "s".into(),
                client_id: None,
                ip_address: None,
            },
            "{activity}"
        );
    }
    assert_eq!(
        action("SOME_FUTURE_EVENT", ""),
        Action::Ignore(Ignored::NoEffect)
    );
}

#[test]
fn login_error_without_user_is_ignored() {
    let event = ok(
        r#"{"schema":1,"kind":"user","id":"x","time":1,"realmId":"r","type":"LOGIN_ERROR","error":"user_not_found","details":{"username":"ghost"}}"#,
    );
    assert_eq!(event.action, Action::Ignore(Ignored::Missing("userId")));
}

#[test]
fn valid_events_lacking_what_their_effect_needs_are_ignored_not_rejected() {
    let cases = [
        // Keycloak's first broker login emits these before the user exists.
        (
            r#""type":"UPDATE_PROFILE","details":{"updated_email":"a@x"}"#,
            "userId",
        ),
        (
            r#""type":"UPDATE_EMAIL","details":{"updated_email":"a@x"}"#,
            "userId",
        ),
        (r#""type":"LOGIN""#, "userId"),
        (r#""type":"REFRESH_TOKEN","userId":"u""#, "sessionId"),
        (r#""type":"LOGOUT","userId":"u""#, "sessionId"),
        (
            r#""type":"REVOKE_GRANT","userId":"u""#,
            "details.revoked_client",
        ),
    ];
    for (fields, missing) in cases {
        let event = ok(&format!(
            r#"{{"schema":1,"kind":"user","id":"x","time":1,"realmId":"r",{fields}}}"#
        ));
        assert_eq!(
            event.action,
            Action::Ignore(Ignored::Missing(missing)),
            "{fields}"
        );
    }
    let admin = [
        r#""resourceType":"USER","operationType":"DELETE""#,
        r#""resourceType":"USER","operationType":"UPDATE""#,
        r#""resourceType":"USER_SESSION","operationType":"DELETE","resourcePath":"users""#,
    ];
    for fields in admin {
        let event = ok(&format!(
            r#"{{"schema":1,"kind":"admin","id":"x","time":1,"realmId":"r",{fields}}}"#
        ));
        assert_eq!(
            event.action,
            Action::Ignore(Ignored::Missing("resourcePath")),
            "{fields}"
        );
    }
}

#[test]
fn long_detail_values_are_kept_whole() {
    // A pushed authorization request makes redirect URIs of several kilobytes.
    let redirect = format!("https://app.example/cb?state={}", "s".repeat(12_000));
    let event = ok(&user_event(
        "LOGIN",
        &format!(r#","details":{{"redirect_uri":"{redirect}","username":"alice"}}"#),
    ));
    assert!(matches!(event.action, Action::Login { .. }));
}

#[test]
fn an_admin_create_without_created_timestamp_is_created_at_the_event_time() {
    let event = ok(
        r#"{"schema":1,"kind":"admin","id":"x","time":1700000000123,"realmId":"r","resourceType":"USER","operationType":"CREATE","resourcePath":"users/u1","representation":"{\"username\":\"alice\"}"}"#,
    );
    let Action::UpdateProfile { profile, .. } = event.action else {
        panic!("{:?}", event.action);
    };
    assert_eq!(profile.created_at, Some(1_700_000_000_123));
}

#[test]
fn failed_admin_operations_are_ignored() {
    let event = ok(
        r#"{"schema":1,"kind":"admin","id":"x","time":1,"realmId":"r","resourceType":"USER","operationType":"DELETE","resourcePath":"users/u1","error":"unknown_error"}"#,
    );
    assert_eq!(event.action, Action::Ignore(Ignored::Failed));
}

#[test]
// One table of inputs and the errors they must give: it reads better whole.
fn malformed_messages_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"schema":1,"kind":"user","id":"x","time":1"#,
            "truncated JSON",
        ),
        ("{\"schema\":1,,}", "invalid JSON"),
        ("[1,2]", "expected a JSON object, got an array"),
        ("{}", "unrecognised message"),
        (
            r#"{"schema":2,"kind":"user"}"#,
            "unsupported schema version the number 2",
        ),
        (
            r#"{"schema":"1","kind":"user"}"#,
            "unsupported schema version a string \"1\"",
        ),
        (
            r#"{"schema":1,"kind":"user","time":1,"realmId":"r","type":"LOGIN","userId":"u"}"#,
            "field `id` is missing",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"","time":1,"realmId":"r","type":"LOGIN","userId":"u"}"#,
            "field `id`: expected a non-empty identifier, got an empty string",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","realmId":"r","type":"LOGIN","userId":"u"}"#,
            "field `time` is missing",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":"yesterday","realmId":"r","type":"LOGIN","userId":"u"}"#,
            "field `time`: expected an integer of epoch milliseconds, got a string \"yesterday\"",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":-5,"realmId":"r","type":"LOGIN","userId":"u"}"#,
            "field `time`: expected an integer of epoch milliseconds, got the number -5",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":1.5,"realmId":"r","type":"LOGIN","userId":"u"}"#,
            "field `time`: expected an integer of epoch milliseconds, got the number 1.5",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":1,"realmId":"r","type":"LOGIN","userId":17}"#,
            "field `userId`: expected a string, got the number 17",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":1,"realmId":"r","type":"LOGIN","userId":"u","details":{"username":5}}"#,
            "field `details.username`: expected a string, got the number 5",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":1,"realmId":"r","type":"LOGIN","userId":"u","details":"oops"}"#,
            "field `details`: expected an object, got a string \"oops\"",
        ),
        (
            r#"{"schema":1,"kind":"user","id":"x","time":1,"realmId":"r","type":"LOGIN","userId":"u\u0000"}"#,
            "field `userId`: expected text without NUL characters",
        ),
        (
            r#"{"schema":1,"kind":"robot","id":"x","time":1,"realmId":"r"}"#,
            "field `kind`: expected one of user, admin, token, got a string \"robot\"",
        ),
        (
            r#"{"schema":1,"kind":"admin","id":"x","time":1,"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u","representation":"{not json"}"#,
            "field `representation`: expected a UserRepresentation as a JSON string",
        ),
        (
            r#"{"schema":1,"kind":"admin","id":"x","time":1,"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u","representation":"{\"enabled\":\"no\"}"}"#,
            "field `representation.enabled`: expected true or false, got a string \"no\"",
        ),
        ("   ", "message is empty"),
        ("  \"details\" : {", "a fragment of pretty-printed JSON"),
        ("}", "a fragment of pretty-printed JSON"),
    ];
    for (input, expected) in cases {
        let message = err(input);
        assert!(
            message.contains(expected),
            "{input}\n  gave {message:?}\n  expected {expected:?}"
        );
    }
}

#[test]
fn huge_identifiers_are_rejected_with_their_size() {
    let huge_id = "u".repeat(300);
    let message =
        err(&user_event("LOGIN", "")
            .replace(r#""userId":"u""#, &format!(r#""userId":"{huge_id}""#)));
    assert!(
        message.contains("field `userId`: expected a shorter string"),
        "{message}"
    );
}

#[test]
fn oversized_messages_and_invalid_utf8_are_refused() {
    let big = vec![b' '; 2048];
    assert_eq!(
        parse_message(&big, 1024),
        Err(ParseError::TooLarge {
            size: 2048,
            limit: 1024
        })
    );
    let mut bytes = br#"{"schema":1,"kind":"user","id":"x","#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"}");
    assert_eq!(
        parse_message(&bytes, LIMIT),
        Err(ParseError::InvalidUtf8 { offset: 35 })
    );
}

#[test]
fn users_from_the_admin_api_are_read_whole() {
    let value: serde_json::Value = serde_json::from_str(
        r#"{"id":"u1","username":"alice","firstName":"Alice","emailVerified":false,"enabled":true,"createdTimestamp":1700000000000,"totp":false,"access":{"manage":true}}"#,
    )
    .expect("json");
    let (id, profile) = read_admin_user(&value, "user").expect("read");
    assert_eq!(id, "u1");
    assert!(profile.complete);
    assert_eq!(profile.first_name.as_deref(), Some("Alice"));
    assert_eq!(profile.last_name, None);
    assert_eq!(
        profile.attributes,
        Some(serde_json::Map::new()),
        "none means empty"
    );
    assert_eq!(profile.created_at, Some(1_700_000_000_000));

    let no_id = serde_json::json!({"username": "x"});
    assert_eq!(
        read_admin_user(&no_id, "users[3]"),
        Err(ParseError::Missing {
            field: "users[3].id".into()
        })
    );
    let wrong = serde_json::json!({"id": "u2", "enabled": "yes"});
    let error = read_admin_user(&wrong, "user").expect_err("enabled must be a boolean");
    assert!(error.to_string().contains("user.enabled"), "{error}");
    assert!(read_admin_user(&serde_json::json!([1]), "user").is_err());
}

#[test]
fn admin_user_actions_are_logouts_and_consent_revocations() {
    let action = |path: &str| {
        ok(&format!(
            r#"{{"schema":1,"kind":"admin","id":"x","time":1,"realmId":"r","resourceType":"USER","operationType":"ACTION","resourcePath":"{path}"}}"#
        ))
        .action
    };
    assert_eq!(
        action("users/u1/logout"),
        Action::LogoutUser {
            user_id: "u1".into()
        }
    );
    assert_eq!(
        action("users/u1/consents/web-app"),
        Action::RevokeGrant {
            user_id: "u1".into(),
            client_id: "web-app".into()
        }
    );
    assert_eq!(
        action("users/u1/reset-password-email"),
        Action::Ignore(Ignored::NoEffect)
    );
}

/// Keycloak's `DefaultUserProfile` resets emailVerified when the email changes in the
/// UPDATE_PROFILE and ACCOUNT contexts; UPDATE_EMAIL through the verified link sets it
/// true, so that event leaves it to the profile read.
#[test]
fn an_email_change_through_update_profile_unverifies_the_email() {
    let changed = ok(
        r#"{"time":1,"type":"UPDATE_PROFILE","realmId":"r","userId":"u1","details":{"context":"ACCOUNT","previous_email":"a@x","updated_email":"b@x"}}"#,
    );
    let Action::UpdateProfile { profile, .. } = changed.action else {
        panic!("{:?}", changed.action);
    };
    assert_eq!(profile.email.as_deref(), Some("b@x"));
    assert_eq!(profile.email_verified, Some(false));
    let names_only = ok(
        r#"{"time":1,"type":"UPDATE_PROFILE","realmId":"r","userId":"u1","details":{"updated_first_name":"B"}}"#,
    );
    let Action::UpdateProfile { profile, .. } = names_only.action else {
        panic!("{:?}", names_only.action);
    };
    assert_eq!(profile.email_verified, None);
    let update_email = ok(
        r#"{"time":1,"type":"UPDATE_EMAIL","realmId":"r","userId":"u1","details":{"previous_email":"a@x","updated_email":"b@x"}}"#,
    );
    let Action::UpdateProfile { profile, .. } = update_email.action else {
        panic!("{:?}", update_email.action);
    };
    assert_eq!(profile.email_verified, None);
}

/// A dead-letter copy of a token message holds `[redacted]` in place of the token: storing
/// that would put a placeholder in the vault, so such a copy is rejected, saying why.
#[test]
fn a_redacted_token_message_is_rejected_with_what_to_do() {
    let copy = r#"{"schema":1,"kind":"token","id":"t-1","time":1,"realmId":"r","userId":"u1","sessionId":"s1","clientId":"web","tokenType":"refresh","token":"[redacted]"}"#;
    let reason = err(copy);
    assert!(
        reason.contains("redacted copy") && reason.contains("must send the token again"),
        "{reason}"
    );
}

mod directory {
    use super::*;
    use crate::core::event::{
        Affected, DirectoryAction, GroupRecord, MemberRef, OrganizationRecord, RoleKey, RoleRecord,
    };
    use crate::core::ids::{ClientUuid, GroupId, OrganizationId, RoleId};

    fn admin(resource: &str, operation: &str, path: &str, rep: Option<&str>) -> Action {
        let mut envelope = serde_json::json!({
            "schema": 1, "kind": "admin", "id": "a1", "time": 1000, "realmId": "r",
            "resourceType": resource, "operationType": operation, "resourcePath": path,
            "details": {"username": "alice"},
        });
        if let Some(rep) = rep {
            envelope["representation"] = Value::String(rep.to_string());
        }
        ok(&envelope.to_string()).action
    }

    fn directory(action: Action) -> DirectoryAction {
        match action {
            Action::Directory(directory) => directory,
            other => panic!("not a directory action: {other:?}"),
        }
    }

    #[test]
    fn group_memberships_name_user_and_group_by_path() {
        let joined = directory(admin(
            "GROUP_MEMBERSHIP",
            "CREATE",
            "users/u1/groups/g1",
            Some(r#"{"id":"g1","name":"staff","path":"/staff","subGroups":[]}"#),
        ));
        assert_eq!(
            joined,
            DirectoryAction::Membership {
                user_id: "u1".into(),
                group: GroupRecord {
                    id: GroupId::from("g1"),
                    name: Some("staff".into()),
                    path: Some("/staff".into()),
                    parent_id: None,
                },
                member: true,
            }
        );
        // Without (or with an unreadable) representation the membership still counts.
        let left = directory(admin(
            "GROUP_MEMBERSHIP",
            "DELETE",
            "users/u1/groups/g1",
            Some("{oops"),
        ));
        assert!(matches!(
            left,
            DirectoryAction::Membership { member: false, .. }
        ));
    }

    #[test]
    fn role_mappings_list_their_roles_and_group_mappings_ask_for_the_members() {
        let realm = directory(admin(
            "REALM_ROLE_MAPPING",
            "CREATE",
            "users/u1/role-mappings/realm",
            Some(
                r#"[{"id":"r1","name":"admin","composite":false,"clientRole":false,"containerId":"r"}]"#,
            ),
        ));
        assert_eq!(
            realm,
            DirectoryAction::RoleMapping {
                user_id: "u1".into(),
                roles: vec![RoleRecord {
                    id: RoleId::from("r1"),
                    name: Some("admin".into()),
                    client_id: None,
                    composite: Some(false),
                }],
                granted: true,
            }
        );
        let client = directory(admin(
            "CLIENT_ROLE_MAPPING",
            "DELETE",
            "users/u1/role-mappings/clients/c-uuid",
            Some(r#"[{"id":"cr1","name":"viewer","clientRole":true,"containerId":"c-uuid"}]"#),
        ));
        let DirectoryAction::RoleMapping { roles, granted, .. } = client else {
            panic!("{client:?}");
        };
        assert_eq!(
            (roles[0].client_id.clone(), granted),
            (Some(ClientUuid::from("c-uuid")), false)
        );
        assert_eq!(
            directory(admin(
                "REALM_ROLE_MAPPING",
                "CREATE",
                "users/u1/role-mappings/realm",
                None
            )),
            DirectoryAction::Recompute(Affected::User("u1".into()))
        );
        assert_eq!(
            directory(admin(
                "CLIENT_ROLE_MAPPING",
                "CREATE",
                "groups/g1/role-mappings/clients/c-uuid",
                Some("[]")
            )),
            DirectoryAction::Recompute(Affected::GroupMembers(GroupId::from("g1")))
        );
        // The roles are what the effect needs: a list that is not one is refused, named.
        let refused = err(&serde_json::json!({
            "schema": 1, "kind": "admin", "id": "a2", "time": 1, "realmId": "r",
            "resourceType": "REALM_ROLE_MAPPING", "operationType": "CREATE",
            "resourcePath": "users/u1/role-mappings/realm",
            "representation": r#"[{"name":"admin"}]"#,
        })
        .to_string());
        assert!(refused.contains("representation[0].id"), "{refused}");
    }

    #[test]
    fn groups_roles_and_organizations_by_their_resources() {
        let child = directory(admin(
            "GROUP",
            "CREATE",
            "groups/parent/children",
            Some(r#"{"id":"child","name":"ops"}"#),
        ));
        assert_eq!(
            child,
            DirectoryAction::Group(GroupRecord {
                id: GroupId::from("child"),
                name: Some("ops".into()),
                path: None,
                parent_id: Some(Some(GroupId::from("parent"))),
            })
        );
        assert_eq!(
            directory(admin("GROUP", "DELETE", "groups/g1", None)),
            DirectoryAction::GroupDeleted(GroupId::from("g1"))
        );
        assert_eq!(
            directory(admin("REALM_ROLE", "DELETE", "roles/admin", None)),
            DirectoryAction::RoleDeleted(RoleKey::Name {
                client_id: None,
                name: "admin".into()
            })
        );
        assert_eq!(
            directory(admin("CLIENT_ROLE", "DELETE", "roles-by-id/r9", None)),
            DirectoryAction::RoleDeleted(RoleKey::Id(RoleId::from("r9")))
        );
        assert_eq!(
            directory(admin(
                "REALM_ROLE",
                "CREATE",
                "roles/admin/composites",
                Some("[]")
            )),
            DirectoryAction::Recompute(Affected::RoleHolders(RoleKey::Name {
                client_id: None,
                name: "admin".into()
            }))
        );
        let role = directory(admin(
            "CLIENT_ROLE",
            "UPDATE",
            "clients/c-uuid/roles/viewer",
            Some(r#"{"id":"cr1","composite":true}"#),
        ));
        assert_eq!(
            role,
            DirectoryAction::Role(RoleRecord {
                id: RoleId::from("cr1"),
                name: Some("viewer".into()),
                client_id: Some(ClientUuid::from("c-uuid")),
                composite: Some(true),
            })
        );
        assert_eq!(
            directory(admin(
                "ORGANIZATION",
                "UPDATE",
                "organizations/o1",
                Some(r#"{"id":"o1","name":"Acme","alias":"acme"}"#)
            )),
            DirectoryAction::Organization(OrganizationRecord {
                id: OrganizationId::from("o1"),
                name: Some("Acme".into()),
                alias: Some("acme".into()),
            })
        );
        // OrganizationMemberResource: the add names the member in the details only.
        assert_eq!(
            directory(admin(
                "ORGANIZATION_MEMBERSHIP",
                "CREATE",
                "organizations/o1/members",
                None
            )),
            DirectoryAction::OrganizationMembership {
                organization_id: OrganizationId::from("o1"),
                member_ref: MemberRef::Username("alice".into()),
                member: true,
            }
        );
        assert_eq!(
            directory(admin(
                "ORGANIZATION_MEMBERSHIP",
                "DELETE",
                "organizations/o1/members/u1",
                None
            )),
            DirectoryAction::OrganizationMembership {
                organization_id: OrganizationId::from("o1"),
                member_ref: MemberRef::Id("u1".into()),
                member: false,
            }
        );
        // Invitations are not memberships yet; unknown sub-resources change nothing.
        for (resource, path) in [
            (
                "ORGANIZATION_MEMBERSHIP",
                "organizations/o1/members/invite-user",
            ),
            ("GROUP", "groups/g1/management/permissions"),
        ] {
            assert_eq!(
                admin(resource, "CREATE", path, None),
                Action::Ignore(Ignored::NoEffect),
                "{path}"
            );
        }
    }
}

/// Content keys are stored in the inbox: a release that derived them differently would
/// apply again every event delivered once more after the upgrade. Pinned, per shape.
#[test]
fn content_keys_and_derived_ids_never_change() {
    let user = ok(ENVELOPE_LOGIN);
    let admin = ok(
        r#"{"@class":"com.github.aznamier.keycloak.event.provider.EventAdminNotificationMqMsg","time":1732270000500,"realmId":"0c6f6a0e-realm","authDetails":{"realmId":"master","clientId":"admin-cli","userId":"admin-user","ipAddress":"10.0.0.1"},"resourceType":"USER","operationType":"UPDATE","resourcePath":"users/8d2b5c1e-user","representation":"{\"email\":\"é@example.com\"}","details":{"k":"v"}}"#,
    );
    let pinned = [
        (user.id.as_str(), "163bb0df-80d0-5b6a-a4f4-b9907ff156cf"),
        (admin.id.as_str(), "4568f1d5-1fc4-599b-b4fd-ff3a93c32101"),
        (
            admin.message_id.as_str(),
            "f9c34c05-fe97-5c1c-8380-18396bf7f33f",
        ),
    ];
    let (got, want): (Vec<&str>, Vec<&str>) = pinned.into_iter().unzip();
    assert_eq!(got, want);
}

#[test]
fn every_event_of_one_user_takes_the_same_lane() {
    let event = |id: &str, user: &str, kind: &str| {
        ok(&format!(
            r#"{{"schema":1,"kind":"user","id":"{id}","time":1,"realmId":"r","type":"{kind}","userId":"{user}","sessionId":"s-{user}"}}"#
        ))
    };
    let lanes = 3;
    let mut used = std::collections::BTreeSet::new();
    for n in 0..50 {
        let user = format!("user-{n}");
        let lane = event("a", &user, "LOGIN").lane(lanes);
        assert!(lane < lanes);
        assert_eq!(event("b", &user, "REFRESH_TOKEN").lane(lanes), lane);
        assert_eq!(event("c", &user, "LOGOUT").lane(lanes), lane);
        assert_eq!(event("d", &user, "LOGIN").lane(1), 0);
        used.insert(lane);
    }
    // Users spread over every lane.
    assert_eq!(used.len(), lanes);
}
