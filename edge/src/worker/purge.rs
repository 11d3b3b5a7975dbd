//! `POST /__edge/purge`: bound the body, authenticate, validate, spend the nonce, delete the
//! covered entries from the cache, and only then forget them in the index, so a purge cut
//! short answers non-2xx, the origin retries it (a new request), and the retry finds the same
//! entries.
//!
//! A soft purge (`"soft": true`) refreshes the entries in place instead: it revalidates them
//! with the origin, even while fresh, and stores what the origin answers before it answers
//! itself, so readers after the acknowledgement get the new page as a hit rather than a miss
//! (and readers meanwhile, the page from before the write, as they would before the purge
//! arrived). The entries refreshed are those readers read here lately and those the purge
//! names (the origin names the hot pages it has rendered again, hottest first), the most read
//! first, at most [`purge::REFRESHED_BY_SOFT_PURGE`]; the others, and any whose refresh
//! fails, are deleted as in a hard purge: no reader after the acknowledgement gets what the
//! purge covered.

use forecastin_shared::{
    dto::PurgeResult,
    headers::{PURGE_NONCE, PURGE_SIGNATURE, PURGE_TIMESTAMP},
    signing::Destination,
};
use std::{rc::Rc, time::Duration};

use futures_util::StreamExt;
use http::{header, HeaderMap};
use url::Url;
use worker::{web_sys, Env, Request};

use super::{now_ms, refresh, runtime, serve, Settings};
use crate::core::{
    cache::{error, json, Answer},
    fields::text,
    purge::{self, PurgeError},
};

/// Longest one refresh may take: well within the origin's purge timeout, so that a slow origin
/// turns a soft purge into a hard one rather than into a purge retried.
const REFRESH_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Largest purge body read: a purge names at most 1,000 items.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn too_large() -> Answer {
    error(
        413,
        "purge_too_large",
        format!("a purge body is at most {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads the body, stopping as soon as it passes the cap.
async fn bounded_body(req: web_sys::Request) -> Result<Vec<u8>, Answer> {
    let mut req = Request::from(req);
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new()); // no body
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                400,
                "invalid_purge",
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub async fn handle(
    req: web_sys::Request,
    headers: &HeaderMap,
    env: &Env,
    settings: &Rc<Settings>,
    url: &Url,
) -> worker::Result<Answer> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .map(|v| text(v).trim().parse::<u64>().unwrap_or(u64::MAX));
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Ok(too_large());
    }
    let body = match bounded_body(req).await {
        Ok(body) => body,
        Err(answer) => return Ok(answer),
    };
    let field = |name: &str| headers.get(name).map(|v| text(v).into_owned());
    let (timestamp, nonce, signature) = (
        field(PURGE_TIMESTAMP),
        field(PURGE_NONCE),
        field(PURGE_SIGNATURE),
    );
    let signed = purge::Signed {
        timestamp: timestamp.as_deref(),
        nonce: nonce.as_deref(),
        signature: signature.as_deref(),
    };
    let secrets: Vec<&str> = settings.purge_secrets.iter().map(String::as_str).collect();
    let destination = Destination::new("POST", url);
    let nonce = match purge::authenticate(
        &secrets,
        signed,
        &destination,
        &body,
        now_ms() / 1000,
        settings.purge_legacy,
    ) {
        Ok(nonce) => nonce,
        Err(PurgeError::Unauthenticated(message)) => {
            return Ok(error(401, "unauthenticated", message))
        }
        Err(PurgeError::BadRequest(message)) => return Ok(error(400, "invalid_purge", message)),
    };
    let request = match purge::parse(&body, url) {
        Ok(request) => request,
        Err(PurgeError::BadRequest(message) | PurgeError::Unauthenticated(message)) => {
            return Ok(error(400, "invalid_purge", message))
        }
    };
    let Some(index) = settings.index else {
        return Ok(error(
            501,
            "purge_index_off",
            "this edge keeps no purge index (PURGE_INDEX_SHARDS): purge through the CDN's API"
                .into(),
        ));
    };
    let Some(resolution) = index.resolve(env, nonce, request.clone()).await? else {
        return Ok(error(
            401,
            "replayed",
            "this signed purge was already used".into(),
        ));
    };
    let recorded_ms = resolution.recorded_ms();
    let (refreshed, mut deleted) =
        request.split_for_refresh(resolution.keys.clone(), serve::reads_of);
    let timeout = settings.timeout.min(REFRESH_TIMEOUT);
    let tried = refreshed.len();
    let unrefreshed = refresh::refresh(env, settings, refreshed, recorded_ms, timeout).await;
    let mut purged = (tried - unrefreshed.len()) as u64;
    deleted.extend(unrefreshed);
    for key in &deleted {
        match runtime::cache_delete(key).await {
            Ok(true) => purged += 1,
            Ok(false) => {}
            Err(err) => return Ok(incomplete(key, &err)),
        }
    }
    if !deleted.is_empty() {
        index.complete(env, deleted, &resolution).await?;
    }
    Ok(json(200, serde_json::to_vec(&PurgeResult { purged })?))
}

/// A purge cut short: the origin retries it, and finds the same entries.
fn incomplete(key: &str, err: &worker::Error) -> Answer {
    error(
        503,
        "purge_incomplete",
        format!("purging {key} failed ({err}); retry the purge"),
    )
}
