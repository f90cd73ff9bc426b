//! The one redactor: what is kept of an input that may hold a token, wherever it goes
//! outside the vault (dead-letter copies, rejects files, logs).

use std::borrow::Cow;

/// The input with every token value replaced by `[redacted]`: parsed as JSON where it
/// is JSON, scanned as text where it is not. Input without a `"token"` key is returned
/// byte for byte.
pub fn redacted(body: &[u8]) -> Cow<'_, [u8]> {
    if !body.windows(7).any(|w| w == b"\"token\"") {
        return Cow::Borrowed(body);
    }
    if let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(body) {
        if object.contains_key("token") {
            object.insert(
                "token".into(),
                serde_json::Value::String("[redacted]".into()),
            );
        }
        return Cow::Owned(serde_json::Value::Object(object).to_string().into_bytes());
    }
    Cow::Owned(
        redact_token_text(&String::from_utf8_lossy(body))
            .into_owned()
            .into_bytes(),
    )
}

/// [`redacted`] as text for reports: invalid UTF-8 shown lossily.
pub fn redacted_text(body: &[u8]) -> String {
    String::from_utf8_lossy(&redacted(body)).into_owned()
}

/// Hides the value of every `"token": "…"` in text that may not even be valid JSON, so
/// rejected token messages can be logged or dead-lettered without their secret.
fn redact_token_text(text: &str) -> Cow<'_, str> {
    const KEY: &str = "\"token\"";
    if !text.contains(KEY) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let after_key = at + KEY.len();
        out.push_str(&rest[..after_key]);
        rest = &rest[after_key..];
        let trimmed = rest.trim_start();
        let Some(after_colon) = trimmed.strip_prefix(':') else {
            continue;
        };
        let value = after_colon.trim_start();
        let Some(body) = value.strip_prefix('"') else {
            continue;
        };
        out.push_str(":\"[redacted]\"");
        let mut escaped = false;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_token_values_in_any_text() {
        let cases = [
            (
                r#"{"token":"abc","x":1}"#,
                r#"{"token":"[redacted]","x":1}"#,
            ),
            (
                r#"{"token" : "a\"b\\" , "y":2}"#,
                r#"{"token":"[redacted]" , "y":2}"#,
            ),
            (
                r#"{"kind":"token","token":"cut-off-secr"#,
                r#"{"kind":"token","token":"[redacted]""#,
            ),
            (r#"{"token":5}"#, r#"{"token":5}"#),
            ("no tokens here", "no tokens here"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_token_text(input), expected, "{input}");
        }
    }

    #[test]
    fn dead_letter_copies_never_hold_tokens() {
        let valid = br#"{"schema":1,"kind":"token","token":"SECRET-1","tokenType":"bad"}"#;
        let copy = String::from_utf8(redacted(valid).into_owned()).expect("utf8");
        assert!(
            !copy.contains("SECRET-1") && copy.contains("[redacted]"),
            "{copy}"
        );
        let broken = br#"{"kind":"token","token":"SECRET-2"#;
        let copy = String::from_utf8(redacted(broken).into_owned()).expect("utf8");
        assert!(!copy.contains("SECRET-2"), "{copy}");
        let other = b"\xff\xfe not json";
        assert_eq!(
            redacted(other),
            other.to_vec(),
            "bodies without tokens stay byte for byte"
        );
    }
}
