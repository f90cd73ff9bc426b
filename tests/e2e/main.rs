//! End to end against a real Keycloak (`scripts/keycloak.sh up`) with the keycloak-sync
//! provider installed, the real RabbitMQ and Postgres (`scripts/services.sh up`), and
//! `keycloak-sync run`. Keycloak is the oracle: after flows run through its own endpoints,
//! the tables must say what its Admin API says. Each test has its own realm, database and
//! queue, so the tests run in parallel against one Keycloak.

#[path = "../it/support.rs"]
#[allow(dead_code)]
mod support;

mod fixtures;
mod instance;
mod kc;
mod oracle;
mod proxy;

mod admin_api;
mod directory;
mod expiry;
mod lifecycle;
mod offline;
mod outbox;
mod provider;
mod registration;
mod token_api;

use std::time::Duration;

use keycloak_sync::store::Store;

use kc::Realm;
use support::{amqp_url, Daemon, Names, TestDb};

/// The exchange the provider in Keycloak publishes to (`scripts/keycloak.sh`).
pub const EXCHANGE: &str = "keycloak.events";

/// How long events may take from Keycloak to the tables (the provider batches, the
/// daemon batches; other tests share Keycloak and the broker).
pub const SETTLE: Duration = Duration::from_secs(60);

/// One test's world: a fresh realm in the real Keycloak, a fresh database, a queue bound
/// to the realm's routing keys only, and the daemon consuming it.
pub struct World {
    pub realm: Realm,
    pub db: TestDb,
    pub store: Store,
    pub names: Names,
    pub daemon: Daemon,
}

impl World {
    pub async fn new() -> World {
        Self::with(serde_json::json!({}), &[]).await
    }

    /// `realm_extra` is merged into the realm's representation; `daemon_extra` adds
    /// daemon settings.
    pub async fn with(realm_extra: serde_json::Value, daemon_extra: &[(&str, &str)]) -> World {
        Self::on(&kc::keycloak_url(), realm_extra, daemon_extra).await
    }

    /// In the Keycloak at `url` (a second instance, say).
    pub async fn on(
        url: &str,
        realm_extra: serde_json::Value,
        daemon_extra: &[(&str, &str)],
    ) -> World {
        Self::on_named(url, &Realm::fresh_name(), realm_extra, daemon_extra).await
    }

    /// With a realm name chosen beforehand (from [`Realm::fresh_name`]): settings that
    /// name the realm can be made before the world.
    pub async fn named(
        name: &str,
        realm_extra: serde_json::Value,
        daemon_extra: &[(&str, &str)],
    ) -> World {
        Self::on_named(&kc::keycloak_url(), name, realm_extra, daemon_extra).await
    }

    pub async fn on_named(
        url: &str,
        name: &str,
        realm_extra: serde_json::Value,
        daemon_extra: &[(&str, &str)],
    ) -> World {
        let name = name.to_string();
        let db = TestDb::new().await;
        let amqp = amqp_url();
        let mut names = Names::random();
        names.exchange = EXCHANGE.to_string();
        let binding = format!("kc.{name}.#");
        let mut extra: Vec<(String, String)> =
            vec![("KEYCLOAK_SYNC__AMQP__BINDING_KEY".into(), binding)];
        // Bound before the realm exists: none of its events is ever unroutable.
        support::declare_with(&amqp, &names, &extra).await;
        fixtures::declare_tap(&amqp, &names.queue, &extra[0].1).await;
        let realm = Realm::create_with(url, &name, realm_extra).await;
        extra.extend(realm.daemon_settings());
        extra.extend(
            daemon_extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let pairs: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let daemon = Daemon::start(&db.url, &amqp, &names, &pairs);
        daemon.wait_ready(Duration::from_secs(60)).await;
        let store = db.store().await;
        World {
            realm,
            db,
            store,
            names,
            daemon,
        }
    }

    /// Waits until the oracle agrees, else fails with the differences and the daemon's log.
    pub async fn settle(&self, what: &str) {
        oracle::settle(self, what).await;
    }
}
