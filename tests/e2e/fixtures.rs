//! Every message the provider publishes during a test also lands on a tap queue of the
//! test. At the end the test keeps them: with `KCS_WRITE_FIXTURES=1` as
//! `tests/fixtures/<name>.jsonl` (the real JSON as published, for the unit tests that parse
//! them without Keycloak); otherwise their shapes (every key and the type of every value,
//! representations included) must equal those of the committed fixture, so a change of
//! Keycloak's shapes shows up as a failing diff.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

use crate::support::amqp_connect;
use crate::World;

pub fn tap_name(queue: &str) -> String {
    format!("{queue}.tap")
}

/// Declares the tap (expires ten minutes after its last use) bound to `binding`.
pub async fn declare_tap(amqp: &str, queue: &str, binding: &str) {
    let connection = amqp_connect(amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-expires"), AMQPValue::LongUInt(600_000));
    channel
        .queue_declare(
            ShortString::from(tap_name(queue)),
            QueueDeclareOptions::default(),
            arguments,
        )
        .await
        .expect("declare tap");
    channel
        .queue_bind(
            ShortString::from(tap_name(queue)),
            ShortString::from(crate::EXCHANGE),
            ShortString::from(binding),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind tap");
    let _ = connection.close(200, ShortString::from("done")).await;
}

/// Everything on the tap now.
pub async fn drain(amqp: &str, queue: &str) -> Vec<Value> {
    let connection = amqp_connect(amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    let depth = channel
        .queue_declare(
            ShortString::from(tap_name(queue)),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap exists")
        .message_count();
    let mut consumer = channel
        .basic_consume(
            ShortString::from(tap_name(queue)),
            ShortString::from("fixtures"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume tap");
    let mut messages = Vec::new();
    while messages.len() < depth as usize {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next()).await
        else {
            break;
        };
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        messages.push(serde_json::from_slice(&delivery.data).expect("the provider publishes JSON"));
    }
    let _ = connection.close(200, ShortString::from("done")).await;
    messages
}

/// A value's shape: objects keep their keys, every leaf becomes its type's name, but for
/// what names the message (`kind`, `type`, `resourceType`, `operationType`) which stay as
/// they are; a representation (JSON in a string) is shaped as the JSON it holds.
pub fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let inner = match (k.as_str(), v) {
                        ("representation", Value::String(text)) => {
                            serde_json::from_str::<Value>(text)
                                .map(|json| shape(&json))
                                .unwrap_or(Value::from("string"))
                        }
                        ("kind" | "type" | "resourceType" | "operationType", Value::String(_)) => {
                            v.clone()
                        }
                        _ => shape(v),
                    };
                    (k.clone(), inner)
                })
                .collect(),
        ),
        Value::Array(items) => {
            let shapes: BTreeSet<String> = items.iter().map(|v| shape(v).to_string()).collect();
            Value::from(shapes.into_iter().collect::<Vec<_>>())
        }
        Value::String(_) => Value::from("string"),
        Value::Number(_) => Value::from("number"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::from("null"),
    }
}

/// One line per distinct (kind, type, shape).
fn shapes(messages: &[Value]) -> BTreeSet<String> {
    messages.iter().map(|m| shape(m).to_string()).collect()
}

/// `tests/fixtures/keycloak-<major>.<minor>/<name>.jsonl`: each Keycloak version tested
/// keeps its own (26.4's admin deletions carry an empty `details`, 26.7's none).
fn path((major, minor): (u32, u32), name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("keycloak-{major}.{minor}"))
        .join(format!("{name}.jsonl"))
}

/// Keeps (or checks) the messages the test's realm published.
pub async fn keep(world: &World, name: &str) {
    let messages = drain(&crate::support::amqp_url(), &world.names.queue).await;
    let version = world.realm.server_version().await;
    let path = |name: &str| path(version, name);
    assert!(
        !messages.is_empty(),
        "the provider published nothing to the tap"
    );
    if std::env::var_os("KCS_WRITE_FIXTURES").is_some() {
        let mut text = String::new();
        for message in &messages {
            text.push_str(&message.to_string());
            text.push('\n');
        }
        std::fs::create_dir_all(path(name).parent().expect("dir")).expect("fixtures dir");
        std::fs::write(path(name), text).expect("write fixture");
        return;
    }
    let kept = std::fs::read_to_string(path(name)).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with KCS_WRITE_FIXTURES=1",
            path(name).display()
        )
    });
    let kept: Vec<Value> = kept
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture line"))
        .collect();
    let (now, then) = (shapes(&messages), shapes(&kept));
    let new: Vec<&String> = now.difference(&then).collect();
    let gone: Vec<&String> = then.difference(&now).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "Keycloak's messages changed shape against tests/fixtures/{name}.jsonl\nnew:  {new:#?}\ngone: {gone:#?}\n(rewrite with KCS_WRITE_FIXTURES=1 once understood)"
    );
}
