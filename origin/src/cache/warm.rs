//! Predictive preloading (`ff.predictive_preload`, per instance): pages are rendered into the
//! tiers before anyone asks for them.
//!
//! - Once a purge has cleared the tiers, the dispatcher has the hot pages it covered
//!   ([`crate::cache::hot`]) rendered again into its L1 and L2, before it sends the CDN purge: the
//!   CDN's refills, and the other instances' misses, find them there instead of reading the
//!   database.
//! - A new instance renders the cluster's hot pages before it starts listening, so it is warm
//!   when `/readyz` first answers.
//!
//! Pages are rendered by sending a GET through the application's own router, so they are
//! exactly what a client would get; such requests run in a [`warming`] scope, are not counted
//! as traffic, and their database reads are counted apart.
//!
//! A data write's purge claims its hot pages before it clears the tiers ([`Warmer::claim`])
//! and renders them at once: until a claimed page is rendered again, a client's request for it
//! waits for that render, briefly ([`Warmer::wait_until_rendered`]), instead of reading the
//! database beside it. In a storm of writes the CDN is still refreshing for one purge when the
//! next clears the tiers, and its refreshes would otherwise all reach the database at once.
//! All renders share [`CONCURRENCY`], however many purges ask for them.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request, Router};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use super::hot::HotKeys;
use crate::{
    cluster::{link::RedisLink, registry::Registry},
    flags::{self, Flags},
    ops::metrics,
};

tokio::task_local! {
    /// Set while the warmer's own request runs (no client can set it).
    static WARMING: ();
}

/// Whether the current request is the warmer's.
pub fn warming() -> bool {
    WARMING.try_with(|_| ()).is_ok()
}

/// Pages rendered again after one purge at most, and the least score that makes a page worth
/// it: a request in the last three minutes or so. Behind the CDN the origin sees refills, not
/// hits, so it ranks the pages the CDN holds longest (the ones readers read most) low: all
/// that qualify are rendered (a move of a region's subtree covers some 300), and the edge
/// picks those it refreshes by its own reads.
const REWARM_PAGES: usize = 1_024;
const REWARM_MIN_SCORE: f64 = 0.125;
/// Longest a re-warm may delay the CDN purge.
const REWARM_BUDGET: Duration = Duration::from_millis(1_000);
/// Longest a request waits for the render of a claimed page before it reads for itself: a
/// storm's re-render of some 300 pages takes 60 to 200 ms here.
const CLAIM_WAIT: Duration = Duration::from_millis(250);
/// Pages a new instance loads before it listens, and how long it may take.
const START_PAGES: usize = 5_000;
const START_BUDGET: Duration = Duration::from_secs(4);
/// Renders at once, all re-warms and the warm start together.
const CONCURRENCY: usize = 8;

/// Builds the application to render pages with, while it lives: the warmer is part of the
/// application's state, so holding the application itself would keep that state alive forever.
type App = Box<dyn Fn() -> Option<Router> + Send + Sync>;

pub struct Warmer {
    app: OnceLock<App>,
    pub hot: Arc<HotKeys>,
    flags: Flags,
    claimed: Arc<Claims>,
    renders: Semaphore,
}

/// The pages claimed for a render, each with a channel that closes when its render ends
/// (nothing is sent on it).
type Claims = Mutex<HashMap<String, watch::Receiver<()>>>;

/// A page claimed for a render: requests for it wait until this is dropped, when its render
/// ends (or never starts).
pub struct Claim {
    uri: String,
    done: watch::Sender<()>,
    claims: Arc<Claims>,
}

impl AsRef<str> for Claim {
    fn as_ref(&self) -> &str {
        &self.uri
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claims = self.claims.lock();
        // A later claim of the page is that claim's to release.
        if claims
            .get(&self.uri)
            .is_some_and(|done| done.same_channel(&self.done.subscribe()))
        {
            claims.remove(&self.uri);
        }
    }
}

impl Warmer {
    pub fn new(hot: Arc<HotKeys>, flags: Flags) -> Self {
        Self {
            app: OnceLock::new(),
            hot,
            flags,
            claimed: Arc::default(),
            renders: Semaphore::new(CONCURRENCY),
        }
    }

    /// Gives the warmer the application to render pages with, once it is built: `app` builds
    /// its router for each batch of renders, or `None` once the application is gone.
    pub fn attach(&self, app: impl Fn() -> Option<Router> + Send + Sync + 'static) {
        let _ = self.app.set(Box::new(app));
    }

    fn enabled(&self) -> bool {
        self.flags.on_this_instance(flags::PREDICTIVE_PRELOAD)
    }

    /// The hot pages a purge of `tags` (or of everything) removes, hottest first: those worth
    /// rendering again (none while `ff.predictive_preload` is off here).
    pub fn covered(&self, tags: &[String], all: bool) -> Vec<String> {
        if !self.enabled() {
            return Vec::new();
        }
        self.hot
            .covered_by(tags, all, REWARM_PAGES, REWARM_MIN_SCORE)
    }

    /// Claims `pages` for a render with [`Warmer::rewarm`]. Call before the purge clears the
    /// tiers: requests for them wait for their new render from then on.
    pub fn claim(&self, pages: Vec<String>) -> Vec<Claim> {
        let mut claimed = self.claimed.lock();
        pages
            .into_iter()
            .map(|uri| {
                let (done, waiting) = watch::channel(());
                claimed.insert(uri.clone(), waiting);
                Claim {
                    uri,
                    done,
                    claims: self.claimed.clone(),
                }
            })
            .collect()
    }

    /// Renders `pages` (URIs, or claims of them) again, hottest first; returns those it
    /// rendered. Call once the tiers are clear.
    pub async fn rewarm<P: AsRef<str> + Send>(&self, pages: Vec<P>) -> Vec<String> {
        let rendered = self.render(pages, REWARM_BUDGET).await;
        ::metrics::counter!(metrics::REWARMED).increment(rendered.len() as u64);
        rendered
    }

    /// Waits while `uri` is claimed for a render (see [`Warmer::claim`]), at most
    /// [`CLAIM_WAIT`]. Never call it from the warmer's own requests: they would wait for
    /// themselves.
    pub async fn wait_until_rendered(&self, uri: &str) {
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let Some(mut done) = self.claimed.lock().get(uri).cloned() else {
                return;
            };
            // Resolves (with an error) when the claim is dropped; a later claim of the page
            // is waited for in turn, within the same deadline.
            if tokio::time::timeout_at(deadline, done.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Loads the cluster's hot pages into a new instance's tiers; returns how many and how long
    /// it took.
    pub async fn warm_start(&self, link: &RedisLink, registry: &Registry) -> (usize, Duration) {
        let started = Instant::now();
        if !self.enabled() {
            return (0, started.elapsed());
        }
        if let Err(err) = self.hot.read_cluster(link, registry).await {
            tracing::warn!(%err, "no hot pages to warm up with");
            return (0, started.elapsed());
        }
        let pages = self
            .hot
            .ranked(START_PAGES)
            .into_iter()
            .map(|page| page.uri)
            .collect();
        let rendered = self.render(pages, START_BUDGET).await;
        (rendered.len(), started.elapsed())
    }

    /// Renders `pages` through the application's router (see [`render`]).
    async fn render<P: AsRef<str> + Send>(&self, pages: Vec<P>, budget: Duration) -> Vec<String> {
        match self.app.get().and_then(|app| app()) {
            Some(router) => render(&router, &self.renders, pages, budget).await,
            None => Vec::new(),
        }
    }
}

/// Renders `pages` (URIs, or claims of them, each dropped when its render ends) through
/// `router`, as many at a time as `permits` allow, until `budget` runs out; returns those that
/// answered with success, in the order given (the hottest first, for a CDN that refreshes only
/// so many).
async fn render<P: AsRef<str> + Send>(
    router: &Router,
    permits: &Semaphore,
    pages: Vec<P>,
    budget: Duration,
) -> Vec<String> {
    let renders = futures_util::stream::iter(pages.into_iter().enumerate())
        .map(|(rank, page)| {
            let router = router.clone();
            async move {
                let _permit = permits.acquire().await.ok()?;
                let uri = page.as_ref().to_owned();
                let request = Request::get(&uri).body(Body::empty()).ok()?;
                let response = WARMING.scope((), router.oneshot(request)).await.ok()?;
                response.status().is_success().then_some((rank, uri))
            }
        })
        .buffer_unordered(CONCURRENCY);
    let mut rendered = Vec::new();
    let deadline = tokio::time::sleep(budget);
    tokio::pin!(renders, deadline);
    loop {
        tokio::select! {
            next = renders.next() => match next {
                Some(page) => rendered.extend(page),
                None => break,
            },
            () = &mut deadline => {
                tracing::warn!(rendered = rendered.len(), "warming stopped at its time budget");
                break;
            }
        }
    }
    rendered.sort_unstable_by_key(|(rank, _)| *rank);
    rendered.into_iter().map(|(_, uri)| uri).collect()
}

#[cfg(test)]
mod tests {
    use axum::{http::StatusCode, routing::get};

    use super::*;

    #[tokio::test]
    async fn rendered_pages_come_back_in_the_order_asked_not_the_order_they_finished() {
        let router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "slow"
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .route("/gone", get(|| async { StatusCode::NOT_FOUND }));
        let asked = ["/slow", "/gone", "/fast"].map(String::from).to_vec();
        let permits = Semaphore::new(CONCURRENCY);
        let rendered = render(&router, &permits, asked, Duration::from_secs(10)).await;
        assert_eq!(rendered, ["/slow", "/fast"]);
        // Out of time: what finished, still in the order asked.
        let asked = ["/slow", "/fast"].map(String::from).to_vec();
        let rendered = render(&router, &permits, asked, Duration::from_secs(1)).await;
        assert_eq!(rendered, ["/fast"]);
    }
}
