//! Who in an isolate does a piece of work on a key, and who waits or leaves it: the collapse of
//! concurrent misses into one origin fetch ([`Collapse`]), one background refresh per key
//! ([`Refreshes`]), and the budget of pages fetched ahead ([`FetchAhead`]). Pure: the adapter
//! keeps one of each per isolate, gives them the time, and carries out their answers.

use std::collections::{HashMap, HashSet};

use super::hot::MAX_KEY_BYTES;

/// A fetch under way: its number (one per isolate) and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    number: u64,
    started_ms: u64,
}

impl Fetch {
    /// When a waiter stops waiting for it: a fetch older than the origin timeout is abandoned.
    pub fn deadline_ms(&self, timeout_ms: u64) -> u64 {
        self.started_ms.saturating_add(timeout_ms)
    }
}

/// A miss's part in the fetch of its key.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Fetch and store, then [`Collapse::end`] the fetch for everyone.
    Lead(Fetch),
    /// Wait while [`Collapse::under_way`], then read what the leader stored.
    Wait(Fetch),
}

/// The origin fetches under way, by key: while one miss fetches a key, other misses for it
/// wait and then read what it stored, instead of sending their own requests.
#[derive(Debug, Default)]
pub struct Collapse {
    fetching: HashMap<String, Fetch>,
    fetches: u64,
}

impl Collapse {
    /// Leads the fetch of `key`, or waits for the one under way if it started less than
    /// `timeout_ms` before `now_ms`. An older one counts as abandoned and the caller takes it
    /// over: the runtime may cancel a request without ever dropping its future, so a leader's
    /// end is not guaranteed to come.
    pub fn join(&mut self, key: &str, now_ms: u64, timeout_ms: u64) -> Turn {
        if let Some(&fetch) = self.fetching.get(key) {
            if now_ms < fetch.deadline_ms(timeout_ms) {
                return Turn::Wait(fetch);
            }
        }
        self.fetches += 1;
        let fetch = Fetch {
            number: self.fetches,
            started_ms: now_ms,
        };
        self.fetching.insert(key.to_owned(), fetch);
        Turn::Lead(fetch)
    }

    /// Ends `fetch` of `key`, stored or not; a later fetch that took the key over stays.
    pub fn end(&mut self, key: &str, fetch: Fetch) {
        if self.fetching.get(key) == Some(&fetch) {
            self.fetching.remove(key);
        }
    }

    /// Whether `fetch` of `key` has not ended.
    pub fn under_way(&self, key: &str, fetch: Fetch) -> bool {
        self.fetching.get(key) == Some(&fetch)
    }
}

/// Whether the caller may do a piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller does it.
    Granted,
    /// Another is doing it, or the budget for it is spent: leave it.
    Refused,
}

/// The keys being refreshed in the background: one refresh per key at a time.
#[derive(Debug, Default)]
pub struct Refreshes(HashSet<String>);

impl Refreshes {
    /// Claims the refresh of `key`; [`Refreshes::release`] it when done.
    pub fn claim(&mut self, key: &str) -> Claim {
        if self.0.insert(key.to_owned()) {
            Claim::Granted
        } else {
            Claim::Refused
        }
    }

    pub fn release(&mut self, key: &str) {
        self.0.remove(key);
    }
}

/// How often one isolate fetches one page ahead, at most.
pub const FETCH_AHEAD_EVERY_MS: u64 = 10_000;
/// Pages fetched ahead per [`FETCH_AHEAD_EVERY_MS`] at most: past it, the isolate fetches
/// enough ahead already.
pub const FETCH_AHEAD_MOST: usize = 4_096;

/// The pages this isolate fetched ahead since the window began: a page named on every hit of a
/// popular one is fetched once per window. And the pages whose links it read in the window: a
/// page read again within it names only pages claimed already, so its links need not be read.
/// Where one key's answers name different pages (a page that changed, another variant), the
/// links of the first answer in the window are the ones read: the others wait for the next
/// window, 10 s at most. Fetching ahead is only ever delayed by it.
#[derive(Debug, Default)]
pub struct FetchAhead {
    since_ms: u64,
    keys: HashSet<String>,
    read: HashSet<String>,
}

impl FetchAhead {
    /// Whether to fetch `key` ahead at `now_ms`.
    pub fn claim(&mut self, key: &str, now_ms: u64) -> Claim {
        self.window(now_ms);
        if self.keys.contains(key) || self.keys.len() >= FETCH_AHEAD_MOST {
            return Claim::Refused;
        }
        self.keys.insert(key.to_owned());
        Claim::Granted
    }

    /// Whether to read the links of the page under `key` at `now_ms`: refused when they were
    /// read in this window, for every page they named was claimed then (granted or refused,
    /// as it would be again). Past [`FETCH_AHEAD_MOST`] pages read, or for a key longer than
    /// [`MAX_KEY_BYTES`], always granted: the links are read as if nothing were remembered,
    /// which changes nothing but the cost.
    pub fn read_links(&mut self, key: &str, now_ms: u64) -> Claim {
        self.window(now_ms);
        if self.read.contains(key) {
            return Claim::Refused;
        }
        if self.read.len() < FETCH_AHEAD_MOST && key.len() <= MAX_KEY_BYTES {
            self.read.insert(key.to_owned());
        }
        Claim::Granted
    }

    fn window(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.since_ms) >= FETCH_AHEAD_EVERY_MS {
            self.since_ms = now_ms;
            self.keys.clear();
            self.read.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: u64 = 5_000;

    #[test]
    fn one_miss_leads_and_the_others_wait_until_it_ends() {
        let mut collapse = Collapse::default();
        let Turn::Lead(fetch) = collapse.join("k", 1_000, TIMEOUT) else {
            panic!("the first miss leads");
        };
        assert_eq!(collapse.join("k", 1_001, TIMEOUT), Turn::Wait(fetch));
        assert!(matches!(
            collapse.join("other", 1_001, TIMEOUT),
            Turn::Lead(_)
        ));
        assert!(collapse.under_way("k", fetch));
        collapse.end("k", fetch);
        assert!(!collapse.under_way("k", fetch));
        assert!(matches!(collapse.join("k", 1_002, TIMEOUT), Turn::Lead(_)));
    }

    #[test]
    fn a_fetch_older_than_the_timeout_is_taken_over_and_its_end_changes_nothing() {
        let mut collapse = Collapse::default();
        let Turn::Lead(abandoned) = collapse.join("k", 0, TIMEOUT) else {
            panic!("the first miss leads");
        };
        assert_eq!(abandoned.deadline_ms(TIMEOUT), TIMEOUT);
        assert_eq!(
            collapse.join("k", TIMEOUT - 1, TIMEOUT),
            Turn::Wait(abandoned)
        );
        let Turn::Lead(taken_over) = collapse.join("k", TIMEOUT, TIMEOUT) else {
            panic!("an abandoned fetch is taken over");
        };
        assert_ne!(taken_over, abandoned);
        // The first leader's future was dropped at last: the new fetch goes on.
        collapse.end("k", abandoned);
        assert!(collapse.under_way("k", taken_over));
        assert!(!collapse.under_way("k", abandoned));
    }

    #[test]
    fn a_key_is_refreshed_by_one_at_a_time() {
        let mut refreshes = Refreshes::default();
        assert_eq!(refreshes.claim("k"), Claim::Granted);
        assert_eq!(refreshes.claim("k"), Claim::Refused);
        assert_eq!(refreshes.claim("other"), Claim::Granted);
        refreshes.release("k");
        assert_eq!(refreshes.claim("k"), Claim::Granted);
    }

    #[test]
    fn a_page_is_fetched_ahead_once_per_window_and_a_window_holds_a_bounded_number() {
        let mut ahead = FetchAhead::default();
        let start = FETCH_AHEAD_EVERY_MS;
        assert_eq!(ahead.claim("k", start), Claim::Granted);
        assert_eq!(
            ahead.claim("k", start + FETCH_AHEAD_EVERY_MS - 1),
            Claim::Refused
        );
        assert_eq!(
            ahead.claim("k", start + FETCH_AHEAD_EVERY_MS),
            Claim::Granted
        );
        let now = start + 2 * FETCH_AHEAD_EVERY_MS;
        for n in 0..FETCH_AHEAD_MOST {
            assert_eq!(ahead.claim(&n.to_string(), now), Claim::Granted);
        }
        assert_eq!(ahead.claim("one more", now), Claim::Refused);
        assert_eq!(
            ahead.claim("one more", now + FETCH_AHEAD_EVERY_MS),
            Claim::Granted
        );
    }

    #[test]
    fn a_page_s_links_are_read_once_per_window_of_the_pages_they_name() {
        let mut ahead = FetchAhead::default();
        let start = FETCH_AHEAD_EVERY_MS;
        assert_eq!(ahead.read_links("page", start), Claim::Granted);
        assert_eq!(ahead.claim("next", start), Claim::Granted);
        // Read again in the window: "next" would be refused, so nothing is read.
        let later = start + FETCH_AHEAD_EVERY_MS - 1;
        assert_eq!(ahead.read_links("page", later), Claim::Refused);
        assert_eq!(ahead.claim("next", later), Claim::Refused);
        // A page's links and a page fetched ahead are apart: "next" may have links too.
        assert_eq!(ahead.read_links("next", later), Claim::Granted);
        // A new window forgets both together.
        let next_window = start + FETCH_AHEAD_EVERY_MS;
        assert_eq!(ahead.read_links("page", next_window), Claim::Granted);
        assert_eq!(ahead.claim("next", next_window), Claim::Granted);
    }

    #[test]
    fn past_its_bound_every_page_s_links_are_read() {
        let mut ahead = FetchAhead::default();
        let now = FETCH_AHEAD_EVERY_MS;
        for n in 0..FETCH_AHEAD_MOST {
            assert_eq!(ahead.read_links(&n.to_string(), now), Claim::Granted);
        }
        assert_eq!(ahead.read_links("one more", now), Claim::Granted);
        assert_eq!(ahead.read_links("one more", now), Claim::Granted);
        assert_eq!(ahead.read_links("0", now), Claim::Refused);
    }

    #[test]
    fn a_long_key_is_not_remembered() {
        let mut ahead = FetchAhead::default();
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(ahead.read_links(&long, 0), Claim::Granted);
        assert_eq!(ahead.read_links(&long, 0), Claim::Granted);
    }
}
