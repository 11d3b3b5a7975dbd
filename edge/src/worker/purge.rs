//! `POST /__edge/purge`: bound the body, authenticate, validate, spend the nonce, delete the
//! covered entries from the cache, and only then forget them in the index, so a purge cut
//! short answers non-2xx, the origin retries it (a new request), and the retry finds the same
//! entries.

use forecastin_shared::{
    dto::PurgeResult,
    headers::{PURGE_NONCE, PURGE_SIGNATURE, PURGE_TIMESTAMP},
};
use futures_util::StreamExt;
use http::{header, HeaderMap};
use url::Url;
use worker::{web_sys, Env, Request};

use super::{index, now_ms, runtime, Settings};
use crate::core::{
    cache::{error, json, Answer},
    fields::text,
    purge::{self, PurgeError},
};

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
    settings: &Settings,
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
    let nonce = match purge::authenticate(&secrets, signed, &body, now_ms() / 1000) {
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
    let Some(keys) = index::resolve(env, nonce, request).await? else {
        return Ok(error(
            401,
            "replayed",
            "this signed purge was already used".into(),
        ));
    };
    let mut purged = 0;
    for key in &keys {
        match runtime::cache_delete(key).await {
            Ok(true) => purged += 1,
            Ok(false) => {}
            Err(err) => {
                return Ok(error(
                    503,
                    "purge_incomplete",
                    format!("deleting {key} failed ({err}); retry the purge"),
                ))
            }
        }
    }
    index::complete(env, keys).await?;
    Ok(json(200, serde_json::to_vec(&PurgeResult { purged })?))
}
