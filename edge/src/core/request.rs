//! What to do with a client request, and which of its headers reach the origin.

use http::{header, HeaderMap, HeaderName, Method};

/// The path of the edge's own purge endpoint.
pub const PURGE_PATH: &str = "/__edge/purge";
/// The edge's own liveness endpoint (answered without the origin).
pub const HEALTH_PATH: &str = "/__edge/health";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /__edge/purge`, handled by the edge itself.
    Purge,
    /// `GET /__edge/health`, answered by the edge itself.
    Health,
    /// Forwarded untouched and never cached (RFC 9211 `fwd=method` / `fwd=bypass`).
    Bypass(BypassReason),
    /// Served from or stored in the cache. `credentialed` requests (with `Authorization` or a
    /// session cookie) may only use responses marked `public` (RFC 9111 §3.5).
    Cacheable { credentialed: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassReason {
    /// Neither GET nor HEAD.
    Method,
    /// A range request: the edge stores whole responses only.
    Range,
    /// A WebSocket upgrade.
    Upgrade,
}

pub fn classify(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    session_cookies: &[String],
) -> RequestKind {
    if path == PURGE_PATH && method == Method::POST {
        return RequestKind::Purge;
    }
    if path == HEALTH_PATH && method == Method::GET {
        return RequestKind::Health;
    }
    if method != Method::GET && method != Method::HEAD {
        return RequestKind::Bypass(BypassReason::Method);
    }
    if headers.contains_key(header::RANGE) {
        return RequestKind::Bypass(BypassReason::Range);
    }
    if headers.contains_key(header::UPGRADE) {
        return RequestKind::Bypass(BypassReason::Upgrade);
    }
    let credentialed =
        headers.contains_key(header::AUTHORIZATION) || has_session_cookie(headers, session_cookies);
    RequestKind::Cacheable { credentialed }
}

fn has_session_cookie(headers: &HeaderMap, session_cookies: &[String]) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim()))
        .any(|name| session_cookies.iter().any(|session| session == name))
}

/// Headers of a cacheable request that may reach the origin. Only these can influence a body
/// the edge stores, and a response that varies on one of them is matched on it (`Vary`).
const FORWARDED_ON_CACHEABLE: [HeaderName; 4] = [
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::USER_AGENT,
    header::ACCEPT_ENCODING,
];

/// Headers that name another host or URL, a classic cache-poisoning vector; never forwarded.
const HOST_OVERRIDES: [&str; 8] = [
    "x-forwarded-host",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-host",
    "x-http-method-override",
    "x-forwarded-scheme",
    "forwarded",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), meaningful on one connection only.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The headers sent to the origin for a request of `kind`.
pub fn origin_headers(client: &HeaderMap, kind: RequestKind) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    match kind {
        RequestKind::Cacheable { credentialed } => {
            for name in &FORWARDED_ON_CACHEABLE {
                for value in client.get_all(name) {
                    forwarded.append(name.clone(), value.clone());
                }
            }
            if credentialed {
                for name in [header::AUTHORIZATION, header::COOKIE] {
                    for value in client.get_all(&name) {
                        forwarded.append(name.clone(), value.clone());
                    }
                }
            }
        }
        RequestKind::Bypass(_) | RequestKind::Purge | RequestKind::Health => {
            for (name, value) in client {
                let lower = name.as_str();
                if !HOST_OVERRIDES.contains(&lower) && !HOP_BY_HOP.contains(&lower) {
                    forwarded.append(name.clone(), value.clone());
                }
            }
        }
    }
    forwarded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_headers as headers;

    fn sessions() -> Vec<String> {
        vec!["session".to_owned()]
    }

    #[test]
    fn classification_table() {
        type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], RequestKind);
        let cases: &[Case] = &[
            (
                Method::GET,
                "/api/v1/entities/FR",
                &[],
                RequestKind::Cacheable {
                    credentialed: false,
                },
            ),
            (
                Method::HEAD,
                "/",
                &[],
                RequestKind::Cacheable {
                    credentialed: false,
                },
            ),
            (Method::POST, PURGE_PATH, &[], RequestKind::Purge),
            (
                Method::GET,
                PURGE_PATH,
                &[],
                RequestKind::Cacheable {
                    credentialed: false,
                },
            ),
            (Method::GET, HEALTH_PATH, &[], RequestKind::Health),
            (
                Method::POST,
                "/admin/v1/entities",
                &[],
                RequestKind::Bypass(BypassReason::Method),
            ),
            (
                Method::DELETE,
                "/x",
                &[],
                RequestKind::Bypass(BypassReason::Method),
            ),
            (
                Method::GET,
                "/x",
                &[("range", "bytes=0-1")],
                RequestKind::Bypass(BypassReason::Range),
            ),
            (
                Method::GET,
                "/ws",
                &[("upgrade", "websocket")],
                RequestKind::Bypass(BypassReason::Upgrade),
            ),
            (
                Method::GET,
                "/x",
                &[("authorization", "Bearer t")],
                RequestKind::Cacheable { credentialed: true },
            ),
            (
                Method::GET,
                "/x",
                &[("cookie", "theme=dark; session=abc")],
                RequestKind::Cacheable { credentialed: true },
            ),
            (
                Method::GET,
                "/x",
                &[("cookie", "theme=dark; sessionx=1")],
                RequestKind::Cacheable {
                    credentialed: false,
                },
            ),
        ];
        for (method, path, pairs, expected) in cases {
            assert_eq!(
                classify(method, path, &headers(pairs), &sessions()),
                *expected,
                "{method} {path} {pairs:?}"
            );
        }
    }

    #[test]
    fn cacheable_requests_forward_only_allow_listed_headers() {
        let client = headers(&[
            ("accept", "application/json"),
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
            ("cookie", "tracking=1"),
            ("if-none-match", "\"x\""),
            ("x-custom", "y"),
        ]);
        let sent = origin_headers(
            &client,
            RequestKind::Cacheable {
                credentialed: false,
            },
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(sent["accept"], "application/json");

        let credentialed = headers(&[("authorization", "Bearer t"), ("cookie", "session=1")]);
        let sent = origin_headers(&credentialed, RequestKind::Cacheable { credentialed: true });
        assert_eq!(sent["authorization"], "Bearer t");
        assert_eq!(sent["cookie"], "session=1");
    }

    #[test]
    fn bypassed_requests_keep_their_headers_but_not_host_overrides() {
        let client = headers(&[
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
            ("if-match", "\"v1\""),
            ("x-forwarded-host", "evil.example"),
            ("connection", "keep-alive"),
        ]);
        let sent = origin_headers(&client, RequestKind::Bypass(BypassReason::Method));
        assert_eq!(sent.len(), 3);
        assert!(sent.contains_key("if-match"));
        assert!(!sent.contains_key("x-forwarded-host"));
    }
}
