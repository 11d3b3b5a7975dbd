//! What the client sees: the `Cache-Status` (RFC 9211) and `Server-Timing` the edge adds, and
//! the internal headers it removes; and which requests the request log keeps, by their status.

use std::fmt;

use forecastin_shared::headers::CACHE_STATUS;
use http::{header, HeaderMap, HeaderValue};

use super::{request::BypassReason, stored::INTERNAL};

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "forecastin-edge";

/// Why the edge went to the origin (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Bypass,
    Method,
    UriMiss,
    VaryMiss,
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheStatus {
    /// Served from the cache.
    pub hit: bool,
    pub fwd: Option<Forward>,
    /// The origin's status when it was asked.
    pub fwd_status: Option<u16>,
    /// Remaining freshness of the response served, seconds (negative: stale).
    pub ttl: Option<i64>,
    /// The response was stored.
    pub stored: bool,
    pub detail: Option<&'static str>,
}

impl From<BypassReason> for Forward {
    fn from(reason: BypassReason) -> Self {
        match reason {
            BypassReason::Method => Forward::Method,
            BypassReason::Upgrade | BypassReason::Private => Forward::Bypass,
        }
    }
}

/// The `detail` of a stored response served because the origin failed (RFC 5861).
pub const STALE_IF_ERROR: &str = "stale-if-error";

impl CacheStatus {
    /// A hit and nothing more: neither the origin asked (`fwd`) nor a stale hit (`detail`).
    pub fn is_plain_hit(&self) -> bool {
        self.hit && self.fwd.is_none() && self.detail.is_none()
    }

    /// A stored response standing in for an origin that failed.
    pub fn is_stale_on_error(&self) -> bool {
        self.detail == Some(STALE_IF_ERROR)
    }

    pub fn hit(ttl: i64) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    pub fn forward(fwd: Forward) -> Self {
        Self {
            fwd: Some(fwd),
            ..Self::default()
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CACHE_NAME)?;
        if self.hit {
            f.write_str("; hit")?;
        }
        if let Some(fwd) = self.fwd {
            let fwd = match fwd {
                Forward::Bypass => "bypass",
                Forward::Method => "method",
                Forward::UriMiss => "uri-miss",
                Forward::VaryMiss => "vary-miss",
                Forward::Stale => "stale",
            };
            write!(f, "; fwd={fwd}")?;
        }
        if let Some(status) = self.fwd_status {
            write!(f, "; fwd-status={status}")?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, "; ttl={ttl}")?;
        }
        if self.stored {
            f.write_str("; stored")?;
        }
        if let Some(detail) = self.detail {
            write!(f, "; detail={detail}")?;
        }
        Ok(())
    }
}

/// Whether the request log keeps a request's line: every request the edge did not answer from
/// storage alone (it reached the origin, failed, was the edge's own, or was a hit served while
/// the edge revalidates), and one plain hit in `hits_one_in` (none for 0), by `draw` (uniform
/// in [0, 1)). A console line costs a hit in workerd as much as the rest of its work (measured
/// in BENCHMARKS.md), and only the requests that reach the origin need their line to follow
/// them there.
pub fn logged(cache_status: Option<&CacheStatus>, hits_one_in: u32, draw: f64) -> bool {
    let plain_hit = cache_status.is_some_and(CacheStatus::is_plain_hit);
    !plain_hit || (hits_one_in > 0 && draw * f64::from(hits_one_in) < 1.0)
}

/// Rewrites a response's headers for the client: internal headers out; `Age` (the current
/// age, when known) and `Cache-Status` in.
pub fn for_client(headers: &mut HeaderMap, status: &CacheStatus, age: Option<u64>) {
    for name in INTERNAL {
        headers.remove(name);
    }
    match age {
        Some(age) => {
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        None => {
            headers.remove(header::AGE);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&status.to_string()) {
        headers.insert(CACHE_STATUS, value);
    }
}

/// Adds the edge's time on the request (`Server-Timing: edge;dur=…`, milliseconds).
pub fn add_server_timing(headers: &mut HeaderMap, edge_ms: u64) {
    if let Ok(value) = HeaderValue::from_str(&format!("edge;dur={edge_ms}")) {
        headers.append("server-timing", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::stored::META_HEADER;

    #[test]
    fn every_request_but_a_hit_is_logged_and_hits_at_their_rate() {
        let hit = CacheStatus::hit(3599);
        let miss = CacheStatus {
            fwd: Some(Forward::UriMiss),
            fwd_status: Some(200),
            stored: true,
            ..CacheStatus::default()
        };
        let revalidating = CacheStatus {
            detail: Some("stale-while-revalidate"),
            ..CacheStatus::hit(-3)
        };
        let on_error = CacheStatus {
            fwd: Some(Forward::Stale),
            fwd_status: Some(503),
            ttl: Some(-9),
            detail: Some(STALE_IF_ERROR),
            ..CacheStatus::default()
        };
        for status in [None, Some(&miss), Some(&revalidating), Some(&on_error)] {
            assert!(logged(status, 0, 0.5), "{status:?}");
        }
        let hit = Some(&hit);
        assert!(!logged(hit, 0, 0.0));
        assert!(!logged(hit, 100, 0.5));
        assert!(logged(hit, 100, 0.005));
        assert!(logged(hit, 1, 0.999_999));
    }

    #[test]
    fn a_bypass_is_forwarded_as_what_it_is() {
        assert_eq!(Forward::from(BypassReason::Method), Forward::Method);
        assert_eq!(Forward::from(BypassReason::Upgrade), Forward::Bypass);
        assert_eq!(Forward::from(BypassReason::Private), Forward::Bypass);
    }

    #[test]
    fn cache_status_table() {
        let cases = [
            (CacheStatus::hit(42), "forecastin-edge; hit; ttl=42"),
            (
                CacheStatus {
                    stored: true,
                    ..CacheStatus::forward(Forward::UriMiss)
                },
                "forecastin-edge; fwd=uri-miss; stored",
            ),
            (
                CacheStatus {
                    fwd_status: Some(304),
                    ttl: Some(60),
                    ..CacheStatus::forward(Forward::Stale)
                },
                "forecastin-edge; fwd=stale; fwd-status=304; ttl=60",
            ),
            (
                CacheStatus {
                    detail: Some("stale-while-revalidate"),
                    ..CacheStatus::hit(-3)
                },
                "forecastin-edge; hit; ttl=-3; detail=stale-while-revalidate",
            ),
            (
                CacheStatus::forward(Forward::Method),
                "forecastin-edge; fwd=method",
            ),
            (
                CacheStatus::forward(Forward::Bypass),
                "forecastin-edge; fwd=bypass",
            ),
            (
                CacheStatus::forward(Forward::VaryMiss),
                "forecastin-edge; fwd=vary-miss",
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(status.to_string(), expected);
        }
    }

    #[test]
    fn internal_headers_never_reach_the_client() {
        let mut headers = HeaderMap::new();
        for name in [
            "cache-tag",
            "surrogate-key",
            "surrogate-control",
            "cdn-cache-control",
            META_HEADER,
            "cf-cache-status",
            "age",
        ] {
            headers.insert(name, "x".parse().unwrap());
        }
        headers.insert("etag", "\"v\"".parse().unwrap());
        for_client(&mut headers, &CacheStatus::forward(Forward::UriMiss), None);
        add_server_timing(&mut headers, 3);
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["cache-status", "cdn-cache-control", "etag", "server-timing"]
        );
        assert_eq!(headers["server-timing"], "edge;dur=3");

        for_client(&mut headers, &CacheStatus::hit(5), Some(12));
        assert_eq!(headers["age"], "12");
    }
}
