//! What the client sees: the `Cache-Status` (RFC 9211) and `Server-Timing` the edge adds, and
//! the internal headers it removes.

use std::fmt;

use forecastin_shared::headers::CACHE_STATUS;
use http::{header, HeaderMap, HeaderValue};

use super::stored::INTERNAL;

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
