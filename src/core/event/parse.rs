//! Bytes → [`Event`]: detects which of the three input shapes (GUIDE §2) a message is,
//! reads it strictly, derives an id where the shape has none, and decides its [`Action`].

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use super::fields::{describe, kind_of, Fields, MAX_ID_LEN, MAX_TEXT_LEN};
use super::{Action, Event, Ignored, Kind, Profile, TokenMessage, TokenType};
use crate::core::ids::{ClientId, EventId, RealmId, SessionId, UserId};

/// Upper bound for a vault token: long JWTs stay well below it.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Namespace of the ids derived from content, so they never collide with other v5 ids.
const CONTENT_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6b63_7379_6e63_4e01_8000_6b65_7973_0001);
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b63_7379_6e63_4e00_8000_6576_656e_7473);

/// Which publisher's format a message arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// keycloak-sync's own envelope, `schema` 1 (GUIDE §2.1).
    Envelope,
    /// aznamier/keycloak-event-listener-rabbitmq (GUIDE §2.2).
    Aznamier,
    /// Keycloak's `EventRepresentation` / `AdminEventRepresentation` (GUIDE §2.3).
    KeycloakRest,
}

/// Why a message was rejected. Messages never contain token values.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ParseError {
    #[error("message is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("message is empty")]
    Empty,
    #[error("truncated JSON: {0}")]
    TruncatedJson(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("unrecognised message: expected a keycloak-sync envelope (`schema`), an aznamier message (`@class`) or a Keycloak event representation (`type` or `operationType`)")]
    UnknownShape,
    #[error("unsupported schema version {got} (this build reads schema 1)")]
    UnsupportedSchema { got: String },
    #[error("field `{field}`: expected {expected}, got {got}")]
    Field {
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("field `{field}` is missing")]
    Missing { field: String },
    #[error("a redacted copy of a token message: the token itself was never kept outside the vault, so it cannot be stored from this copy; the application must send the token again")]
    RedactedToken,
    #[error("a fragment of pretty-printed JSON, not a whole message: a JSONL file holds one compact event per line (compact it with, for example, `jq -c . events.json > events.jsonl`)")]
    Fragment,
}

/// Parses one message (a queue body or a replay line).
pub fn parse_message(bytes: &[u8], max_bytes: usize) -> Result<Event, ParseError> {
    if bytes.len() > max_bytes {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        if looks_like_a_fragment(text) {
            ParseError::Fragment
        } else if e.is_eof() {
            ParseError::TruncatedJson(e.to_string())
        } else {
            ParseError::InvalidJson(e.to_string())
        }
    })?;
    let Value::Object(object) = value else {
        return Err(ParseError::NotAnObject(kind_of(&value)));
    };
    let fields = Fields::new(&object, "");
    if fields.has("schema") {
        parse_envelope(&fields)
    } else if fields.has("@class") {
        let raw = if fields.has("operationType") || fields.has("resourceType") {
            RawEvent::Admin(read_admin(&fields)?)
        } else {
            RawEvent::User(read_user(&fields)?)
        };
        raw.into_event(None, Shape::Aznamier)
    } else if fields.has("operationType") {
        let id = fields.id("id")?;
        RawEvent::Admin(read_admin(&fields)?).into_event(id, Shape::KeycloakRest)
    } else if fields.has("type") {
        let id = fields.id("id")?;
        RawEvent::User(read_user(&fields)?).into_event(id, Shape::KeycloakRest)
    } else {
        Err(ParseError::UnknownShape)
    }
}

/// A line of a pretty-printed JSON document: a lone brace or bracket, or a `"key": …`
/// member line.
fn looks_like_a_fragment(text: &str) -> bool {
    let line = text.trim();
    let member = line.starts_with('"')
        && line
            .split_once("\":")
            .or_else(|| line.split_once("\" :"))
            .is_some();
    member || matches!(line, "{" | "}" | "}," | "[" | "]" | "],")
}

fn parse_envelope(fields: &Fields) -> Result<Event, ParseError> {
    match fields.raw("schema") {
        Some(Value::Number(n)) if n.as_i64() == Some(1) => {}
        other => {
            return Err(ParseError::UnsupportedSchema {
                got: describe(other.unwrap_or(&Value::Null)),
            })
        }
    }
    let id = fields.required_id("id")?;
    let kind = fields.required_text("kind", MAX_ID_LEN)?;
    match kind.as_str() {
        "user" => RawEvent::User(read_user(fields)?).into_event(Some(id), Shape::Envelope),
        "admin" => RawEvent::Admin(read_admin(fields)?).into_event(Some(id), Shape::Envelope),
        "token" => read_token(fields, id),
        other => Err(ParseError::Field {
            field: "kind".into(),
            expected: "one of user, admin, token",
            got: describe(&Value::String(other.to_string())),
        }),
    }
}

/// A user event with every field read; serialised (fixed field order) to derive ids.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RawUser {
    kind: &'static str,
    time: i64,
    realm_id: String,
    #[serde(rename = "type")]
    event_type: String,
    client_id: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
    ip_address: Option<String>,
    error: Option<String>,
    details: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RawAdmin {
    kind: &'static str,
    time: i64,
    realm_id: String,
    resource_type: String,
    operation_type: String,
    resource_path: Option<String>,
    representation: Option<String>,
    auth_details: BTreeMap<String, String>,
    error: Option<String>,
    details: BTreeMap<String, String>,
}

enum RawEvent {
    User(RawUser),
    Admin(RawAdmin),
}

fn read_user(fields: &Fields) -> Result<RawUser, ParseError> {
    Ok(RawUser {
        kind: "user",
        time: fields.required_epoch_ms("time")?,
        realm_id: fields.required_id("realmId")?,
        event_type: fields.required_text("type", MAX_ID_LEN)?,
        client_id: fields.id("clientId")?,
        user_id: fields.id("userId")?,
        session_id: fields.id("sessionId")?,
        ip_address: fields.text("ipAddress", MAX_ID_LEN)?,
        error: fields.text("error", MAX_TEXT_LEN)?,
        details: fields.string_map("details", usize::MAX)?,
    })
}

fn read_admin(fields: &Fields) -> Result<RawAdmin, ParseError> {
    let auth_details = match fields.object("authDetails")? {
        Some(map) => {
            let auth = Fields::new(map, "authDetails");
            let mut out = BTreeMap::new();
            for key in ["realmId", "clientId", "userId", "ipAddress"] {
                if let Some(value) = auth.text(key, MAX_ID_LEN)? {
                    out.insert(key.to_string(), value);
                }
            }
            out
        }
        None => BTreeMap::new(),
    };
    // Keycloak names a provider's own resource type `CUSTOM` and gives its name in
    // `resourceTypeAsString` (the aznamier plugin passes both on).
    let mut resource_type = fields.required_text("resourceType", MAX_ID_LEN)?;
    if resource_type == "CUSTOM" {
        if let Some(named) = fields.text("resourceTypeAsString", MAX_ID_LEN)? {
            resource_type = named;
        }
    }
    Ok(RawAdmin {
        kind: "admin",
        time: fields.required_epoch_ms("time")?,
        realm_id: fields.required_id("realmId")?,
        resource_type,
        operation_type: fields.required_text("operationType", MAX_ID_LEN)?,
        resource_path: fields.text("resourcePath", MAX_TEXT_LEN)?,
        representation: fields.text("representation", usize::MAX)?,
        auth_details,
        error: fields.text("error", MAX_TEXT_LEN)?,
        details: fields.string_map("details", usize::MAX)?,
    })
}

fn read_token(fields: &Fields, id: String) -> Result<Event, ParseError> {
    let stated = fields.required_text("tokenType", MAX_ID_LEN)?;
    let token_type = TokenType::from_stored(&stated).ok_or_else(|| ParseError::Field {
        field: "tokenType".into(),
        expected: "refresh or offline",
        got: describe(&Value::String(stated.clone())),
    })?;
    let message = TokenMessage {
        user_id: fields.required_id("userId")?.into(),
        session_id: fields.id("sessionId")?.map(SessionId::from),
        client_id: fields.id("clientId")?.map(ClientId::from),
        token_type,
        token: SecretString::from(read_token_value(fields)?),
        expires_at: fields.epoch_ms("expiresAt")?,
        metadata: fields.object("metadata")?.cloned().unwrap_or_default(),
    };
    Ok(Event {
        message_id: EventId::new(id.clone()),
        id: EventId::new(id),
        time: fields.required_epoch_ms("time")?,
        realm_id: fields.required_id("realmId")?.into(),
        kind: Kind::Token,
        type_name: token_type.as_str().to_string(),
        shape: Shape::Envelope,
        action: Action::StoreToken(message),
    })
}

impl RawEvent {
    fn into_event(self, id: Option<String>, shape: Shape) -> Result<Event, ParseError> {
        let message_id = EventId::new(match id {
            Some(id) => id,
            None => self.derived_id(),
        });
        let id = EventId::new(self.content_key());
        match self {
            RawEvent::User(raw) => Ok(Event {
                id,
                message_id,
                time: raw.time,
                realm_id: RealmId::new(raw.realm_id.as_str()),
                kind: Kind::User,
                action: user_action(&raw),
                type_name: raw.event_type,
                shape,
            }),
            RawEvent::Admin(raw) => Ok(Event {
                id,
                message_id,
                time: raw.time,
                realm_id: RealmId::new(raw.realm_id.as_str()),
                kind: Kind::Admin,
                action: admin_action(&raw)?,
                type_name: format!("{}.{}", raw.resource_type, raw.operation_type),
                shape,
            }),
        }
    }

    /// The idempotency key: the event's content as every path carries it alike (the
    /// provider's envelope, the aznamier plugin's JSON and the REST
    /// `EventRepresentation` / `AdminEventRepresentation`), leaving out what one of them
    /// may lack or word differently: Keycloak's id (26.2+ only), the envelope's realm
    /// name, admin auth details other than the acting user.
    fn content_key(&self) -> String {
        fn opt(value: &Option<String>) -> &str {
            value.as_deref().unwrap_or_default()
        }
        let mut canonical = Vec::with_capacity(512);
        let mut put = |field: &str| {
            // Length-prefixed, so no two field lists give the same bytes.
            canonical.extend_from_slice(field.len().to_string().as_bytes());
            canonical.push(b':');
            canonical.extend_from_slice(field.as_bytes());
        };
        let details = match self {
            RawEvent::User(raw) => {
                let time = raw.time.to_string();
                for field in [
                    "user",
                    &time,
                    &raw.realm_id,
                    &raw.event_type,
                    opt(&raw.user_id),
                    opt(&raw.session_id),
                    opt(&raw.client_id),
                    opt(&raw.ip_address),
                    opt(&raw.error),
                ] {
                    put(field);
                }
                &raw.details
            }
            RawEvent::Admin(raw) => {
                let time = raw.time.to_string();
                for field in [
                    "admin",
                    &time,
                    &raw.realm_id,
                    &raw.resource_type,
                    &raw.operation_type,
                    opt(&raw.resource_path),
                    raw.auth_details.get("userId").map_or("", String::as_str),
                    opt(&raw.error),
                    opt(&raw.representation),
                ] {
                    put(field);
                }
                &raw.details
            }
        };
        for (key, value) in details {
            put(key);
            put(value);
        }
        Uuid::new_v5(&CONTENT_KEY_NAMESPACE, &canonical).to_string()
    }

    /// Same content ⇒ same id, so redeliveries of id-less messages still deduplicate
    /// (what the inbox recorded before content keys).
    fn derived_id(&self) -> String {
        let canonical = match self {
            RawEvent::User(raw) => serde_json::to_vec(raw),
            RawEvent::Admin(raw) => serde_json::to_vec(raw),
        }
        .unwrap_or_default();
        Uuid::new_v5(&DERIVED_ID_NAMESPACE, &canonical).to_string()
    }
}

/// The token of a token message; never the placeholder a redacted copy holds.
fn read_token_value(fields: &Fields) -> Result<String, ParseError> {
    let token = fields.secret("token", MAX_TOKEN_LEN)?;
    if token == crate::core::redact::REDACTED {
        return Err(ParseError::RedactedToken);
    }
    Ok(token)
}

/// The value of a field an effect needs, or why the event is ignored without it.
fn needed<T: From<String>>(value: &Option<String>, field: &'static str) -> Result<T, Ignored> {
    value.clone().map(T::from).ok_or(Ignored::Missing(field))
}

/// One arm per user event type with an effect; read whole, it is the table of GUIDE §4.
fn user_action(raw: &RawUser) -> Action {
    let detail = |key: &str| raw.details.get(key).cloned();
    let action = || -> Result<Action, Ignored> {
        let user = || needed(&raw.user_id, "userId");
        Ok(match raw.event_type.as_str() {
            "REGISTER" => Action::Register {
                user_id: user()?,
                profile: Profile {
                    username: detail("username"),
                    email: detail("email"),
                    first_name: detail("first_name"),
                    last_name: detail("last_name"),
                    enabled: Some(true),
                    created_at: Some(raw.time),
                    ..Profile::default()
                },
            },
            "LOGIN" => Action::Login {
                user_id: user()?,
                session_id: raw.session_id.clone().map(SessionId::from),
                client_id: raw.client_id.clone().map(ClientId::from),
                ip_address: raw.ip_address.clone(),
                username: detail("username"),
                remember_me: detail("remember_me").is_some_and(|v| v == "true"),
                offline: detail("refresh_token_type").is_some_and(|v| v == "Offline"),
            },
            "LOGIN_ERROR" => Action::LoginError { user_id: user()? },
            "LOGOUT" => Action::Logout {
                user_id: user()?,
                session_id: needed(&raw.session_id, "sessionId")?,
            },
            "REFRESH_TOKEN" => Action::RefreshToken {
                user_id: user()?,
                session_id: needed(&raw.session_id, "sessionId")?,
                client_id: raw.client_id.clone().map(ClientId::from),
                ip_address: raw.ip_address.clone(),
            },
            "USER_SESSION_DELETED" => Action::SessionExpired {
                user_id: user()?,
                session_id: needed(&raw.session_id, "sessionId")?,
            },
            "CODE_TO_TOKEN" | "IMPERSONATE" => Action::SessionActivity {
                user_id: user()?,
                session_id: needed(&raw.session_id, "sessionId")?,
                client_id: raw.client_id.clone().map(ClientId::from),
                ip_address: raw.ip_address.clone(),
            },
            "UPDATE_PROFILE" | "UPDATE_EMAIL" => Action::UpdateProfile {
                user_id: user()?,
                profile: Profile {
                    username: detail("updated_username"),
                    email: detail("updated_email"),
                    first_name: detail("updated_first_name"),
                    last_name: detail("updated_last_name"),
                    // Keycloak's UPDATE_PROFILE and ACCOUNT profile contexts reset
                    // emailVerified when the email changes. UPDATE_EMAIL may come from the
                    // verified-link path (which sets it true) or not: left to the profile
                    // read the event asks for.
                    email_verified: (raw.event_type == "UPDATE_PROFILE"
                        && raw.details.contains_key("updated_email"))
                    .then_some(false),
                    attribute_changes: attribute_changes(&raw.details),
                    ..Profile::default()
                },
            },
            "VERIFY_EMAIL" => Action::UpdateProfile {
                user_id: user()?,
                profile: Profile {
                    email_verified: Some(true),
                    ..Profile::default()
                },
            },
            "DELETE_ACCOUNT" => Action::DeleteUser { user_id: user()? },
            "USER_DISABLED_BY_PERMANENT_LOCKOUT" => Action::DisableUser { user_id: user()? },
            "REVOKE_GRANT" => Action::RevokeGrant {
                user_id: user()?,
                client_id: needed(&detail("revoked_client"), "details.revoked_client")?,
            },
            _ => return Err(Ignored::NoEffect),
        })
    };
    action().unwrap_or_else(Action::Ignore)
}

/// Attributes a profile update changed, as Keycloak's EventAuditingAttributeChangeListener
/// reports them: `updated_<name>` holds the new values joined by `::` (a value that itself
/// contains `::` cannot be told apart: Keycloak's format); `previous_<name>` without
/// `updated_<name>` is an attribute removed (Keycloak drops empty details). Names the
/// listener reports as profile fields are not attributes.
fn attribute_changes(details: &BTreeMap<String, String>) -> BTreeMap<String, Option<Vec<String>>> {
    const PROFILE_FIELDS: [&str; 4] = ["username", "email", "first_name", "last_name"];
    // Details of other flows that share the prefixes.
    const NOT_ATTRIBUTES: [&str; 2] = ["user", "refresh_token_id"];
    let mut changes = BTreeMap::new();
    for (key, value) in details {
        let (name, change) = if let Some(name) = key.strip_prefix("updated_") {
            (name, Some(value.split("::").map(str::to_string).collect()))
        } else if let Some(name) = key.strip_prefix("previous_") {
            if details.contains_key(&format!("updated_{name}")) {
                continue;
            }
            (name, None)
        } else {
            continue;
        };
        if name.is_empty() || PROFILE_FIELDS.contains(&name) || NOT_ATTRIBUTES.contains(&name) {
            continue;
        }
        changes.insert(name.to_string(), change);
    }
    changes
}

fn admin_action(raw: &RawAdmin) -> Result<Action, ParseError> {
    if raw.error.is_some() {
        return Ok(Action::Ignore(Ignored::Failed));
    }
    let path: Vec<&str> = raw
        .resource_path
        .as_deref()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (raw.resource_type.as_str(), raw.operation_type.as_str()) {
        ("USER", "CREATE" | "UPDATE") => {
            let profile = match &raw.representation {
                Some(text) => read_representation(text)?,
                None => RepresentedUser::default(),
            };
            let user_id = match path.as_slice() {
                ["users", id] => UserId::from(*id),
                [] => match profile.id.clone() {
                    Some(id) => UserId::from(id),
                    None => return Ok(Action::Ignore(Ignored::Missing("resourcePath"))),
                },
                // users/{id}/… are sub-resources (credentials, consents…): not profile changes.
                _ => return Ok(Action::Ignore(Ignored::NoEffect)),
            };
            let mut profile = profile.profile;
            if raw.operation_type == "CREATE" && profile.created_at.is_none() {
                // Without createdTimestamp, the event's own time is when the user was made.
                profile.created_at = Some(raw.time);
            }
            Ok(Action::UpdateProfile { user_id, profile })
        }
        // Keycloak's UserResource: `POST users/{id}/logout` sets the user's not-before and
        // ends its sessions; `DELETE users/{id}/consents/{clientId}` revokes the consent
        // and the client's offline tokens. Both are recorded as ACTION.
        ("USER", "ACTION") => Ok(match path.as_slice() {
            ["users", id, "logout"] => Action::LogoutUser {
                user_id: UserId::from(*id),
            },
            ["users", id, "consents", client] => Action::RevokeGrant {
                user_id: UserId::from(*id),
                client_id: ClientId::from(*client),
            },
            _ => Action::Ignore(Ignored::NoEffect),
        }),
        ("USER", "DELETE") => match path.as_slice() {
            ["users", id] => Ok(Action::DeleteUser {
                user_id: UserId::from(*id),
            }),
            [] => Ok(Action::Ignore(Ignored::Missing("resourcePath"))),
            _ => Ok(Action::Ignore(Ignored::NoEffect)),
        },
        // RealmAdminResource: `POST logout-all` is recorded as a REALM ACTION.
        ("REALM", "ACTION") => Ok(match path.as_slice() {
            ["logout-all"] => Action::LogoutRealm,
            _ => Action::Ignore(Ignored::NoEffect),
        }),
        ("REALM", "UPDATE") => Ok(Action::RealmUpdated),
        (
            "GROUP"
            | "GROUP_MEMBERSHIP"
            | "REALM_ROLE"
            | "CLIENT_ROLE"
            | "REALM_ROLE_MAPPING"
            | "CLIENT_ROLE_MAPPING"
            | "ORGANIZATION"
            | "ORGANIZATION_MEMBERSHIP",
            _,
        ) => directory::action(raw, &path),
        ("USER_SESSION", "DELETE") => match path.iter().rposition(|s| *s == "sessions") {
            Some(i) if i + 1 < path.len() => Ok(Action::EndSession {
                session_id: SessionId::from(path[i + 1]),
                offline: raw
                    .representation
                    .as_deref()
                    .is_some_and(deletes_offline_session),
            }),
            _ => Ok(Action::Ignore(Ignored::Missing("resourcePath"))),
        },
        _ => Ok(Action::Ignore(Ignored::NoEffect)),
    }
}

/// Keycloak's RealmAdminResource records `{"offline": <isOffline>}` as the representation
/// of a session deletion; anything else (absent on older versions) is the online session.
fn deletes_offline_session(representation: &str) -> bool {
    match serde_json::from_str::<Value>(representation) {
        Ok(Value::Object(rep)) => match rep.get("offline") {
            Some(Value::Bool(offline)) => *offline,
            Some(Value::String(offline)) => offline == "true",
            _ => false,
        },
        _ => false,
    }
}

#[derive(Default)]
struct RepresentedUser {
    id: Option<String>,
    profile: Profile,
}

/// Reads a `UserRepresentation` carried as a JSON string; absent or null fields stay unset.
fn read_representation(text: &str) -> Result<RepresentedUser, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Field {
        field: "representation".into(),
        expected: "a UserRepresentation as a JSON string",
        got: format!("text that is not JSON ({e})"),
    })?;
    let Value::Object(object) = value else {
        return Err(ParseError::Field {
            field: "representation".into(),
            expected: "a UserRepresentation object",
            got: kind_of(&value).into(),
        });
    };
    read_user_object(&Fields::new(&object, "representation"))
}

fn read_user_object(rep: &Fields) -> Result<RepresentedUser, ParseError> {
    Ok(RepresentedUser {
        id: rep.id("id")?,
        profile: Profile {
            username: rep.text("username", MAX_ID_LEN)?,
            email: rep.text("email", MAX_ID_LEN)?,
            first_name: rep.text("firstName", MAX_TEXT_LEN)?,
            last_name: rep.text("lastName", MAX_TEXT_LEN)?,
            email_verified: rep.bool("emailVerified")?,
            enabled: rep.bool("enabled")?,
            attributes: rep.object("attributes")?.cloned(),
            created_at: rep.epoch_ms("createdTimestamp")?,
            ..Profile::default()
        },
    })
}

/// Reads a user as the Admin API returns it (`GET …/users`, `…/users/{id}`): the whole
/// profile, so fields it leaves out are empty. `at` names the object in errors.
pub fn read_admin_user(value: &Value, at: &str) -> Result<(UserId, Profile), ParseError> {
    let Value::Object(object) = value else {
        return Err(ParseError::Field {
            field: at.to_string(),
            expected: "a UserRepresentation object",
            got: kind_of(value).into(),
        });
    };
    let fields = Fields::new(object, at);
    let user = read_user_object(&fields)?;
    let id = user
        .id
        .map(UserId::from)
        .ok_or_else(|| ParseError::Missing {
            field: fields.name("id"),
        })?;
    let mut profile = user.profile;
    profile.complete = true;
    profile.attributes.get_or_insert_with(Default::default);
    Ok((id, profile))
}

mod directory;

pub use directory::{read_admin_group, read_admin_role};

#[cfg(test)]
mod tests;
