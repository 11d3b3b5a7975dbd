//! Collapsed misses: while one request of this isolate fetches a key from the origin, other
//! misses for the same key wait for it and then read what it stored, instead of sending their
//! own requests. A waiter whose leader stored nothing (an error, an uncacheable answer) fetches
//! for itself.
//!
//! Waiters poll on a timer of their own rather than being woken by the leader: the runtime
//! cancels a request that waits only on another request's work, as hung. A cancelled request's
//! future may never be dropped, so a fetch older than the origin timeout counts as abandoned:
//! the next miss takes it over.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use worker::Delay;

use super::now_ms;

/// How often a waiter first looks whether the fetch it waits for has ended, and how far the
/// interval grows (a long wait costs few wake-ups).
const FIRST_POLL_MS: u64 = 2;
const LONGEST_POLL_MS: u64 = 32;

/// A fetch under way: its number and when it started.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fetch {
    number: u64,
    started_ms: u64,
}

thread_local! {
    static FETCHING: RefCell<HashMap<String, Fetch>> = RefCell::new(HashMap::new());
    static FETCHES: RefCell<u64> = const { RefCell::new(0) };
}

/// A miss's part in the fetch of its key.
pub enum Turn {
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

/// Leads the fetch of `key`, or waits for the one under way if it started less than `timeout`
/// ago.
pub fn join(key: &str, timeout: Duration) -> Turn {
    let now = now_ms();
    FETCHING.with(|fetching| {
        let mut fetching = fetching.borrow_mut();
        if let Some(&fetch) = fetching.get(key) {
            if now < fetch.started_ms + timeout.as_millis() as u64 {
                return Turn::Wait(Waiter {
                    key: key.to_owned(),
                    fetch,
                });
            }
        }
        let number = FETCHES.with(|count| {
            let mut count = count.borrow_mut();
            *count += 1;
            *count
        });
        let fetch = Fetch {
            number,
            started_ms: now,
        };
        fetching.insert(key.to_owned(), fetch);
        Turn::Lead(Leader {
            key: key.to_owned(),
            fetch,
        })
    })
}

impl Drop for Leader {
    /// Ends the fetch, stored or not.
    fn drop(&mut self) {
        FETCHING.with(|fetching| {
            let mut fetching = fetching.borrow_mut();
            if fetching.get(&self.key) == Some(&self.fetch) {
                fetching.remove(&self.key);
            }
        });
    }
}

impl Waiter {
    /// Returns once the fetch has ended, or `timeout` after it started.
    pub async fn fetched(self, timeout: Duration) {
        let deadline = self.fetch.started_ms + timeout.as_millis() as u64;
        let mut poll = FIRST_POLL_MS;
        while now_ms() < deadline
            && FETCHING.with(|fetching| fetching.borrow().get(&self.key) == Some(&self.fetch))
        {
            Delay::from(Duration::from_millis(poll)).await;
            poll = (poll * 2).min(LONGEST_POLL_MS);
        }
    }
}
