//! Tokens an application encrypted itself before adopting the vault, so `vault import`
//! can open them. One format so far, common in Node applications:
//! `scrypt(passphrase, "session-tokens-salt", 32)` with Node's default cost (N=16384, r=8,
//! p=1) as an AES-256-GCM key, each token stored as hex `iv:authTag:ciphertext` with a
//! 16-byte IV.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;
use zeroize::Zeroizing;

/// AES-256-GCM with the 16-byte IV the format uses (GCM hashes an IV that is not 12 bytes).
type Aes256Gcm16 = AesGcm<Aes256, U16>;

const SALT: &[u8] = b"session-tokens-salt";

/// A legacy format `vault import` can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyFormat {
    ScryptAes256GcmHex,
}

impl LegacyFormat {
    pub fn parse(name: &str) -> Option<LegacyFormat> {
        match name {
            "scrypt-aes256gcm-hex" => Some(LegacyFormat::ScryptAes256GcmHex),
            _ => None,
        }
    }

    /// Whether a stored value is in this format's shape, so it must open; a value that is
    /// not was stored before the application began encrypting and is the token itself.
    /// The shape is three non-empty hex parts joined by `:` (`iv:authTag:ciphertext`):
    /// a token Keycloak issues (a JWT: base64url parts joined by `.`) never has it.
    pub fn is_sealed(self, stored: &str) -> bool {
        match self {
            LegacyFormat::ScryptAes256GcmHex => {
                let parts: Vec<&str> = stored.trim().split(':').collect();
                parts.len() == 3
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit()))
            }
        }
    }
}

/// Why one stored value did not open. Never carries the value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LegacyError {
    #[error("not three hex parts `iv:authTag:ciphertext`")]
    Shape,
    #[error("the IV is not 16 bytes or the tag not 16 bytes")]
    Sizes,
    #[error("authentication failed (wrong passphrase, or the value was altered)")]
    Authentication,
    #[error("the plaintext is not UTF-8")]
    NotText,
}

/// The derived key, zeroized on drop; `Debug` shows nothing of it.
pub struct LegacyKey {
    format: LegacyFormat,
    cipher: Aes256Gcm16,
}

impl std::fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyKey([redacted])")
    }
}

impl LegacyKey {
    /// Derives the key as the application did (scrypt N=16384, r=8, p=1, 32 bytes).
    pub fn derive(format: LegacyFormat, passphrase: &SecretString) -> LegacyKey {
        let key = match format {
            LegacyFormat::ScryptAes256GcmHex => {
                let mut key = Zeroizing::new([0u8; 32]);
                // log2(16384) = 14; these parameters are within scrypt's bounds.
                let params = scrypt::Params::new(14, 8, 1, 32).expect("valid scrypt parameters");
                scrypt::scrypt(
                    passphrase.expose_secret().as_bytes(),
                    SALT,
                    &params,
                    &mut *key,
                )
                .expect("a 32-byte output is valid");
                Aes256Gcm16::new_from_slice(&*key).expect("a 32-byte key")
            }
        };
        LegacyKey {
            format,
            cipher: key,
        }
    }

    pub fn format(&self) -> LegacyFormat {
        self.format
    }

    /// Opens one stored value.
    pub fn open(&self, stored: &str) -> Result<SecretString, LegacyError> {
        let mut parts = stored.trim().split(':');
        let (Some(iv), Some(tag), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LegacyError::Shape);
        };
        let decode = |part: &str| hex::decode(part).map_err(|_| LegacyError::Shape);
        let (iv, tag, body) = (decode(iv)?, decode(tag)?, decode(body)?);
        if iv.len() != 16 || tag.len() != 16 {
            return Err(LegacyError::Sizes);
        }
        let mut sealed = Zeroizing::new(body);
        sealed.extend_from_slice(&tag);
        let plain = self
            .cipher
            .decrypt(
                Nonce::<U16>::from_slice(&iv),
                Payload {
                    msg: &sealed,
                    aad: b"",
                },
            )
            .map_err(|_| LegacyError::Authentication)?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain).map_err(|_| LegacyError::NotText)?;
        Ok(SecretString::from(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with Node 20: `crypto.scryptSync("correct horse", "session-tokens-salt", 32)`,
    /// `createCipheriv("aes-256-gcm", key, iv)` with the 16-byte IV 00..0f, the token
    /// `refresh-token-1`.
    const NODE_MADE: &str =
        "000102030405060708090a0b0c0d0e0f:859ce05856e9e48d238d8fe31e432e92:f7d8aac4fdcb75690653d1325151be";

    fn key(passphrase: &str) -> LegacyKey {
        LegacyKey::derive(
            LegacyFormat::ScryptAes256GcmHex,
            &SecretString::from(passphrase.to_string()),
        )
    }

    #[test]
    fn a_value_node_made_opens_and_a_wrong_key_or_an_altered_value_does_not() {
        let opened = key("correct horse").open(NODE_MADE).expect("opens");
        assert_eq!(opened.expose_secret(), "refresh-token-1");
        assert_eq!(
            key("wrong horse").open(NODE_MADE).err(),
            Some(LegacyError::Authentication)
        );
        let altered = NODE_MADE.replace(":f7", ":f8");
        assert_eq!(
            key("correct horse").open(&altered).err(),
            Some(LegacyError::Authentication)
        );
    }

    #[test]
    fn malformed_values_are_refused_by_shape() {
        let key = key("correct horse");
        assert_eq!(key.open("abc").err(), Some(LegacyError::Shape));
        assert_eq!(key.open("zz:00:00").err(), Some(LegacyError::Shape));
        assert_eq!(key.open("00:00:00").err(), Some(LegacyError::Sizes));
        assert!(!format!("{key:?}").contains("horse"));
        assert_eq!(
            LegacyFormat::parse("scrypt-aes256gcm-hex"),
            Some(LegacyFormat::ScryptAes256GcmHex)
        );
        assert_eq!(LegacyFormat::parse("rot13"), None);
    }

    #[test]
    fn the_sealed_shape_is_three_hex_parts_and_a_keycloak_token_never_has_it() {
        let format = LegacyFormat::ScryptAes256GcmHex;
        assert!(format.is_sealed(NODE_MADE));
        assert!(
            format.is_sealed(" 00:00:00\n"),
            "sizes are checked when it opens"
        );
        for plaintext in [
            "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl",
            "refresh-token-1",
            "aa:bb",
            "aa:bb:cc:dd",
            "aa::cc",
            "aa:bb:zz",
            "",
        ] {
            assert!(!format.is_sealed(plaintext), "{plaintext:?} is plaintext");
        }
    }
}
