//! Groups and subgroups, realm and client roles (direct, through groups, composites) and
//! organizations, managed through Keycloak's Admin API: the tables list the members,
//! direct and effective role holders Keycloak lists.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::kc::Realm;
use crate::support::wait_until;
use crate::World;

type Pairs = BTreeSet<(String, String)>;

/// What both sides say about the directory, as (holder, thing) pairs.
#[derive(Debug, PartialEq, Eq)]
struct Directory {
    /// (group id, "name path parent")
    groups: Pairs,
    /// (group id, user id)
    members: Pairs,
    /// (role name, user id), realm roles and the `web` client's
    direct: Pairs,
    effective: Pairs,
    /// (organization id, user id)
    organizations: Pairs,
}

async fn list(realm: &Realm, path: &str) -> Vec<Value> {
    realm
        .admin(Method::GET, path, None)
        .await
        .ok(path)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn keycloak_groups(realm: &Realm) -> Vec<Value> {
    let mut all = Vec::new();
    let mut next = list(realm, "/groups?briefRepresentation=false&max=1000").await;
    while let Some(group) = next.pop() {
        let id = group["id"].as_str().unwrap_or_default().to_string();
        next.extend(list(realm, &format!("/groups/{id}/children?max=1000")).await);
        all.push(group);
    }
    all
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

async fn keycloak_side(realm: &Realm, user_ids: &[String], web: &str) -> Directory {
    let mut groups = Pairs::new();
    let mut members = Pairs::new();
    for group in keycloak_groups(realm).await {
        let id = text(&group["id"]);
        groups.insert((
            id.clone(),
            format!(
                "{} {} {}",
                text(&group["name"]),
                text(&group["path"]),
                text(&group["parentId"])
            ),
        ));
        for member in list(realm, &format!("/groups/{id}/members?max=1000")).await {
            members.insert((id.clone(), text(&member["id"])));
        }
    }
    let mut direct = Pairs::new();
    for role in list(realm, "/roles").await {
        let name = text(&role["name"]);
        // Keycloak maps its default role to every user it creates, announced by no event;
        // the tables learn it as an effective role (compared below), not as a direct one.
        if name.starts_with("default-roles-") {
            continue;
        }
        for holder in list(realm, &format!("/roles/{name}/users?max=1000")).await {
            direct.insert((name.clone(), text(&holder["id"])));
        }
    }
    for role in list(realm, &format!("/clients/{web}/roles")).await {
        let name = text(&role["name"]);
        for holder in list(
            realm,
            &format!("/clients/{web}/roles/{name}/users?max=1000"),
        )
        .await
        {
            direct.insert((name.clone(), text(&holder["id"])));
        }
    }
    let mut effective = Pairs::new();
    for user in user_ids {
        for role in list(
            realm,
            &format!("/users/{user}/role-mappings/realm/composite"),
        )
        .await
        {
            effective.insert((text(&role["name"]), user.clone()));
        }
        let client = format!("/users/{user}/role-mappings/clients/{web}/composite");
        for role in list(realm, &client).await {
            effective.insert((text(&role["name"]), user.clone()));
        }
    }
    let mut organizations = Pairs::new();
    for org in list(realm, "/organizations?max=1000").await {
        let id = text(&org["id"]);
        for member in list(realm, &format!("/organizations/{id}/members?max=1000")).await {
            organizations.insert((id.clone(), text(&member["id"])));
        }
    }
    Directory {
        groups,
        members,
        direct,
        effective,
        organizations,
    }
}

async fn pairs(world: &World, sql: &str) -> Pairs {
    sqlx::query_as::<_, (String, String)>(sql)
        .bind(&world.realm.id)
        .fetch_all(world.store.pool())
        .await
        .expect(sql)
        .into_iter()
        .collect()
}

async fn table_side(world: &World, web: &str) -> Directory {
    let roles_of = |column: &str| {
        format!(
            "SELECT role_name, user_id FROM user_roles
             WHERE realm_id = $1 AND {column} AND role_name IS NOT NULL
               AND (client_id IS NULL OR client_id = '{web}')"
        )
    };
    Directory {
        groups: pairs(
            world,
            "SELECT id, concat_ws(' ', coalesce(name, ''), coalesce(path, ''), coalesce(parent_id, ''))
             FROM groups WHERE realm_id = $1 AND deleted_at IS NULL",
        )
        .await,
        members: pairs(
            world,
            "SELECT group_id, user_id FROM user_groups WHERE realm_id = $1 AND member",
        )
        .await,
        direct: pairs(world, &roles_of("direct")).await,
        effective: pairs(world, &roles_of("effective IS TRUE")).await,
        organizations: pairs(
            world,
            "SELECT organization_id, user_id FROM organization_members WHERE realm_id = $1 AND member",
        )
        .await,
    }
}

async fn settle(world: &World, users: &[String], web: &str, what: &str) {
    let agreed = wait_until(crate::SETTLE, || async {
        keycloak_side(&world.realm, users, web).await == table_side(world, web).await
    })
    .await;
    if !agreed {
        panic!(
            "{what}: the directory tables disagree with Keycloak\nKeycloak: {:#?}\ntables:   {:#?}\ndaemon log:\n{}",
            keycloak_side(&world.realm, users, web).await,
            table_side(world, web).await,
            world.daemon.log_text()
        );
    }
}

#[tokio::test]
async fn groups_roles_and_organizations_follow_keycloak() {
    let world = World::with(json!({"organizationsEnabled": true}), &[]).await;
    let realm = &world.realm;
    let alice = realm.create_user("alice", "alice@acme.test").await;
    let bob = realm.create_user("bob", "bob@acme.test").await;
    let carol = realm.create_user("carol", "carol@other.test").await;
    let users = vec![alice.clone(), bob.clone(), carol.clone()];
    let web = realm.client_uuid("web").await;

    // Groups: eng with a subgroup backend, and ops.
    let group = |name: &str| json!({ "name": name });
    let eng = realm
        .admin(Method::POST, "/groups", Some(group("eng")))
        .await
        .created_id("eng");
    let backend = realm
        .admin(
            Method::POST,
            &format!("/groups/{eng}/children"),
            Some(group("backend")),
        )
        .await
        .created_id("backend");
    let ops = realm
        .admin(Method::POST, "/groups", Some(group("ops")))
        .await
        .created_id("ops");
    for (user, group) in [(&alice, &backend), (&bob, &eng), (&carol, &ops)] {
        realm
            .admin(Method::PUT, &format!("/users/{user}/groups/{group}"), None)
            .await
            .ok("join a group");
    }
    realm
        .admin(
            Method::DELETE,
            &format!("/users/{carol}/groups/{ops}"),
            None,
        )
        .await
        .ok("leave a group");

    // Realm roles, one composite of the other two, and a client role of web.
    for name in ["reader", "writer", "admin-role"] {
        realm
            .admin(Method::POST, "/roles", Some(json!({ "name": name })))
            .await
            .created_id(name);
    }
    let role = |name: &'static str| async move {
        realm
            .admin(Method::GET, &format!("/roles/{name}"), None)
            .await
            .ok(name)
    };
    let (reader, writer) = (role("reader").await, role("writer").await);
    realm
        .admin(
            Method::POST,
            "/roles/admin-role/composites",
            Some(json!([reader, writer])),
        )
        .await
        .ok("make a composite");
    realm
        .admin(
            Method::POST,
            &format!("/clients/{web}/roles"),
            Some(json!({"name": "web-user"})),
        )
        .await
        .created_id("client role");
    let web_user = realm
        .admin(Method::GET, &format!("/clients/{web}/roles/web-user"), None)
        .await
        .ok("client role");

    // Direct grants, a composite, a client role, and a role through a group.
    let grant = |user: String, roles: Value| async move {
        realm
            .admin(
                Method::POST,
                &format!("/users/{user}/role-mappings/realm"),
                Some(roles),
            )
            .await
            .ok("grant realm roles");
    };
    grant(alice.clone(), json!([writer])).await;
    grant(bob.clone(), json!([role("admin-role").await])).await;
    realm
        .admin(
            Method::POST,
            &format!("/users/{carol}/role-mappings/clients/{web}"),
            Some(json!([web_user])),
        )
        .await
        .ok("grant a client role");
    realm
        .admin(
            Method::POST,
            &format!("/groups/{eng}/role-mappings/realm"),
            Some(json!([reader])),
        )
        .await
        .ok("grant a group a role");

    // An organization with two members.
    let org = realm
        .admin(
            Method::POST,
            "/organizations",
            Some(json!({"name": "Acme", "alias": "acme", "domains": [{"name": "acme.test"}]})),
        )
        .await
        .created_id("organization");
    for user in [&alice, &bob] {
        let answer = realm
            .admin(
                Method::POST,
                &format!("/organizations/{org}/members"),
                Some(json!(user)),
            )
            .await;
        assert!(answer.status.is_success(), "add a member: {}", answer.body);
    }
    settle(&world, &users, &web, "after building the directory").await;

    // Changes: bob leaves eng, the organization loses alice, writer is revoked, a group
    // is deleted with its subgroup.
    realm
        .admin(Method::DELETE, &format!("/users/{bob}/groups/{eng}"), None)
        .await
        .ok("leave eng");
    realm
        .admin(
            Method::DELETE,
            &format!("/organizations/{org}/members/{alice}"),
            None,
        )
        .await
        .ok("leave the organization");
    realm
        .admin(
            Method::DELETE,
            &format!("/users/{alice}/role-mappings/realm"),
            Some(json!([writer])),
        )
        .await
        .ok("revoke writer");
    realm
        .admin(Method::DELETE, &format!("/groups/{eng}"), None)
        .await
        .ok("delete eng");
    settle(&world, &users, &web, "after changing the directory").await;
    crate::fixtures::keep(&world, "directory").await;
    realm.delete().await;
}
