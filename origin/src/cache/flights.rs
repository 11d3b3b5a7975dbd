//! Request collapsing: concurrent L1 misses for one key share one L2 and database read.
//!
//! The first miss leads: it reads and renders, then hands the response to everyone who joined
//! meanwhile. A miss joins only a flight that started in the same L1 epoch: a flight that began
//! before an invalidation may carry what the invalidation removed, and a request that arrives
//! after the invalidation must not get it. If the leader fails or is dropped (its client went
//! away), its followers read for themselves.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::l1::{Epoch, Rendered};

/// What a leader hands its followers: the response, or nothing when it had none to share.
type Outcome = Option<Arc<Rendered>>;

#[derive(Default)]
pub struct Flights {
    inner: Mutex<HashMap<String, Flight>>,
}

struct Flight {
    epoch: Epoch,
    outcome: watch::Receiver<Outcome>,
}

/// A miss's part in the flight for its key.
pub enum Turn<'a> {
    /// Read and render, then [`Leader::land`].
    Lead(Leader<'a>),
    /// Wait for the leader with [`follow`].
    Follow(watch::Receiver<Outcome>),
}

pub struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    outcome: watch::Sender<Outcome>,
}

impl Flights {
    /// Joins the flight for `key` started in `epoch`, or starts one.
    pub fn join(&self, key: &str, epoch: Epoch) -> Turn<'_> {
        let mut flights = self.inner.lock();
        if let Some(flight) = flights.get(key).filter(|flight| flight.epoch == epoch) {
            return Turn::Follow(flight.outcome.clone());
        }
        let (sender, receiver) = watch::channel(None);
        // A flight of an older epoch is left to finish for its own followers.
        flights.insert(
            key.to_owned(),
            Flight {
                epoch,
                outcome: receiver,
            },
        );
        Turn::Lead(Leader {
            flights: self,
            key: key.to_owned(),
            outcome: sender,
        })
    }
}

impl Leader<'_> {
    /// Hands `rendered` to the followers.
    pub fn land(self, rendered: Arc<Rendered>) {
        self.outcome.send_replace(Some(rendered));
    }
}

impl Drop for Leader<'_> {
    /// Ends the flight, landed or not: a later miss starts a new one.
    fn drop(&mut self) {
        let mut flights = self.flights.inner.lock();
        if flights
            .get(&self.key)
            .is_some_and(|flight| flight.outcome.same_channel(&self.outcome.subscribe()))
        {
            flights.remove(&self.key);
        }
    }
}

/// The leader's response; `None` when it ended without one (an error, or its client left).
pub async fn follow(mut outcome: watch::Receiver<Outcome>) -> Outcome {
    // A closed channel after a send still holds the value; before one, it means no landing.
    let _ = outcome.wait_for(Option::is_some).await;
    let landed = outcome.borrow().clone();
    landed
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use axum::http::{HeaderValue, StatusCode};
    use bytes::Bytes;

    use super::*;
    use crate::cache::l1::L1;

    fn rendered(body: &'static str) -> Arc<Rendered> {
        Arc::new(Rendered {
            status: StatusCode::OK,
            body: Bytes::from_static(body.as_bytes()),
            etag: HeaderValue::from_static("\"x\""),
            tags: vec![],
            cache_tag: HeaderValue::from_static(""),
            surrogate_key: HeaderValue::from_static(""),
            preloads: None,
        })
    }

    #[tokio::test]
    async fn followers_get_the_leaders_response_and_the_flight_ends() {
        let l1 = L1::new(NonZeroUsize::new(10).unwrap(), 1 << 20);
        let flights = Flights::default();
        let Turn::Lead(leader) = flights.join("k", l1.epoch()) else {
            panic!("the first miss leads")
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match flights.join("k", l1.epoch()) {
                Turn::Follow(outcome) => tokio::spawn(follow(outcome)),
                Turn::Lead(_) => panic!("a concurrent miss follows"),
            })
            .collect();
        leader.land(rendered("one"));
        for follower in followers {
            assert_eq!(follower.await.unwrap().unwrap().body, "one");
        }
        assert!(flights.inner.lock().is_empty());
    }

    #[tokio::test]
    async fn a_miss_after_an_invalidation_does_not_join_an_older_flight() {
        let l1 = L1::new(NonZeroUsize::new(10).unwrap(), 1 << 20);
        let flights = Flights::default();
        let Turn::Lead(old) = flights.join("k", l1.epoch()) else {
            panic!("the first miss leads")
        };
        let Turn::Follow(old_follower) = flights.join("k", l1.epoch()) else {
            panic!("a concurrent miss follows")
        };
        l1.invalidate(&["t".to_owned()]);
        let Turn::Lead(new) = flights.join("k", l1.epoch()) else {
            panic!("a miss in a new epoch leads its own flight")
        };
        old.land(rendered("before"));
        assert_eq!(follow(old_follower).await.unwrap().body, "before");
        assert_eq!(
            flights.inner.lock().len(),
            1,
            "the newer flight is still in the air"
        );
        drop(new);
        assert!(flights.inner.lock().is_empty());
    }

    #[tokio::test]
    async fn followers_of_a_leader_that_gave_up_read_for_themselves() {
        let l1 = L1::new(NonZeroUsize::new(10).unwrap(), 1 << 20);
        let flights = Flights::default();
        let leader = flights.join("k", l1.epoch());
        let Turn::Follow(outcome) = flights.join("k", l1.epoch()) else {
            panic!("a concurrent miss follows")
        };
        drop(leader);
        assert!(follow(outcome).await.is_none());
        assert!(matches!(flights.join("k", l1.epoch()), Turn::Lead(_)));
    }
}
