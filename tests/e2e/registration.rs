//! Self-registration through Keycloak's own registration form, driven over HTTP as a
//! browser would: the form is fetched (with its cookies), filled in and posted; Keycloak
//! creates the user, logs them in and redirects with a code. The tables then list the
//! user with the profile entered and the session the registration began, as Keycloak's
//! Admin API does.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

use crate::kc::PASSWORD;
use crate::support::user;
use crate::World;

const REDIRECT: &str = "http://127.0.0.1/callback";

/// The `action` of the registration form in Keycloak's page, unescaped.
fn form_action(page: &str) -> Option<String> {
    let form = page.find("kc-register-form")?;
    let rest = &page[form..];
    let start = rest.find("action=\"")? + "action=\"".len();
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].replace("&amp;", "&"))
}

#[tokio::test]
async fn a_user_who_registers_through_the_form_appears_with_their_session() {
    let world = World::new().await;
    let realm = &world.realm;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let page = http
        .get(format!(
            "{}/realms/{}/protocol/openid-connect/registrations",
            realm.url, realm.name
        ))
        .query(&[
            ("client_id", "web"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .expect("registration page");
    assert_eq!(page.status(), StatusCode::OK);
    let cookies: Vec<String> = page
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_string))
        .collect();
    let html = page.text().await.expect("page");
    let action = form_action(&html).unwrap_or_else(|| panic!("no registration form in:\n{html}"));
    let posted = http
        .post(action)
        .header(COOKIE, cookies.join("; "))
        .form(&[
            ("firstName", "Dana"),
            ("lastName", "Self"),
            ("email", "dana@example.com"),
            ("username", "dana"),
            ("password", PASSWORD),
            ("password-confirm", PASSWORD),
        ])
        .send()
        .await
        .expect("registration");
    assert_eq!(posted.status(), StatusCode::FOUND, "the form was accepted");
    let location = posted
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        location.starts_with(REDIRECT) && location.contains("code="),
        "{location}"
    );

    world.settle("after the registration").await;
    let users = realm.users().await;
    let dana = users
        .iter()
        .find(|u| u["username"] == "dana")
        .and_then(|u| u["id"].as_str())
        .expect("Keycloak has dana");
    let row = user(&world.store, dana).await;
    assert_eq!(row.email.as_deref(), Some("dana@example.com"));
    assert_eq!(row.first_name.as_deref(), Some("Dana"));
    assert_eq!(
        realm.session_ids(dana).await.len(),
        1,
        "registering logged dana in"
    );
    crate::fixtures::keep(&world, "registration").await;
    realm.delete().await;
}
