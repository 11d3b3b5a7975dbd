//! Filling storage from the origin: ask it, store what the core says to store, and register
//! the entry with the purge index (keeping it only briefly when the index cannot take it).

use http::HeaderMap;
use worker::Context;

use super::{
    collapse::Leader,
    job::{stored_bytes, Job},
    now_ms, origin, runtime, StoredResponse,
};
use crate::core::{
    cache::{
        after_failure, after_response, AfterResponse, Answer, Body, Entry, OriginResponse, Store,
    },
    freshness::Exchange,
    purge::tags_of,
    status::Forward,
    stored::{kept_briefly, META_HEADER, STORAGE_STATUS},
};

/// When the index hears of a stored entry: after the answer, in `background` (a reader's
/// fetch), or before the fill returns (already in the background). `lead`, the fetch other
/// misses wait for, ends once the entry is registered: a waiter must not read an entry the
/// index may still take back out.
pub struct Registration<'a> {
    pub background: Option<&'a Context>,
    pub lead: Option<Leader>,
}

impl Registration<'_> {
    /// Registered before the fill returns, nobody waiting on it.
    pub fn at_once() -> Self {
        Registration {
            background: None,
            lead: None,
        }
    }
}

/// What an exchange with the origin gave.
pub struct Exchanged {
    pub answer: Answer,
    /// The origin's body.
    pub body: Vec<u8>,
    /// Whether a response was stored.
    pub stored: bool,
}

/// Asks the origin, stores what the core says to store, and returns the answer with the
/// origin's body; the entry is registered as `registration` says.
pub async fn exchange(
    job: &Job,
    registration: Registration<'_>,
    stored: Option<&(Entry, StoredResponse)>,
    mut headers: HeaderMap,
    mut fwd: Forward,
) -> Exchanged {
    let entry = stored.map(|(entry, _)| entry);
    let origin_url = job.origin_url();
    // Twice at most: a 304 about another representation is asked again unconditionally.
    for _ in 0..2 {
        let request_ms = now_ms();
        let to = origin::Address {
            url: &origin_url,
            credential: job.settings.edge_auth.as_deref(),
        };
        let fetched = match origin::fetch_whole(to, &headers, job.timeout).await {
            Ok(fetched) => fetched,
            Err(failure) => {
                return Exchanged {
                    answer: after_failure(&job.request, entry, failure, now_ms()),
                    body: Vec::new(),
                    stored: false,
                }
            }
        };
        let response = OriginResponse {
            status: fetched.status,
            headers: fetched.headers,
            body_len: fetched.body.len(),
            exchange: Exchange {
                request_ms,
                response_ms: now_ms(),
            },
        };
        match after_response(&job.request, entry, fwd, response) {
            AfterResponse::FetchUnconditionally { headers: again } => {
                // Asked again as a plain fetch: no 304 merge, but the stored response can
                // still stand in if the origin fails (stale-if-error).
                headers = again;
                fwd = Forward::UriMiss;
            }
            AfterResponse::Done { store, answer } => {
                let mut written = false;
                if let Some(store) = store {
                    let body = match (&store.body, stored) {
                        (Body::Stored, Some((_, response))) => stored_bytes(response).await,
                        _ => Some(fetched.body.clone()),
                    };
                    if let Some(body) = body {
                        written = write(job, registration, store, body, request_ms).await;
                    }
                }
                return Exchanged {
                    answer,
                    body: fetched.body,
                    stored: written,
                };
            }
        }
    }
    Exchanged {
        answer: crate::core::cache::error(
            502,
            "origin_bad_response",
            "the origin's validators disagree".into(),
        ),
        body: Vec::new(),
        stored: false,
    }
}

/// How long storage keeps an entry the index could not take: a purge by tag or prefix misses
/// it for this long at most.
const UNINDEXED_SECS: u64 = 10;

/// Stores an entry again for [`UNINDEXED_SECS`] only, if storage still holds this very entry
/// (its bookkeeping, which carries the moment it was stored, unchanged): one a purge deleted
/// meanwhile stays deleted, and a newer fill is not overwritten. Deletes it if even that fails.
async fn keep_briefly(key: &str, headers: &HeaderMap, body: &[u8]) {
    let ours = headers.get(META_HEADER);
    let still_ours = match runtime::cache_match(key).await {
        Ok(Some(stored)) => stored
            .headers()
            .get(META_HEADER)
            .ok()
            .flatten()
            .is_some_and(|meta| ours.is_some_and(|ours| ours.as_bytes() == meta.as_bytes())),
        _ => false,
    };
    if !still_ours {
        return;
    }
    let brief = kept_briefly(headers, UNINDEXED_SECS);
    let stored = match runtime::response(STORAGE_STATUS, &brief, Some(body)) {
        Ok(response) => runtime::cache_put(key, &response).await,
        Err(err) => Err(err),
    };
    if let Err(err) = stored {
        worker::console_warn!("keeping {key} briefly failed: {err}");
        let _ = runtime::cache_delete(key).await;
    }
}

/// Writes an entry to storage, then registers it with the index (see [`Registration`]);
/// returns whether storage took it.
async fn write(
    job: &Job,
    Registration { background, lead }: Registration<'_>,
    store: Store,
    body: Vec<u8>,
    fetch_started_ms: u64,
) -> bool {
    let tags = tags_of(&store.headers);
    let retention_ms = store.retention * 1000;
    let response = match runtime::response(STORAGE_STATUS, &store.headers, Some(&body)) {
        Ok(response) => response,
        Err(err) => {
            worker::console_warn!("not storing {}: {err}", job.key);
            return false;
        }
    };
    if let Err(err) = runtime::cache_put(&job.key, &response).await {
        worker::console_warn!("cache put failed for {}: {err}", job.key);
        return false;
    }
    let Some(index) = job.settings.index else {
        return true;
    };
    let (env, key) = (job.env.clone(), job.key.clone());
    let fetch_started_ms = fetch_started_ms.max(job.fetched_after_ms);
    let registration = async move {
        let expires_at_ms = now_ms() + retention_ms;
        match index
            .register(&env, &key, tags, fetch_started_ms, expires_at_ms)
            .await
        {
            Ok(true) => {}
            // A purge ran during the fetch: what was fetched may predate it.
            Ok(false) => {
                let _ = runtime::cache_delete(&key).await;
            }
            // Unindexed, a purge by tag or prefix would miss it: kept briefly, not dropped, so
            // an index in trouble does not turn caching off.
            Err(err) => {
                worker::console_warn!(
                    "index registration failed for {key}: {err}; kept {UNINDEXED_SECS} s"
                );
                keep_briefly(&key, &store.headers, &body).await;
            }
        }
        drop(lead);
    };
    match background {
        Some(ctx) => ctx.wait_until(registration),
        None => registration.await,
    }
    true
}
