//! Refreshing stored entries with nobody waiting: a stale entry after a reader was answered
//! from it (stale-while-revalidate, one refresh per key at a time), and the entries a soft
//! purge names, all at once, before the purge is acknowledged.

use std::{cell::RefCell, rc::Rc, time::Duration};

use http::HeaderMap;
use worker::{
    js_sys::{Array, Promise},
    wasm_bindgen::JsValue,
    wasm_bindgen_futures::{future_to_promise, JsFuture},
    Context, Env,
};

use super::{
    collapse::{self, Role},
    fill::{exchange, Registration},
    job::{copy, read, whole, Job},
    now_ms, Settings, StoredResponse,
};
use crate::core::{
    cache::{before_refresh, before_request, BeforeRequest, Entry},
    claims::{Claim, Refreshes},
    status::Forward,
};

thread_local! {
    /// Keys being refreshed in the background by this isolate.
    static REFRESHING: RefCell<Refreshes> = RefCell::new(Refreshes::default());
}

/// Brings the entries under `keys` up to date, all at once, as a request without client
/// headers would, revalidating even fresh ones (a soft purge recorded at `purged_at_ms` said
/// they may have changed; one storage dropped meanwhile is fetched again), each within
/// `timeout`; returns the keys that were not refreshed.
pub async fn refresh(
    env: &Env,
    settings: &Rc<Settings>,
    keys: Vec<String>,
    purged_at_ms: u64,
    timeout: Duration,
) -> Vec<String> {
    let refreshes = keys.iter().map(|key| {
        let job = Job::anonymous(key.clone(), env, settings, timeout).map(|job| Job {
            // Started after the purge, whatever the clocks say: the index must keep it.
            fetched_after_ms: purged_at_ms + 1,
            ..job
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
pub async fn bring_up_to_date(job: &Job, after_purge: bool) -> bool {
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
    let registration = Registration {
        background: None,
        lead,
    };
    exchange(job, registration, stored.as_ref(), headers, fwd)
        .await
        .stored
}

fn release_refresh(key: &str) {
    REFRESHING.with(|refreshes| refreshes.borrow_mut().release(key));
}

/// Refreshes a stale entry after answering from it; at most one refresh per key per isolate.
pub fn refresh_in_background(
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
            Registration::at_once(),
            Some(&(entry, stored)),
            headers,
            Forward::Stale,
        )
        .await;
        release_refresh(&job.key);
    });
}
