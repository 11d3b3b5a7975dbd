//! The edge's purge endpoint, platform-neutral: authenticating a request signed by the origin
//! (see `forecastin_shared::signing`), validating its body, and deciding which stored entries
//! it covers.

use std::collections::HashMap;

use forecastin_shared::{
    dto::PurgeRequest,
    headers::{CACHE_TAG, SURROGATE_KEY},
    purges,
    signing::{self, Destination, Legacy},
};

use serde::{Deserialize, Serialize};
use url::Url;

use super::target::{normalize_path, Target};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeError {
    /// 401: missing, stale or wrong signature.
    Unauthenticated(String),
    /// 400: the body is not a valid purge.
    BadRequest(String),
}

/// A purge with its URLs turned into cache keys and its prefixes into key locators
/// (a key without its scheme: `host/path?query`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    pub keys: Vec<String>,
    pub tags: Vec<String>,
    pub prefixes: Vec<String>,
    pub everything: bool,
    /// Refresh the entries rather than delete them (see [`Purge::split_for_refresh`]).
    #[serde(default)]
    pub soft: bool,
    /// The keys a soft purge should refresh (empty: any it covers).
    #[serde(default)]
    pub refresh: Vec<String>,
}

/// Entries one soft purge refreshes at most, all at once: as many as the origin may name.
/// Each costs the invocation four subrequests (a storage read and write, the origin, the
/// index): about 2,000, a fifth of the runtime's limit of 10,000 per request on the paid plan.
/// Enough for every page a move of a region with its countries and their subdivisions covers
/// (some 300, measured in BENCHMARKS.md).
pub const REFRESHED_BY_SOFT_PURGE: usize = purges::MAX_REFRESH;

/// Longest cache key the index registers: the longest path a public route has with the
/// longest canonical query (a 3,072-character cursor), on any host.
pub const MAX_INDEXED_KEY_BYTES: usize = 4_096;
/// Most tags one registration carries: a page of descendants tags itself, its 32 ancestors
/// and at most 100 items (`forecastin_shared::tags::MAX_ITEM_TAGS`).
pub const MAX_INDEXED_TAGS: usize = 160;
/// Longest tag registered (the origin's are an id of at most 64 bytes and a prefix).
pub const MAX_INDEXED_TAG_BYTES: usize = 128;

/// Whether the index takes an entry: within the bounds above. One that is not is kept for a
/// short while only, as an entry whose registration failed.
pub fn indexable(key: &str, tags: &[String]) -> bool {
    key.len() <= MAX_INDEXED_KEY_BYTES
        && tags.len() <= MAX_INDEXED_TAGS
        && tags.iter().all(|tag| tag.len() <= MAX_INDEXED_TAG_BYTES)
}

/// The index object that holds `key`, of `shards` (FNV-1a of the key: stable across
/// isolates and releases, so a purge finds what a fill registered).
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(shards.max(1))) as u32
}

/// The signature headers of a purge request, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks the signature headers against the destination and body with each configured
/// secret (the current one and, during a rotation, the previous one); returns the nonce,
/// which identifies the request for replay detection.
pub fn authenticate(
    secrets: &[&str],
    signed: Signed<'_>,
    destination: &Destination,
    body: &[u8],
    now_secs: u64,
    legacy: Legacy,
) -> Result<String, PurgeError> {
    let mut secrets = secrets.iter().filter(|secret| !secret.is_empty());
    let Some(current) = secrets.next() else {
        return Err(PurgeError::Unauthenticated(
            "no purge secret is configured at the edge".into(),
        ));
    };
    let (Some(timestamp), Some(nonce), Some(signature)) =
        (signed.timestamp, signed.nonce, signed.signature)
    else {
        return Err(PurgeError::Unauthenticated(
            "the purge must be signed: timestamp, nonce and signature headers".into(),
        ));
    };
    let headers = signing::Headers {
        timestamp,
        nonce,
        signature,
    };
    let verify = |secret: &str| {
        signing::verify(
            secret.as_bytes(),
            headers,
            destination,
            body,
            now_secs,
            legacy,
        )
    };
    // The current secret's verdict is the one reported when no secret accepts the request.
    let verdict = verify(current);
    secrets
        .map(|previous| verify(previous))
        .find(Result::is_ok)
        .unwrap_or(verdict)
        .map_err(|err| PurgeError::Unauthenticated(err.to_string()))
}

/// The part of a cache key after its scheme.
pub fn locator(key: &str) -> &str {
    key.split_once("://").map_or(key, |(_, rest)| rest)
}

/// Validates a purge body (with the origin's validator, `forecastin_shared::purges`);
/// relative URLs and prefixes are taken on `edge_url`'s host.
pub fn parse(body: &[u8], edge_url: &Url) -> Result<Purge, PurgeError> {
    let mut request: PurgeRequest = serde_json::from_slice(body)
        .map_err(|err| PurgeError::BadRequest(format!("invalid purge body: {err}")))?;
    // An origin of another release may name more, or other, pages than this edge takes.
    request.refresh = purges::refreshable(&request.refresh);
    purges::validate(&request).map_err(|invalid| PurgeError::BadRequest(invalid.message))?;
    let bad = |item: &str| PurgeError::BadRequest(format!("`{item}` is not a purgeable URL"));
    // A URL whose declared parameters are out of bounds names no stored page: nothing to do.
    let cache_keys = |urls: &[String]| {
        urls.iter()
            .filter_map(|url| {
                let Some(absolute) = purges::url_on(url, edge_url) else {
                    return Some(Err(bad(url)));
                };
                let target = Target::parse(&absolute).ok()?;
                Some(Ok(target.cache_key(&absolute)))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let keys = cache_keys(&request.urls)?;
    let refresh = cache_keys(&request.refresh)?;
    let prefixes = request
        .prefixes
        .iter()
        .map(|prefix| {
            let absolute = purges::prefix_on(prefix, edge_url).ok_or_else(|| bad(prefix))?;
            // Query and fragment are not part of a prefix.
            let target = Target {
                path: normalize_path(absolute.path()),
                query: None,
            };
            Ok(locator(&target.cache_key(&absolute)).to_owned())
        })
        .collect::<Result<_, _>>()?;
    Ok(Purge {
        keys,
        tags: request.tags,
        prefixes,
        everything: request.everything,
        soft: request.soft,
        refresh,
    })
}

/// The cache tags a response carries, from `Cache-Tag` (comma-separated) and
/// `Surrogate-Key` (space-separated), without duplicates.
pub fn tags_of(response: &http::HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let lists = [(CACHE_TAG, ','), (SURROGATE_KEY, ' ')];
    for (name, separator) in lists {
        for value in response
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for tag in value
                .split(separator)
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                if !tags.iter().any(|known| known == tag) {
                    tags.push(tag.to_owned());
                }
            }
        }
    }
    tags
}

impl Purge {
    /// The covered `keys` split into those to refresh in place and those to delete: for a soft
    /// purge, up to [`REFRESHED_BY_SOFT_PURGE`] of those it names to refresh and of those
    /// readers read here lately (`reads`), the most read first, then in the order the purge
    /// names them (the origin names the hottest it has rendered again first); any it covers
    /// when it names none. Everything else is deleted.
    pub fn split_for_refresh(
        &self,
        keys: Vec<String>,
        mut reads_of: impl FnMut(&str) -> u32,
    ) -> (Vec<String>, Vec<String>) {
        if !self.soft {
            return (Vec::new(), keys);
        }
        // A page named twice (two URLs with one cache key) keeps its first place.
        let mut named: HashMap<&str, usize> = HashMap::new();
        for (rank, key) in self.refresh.iter().enumerate() {
            named.entry(key.as_str()).or_insert(rank);
        }
        let mut candidates = Vec::new();
        let mut deleted = Vec::new();
        for key in keys {
            let reads = reads_of(&key);
            match named.get(key.as_str()) {
                Some(&rank) => candidates.push((reads, rank, key)),
                None if reads > 0 || named.is_empty() => candidates.push((reads, usize::MAX, key)),
                None => deleted.push(key),
            }
        }
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut refreshed: Vec<String> = candidates.into_iter().map(|(_, _, key)| key).collect();
        deleted.extend(refreshed.split_off(refreshed.len().min(REFRESHED_BY_SOFT_PURGE)));
        (refreshed, deleted)
    }

    /// Whether this purge removes the entry stored under `key` with `tags`.
    pub fn covers(&self, key: &str, tags: &[String]) -> bool {
        self.everything
            || self.keys.iter().any(|k| k == key)
            || self.tags.iter().any(|t| tags.contains(t))
            || self
                .prefixes
                .iter()
                .any(|p| locator(key).starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forecastin_shared::signing::sign;

    fn auth(
        secrets: &[&str],
        signed: Signed<'_>,
        body: &[u8],
        now: u64,
    ) -> Result<String, PurgeError> {
        let destination = Destination::new("POST", &edge());
        authenticate(secrets, signed, &destination, body, now, Legacy::Refused)
    }

    fn edge() -> Url {
        Url::parse("http://127.0.0.1:8787/__edge/purge").unwrap()
    }

    #[test]
    fn only_fresh_correct_signatures_authenticate() {
        let body = br#"{"urls":["/a"]}"#;
        let now = 1_800_000_000;
        let nonce = "nonce-0123456789";
        let good = sign(
            b"s3cret",
            now,
            nonce,
            &Destination::new("POST", &edge()),
            body,
        );
        let ts = now.to_string();
        let signed = |timestamp, nonce, signature| Signed {
            timestamp,
            nonce,
            signature,
        };
        assert_eq!(
            auth(
                &["s3cret"],
                signed(Some(&ts), Some(nonce), Some(&good)),
                body,
                now + 1
            ),
            Ok(nonce.to_owned())
        );
        // During a rotation the previous secret is accepted too, and only then.
        assert_eq!(
            auth(
                &["n3w", "s3cret"],
                signed(Some(&ts), Some(nonce), Some(&good)),
                body,
                now
            ),
            Ok(nonce.to_owned())
        );
        assert!(auth(
            &["n3w", ""],
            signed(Some(&ts), Some(nonce), Some(&good)),
            body,
            now
        )
        .is_err());
        let later = (now + 1).to_string();
        let cases = [
            ("s3cret", signed(None, Some(nonce), Some(&good)), now),
            ("s3cret", signed(Some(&ts), None, Some(&good)), now),
            ("s3cret", signed(Some(&ts), Some(nonce), None), now),
            ("other", signed(Some(&ts), Some(nonce), Some(&good)), now),
            (
                "s3cret",
                signed(Some(&ts), Some(nonce), Some(&good)),
                now + 301,
            ),
            (
                "s3cret",
                signed(Some(&later), Some(nonce), Some(&good)),
                now,
            ),
            (
                "s3cret",
                signed(Some(&ts), Some("nonce-9999999999"), Some(&good)),
                now,
            ),
            ("", signed(Some(&ts), Some(nonce), Some(&good)), now),
        ];
        for (secret, headers, at) in cases {
            assert!(
                matches!(
                    auth(&[secret], headers, body, at),
                    Err(PurgeError::Unauthenticated(_))
                ),
                "{secret} {headers:?} {at}"
            );
        }
    }

    #[test]
    fn keys_spread_over_the_shards_and_stay_put() {
        let mut counts = [0u32; 4];
        for n in 0..4_000 {
            counts[shard_of(&format!("https://e.x/api/v1/entities/E{n}"), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&count| (800..1_200).contains(&count)),
            "{counts:?}"
        );
        assert_eq!(
            shard_of("https://e.x/api/v1/entities/FR", 4),
            3,
            "FNV-1a, as deployed"
        );
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn registrations_past_the_bounds_are_not_indexed() {
        let tag = |n: usize| format!("e:{n}");
        let many: Vec<String> = (0..MAX_INDEXED_TAGS + 1).map(tag).collect();
        assert!(indexable("https://e.x/a", &many[..MAX_INDEXED_TAGS]));
        assert!(!indexable("https://e.x/a", &many));
        assert!(!indexable(&"k".repeat(MAX_INDEXED_KEY_BYTES + 1), &[]));
        assert!(!indexable(
            "https://e.x/a",
            &["t".repeat(MAX_INDEXED_TAG_BYTES + 1)]
        ));
    }

    #[test]
    fn bodies_are_validated() {
        for body in [
            &b"not json"[..],
            br#"{}"#,
            br#"{"urls":[]}"#,
            br#"{"urls":["ftp://x/y"]}"#,
            br#"{"tags":["a b"]}"#,
            br#"{"tags":[""]}"#,
            br#"{"prefixes":["not a prefix"]}"#,
            br#"{"colour":"red","everything":true}"#,
        ] {
            assert!(
                matches!(parse(body, &edge()), Err(PurgeError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let too_many = serde_json::json!({ "tags": vec!["t"; purges::MAX_ITEMS + 1] }).to_string();
        assert!(parse(too_many.as_bytes(), &edge()).is_err());
    }

    #[test]
    fn a_url_out_of_its_parameters_bounds_names_nothing() {
        let purge = parse(
            br#"{"urls":["/api/v1/entities/FR/children?limit=0","/api/v1/entities/FR"]}"#,
            &edge(),
        )
        .unwrap();
        assert_eq!(purge.keys, ["http://127.0.0.1:8787/api/v1/entities/FR"]);
    }

    #[test]
    fn urls_become_cache_keys_and_prefixes_locators() {
        let purge = parse(
            br#"{"urls":["/api/v1/search?q=x&utm_source=y&a=1","https://Edge.example/p"],
                 "prefixes":["/api/v1/entities/FR","edge.example/static/","https://a.b/c?x=1"],
                 "tags":["e:FR"]}"#,
            &edge(),
        )
        .unwrap();
        assert_eq!(
            purge.keys,
            [
                "http://127.0.0.1:8787/api/v1/search?q=x",
                "https://edge.example/p"
            ]
        );
        assert_eq!(
            purge.prefixes,
            [
                "127.0.0.1:8787/api/v1/entities/FR",
                "edge.example/static/",
                "a.b/c"
            ]
        );
    }

    #[test]
    fn tags_come_from_both_headers_once() {
        let mut headers = http::HeaderMap::new();
        headers.insert(CACHE_TAG, "e:FR,s:world".parse().unwrap());
        headers.insert(SURROGATE_KEY, "e:FR s:world search".parse().unwrap());
        assert_eq!(tags_of(&headers), ["e:FR", "s:world", "search"]);
    }

    #[test]
    fn a_soft_purge_refreshes_what_it_names_and_deletes_the_rest() {
        let keys = |names: &[&str]| names.iter().map(|n| format!("http://h/{n}")).collect();
        let cold = |_: &str| 0;
        let hard = Purge::default();
        assert_eq!(
            hard.split_for_refresh(keys(&["a"]), cold),
            (vec![], keys(&["a"]))
        );
        let soft = Purge {
            soft: true,
            ..Purge::default()
        };
        assert_eq!(
            soft.split_for_refresh(keys(&["a", "b"]), cold),
            (keys(&["a", "b"]), vec![])
        );
        let named = Purge {
            soft: true,
            refresh: keys(&["b", "z"]),
            ..Purge::default()
        };
        assert_eq!(
            named.split_for_refresh(keys(&["a", "b", "c"]), cold),
            (keys(&["b"]), keys(&["a", "c"]))
        );
        // A page readers read here is refreshed too, named or not, and before the others.
        let read_here = |key: &str| u32::from(key.ends_with("/c"));
        assert_eq!(
            named.split_for_refresh(keys(&["a", "b", "c"]), read_here),
            (keys(&["c", "b"]), keys(&["a"]))
        );
        // Read as often: those named first.
        assert_eq!(
            named.split_for_refresh(keys(&["a", "b"]), |_| 1),
            (keys(&["b", "a"]), vec![])
        );
        // Past the budget: the most read first, then in the order named, whatever order the
        // index keeps.
        let covered: Vec<String> = (0..REFRESHED_BY_SOFT_PURGE + 3)
            .map(|n| format!("http://h/{n}"))
            .collect();
        let hottest_first = Purge {
            soft: true,
            refresh: covered.iter().rev().cloned().collect(),
            ..Purge::default()
        };
        let (refreshed, deleted) = hottest_first.split_for_refresh(covered.clone(), cold);
        assert_eq!(
            refreshed,
            covered[3..].iter().rev().cloned().collect::<Vec<_>>()
        );
        assert_eq!(
            deleted,
            covered[..3].iter().rev().cloned().collect::<Vec<_>>()
        );
        let first_read = |key: &str| u32::from(key == "http://h/0");
        let (refreshed, deleted) = hottest_first.split_for_refresh(covered.clone(), first_read);
        assert_eq!(refreshed[0], covered[0]);
        assert_eq!(deleted, keys(&["3", "2", "1"]));
        let (refreshed, deleted) = soft.split_for_refresh(covered, cold);
        assert_eq!(
            (refreshed.len(), deleted.len()),
            (REFRESHED_BY_SOFT_PURGE, 3)
        );
        let parsed = parse(
            br#"{"tags":["e:FR"],"soft":true,"refresh":["/api/v1/entities/FR?x=1"]}"#,
            &edge(),
        )
        .unwrap();
        assert_eq!(parsed.refresh, ["http://127.0.0.1:8787/api/v1/entities/FR"]);
        // Pages to refresh are hints: those past the cap, or no URLs, are left out (and so
        // deleted if covered), and the purge still goes through.
        let mut pages = vec!["/api/v1/search?q=\\"; 1];
        pages.extend(vec!["/api/v1/entities/FR"; purges::MAX_REFRESH + 1]);
        let body = serde_json::json!({ "tags": ["e:FR"], "soft": true, "refresh": pages });
        let parsed = parse(body.to_string().as_bytes(), &edge()).unwrap();
        assert_eq!(parsed.refresh.len(), purges::MAX_REFRESH);
        assert!(parsed
            .refresh
            .iter()
            .all(|key| key.ends_with("/entities/FR")));
    }

    #[test]
    fn a_soft_purge_stays_soft() {
        let soft = parse(br#"{"tags":["e:FR"],"soft":true}"#, &edge()).unwrap();
        assert!(soft.soft);
        assert!(!parse(br#"{"tags":["e:FR"]}"#, &edge()).unwrap().soft);
        assert!(parse(br#"{"tags":["e:FR"],"soft":"yes"}"#, &edge()).is_err());
    }

    #[test]
    fn coverage_table() {
        let purge = Purge {
            keys: vec!["http://h/a".into()],
            tags: vec!["e:FR".into()],
            prefixes: vec!["h/api/v1/entities/FR".into()],
            ..Purge::default()
        };
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(purge.covers("http://h/a", &[]));
        assert!(purge.covers("https://h/api/v1/entities/FR/children", &[]));
        assert!(purge.covers("http://h/x", &tags(&["s:world", "e:FR"])));
        assert!(!purge.covers("http://h/x", &tags(&["e:DE"])));
        assert!(!purge.covers("http://h/a?b=1", &[]));
        assert!(Purge {
            everything: true,
            ..Purge::default()
        }
        .covers("http://any/thing", &[]));
    }
}
