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
