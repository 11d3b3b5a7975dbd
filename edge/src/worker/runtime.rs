//! Conversions between the runtime's JavaScript objects and the core's `http` types, none of
//! which can panic: a header the other side cannot represent is dropped, and a response the
//! runtime refuses to construct is an error the caller turns into a 502.

use http::HeaderMap;
use worker::{js_sys::Uint8Array, web_sys, Headers, Result};

use crate::core::fields::{from_runtime, to_runtime};

/// The runtime's headers as a `HeaderMap`; values are Latin-1 (obs-text survives).
pub fn header_map(headers: &web_sys::Headers) -> HeaderMap {
    Headers(headers.clone())
        .entries()
        .filter_map(|(name, value)| from_runtime(&name, &value))
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
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&js_headers(headers).0);
    let response = match body {
        Some(bytes) => {
            let array = Uint8Array::from(bytes);
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&array), &init)
        }
        None => web_sys::Response::new_with_opt_str_and_init(None, &init),
    };
    Ok(response?)
}

/// A response streaming `body` through with new headers; `Err` if the runtime refuses them.
pub fn streamed(
    status: u16,
    headers: &HeaderMap,
    body: Option<web_sys::ReadableStream>,
) -> Result<web_sys::Response> {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&js_headers(headers).0);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(
        body.as_ref(),
        &init,
    )?)
}
