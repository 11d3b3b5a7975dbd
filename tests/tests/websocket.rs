//! `GET /ws` across instances: an event caused on one instance reaches a client of another,
//! filtered by subtree, and a client that reconnects gets what it missed.

use std::time::{Duration, Instant};

use forecastin_e2e::{
    admin, rename,
    stream::{next_event, Client},
    Backend, Origin,
};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::{connect_async, tungstenite::Message};

async fn two_instances() -> (Origin, Origin) {
    let namespace = format!(
        "e2e-ws-{}-{}",
        std::process::id(),
        forecastin_e2e::free_port()
    );
    let env = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", namespace.as_str()),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    (a, b)
}

async fn connect(origin: &Origin, query: &str) -> Client {
    let url = format!("{}/ws?{query}", origin.url.replace("http://", "ws://"));
    connect_async(url).await.expect("the websocket opens").0
}

/// A WebSocket handshake sent as a plain HTTP request, to read a refusal's status and body.
async fn upgrade_over_http(origin: &Origin, query: &str) -> reqwest::Response {
    forecastin_e2e::client()
        .get(format!("{}/ws?{query}", origin.url))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("the origin answers")
}

#[tokio::test]
async fn an_event_on_one_instance_reaches_a_subtree_client_on_another() {
    let (a, b) = two_instances().await;
    let mut france = connect(&b, "subtree=FR").await;
    let mut everything = connect(&b, "").await;

    rename(&a.url, "DE", "Deutschland").await;
    let written = Instant::now();
    rename(&a.url, "FR-75", "Paris!").await;
    let event = next_event(&mut france).await;
    eprintln!(
        "event received on the other instance {:?} after the write",
        written.elapsed()
    );
    assert_eq!(
        event["entity_id"], "FR-75",
        "the DE event is outside the subtree"
    );
    assert_eq!(event["change"], "updated");
    assert!(event["path"].as_array().unwrap().contains(&json!("FR")));
    assert_eq!(
        event["entity"]["name"], "Paris!",
        "the event carries the entity as the write left it"
    );

    let first = next_event(&mut everything).await;
    let second = next_event(&mut everything).await;
    assert_eq!(first["entity_id"], "DE");
    assert_eq!(second["entity_id"], "FR-75");
    assert!(second["id"].as_u64() > first["id"].as_u64());
}

#[tokio::test]
async fn a_client_that_reconnects_with_its_last_event_id_gets_what_it_missed() {
    let (a, b) = two_instances().await;
    let mut client = connect(&b, "").await;
    rename(&a.url, "IE", "Éire").await;
    let seen = next_event(&mut client).await["id"].as_u64().unwrap();
    drop(client);

    rename(&a.url, "IE", "Ireland").await;
    let moved = admin(Method::PATCH, &a.url, "/admin/v1/entities/IE-C")
        .json(&json!({ "parent_id": "IE-L" }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut resumed = connect(&a, &format!("last_event_id={seen}")).await;
    let first = next_event(&mut resumed).await;
    let second = next_event(&mut resumed).await;
    assert_eq!(
        (first["entity_id"].as_str(), first["change"].as_str()),
        (Some("IE"), Some("updated"))
    );
    assert_eq!(
        (second["entity_id"].as_str(), second["change"].as_str()),
        (Some("IE-C"), Some("moved"))
    );
    assert_eq!(first["id"].as_u64(), Some(seen + 1));
}

#[tokio::test]
async fn bad_stream_parameters_get_400() {
    let (a, _b) = two_instances().await;
    for query in ["subtree=not%20an%20id", "last_event_id=yesterday"] {
        let response = upgrade_over_http(&a, query).await;
        assert_eq!(response.status(), 400, "{query}");
    }
}

#[tokio::test]
async fn a_slow_client_is_dropped_without_delaying_a_fast_one() {
    let namespace = format!(
        "e2e-ws-slow-{}-{}",
        std::process::id(),
        forecastin_e2e::free_port()
    );
    let env = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", namespace.as_str()),
        ("WS_CLIENT_QUEUE", "4"),
        ("TCP_SEND_BUFFER_BYTES", "4096"),
    ];
    let a = Origin::start_with(Backend::Postgres, &env).await;
    let b = a.start_sibling(&[]).await;
    // The slow client: a tiny receive buffer, and it never reads.
    let address: std::net::SocketAddr = b.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(format!("ws://{address}/ws"), stream)
        .await
        .unwrap();
    let mut fast = connect(&b, "").await;

    const WRITES: usize = 400;
    let reader = tokio::spawn(async move {
        let mut received = 0;
        while received < WRITES {
            next_event(&mut fast).await;
            received += 1;
        }
        received
    });
    for n in 0..WRITES {
        rename(&a.url, "LU", &format!("Luxembourg {n} {}", "x".repeat(150))).await;
    }
    assert_eq!(
        reader.await.unwrap(),
        WRITES,
        "the fast client got every event"
    );

    // The slow client, reading at last, finds the close frame (or the dropped connection).
    // The instance dropped the slow client and let go of its connection, which the client
    // still holds open: with the fast one gone, none is left. (Whether the slow client sees
    // the close frame or the cut depends on what its tiny buffers held when it came; the
    // instance is what must not wait.)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = b.metrics().await;
        let dropped = metrics.contains("websocket_clients_dropped_total 1");
        let none_left = metrics.contains("websocket_clients_connected 0");
        if dropped && none_left {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow client was never dropped:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(slow);
}

/// The bounds of one instance: clients beyond `WS_MAX_CLIENTS` are refused with 503 and the
/// JSON error (the others keep their stream); a client message over 64 KiB closes that client
/// only; a `last_event_id` that was never issued gets a reset, not a crash.
#[tokio::test]
async fn clients_messages_and_resume_ids_are_bounded() {
    let origin = Origin::start(&[("WS_MAX_CLIENTS", "2")]).await;
    let mut first = connect(&origin, "").await;
    let _second = connect(&origin, "").await;
    let refused = upgrade_over_http(&origin, "").await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");

    use futures_util::SinkExt;
    let huge = "x".repeat(65 * 1024);
    first.send(Message::Text(huge.into())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match first.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the oversized message closed the client");
    // Its place is free again, and an id never issued is answered with a reset.
    rename(&origin.url, "DE", "Deutschland").await;
    let mut resumed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let url = format!(
                "{}/ws?last_event_id={}",
                origin.url.replace("http://", "ws://"),
                u64::MAX
            );
            if let Ok((client, _)) = connect_async(url).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a place is free once the closed client is gone");
    let frame = tokio::time::timeout(Duration::from_secs(3), resumed.next())
        .await
        .expect("a message")
        .unwrap()
        .unwrap();
    let Message::Text(text) = frame else {
        panic!("a text message: {frame:?}")
    };
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["type"], "reset", "{message}");
}
