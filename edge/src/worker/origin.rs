//! Requests to the origin, with the configured timeout.

use std::time::Duration;

use futures_util::future::{select, Either};
use http::HeaderMap;
use url::Url;
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
};

use super::Settings;

pub enum OriginError {
    Timeout,
    Network(String),
}

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
) -> Result<T, OriginError> {
    let work = std::pin::pin!(work);
    let delay = std::pin::pin!(Delay::from(timeout));
    match select(work, delay).await {
        Either::Left((result, _)) => result.map_err(|e| OriginError::Network(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(OriginError::Timeout)
        }
    }
}

/// GETs `url` and reads the whole body; a body that fails mid-stream is an error, so a
/// truncated response is never stored or served as complete.
pub async fn fetch_whole(
    url: &Url,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Fetched, OriginError> {
    let mut init = RequestInit::new();
    init.with_method(Method::Get)
        .with_headers(Headers::from(headers))
        .with_redirect(RequestRedirect::Manual);
    let request = Request::new_with_init(url.as_str(), &init)
        .map_err(|e| OriginError::Network(e.to_string()))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    within(timeout, controller, async move {
        let mut response = Fetch::Request(request).send_with_signal(&signal).await?;
        let body = response.bytes().await?;
        Ok(Fetched {
            status: response.status_code(),
            headers: response.headers().into(),
            body,
        })
    })
    .await
}

/// Forwards a request the cache does not handle (method, body and filtered headers) and
/// streams the origin's answer back.
pub async fn forward(
    req: Request,
    settings: &Settings,
    url: &Url,
    headers: HeaderMap,
) -> Result<Response, OriginError> {
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let target = settings
        .origin
        .join(&path_and_query)
        .map_err(|e| OriginError::Network(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(Headers::from(&headers))
        .with_redirect(RequestRedirect::Manual)
        .with_body(req.inner().body().map(Into::into));
    let request = Request::new_with_init(target.as_str(), &init)
        .map_err(|e| OriginError::Network(e.to_string()))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    within(
        settings.timeout,
        controller,
        Fetch::Request(request).send_with_signal(&signal),
    )
    .await
}
