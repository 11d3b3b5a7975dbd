//! How often readers asked this isolate for each key lately: what a soft purge refreshes
//! first. The origin ranks pages by what reaches it (the CDN's refills), which says little
//! about what readers read from the CDN; the edge sees the reads.
//!
//! Counts are kept per window of [`WINDOW_MS`]; a key is as hot as its count in the current
//! window plus the previous one, so a read counts for one to two windows. At most
//! [`MAX_KEYS`] keys of at most [`MAX_KEY_BYTES`] are counted per window (a few MB at worst,
//! whatever clients ask): past it, new keys wait for the next window. A client that asks for
//! thousands of new keys fills a window, and the purges of the next minute refresh in the
//! origin's order instead: slower, never wrong.

use std::collections::HashMap;

/// How long one window of counts lasts.
pub const WINDOW_MS: u64 = 30_000;
/// Keys counted per window at most, and the longest key counted (the API's are far shorter).
pub const MAX_KEYS: usize = 4_096;
pub const MAX_KEY_BYTES: usize = 512;

#[derive(Debug, Default)]
pub struct HotKeys {
    /// When the current window started.
    since_ms: u64,
    current: HashMap<String, u32>,
    previous: HashMap<String, u32>,
}

impl HotKeys {
    /// Counts one read of `key` at `now_ms`.
    pub fn count(&mut self, key: &str, now_ms: u64) {
        if key.len() > MAX_KEY_BYTES {
            return;
        }
        self.roll(now_ms);
        if let Some(count) = self.current.get_mut(key) {
            *count = count.saturating_add(1);
        } else if self.current.len() < MAX_KEYS {
            self.current.insert(key.to_owned(), 1);
        }
    }

    /// The reads of `key` in this window and the last.
    pub fn of(&mut self, key: &str, now_ms: u64) -> u32 {
        self.roll(now_ms);
        let count = |window: &HashMap<String, u32>| window.get(key).copied().unwrap_or(0);
        count(&self.current).saturating_add(count(&self.previous))
    }

    fn roll(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.since_ms);
        if elapsed < WINDOW_MS {
            return;
        }
        self.previous = if elapsed < 2 * WINDOW_MS {
            std::mem::take(&mut self.current)
        } else {
            self.current.clear();
            HashMap::new()
        };
        self.since_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_count_for_this_window_and_the_next_then_fade() {
        let mut hot = HotKeys::default();
        let start = 1_000_000;
        for _ in 0..3 {
            hot.count("a", start);
        }
        hot.count("b", start);
        assert_eq!((hot.of("a", start), hot.of("b", start)), (3, 1));
        let next = start + WINDOW_MS;
        hot.count("b", next);
        assert_eq!((hot.of("a", next), hot.of("b", next)), (3, 2));
        let after = next + WINDOW_MS;
        assert_eq!((hot.of("a", after), hot.of("b", after)), (0, 1));
        // A long silence forgets everything.
        hot.count("a", after);
        let much_later = after + 5 * WINDOW_MS;
        assert_eq!(hot.of("a", much_later), 0);
        assert_eq!(hot.of("unknown", much_later), 0);
    }

    #[test]
    fn a_full_window_counts_the_keys_it_has_and_takes_new_ones_in_the_next() {
        let mut hot = HotKeys::default();
        let now = 1_000_000;
        for n in 0..MAX_KEYS {
            hot.count(&n.to_string(), now);
        }
        hot.count("late", now);
        hot.count("0", now);
        assert_eq!((hot.of("late", now), hot.of("0", now)), (0, 2));
        hot.count("late", now + WINDOW_MS);
        assert_eq!(hot.of("late", now + WINDOW_MS), 1);
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        hot.count(&long, now + WINDOW_MS);
        assert_eq!(hot.of(&long, now + WINDOW_MS), 0);
    }
}
