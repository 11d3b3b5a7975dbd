//! The edge's decisions, as plain Rust over `http` types: no runtime, no I/O, unit-tested
//! natively. The Worker adapter (`crate::worker`) feeds it request and response metadata and
//! carries out what it decides.
//!
//! - [`request`] classifies a request and picks the headers the origin gets; [`target`]
//!   normalises its path and query into the cache key and the origin URL.
//! - [`cache`] is the state machine (before the origin, after it, after a failure), built on
//!   [`freshness`] (RFC 9111 storage and freshness), [`directives`] and [`structured`]
//!   (cache directive parsing), [`range`], [`stored`] (the bookkeeping kept with an entry)
//!   and [`status`] (what the client sees).
//! - [`purge`] authenticates and resolves the edge's purge requests; [`hot`] counts the
//!   reads that decide what a soft purge refreshes first.
//! - [`claims`] says who in an isolate fetches, refreshes or fetches ahead a key, and who
//!   waits or leaves it.
//! - [`fields`] reads header values whatever their bytes.

pub mod cache;
pub mod claims;
pub mod directives;
pub mod fields;
pub mod freshness;
pub mod hot;
pub mod purge;
pub mod range;
pub mod request;
pub mod static_assets;
pub mod status;
pub mod stored;
pub mod structured;
pub mod target;

/// A header map from name/value pairs, for the tables of the tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            )
        })
        .collect()
}
