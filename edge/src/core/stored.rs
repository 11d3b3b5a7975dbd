//! How a response is written into and read back from the runtime's cache storage.
//!
//! The runtime's storage (the Workers Cache API) expires entries by their `Cache-Control`, and
//! must keep them through their stale windows, so the stored copy carries a storage-only
//! `Cache-Control` (`max-age` = retention) and the edge's own bookkeeping in one internal
//! header: the [`Stored`] facts and the origin's `Cache-Control` to give back to clients.

use forecastin_shared::headers::{CACHE_TAG, CDN_CACHE_CONTROL, SURROGATE_CONTROL, SURROGATE_KEY};
use http::{header, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{fields::joined, freshness::Stored, request::TRACE_CONTEXT, static_assets};

/// The internal header holding the edge's bookkeeping on a stored response.
pub const META_HEADER: &str = "x-forecastin-edge-meta";

/// Headers for this edge alone, removed before a client sees them: the tags, Fastly's
/// policy, the bookkeeping, and the runtime cache's own status (`Cache-Status` says it).
/// `CDN-Cache-Control` is not among them: RFC 9213 targets any CDN downstream too.
pub const INTERNAL: [&str; 5] = [
    CACHE_TAG,
    SURROGATE_KEY,
    SURROGATE_CONTROL,
    META_HEADER,
    "cf-cache-status",
];

/// The status every entry is written to storage with. The runtime's cache applies its own
/// rules to statuses (the local one keeps only those it deems cacheable, whatever the
/// freshness), so storage holds a 200 and the real status is in the bookkeeping.
pub const STORAGE_STATUS: u16 = 200;

/// The stored fields that deciding and answering a hit reads or rewrites, besides the internal
/// ones it removes ([`INTERNAL`]).
const REWRITTEN_ON_HIT: [&str; 11] = [
    "cache-control",
    CDN_CACHE_CONTROL,
    "content-length",
    "content-range",
    "accept-ranges",
    "etag",
    "last-modified",
    "age",
    forecastin_shared::headers::CACHE_STATUS,
    "server-timing",
    // Read to fetch ahead the pages it names (`forecastin_shared::preload`).
    "link",
];

/// Every stored field a hit reads or rewrites. A hit needs only these from storage (every
/// other field passes through untouched); revalidating needs all.
pub fn hit_fields() -> impl Iterator<Item = &'static str> {
    REWRITTEN_ON_HIT.into_iter().chain(INTERNAL)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The response's real status.
    pub status: u16,
    pub stored: Stored,
    /// The `Cache-Control` clients get (the origin's, or the immutable policy of a
    /// fingerprinted asset).
    pub client_cache_control: Option<String>,
    /// The origin's `CDN-Cache-Control`, kept out of storage (the runtime's cache would obey
    /// it) and given back to clients.
    #[serde(default)]
    pub cdn_cache_control: Option<String>,
}

/// The headers to store with a response: its own (without the trace context of the request
/// that fetched it, and without `Age`, which storage would count against its own lifetime),
/// its true `Content-Length`, the storage-only `Cache-Control` and the bookkeeping header.
pub fn headers_to_store(
    response: &HeaderMap,
    status: u16,
    stored: &Stored,
    path: &str,
    body_len: usize,
) -> Option<HeaderMap> {
    let mut headers = response.clone();
    let client_cache_control = if static_assets::is_fingerprinted(path) {
        Some(static_assets::IMMUTABLE.to_owned())
    } else {
        joined(response, header::CACHE_CONTROL.as_str())
    };
    let meta = Meta {
        status,
        stored: stored.clone(),
        client_cache_control,
        cdn_cache_control: joined(response, CDN_CACHE_CONTROL),
    };
    for name in TRACE_CONTEXT.iter().chain(&[CDN_CACHE_CONTROL, "age"]) {
        headers.remove(*name);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", stored.retention()))
            .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=1")),
    );
    // JSON escapes control characters and every value came from a valid header, so this
    // holds; should it not, the response is simply not stored.
    let meta = serde_json::to_vec(&meta).ok()?;
    headers.insert(META_HEADER, HeaderValue::from_bytes(&meta).ok()?);
    Some(headers)
}

/// Reads the bookkeeping back and restores the client-facing `Cache-Control` and
/// `CDN-Cache-Control`. `None` when the entry was not written by this edge (or by an
/// incompatible version): treat as a miss.
pub fn read_stored(headers: &mut HeaderMap) -> Option<Meta> {
    let meta: Meta = headers
        .remove(META_HEADER)
        .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())?;
    headers.remove(header::CACHE_CONTROL);
    for (name, value) in [
        (header::CACHE_CONTROL.as_str(), &meta.client_cache_control),
        (CDN_CACHE_CONTROL, &meta.cdn_cache_control),
    ] {
        if let Some(value) = value
            .as_deref()
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            headers.insert(name, value);
        }
    }
    Some(meta)
}

/// Headers to store (as [`headers_to_store`] made them) that storage keeps for at most
/// `seconds`: for an entry the purge index could not take, which a purge by tag would miss.
pub fn kept_briefly(headers: &HeaderMap, seconds: u64) -> HeaderMap {
    let mut headers = headers.clone();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={seconds}"))
            .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=1")),
    );
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Stored {
        Stored {
            stored_at_ms: 1_000,
            initial_age: 0,
            lifetime: 60,
            stale_while_revalidate: 30,
            stale_if_error: 600,
            must_revalidate: false,
            vary: vec![("accept-language".into(), Some("fr".into()))],
            revalidatable: true,
        }
    }

    #[test]
    fn an_entry_kept_briefly_keeps_its_bookkeeping() {
        let mut response = HeaderMap::new();
        response.insert(
            header::CACHE_CONTROL,
            "public, s-maxage=600".parse().unwrap(),
        );
        let headers = headers_to_store(&response, 200, &stored(), "/a", 2).unwrap();
        let mut brief = kept_briefly(&headers, 10);
        assert_eq!(brief[header::CACHE_CONTROL], "public, max-age=10");
        assert_eq!(brief.len(), headers.len());
        let meta = read_stored(&mut brief).unwrap();
        assert_eq!(
            meta.stored,
            stored(),
            "freshness is the origin's, only storage is brief"
        );
    }

    #[test]
    fn stored_headers_round_trip() {
        let mut response = HeaderMap::new();
        response.insert(
            header::CACHE_CONTROL,
            "public, s-maxage=60".parse().unwrap(),
        );
        response.insert(header::ETAG, "\"v\"".parse().unwrap());
        response.insert(CDN_CACHE_CONTROL, "max-age=30".parse().unwrap());
        response.insert("x-request-id", "abc".parse().unwrap());
        response.insert("x-obs", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let mut written =
            headers_to_store(&response, 203, &stored(), "/api/v1/entities/FR", 7).unwrap();
        assert_eq!(written[header::CACHE_CONTROL], "public, max-age=660");
        assert_eq!(written[header::CONTENT_LENGTH], "7");
        assert!(
            !written.contains_key(CDN_CACHE_CONTROL),
            "the runtime's cache would obey it"
        );
        assert!(!written.contains_key("x-request-id"));
        let meta = read_stored(&mut written).unwrap();
        assert_eq!(meta.stored, stored());
        assert_eq!(meta.status, 203);
        assert_eq!(written[header::CACHE_CONTROL], "public, s-maxage=60");
        assert_eq!(written[header::ETAG], "\"v\"");
        assert_eq!(written[CDN_CACHE_CONTROL], "max-age=30");
        assert_eq!(written["x-obs"].as_bytes(), b"caf\xe9");
        assert!(!written.contains_key(META_HEADER));
    }

    #[test]
    fn fingerprinted_assets_get_the_immutable_policy() {
        let mut written = headers_to_store(
            &HeaderMap::new(),
            200,
            &stored(),
            "/static/app.3f9a2c1b.js",
            0,
        )
        .unwrap();
        read_stored(&mut written).unwrap();
        assert_eq!(written[header::CACHE_CONTROL], static_assets::IMMUTABLE);
    }

    #[test]
    fn foreign_entries_are_misses() {
        let mut headers = HeaderMap::new();
        headers.insert(META_HEADER, "not json".parse().unwrap());
        assert!(read_stored(&mut headers).is_none());
    }
}
