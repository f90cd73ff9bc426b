//! `keycloak-sync publish`: puts a JSONL event log onto the exchange the daemon consumes,
//! as the Keycloak provider would (persistent messages, publisher confirms). For demos,
//! load tests, and moving a log recovered elsewhere back into the live flow.

use std::io::BufRead;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};

use super::Broker;
use crate::config::AmqpSettings;
use crate::event::{parse_message, Event};

/// Publishes this many messages before waiting for their confirms.
const CONFIRM_WINDOW: usize = 1000;

/// `kc.<realm>.<kind>.<type>` with dots in names replaced, as GUIDE §2.1 specifies.
pub fn routing_key(event: &Event) -> String {
    let clean = |s: &str| s.replace('.', "_");
    format!(
        "kc.{}.{}.{}",
        clean(&event.realm_id),
        event.kind,
        event.type_name
    )
}

pub async fn publish_lines(settings: &AmqpSettings, input: impl BufRead) -> anyhow::Result<u64> {
    let broker = Broker::connect(settings).await?;
    super::declare_topology(&broker.consume, settings).await?;
    let mut pending = Vec::with_capacity(CONFIRM_WINDOW);
    let mut published = 0u64;
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (key, properties) = match parse_message(&line, usize::MAX) {
            Ok(event) => (
                routing_key(&event),
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
        if pending.len() >= CONFIRM_WINDOW {
            published += settle(&mut pending).await?;
        }
    }
    published += settle(&mut pending).await?;
    broker.close().await;
    Ok(published)
}

async fn settle(pending: &mut Vec<lapin::PublisherConfirm>) -> anyhow::Result<u64> {
    let mut count = 0;
    for confirm in pending.drain(..) {
        match confirm.await? {
            Confirmation::Ack(_) => count += 1,
            other => anyhow::bail!("the broker did not confirm a message: {other:?}"),
        }
    }
    Ok(count)
}
