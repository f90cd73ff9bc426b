//! `[keycloak]`: the Admin API and the enrichment that reads it.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::key::{Key, Shown, Values};
use super::ConfigError;
use crate::core::ids::RealmName;

const URL: Key = Key::new("keycloak.url", None, Shown::Plain, "unset");
const REALMS: Key = Key::new(
    "keycloak.realms",
    Some(""),
    Shown::Plain,
    "empty; comma-separated",
);
const CLIENT_ID: Key = Key::new("keycloak.client_id", None, Shown::Plain, "unset");
const CLIENT_SECRET: Key = Key::new(
    "keycloak.client_secret",
    None,
    Shown::Secret,
    "unset; secret",
);
const TOKEN_REALM: Key = Key::new(
    "keycloak.token_realm",
    None,
    Shown::Plain,
    "unset: each realm's own token endpoint",
);
const TIMEOUT: Key = Key::new("keycloak.timeout_secs", Some("10"), Shown::Plain, "");
const RETRY_MAX: Key = Key::new("keycloak.retry_max_secs", Some("30"), Shown::Plain, "");
const PAGE_SIZE: Key = Key::new("keycloak.page_size", Some("100"), Shown::Plain, "");
const CA_FILE: Key = Key::new(
    "keycloak.ca_file",
    None,
    Shown::Plain,
    "unset; PEM roots trusted besides the public ones",
);
const ENRICH: Key = Key::new(
    "keycloak.enrich",
    Some("true"),
    Shown::Plain,
    "only with `keycloak.url`",
);
const ENRICH_CONCURRENCY: Key =
    Key::new("keycloak.enrich_concurrency", Some("4"), Shown::Plain, "");

pub const KEYS: &[Key] = &[
    URL,
    REALMS,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_REALM,
    TIMEOUT,
    RETRY_MAX,
    PAGE_SIZE,
    ENRICH,
    ENRICH_CONCURRENCY,
    CA_FILE,
];

/// Keys whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &[REALMS.name];

#[derive(Debug, Clone)]
pub struct KeycloakSettings {
    /// Base URL, with `/auth` for servers that still use that prefix.
    pub url: Option<Url>,
    pub realms: Vec<RealmName>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// The realm the service account logs in to; `None`: each realm's own.
    pub token_realm: Option<String>,
    pub timeout: Duration,
    /// How long one request keeps retrying what may pass (5xx, 429, timeouts).
    pub retry_max: Duration,
    pub page_size: u32,
    /// Read users that events leave incomplete from the Admin API (needs `url`).
    pub enrich: bool,
    pub enrich_concurrency: usize,
    /// PEM certificates trusted for the Admin API besides the public roots (a private
    /// CA in front of Keycloak).
    pub ca_file: Option<std::path::PathBuf>,
}

impl KeycloakSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let url = values
            .url(&URL, &["http", "https"])?
            .map(|url| Url::parse(url.expose()).map_err(|e| URL.invalid(e.to_string())))
            .transpose()?;
        let realms: Vec<RealmName> = values
            .list(&REALMS)?
            .into_iter()
            .map(RealmName::from)
            .collect();
        let client_id: Option<String> = values.optional(&CLIENT_ID)?;
        let client_secret = values.secret(&CLIENT_SECRET)?;
        if url.is_some() {
            if client_id.is_none() {
                return Err(CLIENT_ID.invalid("is required with keycloak.url"));
            }
            if client_secret.is_none() {
                return Err(CLIENT_SECRET.invalid("is required with keycloak.url"));
            }
            if realms.is_empty() {
                return Err(REALMS.invalid("lists no realm, but keycloak.url is set"));
            }
        }
        Ok(KeycloakSettings {
            enrich: values.get::<bool>(&ENRICH)? && url.is_some(),
            url,
            realms,
            client_id,
            client_secret,
            token_realm: values.optional(&TOKEN_REALM)?,
            timeout: Duration::from_secs(values.at_least(&TIMEOUT, 1)?),
            retry_max: values.secs(&RETRY_MAX)?,
            page_size: values.within(&PAGE_SIZE, 1..=10_000)?,
            enrich_concurrency: values.at_least(&ENRICH_CONCURRENCY, 1)?,
            ca_file: values.optional::<String>(&CA_FILE)?.map(Into::into),
        })
    }
}
