//! What to do with a client request, and which of its headers reach the origin.

use forecastin_shared::{
    headers::{EDGE_AUTH, REQUEST_ID, TRACEPARENT},
    request_id,
    routes::{EVENTS_PATH, OPERATIONAL_PATHS},
};
use http::{header, HeaderMap, HeaderName, Method};

use super::fields::{strip_hop_by_hop, text};

/// The path of the edge's own purge endpoint.
pub const PURGE_PATH: &str = "/__edge/purge";
/// The edge's own liveness endpoint (answered without the origin).
pub const HEALTH_PATH: &str = "/__edge/health";
/// Paths under this prefix belong to the edge and never reach the origin.
const EDGE_PREFIX: &str = "/__edge/";
/// The origin's admin API: credentialed, never cached, forwarded with its whole query.
const ADMIN_PREFIX: &str = "/admin/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /__edge/purge`, handled by the edge itself.
    Purge,
    /// `GET /__edge/health`, answered by the edge itself.
    Health,
    /// The origin's operational routes and unknown edge paths: 404 at the edge.
    NotFound,
    /// Forwarded untouched and never cached (RFC 9211 `fwd=method` / `fwd=bypass`).
    Bypass(BypassReason),
    /// Served from or stored in the cache. `credentialed` requests (with `Authorization` or a
    /// session cookie) may only use responses that allow sharing (RFC 9111 §3.5).
    Cacheable { credentialed: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassReason {
    /// Neither GET nor HEAD.
    Method,
    /// A WebSocket upgrade of the origin's event stream.
    Upgrade,
    /// The admin API.
    Private,
}

/// Classifies a request by method, normalised path and headers.
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
    if path.starts_with(EDGE_PREFIX) || path == PURGE_PATH || OPERATIONAL_PATHS.contains(&path) {
        return RequestKind::NotFound;
    }
    if method != Method::GET && method != Method::HEAD {
        return RequestKind::Bypass(BypassReason::Method);
    }
    // Any other upgrade is a way around the cache: the request is served as a plain GET.
    if path == EVENTS_PATH && upgrades_to_websocket(headers) {
        return RequestKind::Bypass(BypassReason::Upgrade);
    }
    if path.starts_with(ADMIN_PREFIX) {
        return RequestKind::Bypass(BypassReason::Private);
    }
    let credentialed =
        headers.contains_key(header::AUTHORIZATION) || has_session_cookie(headers, session_cookies);
    RequestKind::Cacheable { credentialed }
}

fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|value| {
        text(value)
            .split(',')
            .any(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
    })
}

fn has_session_cookie(headers: &HeaderMap, session_cookies: &[String]) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| {
            text(value)
                .split(';')
                .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim().to_owned()))
                .collect::<Vec<_>>()
        })
        .any(|name| session_cookies.contains(&name))
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

/// The headers sent to the origin for a request of `kind`.
pub fn origin_headers(client: &HeaderMap, kind: RequestKind) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    match kind {
        RequestKind::Cacheable { credentialed } => {
            let mut names = FORWARDED_ON_CACHEABLE.to_vec();
            if credentialed {
                names.extend([header::AUTHORIZATION, header::COOKIE]);
            }
            for name in &names {
                for value in client.get_all(name) {
                    forwarded.append(name.clone(), value.clone());
                }
            }
        }
        RequestKind::Bypass(_)
        | RequestKind::Purge
        | RequestKind::Health
        | RequestKind::NotFound => {
            forwarded = client.clone();
            strip_hop_by_hop(&mut forwarded);
            // The edge's credential at the origin is the edge's to send, never a client's.
            for name in HOST_OVERRIDES.iter().chain(&["host", EDGE_AUTH]) {
                forwarded.remove(*name);
            }
            if kind == RequestKind::Bypass(BypassReason::Upgrade) {
                // The runtime turns a forwarded `Upgrade` into the WebSocket handshake.
                if let Some(upgrade) = client.get(header::UPGRADE) {
                    forwarded.insert(header::UPGRADE, upgrade.clone());
                }
            }
        }
    }
    forward_trace_context(client, &mut forwarded);
    forwarded
}

/// The id the edge logs a request under and sends to the origin in `X-Request-ID`, so that
/// both logs name it alike: the client's own, by the origin's rules (an ambiguous, repeated
/// header counts as none), else the one `new` makes.
pub fn request_id(client: &HeaderMap, new: impl FnOnce() -> String) -> String {
    let single = |name: &str| {
        let mut values = client.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    };
    request_id::given(single(REQUEST_ID), single(TRACEPARENT)).unwrap_or_else(new)
}

/// Trace context (W3C `traceparent` / `tracestate`, `X-Request-ID`) reaches the origin on
/// every request so a request can be followed through, but only in its valid form: the
/// origin's logs are its only reader, and no cached body may depend on it.
fn forward_trace_context(client: &HeaderMap, forwarded: &mut HeaderMap) {
    for name in TRACE_CONTEXT {
        forwarded.remove(name);
        let mut values = client.get_all(name).iter();
        if let (Some(value), None) = (values.next(), values.next()) {
            if is_valid_trace_value(name, value.as_bytes()) {
                forwarded.insert(name, value.clone());
            }
        }
    }
}

/// The trace-context fields, forwarded when valid.
pub const TRACE_CONTEXT: [&str; 3] = [TRACEPARENT, "tracestate", REQUEST_ID];

/// The same rules as the origin's for the ids it logs (`forecastin_shared::request_id`).
fn is_valid_trace_value(name: &str, value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    match name {
        "traceparent" => request_id::trace_id(value).is_some(),
        "tracestate" => value.len() <= 512 && value.bytes().all(|b| (0x20..0x7f).contains(&b)),
        _ => request_id::is_token(value),
    }
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
            (Method::GET, PURGE_PATH, &[], RequestKind::NotFound),
            (Method::GET, "/__edge/other", &[], RequestKind::NotFound),
            (Method::GET, "/metrics", &[], RequestKind::NotFound),
            (Method::GET, "/readyz", &[], RequestKind::NotFound),
            (Method::POST, "/healthz", &[], RequestKind::NotFound),
            (
                Method::GET,
                "/admin/v1/purge",
                &[("authorization", "Bearer t")],
                RequestKind::Bypass(BypassReason::Private),
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
                RequestKind::Cacheable {
                    credentialed: false,
                },
            ),
            (
                Method::GET,
                "/ws",
                &[("upgrade", "WebSocket")],
                RequestKind::Bypass(BypassReason::Upgrade),
            ),
            (
                Method::GET,
                "/api/v1/entities/FR",
                &[("upgrade", "websocket")],
                RequestKind::Cacheable {
                    credentialed: false,
                },
            ),
            (
                Method::GET,
                "/ws",
                &[("upgrade", "h2c")],
                RequestKind::Cacheable {
                    credentialed: false,
                },
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
    fn bypassed_requests_keep_their_headers_but_not_host_overrides_or_credentials() {
        let client = headers(&[
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
            ("if-match", "\"v1\""),
            ("x-forwarded-host", "evil.example"),
            ("x-forecastin-edge-auth", "guessed"),
            ("connection", "keep-alive"),
        ]);
        let sent = origin_headers(&client, RequestKind::Bypass(BypassReason::Method));
        assert_eq!(sent.len(), 3);
        assert!(sent.contains_key("if-match"));
        assert!(!sent.contains_key("x-forwarded-host"));
        assert!(
            !sent.contains_key(EDGE_AUTH),
            "a client's credential is not passed on"
        );
    }

    #[test]
    fn trace_context_is_forwarded_only_when_valid() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let valid = headers(&[
            ("traceparent", parent),
            ("tracestate", "vendor=abc"),
            ("x-request-id", "req-42.a:b"),
        ]);
        for kind in [
            RequestKind::Cacheable {
                credentialed: false,
            },
            RequestKind::Bypass(BypassReason::Method),
        ] {
            let sent = origin_headers(&valid, kind);
            assert_eq!(sent["traceparent"], parent);
            assert_eq!(sent["tracestate"], "vendor=abc");
            assert_eq!(sent["x-request-id"], "req-42.a:b");
        }
        let long = "x".repeat(129);
        for (name, value) in [
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            ),
            ("x-request-id", "a b"),
            ("x-request-id", long.as_str()),
            ("x-request-id", ""),
        ] {
            let sent = origin_headers(
                &headers(&[(name, value)]),
                RequestKind::Cacheable {
                    credentialed: false,
                },
            );
            assert!(!sent.contains_key(name), "{name}: {value}");
        }
        let twice = headers(&[("x-request-id", "a"), ("x-request-id", "b")]);
        let sent = origin_headers(&twice, RequestKind::Bypass(BypassReason::Method));
        assert!(!sent.contains_key("x-request-id"), "ambiguous: dropped");
    }

    #[test]
    fn a_request_keeps_the_clients_valid_id_else_gets_a_new_one() {
        let new = || "new".to_owned();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (given, expected) in [
            (vec![("x-request-id", "req-1")], "req-1"),
            (
                vec![("x-request-id", "req-1"), ("traceparent", parent)],
                "req-1",
            ),
            (
                vec![("traceparent", parent)],
                "4bf92f3577b34da6a3ce929d0e0e4736",
            ),
            (vec![("x-request-id", "a b")], "new"),
            (vec![("x-request-id", "a"), ("x-request-id", "b")], "new"),
            (vec![], "new"),
        ] {
            assert_eq!(request_id(&headers(&given), new), expected, "{given:?}");
        }
    }
}
