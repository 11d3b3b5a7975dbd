//! Serving a cacheable request: read the stored entry, ask [`crate::core::cache`] what to do,
//! and do it — answer from storage, fetch from the origin (one fetch per key at a time, see
//! [`collapse`]), store, refresh in the background, and fetch ahead the pages the answer names
//! as the reader's likely next ones.

use std::cell::RefCell;

use forecastin_shared::preload::preloaded_paths;
use http::{header, HeaderMap};
use url::Url;
use worker::{
    js_sys::{Array, Promise},
    wasm_bindgen::JsValue,
    wasm_bindgen_futures::{future_to_promise, JsFuture},
    Context, Env, Result,
};

use super::{
    collapse::{self, Leader, Role},
    index::Index,
    now_ms, origin, runtime, Bodies, Handled, Settings, StoredResponse,
};
use crate::core::{
    cache::{
        after_failure, after_response, before_refresh, before_request, AfterResponse, Answer,
        BeforeRequest, Body, CacheableRequest, Entry, OriginResponse, Store,
    },
    claims::{Claim, FetchAhead, Refreshes},
    freshness::Exchange,
    hot::HotKeys,
    purge::tags_of,
    status::{CacheStatus, Forward},
    stored::{hit_fields, kept_briefly, META_HEADER, STORAGE_STATUS},
    target::Target,
};

thread_local! {
    /// How often readers asked this isolate for each key lately, hits and misses: a soft
    /// purge refreshes the most read first. Misses count too: a page every purge deletes is
    /// read as a miss each time, and is what most needs refreshing.
    static HOT: RefCell<HotKeys> = RefCell::new(HotKeys::default());
    /// Keys being refreshed in the background by this isolate.
    static REFRESHING: RefCell<Refreshes> = RefCell::new(Refreshes::default());
    /// Keys this isolate fetched ahead lately.
    static FETCHED_AHEAD: RefCell<FetchAhead> = RefCell::new(FetchAhead::default());
}

/// What a request needs besides the core's view of it.
#[derive(Clone)]
struct Job {
    request: CacheableRequest,
    key: String,
    origin_url: Url,
    /// The edge's credential at the origin (see `Settings`).
    credential: Option<String>,
    env: Env,
    timeout: std::time::Duration,
    /// Where stored entries are indexed for edge-direct purges, if anywhere.
    index: Option<Index>,
    /// A floor for when its fetch started, as the index is told.
    fetched_after_ms: u64,
}

pub async fn serve(
    request: CacheableRequest,
    key: String,
    origin_url: Url,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
) -> Result<Handled> {
    let job = Job {
        request,
        key,
        origin_url,
        credential: settings.edge_auth.clone(),
        env: env.clone(),
        timeout: settings.timeout,
        index: settings.index,
        fetched_after_ms: 0,
    };
    HOT.with(|hot| hot.borrow_mut().count(&job.key, now_ms()));
    let handled = answer(&job, ctx).await;
    if let Handled::Answer(answer, _) = &handled {
        // A stored page served because the origin failed: the origin is not asked for more.
        let on_error = answer
            .cache
            .as_deref()
            .is_some_and(CacheStatus::is_stale_on_error);
        if answer.status == 200 && !on_error {
            let links = answer.headers.get_all(header::LINK);
            let next = preloaded_paths(links.iter().filter_map(|v| v.to_str().ok()));
            fetch_ahead(&job, ctx, &settings.origin, next);
        }
    }
    Ok(handled)
}

/// The answer to the job's request.
async fn answer(job: &Job, ctx: &Context) -> Handled {
    let stored = read(&job.key).await;
    let entry = stored.as_ref().map(|(entry, _)| entry);
    match before_request(&job.request, entry, now_ms()) {
        BeforeRequest::Answer(answer) => with_stored(answer, stored, Vec::new()),
        BeforeRequest::AnswerAndRefresh { answer, refresh } => {
            if let Some((entry, response)) = &stored {
                refresh_in_background(job, ctx, entry, response, refresh);
            }
            with_stored(answer, stored, Vec::new())
        }
        BeforeRequest::Fetch { headers, fwd } => {
            let mut leading = None;
            if fwd == Forward::UriMiss {
                match collapse::join(&job.key, job.timeout) {
                    Role::Lead(leader) => leading = Some(leader),
                    Role::Wait(waiter) => {
                        waiter.fetched(job.timeout).await;
                        let stored = read(&job.key).await;
                        let entry = stored.as_ref().map(|(entry, _)| entry);
                        if let Some(BeforeRequest::Answer(answer)) =
                            entry.map(|entry| before_request(&job.request, Some(entry), now_ms()))
                        {
                            return with_stored(answer, stored, Vec::new());
                        }
                    }
                }
            }
            // Only a revalidation may store the entry again (merged with a 304): then it
            // needs every stored field, not just those a hit reads.
            let stored = match fwd {
                Forward::Stale => stored.and_then(|(entry, response)| whole(&entry, response)),
                _ => stored,
            };
            let fetched = exchange(job, (Some(ctx), leading), stored.as_ref(), headers, fwd).await;
            with_stored(fetched.answer, stored, fetched.body)
        }
    }
}

/// How often readers asked this isolate for `key` lately (see [`crate::core::hot`]).
pub fn reads_of(key: &str) -> u32 {
    HOT.with(|hot| hot.borrow_mut().of(key, now_ms()))
}

/// Brings the pages at `paths` (on the job's host) up to date in the background, each as a
/// request without client headers would, as often as [`FetchAhead`] allows.
fn fetch_ahead(job: &Job, ctx: &Context, origin: &Url, paths: Vec<String>) {
    if paths.is_empty() {
        return;
    }
    let Ok(base) = Url::parse(&job.key) else {
        return;
    };
    // Absolute paths without a query: the same host, that path.
    for url in paths.iter().filter_map(|path| base.join(path).ok()) {
        let Ok(target) = Target::parse(&url) else {
            continue;
        };
        let key = target.cache_key(&url);
        let claim = FETCHED_AHEAD.with(|ahead| ahead.borrow_mut().claim(&key, now_ms()));
        if claim == Claim::Refused {
            continue;
        }
        let ahead = Job {
            request: CacheableRequest::anonymous(target.path.clone()),
            origin_url: target.origin_url(origin),
            key,
            ..job.clone()
        };
        ctx.wait_until(async move {
            bring_up_to_date(&ahead, false).await;
        });
    }
}

fn with_stored(
    answer: Answer,
    stored: Option<(Entry, StoredResponse)>,
    origin: Vec<u8>,
) -> Handled {
    Handled::Answer(
        answer,
        Bodies {
            stored: stored.map(|(_, response)| response),
            origin,
        },
    )
}

/// The entry with all its stored fields, for a revalidation that may store it again.
fn whole(entry: &Entry, response: StoredResponse) -> Option<(Entry, StoredResponse)> {
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
fn copy(stored: &StoredResponse) -> Result<StoredResponse> {
    Ok(StoredResponse {
        response: stored.response.clone()?,
        headers: stored.headers.clone(),
    })
}

/// The entry stored under `key` with the fields a hit needs ([`hit_fields`]), its body
/// unread; a storage error reads as a miss.
async fn read(key: &str) -> Option<(Entry, StoredResponse)> {
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

/// What an exchange with the origin gave.
struct Exchanged {
    answer: Answer,
    /// The origin's body.
    body: Vec<u8>,
    /// Whether a response was stored.
    stored: bool,
}

/// Asks the origin, stores what the core says to store, and returns the answer with the
/// origin's body. With `ctx`, index registration waits until after the answer; without
/// (already in the background), it is done before returning. `lead`, the fetch other misses
/// wait for, ends once the entry is registered: a waiter must not read an entry the index may
/// still take back out.
async fn exchange(
    job: &Job,
    (ctx, lead): (Option<&Context>, Option<Leader>),
    stored: Option<&(Entry, StoredResponse)>,
    mut headers: HeaderMap,
    mut fwd: Forward,
) -> Exchanged {
    let entry = stored.map(|(entry, _)| entry);
    // Twice at most: a 304 about another representation is asked again unconditionally.
    for _ in 0..2 {
        let request_ms = now_ms();
        let to = origin::Address {
            url: &job.origin_url,
            credential: job.credential.as_deref(),
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
                        written = write(job, (ctx, lead), store, body, request_ms).await;
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

/// The bytes of a stored body, read from a copy so the original can still be streamed.
async fn stored_bytes(stored: &StoredResponse) -> Option<Vec<u8>> {
    let copy = copy(stored).ok()?;
    runtime::bytes(&copy.response).await.ok()
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

/// Writes an entry to storage, then registers it with the index (see [`exchange`]); returns
/// whether storage took it.
async fn write(
    job: &Job,
    (ctx, lead): (Option<&Context>, Option<Leader>),
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
    let Some(index) = job.index else {
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
    match ctx {
        Some(ctx) => ctx.wait_until(registration),
        None => registration.await,
    }
    true
}

/// Brings the entries under `keys` up to date, all at once, as a request without client
/// headers would, revalidating even fresh ones (a soft purge recorded at `purged_at_ms` said
/// they may have changed; one storage dropped meanwhile is fetched again), each within
/// `timeout`; returns the keys that were not refreshed.
pub async fn refresh(
    env: &Env,
    settings: &Settings,
    keys: Vec<String>,
    (purged_at_ms, timeout): (u64, std::time::Duration),
) -> Vec<String> {
    let refreshes = keys.iter().map(|key| {
        let job = Url::parse(key).ok().and_then(|url| {
            let target = Target::parse(&url).ok()?;
            Some(Job {
                request: CacheableRequest::anonymous(target.path.clone()),
                origin_url: target.origin_url(&settings.origin),
                credential: settings.edge_auth.clone(),
                key: key.clone(),
                env: env.clone(),
                timeout,
                index: settings.index,
                // Started after the purge, whatever the clocks say: the index must keep it.
                fetched_after_ms: purged_at_ms + 1,
            })
        });
        future_to_promise(async move {
            let refreshed = match job {
                Some(job) => bring_up_to_date(&job, true).await,
                None => false,
            };
            Ok(JsValue::from_bool(refreshed))
        })
    });
    // The runtime's Promise.all runs them at once (cheaper in code size than a Rust join);
    // every refresh resolves, with whether it stored the new version.
    let outcomes = JsFuture::from(Promise::all(&refreshes.collect::<Array>()))
        .await
        .map(|all| Array::from(&all))
        .unwrap_or_default();
    keys.into_iter()
        .enumerate()
        .filter(|(n, _)| outcomes.get(*n as u32).as_bool() != Some(true))
        .map(|(_, key)| key)
        .collect()
}

/// Brings the entry under the job's key up to date as a reader would, but with nobody
/// waiting: fetches it when absent (unless another fetch of it is under way), revalidates it
/// when stale, or even while fresh `after_purge`; returns whether a fresh version is stored.
async fn bring_up_to_date(job: &Job, after_purge: bool) -> bool {
    let stored = read(&job.key)
        .await
        .and_then(|(entry, stored)| whole(&entry, stored));
    let entry = stored.as_ref().map(|(entry, _)| entry);
    let (headers, fwd) = if after_purge {
        before_refresh(&job.request, entry)
    } else {
        match before_request(&job.request, entry, now_ms()) {
            BeforeRequest::Answer(_) => return true,
            BeforeRequest::AnswerAndRefresh { refresh, .. } => (refresh, Forward::Stale),
            BeforeRequest::Fetch { headers, fwd } => (headers, fwd),
        }
    };
    let lead = match fwd {
        Forward::UriMiss => match collapse::join(&job.key, job.timeout) {
            Role::Lead(leader) => Some(leader),
            Role::Wait(_) => return false,
        },
        _ => None,
    };
    exchange(job, (None, lead), stored.as_ref(), headers, fwd)
        .await
        .stored
}

fn release_refresh(key: &str) {
    REFRESHING.with(|refreshes| refreshes.borrow_mut().release(key));
}

/// Refreshes a stale entry after answering from it; at most one refresh per key per isolate.
fn refresh_in_background(
    job: &Job,
    ctx: &Context,
    entry: &Entry,
    stored: &StoredResponse,
    headers: HeaderMap,
) {
    if REFRESHING.with(|refreshes| refreshes.borrow_mut().claim(&job.key)) == Claim::Refused {
        return;
    }
    let Some((entry, stored)) = copy(stored).ok().and_then(|copy| whole(entry, copy)) else {
        worker::console_warn!(
            "no refresh of {}: the stored response could not be copied",
            job.key
        );
        release_refresh(&job.key);
        return;
    };
    let job = job.clone();
    ctx.wait_until(async move {
        exchange(
            &job,
            (None, None),
            Some(&(entry, stored)),
            headers,
            Forward::Stale,
        )
        .await;
        release_refresh(&job.key);
    });
}
