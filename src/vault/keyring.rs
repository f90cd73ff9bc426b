//! The vault's key ring and its AES-256-GCM-SIV sealing.
//!
//! Every ciphertext is bound to its row's identity through the associated data, so a
//! ciphertext copied into another row — or tampered with — fails to open.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;
use zeroize::Zeroizing;

pub const NONCE_LEN: usize = 12;

#[derive(Debug, Error, PartialEq)]
pub enum KeyRingError {
    #[error("vault.keys: entry {position} is not `id:base64-key`")]
    Malformed { position: usize },
    #[error("vault.keys: key {id:?} is not valid base64")]
    NotBase64 { id: String },
    #[error("vault.keys: key {id:?} is {len} bytes; AES-256 keys are 32 bytes")]
    WrongLength { id: String, len: usize },
    #[error("vault.keys: key id {id:?} appears twice")]
    Duplicate { id: String },
    #[error("vault.keys: no keys")]
    Empty,
    #[error("vault.active_key is not set")]
    NoActive,
    #[error("vault.active_key {id:?} is not in vault.keys")]
    UnknownActive { id: String },
    #[error("vault.keys file {path}: {problem}")]
    File { path: String, problem: String },
}

#[derive(Debug, Error, PartialEq)]
pub enum SealError {
    #[error("no key {0:?} in the key ring")]
    UnknownKey(String),
    #[error(
        "the ciphertext does not open under key {0:?} for this row (wrong key, tampered, or moved)"
    )]
    Open(String),
    #[error("nonce has {0} bytes, expected 12")]
    Nonce(usize),
    #[error("encryption failed")]
    Seal,
}

/// Which row a ciphertext belongs to: the associated data of its sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIdentity<'a> {
    pub realm_id: &'a str,
    pub user_id: &'a str,
    pub token_type: &'a str,
    pub client_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

impl RowIdentity<'_> {
    fn associated_data(&self) -> Vec<u8> {
        // Length-prefixed fields: no two identities encode alike.
        let mut out = b"keycloak-sync/vault/v1".to_vec();
        for part in [
            Some(self.realm_id),
            Some(self.user_id),
            Some(self.token_type),
            self.client_id,
            self.session_id,
        ] {
            match part {
                Some(text) => {
                    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
        }
        out
    }
}

/// A sealed token as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed {{ key_id: {:?}, {} bytes }}",
            self.key_id,
            self.ciphertext.len()
        )
    }
}

/// Keys by id, one active for new writes. Key material is zeroized on drop and never
/// printed: `Debug` shows the ids only.
pub struct KeyRing {
    keys: BTreeMap<String, (Zeroizing<[u8; 32]>, Aes256GcmSiv)>,
    active: String,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl KeyRing {
    /// Parses `id:base64,id:base64,…` (commas or newlines). A value starting with `@`
    /// names a file holding the same, which must be readable by its owner only.
    pub fn parse(spec: &SecretString, active: Option<&str>) -> Result<KeyRing, KeyRingError> {
        let spec = spec.expose_secret();
        let text = match spec.trim().strip_prefix('@') {
            Some(path) => Zeroizing::new(read_private_file(Path::new(path))?),
            None => Zeroizing::new(spec.to_string()),
        };
        let mut keys = BTreeMap::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let position = index + 1;
            let (id, material) = entry
                .split_once(':')
                .filter(|(id, _)| !id.trim().is_empty())
                .ok_or(KeyRingError::Malformed { position })?;
            let id = id.trim().to_string();
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(material.trim())
                    .map_err(|_| KeyRingError::NotBase64 { id: id.clone() })?,
            );
            let key: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyRingError::WrongLength {
                        id: id.clone(),
                        len: bytes.len(),
                    })?;
            let key = Zeroizing::new(key);
            let cipher = Aes256GcmSiv::new((&*key).into());
            if keys.insert(id.clone(), (key, cipher)).is_some() {
                return Err(KeyRingError::Duplicate { id });
            }
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        let active = active
            .filter(|a| !a.is_empty())
            .ok_or(KeyRingError::NoActive)?;
        if !keys.contains_key(active) {
            return Err(KeyRingError::UnknownActive {
                id: active.to_string(),
            });
        }
        Ok(KeyRing {
            keys,
            active: active.to_string(),
        })
    }

    pub fn active_id(&self) -> &str {
        &self.active
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Seals under the active key with a fresh random nonce.
    pub fn seal(&self, token: &SecretString, row: &RowIdentity) -> Result<Sealed, SealError> {
        let (_, cipher) = self
            .keys
            .get(&self.active)
            .ok_or_else(|| SealError::UnknownKey(self.active.clone()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = row.associated_data();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        Ok(Sealed {
            key_id: self.active.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub fn open(&self, sealed: &Sealed, row: &RowIdentity) -> Result<SecretString, SealError> {
        let (_, cipher) = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(SealError::Nonce(sealed.nonce.len()));
        }
        let aad = row.associated_data();
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::Open(sealed.key_id.clone()))?,
        );
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| SealError::Open(sealed.key_id.clone()))?;
        Ok(SecretString::from(text))
    }
}

#[cfg(unix)]
fn read_private_file(path: &Path) -> Result<String, KeyRingError> {
    use std::os::unix::fs::PermissionsExt;
    let problem = |problem: String| KeyRingError::File {
        path: path.display().to_string(),
        problem,
    };
    let metadata = std::fs::metadata(path).map_err(|e| problem(e.to_string()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(problem(format!(
            "mode {mode:o} lets others read it; it must be readable by its owner only (chmod 600)"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))
}

#[cfg(not(unix))]
fn read_private_file(path: &Path) -> Result<String, KeyRingError> {
    std::fs::read_to_string(path).map_err(|e| KeyRingError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    fn ring(spec: &str, active: &str) -> Result<KeyRing, KeyRingError> {
        KeyRing::parse(&SecretString::from(spec.to_string()), Some(active))
    }

    const ROW: RowIdentity<'static> = RowIdentity {
        realm_id: "r",
        user_id: "u1",
        token_type: "refresh",
        client_id: Some("web"),
        session_id: Some("s1"),
    };

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_string())
    }

    #[test]
    fn round_trip_under_the_active_key() {
        let ring = ring(&format!("old:{},new:{}", key(1), key(2)), "new").expect("ring");
        let sealed = ring
            .seal(&secret("refresh-token-value"), &ROW)
            .expect("seal");
        assert_eq!(sealed.key_id, "new");
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"refresh"));
        let opened = ring.open(&sealed, &ROW).expect("open");
        assert_eq!(opened.expose_secret(), "refresh-token-value");
        // Two sealings of the same token differ (fresh nonce).
        assert_ne!(
            ring.seal(&secret("refresh-token-value"), &ROW)
                .expect("seal"),
            sealed
        );
    }

    #[test]
    fn a_wrong_key_does_not_open() {
        let writer = ring(&format!("k1:{}", key(1)), "k1").expect("ring");
        let reader = ring(&format!("k1:{}", key(9)), "k1").expect("ring");
        let sealed = writer.seal(&secret("t"), &ROW).expect("seal");
        assert_eq!(
            reader.open(&sealed, &ROW).err(),
            Some(SealError::Open("k1".into()))
        );
        let missing = ring(&format!("k2:{}", key(1)), "k2").expect("ring");
        assert_eq!(
            missing.open(&sealed, &ROW).err(),
            Some(SealError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn tampering_is_detected() {
        let ring = ring(&format!("k1:{}", key(1)), "k1").expect("ring");
        let mut sealed = ring.seal(&secret("token"), &ROW).expect("seal");
        sealed.ciphertext[0] ^= 1;
        assert!(matches!(ring.open(&sealed, &ROW), Err(SealError::Open(_))));
        let mut sealed = ring.seal(&secret("token"), &ROW).expect("seal");
        sealed.nonce[3] ^= 1;
        assert!(matches!(ring.open(&sealed, &ROW), Err(SealError::Open(_))));
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_does_not_open() {
        let ring = ring(&format!("k1:{}", key(1)), "k1").expect("ring");
        let sealed = ring.seal(&secret("token"), &ROW).expect("seal");
        for other in [
            RowIdentity {
                user_id: "u2",
                ..ROW
            },
            RowIdentity {
                realm_id: "r2",
                ..ROW
            },
            RowIdentity {
                token_type: "offline",
                ..ROW
            },
            RowIdentity {
                client_id: Some("cli"),
                ..ROW
            },
            RowIdentity {
                session_id: None,
                ..ROW
            },
        ] {
            assert!(ring.open(&sealed, &other).is_err(), "{other:?}");
        }
    }

    #[test]
    fn bad_rings_are_refused_with_the_problem_named() {
        let cases = [
            (
                format!("k1:{}", key(1)),
                "k2",
                KeyRingError::UnknownActive { id: "k2".into() },
            ),
            (
                format!("k1:{},k1:{}", key(1), key(2)),
                "k1",
                KeyRingError::Duplicate { id: "k1".into() },
            ),
            (
                "k1:not base64!".to_string(),
                "k1",
                KeyRingError::NotBase64 { id: "k1".into() },
            ),
            (
                format!(
                    "k1:{}",
                    base64::engine::general_purpose::STANDARD.encode([0u8; 16])
                ),
                "k1",
                KeyRingError::WrongLength {
                    id: "k1".into(),
                    len: 16,
                },
            ),
            (
                "justakey".to_string(),
                "k1",
                KeyRingError::Malformed { position: 1 },
            ),
            (" , ".to_string(), "k1", KeyRingError::Empty),
            (format!("k1:{}", key(1)), "", KeyRingError::NoActive),
        ];
        for (spec, active, expected) in cases {
            assert_eq!(ring(&spec, active).map(|_| ()), Err(expected));
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let material = key(7);
        let ring = ring(&format!("k1:{material}"), "k1").expect("ring");
        let shown = format!("{ring:?}");
        assert!(
            shown.contains("k1") && !shown.contains(&material),
            "{shown}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("kcs-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, format!("k1:{}\n", key(3))).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let spec = format!("@{}", path.display());
        assert!(matches!(ring(&spec, "k1"), Err(KeyRingError::File { .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(ring(&spec, "k1").is_ok());
        let _ = std::fs::remove_file(path);
    }
}
