//! The edge under hostile input, together with good traffic: bytes ≥ 0x80 in every header the
//! edge reads, paths that look like another authority, oversized purge bodies, junk query
//! parameters and the origin's operational routes, sent concurrently with analysts' reads.
//! Every good request must succeed, no hostile one may be a 5xx or reach another host, and the
//! Worker must not panic (a panic would restart the isolate and fail its requests in flight).

use std::time::Duration;

use forecastin_e2e::{
    cache_status, client, fixture, free_port, Edge, Origin, ADMIN_TOKEN, EDGE_AUTH,
};
use futures_util::future::join_all;
use reqwest::header::HeaderValue;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Headers the edge reads, each to be sent with bytes ≥ 0x80.
const READ_HEADERS: [&str; 15] = [
    "accept",
    "accept-language",
    "accept-encoding",
    "user-agent",
    "range",
    "if-none-match",
    "if-modified-since",
    "if-range",
    "cookie",
    "authorization",
    "traceparent",
    "tracestate",
    "x-request-id",
    "connection",
    "cache-control",
];

const GOOD_PATHS: [&str; 8] = [
    "/api/v1/entities/FR",
    "/api/v1/entities/DE/ancestors",
    "/api/v1/entities/world/children?limit=5",
    "/api/v1/entities/IT",
    "/api/v1/entities/ES/children",
    "/api/v1/search?q=fra",
    "/api/v1/entities/FR-75/ancestors",
    "/",
];

/// Sends raw bytes as one HTTP/1.1 request and returns the status code (0: no answer).
async fn raw_status(port: u16, request: Vec<u8>) -> u16 {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(&request).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let line = String::from_utf8_lossy(&answer);
        line.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

fn edge_port(edge: &Edge) -> u16 {
    edge.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// The hostile request number `n`: (what it is, its status).
async fn hostile(edge: &Edge, decoy: &str, n: usize) -> (String, u16) {
    let port = edge_port(edge);
    let decoy_host = decoy.trim_start_matches("http://");
    let obs = HeaderValue::from_bytes(b"\xe9\xff caf\xc3 \x80").unwrap();
    match n % 10 {
        0..=3 => {
            let name = READ_HEADERS[n % READ_HEADERS.len()];
            let path = GOOD_PATHS[n % GOOD_PATHS.len()];
            let status = client()
                .get(format!("{}{path}", edge.url))
                .header(name, obs.clone())
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            (format!("{name}: obs-text on {path}"), status)
        }
        4 | 5 => {
            let paths = [
                format!("//{decoy_host}/x"),
                format!("/\\{decoy_host}/x"),
                format!("/%2f%2f{decoy_host}/x"),
                format!("/..//{decoy_host}/x"),
                format!("/.%2e//{decoy_host}/x"),
                format!("///{decoy_host}/x?y=1"),
            ];
            let path = &paths[n % paths.len()];
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            (
                format!("path {path}"),
                raw_status(port, request.into_bytes()).await,
            )
        }
        6 => {
            let body = vec![b'{'; 100 * 1024];
            let status = client()
                .post(format!("{}/__edge/purge", edge.url))
                .header("x-forecastin-signature", obs.clone())
                .body(body)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            ("purge of 100 KiB".into(), status)
        }
        7 => {
            // Chunked, no Content-Length: the edge must stop reading at its cap.
            let mut request = format!(
                "POST /__edge/purge HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            .into_bytes();
            for _ in 0..100 {
                request.extend_from_slice(b"400\r\n");
                request.extend_from_slice(&[b' '; 0x400]);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
            (
                "chunked purge of 100 KiB".into(),
                raw_status(port, request).await,
            )
        }
        8 => {
            let status = client()
                .get(format!(
                    "{}/api/v1/entities/FR?junk={n}&cursor=&utm_source=x",
                    edge.url
                ))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            ("junk parameters".into(), status)
        }
        _ => {
            let path = ["/metrics", "/readyz", "/healthz", "/__edge/x"][n % 4];
            let status = client()
                .get(format!("{}{path}", edge.url))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            (format!("operational {path}"), status)
        }
    }
}

#[tokio::test]
async fn hostile_requests_fail_alone_and_good_ones_all_succeed() {
    let origin = Origin::start(&[]).await;
    let decoy = fixture::start().await;
    let edge = Edge::start(&origin.url).await;
    // The analysts' pages are in the cache, as in service (a cold start herd is another matter).
    for path in GOOD_PATHS {
        let response = client()
            .get(format!("{}{path}", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    let good = (0..200).map(|n| {
        let url = format!("{}{}", edge.url, GOOD_PATHS[n % GOOD_PATHS.len()]);
        async move {
            let response = client()
                .get(&url)
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            // The client's error whole, not a bare 0: a timeout and a reset differ.
            let answer = response
                .map(|r| r.status().as_u16())
                .map_err(|error| format!("{error:?}"));
            (url, answer)
        }
    });
    let bad = (0..200).map(|n| hostile(&edge, &decoy.url, n));
    let (good, bad) = tokio::join!(join_all(good), join_all(bad));

    let failed: Vec<_> = good
        .iter()
        .filter(|(_, answer)| *answer != Ok(200))
        .collect();
    assert!(failed.is_empty(), "good requests failed: {failed:?}");
    let server_errors: Vec<_> = bad
        .iter()
        .filter(|(_, status)| *status >= 500 || *status == 0)
        .collect();
    assert!(
        server_errors.is_empty(),
        "hostile requests got a 5xx or no answer: {server_errors:?}"
    );
    for (what, status) in &bad {
        if what.starts_with("purge") || what.starts_with("chunked purge") {
            assert_eq!(*status, 413, "{what}");
        }
        if what.starts_with("operational") {
            assert_eq!(*status, 404, "{what}");
        }
    }
    assert_eq!(decoy.requests(), 0, "a path reached another host");
    let mut statuses: Vec<u16> = bad.iter().map(|(_, status)| *status).collect();
    statuses.sort();
    statuses.dedup();
    println!("hostile statuses: {statuses:?}");
    edge.assert_no_panic();
}

#[tokio::test]
async fn junk_parameters_make_no_new_entries() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    let route = "/api/v1/entities/{id}";
    for n in 0..300 {
        let response = client()
            .get(format!(
                "{}/api/v1/entities/DE?junk={n}&utm_source={n}",
                edge.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        if n > 0 {
            assert!(
                cache_status(&response).contains("hit"),
                "{n}: {}",
                cache_status(&response)
            );
        }
    }
    assert_eq!(origin.served(route).await, 1, "one entry, filled once");
}

#[tokio::test]
async fn padded_parameters_share_one_entry_and_bad_ones_never_reach_the_origin() {
    let origin = Origin::start(&[]).await;
    let edge = Edge::start(&origin.url).await;
    let route = "/api/v1/entities/{id}/children";
    for zeros in [0, 10, 20, 30] {
        let response = client()
            .get(format!(
                "{}/api/v1/entities/FR/children?limit={}5",
                edge.url,
                "0".repeat(zeros)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        if zeros > 0 {
            assert!(cache_status(&response).contains("hit"), "{zeros} zeros");
        }
    }
    for (query, field) in [
        ("limit=501", "limit"),
        ("limit=5&limit=6", "limit"),
        ("cursor=", "cursor"),
        ("cursor=%2B%2F%3D%3D", "cursor"),
    ] {
        let response = client()
            .get(format!("{}/api/v1/entities/FR/children?{query}", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    let cursor = "A".repeat(forecastin_shared::params::MAX_CURSOR_CHARS + 4);
    let long = client()
        .get(format!(
            "{}/api/v1/entities/world/descendants?cursor={cursor}",
            edge.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    assert_eq!(
        origin.served(route).await,
        1,
        "one fill for every spelling, none for the refused"
    );
    edge.assert_no_panic();
}

#[tokio::test]
async fn the_origin_answers_only_its_edge_and_keeps_admin_apart() {
    let admin_addr = format!("127.0.0.1:{}", free_port());
    // The edge's credential is the previous one: a rotation under way.
    let credentials = format!("a-newer-edge-credential-of-32-bytes,{EDGE_AUTH}");
    let origin = Origin::start(&[
        ("EDGE_AUTH", credentials.as_str()),
        ("ADMIN_ADDR", admin_addr.as_str()),
    ])
    .await;
    let edge = Edge::start(&origin.url).await;
    let page = "/api/v1/entities/FR";

    let through_edge = client()
        .get(format!("{}{page}", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(through_edge.status(), 200);
    for credential in [None, Some("guessed"), Some(&EDGE_AUTH[1..])] {
        let mut request = client().get(format!("{}{page}", origin.url));
        if let Some(credential) = credential {
            request = request.header("x-forecastin-edge-auth", credential);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{credential:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "edge_only");
    }
    let current = client()
        .get(format!("{}{page}", origin.url))
        .header(
            "x-forecastin-edge-auth",
            "a-newer-edge-credential-of-32-bytes",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), 200, "the new credential is taken too");

    // Admin, metrics and probes are on their own listener only.
    for path in ["/admin/v1/instances", "/metrics", "/readyz", "/healthz"] {
        let public = client()
            .get(format!("{}{path}", origin.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{path} on the public listener");
        let private = client()
            .get(format!("{}{path}", origin.admin_url()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(private.status(), 200, "{path} on ADMIN_ADDR");
    }
    edge.assert_no_panic();
}
