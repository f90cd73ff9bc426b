//! Which deliveries one multiple-ack may cover. Batches of different lanes commit in any
//! order; an acknowledgement must never reach a delivery whose effect is not committed
//! (or dead-lettered), so it covers the longest run of settled deliveries from the
//! oldest one still held.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not committed or dead-lettered yet.
    Held,
    /// Settled, to be acknowledged by a multiple-ack.
    Settled,
    /// Settled and acknowledged on its own: a multiple-ack may pass over it but must not
    /// name it (RabbitMQ closes the channel on an unknown delivery tag).
    AckedAlone,
}

/// The deliveries of one channel not yet acknowledged, oldest first (RabbitMQ's delivery
/// tags grow on a channel). At most `amqp.prefetch` long.
#[derive(Debug, Default)]
pub struct Unacked {
    held: VecDeque<(u64, State)>,
}

impl Unacked {
    pub fn received(&mut self, tag: u64) {
        debug_assert!(self.held.back().is_none_or(|(last, _)| *last < tag));
        self.held.push_back((tag, State::Held));
    }

    /// Marks `tags` settled; returns the tag a multiple-ack should now go up to, if the
    /// run of settled deliveries from the oldest grew.
    pub fn settle(&mut self, tags: impl IntoIterator<Item = u64>) -> Option<u64> {
        for tag in tags {
            self.mark(tag, State::Settled);
        }
        let mut through = None;
        while let Some(&(tag, state)) = self.held.front() {
            match state {
                State::Held => break,
                State::Settled => through = Some(tag),
                State::AckedAlone => {}
            }
            self.held.pop_front();
        }
        through
    }

    /// Whether `tag` is settled but still waits behind an older delivery.
    pub fn waits(&self, tag: u64) -> bool {
        self.find(tag)
            .is_some_and(|i| self.held[i].1 == State::Settled)
    }

    /// `tag` was acknowledged on its own.
    pub fn acked_alone(&mut self, tag: u64) {
        self.mark(tag, State::AckedAlone);
    }

    /// Settled deliveries an older unsettled one still holds back from the multiple-ack.
    pub fn settled_but_held(&self) -> Vec<u64> {
        self.held
            .iter()
            .filter(|(_, state)| *state == State::Settled)
            .map(|(tag, _)| *tag)
            .collect()
    }

    fn find(&self, tag: u64) -> Option<usize> {
        self.held.binary_search_by_key(&tag, |(t, _)| *t).ok()
    }

    fn mark(&mut self, tag: u64, state: State) {
        if let Some(i) = self.find(tag) {
            self.held[i].1 = state;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_batch_settled_first_waits_for_the_older_one() {
        let mut unacked = Unacked::default();
        for tag in 1..=6 {
            unacked.received(tag);
        }
        // Lane B (tags 2, 4, 6) commits before lane A (1, 3, 5): nothing may be acked.
        assert_eq!(unacked.settle([2, 4, 6]), None);
        assert_eq!(unacked.len(), 6);
        assert!(unacked.waits(4) && !unacked.waits(1));
        // Lane A commits 1 and 3 only (5 is in its next batch): up to 4.
        assert_eq!(unacked.settle([1, 3]), Some(4));
        assert_eq!(unacked.len(), 2);
        assert_eq!(unacked.settled_but_held(), [6]);
        assert_eq!(unacked.settle([5]), Some(6));
        assert_eq!(unacked.len(), 0);
    }

    #[test]
    fn settling_in_order_acknowledges_each_batch_whole() {
        let mut unacked = Unacked::default();
        for tag in 10..20 {
            unacked.received(tag);
        }
        assert_eq!(unacked.settle(10..15), Some(14));
        assert_eq!(unacked.settle(15..20), Some(19));
        // A tag that is not held (already acknowledged) changes nothing.
        assert_eq!(unacked.settle([12]), None);
    }

    #[test]
    fn a_multiple_ack_never_names_a_delivery_acknowledged_alone() {
        let mut unacked = Unacked::default();
        for tag in 1..=4 {
            unacked.received(tag);
        }
        assert_eq!(unacked.settle([3, 4]), None);
        unacked.acked_alone(4);
        assert_eq!(unacked.settled_but_held(), [3]);
        // 1 and 2 settle: the ack goes up to 3, passing over 4, and 4 is gone too.
        assert_eq!(unacked.settle([1, 2]), Some(3));
        assert_eq!(unacked.len(), 0);
        // Only deliveries acknowledged alone at the front: nothing to acknowledge.
        unacked.received(5);
        unacked.received(6);
        assert_eq!(unacked.settle([6]), None);
        unacked.acked_alone(6);
        assert_eq!(unacked.settle([]), None);
        unacked.acked_alone(5);
        assert_eq!(unacked.settle([]), None);
        assert_eq!(unacked.len(), 0);
    }
}
