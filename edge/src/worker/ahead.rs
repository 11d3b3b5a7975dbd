//! Fetching ahead: bringing up to date, in the background, the pages an answer names as its
//! reader's likely next ones, as often as [`FetchAhead`] allows.

use std::cell::RefCell;

use url::Url;
use worker::Context;

use super::{job::Job, now_ms, refresh::bring_up_to_date};
use crate::core::{
    claims::{Claim, FetchAhead},
    target::Target,
};

thread_local! {
    /// Keys this isolate fetched ahead lately.
    static FETCHED_AHEAD: RefCell<FetchAhead> = RefCell::new(FetchAhead::default());
}

/// Brings the pages at `paths` (on the job's host) up to date in the background, each as a
/// request without client headers would, as often as [`FetchAhead`] allows.
pub fn fetch_ahead(job: &Job, ctx: &Context, paths: Vec<String>) {
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
        let Some(ahead) = Job::anonymous(key, &job.env, &job.settings, job.timeout) else {
            continue;
        };
        ctx.wait_until(async move {
            bring_up_to_date(&ahead, false).await;
        });
    }
}
