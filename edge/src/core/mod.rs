//! The edge's decisions, as plain Rust over `http` types: no runtime, no I/O, unit-tested
//! natively. The Worker adapter (`crate::worker`) feeds it request and response metadata and
//! carries out what it decides.

pub mod directives;
pub mod freshness;
pub mod key;
pub mod purge;
pub mod request;
pub mod static_assets;
pub mod status;
pub mod stored;

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
