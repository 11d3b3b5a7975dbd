//! Collapsed misses as the runtime carries them out: the table is [`Collapse`]'s, one per
//! isolate; a leader ends its fetch when dropped, a waiter polls until it has ended.
//!
//! Waiters poll on a timer of their own rather than being woken by the leader: the runtime
//! cancels a request that waits only on another request's work, as hung.

use std::{cell::RefCell, time::Duration};

use worker::Delay;

use super::now_ms;
use crate::core::claims::{Collapse, Fetch, Turn};

/// How often a waiter first looks whether the fetch it waits for has ended, and how far the
/// interval grows (a long wait costs few wake-ups).
const FIRST_POLL_MS: u64 = 2;
const LONGEST_POLL_MS: u64 = 32;

thread_local! {
    static FETCHING: RefCell<Collapse> = RefCell::new(Collapse::default());
}

/// A miss's part in the fetch of its key.
pub enum Role {
    /// Fetch and store; the fetch ends for everyone when this is dropped.
    Lead(Leader),
    /// Wait with [`Waiter::fetched`].
    Wait(Waiter),
}

pub struct Leader {
    key: String,
    fetch: Fetch,
}

pub struct Waiter {
    key: String,
    fetch: Fetch,
}

/// Leads the fetch of `key`, or waits for the one under way (see [`Collapse::join`]).
pub fn join(key: &str, timeout: Duration) -> Role {
    let turn = FETCHING.with(|fetching| {
        fetching
            .borrow_mut()
            .join(key, now_ms(), timeout.as_millis() as u64)
    });
    let key = key.to_owned();
    match turn {
        Turn::Lead(fetch) => Role::Lead(Leader { key, fetch }),
        Turn::Wait(fetch) => Role::Wait(Waiter { key, fetch }),
    }
}

impl Drop for Leader {
    /// Ends the fetch, stored or not.
    fn drop(&mut self) {
        FETCHING.with(|fetching| fetching.borrow_mut().end(&self.key, self.fetch));
    }
}

impl Waiter {
    /// Returns once the fetch has ended, or `timeout` after it started.
    pub async fn fetched(self, timeout: Duration) {
        let deadline = self.fetch.deadline_ms(timeout.as_millis() as u64);
        let mut poll = FIRST_POLL_MS;
        while now_ms() < deadline
            && FETCHING.with(|fetching| fetching.borrow().under_way(&self.key, self.fetch))
        {
            Delay::from(Duration::from_millis(poll)).await;
            poll = (poll * 2).min(LONGEST_POLL_MS);
        }
    }
}
