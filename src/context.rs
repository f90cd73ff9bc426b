//! The application context: the shared objects every command and the daemon work with,
//! built once from [`Settings`] — the store (sealing with the configured key ring,
//! queueing incomplete users for enrichment, recording the change feed) and, when
//! `keycloak.url` is set, one Admin API client (one connection pool, one service-account
//! token cache) and the token endpoint.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Settings;
use crate::core::ids::RealmName;
use crate::keycloak::{AdminClient, TokenEndpoint, Transport};
use crate::store::Store;

#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    pub store: Store,
    keycloak: Option<Keycloak>,
}

#[derive(Clone)]
struct Keycloak {
    admin: AdminClient,
    tokens: TokenEndpoint,
}

impl AppContext {
    /// Without waiting for the database: the daemon starts (and reports not ready) while
    /// Postgres is still down.
    pub fn lazy(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::connect_lazy(&settings.database)?;
        Self::around(settings, store)
    }

    /// Waits (up to `database.retry_max_secs`) for the database to answer, and applies
    /// the migrations unless `migrate` is false.
    pub async fn connect(settings: Settings, migrate: bool) -> anyhow::Result<Self> {
        let store = Store::connect(&settings.database).await?;
        let context = Self::around(settings, store)?;
        if migrate {
            context.store.migrate().await?;
        }
        Ok(context)
    }

    fn around(settings: Settings, store: Store) -> anyhow::Result<Self> {
        let store = store
            .with_vault(settings.vault.keys.clone())
            .with_enrichment(settings.keycloak.enrich)
            .with_feed(settings.changes.channel.as_deref());
        let keycloak = match settings.keycloak.url {
            Some(_) => {
                let transport = Transport::new(&settings.keycloak).context("keycloak settings")?;
                Some(Keycloak {
                    admin: AdminClient::with_transport(&settings.keycloak, transport.clone())
                        .context("keycloak settings")?,
                    tokens: TokenEndpoint::new(transport),
                })
            }
            None => None,
        };
        Ok(AppContext {
            settings: Arc::new(settings),
            store,
            keycloak,
        })
    }

    /// The same context whose store retries for `retry_max` (the daemon's long budget).
    pub fn with_store_retry(mut self, retry_max: Duration) -> Self {
        self.store = self.store.with_retry_max(retry_max);
        self
    }

    /// The Admin API client, if `keycloak.url` is set.
    pub fn admin(&self) -> Option<&AdminClient> {
        self.keycloak.as_ref().map(|k| &k.admin)
    }

    /// The Admin API client, or an error naming what to configure.
    pub fn require_admin(&self) -> anyhow::Result<&AdminClient> {
        self.admin()
            .context("this needs the Admin API: set keycloak.url, keycloak.client_id, keycloak.client_secret and keycloak.realms")
    }

    /// The Admin API client limited to `realms` (all configured ones when empty).
    pub fn admin_for(&self, realms: &[String]) -> anyhow::Result<AdminClient> {
        let admin = self.require_admin()?;
        if realms.is_empty() {
            return Ok(admin.clone());
        }
        let names: Vec<RealmName> = realms.iter().map(|r| RealmName::from(r.as_str())).collect();
        Ok(admin.limited_to(names))
    }

    /// Keycloak's token endpoint, if `keycloak.url` is set.
    pub fn token_endpoint(&self) -> Option<&TokenEndpoint> {
        self.keycloak.as_ref().map(|k| &k.tokens)
    }
}
