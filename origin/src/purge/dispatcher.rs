//! The background task that drains the outbox's CDN deliveries.
//!
//! Each round claims due deliveries (see [`deliveries`]: a purge's CDN deliveries come due only
//! once the origin's tiers are clear of it), merges them per provider into batches, sends each
//! batch when the provider's token bucket allows, and records the outcome of every delivery.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use forecastin_shared::{dto::PurgeRequest, purges::refreshable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Client;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    coalesce::{batches, Batch},
    deliveries::{self, Claimed, Due, Recorded},
    providers::{Outcome, Provider},
    tiers::Tiers,
};
use crate::{background::Background, db::Db, ops::metrics};

/// How long a claim holds. A round renews it every third of it for as long as it works, so a
/// dead instance's claims come due again this soon, and a long round keeps its own.
const LEASE: Duration = Duration::from_secs(15);
/// How often an idle dispatcher looks for deliveries that came due (retries, other instances).
const IDLE_POLL: Duration = Duration::from_millis(250);

pub struct Dispatcher {
    db: Db,
    providers: Vec<(Provider, DefaultDirectRateLimiter)>,
    client: Client,
    /// Wakes a dispatcher waiting for work: a purge committed or its tiers cleared.
    wake: Arc<Notify>,
    /// The origin's own tiers, which every CDN delivery waits for.
    tiers: Option<Tiers>,
    retry_max_ms: u64,
}

/// The token bucket of a provider: `per_minute` requests per minute, bursts of `burst`.
fn bucket(per_minute: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst))
}

impl Dispatcher {
    pub fn new(
        db: Db,
        providers: Vec<Provider>,
        wake: Arc<Notify>,
        tiers: Option<Tiers>,
        timeout: Duration,
        retry_max_ms: u64,
    ) -> Self {
        Self {
            db,
            providers: providers
                .into_iter()
                .map(|provider| {
                    let limiter = bucket(provider.rate.0, provider.rate.1);
                    (provider, limiter)
                })
                .collect(),
            client: crate::http_client()
                .timeout(timeout)
                .build()
                .expect("an HTTP client with a timeout builds"),
            wake,
            tiers,
            retry_max_ms,
        }
    }

    /// Runs rounds until `stop` is cancelled, finishing the round under way: a round
    /// left half done would hold its deliveries for a whole lease.
    pub async fn run(self, stop: CancellationToken) {
        let wake = self.wake.clone();
        while !stop.is_cancelled() {
            match self.round().await {
                Ok(0) => {
                    tokio::select! {
                        _ = tokio::time::timeout(IDLE_POLL, wake.notified()) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "purge dispatcher round failed; retrying");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
            deliveries::report_depth(&self.db).await;
        }
    }

    /// One round: claim, deliver, record. Returns how many deliveries it settled.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let names: Vec<&'static str> = self.providers.iter().map(|(p, _)| p.name()).collect();
        let claimed = deliveries::claim(&self.db, Due::Cdn(&names), LEASE).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let recorded = deliveries::load(&self.db, &claimed).await?;
        // The CDN refetches as soon as it is purged: the replicas must have the write by then,
        // and every instance must have dropped what it covers.
        self.db.wait_until_replicas_replayed().await;
        if let Some(tiers) = &self.tiers {
            tiers.wait_until_applied().await;
        }
        let requests: Vec<&PurgeRequest> = recorded
            .values()
            .filter_map(|purge| purge.request.as_ref().ok())
            .collect();
        let rewarmed = match &self.tiers {
            Some(tiers) => tiers.rewarm(&requests).await,
            None => Vec::new(),
        };
        let mut by_provider: BTreeMap<&str, Vec<&Claimed>> = BTreeMap::new();
        for delivery in &claimed {
            by_provider
                .entry(delivery.provider.as_str())
                .or_default()
                .push(delivery);
        }
        let work = self.providers.iter().filter_map(|(provider, limiter)| {
            let deliveries = by_provider.remove(provider.name())?;
            Some(self.deliver(provider, limiter, deliveries, &recorded, &rewarmed))
        });
        let renewing = async {
            let all: Vec<&Claimed> = claimed.iter().collect();
            loop {
                tokio::time::sleep(LEASE / 3).await;
                if let Err(err) = deliveries::renew(&self.db, &all, LEASE).await {
                    tracing::warn!(%err, "could not renew the claim on purge deliveries");
                }
            }
        };
        tokio::select! {
            _ = futures_util::future::join_all(work) => {}
            () = renewing => {}
        }
        Ok(claimed.len())
    }

    /// Sends a provider's claimed deliveries and records each one's outcome. Soft batches name
    /// the `rewarmed` pages, for a CDN that refreshes what it is told to.
    async fn deliver(
        &self,
        provider: &Provider,
        limiter: &DefaultDirectRateLimiter,
        claimed: Vec<&Claimed>,
        recorded: &HashMap<String, Recorded>,
        rewarmed: &[String],
    ) {
        let requests: Vec<(String, PurgeRequest)> = claimed
            .iter()
            .filter_map(|d| match recorded.get(&d.purge_id) {
                Some(Recorded {
                    request: Ok(request),
                    ..
                }) => Some((d.purge_id.clone(), request.clone())),
                _ => None,
            })
            .collect();
        // The worst outcome of the batches that carry each purge.
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        let mut queue: VecDeque<Batch> = batches(&requests, provider.batch_limit).into();
        for batch in queue.iter_mut().filter(|batch| batch.soft) {
            batch.refresh = refreshable(rewarmed);
        }
        while let Some(batch) = queue.pop_front() {
            limiter.until_ready().await;
            let outcome = provider.send(&self.client, &batch).await;
            ::metrics::counter!(metrics::PURGE_REQUESTS, "provider" => provider.name(), "outcome" => outcome.label()).increment(1);
            if let (Outcome::Failed(_), Some((left, right))) = (&outcome, batch.halves()) {
                // One item the provider refuses must not fail the purges merged with it.
                queue.push_front(right);
                queue.push_front(left);
                continue;
            }
            for purge_id in batch.purges() {
                let worst = worse(outcomes.remove(&purge_id), &outcome);
                outcomes.insert(purge_id, worst);
            }
        }
        for delivery in claimed {
            // Delivered only when every batch carrying it was (or it named nothing to send).
            let (outcome, created) = deliveries::outcome_of(recorded, delivery, || {
                outcomes
                    .remove(&delivery.purge_id)
                    .unwrap_or(Outcome::Delivered)
            });
            if let Err(err) =
                deliveries::settle(&self.db, delivery, &outcome, created, self.retry_max_ms).await
            {
                // The lease runs out and the delivery is tried again: nothing is lost.
                tracing::warn!(%err, purge = %delivery.purge_id, "could not record a purge outcome");
            }
        }
    }
}

/// A delivery fails if any of its batches failed, else retries if any must be retried.
fn worse(previous: Option<Outcome>, new: &Outcome) -> Outcome {
    match (previous, new) {
        (Some(failed @ Outcome::Failed(_)), _) => failed,
        (_, Outcome::Failed(error)) => Outcome::Failed(error.clone()),
        (Some(retry @ Outcome::Retry { .. }), _) => retry,
        (_, new) => new.clone(),
    }
}

/// Starts the dispatcher for the configured providers, if there are any, until `departing` is
/// cancelled; `background` waits for the round under way when it stops.
pub fn spawn(dispatcher: Dispatcher, background: &Background, departing: CancellationToken) {
    if dispatcher.providers.is_empty() {
        return;
    }
    background.track(dispatcher.run(departing));
}
