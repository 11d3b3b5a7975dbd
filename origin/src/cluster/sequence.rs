//! What an instance knows of the invalidation sequence, and what it must do with what it hears
//! (see [`super::bus`] for the protocol). Pure: the bus feeds it the messages and the counter
//! it reads, and carries out the action returned.
//!
//! Pub/Sub delivers at most once, so the L1 is trusted only as far as the numbers prove:
//! - a message numbered past the next one reveals a gap: one was lost, flush;
//! - a number the counter showed at one check and still not applied at the next was lost
//!   without a later message to reveal it: flush;
//! - a counter below what was applied means Redis lost its data: flush, and count from there;
//! - and the L1 is trusted only for a few checks after the last one that succeeded.

/// What to do to the L1 with a message or a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the message is this instance's own (applied before it was published), or the
    /// check found everything applied.
    Keep,
    /// Drop the entries of these tags.
    Drop(Vec<String>),
    /// Drop everything: a purge beyond tags, or invalidations that may have been lost.
    Flush,
}

/// One invalidation message as heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub seq: u64,
    /// Published by this instance.
    pub own: bool,
    pub tags: Vec<String>,
    /// Beyond tags (URLs, prefixes, everything).
    pub all: bool,
}

#[derive(Debug, Default)]
pub struct Sequence {
    /// The newest invalidation applied (0: none heard of since the subscription started).
    applied: u64,
    /// A number a check saw in the counter and that was not applied then: by the next check its
    /// message should have arrived.
    awaited: Option<u64>,
    /// Until when (ms since the epoch) the last check vouches for the L1.
    trusted_until_ms: i64,
}

impl Sequence {
    /// Trusted for ever: the single instance, whose L1 nobody else invalidates.
    pub fn alone() -> Self {
        Self {
            trusted_until_ms: i64::MAX,
            ..Self::default()
        }
    }

    /// The newest invalidation applied, what this instance acknowledges.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Until when (ms since the epoch) the checks vouch for the L1.
    pub fn trusted_until_ms(&self) -> i64 {
        self.trusted_until_ms
    }

    /// A new subscription starts from the counter as it is, `seq`: what came before it was
    /// flushed with the whole L1.
    pub fn resubscribed(&mut self, seq: u64) {
        self.applied = seq;
        self.awaited = None;
    }

    /// A message heard on the channel.
    pub fn heard(&mut self, message: Heard) -> Action {
        let gap = self.applied != 0 && message.seq > self.applied.saturating_add(1);
        self.applied = self.applied.max(message.seq);
        if gap || (message.all && !message.own) {
            Action::Flush
        } else if message.own {
            Action::Keep
        } else {
            Action::Drop(message.tags)
        }
    }

    /// A check read `current` from the counter at `now_ms`, having read `applied_before` (see
    /// [`Sequence::applied`]) just before it asked: messages applied while it asked are newer
    /// than `current` and prove nothing lost. `checks_every_ms` is how often checks run; the L1
    /// is trusted for three of them.
    pub fn checked(
        &mut self,
        applied_before: u64,
        current: u64,
        now_ms: i64,
        checks_every_ms: i64,
    ) -> Action {
        let lost = self.awaited.is_some_and(|awaited| applied_before < awaited);
        let reset = current < applied_before;
        if reset {
            self.applied = current;
        } else if lost {
            self.applied = self.applied.max(current);
        }
        self.awaited = (current > self.applied).then_some(current);
        self.trusted_until_ms = now_ms.saturating_add(3 * checks_every_ms);
        if lost || reset {
            Action::Flush
        } else {
            Action::Keep
        }
    }

    /// A check could not read the counter: invalidations may be going on that this instance
    /// cannot hear of, so the L1 is not trusted until a check succeeds.
    pub fn check_failed(&mut self) {
        self.trusted_until_ms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: i64 = 250;

    fn message(seq: u64, own: bool, tags: &[&str], all: bool) -> Heard {
        Heard {
            seq,
            own,
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            all,
        }
    }

    #[test]
    fn consecutive_messages_drop_their_tags_and_own_ones_nothing() {
        let mut sequence = Sequence::default();
        assert_eq!(
            sequence.heard(message(7, false, &["e:FR"], false)),
            Action::Drop(vec!["e:FR".into()]),
            "the first message after subscribing shows no gap"
        );
        assert_eq!(
            sequence.heard(message(8, true, &["e:DE"], false)),
            Action::Keep
        );
        assert_eq!(sequence.heard(message(9, false, &[], true)), Action::Flush);
        assert_eq!(sequence.heard(message(10, true, &[], true)), Action::Keep);
        assert_eq!(sequence.applied(), 10);
    }

    #[test]
    fn a_skipped_number_flushes_even_for_an_own_message() {
        let mut sequence = Sequence::default();
        sequence.resubscribed(3);
        assert_eq!(
            sequence.heard(message(5, true, &["e:FR"], false)),
            Action::Flush
        );
        assert_eq!(sequence.applied(), 5);
        // A late duplicate changes nothing.
        assert_eq!(
            sequence.heard(message(4, false, &["e:IT"], false)),
            Action::Drop(vec!["e:IT".into()])
        );
        assert_eq!(sequence.applied(), 5);
    }

    #[test]
    fn a_number_the_counter_showed_and_never_heard_is_lost_at_the_next_check() {
        let mut sequence = Sequence::default();
        sequence.resubscribed(10);
        assert_eq!(
            sequence.checked(10, 11, 0, EVERY),
            Action::Keep,
            "11 may be on its way"
        );
        assert_eq!(
            sequence.checked(10, 11, EVERY, EVERY),
            Action::Flush,
            "11 was lost"
        );
        assert_eq!(sequence.applied(), 11);
        assert_eq!(sequence.checked(11, 11, 2 * EVERY, EVERY), Action::Keep);
    }

    #[test]
    fn a_message_within_a_check_is_on_time_and_one_a_whole_check_late_is_lost() {
        let mut sequence = Sequence::default();
        sequence.resubscribed(10);
        assert_eq!(sequence.checked(10, 11, 0, EVERY), Action::Keep);
        sequence.heard(message(11, false, &["e:FR"], false));
        assert_eq!(sequence.checked(11, 11, EVERY, EVERY), Action::Keep);
        // 12 is heard while the next check asks the counter, after it read what was applied.
        let before = sequence.applied();
        sequence.heard(message(12, false, &["e:FR"], false));
        assert_eq!(sequence.checked(before, 12, 2 * EVERY, EVERY), Action::Keep);
        // 13 shows in a check's counter and arrives only during the check after.
        assert_eq!(sequence.checked(12, 13, 3 * EVERY, EVERY), Action::Keep);
        let before = sequence.applied();
        sequence.heard(message(13, false, &["e:FR"], false));
        assert_eq!(
            sequence.checked(before, 13, 4 * EVERY, EVERY),
            Action::Flush
        );
    }

    #[test]
    fn a_counter_that_went_back_flushes_and_counts_from_there() {
        let mut sequence = Sequence::default();
        sequence.resubscribed(40);
        assert_eq!(sequence.checked(40, 2, 0, EVERY), Action::Flush);
        assert_eq!(sequence.applied(), 2);
        assert_eq!(
            sequence.heard(message(3, false, &["e:FR"], false)),
            Action::Drop(vec!["e:FR".into()])
        );
    }

    #[test]
    fn trust_lasts_three_checks_and_ends_when_a_check_fails() {
        let mut sequence = Sequence::default();
        assert_eq!(sequence.trusted_until_ms(), 0, "no check yet");
        sequence.checked(0, 0, 1_000, EVERY);
        assert_eq!(sequence.trusted_until_ms(), 1_000 + 3 * EVERY);
        sequence.check_failed();
        assert_eq!(sequence.trusted_until_ms(), 0);
        assert_eq!(Sequence::alone().trusted_until_ms(), i64::MAX);
    }
}
