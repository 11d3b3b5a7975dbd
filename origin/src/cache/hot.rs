//! Hot-key tracking: which pages the cluster serves most, as a decaying score per request
//! (one point per request, halved every [`HALF_LIFE_MS`]), with the cache tags each page
//! carries. What it ranks decides which pages are rendered again right after a purge and which
//! a new instance loads before it reports ready (see [`crate::cache::warm`]).
//!
//! Each instance scores what it serves; every [`SHARE_EVERY`] it writes its top pages to Redis
//! (a key per instance, expiring when the instance stops) and reads the others'. Without Redis
//! the ranking is the instance's own.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use axum::http::HeaderValue;
use parking_lot::{Mutex, RwLock};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{
    background::Background,
    clock::now_ms,
    cluster::{link::RedisLink, registry::Registry},
};

/// A request counts half as much after this long.
const HALF_LIFE_MS: f64 = 60_000.0;
/// Pages scored at most (a few MB); past it, the cooler half is forgotten.
const MAX_TRACKED: usize = 30_000;
/// Pages each instance shares, and how often: at most [`MAX_URI_BYTES`] and [`MAX_TAGS`] tags
/// each, about a megabyte of JSON at most (a few hundred KB as the API's pages go).
const SHARED: usize = 5_000;
const SHARE_EVERY: Duration = Duration::from_secs(5);
/// How long a shared ranking outlives its instance's last update.
const SHARED_TTL_MS: u64 = 15_000;
/// Longest page scored: the API's own pages are far shorter, and a client must not be able to
/// make the ranking (kept in memory and shared) large.
pub const MAX_URI_BYTES: usize = 256;
/// Tags kept per page, the most general first (as the origin lists them): enough to match the
/// purges of the page itself and of its subtree.
const MAX_TAGS: usize = 16;
/// Pages a purge renders again of each family that readers can make up at will (search
/// results, and any page with a parameter: a cursor, a page size, a depth): a thousand made-up
/// searches must not ride every purge of a search tag. The others, without parameters, are one
/// page per real entity and need no cap.
pub const MAX_MADE_UP: usize = 64;

/// A page, its score now, and the tags that purge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotPage {
    /// Path and query, as requested.
    pub uri: String,
    pub score: f64,
    pub tags: Vec<String>,
}

struct Tracked {
    score: f64,
    at_ms: i64,
    /// The page's `Cache-Tag` as last served: a move changes a page's tags.
    tags: HeaderValue,
}

impl Tracked {
    fn score_at(&self, now_ms: i64) -> f64 {
        decayed(self.score, now_ms - self.at_ms)
    }

    fn page(&self, uri: &str, now_ms: i64) -> HotPage {
        let tags = self.tags.to_str().unwrap_or_default().split(',');
        HotPage {
            uri: uri.to_owned(),
            score: self.score_at(now_ms),
            tags: tags
                .filter(|tag| !tag.is_empty())
                .take(MAX_TAGS)
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn decayed(score: f64, elapsed_ms: i64) -> f64 {
    score * (-(elapsed_ms.max(0) as f64) / HALF_LIFE_MS).exp2()
}

#[derive(Default)]
pub struct HotKeys {
    local: Mutex<HashMap<String, Tracked>>,
    /// The other instances' shared rankings, merged, as last read.
    cluster: RwLock<Vec<HotPage>>,
}

impl HotKeys {
    /// Counts one request for `uri` (at most [`MAX_URI_BYTES`]), whose response carries the
    /// `Cache-Tag` value `tags`.
    pub fn record(&self, uri: &str, tags: &HeaderValue) {
        if uri.len() > MAX_URI_BYTES {
            return;
        }
        let now = now_ms();
        let mut local = self.local.lock();
        if let Some(tracked) = local.get_mut(uri) {
            tracked.score = tracked.score_at(now) + 1.0;
            tracked.at_ms = now;
            if tracked.tags != tags {
                tracked.tags = tags.clone();
            }
            return;
        }
        if local.len() >= MAX_TRACKED {
            forget_cooler_half(&mut local, now);
        }
        local.insert(
            uri.to_owned(),
            Tracked {
                score: 1.0,
                at_ms: now,
                tags: tags.clone(),
            },
        );
    }

    /// This instance's `n` hottest pages.
    fn local_top(&self, n: usize) -> Vec<HotPage> {
        let now = now_ms();
        let local = self.local.lock();
        let mut scored: Vec<(f64, &String, &Tracked)> = local
            .iter()
            .map(|(uri, tracked)| (tracked.score_at(now), uri, tracked))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(n)
            .map(|(_, uri, tracked)| tracked.page(uri, now))
            .collect()
    }

    /// The cluster's `n` hottest pages: this instance's scores plus the others' last shared.
    pub fn ranked(&self, n: usize) -> Vec<HotPage> {
        let cluster = self.cluster.read().clone();
        merged(self.local_top(SHARED).into_iter().chain(cluster), n)
    }

    /// The hottest pages (at most `n`, each scored at least `min_score`) that a purge of `tags`
    /// (or of everything) removes, among every page this instance tracks and the others share.
    pub fn covered_by(&self, tags: &[String], all: bool, n: usize, min_score: f64) -> Vec<String> {
        let purged: HashSet<&str> = tags.iter().map(String::as_str).collect();
        let covers = |mut page_tags: std::str::Split<'_, char>| {
            all || page_tags.any(|tag| purged.contains(tag))
        };
        let now = now_ms();
        let local: Vec<HotPage> = self
            .local
            .lock()
            .iter()
            .filter(|(_, tracked)| covers(tracked.tags.to_str().unwrap_or_default().split(',')))
            .map(|(uri, tracked)| tracked.page(uri, now))
            .collect();
        let cluster: Vec<HotPage> = self
            .cluster
            .read()
            .iter()
            .filter(|page| all || page.tags.iter().any(|tag| purged.contains(tag.as_str())))
            .cloned()
            .collect();
        let mut made_up: HashMap<&'static str, usize> = HashMap::new();
        merged(local.into_iter().chain(cluster), usize::MAX)
            .into_iter()
            .filter(|page| page.score >= min_score)
            .filter(|page| match made_up_family(&page.uri) {
                Some(family) => {
                    let taken = made_up.entry(family).or_default();
                    *taken += 1;
                    *taken <= MAX_MADE_UP
                }
                None => true,
            })
            .take(n)
            .map(|page| page.uri)
            .collect()
    }

    /// Shares this instance's ranking and reads the others', every [`SHARE_EVERY`], until
    /// `background` stops.
    pub fn spawn_sharing(
        self: &Arc<Self>,
        link: RedisLink,
        registry: Arc<Registry>,
        background: &Background,
    ) {
        let hot = self.clone();
        background.spawn(async move {
            let mut ticks = tokio::time::interval(SHARE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(err) = hot.share(&link, &registry).await {
                    tracing::debug!(%err, "hot pages not shared this time");
                }
            }
        });
    }

    /// Reads the other instances' rankings once (a new instance, before it warms up).
    pub async fn read_cluster(
        &self,
        link: &RedisLink,
        registry: &Registry,
    ) -> redis::RedisResult<()> {
        let others: Vec<String> = registry
            .live()
            .await
            .into_iter()
            .filter(|instance| instance.id != registry.instance_id())
            .map(|instance| link.key(&format!("hot:{}", instance.id)))
            .collect();
        if others.is_empty() {
            self.cluster.write().clear();
            return Ok(());
        }
        let mut connection = link.connection.clone();
        let shared: Vec<Option<String>> = connection.mget(&others).await?;
        let pages = shared
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str::<Vec<HotPage>>(&json).ok())
            .flatten()
            .filter(|page| {
                page.score.is_finite()
                    && page.uri.len() <= MAX_URI_BYTES
                    && page.tags.len() <= MAX_TAGS
            })
            .collect();
        *self.cluster.write() = pages;
        Ok(())
    }

    async fn share(&self, link: &RedisLink, registry: &Registry) -> redis::RedisResult<()> {
        let mine = serde_json::to_string(&self.local_top(SHARED)).expect("pages serialize");
        let mut connection = link.connection.clone();
        let key = link.key(&format!("hot:{}", registry.instance_id()));
        let _: () = connection.pset_ex(key, mine, SHARED_TTL_MS).await?;
        self.read_cluster(link, registry).await
    }
}

/// The route of a page readers can make up at will: a search, or any page with a parameter
/// (canonical pages carry only the parameters that differ from their defaults).
fn made_up_family(uri: &str) -> Option<&'static str> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let route = forecastin_shared::routes::public_route(path)?;
    (route.pattern == "/api/v1/search" || !query.is_empty()).then_some(route.pattern)
}

/// The `n` highest-scored pages, hottest first, with the scores of one page's copies (from
/// several instances) added up.
fn merged(pages: impl Iterator<Item = HotPage>, n: usize) -> Vec<HotPage> {
    let mut by_uri: HashMap<String, HotPage> = HashMap::new();
    for page in pages {
        match by_uri.get_mut(&page.uri) {
            Some(known) => known.score += page.score,
            None => {
                by_uri.insert(page.uri.clone(), page);
            }
        }
    }
    let mut pages: Vec<HotPage> = by_uri.into_values().collect();
    pages.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.uri.cmp(&b.uri)));
    pages.truncate(n);
    pages
}

fn forget_cooler_half(local: &mut HashMap<String, Tracked>, now: i64) {
    let mut scores: Vec<f64> = local
        .values()
        .map(|tracked| tracked.score_at(now))
        .collect();
    let middle = scores.len() / 2;
    let (_, median, _) = scores.select_nth_unstable_by(middle, f64::total_cmp);
    let median = *median;
    local.retain(|_, tracked| tracked.score_at(now) > median);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> HeaderValue {
        HeaderValue::from_str(&list.join(",")).unwrap()
    }

    #[test]
    fn the_most_requested_pages_rank_first() {
        let hot = HotKeys::default();
        for _ in 0..5 {
            hot.record("/api/v1/entities/FR", &tags(&["e:FR"]));
        }
        hot.record("/api/v1/entities/DE", &tags(&["e:DE"]));
        for _ in 0..3 {
            hot.record("/api/v1/entities/FR/children", &tags(&["c:FR"]));
        }
        let ranked: Vec<String> = hot.ranked(2).into_iter().map(|p| p.uri).collect();
        assert_eq!(
            ranked,
            ["/api/v1/entities/FR", "/api/v1/entities/FR/children"]
        );
        assert!((hot.ranked(1)[0].score - 5.0).abs() < 0.01);
    }

    #[test]
    fn a_purge_covers_the_hot_pages_carrying_its_tags() {
        let hot = HotKeys::default();
        for _ in 0..3 {
            hot.record("/fr", &tags(&["e:FR", "s:world"]));
            hot.record("/de", &tags(&["e:DE", "s:world"]));
        }
        hot.record("/it", &tags(&["e:IT"]));
        assert_eq!(hot.covered_by(&["e:FR".into()], false, 10, 1.0), ["/fr"]);
        assert_eq!(
            hot.covered_by(&["s:world".into()], false, 10, 1.0),
            ["/de", "/fr"]
        );
        assert_eq!(hot.covered_by(&[], true, 10, 2.0), ["/de", "/fr"]);
        assert_eq!(hot.covered_by(&[], true, 1, 0.0).len(), 1);
    }

    #[test]
    fn made_up_pages_ride_a_purge_only_up_to_their_cap() {
        let hot = HotKeys::default();
        for n in 0..MAX_MADE_UP * 3 {
            hot.record(&format!("/api/v1/search?q=junk{n}"), &tags(&["search"]));
            hot.record(
                &format!("/api/v1/entities/FR/children?cursor=AA{n}"),
                &tags(&["search"]),
            );
            hot.record(&format!("/api/v1/entities/E{n}"), &tags(&["search"]));
            hot.record(
                &format!("/api/v1/entities/FR/descendants?limit={}", n + 1),
                &tags(&["search"]),
            );
        }
        let covered = hot.covered_by(&["search".into()], false, usize::MAX, 0.0);
        let count = |prefix: &str| covered.iter().filter(|uri| uri.starts_with(prefix)).count();
        assert_eq!(count("/api/v1/search"), MAX_MADE_UP);
        assert_eq!(count("/api/v1/entities/FR/children"), MAX_MADE_UP);
        assert_eq!(count("/api/v1/entities/FR/descendants"), MAX_MADE_UP);
        assert_eq!(
            covered.len(),
            3 * MAX_MADE_UP + MAX_MADE_UP * 3,
            "one page per real entity is not capped"
        );
    }

    #[test]
    fn scores_halve_every_half_life() {
        assert!((decayed(8.0, 60_000) - 4.0).abs() < 1e-9);
        assert!((decayed(8.0, 120_000) - 2.0).abs() < 1e-9);
        assert_eq!(decayed(8.0, -5), 8.0);
    }

    #[test]
    fn a_page_keeps_the_tags_it_was_last_served_with() {
        let hot = HotKeys::default();
        hot.record("/fr-75/ancestors", &tags(&["e:FR-75", "s:FR"]));
        hot.record("/fr-75/ancestors", &tags(&["e:FR-75", "s:BE"]));
        assert!(hot.covered_by(&["s:FR".into()], false, 10, 0.0).is_empty());
        assert_eq!(
            hot.covered_by(&["s:BE".into()], false, 10, 0.0),
            ["/fr-75/ancestors"]
        );
        let long = format!("/api/v1/search?q={}", "x".repeat(MAX_URI_BYTES));
        hot.record(&long, &tags(&["search"]));
        assert_eq!(hot.ranked(10).len(), 1, "an over-long URI is not scored");
    }

    #[test]
    fn tracking_stays_bounded() {
        let hot = HotKeys::default();
        for _ in 0..3 {
            hot.record("/hot", &tags(&[]));
        }
        for n in 0..MAX_TRACKED + 10 {
            hot.record(&format!("/cold/{n}"), &tags(&[]));
        }
        let tracked = hot.local.lock().len();
        assert!(tracked <= MAX_TRACKED, "{tracked}");
        assert_eq!(hot.ranked(1)[0].uri, "/hot");
    }
}
