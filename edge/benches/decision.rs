//! The edge core's per-request work, natively: for a hit, key normalisation, reading the
//! stored bookkeeping, the freshness verdict and the client header rewrite; for a miss, key
//! normalisation, the storage plan, the stored headers and the client header rewrite.
//!
//! Run: `cargo bench -p forecastin-edge --bench decision`.

use criterion::{criterion_group, criterion_main, Criterion};
use forecastin_edge::core::{
    freshness::plan,
    key::cache_key,
    request::{classify, origin_headers},
    status::{for_client, CacheStatus, Forward},
    stored::{headers_to_store, read_stored},
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

fn bench(c: &mut Criterion) {
    let request = client_request();
    let sessions = vec!["session".to_owned()];
    let stored_headers = {
        let stored = plan(&request, false, 200, &origin_response(), NOW_MS).unwrap();
        headers_to_store(
            &origin_response(),
            &stored,
            "/api/v1/entities/FR-75/children",
        )
    };

    c.bench_function(
        "hit: key + classify + read stored + verdict + client headers",
        |b| {
            b.iter(|| {
                let url = Url::parse(black_box(URL)).unwrap();
                let kind = classify(&Method::GET, url.path(), &request, &sessions);
                let key = cache_key(&url);
                let mut headers = stored_headers.clone();
                let meta = read_stored(&mut headers).unwrap();
                let verdict = meta.stored.verdict(NOW_MS + 1_000);
                for_client(
                    &mut headers,
                    &CacheStatus::hit(59),
                    Some(meta.stored.age(NOW_MS)),
                    0,
                );
                black_box((kind, key, verdict, headers))
            })
        },
    );

    c.bench_function(
        "miss: key + classify + origin headers + plan + stored headers + client headers",
        |b| {
            let response = origin_response();
            b.iter(|| {
                let url = Url::parse(black_box(URL)).unwrap();
                let kind = classify(&Method::GET, url.path(), &request, &sessions);
                let key = cache_key(&url);
                let forwarded = origin_headers(&request, kind);
                let stored = plan(&request, false, 200, &response, NOW_MS).unwrap();
                let to_store = headers_to_store(&response, &stored, url.path());
                let mut client = response.clone();
                for_client(
                    &mut client,
                    &CacheStatus::forward(Forward::UriMiss),
                    Some(0),
                    0,
                );
                black_box((key, forwarded, to_store, client))
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
