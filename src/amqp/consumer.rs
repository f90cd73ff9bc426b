//! The daemon's main loop: consume in batches, apply each batch in one transaction,
//! dead-letter what cannot be applied, and only then acknowledge — reconnecting by
//! itself whenever RabbitMQ or Postgres goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::Confirmation;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::acks::Unacked;
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
    #[error("a batch task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Shutdown while the database was away: the batch stays unacknowledged.
    #[error("shutting down before the batch could be committed")]
    Interrupted,
}

/// A committed batch waiting to be settled.
struct AppliedBatch {
    deliveries: Vec<Delivery>,
    rejected: Vec<(usize, Rejection)>,
}

/// One of `amqp.workers` lanes: the deliveries of its users (see [`Event::lane`]) waiting
/// for a batch, and whether a batch of it is applying (one at a time per lane).
#[derive(Default)]
struct Lane {
    forming: Vec<(Delivery, Event)>,
    /// When the oldest forming delivery must be applied, full batch or not.
    deadline: Option<tokio::time::Instant>,
    applying: bool,
}

impl Lane {
    fn ready(&self, batch_size: usize, now: tokio::time::Instant) -> bool {
        !self.applying
            && !self.forming.is_empty()
            && (self.forming.len() >= batch_size || self.deadline.is_some_and(|d| d <= now))
    }

    /// The next batch: at most `batch_size` of the oldest deliveries; any left over are
    /// due as soon as the lane is free again.
    fn take(&mut self, batch_size: usize) -> Vec<(Delivery, Event)> {
        let rest = self.forming.split_off(self.forming.len().min(batch_size));
        let batch = std::mem::replace(&mut self.forming, rest);
        self.deadline = (!self.forming.is_empty()).then(tokio::time::Instant::now);
        self.applying = true;
        batch
    }
}

/// What a batch needs to be applied. Each batch is its own task, so its work (planning,
/// encoding, the database protocol) runs beside the loop that reads deliveries, on
/// another thread when there is one.
#[derive(Clone)]
struct Applier {
    store: Store,
    health: Arc<Health>,
    shutdown: CancellationToken,
}

pub struct Consumer {
    pub settings: AmqpSettings,
    pub store: Store,
    pub intake: Intake,
    pub health: Arc<Health>,
    pub shutdown: CancellationToken,
}

impl Applier {
    /// Applies one batch (waiting out database outages).
    async fn apply_batch(
        self,
        batch: Vec<(Delivery, Event)>,
    ) -> Result<AppliedBatch, SessionError> {
        let (deliveries, events): (Vec<Delivery>, Vec<Event>) = batch.into_iter().unzip();
        let started = Instant::now();
        let results = self.apply_until_committed(&events).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut applied = Vec::with_capacity(events.len());
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        for (index, (event, result)) in events.into_iter().zip(results).enumerate() {
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
            deliveries,
            rejected,
        })
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

    /// Deals deliveries out to `amqp.workers` lanes by user as they arrive and applies
    /// each lane's batches in turn, the lanes side by side: concurrent transactions then
    /// seldom wait for each other's locks. A batch is settled (dead-lettered,
    /// acknowledged) as soon as it commits; the multiple-ack covers only deliveries that
    /// are all settled (see [`Unacked`]). Returns `Ok` on shutdown, after the batches in
    /// hand are settled.
    async fn pump(
        &self,
        broker: &Broker,
        deliveries: &mut lapin::Consumer,
    ) -> Result<(), SessionError> {
        let batch_size = self.settings.batch_size;
        let mut lanes: Vec<Lane> = (0..self.settings.workers.max(1))
            .map(|_| Lane::default())
            .collect();
        let mut unacked = Unacked::default();
        let applier = Applier {
            store: self.store.clone(),
            health: self.health.clone(),
            shutdown: self.shutdown.clone(),
        };
        let mut applying = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(TICK);
        loop {
            let now = tokio::time::Instant::now();
            for (index, lane) in lanes.iter_mut().enumerate() {
                if lane.ready(batch_size, now) {
                    let (batch, applier) = (lane.take(batch_size), applier.clone());
                    applying.spawn(async move { (index, applier.apply_batch(batch).await) });
                }
            }
            // The earliest deadline of a lane that can take a batch; otherwise a tick.
            let wait_until = lanes
                .iter()
                .filter(|lane| !lane.applying)
                .filter_map(|lane| lane.deadline)
                .min()
                .unwrap_or(now + TICK);
            // Memory is bounded by the prefetch: the broker sends no more than that many
            // unacknowledged deliveries.
            tokio::select! {
                biased;
                Some(joined) = applying.join_next(), if !applying.is_empty() => {
                    let (index, done) = joined?;
                    lanes[index].applying = false;
                    self.settle(broker, done?, &mut unacked).await?;
                }
                _ = self.shutdown.cancelled() => break,
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        metrics::received(1);
                        unacked.received(delivery.delivery_tag);
                        let publisher = delivery.properties.user_id().as_ref().map(|u| u.as_str());
                        match self.intake.accept_from(&delivery.data, publisher) {
                            Ok(event) => {
                                let count = lanes.len();
                                let lane = &mut lanes[event.lane(count)];
                                if lane.forming.is_empty() {
                                    lane.deadline = Some(tokio::time::Instant::now() + self.settings.batch_max_wait);
                                }
                                lane.forming.push((delivery, event));
                            }
                            Err(rejection) => {
                                let alone = AppliedBatch { deliveries: vec![delivery], rejected: vec![(0, rejection)] };
                                self.settle(broker, alone, &mut unacked).await?;
                            }
                        }
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
        while let Some(joined) = applying.join_next().await {
            let (_, done) = joined?;
            self.settle(broker, done?, &mut unacked).await?;
        }
        // Committed batches behind a delivery that was never applied: acknowledged one by
        // one, so nothing committed is delivered again.
        for tag in unacked.settled_but_held() {
            self.acknowledge_alone(broker, tag).await?;
        }
        Ok(())
    }

    /// Dead-letters what could not be applied, then acknowledges as far as every
    /// delivery up to there is settled.
    async fn settle(
        &self,
        broker: &Broker,
        batch: AppliedBatch,
        unacked: &mut Unacked,
    ) -> Result<(), SessionError> {
        for (index, rejection) in &batch.rejected {
            self.dead_letter(broker, &batch.deliveries[*index], rejection)
                .await?;
        }
        let through = unacked.settle(batch.deliveries.iter().map(|d| d.delivery_tag));
        self.acknowledge(broker, through).await?;
        // A dead-lettered delivery that an older one holds back is acknowledged alone now:
        // were the connection lost meanwhile, it would be dead-lettered a second time.
        for (index, _) in &batch.rejected {
            let tag = batch.deliveries[*index].delivery_tag;
            if unacked.waits(tag) {
                self.acknowledge_alone(broker, tag).await?;
                unacked.acked_alone(tag);
            }
        }
        Ok(())
    }

    async fn acknowledge_alone(&self, broker: &Broker, tag: u64) -> Result<(), SessionError> {
        broker
            .consume
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await?;
        Ok(())
    }

    /// One multiple-ack up to `through`.
    async fn acknowledge(&self, broker: &Broker, through: Option<u64>) -> Result<(), SessionError> {
        if let Some(tag) = through {
            broker
                .consume
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await?;
        }
        Ok(())
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
