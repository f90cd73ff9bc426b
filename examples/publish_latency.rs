//! The consumer side of the outbox benchmark (`scripts/bench-outbox.sh`): consumes the
//! queue `--queue` for `--seconds` and prints how many provider messages arrived and how
//! long each took from its event's time (set by Keycloak before the commit) to its arrival
//! here: p50, p99 and max in milliseconds. An upper bound of commit→publish, measured the
//! same way for every delivery mode.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    amqp: String,
    #[arg(long)]
    queue: String,
    #[arg(long)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = Connection::connect(&args.amqp, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            args.queue.as_str().into(),
            "publish-latency".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming")?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut took: Vec<i64> = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout_at(deadline.into(), consumer.next()).await {
        let delivery = delivery?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
        if let Some(time) = body["time"].as_i64() {
            took.push(now - time);
        }
        delivery.ack(BasicAckOptions::default()).await?;
    }
    took.sort_unstable();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "received {} p50 {}ms p99 {}ms max {}ms",
        took.len(),
        at(0.50),
        at(0.99),
        took.last().copied().unwrap_or(0)
    );
    Ok(())
}
