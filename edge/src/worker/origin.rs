//! Requests to the origin with the configured timeout, through the runtime's own `fetch`
//! (workers-rs's wrapper would rebuild the response, and panic on one it cannot rebuild).

use std::time::Duration;

use forecastin_shared::headers::EDGE_AUTH;
use futures_util::future::{select, Either};
use http::HeaderMap;
use url::Url;
use worker::{
    js_sys, wasm_bindgen::JsCast, wasm_bindgen::JsValue, wasm_bindgen_futures::JsFuture, web_sys,
    Delay,
};

use super::runtime::{bytes, header_map, js_headers};
use crate::core::cache::Failure;

/// Where a request goes at the origin, and the credential the origin knows the edge by
/// (`EDGE_AUTH`), when the edge has one.
#[derive(Clone, Copy)]
pub struct Address<'a> {
    pub url: &'a Url,
    pub credential: Option<&'a str>,
}

/// A whole origin response, body read.
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

fn unreachable(err: JsValue) -> Failure {
    Failure::Unreachable(
        err.dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| err.as_string())
            .unwrap_or_else(|| "the request failed".into()),
    )
}

/// Runs `work` with the timeout, aborting the fetch when it runs out.
async fn within<T>(
    timeout: Duration,
    controller: web_sys::AbortController,
    work: impl std::future::Future<Output = Result<T, JsValue>>,
) -> Result<T, Failure> {
    let work = std::pin::pin!(work);
    let delay = std::pin::pin!(Delay::from(timeout));
    match select(work, delay).await {
        Either::Left((result, _)) => result.map_err(unreachable),
        Either::Right(_) => {
            controller.abort();
            Err(Failure::Timeout)
        }
    }
}

/// Fetches `url` with the client's method spelled as it came (workers-rs's `Method` would
/// turn an unknown one into GET), never following redirects, with the edge's credential.
async fn send(
    Address { url, credential }: Address<'_>,
    method: &str,
    headers: &HeaderMap,
    body: Option<JsValue>,
    signal: &web_sys::AbortSignal,
) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = js_headers(headers)?;
    if let Some(credential) = credential {
        headers.0.set(EDGE_AUTH, credential)?;
    }
    init.set_headers(&headers.0);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(signal));
    if let Some(body) = body {
        init.set_body(&body);
    }
    let request = web_sys::Request::new_with_str_and_init(url.as_str(), &init)?;
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(global.fetch_with_request(&request)).await?;
    response.dyn_into()
}

/// GETs `url` and reads the whole body; a body that fails mid-stream is an error, so a
/// truncated response is never stored or served as complete.
pub async fn fetch_whole(
    to: Address<'_>,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Fetched, Failure> {
    let controller = web_sys::AbortController::new().map_err(unreachable)?;
    let signal = controller.signal();
    within(timeout, controller, async move {
        let response = send(to, "GET", headers, None, &signal).await?;
        let body = bytes(&response)
            .await
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(Fetched {
            status: response.status(),
            headers: header_map(&response.headers()),
            body,
        })
    })
    .await
}

/// Forwards a request the cache does not handle (method, body and filtered headers) and
/// returns the origin's answer, its body still streaming.
pub async fn forward(
    req: &web_sys::Request,
    to: Address<'_>,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<web_sys::Response, Failure> {
    let controller = web_sys::AbortController::new().map_err(unreachable)?;
    let signal = controller.signal();
    // A body on GET or HEAD means nothing (RFC 9110 §9.3.1), and the runtime refuses to send
    // one: the origin gets the request without it, as it would ignore it.
    let method = req.method();
    let body = req
        .body()
        .filter(|_| method != "GET" && method != "HEAD")
        .map(JsValue::from);
    within(
        timeout,
        controller,
        send(to, &method, headers, body, &signal),
    )
    .await
}
