//! Fetching ahead: bringing up to date, in the background, the pages an answer names as its
//! reader's likely next ones, as often as [`FetchAhead`] allows.

use std::cell::RefCell;

use forecastin_shared::preload::preloaded_paths;
use http::{header, HeaderMap};
use url::Url;
use worker::Context;

use super::{job::Job, now_ms, refresh::bring_up_to_date};
use crate::core::{
    claims::{Claim, FetchAhead},
    target::Target,
};

thread_local! {
    /// Keys this isolate fetched ahead lately, and pages whose links it read.
    static FETCHED_AHEAD: RefCell<FetchAhead> = RefCell::new(FetchAhead::default());
}

/// Brings the pages that the answer to the job (with `headers`) names in `Link` (on the job's
/// host) up to date in the background, each as a request without client headers would, as
/// often as [`FetchAhead`] allows: a page read again soon costs no reading of its links.
pub fn fetch_ahead(job: &Job, ctx: &Context, headers: &HeaderMap) {
    // A page without links is not remembered: it takes no place from one with them.
    if !headers.contains_key(header::LINK) {
        return;
    }
    let read = FETCHED_AHEAD.with(|ahead| ahead.borrow_mut().read_links(&job.key, now_ms()));
    if read == Claim::Refused {
        return;
    }
    let links = headers.get_all(header::LINK);
    let paths = preloaded_paths(links.iter().filter_map(|v| v.to_str().ok()));
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
