//! The shared cache as a state machine of pure functions, in the spirit of
//! http-cache-semantics: [`before_request`] says what to do with a request given what is
//! stored under its key; [`after_response`] what to store and answer once the origin has
//! spoken; [`after_failure`] what to answer when it could not. The Worker adapter only
//! carries out the actions (Cache API, `fetch`, `waitUntil`), so every decision is tested
//! natively.

use forecastin_shared::{
    dto::{ErrorBody, ErrorDetail},
    params::Invalid,
};
use http::{header, HeaderMap, HeaderValue};

use super::{
    fields::strip_hop_by_hop,
    freshness::{self, age_header, Exchange, Verdict},
    range::{self, RangeAnswer},
    status::{for_client, CacheStatus, Forward, STALE_IF_ERROR},
    stored::{headers_to_store, read_stored, Meta},
};

/// A GET or HEAD that the cache may answer.
#[derive(Debug, Clone)]
pub struct CacheableRequest {
    /// The client's headers.
    pub headers: HeaderMap,
    /// The headers the origin gets (see [`super::request::origin_headers`]).
    pub forwarded: HeaderMap,
    pub head: bool,
    pub credentialed: bool,
    /// The normalised path.
    pub path: String,
}

impl CacheableRequest {
    /// A GET the edge makes on its own (a refresh after a soft purge): no client headers, so
    /// nothing forwarded and no credentials.
    pub fn anonymous(path: String) -> Self {
        CacheableRequest {
            headers: HeaderMap::new(),
            forwarded: HeaderMap::new(),
            head: false,
            credentialed: false,
            path,
        }
    }
}

/// A stored response as read back from storage; its body stays with the adapter.
#[derive(Debug, Clone)]
pub struct Entry {
    pub status: u16,
    /// The headers as the origin sent them (bookkeeping removed).
    pub headers: HeaderMap,
    pub meta: Meta,
    pub body_len: usize,
}

impl Entry {
    /// Reads a stored response's headers; `None` when it is not an entry this edge wrote.
    pub fn read(mut headers: HeaderMap, body_len: usize) -> Option<Entry> {
        let meta = read_stored(&mut headers)?;
        Some(Entry {
            status: meta.status,
            headers,
            meta,
            body_len,
        })
    }
}

/// Where the bytes of an answer or of a response to store come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The stored entry's body.
    Stored,
    /// The body the origin just sent.
    Origin,
    /// A body the edge made (an error).
    Edge(Vec<u8>),
}

/// A response for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// Where the answer comes from (its headers too, for a stored one).
    pub body: Body,
    /// Send no body (HEAD, 304, 204, 416).
    pub without_body: bool,
    /// The slice of the body to send (a range), end exclusive.
    pub slice: Option<(usize, usize)>,
    /// What the cache did, as `Cache-Status` says it; none for the edge's own answers. Boxed:
    /// an answer travels by value through every path.
    pub cache: Option<Box<CacheStatus>>,
}

/// A response to write to storage, with [`super::stored::STORAGE_STATUS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Ready for storage: storage-only `Cache-Control` and bookkeeping included.
    pub headers: HeaderMap,
    pub body: Body,
    /// The freshness lifetime it was stored with, seconds.
    pub lifetime: u64,
    /// How long storage keeps it, seconds.
    pub retention: u64,
}

/// What to do with a request before asking the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeRequest {
    /// Answer from storage.
    Answer(Answer),
    /// Answer from storage and refresh it in the background with a request carrying
    /// `refresh` (stale-while-revalidate).
    AnswerAndRefresh { answer: Answer, refresh: HeaderMap },
    /// Ask the origin with these headers (with the stored validators when revalidating).
    Fetch { headers: HeaderMap, fwd: Forward },
}

/// The origin's response, body read.
#[derive(Debug, Clone)]
pub struct OriginResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body_len: usize,
    pub exchange: Exchange,
}

/// What to do once the origin answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterResponse {
    /// Store `store` if any, then answer.
    Done {
        store: Option<Store>,
        answer: Answer,
    },
    /// A 304 about another representation: ask again, without validators.
    FetchUnconditionally { headers: HeaderMap },
}

/// Why the origin gave no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Unreachable(String),
    /// A response the edge cannot represent (an interim or out-of-range status).
    BadResponse(String),
}

/// Decides how to serve `request` given the entry stored under its key.
pub fn before_request(
    request: &CacheableRequest,
    entry: Option<&Entry>,
    now_ms: u64,
) -> BeforeRequest {
    let Some(entry) = entry else {
        return fetch(request, Forward::UriMiss);
    };
    if !entry.meta.stored.matches_variant(&request.headers) {
        return fetch(request, Forward::VaryMiss);
    }
    let stored = &entry.meta.stored;
    let age = Some(stored.age(now_ms));
    match stored.verdict(now_ms) {
        Verdict::Fresh { ttl } => {
            BeforeRequest::Answer(stored_answer(request, entry, CacheStatus::hit(ttl), age))
        }
        Verdict::StaleWhileRevalidate { ttl } => BeforeRequest::AnswerAndRefresh {
            answer: stored_answer(
                request,
                entry,
                CacheStatus {
                    detail: Some("stale-while-revalidate"),
                    ..CacheStatus::hit(ttl)
                },
                age,
            ),
            refresh: with_validators(&request.forwarded, &entry.headers),
        },
        Verdict::Revalidate { .. } => BeforeRequest::Fetch {
            headers: with_validators(&request.forwarded, &entry.headers),
            fwd: Forward::Stale,
        },
    }
}

fn fetch(request: &CacheableRequest, fwd: Forward) -> BeforeRequest {
    BeforeRequest::Fetch {
        headers: request.forwarded.clone(),
        fwd,
    }
}

/// How the edge asks the origin for a page on its own after a soft purge said it may have
/// changed: the stored entry is revalidated with its validators even while fresh (readers keep
/// getting it until the answer replaces it), and fetched when absent or of another variant.
pub fn before_refresh(request: &CacheableRequest, entry: Option<&Entry>) -> (HeaderMap, Forward) {
    match entry {
        None => (request.forwarded.clone(), Forward::UriMiss),
        Some(entry) if !entry.meta.stored.matches_variant(&request.headers) => {
            (request.forwarded.clone(), Forward::VaryMiss)
        }
        Some(entry) => (
            with_validators(&request.forwarded, &entry.headers),
            Forward::Stale,
        ),
    }
}

/// The forwarded headers plus the stored validators (RFC 9111 §4.3.1).
fn with_validators(forwarded: &HeaderMap, stored: &HeaderMap) -> HeaderMap {
    let mut headers = forwarded.clone();
    if let Some(etag) = stored.get(header::ETAG) {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = stored.get(header::LAST_MODIFIED) {
        headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
    }
    headers
}

/// Decides what to store and answer after the origin answered a fetch decided by
/// [`before_request`] (`entry` is the stored response it may revalidate).
pub fn after_response(
    request: &CacheableRequest,
    entry: Option<&Entry>,
    fwd: Forward,
    mut response: OriginResponse,
) -> AfterResponse {
    if !(200..600).contains(&response.status) {
        return AfterResponse::Done {
            store: None,
            answer: after_failure(
                request,
                entry,
                Failure::BadResponse(format!(
                    "the origin answered with status {}",
                    response.status
                )),
                response.exchange.response_ms,
            ),
        };
    }
    strip_hop_by_hop(&mut response.headers);
    let now_ms = response.exchange.response_ms;
    if response.status >= 500 {
        if let Some(entry) = entry.filter(|e| usable_on_error(request, e, now_ms)) {
            return AfterResponse::Done {
                store: None,
                answer: stale_on_error(request, entry, Some(response.status), now_ms),
            };
        }
    }
    let revalidated = match entry {
        Some(entry) if response.status == 304 && fwd == Forward::Stale => {
            if !freshness::validates(&entry.headers, &response.headers) {
                return AfterResponse::FetchUnconditionally {
                    headers: request.forwarded.clone(),
                };
            }
            if !response.headers.contains_key(header::DATE) {
                // RFC 9110 §6.6.1: the recipient dates it, or the merge would keep the
                // stored Date and the refreshed entry would be born old.
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms);
                if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                    response.headers.insert(header::DATE, date);
                }
            }
            Some(entry)
        }
        _ => None,
    };
    let (status, headers, body, body_len) = match revalidated {
        Some(entry) => (
            entry.status,
            freshness::refreshed_headers(&entry.headers, &response.headers),
            Body::Stored,
            entry.body_len,
        ),
        None => (
            response.status,
            response.headers,
            Body::Origin,
            response.body_len,
        ),
    };
    let store = freshness::plan(
        &request.headers,
        request.credentialed,
        status,
        &headers,
        response.exchange,
    )
    .ok()
    .and_then(|stored| {
        Some(Store {
            headers: headers_to_store(&headers, status, &stored, &request.path, body_len)?,
            body: body.clone(),
            lifetime: stored.lifetime,
            retention: stored.retention(),
        })
    });
    // The age the answer has: what the origin's `Age` said plus the time it took; none when
    // the origin made the response for this request.
    let age =
        age_header(&headers).map(|_| freshness::corrected_initial_age(&headers, response.exchange));
    let cache_status = CacheStatus {
        fwd: Some(fwd),
        fwd_status: Some(response.status),
        ttl: store
            .as_ref()
            .map(|s| s.lifetime as i64 - age.unwrap_or(0) as i64),
        stored: store.is_some(),
        ..CacheStatus::default()
    };
    let answer = answer(request, status, headers, body, body_len, cache_status, age);
    AfterResponse::Done { store, answer }
}

/// What to answer when the origin could not be used: the stored response if
/// `stale-if-error` allows, else an error naming the problem.
pub fn after_failure(
    request: &CacheableRequest,
    entry: Option<&Entry>,
    failure: Failure,
    now_ms: u64,
) -> Answer {
    if let Some(entry) = entry.filter(|e| usable_on_error(request, e, now_ms)) {
        return stale_on_error(request, entry, None, now_ms);
    }
    failure_answer(&failure)
}

/// The error answer for a failure, with no stored response to fall back on.
pub fn failure_answer(failure: &Failure) -> Answer {
    match failure {
        Failure::Timeout => error(
            504,
            "origin_timeout",
            "the origin did not answer in time".into(),
        ),
        Failure::Unreachable(message) => error(
            502,
            "origin_unreachable",
            format!("the origin could not be reached: {message}"),
        ),
        Failure::BadResponse(message) => error(502, "origin_bad_response", message.clone()),
    }
}

fn usable_on_error(request: &CacheableRequest, entry: &Entry, now_ms: u64) -> bool {
    entry.meta.stored.matches_variant(&request.headers)
        && matches!(
            entry.meta.stored.verdict(now_ms),
            Verdict::Revalidate { on_error: true, .. }
                | Verdict::Fresh { .. }
                | Verdict::StaleWhileRevalidate { .. }
        )
}

fn stale_on_error(
    request: &CacheableRequest,
    entry: &Entry,
    fwd_status: Option<u16>,
    now_ms: u64,
) -> Answer {
    let stored = &entry.meta.stored;
    let cache_status = CacheStatus {
        fwd: Some(Forward::Stale),
        fwd_status,
        ttl: Some(stored.lifetime as i64 - stored.age(now_ms) as i64),
        detail: Some(STALE_IF_ERROR),
        ..CacheStatus::default()
    };
    stored_answer(request, entry, cache_status, Some(stored.age(now_ms)))
}

fn stored_answer(
    request: &CacheableRequest,
    entry: &Entry,
    cache_status: CacheStatus,
    age: Option<u64>,
) -> Answer {
    answer(
        request,
        entry.status,
        entry.headers.clone(),
        Body::Stored,
        entry.body_len,
        cache_status,
        age,
    )
}

/// Builds the client's answer: 304 when its conditionals match, 206/416 for a range of a
/// complete 200, no body for HEAD, and the client-facing header rewrite.
fn answer(
    request: &CacheableRequest,
    status: u16,
    mut headers: HeaderMap,
    body: Body,
    body_len: usize,
    cache_status: CacheStatus,
    age: Option<u64>,
) -> Answer {
    for_client(&mut headers, &cache_status, age);
    let not_modified =
        (200..300).contains(&status) && freshness::not_modified_for(&request.headers, &headers);
    let (status, slice) = if not_modified {
        (304, None)
    } else if status == 200 && !request.head {
        match range::answer(&request.headers, &headers, body_len) {
            RangeAnswer::Whole => (200, None),
            RangeAnswer::Partial { start, end } => {
                let range = format!("bytes {start}-{}/{body_len}", end - 1);
                headers.insert(header::CONTENT_RANGE, digits_value(&range));
                (206, Some((start, end)))
            }
            RangeAnswer::Unsatisfiable => {
                headers.insert(
                    header::CONTENT_RANGE,
                    digits_value(&format!("bytes */{body_len}")),
                );
                // About this request's Range only: no cache downstream may keep it.
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                (416, None)
            }
        }
    } else {
        (status, None)
    };
    if status == 200 {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let empty = matches!(status, 204 | 304) || (100..200).contains(&status);
    if empty {
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::CONTENT_RANGE);
    } else if status == 416 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    } else {
        let len = slice.map_or(body_len, |(start, end)| end - start);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Answer {
        status,
        headers,
        body,
        without_body: empty || status == 416 || request.head,
        slice,
        cache: Some(Box::new(cache_status)),
    }
}

fn digits_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// A JSON error answer made by the edge, never stored.
pub fn error(status: u16, code: &str, message: String) -> Answer {
    error_json(
        status,
        ErrorDetail {
            code: code.to_owned(),
            message,
            field: None,
        },
    )
}

/// The origin's 400 for a declared query parameter out of its bounds, given without asking
/// the origin.
pub fn invalid_parameter(invalid: Invalid) -> Answer {
    error_json(
        400,
        ErrorDetail {
            code: "invalid_parameter".to_owned(),
            message: invalid.message,
            field: Some(invalid.field.to_owned()),
        },
    )
}

fn error_json(status: u16, error: ErrorDetail) -> Answer {
    json(
        status,
        serde_json::to_vec(&ErrorBody { error }).unwrap_or_default(),
    )
}

/// A JSON answer made by the edge (its health, a purge result, an error), never stored.
pub fn json(status: u16, body: Vec<u8>) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Answer {
        status,
        headers,
        body: Body::Edge(body),
        without_body: false,
        slice: None,
        cache: None,
    }
}

/// The cache keys that a response to an unsafe request invalidates (RFC 9111 §4.4): the
/// target's, and those of `Location` / `Content-Location` on the same host, when the status
/// is not an error.
pub fn invalidated_by_unsafe(
    method: &http::Method,
    request_url: &url::Url,
    status: u16,
    response: &HeaderMap,
) -> Vec<String> {
    if method.is_safe() || !(200..400).contains(&status) {
        return Vec::new();
    }
    // A URL whose declared parameters are out of bounds names no stored page.
    let key_of = |url: &url::Url| {
        super::target::Target::parse(url)
            .ok()
            .map(|target| target.cache_key(url))
    };
    let mut keys: Vec<String> = key_of(request_url).into_iter().collect();
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = response.get(&name) else {
            continue;
        };
        let Some(url) = std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|v| request_url.join(v.trim()).ok())
        else {
            continue;
        };
        if url.host_str() == request_url.host_str()
            && url.port_or_known_default() == request_url.port_or_known_default()
        {
            keys.extend(key_of(&url));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_headers as headers;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn request(pairs: &[(&str, &str)]) -> CacheableRequest {
        CacheableRequest {
            headers: headers(pairs),
            forwarded: headers(&[("accept", "application/json")]),
            head: false,
            credentialed: false,
            path: "/api/v1/entities/FR".into(),
        }
    }

    fn origin(status: u16, pairs: &[(&str, &str)], body_len: usize, at_ms: u64) -> OriginResponse {
        OriginResponse {
            status,
            headers: headers(pairs),
            body_len,
            exchange: Exchange {
                request_ms: at_ms,
                response_ms: at_ms,
            },
        }
    }

    /// What `after_response` stored, read back as storage would give it.
    fn stored_entry(outcome: &AfterResponse) -> Entry {
        let AfterResponse::Done {
            store: Some(store), ..
        } = outcome
        else {
            panic!("nothing stored: {outcome:?}");
        };
        let body_len = store.headers[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        Entry::read(store.headers.clone(), body_len).unwrap()
    }

    fn answer_of(outcome: AfterResponse) -> Answer {
        match outcome {
            AfterResponse::Done { answer, .. } => answer,
            other => panic!("no answer: {other:?}"),
        }
    }

    fn cache_status(answer: &Answer) -> String {
        answer.headers["cache-status"].to_str().unwrap().to_owned()
    }

    const POLICY: (&str, &str) = (
        "cache-control",
        "max-age=5, s-maxage=60, stale-while-revalidate=30, stale-if-error=600",
    );

    fn miss_then_entry(req: &CacheableRequest, pairs: &[(&str, &str)]) -> Entry {
        let BeforeRequest::Fetch { fwd, .. } = before_request(req, None, NOW_MS) else {
            panic!("a miss fetches");
        };
        stored_entry(&after_response(
            req,
            None,
            fwd,
            origin(200, pairs, 10, NOW_MS),
        ))
    }

    #[test]
    fn a_miss_is_stored_then_served_fresh_with_its_age() {
        let req = request(&[]);
        let outcome = after_response(
            &req,
            None,
            Forward::UriMiss,
            origin(
                200,
                &[POLICY, ("etag", "\"v\""), ("cache-tag", "e:FR")],
                10,
                NOW_MS,
            ),
        );
        let answer = answer_of(outcome.clone());
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, Body::Origin);
        assert_eq!(
            cache_status(&answer),
            "forecastin-edge; fwd=uri-miss; fwd-status=200; ttl=60; stored"
        );
        assert!(!answer.headers.contains_key("cache-tag"));
        assert!(!answer.headers.contains_key("age"), "made for this request");
        let entry = stored_entry(&outcome);
        assert_eq!(
            entry.headers["cache-tag"], "e:FR",
            "kept for the zone purge"
        );
        match before_request(&req, Some(&entry), NOW_MS + 7_000) {
            BeforeRequest::Answer(answer) => {
                assert_eq!(answer.body, Body::Stored);
                assert_eq!(answer.headers["age"], "7");
                assert_eq!(answer.headers["content-length"], "10");
                assert_eq!(cache_status(&answer), "forecastin-edge; hit; ttl=53");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_upstream_age_is_kept_grown_and_counts_against_freshness() {
        let req = request(&[]);
        let mut response = origin(
            200,
            &[("cache-control", "max-age=60"), ("age", "50")],
            1,
            NOW_MS,
        );
        response.exchange.request_ms = NOW_MS - 2_000;
        let outcome = after_response(&req, None, Forward::UriMiss, response);
        let entry = stored_entry(&outcome);
        assert_eq!(answer_of(outcome).headers["age"], "52");
        match before_request(&req, Some(&entry), NOW_MS + 3_000) {
            BeforeRequest::Answer(answer) => assert_eq!(answer.headers["age"], "55"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            before_request(&req, Some(&entry), NOW_MS + 9_000),
            BeforeRequest::Fetch {
                fwd: Forward::Stale,
                ..
            }
        ));
    }

    #[test]
    fn stale_entries_are_refreshed_with_their_validators() {
        let req = request(&[]);
        let entry = miss_then_entry(
            &req,
            &[
                POLICY,
                ("etag", "\"v\""),
                ("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT"),
            ],
        );
        match before_request(&req, Some(&entry), NOW_MS + 61_000) {
            BeforeRequest::AnswerAndRefresh { answer, refresh } => {
                assert!(cache_status(&answer).contains("detail=stale-while-revalidate"));
                assert_eq!(refresh["if-none-match"], "\"v\"");
                assert_eq!(
                    refresh["if-modified-since"],
                    "Fri, 15 Jan 2027 07:00:00 GMT"
                );
                assert_eq!(refresh["accept"], "application/json");
            }
            other => panic!("{other:?}"),
        }
        match before_request(&req, Some(&entry), NOW_MS + 91_000) {
            BeforeRequest::Fetch { headers, fwd } => {
                assert_eq!(fwd, Forward::Stale);
                assert_eq!(headers["if-none-match"], "\"v\"");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refresh_after_a_soft_purge_revalidates_even_a_fresh_entry() {
        let req = request(&[]);
        let entry = miss_then_entry(&req, &[POLICY, ("etag", "\"v\"")]);
        assert!(matches!(
            before_request(&req, Some(&entry), NOW_MS + 1_000),
            BeforeRequest::Answer(_)
        ));
        let (headers, fwd) = before_refresh(&req, Some(&entry));
        assert_eq!(fwd, Forward::Stale);
        assert_eq!(headers["if-none-match"], "\"v\"");
        // The origin's new version replaces it; a 304 keeps it, freshened.
        let outcome = after_response(&req, Some(&entry), fwd, origin(304, &[POLICY], 0, NOW_MS));
        assert_eq!(stored_entry(&outcome).headers["etag"], "\"v\"");
        let (headers, fwd) = before_refresh(&req, None);
        assert_eq!(fwd, Forward::UriMiss);
        assert!(!headers.contains_key("if-none-match"));
    }

    #[test]
    fn no_cache_and_must_revalidate_revalidate_every_time_with_validators() {
        for policy in ["no-cache", "max-age=0, must-revalidate"] {
            let req = request(&[]);
            let entry = miss_then_entry(&req, &[("cache-control", policy), ("etag", "\"v\"")]);
            match before_request(&req, Some(&entry), NOW_MS) {
                BeforeRequest::Fetch { headers, fwd } => {
                    assert_eq!(fwd, Forward::Stale, "{policy}");
                    assert_eq!(headers["if-none-match"], "\"v\"", "{policy}");
                }
                other => panic!("{policy}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_304_freshens_the_stored_response() {
        let req = request(&[]);
        let entry = miss_then_entry(
            &req,
            &[
                ("cache-control", "max-age=1"),
                ("etag", "\"v\""),
                ("x-kept", "1"),
            ],
        );
        let later = NOW_MS + 5_000;
        let outcome = after_response(
            &req,
            Some(&entry),
            Forward::Stale,
            origin(
                304,
                &[
                    ("cache-control", "max-age=100"),
                    ("etag", "\"v\""),
                    ("x-new", "2"),
                    ("connection", "x-hop"),
                    ("x-hop", "3"),
                ],
                0,
                later,
            ),
        );
        let refreshed = stored_entry(&outcome);
        assert_eq!(refreshed.meta.stored.lifetime, 100);
        assert_eq!(refreshed.headers["x-kept"], "1");
        assert_eq!(refreshed.headers["x-new"], "2");
        assert!(
            !refreshed.headers.contains_key("x-hop"),
            "named by Connection"
        );
        assert_eq!(
            refreshed.headers["content-length"], "10",
            "the stored body's length"
        );
        let answer = answer_of(outcome);
        assert_eq!((answer.status, answer.body.clone()), (200, Body::Stored));
        assert_eq!(
            cache_status(&answer),
            "forecastin-edge; fwd=stale; fwd-status=304; ttl=100; stored"
        );
    }

    #[test]
    fn a_304_without_date_is_dated_on_arrival() {
        let req = request(&[]);
        let entry = miss_then_entry(&req, &[("cache-control", "max-age=60"), ("etag", "\"v\"")]);
        let an_hour_later = NOW_MS + 3_600_000;
        let outcome = after_response(
            &req,
            Some(&entry),
            Forward::Stale,
            origin(304, &[("etag", "\"v\"")], 0, an_hour_later),
        );
        let refreshed = stored_entry(&outcome);
        assert_eq!(refreshed.meta.stored.initial_age, 0, "not born an hour old");
        assert!(matches!(
            before_request(&req, Some(&refreshed), an_hour_later + 1_000),
            BeforeRequest::Answer(_)
        ));
    }

    #[test]
    fn a_304_for_another_representation_is_asked_again_without_validators() {
        let req = request(&[]);
        let entry = miss_then_entry(&req, &[("cache-control", "max-age=1"), ("etag", "\"v\"")]);
        let outcome = after_response(
            &req,
            Some(&entry),
            Forward::Stale,
            origin(304, &[("etag", "\"w\"")], 0, NOW_MS),
        );
        assert_eq!(
            outcome,
            AfterResponse::FetchUnconditionally {
                headers: req.forwarded.clone()
            }
        );
    }

    #[test]
    fn server_errors_and_failures_serve_stale_if_allowed() {
        let req = request(&[]);
        let entry = miss_then_entry(&req, &[POLICY]);
        let later = NOW_MS + 100_000;
        let answer = answer_of(after_response(
            &req,
            Some(&entry),
            Forward::Stale,
            origin(503, &[], 4, later),
        ));
        assert_eq!((answer.status, answer.body.clone()), (200, Body::Stored));
        assert_eq!(
            cache_status(&answer),
            "forecastin-edge; fwd=stale; fwd-status=503; ttl=-40; detail=stale-if-error"
        );
        let answer = after_failure(&req, Some(&entry), Failure::Timeout, later);
        assert_eq!(answer.status, 200);
        let too_late = NOW_MS + 700_000;
        let answer = answer_of(after_response(
            &req,
            Some(&entry),
            Forward::Stale,
            origin(503, &[], 4, too_late),
        ));
        assert_eq!((answer.status, answer.body), (503, Body::Origin));
        let answer = after_failure(&req, Some(&entry), Failure::Timeout, too_late);
        assert_eq!(answer.status, 504);
        assert!(matches!(answer.body, Body::Edge(_)));
    }

    #[test]
    fn unrepresentable_statuses_become_a_502() {
        for status in [0, 100, 103, 199, 600, 999] {
            let answer = answer_of(after_response(
                &request(&[]),
                None,
                Forward::UriMiss,
                origin(status, &[], 0, NOW_MS),
            ));
            assert_eq!(answer.status, 502, "{status}");
            let Body::Edge(body) = answer.body else {
                panic!("an edge body")
            };
            let body: ErrorBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(body.error.code, "origin_bad_response");
        }
    }

    #[test]
    fn client_conditionals_head_and_ranges_are_answered_from_the_stored_body() {
        let entry = miss_then_entry(&request(&[]), &[POLICY, ("etag", "\"v\"")]);
        let serve = |pairs: &[(&str, &str)], head: bool| {
            let mut req = request(pairs);
            req.head = head;
            match before_request(&req, Some(&entry), NOW_MS) {
                BeforeRequest::Answer(answer) => answer,
                other => panic!("{other:?}"),
            }
        };
        let answer = serve(&[("if-none-match", "\"v\"")], false);
        assert_eq!(
            (answer.status, answer.body, answer.without_body),
            (304, Body::Stored, true)
        );
        let answer = serve(&[("range", "bytes=2-5")], false);
        assert_eq!((answer.status, answer.slice), (206, Some((2, 6))));
        assert_eq!(answer.headers["content-range"], "bytes 2-5/10");
        assert_eq!(answer.headers["content-length"], "4");
        let answer = serve(&[("range", "bytes=20-")], false);
        assert_eq!((answer.status, answer.without_body), (416, true));
        assert_eq!(answer.headers["content-range"], "bytes */10");
        assert_eq!(answer.headers["cache-control"], "no-store");
        let answer = serve(&[("range", "bytes=2-5")], true);
        assert_eq!(
            (answer.status, answer.slice),
            (200, None),
            "HEAD ignores Range"
        );
        let answer = serve(&[("range", "bytes=2-5"), ("if-none-match", "\"v\"")], false);
        assert_eq!(answer.status, 304, "conditionals come before ranges");
        let answer = serve(&[], true);
        assert_eq!(
            (answer.status, answer.body, answer.without_body),
            (200, Body::Stored, true)
        );
        assert_eq!(answer.headers["content-length"], "10");
    }

    #[test]
    fn variants_miss_when_the_varied_header_differs() {
        let req = request(&[("accept-language", "fr")]);
        let entry = miss_then_entry(&req, &[POLICY, ("vary", "Accept-Language")]);
        assert!(matches!(
            before_request(&req, Some(&entry), NOW_MS),
            BeforeRequest::Answer(_)
        ));
        assert!(matches!(
            before_request(
                &request(&[("accept-language", "FR ")]),
                Some(&entry),
                NOW_MS
            ),
            BeforeRequest::Answer(_)
        ));
        assert!(matches!(
            before_request(&request(&[("accept-language", "de")]), Some(&entry), NOW_MS),
            BeforeRequest::Fetch {
                fwd: Forward::VaryMiss,
                ..
            }
        ));
    }

    #[test]
    fn unsafe_methods_invalidate_the_target_and_same_host_locations() {
        let url = url::Url::parse("https://edge.example/api/v1/entities/FR?junk=1").unwrap();
        let response = headers(&[
            ("location", "/api/v1/entities/DE"),
            ("content-location", "https://other.example/x"),
        ]);
        assert_eq!(
            invalidated_by_unsafe(&http::Method::POST, &url, 201, &response),
            [
                "https://edge.example/api/v1/entities/DE",
                "https://edge.example/api/v1/entities/FR"
            ]
        );
        assert_eq!(
            invalidated_by_unsafe(&http::Method::DELETE, &url, 204, &HeaderMap::new()),
            ["https://edge.example/api/v1/entities/FR"]
        );
        for (method, status) in [
            (http::Method::PUT, 500),
            (http::Method::PATCH, 404),
            (http::Method::GET, 200),
            (http::Method::OPTIONS, 200),
        ] {
            assert!(
                invalidated_by_unsafe(&method, &url, status, &response).is_empty(),
                "{method} {status}"
            );
        }
    }
}
