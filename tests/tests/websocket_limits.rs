//! `GET /ws` against clients that hold what they should not: thousands of idle sockets from
//! one address, and pages from other sites. Apart from `websocket.rs`, whose slow-client test
//! measures buffers that two thousand sockets beside it would disturb.

use std::time::Duration;

use forecastin_e2e::{
    rename,
    stream::{next_event, Client},
    Origin,
};
use serde_json::Value;
use tokio_tungstenite::MaybeTlsStream;

/// Opens `/ws` from the local address `from` (any of 127/8 reaches the loopback).
async fn connect_from(origin: &Origin, from: [u8; 4]) -> Result<Client, u16> {
    let port: u16 = origin.url.rsplit(':').next().unwrap().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((from, 0)))
        .expect("a loopback address binds");
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("the origin accepts");
    let url = format!("ws://127.0.0.1:{port}/ws");
    match tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await {
        Ok((client, _)) => Ok(client),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("the handshake failed: {err}"),
    }
}

#[tokio::test]
async fn two_thousand_idle_connections_from_one_address_keep_no_other_address_out() {
    let origin = Origin::start(&[("WS_MAX_PER_ADDRESS", "32")]).await;
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let attempts = (0..200).map(|_| connect_from(&origin, [127, 0, 0, 1]));
        for attempt in futures_util::future::join_all(attempts).await {
            match attempt {
                Ok(client) => idle.push(client),
                Err(status) => {
                    assert_eq!(status, 429);
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((idle.len(), refused), (32, 1_968));

    let mut other = connect_from(&origin, [127, 0, 0, 2])
        .await
        .expect("another address is served");
    rename(&origin.url, "FR", "France?").await;
    assert_eq!(next_event(&mut other).await["entity_id"], "FR");
    // A slot given back is another client's to take.
    idle.truncate(31);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(connect_from(&origin, [127, 0, 0, 1]).await.is_ok());
}

#[tokio::test]
async fn only_the_allowed_page_origins_may_open_the_stream() {
    let origin = Origin::start(&[("WS_ALLOWED_ORIGINS", "https://forecastin.example")]).await;
    let handshake = |page: Option<&'static str>| {
        let mut request = forecastin_e2e::client()
            .get(format!("{}/ws", origin.url))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(page) = page {
            request = request.header("origin", page);
        }
        async move { request.send().await.unwrap() }
    };
    let foreign = handshake(Some("https://evil.example")).await;
    assert_eq!(foreign.status(), 403);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["error"]["code"], "foreign_origin");
    assert_eq!(
        handshake(Some("https://forecastin.example")).await.status(),
        101
    );
    assert_eq!(
        handshake(None).await.status(),
        101,
        "not a browser: no origin to check"
    );
}
