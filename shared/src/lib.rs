//! The contract between the Forecastin origin and its edge Worker.
//!
//! Everything both sides must agree on lives here, so they cannot drift apart: the JSON shapes
//! of the API (`dto`), conditional-request matching (`conditional`), the cache-tag scheme that decides what a data change purges (`tags`),
//! the header names they exchange (`headers`), the pages a response asks to preload (`preload`), what a purge may name (`purges`), each query parameter's canonical form and bound (`params`), which request ids are taken from a client (`request_id`), the public routes and the query parameters each reads (`routes`) and the signing of purge requests (`signing`).
//! The crate is plain Rust with no runtime or I/O, so it builds for the origin (native) and for
//! the Worker (`wasm32-unknown-unknown`) alike.

pub mod conditional;
pub mod dto;
pub mod headers;
pub mod ids;
pub mod params;
pub mod preload;
pub mod purges;
pub mod request_id;
pub mod routes;
pub mod signing;
pub mod tags;
