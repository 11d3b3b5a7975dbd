//! The Forecastin edge: a Cloudflare Worker that is a shared HTTP cache (RFC 9111) in front of
//! the origin.
//!
//! [`core`] holds every decision (cache keys, storability, freshness, stale serving, header
//! rewriting, purge validation) as platform-neutral Rust; `worker` (built for wasm32 only) is
//! the thin workers-rs adapter that runs them against the Cache API, `fetch` and a Durable
//! Object that indexes stored entries for purges by tag and prefix.

pub mod core;
#[cfg(target_arch = "wasm32")]
mod worker;
