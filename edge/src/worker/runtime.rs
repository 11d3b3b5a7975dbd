//! Conversions between the runtime's JavaScript objects and the core's `http` types, none of
//! which can panic: a header the other side cannot represent is dropped, and a response the
//! runtime refuses to construct is an error the caller turns into a 502.

use http::HeaderMap;
use worker::{
    js_sys::{self, Uint8Array},
    wasm_bindgen::JsCast,
    wasm_bindgen_futures::JsFuture,
    web_sys,
    worker_sys::ext::CacheStorageExt,
    Headers, Result,
};

use crate::core::fields::{from_runtime, to_runtime};

/// The runtime's headers as a `HeaderMap`; values are Latin-1 (obs-text survives).
pub fn header_map(headers: &web_sys::Headers) -> HeaderMap {
    Headers(headers.clone())
        .entries()
        .filter_map(|(name, value)| from_runtime(&name, &value))
        .collect()
}

/// Only the fields `names` of the runtime's headers (several lines of one field come joined):
/// one call per name instead of several per field present.
pub fn selected_fields<'a>(
    headers: &web_sys::Headers,
    names: impl IntoIterator<Item = &'a str>,
) -> HeaderMap {
    names
        .into_iter()
        .filter_map(|name| Some((name, headers.get(name).ok()??)))
        .filter_map(|(name, value)| from_runtime(name, &value))
        .collect()
}

/// A `HeaderMap` as runtime headers.
pub fn js_headers(map: &HeaderMap) -> Headers {
    let headers = Headers::new();
    for (name, value) in map {
        if let Err(err) = headers.append(name.as_str(), &to_runtime(value)) {
            worker::console_warn!("dropped the header {name}: {err}");
        }
    }
    headers
}

/// A response with these parts; `Err` if the runtime refuses them.
pub fn response(
    status: u16,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<web_sys::Response> {
    with_bytes(status, &js_headers(headers), body)
}

/// A response with runtime headers and these bytes; `Err` if the runtime refuses them.
pub fn with_bytes(
    status: u16,
    headers: &Headers,
    body: Option<&[u8]>,
) -> Result<web_sys::Response> {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers.0);
    let response = match body {
        Some(bytes) => {
            let array = Uint8Array::from(bytes);
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&array), &init)
        }
        None => web_sys::Response::new_with_opt_str_and_init(None, &init),
    };
    Ok(response?)
}

/// A copy of `base` changed into `target` with as few calls into the runtime as possible:
/// the fields whose values differ are replaced, the others copied by the runtime itself.
pub fn patched(
    base: &web_sys::Headers,
    base_map: &HeaderMap,
    target: &HeaderMap,
) -> Result<Headers> {
    let headers = Headers(web_sys::Headers::new_with_headers(base)?);
    for name in base_map.keys() {
        if !target.contains_key(name) {
            headers.delete(name.as_str())?;
        }
    }
    for name in target.keys() {
        let wanted = target.get_all(name);
        if base_map.get_all(name).iter().eq(wanted.iter()) {
            continue;
        }
        headers.delete(name.as_str())?;
        for value in wanted {
            if let Err(err) = headers.append(name.as_str(), &to_runtime(value)) {
                worker::console_warn!("dropped the header {name}: {err}");
            }
        }
    }
    Ok(headers)
}

/// A response with a streamed body and these runtime headers.
pub fn with_stream(
    status: u16,
    headers: &Headers,
    body: Option<web_sys::ReadableStream>,
) -> Result<web_sys::Response> {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers.0);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(
        body.as_ref(),
        &init,
    )?)
}

/// Reads a response's whole body.
pub async fn bytes(response: &web_sys::Response) -> Result<Vec<u8>> {
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    let buffer: worker::js_sys::ArrayBuffer = buffer.dyn_into()?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// A response streaming `body` through with new headers; `Err` if the runtime refuses them.
pub fn streamed(
    status: u16,
    headers: &HeaderMap,
    body: Option<web_sys::ReadableStream>,
) -> Result<web_sys::Response> {
    with_stream(status, &js_headers(headers), body)
}

/// The runtime's default cache, used directly: workers-rs's wrapper rebuilds every response
/// it hands over or takes.
fn default_cache() -> Result<web_sys::Cache> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok(global.caches()?.default())
}

/// The response stored under `key`, if any.
pub async fn cache_match(key: &str) -> Result<Option<web_sys::Response>> {
    let found = JsFuture::from(default_cache()?.match_with_str(key)).await?;
    Ok(found.dyn_into::<web_sys::Response>().ok())
}

/// Stores `response` under `key`.
pub async fn cache_put(key: &str, response: &web_sys::Response) -> Result<()> {
    JsFuture::from(default_cache()?.put_with_str(key, response)).await?;
    Ok(())
}

/// Deletes what is stored under `key`; whether there was something.
pub async fn cache_delete(key: &str) -> Result<bool> {
    let deleted = JsFuture::from(default_cache()?.delete_with_str(key)).await?;
    Ok(deleted.as_bool().unwrap_or(false))
}
