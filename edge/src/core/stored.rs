//! How a response is written into and read back from the runtime's cache storage.
//!
//! The runtime's storage (the Workers Cache API) expires entries by their `Cache-Control`, and
//! must keep them through their stale windows, so the stored copy carries a storage-only
//! `Cache-Control` (`max-age` = retention) and the edge's own bookkeeping in one internal
//! header: the [`Stored`] facts and the origin's `Cache-Control` to give back to clients.

use http::{header, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{freshness::Stored, static_assets};

/// The internal header holding the edge's bookkeeping on a stored response.
pub const META_HEADER: &str = "x-forecastin-edge-meta";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub stored: Stored,
    /// The `Cache-Control` clients get (the origin's, or the immutable policy of a
    /// fingerprinted asset).
    pub client_cache_control: Option<String>,
}

/// The headers to store with a response: its own, with the storage-only `Cache-Control` and
/// the bookkeeping header.
pub fn headers_to_store(response: &HeaderMap, stored: &Stored, path: &str) -> HeaderMap {
    let mut headers = response.clone();
    let client_cache_control = if static_assets::is_fingerprinted(path) {
        Some(static_assets::IMMUTABLE.to_owned())
    } else {
        response
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let meta = Meta {
        stored: stored.clone(),
        client_cache_control,
    };
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", stored.retention()))
            .expect("digits are a valid header"),
    );
    headers.insert(
        META_HEADER,
        HeaderValue::from_str(&serde_json::to_string(&meta).expect("meta serializes"))
            .expect("JSON of ASCII-safe fields is a valid header"),
    );
    headers
}

/// Reads the bookkeeping back and restores the client-facing `Cache-Control`. `None` when
/// the entry was not written by this edge (or by an incompatible version): treat as a miss.
pub fn read_stored(headers: &mut HeaderMap) -> Option<Meta> {
    let meta: Meta = headers
        .remove(META_HEADER)
        .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())?;
    headers.remove(header::CACHE_CONTROL);
    if let Some(value) = meta
        .client_cache_control
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    Some(meta)
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
        }
    }

    #[test]
    fn stored_headers_round_trip() {
        let mut response = HeaderMap::new();
        response.insert(
            header::CACHE_CONTROL,
            "public, s-maxage=60".parse().unwrap(),
        );
        response.insert(header::ETAG, "\"v\"".parse().unwrap());
        let mut written = headers_to_store(&response, &stored(), "/api/v1/entities/FR");
        assert_eq!(written[header::CACHE_CONTROL], "public, max-age=660");
        let meta = read_stored(&mut written).unwrap();
        assert_eq!(meta.stored, stored());
        assert_eq!(written[header::CACHE_CONTROL], "public, s-maxage=60");
        assert_eq!(written[header::ETAG], "\"v\"");
        assert!(!written.contains_key(META_HEADER));
    }

    #[test]
    fn fingerprinted_assets_get_the_immutable_policy() {
        let mut written = headers_to_store(&HeaderMap::new(), &stored(), "/static/app.3f9a2c1b.js");
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
