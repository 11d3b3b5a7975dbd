//! Collapsed misses: while one request of this isolate fetches a key from the origin, other
//! misses for the same key wait for it and then read what it stored, instead of sending their
//! own requests. A waiter whose leader stored nothing (an error, an uncacheable answer) fetches
//! for itself.
//!
//! Waiters poll on a timer of their own rather than being woken by the leader: the runtime
//! cancels a request that waits only on another request's work, as hung.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use worker::Delay;

use super::now_ms;

/// How often a waiter looks whether the fetch it waits for has ended.
const POLL: Duration = Duration::from_millis(2);

thread_local! {
    /// The keys being fetched, each with the number of its fetch.
    static FETCHING: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    static NEXT_FETCH: RefCell<u64> = const { RefCell::new(0) };
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
    fetch: u64,
}

pub struct Waiter {
    key: String,
    fetch: u64,
}

/// Leads the fetch of `key`, or waits for the one under way.
pub fn join(key: &str) -> Turn {
    FETCHING.with(|fetching| {
        let mut fetching = fetching.borrow_mut();
        if let Some(&fetch) = fetching.get(key) {
            return Turn::Wait(Waiter {
                key: key.to_owned(),
                fetch,
            });
        }
        let fetch = NEXT_FETCH.with(|next| {
            let mut next = next.borrow_mut();
            *next += 1;
            *next
        });
        fetching.insert(key.to_owned(), fetch);
        Turn::Lead(Leader {
            key: key.to_owned(),
            fetch,
        })
    })
}

impl Drop for Leader {
    /// Ends the fetch, stored or not, even if the request was cancelled.
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
    /// Returns once the fetch has ended, or after `timeout` (the leader's own bound).
    pub async fn fetched(self, timeout: Duration) {
        let deadline = now_ms() + timeout.as_millis() as u64;
        while now_ms() < deadline
            && FETCHING.with(|fetching| fetching.borrow().get(&self.key) == Some(&self.fetch))
        {
            Delay::from(POLL).await;
        }
    }
}
