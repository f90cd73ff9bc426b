//! Groups, roles and organizations from Keycloak's admin events, with the resource paths
//! and representations Keycloak records (UserResource, RoleMapperResource,
//! GroupResource, RoleContainerResource, the organization resources): exact rows, in
//! both arrival orders.

use keycloak_sync::core::event::Event;
use keycloak_sync::store::Store;
use serde_json::{json, Value};

use crate::support::*;

const T0: i64 = 1_732_270_000_000;
const U1: &str = "6a1c2b9e-0000-4000-8000-000000000001";
const G1: &str = "0b2d7a10-0000-4000-8000-0000000000g1";
const G2: &str = "0b2d7a10-0000-4000-8000-0000000000g2";
const R1: &str = "5f0e0c3a-0000-4000-8000-0000000000r1";
const CLIENT: &str = "9e8d7c6b-0000-4000-8000-00000000c1e7";
const ORG: &str = "4c3b2a19-0000-4000-8000-0000000000o1";

fn admin(
    id: &str,
    time: i64,
    resource: &str,
    operation: &str,
    path: &str,
    representation: Option<Value>,
) -> Event {
    let representation = representation.map(|rep| rep.to_string());
    let envelope = admin_envelope(
        id,
        time,
        "r",
        resource,
        operation,
        path,
        representation.as_deref(),
    );
    event(&envelope)
}

/// REGISTER of U1 as `alice`.
fn register_alice(time: i64) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"reg","time":{time},"realmId":"r","type":"REGISTER","userId":"{U1}","details":{{"username":"alice"}}}}"#
    ))
}

/// OrganizationMemberResource.addMember as Keycloak records it: the path is the members
/// collection, the representation the organization, the user only in the details.
fn add_alice_to_org(id: &str, time: i64) -> Event {
    event(
        &json!({
            "schema": 1, "kind": "admin", "id": id, "time": time, "realmId": "r",
            "resourceType": "ORGANIZATION_MEMBERSHIP", "operationType": "CREATE",
            "resourcePath": format!("organizations/{ORG}/members"),
            "representation": json!({"id": ORG, "name": "Acme", "alias": "acme"}).to_string(),
            "details": {"username": "alice", "email": "alice@example.com"},
        })
        .to_string(),
    )
}

async fn rows(store: &Store, sql: &str) -> Vec<Value> {
    sqlx::query_scalar::<_, Value>(&format!("SELECT to_jsonb(t) - 'updated_at' FROM ({sql}) t"))
        .fetch_all(store.pool())
        .await
        .expect("rows")
}

async fn group_members(store: &Store) -> Vec<Value> {
    rows(
        store,
        "SELECT user_id, group_id, realm_id, ts_ms(member_since) AS member_since,
                ts_ms(removed_at) AS removed_at
         FROM user_groups ORDER BY user_id, group_id",
    )
    .await
}

async fn groups(store: &Store) -> Vec<Value> {
    rows(
        store,
        "SELECT id, realm_id, name, path, parent_id, ts_ms(deleted_at) AS deleted_at
         FROM groups ORDER BY id",
    )
    .await
}

async fn user_roles(store: &Store) -> Vec<Value> {
    rows(
        store,
        "SELECT user_id, role_id, realm_id, client_id, role_name, direct, effective
         FROM user_roles ORDER BY user_id, role_id",
    )
    .await
}

async fn roles(store: &Store) -> Vec<Value> {
    rows(
        store,
        "SELECT id, realm_id, client_id, name, composite, ts_ms(deleted_at) AS deleted_at
         FROM roles ORDER BY id",
    )
    .await
}

async fn organization_members(store: &Store) -> Vec<Value> {
    rows(
        store,
        "SELECT organization_id, user_id, ts_ms(member_since) AS member_since,
                ts_ms(removed_at) AS removed_at
         FROM organization_members ORDER BY organization_id, user_id",
    )
    .await
}

/// Applies `events` one per batch in the given order and in reverse, each into a fresh
/// database, and returns the two stores.
async fn both_orders(events: &[Event]) -> [(TestDb, Store); 2] {
    let forward = TestDb::new().await;
    let forward_store = forward.store().await;
    for e in events {
        apply(&forward_store, std::slice::from_ref(e)).await;
    }
    let backward = TestDb::new().await;
    let backward_store = backward.store().await;
    for e in events.iter().rev() {
        apply(&backward_store, std::slice::from_ref(e)).await;
    }
    [(forward, forward_store), (backward, backward_store)]
}

fn group_rep(id: &str, name: &str, path: &str) -> Value {
    json!({"id": id, "name": name, "path": path, "subGroups": [], "attributes": {}})
}

#[tokio::test]
async fn group_membership_added_then_removed_is_removed_in_either_order() {
    let join = admin(
        "m1",
        T0,
        "GROUP_MEMBERSHIP",
        "CREATE",
        &format!("users/{U1}/groups/{G1}"),
        Some(group_rep(G1, "staff", "/staff")),
    );
    let leave = admin(
        "m2",
        T0 + 1_000,
        "GROUP_MEMBERSHIP",
        "DELETE",
        &format!("users/{U1}/groups/{G1}"),
        Some(group_rep(G1, "staff", "/staff")),
    );
    let rejoin_earlier = admin(
        "m0",
        T0 - 5_000,
        "GROUP_MEMBERSHIP",
        "CREATE",
        &format!("users/{U1}/groups/{G1}"),
        None,
    );
    for (_db, store) in both_orders(&[rejoin_earlier, join, leave]).await {
        assert_eq!(
            group_members(&store).await,
            vec![json!({"user_id": U1, "group_id": G1, "realm_id": "r",
                        "member_since": T0, "removed_at": T0 + 1_000})]
        );
        assert_eq!(
            groups(&store).await,
            vec![
                json!({"id": G1, "realm_id": "r", "name": "staff", "path": "/staff",
                        "parent_id": null, "deleted_at": null})
            ]
        );
    }
}

#[tokio::test]
async fn deleting_a_group_ends_its_and_its_subgroups_memberships_learnt_before_or_after() {
    let parent = admin(
        "g1",
        T0,
        "GROUP",
        "CREATE",
        &format!("groups/{G1}"),
        Some(json!({"id": G1, "name": "staff", "path": "/staff"})),
    );
    // GroupResource.addChild: the path is the parent's `children`, the id in the body.
    let child = admin(
        "g2",
        T0 + 10,
        "GROUP",
        "CREATE",
        &format!("groups/{G1}/children"),
        Some(json!({"id": G2, "name": "ops"})),
    );
    let join_child = admin(
        "m1",
        T0 + 20,
        "GROUP_MEMBERSHIP",
        "CREATE",
        &format!("users/{U1}/groups/{G2}"),
        Some(group_rep(G2, "ops", "/staff/ops")),
    );
    let delete_parent = admin(
        "g3",
        T0 + 1_000,
        "GROUP",
        "DELETE",
        &format!("groups/{G1}"),
        None,
    );
    for (_db, store) in both_orders(&[parent, child, join_child, delete_parent]).await {
        assert_eq!(
            group_members(&store).await,
            vec![json!({"user_id": U1, "group_id": G2, "realm_id": "r",
                        "member_since": T0 + 20, "removed_at": T0 + 1_000})]
        );
        let deleted: Vec<Value> = groups(&store)
            .await
            .iter()
            .map(|g| json!([g["id"], g["parent_id"], g["deleted_at"]]))
            .collect();
        assert_eq!(
            deleted,
            vec![json!([G1, null, T0 + 1_000]), json!([G2, G1, T0 + 1_000])]
        );
    }
}

fn role_rep(id: &str, name: &str, client: Option<&str>) -> Value {
    json!({"id": id, "name": name, "composite": false, "clientRole": client.is_some(),
           "containerId": client.unwrap_or("r")})
}

#[tokio::test]
async fn direct_role_grants_follow_the_latest_mapping_event_and_die_with_the_role() {
    // RoleMapperResource: CREATE/DELETE on users/{id}/role-mappings/realm with the list
    // of roles as the representation.
    let grant = admin(
        "rm1",
        T0,
        "REALM_ROLE_MAPPING",
        "CREATE",
        &format!("users/{U1}/role-mappings/realm"),
        Some(json!([role_rep(R1, "admin", None)])),
    );
    let client_grant = admin(
        "rm2",
        T0 + 10,
        "CLIENT_ROLE_MAPPING",
        "CREATE",
        &format!("users/{U1}/role-mappings/clients/{CLIENT}"),
        Some(json!([role_rep("cr1", "viewer", Some(CLIENT))])),
    );
    let revoke_client = admin(
        "rm3",
        T0 + 20,
        "CLIENT_ROLE_MAPPING",
        "DELETE",
        &format!("users/{U1}/role-mappings/clients/{CLIENT}"),
        Some(json!([role_rep("cr1", "viewer", Some(CLIENT))])),
    );
    // RoleContainerResource.deleteRole: by name, no representation.
    let delete_role = admin("rd", T0 + 500, "REALM_ROLE", "DELETE", "roles/admin", None);
    for (_db, store) in both_orders(&[grant, client_grant, revoke_client, delete_role]).await {
        assert_eq!(
            user_roles(&store).await,
            vec![
                json!({"user_id": U1, "role_id": R1, "realm_id": "r", "client_id": null,
                       "role_name": "admin", "direct": false, "effective": null}),
                json!({"user_id": U1, "role_id": "cr1", "realm_id": "r", "client_id": CLIENT,
                       "role_name": "viewer", "direct": false, "effective": null}),
            ]
        );
        let roles = roles(&store).await;
        assert_eq!(roles[0]["id"], json!(R1));
        assert_eq!(roles[0]["deleted_at"], json!(T0 + 500));
        assert_eq!(roles[1]["deleted_at"], Value::Null);
    }
}

#[tokio::test]
async fn a_deleted_user_keeps_no_membership_grant_or_organization() {
    let register = register_alice(T0 - 100);
    let join = admin(
        "m1",
        T0,
        "GROUP_MEMBERSHIP",
        "CREATE",
        &format!("users/{U1}/groups/{G1}"),
        None,
    );
    let grant = admin(
        "rm1",
        T0 + 1,
        "REALM_ROLE_MAPPING",
        "CREATE",
        &format!("users/{U1}/role-mappings/realm"),
        Some(json!([role_rep(R1, "admin", None)])),
    );
    let org_leave = admin(
        "om1",
        T0 + 2,
        "ORGANIZATION_MEMBERSHIP",
        "DELETE",
        &format!("organizations/{ORG}/members/{U1}"),
        None,
    );
    let org_rejoin = add_alice_to_org("om2", T0 + 3);
    let delete = admin(
        "del",
        T0 + 1_000,
        "USER",
        "DELETE",
        &format!("users/{U1}"),
        None,
    );
    for (_db, store) in both_orders(&[register, join, grant, org_leave, org_rejoin, delete]).await {
        assert_eq!(
            group_members(&store).await,
            vec![json!({"user_id": U1, "group_id": G1, "realm_id": "r",
                        "member_since": T0, "removed_at": T0 + 1_000})]
        );
        assert_eq!(user_roles(&store).await[0]["direct"], json!(false));
        assert_eq!(
            organization_members(&store).await,
            vec![
                json!({"organization_id": ORG, "user_id": U1, "member_since": T0 + 3,
                        "removed_at": T0 + 1_000})
            ]
        );
    }
}

#[tokio::test]
async fn an_organization_member_added_by_username_is_the_realms_user_of_that_name() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let register = register_alice(T0);
    let add = add_alice_to_org("om1", T0 + 10);
    let create_org = admin(
        "o1",
        T0 + 5,
        "ORGANIZATION",
        "CREATE",
        &format!("organizations/{ORG}"),
        Some(json!({"id": ORG, "name": "Acme", "alias": "acme", "enabled": true})),
    );
    apply(&store, &[register, create_org, add]).await;
    assert_eq!(
        organization_members(&store).await,
        vec![
            json!({"organization_id": ORG, "user_id": U1, "member_since": T0 + 10,
                    "removed_at": null})
        ]
    );
    let orgs = rows(
        &store,
        "SELECT id, name, alias, deleted_at FROM organizations",
    )
    .await;
    assert_eq!(
        orgs,
        vec![json!({"id": ORG, "name": "Acme", "alias": "acme", "deleted_at": null})]
    );
    let delete_org = admin(
        "o2",
        T0 + 50,
        "ORGANIZATION",
        "DELETE",
        &format!("organizations/{ORG}"),
        None,
    );
    apply(&store, &[delete_org]).await;
    assert_eq!(
        organization_members(&store).await[0]["removed_at"],
        json!(T0 + 50)
    );
}

#[tokio::test]
async fn membership_changes_reach_the_change_feed() {
    let db = TestDb::new().await;
    let store = db.store().await.with_feed(Some("keycloak_sync_changes"));
    let join = admin(
        "m1",
        T0,
        "GROUP_MEMBERSHIP",
        "CREATE",
        &format!("users/{U1}/groups/{G1}"),
        None,
    );
    let grant = admin(
        "rm1",
        T0 + 1,
        "REALM_ROLE_MAPPING",
        "CREATE",
        &format!("users/{U1}/role-mappings/realm"),
        Some(json!([role_rep(R1, "admin", None)])),
    );
    let leave = admin(
        "m2",
        T0 + 2,
        "GROUP_MEMBERSHIP",
        "DELETE",
        &format!("users/{U1}/groups/{G1}"),
        None,
    );
    apply(&store, &[join, grant]).await;
    apply(&store, &[leave]).await;
    let kinds: Vec<Value> = rows(
        &store,
        "SELECT table_name, row_id, user_id, kind FROM changes ORDER BY seq",
    )
    .await;
    assert_eq!(
        kinds,
        vec![
            json!({"table_name": "user_groups", "row_id": G1, "user_id": U1, "kind": "group_member_added"}),
            json!({"table_name": "user_roles", "row_id": R1, "user_id": U1, "kind": "role_granted"}),
            json!({"table_name": "user_groups", "row_id": G1, "user_id": U1, "kind": "group_member_removed"}),
        ]
    );
}

#[tokio::test]
async fn an_organization_member_added_before_its_user_is_known_waits_for_it() {
    let register = register_alice(T0);
    let add = add_alice_to_org("om1", T0 + 10);
    for (_db, store) in both_orders(&[register, add]).await {
        assert_eq!(
            organization_members(&store).await,
            vec![
                json!({"organization_id": ORG, "user_id": U1, "member_since": T0 + 10,
                        "removed_at": null})
            ]
        );
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM organization_members_pending")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(waiting, 0);
    }
}

#[tokio::test]
async fn groups_roles_and_organizations_keep_their_newest_names_in_either_order() {
    let events = [
        admin(
            "g1",
            T0,
            "GROUP",
            "CREATE",
            &format!("groups/{G1}"),
            Some(json!({"id": G1, "name": "staff", "path": "/staff"})),
        ),
        // GroupResource.updateGroup: the body as sent (no path).
        admin(
            "g2",
            T0 + 10,
            "GROUP",
            "UPDATE",
            &format!("groups/{G1}"),
            Some(json!({"id": G1, "name": "employees"})),
        ),
        admin(
            "r1",
            T0,
            "REALM_ROLE",
            "CREATE",
            "roles/admin",
            Some(json!({"id": R1, "name": "admin", "composite": false})),
        ),
        // RoleByIdResource.updateRole, then a composite added elsewhere flips `composite`.
        admin(
            "r2",
            T0 + 10,
            "REALM_ROLE",
            "UPDATE",
            &format!("roles-by-id/{R1}"),
            Some(json!({"id": R1, "name": "administrator", "composite": true})),
        ),
        admin(
            "o1",
            T0,
            "ORGANIZATION",
            "CREATE",
            &format!("organizations/{ORG}"),
            Some(json!({"id": ORG, "name": "Acme", "alias": "acme"})),
        ),
        admin(
            "o2",
            T0 + 10,
            "ORGANIZATION",
            "UPDATE",
            &format!("organizations/{ORG}"),
            Some(json!({"id": ORG, "name": "Acme Corp", "alias": "acme"})),
        ),
        admin(
            "o3",
            T0 + 20,
            "ORGANIZATION",
            "DELETE",
            &format!("organizations/{ORG}"),
            None,
        ),
        admin(
            "r3",
            T0 + 20,
            "REALM_ROLE",
            "DELETE",
            &format!("roles-by-id/{R1}"),
            None,
        ),
    ];
    for (_db, store) in both_orders(&events).await {
        assert_eq!(
            groups(&store).await,
            vec![
                json!({"id": G1, "realm_id": "r", "name": "employees", "path": "/employees",
                        "parent_id": null, "deleted_at": null})
            ]
        );
        assert_eq!(
            roles(&store).await,
            vec![
                json!({"id": R1, "realm_id": "r", "client_id": null, "name": "administrator",
                        "composite": true, "deleted_at": T0 + 20})
            ]
        );
        assert_eq!(
            rows(
                &store,
                "SELECT id, name, alias, ts_ms(deleted_at) AS deleted_at FROM organizations"
            )
            .await,
            vec![json!({"id": ORG, "name": "Acme Corp", "alias": "acme", "deleted_at": T0 + 20})]
        );
    }
}

#[tokio::test]
async fn renaming_a_group_moves_its_subgroups_paths_in_either_order() {
    let events = [
        admin(
            "g1",
            T0,
            "GROUP",
            "CREATE",
            &format!("groups/{G1}"),
            Some(json!({"id": G1, "name": "staff", "path": "/staff"})),
        ),
        admin(
            "g2",
            T0 + 10,
            "GROUP",
            "CREATE",
            &format!("groups/{G1}/children"),
            Some(json!({"id": G2, "name": "ops"})),
        ),
        // A membership event reports the subgroup's path as it was then.
        admin(
            "m1",
            T0 + 15,
            "GROUP_MEMBERSHIP",
            "CREATE",
            &format!("users/{U1}/groups/{G2}"),
            Some(group_rep(G2, "ops", "/staff/ops")),
        ),
        admin(
            "g3",
            T0 + 20,
            "GROUP",
            "UPDATE",
            &format!("groups/{G1}"),
            Some(json!({"id": G1, "name": "employees"})),
        ),
    ];
    for (_db, store) in both_orders(&events).await {
        let paths: Vec<Value> = groups(&store)
            .await
            .iter()
            .map(|g| g["path"].clone())
            .collect();
        assert_eq!(paths, vec![json!("/employees"), json!("/employees/ops")]);
    }
}

#[tokio::test]
async fn a_read_confirming_a_direct_grant_is_no_news_and_a_role_held_only_through_a_group_is() {
    use keycloak_sync::core::event::RoleRecord;
    use keycloak_sync::core::plan::{Observation, Version};

    let db = TestDb::new().await;
    let store = db.store().await.with_feed(Some("keycloak_sync_changes"));
    let grant = admin(
        "rm1",
        T0,
        "REALM_ROLE_MAPPING",
        "CREATE",
        &format!("users/{U1}/role-mappings/realm"),
        Some(json!([role_rep(R1, "admin", None)])),
    );
    apply(&store, &[grant]).await;
    let mut via_group = RoleRecord::with_id(&"r-ops".into());
    via_group.name = Some("ops".into());
    let read = Observation::Directory {
        realm_id: "r".into(),
        user_id: U1.into(),
        groups: Vec::new(),
        roles: vec![(RoleRecord::with_id(&R1.into()), true), (via_group, true)],
        at: T0 + 100,
        version: Version::observed(T0 + 100, "test"),
    };
    store.apply_observations(&[read]).await.expect("observe");
    let announced = rows(
        &store,
        "SELECT row_id, kind FROM changes WHERE table_name = 'user_roles' ORDER BY seq",
    )
    .await;
    assert_eq!(
        announced,
        vec![
            json!({"row_id": R1, "kind": "role_granted"}),
            json!({"row_id": "r-ops", "kind": "role_granted"}),
        ]
    );
}
