//! The origin's own tiers as the first target of every purge: what it makes stale leaves this
//! instance's L1, L2 and (through the bus) every other instance's L1, and a data write's
//! change event goes out to websocket clients.
//!
//! With Redis those tiers outlive any one process, so clearing them is a delivery of the
//! outbox like a CDN's (provider [`TIERS`]), recorded in the write's transaction. The
//! committing instance clears them at once and records the delivery; if Redis fails or the
//! instance dies first, the sweeper of any instance retries it every few hundred milliseconds
//! until Redis takes it. The CDN deliveries of a purge wait for it (see
//! [`super::deliveries::Due::Cdn`]), and the dispatcher waits until every live instance has
//! acknowledged the invalidation ([`Tiers::wait_until_applied`]): a CDN purged before the tiers
//! are clean would refill from them. Without Redis the same record is kept, so the one
//! instance's CDN deliveries also wait for its L1.

use std::{sync::Arc, time::Duration};

use forecastin_shared::dto::{EntityEvent, PurgeRequest};
use tokio::sync::Notify;

use super::{
    deliveries::{self, Claimed, Due, TIERS},
    providers::Outcome,
};
use crate::{
    background::Background,
    cache::{
        l1::L1,
        l2::L2,
        warm::{Claim, Warmer},
    },
    cluster::{bus::Bus, events::Events, registry::Registry},
    db::Db,
    ops::metrics,
};

/// How long the committing instance has to clear the tiers before a sweeper may.
pub const COMMITTER_GRACE: Duration = Duration::from_millis(400);
/// How long a sweeper's claim holds: longer than a clear may take ([`CLEAR_TIMEOUT`]), short
/// enough that a dead sweeper's claims come due again well within a second.
const LEASE: Duration = Duration::from_millis(1_000);
/// Longest a clear may take before it counts as failed.
const CLEAR_TIMEOUT: Duration = Duration::from_millis(800);
/// Retries while Redis is away come this often at most: the tiers must be clean soon after.
const RETRY_MAX_MS: u64 = 250;
/// How often an idle sweeper looks for deliveries that came due.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The tags `purges` name, and whether they reach past tags: L1 and L2 keys are not URLs, so
/// only a purge by tags alone can be targeted.
fn covered<'a>(purges: impl IntoIterator<Item = &'a PurgeRequest>) -> (Vec<String>, bool) {
    let mut tags = Vec::new();
    let mut all = false;
    for request in purges {
        all |= !(request.urls.is_empty() && request.prefixes.is_empty() && !request.everything);
        tags.extend(request.tags.iter().cloned());
    }
    tags.sort_unstable();
    tags.dedup();
    (tags, all)
}

#[derive(Clone)]
pub struct Tiers {
    pub db: Db,
    pub l1: Option<Arc<L1>>,
    /// With Redis, whether or not this instance reads L2 (`L2_TTL_SECS`): the others may.
    pub l2: Option<Arc<L2>>,
    /// Carries the invalidation to the other instances' L1.
    pub bus: Bus,
    /// The instances whose L1 a CDN purge waits for.
    pub registry: Arc<Registry>,
    /// Where a data write's change event goes out.
    pub events: Events,
    /// Renders the hot pages a purge removed again, before the CDN is purged.
    pub warmer: Arc<Warmer>,
}

impl Tiers {
    /// Waits until every live instance has applied the invalidations published so far (see
    /// `Bus::wait_until_applied`); the CDN refetches from them as soon as it is purged.
    pub async fn wait_until_applied(&self) {
        let waited = self.bus.wait_until_applied(&self.registry).await;
        ::metrics::histogram!(metrics::PURGE_TIERS_WAIT).record(waited.as_secs_f64());
    }

    /// Claims the hot pages a purge by tags removes for a new render (see
    /// [`crate::cache::warm`]): none for a purge that reaches past tags, which the dispatcher's
    /// render before the CDN purge covers.
    pub fn claim_hot(&self, request: &PurgeRequest) -> Vec<Claim> {
        let (tags, all) = covered([request]);
        if all {
            return Vec::new();
        }
        self.warmer.claim(self.warmer.covered(&tags, false))
    }

    /// Renders the `claimed` pages again, in the background (the dispatcher renders them once
    /// more before the CDN purge, from L1 as a rule, which covers a clear that failed).
    pub fn rewarm_in_background(&self, claimed: Vec<Claim>) {
        if !claimed.is_empty() {
            let warmer = self.warmer.clone();
            tokio::spawn(async move { warmer.rewarm(claimed).await });
        }
    }

    /// Records that the committing instance cleared the tiers for `purge_id`, committed at
    /// `committed_at_ms` (the purge latency runs from there), so that no sweeper does it again
    /// and the CDN deliveries may go.
    pub async fn cleared(&self, purge_id: &str, committed_at_ms: i64) {
        let delivery = Claimed {
            purge_id: purge_id.to_owned(),
            provider: TIERS.to_owned(),
            attempts: 0,
        };
        let settled =
            deliveries::settle(&self.db, &delivery, &Outcome::Delivered, committed_at_ms, 0).await;
        if let Err(err) = settled {
            // A sweeper clears the tiers again and records it: harmless.
            tracing::warn!(%err, purge = purge_id, "could not record the tiers cleared");
        }
    }

    /// Renders again the hot pages that `purges` removed from the tiers (before their CDN
    /// purge: the dispatcher calls it once the tiers are clear); returns those pages.
    pub async fn rewarm(&self, purges: &[&PurgeRequest]) -> Vec<String> {
        let (tags, all) = covered(purges.iter().copied());
        self.warmer.rewarm(self.warmer.covered(&tags, all)).await
    }

    /// Drops what `purges` (by id) cover from every tier and announces their events. Every
    /// step may be repeated; an event goes out once whatever the repeats.
    pub async fn clear<'a>(
        &self,
        purges: impl IntoIterator<Item = (&'a str, &'a PurgeRequest, Option<EntityEvent>)>,
        position: Option<u64>,
    ) -> Result<(), String> {
        let mut requests = Vec::new();
        let mut events = Vec::new();
        for (purge_id, request, event) in purges {
            requests.push(request);
            events.extend(event.map(|event| (purge_id, event)));
        }
        let (tags, all) = covered(requests);
        let cleared = self.clear_now(&tags, all, events, position);
        match tokio::time::timeout(CLEAR_TIMEOUT, cleared).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("Redis: {err}")),
            Err(_) => Err(format!("not cleared within {CLEAR_TIMEOUT:?}")),
        }
    }

    /// Clears this instance's L1 before and after L2: a read here between the two could
    /// refill it.
    async fn clear_now(
        &self,
        tags: &[String],
        all: bool,
        events: Vec<(&str, EntityEvent)>,
        position: Option<u64>,
    ) -> redis::RedisResult<()> {
        self.clear_l1(tags, all);
        // The sequence moves before L2 is cleared: no fill from before can land after.
        let seq = self.bus.advance(position).await?;
        if let Some(l2) = &self.l2 {
            l2.invalidate(tags, all).await?;
        }
        self.bus.publish(seq, tags, all, position).await?;
        self.clear_l1(tags, all);
        for (purge_id, event) in events {
            self.events.announce(purge_id, event).await?;
        }
        Ok(())
    }

    fn clear_l1(&self, tags: &[String], all: bool) {
        if let Some(l1) = &self.l1 {
            let dropped = if all {
                l1.invalidate_all()
            } else {
                l1.invalidate(tags)
            };
            ::metrics::counter!(metrics::L1_INVALIDATED).increment(dropped as u64);
        }
    }

    /// Retries the tiers deliveries that came due, until `background` stops, and wakes the CDN
    /// `dispatcher` when it cleared some.
    pub fn spawn_sweeper(self, dispatcher: Arc<Notify>, background: &Background) {
        background.spawn(async move {
            loop {
                match self.sweep().await {
                    Ok(Some(Outcome::Delivered)) => dispatcher.notify_one(),
                    Ok(_) => tokio::time::sleep(IDLE_POLL).await,
                    Err(err) => {
                        tracing::warn!(%err, "tiers sweep failed; retrying");
                        tokio::time::sleep(IDLE_POLL).await;
                    }
                }
            }
        });
    }

    /// Clears the tiers for every due delivery at once; returns how that went, if there was
    /// any.
    async fn sweep(&self) -> Result<Option<Outcome>, sqlx::Error> {
        let claimed = deliveries::claim(&self.db, Due::Tiers, LEASE).await?;
        if claimed.is_empty() {
            return Ok(None);
        }
        let recorded = deliveries::load(&self.db, &claimed).await?;
        // In commit order, so that clients get the events of one entity in order.
        let mut readable: Vec<_> = recorded
            .iter()
            .filter_map(|(id, s)| Some((s.created_at_ms, id, s.request.as_ref().ok()?, &s.event)))
            .collect();
        readable.sort_unstable_by_key(|&(created, id, ..)| (created, id));
        let readable = readable
            .into_iter()
            .map(|(_, id, request, event)| (id.as_str(), request, event.clone()));
        // The primary's position now is at or past every claimed write's.
        let position = self.db.note_write().await;
        let cleared = match self.clear(readable, position).await {
            Ok(()) => Outcome::Delivered,
            Err(error) => Outcome::Retry { after: None, error },
        };
        for delivery in &claimed {
            let (outcome, created) =
                deliveries::outcome_of(&recorded, delivery, || cleared.clone());
            if let Err(err) =
                deliveries::settle(&self.db, delivery, &outcome, created, RETRY_MAX_MS).await
            {
                tracing::warn!(%err, purge = %delivery.purge_id, "could not record the tiers outcome");
            }
        }
        Ok(Some(cleared))
    }
}
