//! Property-based fuzzing of every decision the edge takes on outside input: arbitrary header
//! bytes, statuses, paths, purge bodies and directive strings go through the core, which must
//! never panic (in the Worker a panic kills every request in flight in the isolate) and must
//! keep its invariants: the origin URL keeps the configured authority, answers carry a status
//! the runtime can represent, ranges stay inside the body.
//!
//! A fixed budget of cases runs in the test command (`cargo test -p forecastin-edge`).

use forecastin_edge::core::{
    cache::{
        after_failure, after_response, before_request, AfterResponse, Answer, BeforeRequest,
        CacheableRequest, Entry, Failure, OriginResponse,
    },
    directives::Directives,
    freshness::Exchange,
    purge,
    request::{classify, origin_headers, RequestKind},
    status::Forward,
    structured::parse_dictionary,
    target::Target,
};
use forecastin_shared::preload::{self, preloaded_paths};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use url::Url;

const NOW_MS: u64 = 1_800_000_000_000;

/// Names the core reads, on requests and responses.
const NAMES: [&str; 24] = [
    "accept",
    "accept-language",
    "accept-encoding",
    "user-agent",
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "cookie",
    "authorization",
    "traceparent",
    "x-request-id",
    "connection",
    "upgrade",
    "cache-control",
    "cdn-cache-control",
    "surrogate-control",
    "expires",
    "date",
    "age",
    "vary",
    "etag",
    "last-modified",
    "cache-tag",
];

fn header_map() -> impl Strategy<Value = HeaderMap> {
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[a-zA-Z0-9=,;\" *-]{0,30}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec((0..NAMES.len(), value), 0..12).prop_map(|fields| {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            // Only what an HTTP parser lets through: no NUL, CR, LF or DEL.
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.append(HeaderName::from_static(NAMES[name]), value);
            }
        }
        map
    })
}

fn representable(answer: &Answer) -> bool {
    let in_range = (200..600).contains(&answer.status);
    let slice_ok = answer.slice.is_none_or(|(start, end)| start <= end);
    in_range && slice_ok
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Any query on a route with parameters: refused with the parameter named, or keyed in a
    /// canonical form that is its own canonical form.
    #[test]
    fn queries_are_refused_or_canonical(
        route in prop::sample::select(vec![
            "/api/v1/search",
            "/api/v1/entities/FR/children",
            "/api/v1/entities/FR/descendants",
        ]),
        query in "((q|limit|cursor|max_depth|x)=([0-9a-zA-Z_+ -]|%[0-9a-fA-F]{2}|%){0,12}&?){0,5}",
    ) {
        let Ok(url) = Url::parse(&format!("http://edge.example{route}?{query}")) else {
            return Ok(());
        };
        match Target::parse(&url) {
            Err(invalid) => {
                prop_assert!(["q", "limit", "cursor", "max_depth"].contains(&invalid.field));
            }
            Ok(target) => {
                let again = Url::parse(&format!("http://edge.example{}", target.path_and_query()))
                    .unwrap();
                prop_assert_eq!(Target::parse(&again), Ok(target));
            }
        }
    }

    #[test]
    fn requests_and_responses_never_panic(
        path in "(/|//|\\\\|%2[fF]|%2[eE]|\\.\\.|[a-z0-9:@?&=#%])*",
        request in header_map(),
        response in header_map(),
        status in 0u16..1_000,
        stored_status in 200u16..600,
        body_len in 0usize..5_000,
        later_ms in 0u64..10_000_000,
        head in any::<bool>(),
    ) {
        let Ok(url) = Url::parse(&format!("http://edge.example{path}")) else { return Ok(()) };
        let Ok(target) = Target::parse(&url) else { return Ok(()) };
        prop_assert!(target.path.starts_with('/') && !target.path.contains("//"));
        let origin = Url::parse("https://origin.example:8443").unwrap();
        let origin_url = target.origin_url(&origin);
        prop_assert_eq!(origin_url.host_str(), Some("origin.example"));
        prop_assert_eq!(origin_url.port(), Some(8443));

        let kind = classify(&Method::GET, &target.path, &request, &["session".to_owned()]);
        let forwarded = origin_headers(&request, kind);
        let RequestKind::Cacheable { credentialed } = kind else { return Ok(()) };
        let req = CacheableRequest { headers: request, forwarded, head, credentialed, path: target.path };
        let exchange = Exchange { request_ms: NOW_MS, response_ms: NOW_MS };
        let origin_response = |status, headers: HeaderMap, exchange| OriginResponse { status, headers, body_len, exchange };

        let outcome = after_response(&req, None, Forward::UriMiss, origin_response(status, response.clone(), exchange));
        let AfterResponse::Done { store, answer } = outcome else { return Ok(()) };
        prop_assert!(representable(&answer), "{:?}", answer);
        // What was stored is read back and served, revalidated or failed over at a later time.
        let Some(store) = store else { return Ok(()) };
        let Some(entry) = Entry::read(store.headers, body_len) else {
            return Err(TestCaseError::fail("a stored entry reads back"));
        };
        let later = NOW_MS + later_ms;
        match before_request(&req, Some(&entry), later) {
            BeforeRequest::Answer(answer) | BeforeRequest::AnswerAndRefresh { answer, .. } => {
                prop_assert!(representable(&answer), "{:?}", answer);
                if let Some((_, end)) = answer.slice { prop_assert!(end <= body_len) }
            }
            BeforeRequest::Fetch { fwd, .. } => {
                let again = Exchange { request_ms: later, response_ms: later };
                if let AfterResponse::Done { answer, .. } =
                    after_response(&req, Some(&entry), fwd, origin_response(stored_status, response, again))
                {
                    prop_assert!(representable(&answer), "{:?}", answer);
                }
                let failed = after_failure(&req, Some(&entry), Failure::Timeout, later);
                prop_assert!(representable(&failed));
            }
        }
    }

    #[test]
    fn directive_parsers_never_panic(value in proptest::collection::vec(any::<u8>(), 0..80)) {
        let text = String::from_utf8_lossy(&value);
        let _ = Directives::parse([text.as_ref()]);
        if let Some(members) = parse_dictionary(&text) {
            let _ = Directives::from_dictionary(&members);
        }
    }

    #[test]
    fn purge_bodies_never_panic(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"(urls|tags|prefixes)\":\\[\"[ -~]{0,30}\"\\]\\}".prop_map(String::into_bytes),
        ],
    ) {
        let edge = Url::parse("http://127.0.0.1:8787/__edge/purge").unwrap();
        if let Ok(purge) = purge::parse(&body, &edge) {
            let _ = purge.covers("http://127.0.0.1:8787/api/v1/entities/FR", &["e:FR".to_owned()]);
        }
    }

    #[test]
    fn link_fields_never_panic_and_name_only_public_paths(
        value in prop_oneof![
            "[ -~]{0,120}",
            "(<(/api/v1/entities/[ -~]{0,20}|[ -~]{0,20})>(; ?[a-zA-Z]{0,5}=\"?[ -~]{0,12}\"?){0,3},? ?){1,4}",
        ],
    ) {
        let edge = Url::parse("http://127.0.0.1:8787/api/v1/entities/FR").unwrap();
        let paths = preloaded_paths([value.as_str()]);
        prop_assert!(paths.len() <= preload::MAX_LINKS);
        for path in paths {
            let url = edge.join(&path).unwrap();
            prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
            prop_assert_eq!(url.path(), path.as_str());
            prop_assert!(url.query().is_none());
        }
    }
}
