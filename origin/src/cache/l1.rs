//! L1: the in-process cache of rendered responses, bounded by entry count and by bytes
//! (`L1_MAX_BYTES`: 50,000 descendant pages of 50 KB would be 2.5 GB), evicting the least
//! recently used, and invalidated by cache tag.
//!
//! The byte bound counts what an entry really holds: its key once (the tag index shares it),
//! its body, its tags, the header values made of them, and the bookkeeping of each. The
//! entry table itself, sized by the entry bound when the cache is made, is outside it
//! (`tests/l1_memory.rs` measures both).
//!
//! A read that races a write must not put pre-write data back after the write invalidated it.
//! Every invalidation bumps an epoch; a reader notes the epoch before it reads the database and
//! its result is only stored if no invalidation happened in between.

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

/// A response as the origin renders it, ready to be sent again.
#[derive(Debug)]
pub struct Rendered {
    pub status: StatusCode,
    pub body: Bytes,
    pub etag: HeaderValue,
    pub tags: Vec<String>,
    pub cache_tag: HeaderValue,
    pub surrogate_key: HeaderValue,
    /// The pages a reader is likely to open next (see `forecastin_shared::preload`).
    pub preloads: Option<Preloads>,
}

/// The `Link` field naming a page's likely-next pages, and the page's validator when it is
/// served without it (preloading off).
#[derive(Debug)]
pub struct Preloads {
    pub link: HeaderValue,
    pub etag_without: HeaderValue,
}

pub struct L1 {
    inner: Mutex<Inner>,
}

/// An entry's key, one allocation shared by the entry table and the tag index.
type Key = Arc<str>;

struct Inner {
    /// Each entry with the moment it was stored.
    entries: LruCache<Key, (Instant, Arc<Rendered>)>,
    keys_by_tag: HashMap<Arc<str>, HashSet<Key>>,
    epoch: u64,
    /// The [`weight`] of all entries, and its bound.
    bytes: usize,
    max_bytes: usize,
}

/// Bookkeeping of an entry beyond its bytes: its node in the recency list and slot in the
/// table, the `Rendered` and its `Arc`, the key's `Arc` header (measured: about 400 bytes).
const ENTRY_OVERHEAD: usize = 512;
/// Bookkeeping of a tag: its `String` in `Rendered` (24), the tag's own copy (16) and set in
/// the index (a set of one key takes 84; its slot in the index, 64 bytes, takes 146 at the
/// load factor of 7/16 just after the table grows), counted against every entry as if no
/// other entry shared the tag. A tag shared by many entries costs each less: its key's slot
/// in the set.
const TAG_OVERHEAD: usize = 288;

/// What an entry costs in memory (see [`ENTRY_OVERHEAD`] and [`TAG_OVERHEAD`]).
fn weight(key: &str, entry: &Rendered) -> usize {
    let tags: usize = entry
        .tags
        .iter()
        .map(|tag| 2 * tag.len() + TAG_OVERHEAD)
        .sum();
    let preloads = entry.preloads.as_ref().map_or(0, |preloads| {
        preloads.link.len() + preloads.etag_without.len()
    });
    key.len()
        + entry.body.len()
        + entry.etag.len()
        + entry.cache_tag.len()
        + entry.surrogate_key.len()
        + preloads
        + tags
        + ENTRY_OVERHEAD
}

/// A point in the invalidation history, taken before a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

impl L1 {
    /// At most `capacity` entries and `max_bytes` of them (see [`weight`]).
    pub fn new(capacity: NonZeroUsize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: LruCache::new(capacity),
                keys_by_tag: HashMap::new(),
                epoch: 0,
                bytes: 0,
                max_bytes,
            }),
        }
    }

    /// The entry for `key`, if there is one no older than `max_age` (when given).
    pub fn get(&self, key: &str, max_age: Option<Duration>) -> Option<Arc<Rendered>> {
        let mut inner = self.inner.lock();
        let (stored_at, entry) = inner.entries.get(key)?;
        match max_age {
            Some(max_age) if stored_at.elapsed() > max_age => None,
            _ => Some(entry.clone()),
        }
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.inner.lock().epoch)
    }

    /// Stores `value` unless an invalidation happened since `seen` or it alone outweighs the
    /// bound; returns whether it did. Evicts the least recently used to stay in bounds.
    pub fn insert_if_current(&self, key: String, value: Arc<Rendered>, seen: Epoch) -> bool {
        let mut inner = self.inner.lock();
        let added = weight(&key, &value);
        if inner.epoch != seen.0 || added > inner.max_bytes {
            return false;
        }
        // An entry it replaces goes first, with its tags: the new one may carry others.
        if let Some((replaced_key, (_, replaced))) = inner.entries.pop_entry(key.as_str()) {
            inner.bytes -= weight(&replaced_key, &replaced);
            inner.forget_tags(&replaced_key, &replaced);
        }
        let key: Key = Arc::from(key);
        for tag in &value.tags {
            match inner.keys_by_tag.get_mut(tag.as_str()) {
                Some(keys) => {
                    keys.insert(key.clone());
                }
                None => {
                    inner
                        .keys_by_tag
                        .insert(Arc::from(tag.as_str()), HashSet::from([key.clone()]));
                }
            }
        }
        if let Some((evicted_key, (_, evicted))) =
            inner.entries.push(key.clone(), (Instant::now(), value))
        {
            inner.bytes -= weight(&evicted_key, &evicted);
            inner.forget_tags(&evicted_key, &evicted);
        }
        inner.bytes += added;
        while inner.bytes > inner.max_bytes {
            let Some((evicted_key, (_, evicted))) = inner.entries.pop_lru() else {
                break;
            };
            inner.bytes -= weight(&evicted_key, &evicted);
            inner.forget_tags(&evicted_key, &evicted);
        }
        true
    }

    /// Drops every entry carrying one of `tags`; returns how many were dropped.
    pub fn invalidate<'a>(&self, tags: impl IntoIterator<Item = &'a String>) -> usize {
        let mut inner = self.inner.lock();
        inner.epoch += 1;
        let mut dropped = 0;
        for tag in tags {
            for key in inner.keys_by_tag.remove(tag.as_str()).unwrap_or_default() {
                if let Some((_, entry)) = inner.entries.pop(&key) {
                    inner.bytes -= weight(&key, &entry);
                    inner.forget_tags(&key, &entry);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Drops every entry (for purges by URL, prefix or everything, which L1 keys do not name).
    pub fn invalidate_all(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.epoch += 1;
        let dropped = inner.entries.len();
        inner.entries.clear();
        inner.keys_by_tag.clear();
        inner.bytes = 0;
        dropped
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// The memory the entries take, as [`weight`] counts it.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn forget_tags(&mut self, key: &str, entry: &Rendered) {
        for tag in &entry.tags {
            if let Some(keys) = self.keys_by_tag.get_mut(tag.as_str()) {
                keys.remove(key);
                if keys.is_empty() {
                    self.keys_by_tag.remove(tag.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(tags: &[&str]) -> Arc<Rendered> {
        sized(tags, 2)
    }

    fn sized(tags: &[&str], body_bytes: usize) -> Arc<Rendered> {
        Arc::new(Rendered {
            status: StatusCode::OK,
            body: Bytes::from(vec![b' '; body_bytes]),
            etag: HeaderValue::from_static("\"x\""),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            cache_tag: HeaderValue::from_static(""),
            surrogate_key: HeaderValue::from_static(""),
            preloads: None,
        })
    }

    fn l1(capacity: usize) -> L1 {
        L1::new(NonZeroUsize::new(capacity).unwrap(), usize::MAX / 2)
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recently_used() {
        let cache = L1::new(NonZeroUsize::new(1_000).unwrap(), 200_000);
        let epoch = cache.epoch();
        for n in 0..10 {
            assert!(cache.insert_if_current(format!("/page/{n}"), sized(&["t"], 50_000), epoch));
            assert!(cache.bytes() <= 200_000, "{}", cache.bytes());
        }
        assert_eq!(cache.len(), 3, "three 50 KB pages fit in 200 KB");
        assert!(cache.get("/page/9", None).is_some());
        assert!(cache.get("/page/0", None).is_none());
        assert!(
            !cache.insert_if_current("/huge".into(), sized(&["t"], 300_000), epoch),
            "an entry larger than the whole bound is not kept"
        );
        cache.insert_if_current("/page/9".into(), sized(&["t"], 10), epoch);
        cache.invalidate(&["t".to_string()]);
        assert_eq!(
            (cache.len(), cache.bytes()),
            (0, 0),
            "the accounting returns to zero"
        );
    }

    #[test]
    fn invalidating_a_tag_drops_only_the_entries_that_carry_it() {
        let cache = l1(10);
        let epoch = cache.epoch();
        assert!(cache.insert_if_current("/fr".into(), rendered(&["e:FR", "s:world"]), epoch));
        assert!(cache.insert_if_current("/de".into(), rendered(&["e:DE", "s:world"]), epoch));
        assert_eq!(cache.invalidate(&["e:FR".to_string()]), 1);
        assert!(cache.get("/fr", None).is_none());
        assert!(cache.get("/de", None).is_some());
        assert_eq!(cache.invalidate(&["s:world".to_string()]), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_stored() {
        let cache = l1(10);
        let before_read = cache.epoch();
        cache.invalidate(&["e:FR".to_string()]);
        assert!(!cache.insert_if_current("/fr".into(), rendered(&["e:FR"]), before_read));
        assert!(cache.get("/fr", None).is_none());
    }

    #[test]
    fn entries_older_than_the_bound_are_misses() {
        let cache = l1(10);
        cache.insert_if_current("/fr".into(), rendered(&["e:FR"]), cache.epoch());
        assert!(cache.get("/fr", Some(Duration::from_secs(60))).is_some());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("/fr", Some(Duration::from_millis(1))).is_none());
        assert!(cache.get("/fr", None).is_some());
    }

    #[test]
    fn a_replaced_entry_leaves_no_tag_behind() {
        let cache = l1(10);
        let epoch = cache.epoch();
        cache.insert_if_current("/fr".into(), rendered(&["e:FR", "s:old"]), epoch);
        cache.insert_if_current("/fr".into(), rendered(&["e:FR", "s:new"]), epoch);
        assert!(!cache.inner.lock().keys_by_tag.contains_key("s:old"));
        assert_eq!(cache.invalidate(&["s:old".to_string()]), 0);
        assert_eq!(cache.bytes(), weight("/fr", &rendered(&["e:FR", "s:new"])));
    }

    #[test]
    fn eviction_keeps_the_tag_index_bounded() {
        let cache = l1(2);
        let epoch = cache.epoch();
        for key in ["a", "b", "c"] {
            cache.insert_if_current(key.into(), rendered(&[key]), epoch);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a", None).is_none());
        assert!(!cache.inner.lock().keys_by_tag.contains_key("a"));
    }
}
