//! The edge core's per-request work, natively: for a hit, target normalisation, the key,
//! reading the stored entry and `before_request` (verdict and client answer); for a miss,
//! the same plus the origin URL and `after_response` (storage plan, stored headers, answer).
//!
//! Run: `cargo bench -p forecastin-edge --bench decision`.

use criterion::{criterion_group, criterion_main, Criterion};
use forecastin_edge::core::{
    cache::{
        after_response, before_request, AfterResponse, CacheableRequest, Entry, OriginResponse,
    },
    freshness::Exchange,
    request::{classify, origin_headers, RequestKind},
    status::Forward,
    stored::hit_fields,
    target::Target,
};
use http::{HeaderMap, Method};
use std::hint::black_box;
use url::Url;

const NOW_MS: u64 = 1_800_000_000_000;

fn client_request() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("accept", "application/json".parse().unwrap());
    headers.insert("user-agent", "bench/1.0".parse().unwrap());
    headers.insert("accept-encoding", "gzip, br".parse().unwrap());
    headers.insert("x-forwarded-host", "evil.example".parse().unwrap());
    headers
}

fn origin_response() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert(
        "cache-control",
        "public, max-age=5, s-maxage=60, stale-while-revalidate=30, stale-if-error=86400"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "etag",
        "\"38d62e55194e0d2f565b7416d57e93d8\"".parse().unwrap(),
    );
    headers.insert(
        "cache-tag",
        "e:FR-75,s:world,s:m49-150,s:m49-155,s:FR,s:FR-IDF"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "surrogate-key",
        "e:FR-75 s:world s:m49-150 s:m49-155 s:FR s:FR-IDF"
            .parse()
            .unwrap(),
    );
    headers.insert("date", "Fri, 15 Jan 2027 08:00:00 GMT".parse().unwrap());
    headers
}

const URL: &str = "https://edge.example/api/v1/entities/FR-75/children?limit=50&utm_source=mail&cursor=QnJldGFnbmUfRlItQlJF";

/// The request as the Worker hands it to the core.
fn cacheable(url: &Url, request: &HeaderMap, sessions: &[String]) -> (Target, CacheableRequest) {
    let target = Target::parse(url).expect("the URL's parameters are in bounds");
    let kind = classify(&Method::GET, &target.path, request, sessions);
    let RequestKind::Cacheable { credentialed } = kind else {
        panic!("a GET of the API is cacheable");
    };
    let cacheable = CacheableRequest {
        headers: request.clone(),
        forwarded: origin_headers(request, kind),
        head: false,
        credentialed,
        path: target.path.clone(),
    };
    (target, cacheable)
}

fn bench(c: &mut Criterion) {
    let request = client_request();
    let sessions = vec!["session".to_owned()];
    let url = Url::parse(URL).unwrap();
    let (_, cacheable_request) = cacheable(&url, &request, &sessions);
    let AfterResponse::Done {
        store: Some(store), ..
    } = after_response(
        &cacheable_request,
        None,
        Forward::UriMiss,
        response(origin_response()),
    )
    else {
        panic!("the response is stored");
    };

    // A hit reads only these fields from storage.
    let hit_fields: HeaderMap = store
        .headers
        .iter()
        .filter(|(name, _)| hit_fields().any(|field| field == name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();

    c.bench_function(
        "hit: target + key + classify + read stored + before_request",
        |b| {
            b.iter(|| {
                let url = Url::parse(black_box(URL)).unwrap();
                let (target, request) = cacheable(&url, &request, &sessions);
                let key = target.cache_key(&url);
                let entry = Entry::read(hit_fields.clone(), 2_000).unwrap();
                let decision = before_request(&request, Some(&entry), NOW_MS + 1_000);
                black_box((key, decision))
            })
        },
    );

    c.bench_function(
        "miss: target + key + classify + origin headers + before_request + after_response",
        |b| {
            b.iter(|| {
                let url = Url::parse(black_box(URL)).unwrap();
                let (target, request) = cacheable(&url, &request, &sessions);
                let key = target.cache_key(&url);
                let origin_url = target.origin_url(&ORIGIN);
                let decision = before_request(&request, None, NOW_MS);
                let outcome = after_response(
                    &request,
                    None,
                    Forward::UriMiss,
                    response(origin_response()),
                );
                black_box((key, origin_url, decision, outcome))
            })
        },
    );
}

fn response(headers: HeaderMap) -> OriginResponse {
    OriginResponse {
        status: 200,
        headers,
        body_len: 2_000,
        exchange: Exchange {
            request_ms: NOW_MS,
            response_ms: NOW_MS,
        },
    }
}

static ORIGIN: std::sync::LazyLock<Url> =
    std::sync::LazyLock::new(|| Url::parse("http://127.0.0.1:8080").unwrap());

criterion_group!(benches, bench);
criterion_main!(benches);
