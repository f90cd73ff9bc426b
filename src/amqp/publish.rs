//! `keycloak-sync publish`: puts a JSONL event log onto the exchange the daemon consumes,
//! as the Keycloak provider would (persistent messages, publisher confirms). For demos,
//! load tests, and moving a log recovered elsewhere back into the live flow.

use std::io::BufRead;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};

use super::{AmqpError, Broker};
use crate::config::AmqpSettings;
use crate::core::event::{parse_message, Event};

/// Publishes this many messages before waiting for their confirms.
const CONFIRM_WINDOW: usize = 1000;

/// The routing key the provider gives the message `line` (parsed as `event`):
/// `kc.<realm name>.<kind>.<type>`, dots in names replaced by `_`. The realm is named by
/// the message's `realmName`, as the provider's envelope carries it; messages without one
/// (aznamier's, token messages, REST representations) fall back to the realm id.
pub fn routing_key(line: &[u8], event: &Event) -> String {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(rename = "realmName", borrow)]
        realm_name: Option<std::borrow::Cow<'a, str>>,
    }
    let named = serde_json::from_slice::<Named>(line)
        .ok()
        .and_then(|n| n.realm_name)
        .filter(|name| !name.is_empty());
    let realm = named.as_deref().unwrap_or(event.realm_id.as_str());
    let clean = |s: &str| s.replace('.', "_");
    format!("kc.{}.{}.{}", clean(realm), event.kind, event.type_name)
}

/// Load-testing knobs; the defaults publish the file as it is, as fast as confirms allow.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishOptions {
    /// Messages per second, spread evenly (in 10 ms steps).
    pub rate: Option<u32>,
    /// Set each event's `time` to the moment it is published, so the daemon's lag metric
    /// measures commit time minus publish time.
    pub restamp: bool,
}

fn restamped(line: Vec<u8>) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(&line) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("time".into(), serde_json::Value::from(crate::now_ms()));
            serde_json::Value::Object(object).to_string().into_bytes()
        }
        _ => line,
    }
}

pub async fn publish_lines(
    settings: &AmqpSettings,
    input: impl BufRead,
    options: PublishOptions,
) -> Result<u64, AmqpError> {
    let broker = Broker::connect(settings).await?;
    super::declare_topology(&broker.connection, settings).await?;
    let window = match options.rate {
        Some(rate) => (rate as usize / 100).max(1),
        None => CONFIRM_WINDOW,
    };
    let mut pacer = tokio::time::interval(std::time::Duration::from_millis(10));
    pacer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = Vec::with_capacity(window);
    let mut published = 0u64;
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if options.rate.is_some() && pending.is_empty() {
            pacer.tick().await;
        }
        let line = if options.restamp {
            restamped(line)
        } else {
            line
        };
        let (key, properties) = match parse_message(&line, usize::MAX) {
            Ok(event) => (
                routing_key(&line, &event),
                BasicProperties::default()
                    .with_message_id(ShortString::from(event.id.as_str()))
                    .with_type(ShortString::from(format!(
                        "{}.{}",
                        event.kind, event.type_name
                    ))),
            ),
            Err(_) => ("kc.unknown.invalid".to_string(), BasicProperties::default()),
        };
        let properties = properties
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_app_id(ShortString::from("keycloak-sync"));
        let confirm = broker
            .publish
            .basic_publish(
                ShortString::from(settings.exchange.as_str()),
                ShortString::from(key),
                BasicPublishOptions::default(),
                &line,
                properties,
            )
            .await?;
        pending.push(confirm);
        if pending.len() >= window {
            published += settle(&mut pending).await?;
        }
    }
    published += settle(&mut pending).await?;
    broker.close().await;
    Ok(published)
}

async fn settle(pending: &mut Vec<lapin::PublisherConfirm>) -> Result<u64, AmqpError> {
    let mut count = 0;
    for confirm in pending.drain(..) {
        match confirm.await? {
            Confirmation::Ack(_) => count += 1,
            other => return Err(AmqpError::NotConfirmed(format!("a message: {other:?}"))),
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::routing_key;
    use crate::core::event::parse_message;

    fn key(line: &str) -> String {
        let event = parse_message(line.as_bytes(), usize::MAX).expect("a valid message");
        routing_key(line.as_bytes(), &event)
    }

    #[test]
    fn routing_keys_name_the_realm_as_the_provider_does() {
        let login = r#"{"schema":1,"kind":"user","id":"e1","time":1732270000123,"realmId":"0c6f-id","realmName":"acme.prod","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"s1","details":{}}"#;
        assert_eq!(key(login), "kc.acme_prod.user.LOGIN");
        let update = r#"{"schema":1,"kind":"admin","id":"e2","time":1732270000456,"realmId":"0c6f-id","realmName":"acme","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u1","authDetails":{},"details":{}}"#;
        assert_eq!(key(update), "kc.acme.admin.USER.UPDATE");
    }

    #[test]
    fn messages_without_a_realm_name_fall_back_to_the_realm_id() {
        let token = r#"{"schema":1,"kind":"token","id":"8d2b0000-0000-4000-8000-000000000001","time":1732270000789,"realmId":"0c6f-id","userId":"u1","sessionId":"s1","clientId":"web","tokenType":"refresh","token":"t","expiresAt":1734862000789}"#;
        assert_eq!(key(token), "kc.0c6f-id.token.refresh");
    }
}
