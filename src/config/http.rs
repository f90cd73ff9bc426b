//! `[http]`: where the probes and metrics are served.

use std::net::SocketAddr;

use super::key::{Key, Shown, Values};
use super::ConfigError;

const LISTEN: Key = Key::new("http.listen", Some("0.0.0.0:8080"), Shown::Plain, "");

pub const KEYS: &[Key] = &[LISTEN];

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

impl HttpSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let listen: String = values.get(&LISTEN)?;
        let listen = listen
            .parse()
            .map_err(|e| LISTEN.invalid(format!("{listen:?} is not host:port ({e})")))?;
        Ok(HttpSettings { listen })
    }
}
