//! The one redactor: what is kept of an input that may hold a token, wherever it goes
//! outside the vault (dead-letter copies, rejects files, logs).

use std::borrow::Cow;

use serde_json::Value;

/// What a redacted value reads.
pub const REDACTED: &str = "[redacted]";

/// The input with every secret value replaced by [`REDACTED`]. JSON is redacted as
/// decoded (so `"tok\u0065n"` is the key `token`), at any depth. Input that is not JSON
/// is kept only if nothing in it could be or hide a token; otherwise only its length is.
/// Input with nothing to hide is returned byte for byte.
pub fn redacted(body: &[u8]) -> Cow<'_, [u8]> {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            if redact_value(&mut value) {
                Cow::Owned(value.to_string().into_bytes())
            } else {
                Cow::Borrowed(body)
            }
        }
        Err(_) if could_hide_a_secret(body) => Cow::Owned(
            format!(
                "[withheld: {} bytes that are not JSON and may hold a token]",
                body.len()
            )
            .into_bytes(),
        ),
        Err(_) => Cow::Borrowed(body),
    }
}

/// What a dead-letter copy keeps of a body: [`redacted`], or for a body over
/// `max_bytes` (never parsed), at most its first 4 KiB — if nothing in them could be a
/// token — and its length.
pub fn dead_letter_copy(body: &[u8], max_bytes: usize) -> Cow<'_, [u8]> {
    const KEPT: usize = 4096;
    if body.len() <= max_bytes {
        return redacted(body);
    }
    let head = &body[..body.len().min(KEPT)];
    let mut copy = if could_hide_a_secret(head) {
        Vec::new()
    } else {
        head.to_vec()
    };
    copy.extend_from_slice(
        format!(
            "[truncated: {} bytes in all, over limits.max_message_bytes]",
            body.len()
        )
        .as_bytes(),
    );
    Cow::Owned(copy)
}

/// [`redacted`] as text for reports: invalid UTF-8 shown lossily.
pub fn redacted_text(body: &[u8]) -> String {
    String::from_utf8_lossy(&redacted(body)).into_owned()
}

/// Whether a key names a secret: `token` and `…token` / `…_token` (access, refresh,
/// offline, id tokens in any casing), passwords and secrets.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("token") || key.contains("password") || key.ends_with("secret")
}

/// Replaces secret values in place; whether anything was replaced.
fn redact_value(value: &mut Value) -> bool {
    match value {
        Value::Object(object) => {
            let mut changed = false;
            for (key, inner) in object.iter_mut() {
                if is_secret_key(key) && !inner.is_null() && inner.as_str() != Some(REDACTED) {
                    *inner = Value::from(REDACTED);
                    changed = true;
                } else {
                    changed |= redact_value(inner);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_value(v) | c),
        _ => false,
    }
}

/// Text that is not JSON: a cut-off message may still hold a token, under its key
/// spelled plainly or escaped (`\u0074oken`).
fn could_hide_a_secret(body: &[u8]) -> bool {
    let lower = body.to_ascii_lowercase();
    let contains = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    contains(b"token") || contains(b"password") || contains(b"secret") || contains(b"\\u")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &[u8]) -> String {
        redacted_text(body)
    }

    #[test]
    fn json_is_redacted_as_decoded_at_any_depth() {
        let cases: [&[u8]; 5] = [
            br#"{"schema":1,"kind":"token","token":"SECRET","tokenType":"refresh"}"#,
            br#"{"kind":"token","tok\u0065n":"SECRET"}"#,
            br#"{"metadata":{"refresh_token":"SECRET","nested":[{"accessToken":"SECRET"}]}}"#,
            br#"{"token" : "a\"SECRET\\" , "y":2}"#,
            br#"{"client_secret":"SECRET","Password":"SECRET"}"#,
        ];
        for body in cases {
            let copy = text(body);
            assert!(
                !copy.contains("SECRET") && copy.contains(REDACTED),
                "{copy}"
            );
        }
        // Kinds and types that merely mention tokens are kept.
        let copy = text(br#"{"kind":"token","tokenType":"offline","token":"SECRET"}"#);
        assert!(copy.contains(r#""tokenType":"offline""#) && copy.contains(r#""kind":"token""#));
    }

    #[test]
    fn what_cannot_be_parsed_keeps_nothing_that_could_be_a_token() {
        for body in [
            &br#"{"kind":"token","token":"SECRET-cut-of"#[..],
            br#"{"kind":"x","\u0074oken":"SECRET"#,
            br#"not json, Token=SECRET"#,
        ] {
            let copy = text(body);
            assert!(
                !copy.contains("SECRET") && copy.contains("withheld"),
                "{copy}"
            );
        }
    }

    #[test]
    fn oversized_bodies_are_never_parsed_and_their_copy_is_short() {
        let mut huge = br#"{"kind":"user","pad":""#.to_vec();
        huge.extend(std::iter::repeat_n(b'x', 16 << 20));
        let copy = dead_letter_copy(&huge, 1 << 20);
        assert!(copy.len() < 5000, "{} bytes kept", copy.len());
        assert!(String::from_utf8_lossy(&copy).contains("truncated"));
        let mut token = br#"{"kind":"token","token":"SECRET"#.to_vec();
        token.extend(std::iter::repeat_n(b'x', 2 << 20));
        let copy = dead_letter_copy(&token, 1 << 20);
        assert!(!String::from_utf8_lossy(&copy).contains("SECRET"));
    }

    #[test]
    fn bodies_without_secrets_stay_byte_for_byte() {
        for body in [
            &b"\xff\xfe not json"[..],
            br#"{"schema":1,"kind":"user","type":"LOGIN"}"#,
            br#"{"token":null}"#,
        ] {
            assert_eq!(redacted(body), body.to_vec());
        }
    }
}
