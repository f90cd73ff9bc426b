//! Revoking a user's consent to a client (REVOKE_GRANT, or the admin's USER ACTION
//! `users/{id}/consents/{client}`) ends the user's offline-only sessions of that client, as
//! Keycloak does, in any order of arrival: a session its LOGIN calls offline
//! (`refresh_token_type: Offline`) and that began before the revocation. Online sessions,
//! other clients' sessions and later logins stay open.

use keycloak_sync::core::event::Event;

use crate::support::*;

fn login(id: &str, time: i64, session: &str, client: &str, token_type: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"r","type":"LOGIN","clientId":"{client}","userId":"u1","sessionId":"{session}","ipAddress":"203.0.113.7","details":{{"username":"alice","grant_type":"password","refresh_token_type":"{token_type}"}}}}"#
    ))
}

fn revocations() -> [Event; 2] {
    [
        event(&admin_envelope(
            "adm-consent",
            2000,
            "r",
            "USER",
            "ACTION",
            "users/u1/consents/web",
            None,
        )),
        event(
            r#"{"schema":1,"kind":"user","id":"rg","time":2000,"realmId":"r","type":"REVOKE_GRANT","clientId":"account-console","userId":"u1","details":{"revoked_client":"web"}}"#,
        ),
    ]
}

async fn open_and_ended(store: &keycloak_sync::store::Store) -> Vec<(String, Option<String>)> {
    sessions(store)
        .await
        .into_iter()
        .map(|s| (s.id, s.end_reason))
        .collect()
}

#[tokio::test]
async fn revoking_a_consent_ends_the_offline_only_sessions_of_its_client() {
    for revocation in revocations() {
        for revoked_first in [false, true] {
            let db = TestDb::new().await;
            let store = db.store().await;
            let logins = vec![
                login("l1", 1000, "s1", "web", "Offline"),
                login("l2", 1100, "s2", "web", "Refresh"),
                login("l3", 1200, "s3", "other", "Offline"),
                login("l4", 3000, "s4", "web", "Offline"),
            ];
            let mut batches = vec![logins, vec![revocation.clone()]];
            if revoked_first {
                batches.reverse();
            }
            for batch in &batches {
                apply(&store, batch).await;
            }
            assert_eq!(
                open_and_ended(&store).await,
                vec![
                    ("s1".into(), Some("revoked".into())),
                    ("s2".into(), None),
                    ("s3".into(), None),
                    ("s4".into(), None),
                ],
                "{} first: {revoked_first}",
                revocation.type_name
            );
        }
    }
}
