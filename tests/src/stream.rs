//! A client of the origin's `GET /ws` event stream, for the websocket tests.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The next event message, skipping pings; fails after 3 s or on anything but an event.
pub async fn next_event(client: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(3), client.next())
            .await
            .expect("an event within 3 s")
            .expect("the stream is open")
            .expect("a valid frame");
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(message["type"], "event", "{message}");
            return message;
        }
    }
}
