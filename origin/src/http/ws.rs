//! `GET /ws`: a stream of entity change events, optionally for one subtree
//! (`?subtree=FR`), resumable (`?last_event_id=N`).
//!
//! Each client has a bounded queue: a client that does not keep up is closed with code 4008
//! and can resume with the last id it saw, so a slow client never holds up the others. The
//! server pings every 15 seconds and drops a client it has not heard from (no pong, no frame)
//! for two pings. A client's own messages are capped at 64 KiB (it only sends pongs), and an
//! instance serves at most `WS_MAX_CLIENTS` clients: more are refused with 503 before the
//! upgrade.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
        State, WebSocketUpgrade,
    },
    response::Response,
};
use forecastin_shared::{
    dto::{EntityEvent, StreamMessage},
    ids::is_valid_id,
};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{extract::ApiQuery, openapi::Overloaded, AppState};
use crate::{error::ApiError, events::Missed};

const PING_EVERY: Duration = Duration::from_secs(15);
/// Close code of a client that fell behind (application range).
pub const TOO_SLOW: u16 = 4008;
/// How long a slow client is given to take its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Largest message or frame a client may send: it sends pongs and close frames only.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Deserialize)]
struct StreamQuery {
    subtree: Option<String>,
    last_event_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/ws",
    operation_id = "stream_changes",
    tag = "hierarchy",
    summary = "A WebSocket stream of entity changes (`StreamMessage` frames)",
    params(
        ("subtree" = Option<String>, Query, description = "Only the changes under this entity"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (replayed, or a `reset` message)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; each text frame is a `StreamMessage`", body = StreamMessage),
        (status = 400, description = "A malformed parameter (a JSON error body), or not a WebSocket handshake (plain text)"),
        Overloaded,
    ),
)]
async fn stream(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if let Some(subtree) = &query.subtree {
        if !is_valid_id(subtree) {
            return Err(ApiError::bad_parameter(
                "subtree",
                "`subtree` must be an entity id",
            ));
        }
    }
    let last_seen = query
        .last_event_id
        .as_deref()
        .map(|id| {
            id.parse::<u64>().map_err(|_| {
                ApiError::bad_parameter("last_event_id", "`last_event_id` is an event id")
            })
        })
        .transpose()?;
    let client = ConnectedClient::admit(state.clone()).ok_or_else(|| {
        ApiError::Overloaded(format!(
            "this instance serves {} websocket clients already; retry, or another instance",
            state.ws_max_clients
        ))
    })?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, client, query.subtree, last_seen)))
}

/// A client admitted under the instance's limit, counted (and in
/// `websocket_clients_connected`) for as long as it is held.
struct ConnectedClient(Arc<AppState>);

impl ConnectedClient {
    fn admit(state: Arc<AppState>) -> Option<Self> {
        let limit = state.ws_max_clients;
        state
            .ws_clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        ::metrics::gauge!(crate::metrics::WS_CLIENTS).increment(1.0);
        Some(ConnectedClient(state))
    }
}

impl Drop for ConnectedClient {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Ordering::SeqCst);
        ::metrics::gauge!(crate::metrics::WS_CLIENTS).decrement(1.0);
    }
}

fn message(payload: &StreamMessage) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(payload).expect("stream messages serialize"),
    ))
}

async fn serve(
    socket: WebSocket,
    client: ConnectedClient,
    subtree: Option<String>,
    last_seen: Option<u64>,
) {
    let state = client.0.clone();
    let wanted = move |event: &EntityEvent| {
        subtree
            .as_ref()
            .is_none_or(|root| event.path.contains(root))
    };
    let _connected = client;
    let (mut events, missed) = state.bus.events().subscribe(last_seen);
    let (queue, mut outgoing) = mpsc::channel::<Message>(state.ws_client_queue);
    let (mut sink, mut incoming) = socket.split();

    // Writer: the only task that waits on this client's socket.
    let mut writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let next = tokio::select! {
                message = outgoing.recv() => message,
                _ = ping.tick() => Some(Message::Ping(Default::default())),
            };
            let Some(message) = next else { break };
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
    });

    let close = |reason: &str| {
        Message::Close(Some(CloseFrame {
            code: TOO_SLOW,
            reason: Utf8Bytes::from(reason.to_owned()),
        }))
    };
    let mut backlog = match missed {
        Missed::Events(events) => events,
        Missed::TooMany => {
            let reset = StreamMessage::Reset {
                reason: "more events were missed than are kept".into(),
            };
            let _ = queue.try_send(message(&reset));
            Vec::new()
        }
    };
    backlog.retain(|event| wanted(event));
    let mut open = true;
    for event in backlog {
        if queue
            .try_send(message(&StreamMessage::Event((*event).clone())))
            .is_err()
        {
            open = false;
            break;
        }
    }
    // Fan-out: never waits on the client; a full queue closes it.
    let mut too_slow = !open;
    let mut heard_at = tokio::time::Instant::now();
    let mut liveness = tokio::time::interval(PING_EVERY);
    while open {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) if wanted(&event) => {
                    if queue.try_send(message(&StreamMessage::Event((*event).clone()))).is_err() {
                        too_slow = true;
                        open = false;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    too_slow = true;
                    open = false;
                }
                Err(RecvError::Closed) => open = false,
            },
            frame = incoming.next() => match frame {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => open = false,
                Some(Ok(_)) => heard_at = tokio::time::Instant::now(),
            },
            _ = liveness.tick() => {
                // Pongs (and any other frame) prove the peer alive; two missed pings do not.
                if heard_at.elapsed() > 2 * PING_EVERY + Duration::from_secs(5) {
                    open = false;
                }
            }
        }
    }
    if too_slow {
        ::metrics::counter!(crate::metrics::WS_DROPPED).increment(1);
        let reason = close("client too slow; reconnect with last_event_id");
        let _ = tokio::time::timeout(CLOSE_GRACE, queue.send(reason)).await;
    }
    drop(queue);
    // A client that reads nothing cannot even take the close frame: drop the connection.
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}
