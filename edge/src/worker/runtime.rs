//! Conversions between the runtime's JavaScript objects and the core's `http` types, none of
//! which can panic: a header the other side cannot represent is dropped, and a response the
//! runtime refuses to construct is an error the caller turns into a 502. Header fields cross
//! in one call each way, as lines (`fields.js`), not in a call per field.

use http::HeaderMap;
use worker::{
    js_sys::{self, Uint8Array},
    wasm_bindgen::{self, prelude::wasm_bindgen, JsCast, JsValue},
    wasm_bindgen_futures::JsFuture,
    web_sys,
    worker_sys::ext::CacheStorageExt,
    Headers, Result,
};

use crate::core::fields::{from_lines, to_lines};

#[wasm_bindgen(module = "/src/worker/fields.js")]
extern "C" {
    #[wasm_bindgen(js_name = linesOf, catch)]
    fn lines_of(headers: &web_sys::Headers) -> std::result::Result<String, JsValue>;
    #[wasm_bindgen(js_name = selectedLinesOf, catch)]
    fn selected_lines_of(
        headers: &web_sys::Headers,
        names: &str,
    ) -> std::result::Result<String, JsValue>;
    #[wasm_bindgen(js_name = headersOf, catch)]
    fn headers_of(lines: &str) -> std::result::Result<web_sys::Headers, JsValue>;
    #[wasm_bindgen(js_name = patchedHeaders, catch)]
    fn patched_headers(
        base: &web_sys::Headers,
        removed: &str,
        lines: &str,
    ) -> std::result::Result<web_sys::Headers, JsValue>;
    #[wasm_bindgen(js_name = responseOf, catch)]
    fn response_of(
        status: u16,
        headers: &web_sys::Headers,
        body: &JsValue,
    ) -> std::result::Result<web_sys::Response, JsValue>;
}

/// The fields of `lines` from the runtime; none if reading them failed (which the runtime's
/// own headers never make it do), as a field it cannot represent is dropped.
fn read_lines(lines: std::result::Result<String, JsValue>) -> HeaderMap {
    match lines {
        Ok(lines) => from_lines(&lines),
        Err(err) => {
            worker::console_warn!("dropped the header fields: {err:?}");
            HeaderMap::new()
        }
    }
}

/// The runtime's headers as a `HeaderMap`; values are Latin-1 (obs-text survives).
pub fn header_map(headers: &web_sys::Headers) -> HeaderMap {
    read_lines(lines_of(headers))
}

/// Only the fields `names` of the runtime's headers (several lines of one field come joined).
pub fn selected_fields<'a>(
    headers: &web_sys::Headers,
    names: impl IntoIterator<Item = &'a str>,
) -> HeaderMap {
    let names: Vec<&str> = names.into_iter().collect();
    read_lines(selected_lines_of(headers, &names.join("\n")))
}

/// A `HeaderMap` as runtime headers; a value the runtime refuses is dropped.
pub fn js_headers(map: &HeaderMap) -> std::result::Result<Headers, JsValue> {
    Ok(Headers(headers_of(&to_lines(map))?))
}

/// A response with these parts; `Err` if the runtime refuses them.
pub fn response(
    status: u16,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<web_sys::Response> {
    with_bytes(status, &js_headers(headers)?, body)
}

/// A response with runtime headers and these bytes; `Err` if the runtime refuses them.
pub fn with_bytes(
    status: u16,
    headers: &Headers,
    body: Option<&[u8]>,
) -> Result<web_sys::Response> {
    let body = body.map_or(JsValue::NULL, |bytes| Uint8Array::from(bytes).into());
    Ok(response_of(status, &headers.0, &body)?)
}

/// A copy of `base` changed into `target` in one call into the runtime: the fields whose
/// values differ are replaced, the others copied by the runtime itself.
pub fn patched(
    base: &web_sys::Headers,
    base_map: &HeaderMap,
    target: &HeaderMap,
) -> Result<Headers> {
    let removed: Vec<&str> = base_map
        .keys()
        .filter(|name| !target.contains_key(*name))
        .map(|name| name.as_str())
        .collect();
    let changed = target.keys().filter(|name| {
        !base_map
            .get_all(*name)
            .iter()
            .eq(target.get_all(*name).iter())
    });
    let lines = to_lines(
        changed.flat_map(|name| target.get_all(name).iter().map(move |value| (name, value))),
    );
    Ok(Headers(patched_headers(base, &removed.join("\n"), &lines)?))
}

/// A response with a streamed body and these runtime headers.
pub fn with_stream(
    status: u16,
    headers: &Headers,
    body: Option<web_sys::ReadableStream>,
) -> Result<web_sys::Response> {
    let body = body.map_or(JsValue::NULL, JsValue::from);
    Ok(response_of(status, &headers.0, &body)?)
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
    with_stream(status, &js_headers(headers)?, body)
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
