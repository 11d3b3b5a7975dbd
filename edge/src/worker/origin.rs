//! Requests to the origin, with the configured timeout.

use std::time::Duration;

use futures_util::future::{select, Either};
use http::HeaderMap;
use url::Url;
use worker::{wasm_bindgen::JsValue, web_sys, AbortController, Delay, Fetch, Request, Response};

use super::runtime::{header_map, js_headers};
use crate::core::cache::Failure;

/// A whole origin response, body read.
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Runs `work` with the timeout, aborting the fetch when it runs out.
async fn within<T>(
    timeout: Duration,
    controller: AbortController,
    work: impl std::future::Future<Output = worker::Result<T>>,
) -> Result<T, Failure> {
    let work = std::pin::pin!(work);
    let delay = std::pin::pin!(Delay::from(timeout));
    match select(work, delay).await {
        Either::Left((result, _)) => result.map_err(|e| Failure::Unreachable(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(Failure::Timeout)
        }
    }
}

/// A request for the origin; the method is passed as the client spelled it (workers-rs's
/// `Method` would turn an unknown one into GET).
fn request(
    url: &Url,
    method: &str,
    headers: &HeaderMap,
    body: Option<JsValue>,
) -> Result<Request, Failure> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&js_headers(headers).0);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(body) = body {
        init.set_body(&body);
    }
    web_sys::Request::new_with_str_and_init(url.as_str(), &init)
        .map(Request::from)
        .map_err(|e| Failure::Unreachable(format!("{e:?}")))
}

/// GETs `url` and reads the whole body; a body that fails mid-stream is an error, so a
/// truncated response is never stored or served as complete.
pub async fn fetch_whole(
    url: &Url,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Fetched, Failure> {
    let request = request(url, "GET", headers, None)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    within(timeout, controller, async move {
        let mut response = Fetch::Request(request).send_with_signal(&signal).await?;
        let body = response.bytes().await?;
        Ok(Fetched {
            status: response.status_code(),
            headers: header_map(&response.headers().0),
            body,
        })
    })
    .await
}

/// Forwards a request the cache does not handle (method, body and filtered headers) and
/// returns the origin's answer, its body still streaming.
pub async fn forward(
    req: &web_sys::Request,
    url: &Url,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Response, Failure> {
    let request = request(url, &req.method(), headers, req.body().map(Into::into))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    within(
        timeout,
        controller,
        Fetch::Request(request).send_with_signal(&signal),
    )
    .await
}
