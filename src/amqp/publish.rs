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
