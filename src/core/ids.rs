//! The identifiers of Keycloak's world, one type each, so that a session id can never be
//! passed where a user id belongs, nor a realm's name where its id does. They are made
//! once, where input is parsed (the parser has checked they are non-empty and short);
//! from then on they only travel.

use std::borrow::Borrow;
use std::fmt;

/// FNV-1a of an id: the same in every process and version, unlike std's hasher (advisory
/// lock keys are shared by every replica).
pub fn stable_hash(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A byte `escape_debug` leaves as it is: printable ASCII other than quotes and backslash.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'\\' | b'"' | b'\'')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Escaped: ids come from outside and end up in logs. Most are plain
                // (UUIDs, client ids), which escaping leaves as they are.
                if self.0.bytes().all(is_plain) {
                    f.write_str(&self.0)
                } else {
                    write!(f, "{}", self.0.escape_debug())
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }
    };
}

id_type!(
    /// A Keycloak user's id (`users.id`); federated users look like `f:<provider>:<name>`.
    UserId
);
id_type!(
    /// A Keycloak session's id (`user_sessions.id`).
    SessionId
);
id_type!(
    /// A realm's id: what every table records.
    RealmId
);
id_type!(
    /// A realm's name: what URLs of the Admin API and routing keys use.
    RealmName
);
id_type!(
    /// A client's id as events name it (`clientId`, e.g. `web-app`).
    ClientId
);
id_type!(
    /// A group's id (`groups.id`).
    GroupId
);
id_type!(
    /// A role's id (`roles.id`), realm or client role alike.
    RoleId
);
id_type!(
    /// An organization's id (`organizations.id`, Keycloak 26).
    OrganizationId
);
id_type!(
    /// A client's internal id (the UUID in Admin API paths such as
    /// `role-mappings/clients/{id}`), not the `clientId` events name.
    ClientUuid
);
id_type!(
    /// An event's idempotency key: Keycloak's or the publisher's id, or one derived from
    /// the content.
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_with_text_and_print_escaped() {
        let user = UserId::new("f:ldap:alice");
        assert_eq!(user, "f:ldap:alice");
        assert_eq!(user.as_str(), "f:ldap:alice");
        assert_eq!(UserId::new("evil\nline").to_string(), "evil\\nline");
        let map: std::collections::HashMap<UserId, u8> = [(user.clone(), 1)].into();
        assert_eq!(map.get("f:ldap:alice"), Some(&1));
    }
}
