//! The daemon's main loop: consume in batches, apply each batch in one transaction,
//! dead-letter what cannot be applied, and only then acknowledge — reconnecting by
//! itself whenever RabbitMQ or Postgres goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::Confirmation;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::{dead_letter_properties, declare_topology, Broker};
use crate::config::AmqpSettings;
use crate::core::event::Event;
use crate::core::intake::{Intake, Rejection};
use crate::core::redact::dead_letter_copy;
use crate::now_ms;
use crate::retry::{Pauses, Policy};
use crate::store::{ApplyError, EventResult, Store};
use crate::telemetry::health::Health;
use crate::telemetry::metrics;

/// How often the loop turns while idle, so health checks see it alive.
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
enum SessionError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker cancelled the consumer")]
    Cancelled,
    #[error("dead-letter publish was not confirmed")]
    NotConfirmed,
    #[error("{0}")]
    Store(#[from] ApplyError),
    /// Shutdown while the database was away: the batch stays unacknowledged.
    #[error("shutting down before the batch could be committed")]
    Interrupted,
}

/// A committed batch waiting to be settled.
struct AppliedBatch {
    deliveries: Vec<Delivery>,
    rejected: Vec<(usize, Rejection)>,
}

pub struct Consumer {
    pub settings: AmqpSettings,
    pub store: Store,
    pub intake: Intake,
    pub health: Arc<Health>,
    pub shutdown: CancellationToken,
}

impl Consumer {
    /// Runs until `shutdown` is cancelled; connection losses are retried forever with
    /// capped, jittered backoff.
    pub async fn run(self) {
        let mut pause = Policy::reconnect(self.settings.reconnect_max).pauses();
        let mut first = true;
        // The node to try first: after a loss, the one after the node that was lost.
        let mut next: Option<usize> = None;
        while !self.shutdown.is_cancelled() {
            self.health.beat();
            if !first {
                metrics::reconnected("amqp");
            }
            first = false;
            match self.session(&mut pause, &mut next).await {
                Ok(()) => break,
                Err(error) => {
                    self.health.set_consumer_attached(None);
                    let wait = pause.next_wait();
                    tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "consumer lost its connection; reconnecting");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.health.set_consumer_attached(None);
    }

    /// One connection's life: returns `Ok` on shutdown, `Err` when it must reconnect.
    async fn session(
        &self,
        pause: &mut Pauses,
        next: &mut Option<usize>,
    ) -> Result<(), SessionError> {
        let broker = match *next {
            Some(index) => Broker::connect_from(&self.settings, index).await?,
            None => Broker::connect(&self.settings).await?,
        };
        *next = Some((broker.index + 1) % self.settings.urls.len());
        if self.settings.declare_topology {
            declare_topology(&broker.connection, &self.settings).await?;
        }
        broker
            .consume
            .basic_qos(self.settings.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("keycloak-sync-{}", uuid::Uuid::new_v4().simple());
        let mut deliveries = broker
            .consume
            .basic_consume(
                ShortString::from(self.settings.queue.as_str()),
                ShortString::from(tag.as_str()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.health
            .set_consumer_attached(Some(broker.address.clone()));
        pause.reset();
        tracing::info!(queue = %self.settings.queue, node = %broker.address, prefetch = self.settings.prefetch, "consuming");

        let result = self.pump(&broker, &mut deliveries).await;
        self.health.set_consumer_attached(None);
        if result.is_ok() {
            let _ = broker
                .consume
                .basic_cancel(
                    ShortString::from(tag.as_str()),
                    BasicCancelOptions::default(),
                )
                .await;
            broker.close().await;
            tracing::info!("consumer stopped; connection closed");
        }
        result
    }

    /// Forms batches as deliveries arrive and keeps up to `amqp.workers` of them applying
    /// at once. Batches are settled (dead-lettered, acknowledged) strictly in delivery
    /// order, so each multiple-ack covers only committed work. Returns `Ok` on shutdown,
    /// after the batches in hand are settled.
    async fn pump(
        &self,
        broker: &Broker,
        deliveries: &mut lapin::Consumer,
    ) -> Result<(), SessionError> {
        let mut applying = FuturesOrdered::new();
        let mut forming: Vec<Delivery> = Vec::with_capacity(self.settings.batch_size);
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        loop {
            let full = forming.len() >= self.settings.batch_size;
            let due = deadline.is_some_and(|d| d <= tokio::time::Instant::now());
            if (full || due) && applying.len() < self.settings.workers {
                applying.push_back(self.apply_batch(std::mem::take(&mut forming)));
                deadline = None;
                continue;
            }
            // A batch that is due but finds every worker busy waits for a worker, not for
            // its (past) deadline: that would turn the loop without end.
            let wait_until = match deadline {
                Some(at) if !due => at,
                _ => tokio::time::Instant::now() + TICK,
            };
            tokio::select! {
                biased;
                Some(done) = applying.next(), if !applying.is_empty() => self.settle(broker, done?).await?,
                _ = self.shutdown.cancelled() => break,
                next = deliveries.next(), if !full => match next {
                    Some(Ok(delivery)) => {
                        if forming.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.settings.batch_max_wait);
                        }
                        forming.push(delivery);
                    }
                    // The channel is gone: nothing more can be acknowledged; the broker
                    // redelivers everything unacknowledged.
                    Some(Err(error)) => return Err(error.into()),
                    None => return Err(SessionError::Cancelled),
                },
                _ = tokio::time::sleep_until(wait_until) => {}
                _ = tick.tick() => self.health.beat(),
            }
        }
        // Shutdown: the batches already applying are finished and settled; deliveries not
        // yet in a batch go back to the queue when the channel closes.
        while let Some(done) = applying.next().await {
            self.settle(broker, done?).await?;
        }
        Ok(())
    }

    /// Parses and applies one batch (waiting out database outages).
    async fn apply_batch(&self, batch: Vec<Delivery>) -> Result<AppliedBatch, SessionError> {
        metrics::received(batch.len());
        let mut events: Vec<Event> = Vec::with_capacity(batch.len());
        let mut event_index = Vec::with_capacity(batch.len());
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        for (i, delivery) in batch.iter().enumerate() {
            let publisher = delivery.properties.user_id().as_ref().map(|u| u.as_str());
            match self.intake.accept_from(&delivery.data, publisher) {
                Ok(event) => {
                    events.push(event);
                    event_index.push(i);
                }
                Err(rejection) => rejected.push((i, rejection)),
            }
        }
        let started = Instant::now();
        let results = self.apply_until_committed(&events).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut applied = Vec::with_capacity(events.len());
        for ((event, index), result) in events.into_iter().zip(event_index).zip(results) {
            match result {
                Ok(outcome) => {
                    outcomes.push(outcome);
                    applied.push(event);
                }
                Err(rejection) => rejected.push((index, rejection)),
            }
        }
        metrics::applied(&applied, &outcomes, started.elapsed(), now_ms());
        Ok(AppliedBatch {
            deliveries: batch,
            rejected,
        })
    }

    /// Dead-letters what could not be applied, then acknowledges the whole batch with one
    /// multiple-ack.
    async fn settle(&self, broker: &Broker, batch: AppliedBatch) -> Result<(), SessionError> {
        for (index, rejection) in &batch.rejected {
            self.dead_letter(broker, &batch.deliveries[*index], rejection)
                .await?;
        }
        if let Some(last) = batch.deliveries.last() {
            broker
                .consume
                .basic_ack(last.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
        Ok(())
    }

    /// Retries an unavailable database until it answers (reporting not ready meanwhile),
    /// unless shutdown is requested: then the batch is left unacknowledged for redelivery.
    async fn apply_until_committed(
        &self,
        events: &[Event],
    ) -> Result<Vec<EventResult>, SessionError> {
        crate::store::until_database_answers(
            &self.health,
            &self.shutdown,
            "the batch in hand",
            || self.store.apply_isolating(events),
        )
        .await?
        .ok_or(SessionError::Interrupted)
    }

    async fn dead_letter(
        &self,
        broker: &Broker,
        delivery: &Delivery,
        rejection: &Rejection,
    ) -> Result<(), SessionError> {
        let reason = rejection.to_string();
        let kind = match &rejection {
            Rejection::NoVault => "token",
            _ => "unknown",
        };
        // Input is logged escaped (Debug), so no routing key or reason forges a log line.
        tracing::warn!(routing_key = ?delivery.routing_key.as_str(), reason = ?reason, "message dead-lettered");
        let properties = dead_letter_properties(
            &delivery.properties,
            delivery.routing_key.as_str(),
            delivery.exchange.as_str(),
            &reason,
            now_ms(),
        );
        let confirm = broker
            .publish
            // Straight to the dead-letter queue: the dead-letter exchange feeds the
            // internal queue of what the broker dead-letters by itself (see `limbo`).
            .basic_publish(
                ShortString::from(super::limbo::redacted_exchange(&self.settings)),
                delivery.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &dead_letter_copy(&delivery.data, self.intake.max_message_bytes),
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) => {
                metrics::dead_lettered(kind, rejection.class());
                Ok(())
            }
            _ => Err(SessionError::NotConfirmed),
        }
    }
}
