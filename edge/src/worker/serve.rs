//! Serving a cacheable request: read the stored entry, ask [`crate::core::cache`] what to do,
//! and do it: answer from storage, fetch from the origin ([`super::fill`], one fetch per key
//! at a time, see [`collapse`]), refresh in the background ([`super::refresh`]), and fetch
//! ahead the pages the answer names as the reader's likely next ones ([`super::ahead`]).

use std::{cell::RefCell, rc::Rc};

use worker::{Context, Env, Result};

use super::{
    ahead::fetch_ahead,
    collapse::{self, Role},
    fill::{exchange, Registration},
    job::{read, whole, Job},
    now_ms,
    refresh::refresh_in_background,
    Bodies, Handled, Settings, StoredResponse,
};
use crate::core::{
    cache::{before_request, Answer, BeforeRequest, CacheableRequest, Entry},
    hot::HotKeys,
    status::{CacheStatus, Forward},
    target::Target,
};

thread_local! {
    /// How often readers asked this isolate for each key lately, hits and misses: a soft
    /// purge refreshes the most read first. Misses count too: a page every purge deletes is
    /// read as a miss each time, and is what most needs refreshing.
    static HOT: RefCell<HotKeys> = RefCell::new(HotKeys::default());
}

pub async fn serve(
    request: CacheableRequest,
    key: String,
    target: Target,
    env: &Env,
    ctx: &Context,
    settings: &Rc<Settings>,
) -> Result<Handled> {
    let job = Job::new(request, key, target, env, settings);
    HOT.with(|hot| hot.borrow_mut().count(&job.key, now_ms()));
    let handled = answer(&job, ctx).await;
    if let Handled::Answer(answer, _) = &handled {
        // A stored page served because the origin failed: the origin is not asked for more.
        let on_error = answer
            .cache
            .as_deref()
            .is_some_and(CacheStatus::is_stale_on_error);
        if answer.status == 200 && !on_error {
            fetch_ahead(&job, ctx, &answer.headers);
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
            let registration = Registration {
                background: Some(ctx),
                lead: leading,
            };
            let fetched = exchange(job, registration, stored.as_ref(), headers, fwd).await;
            with_stored(fetched.answer, stored, fetched.body)
        }
    }
}

/// How often readers asked this isolate for `key` lately (see [`crate::core::hot`]).
pub fn reads_of(key: &str) -> u32 {
    HOT.with(|hot| hot.borrow_mut().of(key, now_ms()))
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
