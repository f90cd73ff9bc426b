//! The one back-off policy of the product: capped, jittered exponential waits. Every
//! retry loop (database calls, Admin API requests, broker reconnects, waiting out an
//! outage) goes through here; nothing else touches the `backoff` crate.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff as _;
use backoff::{ExponentialBackoff, ExponentialBackoffBuilder};

/// How the waits between attempts grow.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub first: Duration,
    pub ceiling: Duration,
    /// Share of each wait that is randomised, so replicas do not retry in step.
    pub jitter: f64,
    /// `None`: never give up.
    pub give_up_after: Option<Duration>,
}

/// What one failed attempt means for the next.
#[derive(Debug)]
pub enum Verdict<E> {
    /// May pass: try again after the policy's wait.
    Retry(E),
    /// May pass: try again after this wait (e.g. a server's `Retry-After`).
    RetryAfter(E, Duration),
    /// Will not pass by waiting.
    Stop(E),
}

impl Policy {
    /// Short calls inside one operation: a database statement, an HTTP request.
    pub const fn calls(give_up_after: Duration) -> Self {
        Policy {
            first: Duration::from_millis(50),
            ceiling: Duration::from_secs(5),
            jitter: 0.5,
            give_up_after: Some(give_up_after),
        }
    }

    /// Waiting for a whole service to come back, for as long as it takes.
    pub const fn reconnect(ceiling: Duration) -> Self {
        Policy {
            first: Duration::from_millis(200),
            ceiling,
            jitter: 0.3,
            give_up_after: None,
        }
    }

    /// The same policy, starting at `first`.
    pub const fn starting_at(mut self, first: Duration) -> Self {
        self.first = first;
        self
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoffBuilder::new()
            .with_initial_interval(self.first)
            .with_max_interval(self.ceiling)
            .with_randomization_factor(self.jitter)
            .with_max_elapsed_time(self.give_up_after)
            .build()
    }

    /// Successive waits, for loops that do more between attempts than call one function.
    pub fn pauses(&self) -> Pauses {
        Pauses {
            inner: self.backoff(),
            ceiling: self.ceiling,
        }
    }

    /// Runs `attempt` until it succeeds, says [`Verdict::Stop`], or the policy gives up;
    /// `notify` hears of each failure that will be retried and the wait before the next.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut attempt: F,
        mut notify: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Verdict<E>>>,
    {
        backoff::future::retry_notify(
            self.backoff(),
            || {
                let running = attempt();
                async move {
                    running.await.map_err(|verdict| match verdict {
                        Verdict::Retry(error) => backoff::Error::transient(error),
                        Verdict::RetryAfter(error, wait) => {
                            backoff::Error::retry_after(error, wait)
                        }
                        Verdict::Stop(error) => backoff::Error::permanent(error),
                    })
                }
            },
            |error: E, wait| notify(&error, wait),
        )
        .await
    }
}

/// The waits of one retry loop.
pub struct Pauses {
    inner: ExponentialBackoff,
    ceiling: Duration,
}

impl Pauses {
    /// The wait before the next attempt (the ceiling once the policy would give up).
    pub fn next_wait(&mut self) -> Duration {
        self.inner.next_backoff().unwrap_or(self.ceiling)
    }

    /// Back to the first wait, after a success.
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_ceiling_and_reset() {
        let mut pauses = Policy::reconnect(Duration::from_secs(2)).pauses();
        let waits: Vec<Duration> = (0..12).map(|_| pauses.next_wait()).collect();
        assert!(waits[0] <= Duration::from_millis(260), "{waits:?}");
        // The ceiling bounds the interval; jitter may add up to 30 % of it.
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(2600)),
            "{waits:?}"
        );
        assert!(waits[11] >= Duration::from_millis(1400), "{waits:?}");
        pauses.reset();
        assert!(pauses.next_wait() <= Duration::from_millis(260));
    }

    #[tokio::test]
    async fn stops_at_once_on_a_permanent_failure_and_retries_the_rest() {
        let mut calls = 0;
        let result: Result<(), &str> = Policy::calls(Duration::from_secs(5))
            .retry(
                || {
                    calls += 1;
                    let verdict = if calls < 3 {
                        Verdict::Retry("again")
                    } else {
                        Verdict::Stop("broken")
                    };
                    async move { Err(verdict) }
                },
                |_, _| {},
            )
            .await;
        assert_eq!(result, Err("broken"));
        assert_eq!(calls, 3);
    }
}
