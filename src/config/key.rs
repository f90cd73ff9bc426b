//! One configuration key, described once: its name, default, whether it is secret, and
//! the note the README's table shows. The loader's defaults, the environment variable
//! names, `config check` and the README test all read these descriptions.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use url::Url;

use super::{ConfigError, SecretUrl, ENV_PREFIX};

/// How `config check` shows a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Plain,
    /// Never shown.
    Secret,
    /// A URL shown with its password and query redacted.
    SecretUrl,
    /// An array of tables, shown as inline tables with each `secret` redacted.
    Tables,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    /// `None`: no default (optional, or required where the section says so).
    pub default: Option<&'static str>,
    pub shown: Shown,
    /// What the README's default column adds in brackets (empty: nothing).
    pub note: &'static str,
}

impl Key {
    pub const fn new(
        name: &'static str,
        default: Option<&'static str>,
        shown: Shown,
        note: &'static str,
    ) -> Key {
        Key {
            name,
            default,
            shown,
            note,
        }
    }

    /// The environment variable that sets the key.
    pub fn env(&self) -> String {
        env_name(self.name)
    }

    /// The README table's row for this key.
    pub fn readme_row(&self) -> String {
        let default = match (self.default, self.note) {
            (Some(value), "") if !value.is_empty() => format!("`{value}`"),
            (Some(value), note) if !value.is_empty() => format!("`{value}` ({note})"),
            (_, note) => format!("({note})"),
        };
        format!("| `{}` | `{}` | {default} |", self.name, self.env())
    }

    pub(super) fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.name,
            env: self.env(),
            problem: problem.into(),
        }
    }
}

/// The environment variable that sets `key` (`database.url` → `KEYCLOAK_SYNC__DATABASE__URL`).
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

/// The merged sources, read key by key with errors that name the key.
pub struct Values<'a>(pub(super) &'a config::Config);

impl Values<'_> {
    /// A comma-separated list (in the environment) or an array (in the file); empty
    /// entries dropped, unset: empty.
    pub fn list(&self, key: &Key) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .optional::<Vec<String>>(key)?
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect())
    }

    /// A value that may be unset (or set to an empty string).
    pub fn optional<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, ConfigError> {
        match self.0.get::<config::Value>(key.name) {
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(error) => Err(key.invalid(error.to_string())),
            Ok(value) if value.to_string().is_empty() => Ok(None),
            Ok(value) => value
                .try_deserialize()
                .map(Some)
                .map_err(|error| key.invalid(error.to_string())),
        }
    }

    /// A value that has a default, so it is always set.
    pub fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<T, ConfigError> {
        self.optional(key)?.ok_or_else(|| key.invalid("is not set"))
    }

    pub fn within<T>(&self, key: &Key, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + PartialOrd + Display,
    {
        let value: T = self.get(key)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(key.invalid(format!(
                "must be between {} and {}",
                range.start(),
                range.end()
            )))
        }
    }

    pub fn at_least<T>(&self, key: &Key, min: T) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + PartialOrd + Display,
    {
        let value: T = self.get(key)?;
        if value >= min {
            Ok(value)
        } else {
            Err(key.invalid(format!("must be at least {min}")))
        }
    }

    pub fn non_empty(&self, key: &Key) -> Result<String, ConfigError> {
        self.optional(key)?
            .ok_or_else(|| key.invalid("must not be empty"))
    }

    pub fn secs(&self, key: &Key) -> Result<Duration, ConfigError> {
        self.get(key).map(Duration::from_secs)
    }

    pub fn secret(&self, key: &Key) -> Result<Option<SecretString>, ConfigError> {
        Ok(self.optional::<String>(key)?.map(SecretString::from))
    }

    /// A URL with one of `schemes`; the parser's message never includes the URL itself,
    /// which may hold a password.
    pub fn url(&self, key: &Key, schemes: &[&str]) -> Result<Option<SecretUrl>, ConfigError> {
        let Some(text) = self.optional::<String>(key)? else {
            return Ok(None);
        };
        let url = Url::parse(&text).map_err(|e| key.invalid(format!("not a valid URL ({e})")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(key.invalid(format!(
                "scheme {:?} is not one of {}",
                url.scheme(),
                schemes.join(", ")
            )));
        }
        Ok(Some(SecretUrl::new(text)))
    }

    pub fn one_of<T: Copy>(&self, key: &Key, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let text: String = self.get(key)?;
        choices
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                key.invalid(format!("{text:?} is not one of {}", names.join(", ")))
            })
    }
}
