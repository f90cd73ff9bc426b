//! URLs that carry credentials: shown with the password and query redacted.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A URL whose password is a secret: `Display` shows it with the password redacted.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(SecretString::from(url.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `host:port`, for logs, probes and metric labels (no credentials, no path).
    pub fn address(&self) -> String {
        match Url::parse(self.0.expose_secret()) {
            Ok(url) => {
                let host = url.host_str().unwrap_or("?");
                match url.port_or_known_default().or(default_port(url.scheme())) {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                }
            }
            Err(_) => "[not a valid URL]".to_string(),
        }
    }
}

/// Ports `url` does not know: the AMQP schemes'.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        _ => None,
    }
}

fn redacted(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("[redacted]"));
            }
            // Query strings may carry passwords too (`?password=`).
            if url.query().is_some() {
                url.set_query(Some("[redacted]"));
            }
            // The password placeholder is shown as typed, not percent-encoded.
            url.as_str().replace("%5Bredacted%5D", "[redacted]")
        }
        Err(_) => "[redacted: not a valid URL]".to_string(),
    }
}

impl fmt::Display for SecretUrl {
    /// Each URL of a comma-separated list is redacted on its own: read as one URL, a
    /// list would show the later URLs' passwords as part of the first one's path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .expose_secret()
            .split(',')
            .map(|part| redacted(part.trim()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_of_a_list_is_redacted() {
        let list = SecretUrl::new("amqp://a:one@h1:5673/%2f, amqp://b:two@h2/vh?x=three");
        let shown = format!("{list} {list:?}");
        for secret in ["one", "two", "three"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("amqp://a:[redacted]@h1:5673/%2f"), "{shown}");
    }

    #[test]
    fn addresses_name_host_and_port_only() {
        assert_eq!(SecretUrl::new("amqp://a:b@h1/%2f").address(), "h1:5672");
        assert_eq!(SecretUrl::new("amqps://h2:5999").address(), "h2:5999");
        assert_eq!(SecretUrl::new("amqps://h3").address(), "h3:5671");
    }
}
