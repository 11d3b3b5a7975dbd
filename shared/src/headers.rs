//! Header names exchanged between origin, edge and clients (all lower-case, as HTTP/2 sends them).

/// Cloudflare's tag header: comma-separated cache tags on an origin response.
pub const CACHE_TAG: &str = "cache-tag";
/// Fastly's tag header: space-separated surrogate keys on an origin response.
pub const SURROGATE_KEY: &str = "surrogate-key";
/// Fastly's edge-only cache policy.
pub const SURROGATE_CONTROL: &str = "surrogate-control";
/// RFC 9213 targeted cache policy for CDNs.
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";
/// RFC 9211 cache status, added by the edge.
pub const CACHE_STATUS: &str = "cache-status";
/// A request's id, from the client or the edge, returned on the response (see
/// [`crate::request_id`]).
pub const REQUEST_ID: &str = "x-request-id";
/// W3C Trace Context: `version-traceid-parentid-flags`.
pub const TRACEPARENT: &str = "traceparent";
/// Unix seconds at which a purge request was signed.
pub const PURGE_TIMESTAMP: &str = "x-forecastin-timestamp";
/// A fresh random string naming one purge request, refused if seen twice.
pub const PURGE_NONCE: &str = "x-forecastin-nonce";
/// Hex HMAC-SHA256 of a purge request (see [`crate::signing`]).
pub const PURGE_SIGNATURE: &str = "x-forecastin-signature";
/// The edge's credential on every request it sends the origin (`EDGE_AUTH` on both sides):
/// an origin that has one configured answers its public routes to the edge only.
pub const EDGE_AUTH: &str = "x-forecastin-edge-auth";

/// Headers that only the CDN may see: the edge removes them before answering a client.
pub const EDGE_ONLY: [&str; 4] = [
    CACHE_TAG,
    SURROGATE_KEY,
    SURROGATE_CONTROL,
    CDN_CACHE_CONTROL,
];
