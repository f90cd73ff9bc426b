//! Typed access to the fields of one JSON object, with errors that name the field, what
//! was expected and what was found.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ParseError, MAX_EPOCH_MS};

/// Identifiers (user, session, realm, client, event ids).
pub const MAX_ID_LEN: usize = 255;
/// Short free text: event types, usernames, emails, detail values.
pub const MAX_TEXT_LEN: usize = 4096;

/// A JSON object being read, with the path used to name its fields in errors.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a Map<String, Value>, path: &'a str) -> Self {
        Fields { object, path }
    }

    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.object.contains_key(key)
    }

    pub fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn wrong(&self, key: &str, expected: &'static str, got: &Value) -> ParseError {
        ParseError::Field {
            field: self.name(key),
            expected,
            got: describe(got),
        }
    }

    fn missing(&self, key: &str) -> ParseError {
        ParseError::Missing {
            field: self.name(key),
        }
    }

    /// A string of at most `max` characters; absent or null gives `None`.
    pub fn text(&self, key: &str, max: usize) -> Result<Option<String>, ParseError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                check_len(|| self.name(key), s, max)?;
                Ok(Some(s.clone()))
            }
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// Like [`text`](Self::text) for an identifier: also refuses an empty string.
    pub fn id(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.text(key, MAX_ID_LEN)? {
            Some(s) if s.trim().is_empty() => Err(ParseError::Field {
                field: self.name(key),
                expected: "a non-empty identifier",
                got: "an empty string".into(),
            }),
            other => Ok(other),
        }
    }

    pub fn required_id(&self, key: &str) -> Result<String, ParseError> {
        self.id(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn required_text(&self, key: &str, max: usize) -> Result<String, ParseError> {
        self.text(key, max)?.ok_or_else(|| self.missing(key))
    }

    /// A secret string: errors never describe its value.
    pub fn secret(&self, key: &str, max: usize) -> Result<String, ParseError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Err(self.missing(key)),
            Some(Value::String(s)) if s.is_empty() => Err(ParseError::Field {
                field: self.name(key),
                expected: "a non-empty string",
                got: "an empty string".into(),
            }),
            Some(Value::String(s)) if s.chars().count() > max => Err(ParseError::Field {
                field: self.name(key),
                expected: "a shorter string",
                got: format!("a string of {} characters (limit {max})", s.chars().count()),
            }),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(ParseError::Field {
                field: self.name(key),
                expected: "a string",
                got: kind_of(other).into(),
            }),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ParseError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    /// Epoch milliseconds: a non-negative integer.
    pub fn epoch_ms(&self, key: &str) -> Result<Option<i64>, ParseError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Number(n)) => match n.as_i64() {
                Some(ms) if (0..=MAX_EPOCH_MS).contains(&ms) => Ok(Some(ms)),
                _ => Err(self.wrong(key, "an integer of epoch milliseconds", value)),
            },
            Some(other) => Err(self.wrong(key, "an integer of epoch milliseconds", other)),
        }
    }

    pub fn required_epoch_ms(&self, key: &str) -> Result<i64, ParseError> {
        self.epoch_ms(key)?.ok_or_else(|| self.missing(key))
    }

    /// A JSON object; it and everything inside it must be free of NUL characters.
    pub fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ParseError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Object(map)) => {
                if contains_nul(value) {
                    return Err(ParseError::Field {
                        field: self.name(key),
                        expected: "JSON without NUL characters",
                        got: "a value containing \\u0000".into(),
                    });
                }
                Ok(Some(map))
            }
            Some(other) => Err(self.wrong(key, "an object", other)),
        }
    }

    /// A string-to-string map such as Keycloak's `details`; null values are dropped.
    /// Values are limited to `max_value` characters (the message's own size limit bounds
    /// them anyway: Keycloak puts long values there, such as PAR redirect URIs).
    pub fn string_map(
        &self,
        key: &str,
        max_value: usize,
    ) -> Result<BTreeMap<String, String>, ParseError> {
        let Some(map) = self.object(key)? else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for (name, value) in map {
            // Named only when something is wrong: most maps are read without error.
            let field = || format!("{}.{name}", self.name(key));
            check_len(field, name, MAX_ID_LEN)?;
            match value {
                Value::Null => {}
                Value::String(s) => {
                    check_len(field, s, max_value)?;
                    out.insert(name.clone(), s.clone());
                }
                other => {
                    return Err(ParseError::Field {
                        field: field(),
                        expected: "a string",
                        got: describe(other),
                    })
                }
            }
        }
        Ok(out)
    }
}

/// Length limit, and no NUL characters: Postgres text and jsonb cannot store them.
fn check_len(field: impl Fn() -> String, s: &str, max: usize) -> Result<(), ParseError> {
    if s.contains('\0') {
        return Err(ParseError::Field {
            field: field(),
            expected: "text without NUL characters",
            got: "a string containing \\u0000".into(),
        });
    }
    // Byte length bounds the character count from above, so most strings skip the count.
    if s.len() > max && s.chars().count() > max {
        return Err(ParseError::Field {
            field: field(),
            expected: "a shorter string",
            got: format!("a string of {} characters (limit {max})", s.chars().count()),
        });
    }
    Ok(())
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short description of a value for error messages: its type and a clipped preview.
pub fn describe(value: &Value) -> String {
    const PREVIEW: usize = 40;
    match value {
        Value::String(s) => {
            let clipped: String = s.chars().take(PREVIEW).collect();
            if clipped.len() < s.len() {
                format!("a string {clipped:?}… ({} characters)", s.chars().count())
            } else {
                format!("a string {clipped:?}")
            }
        }
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("{b}"),
        other => kind_of(other).to_string(),
    }
}
