//! A request for one key as the adapter carries it out (a reader's, a fetch ahead, a
//! refresh), and the reads of the entry stored under that key.

use std::{rc::Rc, time::Duration};

use url::Url;
use worker::{Env, Result};

use super::{runtime, Settings, StoredResponse};
use crate::core::{
    cache::{CacheableRequest, Entry},
    stored::hit_fields,
    target::Target,
};

/// What a request needs besides the core's view of it.
#[derive(Clone)]
pub struct Job {
    pub request: CacheableRequest,
    pub key: String,
    pub target: Target,
    /// The isolate's settings: the origin, its credential, the purge index.
    pub settings: Rc<Settings>,
    pub env: Env,
    pub timeout: std::time::Duration,
    /// A floor for when its fetch started, as the index is told.
    pub fetched_after_ms: u64,
}

impl Job {
    /// A reader's request for `key`.
    pub fn new(
        request: CacheableRequest,
        key: String,
        target: Target,
        env: &Env,
        settings: &Rc<Settings>,
    ) -> Self {
        Job {
            request,
            key,
            target,
            settings: Rc::clone(settings),
            env: env.clone(),
            timeout: settings.timeout,
            fetched_after_ms: 0,
        }
    }

    /// The page under `key` (a cache key: a URL), as a request without client headers would
    /// ask for it, within `timeout`; none for a key that is not a page this edge serves.
    pub fn anonymous(
        key: String,
        env: &Env,
        settings: &Rc<Settings>,
        timeout: Duration,
    ) -> Option<Self> {
        let url = Url::parse(&key).ok()?;
        let target = Target::parse(&url).ok()?;
        let request = CacheableRequest::anonymous(target.path.clone());
        Some(Job {
            timeout,
            ..Job::new(request, key, target, env, settings)
        })
    }

    /// The URL the origin is asked at; made only when it is (never for a hit).
    pub fn origin_url(&self) -> Url {
        self.target.origin_url(&self.settings.origin)
    }
}

/// The entry stored under `key` with the fields a hit needs ([`hit_fields`]), its body
/// unread; a storage error reads as a miss.
pub async fn read(key: &str) -> Option<(Entry, StoredResponse)> {
    let response = match runtime::cache_match(key).await {
        Ok(found) => found?,
        Err(err) => {
            worker::console_warn!("cache read failed for {key}: {err}");
            return None;
        }
    };
    let headers = runtime::selected_fields(&response.headers(), hit_fields());
    // The stored Content-Length is the edge's own (see `headers_to_store`).
    let body_len = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())?;
    let entry = Entry::read(headers.clone(), body_len)?;
    Some((entry, StoredResponse { response, headers }))
}

/// The entry with all its stored fields, for a revalidation that may store it again.
pub fn whole(entry: &Entry, response: StoredResponse) -> Option<(Entry, StoredResponse)> {
    let headers = runtime::header_map(&response.response.headers());
    let entry = Entry::read(headers.clone(), entry.body_len)?;
    Some((
        entry,
        StoredResponse {
            response: response.response,
            headers,
        },
    ))
}

/// A second handle on a stored response, its body teed by the runtime.
pub fn copy(stored: &StoredResponse) -> Result<StoredResponse> {
    Ok(StoredResponse {
        response: stored.response.clone()?,
        headers: stored.headers.clone(),
    })
}

/// The bytes of a stored body, read from a copy so the original can still be streamed.
pub async fn stored_bytes(stored: &StoredResponse) -> Option<Vec<u8>> {
    let copy = copy(stored).ok()?;
    runtime::bytes(&copy.response).await.ok()
}
