//! The caching contract of public GET responses: rendering with a strong `ETag` and cache tags,
//! serving from and filling the L1 cache, and answering conditional requests with 304.

use std::{future::Future, sync::Arc};

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use forecastin_shared::{conditional::none_match, headers, preload, tags};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::{
    cache::{
        flights::{follow, Flights, Turn},
        l1::{Preloads, Rendered, L1},
        l2::{self, L2},
        warm::{self, Warmer},
    },
    error::ApiError,
    flags,
    ops::metrics,
};

/// The response tiers between a request and the database, and how their responses are kept.
pub struct Caching {
    /// `None` when L1 is turned off (`L1_CAPACITY=0`).
    pub l1: Option<Arc<L1>>,
    /// `None` without Redis or with `L2_TTL_SECS=0`.
    pub l2: Option<Arc<L2>>,
    /// L1 misses being computed, which concurrent misses for the same key wait for.
    pub flights: Flights,
    /// What is hot, and the preloading it drives.
    pub warmer: Arc<Warmer>,
    /// The `Cache-Control` value of public GET responses.
    pub control: HeaderValue,
    /// Largest body kept in L1 or L2.
    pub max_body: usize,
}

/// A freshly computed response body, the tags it depends on, and the pages its reader is
/// likely to open next.
pub struct Fresh {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub tags: Vec<String>,
    pub preload: Vec<String>,
}

impl Fresh {
    pub fn ok(body: &impl serde::Serialize, tags: Vec<String>) -> Self {
        Self {
            status: StatusCode::OK,
            body: serde_json::to_vec(body).expect("DTOs serialize"),
            tags,
            preload: Vec::new(),
        }
    }

    /// Names `paths` as the pages to preload after this one.
    pub fn preloading(self, paths: Vec<String>) -> Self {
        Self {
            preload: paths,
            ..self
        }
    }
}

/// A strong validator: the first 128 bits of the body's SHA-256, quoted.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

fn render(fresh: Fresh) -> Rendered {
    let header_value = |value: String| {
        HeaderValue::try_from(value).expect("tags hold only id characters and separators")
    };
    let etag = etag_of(&fresh.body);
    // Ids are path-safe, so the link holds; should it not, nothing is preloaded.
    let preloads = if fresh.preload.is_empty() {
        None
    } else {
        HeaderValue::try_from(preload::link_value(&fresh.preload))
            .ok()
            .map(|link| Preloads {
                link,
                etag_without: header_value(without_preloads(&etag)),
            })
    };
    Rendered {
        status: fresh.status,
        etag: header_value(etag),
        cache_tag: header_value(tags::cache_tag_header(&fresh.tags)),
        surrogate_key: header_value(tags::surrogate_key_header(&fresh.tags)),
        body: Bytes::from(fresh.body),
        tags: fresh.tags,
        preloads,
    }
}

/// Serves the response for `key` from L1, or computes it with `produce`, stores it in L1 and
/// serves it. Concurrent misses for one key share one computation ([`crate::cache::flights`]). A 404
/// about an entity is cached too (tagged with that entity, so creating it purges the 404);
/// other errors are neither cached nor cacheable.
pub async fn serve_cached<F, Fut>(
    state: &AppState,
    key: String,
    request: &HeaderMap,
    produce: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Fresh, ApiError>>,
{
    // Without coordination (ff.horizontal_scaling off for this instance) the shared tiers are
    // not trusted: L1 entries are bounded in age and L2 is not used.
    let coordinated = state.flags.on_this_instance(flags::HORIZONTAL_SCALING);
    let mut leader = None;
    if let Some(l1) = &state.cache.l1 {
        if let Some(hit) = l1.get(&key, state.cluster.bus.l1_max_age(coordinated)) {
            ::metrics::counter!(metrics::L1_HITS).increment(1);
            return respond(&hit, &key, request, state);
        }
        ::metrics::counter!(metrics::L1_MISSES).increment(1);
        // A leader that ends without a response (an error, its client gone) hands the read to
        // one of its followers, not to all of them at once.
        while leader.is_none() {
            match state.cache.flights.join(&key, l1.epoch()) {
                Turn::Lead(turn) => leader = Some(turn),
                Turn::Follow(outcome) => {
                    if let Some(rendered) = follow(outcome).await {
                        ::metrics::counter!(metrics::COLLAPSED).increment(1);
                        return respond(&rendered, &key, request, state);
                    }
                }
            }
        }
    }
    match compute(state, key.clone(), coordinated, produce).await {
        Ok(rendered) => {
            if let Some(leader) = leader {
                leader.land(rendered.clone());
            }
            respond(&rendered, &key, request, state)
        }
        Err(response) => response,
    }
}

/// The response for `key` from L2 or from `produce`, kept in the tiers it fits in; an error
/// comes back as its response.
async fn compute<F, Fut>(
    state: &AppState,
    key: String,
    coordinated: bool,
    produce: F,
) -> Result<Arc<Rendered>, Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Fresh, ApiError>>,
{
    let epoch = state.cache.l1.as_ref().map(|l1| l1.epoch());
    let l2 = state.cache.l2.as_deref().filter(|_| coordinated);
    if let Some(stored) = match l2 {
        Some(l2) => l2.get(&key).await,
        None => None,
    } {
        let fresh = Fresh {
            status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
            body: stored.body.into_bytes(),
            tags: stored.tags,
            preload: stored.preload,
        };
        return Ok(remember(state, key, fresh, epoch));
    }
    let sequence = match l2 {
        Some(l2) => l2.sequence().await,
        None => None,
    };
    let cause = if warm::warming() {
        "preload"
    } else {
        "request"
    };
    ::metrics::counter!(metrics::RENDERS, "cause" => cause).increment(1);
    let fresh = match produce().await {
        Ok(fresh) => fresh,
        Err(ApiError::EntityNotFound(id)) => Fresh {
            status: StatusCode::NOT_FOUND,
            tags: vec![tags::entity(&id)],
            body: serde_json::to_vec(&ApiError::EntityNotFound(id).body()).expect("DTOs serialize"),
            preload: Vec::new(),
        },
        Err(err) => return Err(err.into_response()),
    };
    if fresh.body.len() > state.cache.max_body {
        // Served, not kept: one huge page must not take a tier's memory.
        return Ok(Arc::new(render(fresh)));
    }
    if let (Some(l2), Some(sequence)) = (l2, sequence) {
        let stored = l2::Entry {
            status: fresh.status.as_u16(),
            body: String::from_utf8_lossy(&fresh.body).into_owned(),
            tags: fresh.tags.clone(),
            preload: fresh.preload.clone(),
        };
        l2.fill(&key, &stored, &sequence).await;
    }
    Ok(remember(state, key, fresh, epoch))
}

/// Renders `fresh` and keeps it in L1 unless an invalidation intervened.
fn remember(
    state: &AppState,
    key: String,
    fresh: Fresh,
    epoch: Option<crate::cache::l1::Epoch>,
) -> Arc<Rendered> {
    let rendered = Arc::new(render(fresh));
    if let (Some(l1), Some(epoch)) = (&state.cache.l1, epoch) {
        l1.insert_if_current(key, rendered.clone(), epoch);
    }
    rendered
}

/// What a response outside `ff.cdn_integration`'s rollout tells the CDN: not to store it
/// (RFC 9213 for Cloudflare, `Surrogate-Control` for Fastly); browsers still follow
/// `Cache-Control`.
const NOT_FOR_THE_CDN: HeaderValue = HeaderValue::from_static("no-store");

fn respond(rendered: &Rendered, key: &str, request: &HeaderMap, state: &AppState) -> Response {
    // A cache keeps the fields a 304 does not repeat: a page served without the preloads it
    // names (preloading off) is another representation, with another validator, so that a
    // copy stored with them is replaced rather than revalidated.
    let (etag, link) = match &rendered.preloads {
        Some(preloads) if state.flags.on_this_instance(flags::PREDICTIVE_PRELOAD) => {
            (&rendered.etag, Some(&preloads.link))
        }
        Some(preloads) => (&preloads.etag_without, None),
        None => (&rendered.etag, None),
    };
    let not_modified = rendered.status == StatusCode::OK
        && request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| none_match(v, etag.to_str().unwrap_or_default()));
    // A 304 carries no Content-Type: a cache merges the 304's fields into the response it
    // stored (RFC 9111 §3.2), so one here would replace the stored JSON type.
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (rendered.status, rendered.body.clone()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, state.cache.control.clone());
    headers.insert(headers::CACHE_TAG, rendered.cache_tag.clone());
    headers.insert(headers::SURROGATE_KEY, rendered.surrogate_key.clone());
    if !state.flags.enabled(flags::CDN_INTEGRATION, key) {
        headers.insert(headers::CDN_CACHE_CONTROL, NOT_FOR_THE_CDN);
        headers.insert(headers::SURROGATE_CONTROL, NOT_FOR_THE_CDN);
    }
    if let Some(link) = link {
        headers.insert(header::LINK, link.clone());
    }
    response
}

/// The validator of a page served without the preloads it names.
pub fn without_preloads(etag: &str) -> String {
    format!("\"{}-p0\"", etag.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_change_with_the_body() {
        assert_eq!(etag_of(b"x"), etag_of(b"x"));
        assert_ne!(etag_of(b"x"), etag_of(b"y"));
        assert_eq!(etag_of(b"x").len(), 34);
    }
}
