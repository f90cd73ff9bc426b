//! The front of the apply path shared by every input: parse a message and decide
//! whether this deployment can take it.

use std::sync::Arc;
use std::time::Duration;

use crate::core::event::{parse_message, Action, Event, Ignored, ParseError};

/// Why a message is rejected; its text goes to the rejects file or the dead-letter headers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "token message rejected: no vault key ring is configured (vault.keys, vault.active_key)"
    )]
    NoVault,
    #[error(
        "event time is {ahead_secs} s ahead of this host's clock, beyond \
         limits.max_clock_skew_secs ({limit_secs} s): a wrong clock or a forged time would \
         win every later change"
    )]
    FromTheFuture { ahead_secs: i64, limit_secs: u64 },
    #[error(
        "published by {}, not among amqp.{kind}_publishers",
        publisher.as_deref().map_or("a connection that set no user_id".to_string(), |u| format!("broker user {u:?}"))
    )]
    Publisher {
        kind: &'static str,
        publisher: Option<String>,
    },
    #[error("{0}")]
    Database(String),
}

impl Rejection {
    /// A bounded label for metrics: never input text.
    pub fn class(&self) -> &'static str {
        match self {
            Rejection::Parse(_) => "invalid",
            Rejection::NoVault => "no_vault",
            Rejection::FromTheFuture { .. } => "future_time",
            Rejection::Publisher { .. } => "publisher",
            Rejection::Database(_) => "database",
        }
    }
}

/// What this deployment accepts.
#[derive(Debug, Clone)]
pub struct Intake {
    pub max_message_bytes: usize,
    /// Token messages are rejected (not ignored, so they can be replayed later) without a vault.
    pub vault_enabled: bool,
    /// How far ahead of this host's clock an event may be timed.
    pub max_clock_skew: Option<Duration>,
    /// Realm ids whose events are applied; empty: every realm. Events of others are
    /// recorded as ignored (`other_realm`), never applied — tokens included.
    pub realms: Arc<[String]>,
    /// Broker users whose events, and whose token messages, are taken; empty: anyone.
    pub event_publishers: Arc<[String]>,
    pub token_publishers: Arc<[String]>,
}

impl Intake {
    pub fn accept(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        self.accept_at(bytes, crate::now_ms())
    }

    /// [`accept`](Self::accept) for a message from the broker: `publisher` is its
    /// `user_id`, which RabbitMQ has checked against the publishing connection's user.
    /// The publisher is checked before anything this deployment could do with it.
    pub fn accept_from(&self, bytes: &[u8], publisher: Option<&str>) -> Result<Event, Rejection> {
        let event = self.read(bytes, crate::now_ms())?;
        let (kind, allowed) = match event.kind {
            crate::core::event::Kind::Token => ("token", &self.token_publishers),
            _ => ("event", &self.event_publishers),
        };
        if !allowed.is_empty() && !publisher.is_some_and(|p| allowed.iter().any(|a| a == p)) {
            return Err(Rejection::Publisher {
                kind,
                publisher: publisher.map(str::to_string),
            });
        }
        self.admit(event)
    }

    /// [`accept`](Self::accept) with the clock given (epoch ms).
    pub fn accept_at(&self, bytes: &[u8], now_ms: i64) -> Result<Event, Rejection> {
        self.admit(self.read(bytes, now_ms)?)
    }

    /// A Keycloak event or token message, timed no further ahead than allowed; one of a
    /// realm off the allow-list is ignored.
    fn read(&self, bytes: &[u8], now_ms: i64) -> Result<Event, Rejection> {
        let event = parse_message(bytes, self.max_message_bytes)?;
        if let Some(limit) = self.max_clock_skew {
            let ahead_ms = event.time.saturating_sub(now_ms);
            if ahead_ms > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX) {
                return Err(Rejection::FromTheFuture {
                    ahead_secs: ahead_ms / 1000,
                    limit_secs: limit.as_secs(),
                });
            }
        }
        if !self.realms.is_empty() && !self.realms.iter().any(|r| *r == *event.realm_id) {
            return Ok(Event {
                action: Action::Ignore(Ignored::OtherRealm),
                ..event
            });
        }
        Ok(event)
    }

    /// Whether this deployment can take it: a token needs a vault.
    fn admit(&self, event: Event) -> Result<Event, Rejection> {
        if matches!(event.action, Action::StoreToken(_)) && !self.vault_enabled {
            return Err(Rejection::NoVault);
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_realms_off_the_allow_list_are_ignored_as_other_realm() {
        let intake = Intake {
            max_message_bytes: 1 << 20,
            vault_enabled: false,
            max_clock_skew: None,
            realms: Arc::from(["acme-id".to_string()]),
            event_publishers: Arc::from([]),
            token_publishers: Arc::from([]),
        };
        let login = |realm: &str| {
            format!(
                r#"{{"schema":1,"kind":"user","id":"x","time":1,"realmId":"{realm}","type":"LOGIN","userId":"u"}}"#
            )
        };
        let ours = intake.accept(login("acme-id").as_bytes()).expect("ours");
        assert!(matches!(ours.action, Action::Login { .. }));
        let other = intake.accept(login("evil-id").as_bytes()).expect("valid");
        assert_eq!(other.action, Action::Ignore(Ignored::OtherRealm));
        // A token of another realm is not even a vault question.
        let token = r#"{"schema":1,"kind":"token","id":"t","time":1,"realmId":"evil-id","userId":"u","tokenType":"refresh","token":"SECRET"}"#;
        let ignored = intake
            .accept(token.as_bytes())
            .expect("ignored, not rejected");
        assert_eq!(ignored.action, Action::Ignore(Ignored::OtherRealm));
    }

    #[test]
    fn events_timed_beyond_the_clock_skew_are_rejected_with_that_reason() {
        let intake = Intake {
            max_message_bytes: 1 << 20,
            vault_enabled: true,
            max_clock_skew: Some(Duration::from_secs(300)),
            realms: Arc::from([]),
            event_publishers: Arc::from([]),
            token_publishers: Arc::from([]),
        };
        let login = |time: i64| {
            format!(
                r#"{{"schema":1,"kind":"user","id":"x","time":{time},"realmId":"r","type":"LOGIN","userId":"u"}}"#
            )
        };
        let now = 1_732_270_000_000;
        assert!(intake
            .accept_at(login(now + 299_000).as_bytes(), now)
            .is_ok());
        assert!(intake
            .accept_at(login(now - 86_400_000).as_bytes(), now)
            .is_ok());
        let rejected = intake
            .accept_at(login(now + 3_600_000).as_bytes(), now)
            .expect_err("an hour ahead");
        assert_eq!(rejected.class(), "future_time");
        assert!(
            rejected.to_string().contains("3600 s ahead")
                && rejected.to_string().contains("limits.max_clock_skew_secs"),
            "{rejected}"
        );
        let unlimited = Intake {
            max_clock_skew: None,
            ..intake.clone()
        };
        assert!(unlimited
            .accept_at(login(now + 3_600_000).as_bytes(), now)
            .is_ok());
    }
}
