//! `[api]`: the token API — where it listens (off by default; never on the probe port),
//! its TLS, who may ask (`[[api.callers]]`) and how a client's tokens are refreshed at
//! Keycloak (`[[api.clients]]`, secrets redacted by `config check`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::key::{Key, Shown, Values};
use super::ConfigError;
use crate::core::ids::RealmName;
use crate::core::token_api::CallerGrant;

const LISTEN: Key = Key::new("api.listen", None, Shown::Plain, "off");
const TLS_CERT: Key = Key::new("api.tls_cert", None, Shown::Plain, "unset: plain HTTP");
const TLS_KEY: Key = Key::new("api.tls_key", None, Shown::Plain, "unset");
const CALLERS: Key = Key::new(
    "api.callers",
    None,
    Shown::Tables,
    "none: nobody may ask; `[[api.callers]]` realm, client_id, read, store",
);
const CLIENTS: Key = Key::new(
    "api.clients",
    None,
    Shown::Tables,
    "none; `[[api.clients]]` realm, client_id, secret",
);
const CALLER_CONCURRENCY: Key = Key::new("api.caller_concurrency", Some("32"), Shown::Plain, "");
const REFRESH_WAIT: Key = Key::new("api.refresh_wait_ms", Some("10000"), Shown::Plain, "");
const JWKS_MIN_REFRESH: Key = Key::new("api.jwks_min_refresh_secs", Some("10"), Shown::Plain, "");
const AUDIT_RETENTION: Key = Key::new(
    "api.audit_retention_days",
    Some("90"),
    Shown::Plain,
    "0 keeps every row",
);

pub const KEYS: &[Key] = &[
    LISTEN,
    TLS_CERT,
    TLS_KEY,
    CALLERS,
    CLIENTS,
    CALLER_CONCURRENCY,
    REFRESH_WAIT,
    JWKS_MIN_REFRESH,
    AUDIT_RETENTION,
];

/// How the token endpoint refreshes one client's tokens.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub realm: RealmName,
    pub client_id: String,
    /// `None`: a public client.
    pub secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `None`: the API is off.
    pub listen: Option<SocketAddr>,
    /// Certificate chain and private key (PEM) to serve HTTPS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub callers: Vec<CallerGrant>,
    pub clients: Vec<ApiClient>,
    /// Requests of one caller served at once; more wait.
    pub caller_concurrency: usize,
    /// How long a request waits for another replica's refresh of the same token.
    pub refresh_wait: Duration,
    /// The least time between two reads of a realm's keys on an unknown `kid`.
    pub jwks_min_refresh: Duration,
    /// How long `token_audit` rows are kept; `None`: forever.
    pub audit_retention: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    realm: String,
    client_id: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    store: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    realm: String,
    client_id: String,
    secret: Option<SecretString>,
}

/// An array of tables from the file, or the same as JSON in the environment.
fn tables<T: serde::de::DeserializeOwned>(
    values: &Values,
    key: &Key,
) -> Result<Vec<T>, ConfigError> {
    if let Ok(Some(text)) = values.optional::<String>(key) {
        return serde_json::from_str(&text)
            .map_err(|e| key.invalid(format!("not a JSON array of tables: {e}")));
    }
    Ok(values.optional::<Vec<T>>(key)?.unwrap_or_default())
}

impl ApiSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let listen = match values.optional::<String>(&LISTEN)? {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|e| LISTEN.invalid(format!("{text:?} is not host:port ({e})")))?,
            ),
        };
        let tls = match (
            values.optional::<PathBuf>(&TLS_CERT)?,
            values.optional::<PathBuf>(&TLS_KEY)?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(TLS_KEY.invalid("is required with api.tls_cert")),
            (None, Some(_)) => return Err(TLS_CERT.invalid("is required with api.tls_key")),
        };
        let mut callers = Vec::new();
        for (index, raw) in tables::<RawCaller>(values, &CALLERS)?
            .into_iter()
            .enumerate()
        {
            if raw.realm.is_empty() || raw.client_id.is_empty() {
                return Err(
                    CALLERS.invalid(format!("entry {index}: realm and client_id are required"))
                );
            }
            callers.push(CallerGrant {
                realm: RealmName::from(raw.realm.as_str()),
                client_id: raw.client_id,
                read: raw.read.into_iter().collect::<BTreeSet<_>>(),
                store: raw.store.into_iter().collect::<BTreeSet<_>>(),
            });
        }
        let mut clients = Vec::new();
        for (index, raw) in tables::<RawClient>(values, &CLIENTS)?
            .into_iter()
            .enumerate()
        {
            if raw.realm.is_empty() || raw.client_id.is_empty() {
                return Err(
                    CLIENTS.invalid(format!("entry {index}: realm and client_id are required"))
                );
            }
            let realm = RealmName::from(raw.realm.as_str());
            if clients
                .iter()
                .any(|c: &ApiClient| c.realm == realm && c.client_id == raw.client_id)
            {
                return Err(CLIENTS.invalid(format!(
                    "entry {index}: client {} of realm {} is given twice",
                    raw.client_id, raw.realm
                )));
            }
            clients.push(ApiClient {
                realm,
                client_id: raw.client_id,
                secret: raw.secret,
            });
        }
        let retention_days: u64 = values.get(&AUDIT_RETENTION)?;
        Ok(ApiSettings {
            listen,
            tls,
            callers,
            clients,
            caller_concurrency: values.within(&CALLER_CONCURRENCY, 1..=10_000)?,
            refresh_wait: Duration::from_millis(values.within(&REFRESH_WAIT, 100..=120_000)?),
            jwks_min_refresh: values.secs(&JWKS_MIN_REFRESH)?,
            audit_retention: (retention_days > 0)
                .then(|| Duration::from_secs(retention_days * 86_400)),
        })
    }

    /// How to refresh `client_id`'s tokens of `realm`, if configured.
    pub fn client(&self, realm: &str, client_id: &str) -> Option<&ApiClient> {
        self.clients
            .iter()
            .find(|c| c.realm.as_str() == realm && c.client_id == client_id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use crate::config::Settings;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, crate::config::ConfigError> {
        let dir = std::env::temp_dir().join(format!("kcs-api-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("sync.toml");
        std::fs::write(&file, toml).expect("write");
        let mut vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert(
            "KEYCLOAK_SYNC__DATABASE__URL".into(),
            "postgres://u:p@db/app".into(),
        );
        Settings::load_from(Some(&file), Some(vars))
    }

    const GRANTS: &str = r#"
[api]
listen = "127.0.0.1:8081"
[[api.callers]]
realm = "acme"
client_id = "backend"
read = ["web"]
store = ["web"]
[[api.clients]]
realm = "acme"
client_id = "web"
secret = "s3cret-web"
[[api.clients]]
realm = "acme"
client_id = "spa"
"#;

    #[test]
    fn grants_and_clients_are_read_and_shown_without_secrets() {
        let settings = load(GRANTS, &[]).expect("valid");
        let api = &settings.api;
        assert_eq!(api.listen.map(|a| a.port()), Some(8081));
        assert_eq!(api.callers.len(), 1);
        assert!(api.callers[0].read.contains("web"));
        let web = api.client("acme", "web").expect("web");
        assert_eq!(
            web.secret.as_ref().map(|s| s.expose_secret()),
            Some("s3cret-web")
        );
        assert!(api.client("acme", "spa").expect("spa").secret.is_none());
        let shown = settings.render();
        assert!(!shown.contains("s3cret-web"), "{shown}");
        assert!(shown.contains(r#"client_id = "backend""#), "{shown}");
        assert!(!format!("{settings:?}").contains("s3cret-web"));
    }

    #[test]
    fn grants_come_from_the_environment_as_json() {
        let settings = load(
            "",
            &[(
                "KEYCLOAK_SYNC__API__CALLERS",
                r#"[{"realm":"acme","client_id":"backend","read":["web"]}]"#,
            )],
        )
        .expect("valid");
        assert_eq!(settings.api.callers[0].client_id, "backend");
        assert!(settings.api.listen.is_none());
    }

    #[test]
    fn bad_grants_name_their_key() {
        let cases = [
            ("[[api.callers]]\nrealm = \"acme\"\n", "api.callers"),
            ("[[api.callers]]\nrealm = \"acme\"\nclient_id = \"b\"\nwrite = [\"web\"]\n", "api.callers"),
            ("[api]\ntls_cert = \"/c.pem\"\n", "api.tls_key"),
            ("[api]\nlisten = \"everywhere\"\n", "api.listen"),
            ("[[api.clients]]\nrealm = \"a\"\nclient_id = \"w\"\n[[api.clients]]\nrealm = \"a\"\nclient_id = \"w\"\n", "api.clients"),
        ];
        for (toml, key) in cases {
            let error = load(toml, &[]).expect_err(toml).to_string();
            assert!(error.contains(key), "{toml}: {error}");
        }
    }
}
