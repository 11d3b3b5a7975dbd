//! The dashboard and the alert rules read metrics the origin really exports: an origin with a
//! streaming replica, Redis, the Cloudflare provider (its stand-in) and a websocket client
//! serves reads and a write, and every query of `deploy/grafana/forecastin.json` and
//! `deploy/prometheus/rules.yml` is checked against its live `/metrics` by
//! `deploy/check_metrics.py`.

use std::time::{Duration, Instant};

use forecastin_e2e::{
    client, free_port, get_json, rename, replica::StreamingPair, repo_root, standins, wait_settled,
    Origin,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

#[tokio::test]
async fn every_dashboard_and_rule_query_names_an_exported_metric() {
    let Some(pair) = StreamingPair::start_or_skip() else {
        return;
    };
    let cloudflare = standins::cloudflare("zone-obs", "token-obs", 0).await;
    let namespace = format!("obs-{}", std::process::id());
    let origin = Origin::start(&[
        ("DATABASE_URL", pair.primary_url.as_str()),
        ("DATABASE_REPLICA_URLS", pair.replica_url.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", &namespace),
        ("PURGE_PROVIDERS", "cloudflare"),
        ("CLOUDFLARE_API_BASE", &cloudflare.url),
        ("CLOUDFLARE_ZONE_ID", "zone-obs"),
        ("CLOUDFLARE_API_TOKEN", "token-obs"),
    ])
    .await;
    let started = Instant::now();
    while origin.sample("db_replica_in_rotation").await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never joined"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ws_url = format!("{}/ws", origin.url.replace("http://", "ws://"));
    let (_client, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    for path in ["FR", "FR", "FR/ancestors", "FR/children"] {
        get_json(&format!("{}/api/v1/entities/{path}", origin.url)).await;
    }
    let purge = rename(&origin.url, "FR", "France (observed)").await;
    wait_settled(&origin, &purge, Duration::from_secs(10)).await;

    let scrape = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(scrape.path(), origin.metrics().await).unwrap();
    let root = repo_root();
    let output = std::process::Command::new(root.join(".tools/venv/bin/python"))
        .arg(root.join("deploy/check_metrics.py"))
        .arg(scrape.path())
        .arg(root.join("deploy/grafana/forecastin.json"))
        .arg(root.join("deploy/prometheus/rules.yml"))
        .arg(root.join("deploy/k8s/prometheus-adapter.yaml"))
        .output()
        .expect("the checker runs (./scripts/test installs its Python)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// As the image runs it (`ADMIN_ADDR` set), the container's HEALTHCHECK asks the admin
/// listener, where `/healthz` is; `/metrics` is there too, and not on the public listener.
#[tokio::test]
async fn the_health_check_follows_the_admin_listener() {
    let admin_addr = format!("127.0.0.1:{}", forecastin_e2e::free_port());
    let origin = Origin::start(&[("ADMIN_ADDR", admin_addr.as_str())]).await;
    let listen = origin.url.trim_start_matches("http://").to_owned();
    let output = tokio::process::Command::new(Origin::binary())
        .arg("healthcheck")
        .env("LISTEN_ADDR", &listen)
        .env("ADMIN_ADDR", &admin_addr)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let public = forecastin_e2e::client()
        .get(format!("{}/metrics", origin.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "not on the public listener");
    assert!(origin.metrics().await.contains("http_requests_total"));
}

/// The container's HEALTHCHECK (Dockerfile) runs `forecastin-origin healthcheck`: it passes
/// against a serving origin, whatever address it listens on, and fails where none listens.
#[tokio::test]
async fn the_health_check_subcommand_passes_only_against_a_serving_origin() {
    let origin = Origin::start(&[]).await;
    let port = origin.url.rsplit(':').next().unwrap();
    let check = |listen: String| async move {
        tokio::process::Command::new(Origin::binary())
            .arg("healthcheck")
            .env("LISTEN_ADDR", listen)
            .output()
            .await
            .unwrap()
    };
    for listen in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let output = check(listen.clone()).await;
        assert!(
            output.status.success(),
            "{listen}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let nobody = format!("127.0.0.1:{}", forecastin_e2e::free_port());
    let output = check(nobody).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/healthz"));
}

/// With `LOG_FORMAT=json` every line the origin writes is a JSON object, and a request is
/// logged under the id its response returns in `X-Request-ID`: the client's, else a
/// `traceparent`'s trace id, else a new one (a client's unusable id is not logged).
#[tokio::test]
async fn json_logs_carry_the_id_each_response_returns() {
    let origin = Origin::start(&[("LOG_FORMAT", "json"), ("RUST_LOG", "info")]).await;
    let url = format!("{}/api/v1/entities/FR", origin.url);
    let client = forecastin_e2e::client();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut ids = Vec::new();
    for (header, value) in [
        ("x-request-id", "analyst-7f3a"),
        ("traceparent", traceparent),
        ("x-request-id", "<not an id>"),
    ] {
        let response = client.get(&url).header(header, value).send().await.unwrap();
        assert_eq!(response.status(), 200);
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids[0], "analyst-7f3a");
    assert_eq!(ids[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        ids[2].len() == 32 && ids[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "a new id: {}",
        ids[2]
    );

    // The response line of each request is written as it completes; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = origin.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    for id in &ids {
        let logged = lines.iter().any(|line| {
            line["span"]["id"] == id.as_str()
                && line["span"]["uri"] == "/api/v1/entities/FR"
                && line["status"] == 200
        });
        assert!(logged, "no response line for {id} in:\n{log}");
    }
    assert!(!log.contains("<not an id>"));
}

/// The JSON lines of a log that holds other lines too (wrangler's own), parsed.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str(line.trim()).ok())
        .collect()
}

#[tokio::test]
async fn the_edge_and_the_origin_log_a_request_under_the_id_the_edge_returns() {
    let origin = Origin::start(&[("LOG_FORMAT", "json"), ("RUST_LOG", "info")]).await;
    let edge = forecastin_e2e::Edge::start_logging_requests(&origin.url).await;
    let url = format!("{}/api/v1/entities/DE/ancestors", edge.url);
    let client = forecastin_e2e::client();
    let mut answers = Vec::new();
    for given in [None, None, Some("analyst-42"), Some("<not an id>")] {
        let mut request = client.get(&url);
        if let Some(id) = given {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        answers.push((header("x-request-id"), header("cache-status")));
    }
    let new_id = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let ids: Vec<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        new_id(ids[0]) && new_id(ids[1]) && new_id(ids[3]),
        "{ids:?}"
    );
    assert_ne!(
        ids[0], ids[1],
        "a hit must not return the id stored with the page"
    );
    assert_eq!(ids[2], "analyst-42");
    assert!(answers[0].1.contains("fwd=uri-miss"), "{:?}", answers[0]);
    assert!(answers[1].1.contains("hit"), "{:?}", answers[1]);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let edge_lines = json_lines(&edge.log());
    for (id, cache_status) in &answers {
        assert!(
            edge_lines
                .iter()
                .any(|line| line["request_id"] == id.as_str()
                    && line["status"] == 200
                    && line["cache_status"] == cache_status.as_str()
                    // Where the request entered, from the runtime's `request.cf`.
                    && line["colo"].is_string()
                    && line["country"].is_string()),
            "the edge did not log {id}:\n{}",
            edge.log()
        );
    }
    // Only the miss reached the origin, under the id the edge gave it.
    let origin_lines = json_lines(&origin.log());
    assert!(
        origin_lines
            .iter()
            .any(|line| line["span"]["id"] == ids[0] && line["status"] == 200),
        "the origin did not log {}:\n{}",
        ids[0],
        origin.log()
    );
    assert!(!edge.log().contains("<not an id>"));
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a request's span reaches the collector over
/// OTLP/HTTP as a child of the `traceparent` it came with. The collector here is a receiver of
/// the protocol's documented contract (a protobuf `ExportTraceServiceRequest` POSTed to
/// `/v1/traces`), standing in for an OpenTelemetry Collector, which this machine does not have.
#[tokio::test]
async fn a_request_span_is_exported_as_a_child_of_its_traceparent() {
    let (received, mut spans) = tokio::sync::mpsc::unbounded_channel();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
            let _ = received.send(request);
            ""
        }),
    );
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });
    let endpoint = format!("http://127.0.0.1:{port}");
    let origin = Origin::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // The SDK's batch goes out every 5 s by default.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = client()
        .get(format!("{}/api/v1/entities/FR", origin.url))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(export)) = tokio::time::timeout(left, spans.recv()).await else {
            panic!(
                "no span of the request reached the collector; the origin logged:\n{}",
                origin.log()
            );
        };
        let request_span = export
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans)
            .find(|span| span.name == "request" && hex(&span.trace_id) == trace_id)
            .cloned();
        if let Some(span) = request_span {
            let service = export.resource_spans[0]
                .resource
                .as_ref()
                .and_then(|resource| {
                    resource
                        .attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                })
                .map(|kv| format!("{:?}", kv.value));
            break (span, service);
        }
    };
    let (span, service) = found;
    assert_eq!(
        hex(&span.parent_span_id),
        parent_id,
        "the client's span is the parent"
    );
    assert!(
        span.attributes
            .iter()
            .any(|kv| kv.key == "uri" && format!("{:?}", kv.value).contains("/api/v1/entities/FR")),
        "{:?}",
        span.attributes
    );
    assert!(
        service.is_some_and(|name| name.contains("forecastin-origin")),
        "the service is named"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
