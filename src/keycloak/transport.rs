//! HTTP to Keycloak: one `reqwest` client (timeouts, the CA bundle of `keycloak.ca_file`),
//! URLs under the configured base, and what an answer means — a final refusal with
//! Keycloak's own message, or a wait (connection errors, timeouts, 5xx, 429 after its
//! `Retry-After`). Shared by the Admin API and the token endpoint.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use super::error::{self, KeycloakError};
use crate::config::KeycloakSettings;
use crate::retry::Verdict;

/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Transport {
    pub(super) http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl Transport {
    /// The client for `keycloak.url`; fails if it is not set or `keycloak.ca_file` is bad.
    pub fn new(settings: &KeycloakSettings) -> Result<Self, KeycloakError> {
        let mut base = settings
            .url
            .clone()
            .ok_or_else(|| KeycloakError::Config("keycloak.url is not set".into()))?;
        // Keep a path prefix such as `/auth` (Keycloak before 17): it must end in `/`.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        crate::install_tls_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                KeycloakError::Config(format!("keycloak.ca_file {}: {e}", path.display()))
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                KeycloakError::Config(format!(
                    "keycloak.ca_file {}: not PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if roots.is_empty() {
                return Err(KeycloakError::Config(format!(
                    "keycloak.ca_file {}: holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("keycloak-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KeycloakError::Config(format!("HTTP client: {e}")))?;
        Ok(Transport {
            http,
            base,
            timeout: settings.timeout,
        })
    }

    /// The HTTP client (its timeouts and CA bundle).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The base URL (`keycloak.url`, ending in `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// How errors name a GET of `segments`: method and path, never the query.
    pub fn request_name(&self, segments: &[&str]) -> String {
        format!("GET {}", self.endpoint(segments).path())
    }

    /// A request that got no (whole) answer: connection refused, reset, timed out.
    pub fn transport_error(&self, request: &str, error: &reqwest::Error) -> KeycloakError {
        KeycloakError::unavailable(request, describe_send_error(error, self.timeout))
    }

    /// What an unsuccessful answer means: nothing there (404), a wait (429, 5xx), or a
    /// final refusal with Keycloak's own message. A wait that would end after
    /// `retry_max` from `started` is final.
    pub async fn failure(
        &self,
        request: &str,
        response: reqwest::Response,
        started: Instant,
        retry_max: Duration,
    ) -> Result<Option<Value>, Verdict<KeycloakError>> {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let message = error_message(&response.bytes().await.unwrap_or_default());
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                let reason = format!("429 Too Many Requests (Retry-After {wait:?})");
                let error = KeycloakError::unavailable(request, reason);
                if started.elapsed() + wait > retry_max {
                    Err(Verdict::Stop(error))
                } else {
                    Err(Verdict::RetryAfter(error, wait))
                }
            }
            s if s.is_server_error() => Err(Verdict::Retry(KeycloakError::unavailable(
                request,
                format!("{s}{}", error::detail(&message)),
            ))),
            s => Err(Verdict::Stop(KeycloakError::Refused {
                request: request.to_string(),
                status: s.as_u16(),
                message,
            })),
        }
    }
}

pub fn into_verdict(error: KeycloakError) -> Verdict<KeycloakError> {
    if error.is_transient() {
        Verdict::Retry(error)
    } else {
        Verdict::Stop(error)
    }
}

fn describe_send_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut text = if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Keycloak's own explanation from an error body, shortened.
pub fn error_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        ["errorMessage", "error_description", "error"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
    });
    let message = from_json.unwrap_or_else(|| text.trim().to_string());
    let mut short: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX)
        .collect();
    if message.chars().count() > MAX {
        short.push('…');
    }
    short
}
