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
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(self.0.expose_secret()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("[redacted]"));
                }
                // Query strings may carry passwords too (`?password=`).
                if url.query().is_some() {
                    url.set_query(Some("[redacted]"));
                }
                // The password placeholder is shown as typed, not percent-encoded.
                write!(
                    f,
                    "{}",
                    url.as_str().replace("%5Bredacted%5D", "[redacted]")
                )
            }
            Err(_) => f.write_str("[redacted: not a valid URL]"),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}
