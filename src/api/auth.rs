//! Who is asking: the caller's bearer token, verified offline against its realm's keys
//! (`/realms/{realm}/protocol/openid-connect/certs`, cached; read again on an unknown
//! `kid`, at most once per `api.jwks_min_refresh_secs`), then its issuer, expiry and
//! not-before (`core::token_api::caller_of`). The caller is the token's `azp`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::core::token_api::{caller_of, realm_of_issuer, CallerClaims, ClaimProblem};
use crate::keycloak::Transport;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub realm: String,
    pub client_id: String,
}

/// Why a request is not authenticated (401), or the keys could not be read (503).
#[derive(Debug)]
pub enum AuthError {
    Unauthenticated(String),
    KeysUnavailable(String),
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    azp: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    typ: Option<String>,
}

struct RealmKeys {
    keys: JwkSet,
    read_at: Instant,
}

/// The realms' signing keys, cached.
pub struct Verifier {
    transport: Transport,
    min_refresh: Duration,
    realms: Mutex<HashMap<String, RealmKeys>>,
}

impl Verifier {
    pub fn new(transport: Transport, min_refresh: Duration) -> Self {
        Verifier {
            transport,
            min_refresh,
            realms: Mutex::new(HashMap::new()),
        }
    }

    /// The caller a bearer token authenticates.
    pub async fn caller(&self, token: &str) -> Result<Caller, AuthError> {
        let unauthenticated = |why: &str| AuthError::Unauthenticated(why.to_string());
        let header =
            decode_header(token).map_err(|_| unauthenticated("the bearer token is not a JWT"))?;
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the bearer token names no key (kid)"))?;
        // The issuer picks the realm whose keys are fetched; the signature then proves it.
        let issuer = unverified_issuer(token)
            .ok_or_else(|| unauthenticated("the bearer token names no issuer"))?;
        let base = self.transport.base().as_str();
        let realm = realm_of_issuer(base, &issuer)
            .ok_or_else(|| unauthenticated("the bearer token was issued by another server"))?
            .to_string();
        let key = self.key(&realm, &kid).await?;
        let mut validation = Validation::new(header.alg);
        // Checked below, with the core's rules and leeway.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|_| unauthenticated("the bearer token's signature does not verify"))?;
        let claims = CallerClaims {
            iss: data.claims.iss,
            azp: data.claims.azp,
            exp: data.claims.exp,
            nbf: data.claims.nbf,
            typ: data.claims.typ,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let expected = format!("{}realms/{realm}", base);
        let client_id = caller_of(&claims, &expected, now).map_err(|problem: ClaimProblem| {
            AuthError::Unauthenticated(format!("the bearer token is {problem}"))
        })?;
        Ok(Caller { realm, client_id })
    }

    /// The key `kid` of the realm, reading the realm's keys again if it is unknown and
    /// they were not read within `min_refresh`.
    async fn key(&self, realm: &str, kid: &str) -> Result<DecodingKey, AuthError> {
        let mut realms = self.realms.lock().await;
        let fresh_enough = realms
            .get(realm)
            .is_some_and(|r| r.read_at.elapsed() < self.min_refresh);
        let known = realms.get(realm).and_then(|r| r.keys.find(kid)).is_some();
        if !known && !fresh_enough {
            let keys = self.fetch(realm).await?;
            realms.insert(
                realm.to_string(),
                RealmKeys {
                    keys,
                    read_at: Instant::now(),
                },
            );
        }
        let jwk = realms
            .get(realm)
            .and_then(|r| r.keys.find(kid))
            .ok_or_else(|| {
                AuthError::Unauthenticated(
                    "the bearer token's key is not one of its realm's".into(),
                )
            })?;
        DecodingKey::from_jwk(jwk).map_err(|_| {
            AuthError::Unauthenticated("the bearer token's key cannot verify signatures".into())
        })
    }

    async fn fetch(&self, realm: &str) -> Result<JwkSet, AuthError> {
        let url =
            self.transport
                .endpoint(&["realms", realm, "protocol", "openid-connect", "certs"]);
        let unavailable =
            |why: String| AuthError::KeysUnavailable(format!("GET {}: {why}", url.path()));
        let response = self
            .transport
            .http()
            .get(url.clone())
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(AuthError::Unauthenticated(
                "the bearer token names a realm Keycloak does not have".into(),
            ));
        }
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWK set: {e}")))
    }
}

/// The `iss` claim before the signature is checked (only to choose the realm's keys).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Unverified>(&bytes).ok()?.iss
}
