//! `GET /ws`: a stream of entity change events, optionally for one subtree
//! (`?subtree=FR`), resumable (`?last_event_id=N`).
//!
//! Each client has a bounded queue: a client that does not keep up is closed with code 4008
//! and can resume with the last id it saw, so a slow client never holds up the others. The
//! server pings every 15 seconds and drops a client it has not heard from (no pong, no frame)
//! for two pings. A client's own messages are capped at 64 KiB (it only sends pongs). An
//! instance serves at most `WS_MAX_CLIENTS` clients, and at most `WS_MAX_PER_ADDRESS` from
//! one address, an IPv6 one's /64 (the edge's `CF-Connecting-IP` behind an authenticated edge,
//! which Cloudflare sets, else the peer's):
//! more are refused before the upgrade (503, 429), so idle sockets of one address cannot keep
//! others out. A browser's handshake from an `Origin` outside `WS_ALLOWED_ORIGINS` (when set)
//! is refused with 403.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
        ConnectInfo, FromRequestParts, State, WebSocketUpgrade,
    },
    http::{header, request::Parts},
    response::Response,
};
use forecastin_shared::{
    dto::{EntityEvent, ErrorBody, StreamMessage},
    ids::is_valid_id,
};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{extract::ApiQuery, responses::Overloaded, AppState};
use crate::{cluster::events::Missed, error::ApiError};

const PING_EVERY: Duration = Duration::from_secs(15);
/// Close code of a client that fell behind (application range).
pub const TOO_SLOW: u16 = 4008;
/// Close code of the streams of an instance that is stopping (RFC 6455's "going away"): the
/// client resumes on another at once.
pub const GOING_AWAY: u16 = 1001;
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
        ("subtree" = Option<String>, Query, description = "Only the changes under this entity", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (replayed, or a `reset` message)", pattern = "^[0-9]{1,20}$"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; each text frame is a `StreamMessage`", body = StreamMessage),
        (status = 400, description = "A malformed parameter (a JSON error body), or not a WebSocket handshake (plain text)"),
        (status = 403, description = "A page from an origin outside `WS_ALLOWED_ORIGINS` (`foreign_origin`), or no edge credential where one is required (`edge_only`)", body = ErrorBody),
        (status = 429, description = "This address holds `WS_MAX_PER_ADDRESS` streams already (`too_many_connections`)", body = ErrorBody),
        Overloaded,
    ),
)]
async fn stream(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    Handshake { address, origin }: Handshake,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if let Some(origin) = origin {
        let allowed = &state.streams.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|known| known == &origin) {
            return Err(ApiError::ForeignOrigin(origin));
        }
    }
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
    let client = ConnectedClient::admit(state.clone(), address)?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, client, query.subtree, last_seen)))
}

/// What the handshake says of its client: the address it counts against (see the module's
/// doc) and the page's `Origin`, if a browser sent one.
struct Handshake {
    address: Option<IpAddr>,
    origin: Option<String>,
}

impl FromRequestParts<Arc<AppState>> for Handshake {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        // Only an authenticated edge's word is taken for the client's address.
        let relayed = (!state.access.edge_auth.is_empty())
            .then(|| header("cf-connecting-ip")?.trim().parse::<IpAddr>().ok())
            .flatten();
        Ok(Handshake {
            address: relayed.or(peer).map(network_of),
            origin: header(header::ORIGIN.as_str()).map(str::to_owned),
        })
    }
}

/// The address a client counts against: an IPv6 client's /64, which one subscriber holds
/// whole (so counting its single addresses would count nothing).
fn network_of(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

/// A client admitted under the instance's limits, counted (and in
/// `websocket_clients_connected`) for as long as it is held.
struct ConnectedClient {
    state: Arc<AppState>,
    _address: Option<AddressSlot>,
}

impl ConnectedClient {
    fn admit(state: Arc<AppState>, address: Option<IpAddr>) -> Result<Self, ApiError> {
        if state.lifetime.departing.is_cancelled() {
            return Err(ApiError::Overloaded(
                "this instance is stopping; connect to another".to_owned(),
            ));
        }
        let slot = address
            .map(|address| AddressSlot::take(state.clone(), address))
            .transpose()?;
        let limit = state.streams.max_clients;
        state
            .streams
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| {
                ApiError::Overloaded(format!(
                    "this instance serves {limit} websocket clients already; retry, or another \
                     instance"
                ))
            })?;
        ::metrics::gauge!(crate::ops::metrics::WS_CLIENTS).increment(1.0);
        Ok(ConnectedClient {
            state,
            _address: slot,
        })
    }
}

impl Drop for ConnectedClient {
    fn drop(&mut self) {
        self.state.streams.clients.fetch_sub(1, Ordering::SeqCst);
        ::metrics::gauge!(crate::ops::metrics::WS_CLIENTS).decrement(1.0);
    }
}

/// One of an address's `WS_MAX_PER_ADDRESS` connections, given back when dropped.
struct AddressSlot {
    state: Arc<AppState>,
    address: IpAddr,
}

impl AddressSlot {
    fn take(state: Arc<AppState>, address: IpAddr) -> Result<Self, ApiError> {
        let most = state.streams.max_per_address;
        {
            let mut per_address = state.streams.per_address.lock();
            let count = per_address.entry(address).or_default();
            if *count >= most {
                if *count == 0 {
                    per_address.remove(&address);
                }
                return Err(ApiError::TooManyConnections(most));
            }
            *count += 1;
        }
        Ok(AddressSlot { state, address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut per_address = self.state.streams.per_address.lock();
        if let Some(count) = per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&self.address);
            }
        }
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
    let state = client.state.clone();
    let wanted = move |event: &EntityEvent| {
        subtree
            .as_ref()
            .is_none_or(|root| event.path.contains(root))
    };
    let _connected = client;
    let (mut events, missed) = state.cluster.events.subscribe(last_seen);
    let (queue, mut outgoing) = mpsc::channel::<Message>(state.streams.client_queue);
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

    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
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
    backlog.retain(|delivered| wanted(&delivered.event));
    let mut open = true;
    for delivered in backlog {
        if queue
            .try_send(Message::Text(delivered.frame.clone()))
            .is_err()
        {
            open = false;
            break;
        }
    }
    // Fan-out: never waits on the client; a full queue closes it.
    let mut too_slow = !open;
    let mut going_away = false;
    let mut heard_at = tokio::time::Instant::now();
    let mut liveness = tokio::time::interval(PING_EVERY);
    while open {
        tokio::select! {
            received = events.recv() => match received {
                Ok(delivered) if wanted(&delivered.event) => {
                    if queue.try_send(Message::Text(delivered.frame.clone())).is_err() {
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
            () = state.lifetime.departing.cancelled() => {
                going_away = true;
                open = false;
            }
            _ = liveness.tick() => {
                // Pongs (and any other frame) prove the peer alive; two missed pings do not.
                if heard_at.elapsed() > 2 * PING_EVERY + Duration::from_secs(5) {
                    open = false;
                }
            }
        }
    }
    let farewell = if too_slow {
        ::metrics::counter!(crate::ops::metrics::WS_DROPPED).increment(1);
        Some(close(
            TOO_SLOW,
            "client too slow; reconnect with last_event_id",
        ))
    } else if going_away {
        Some(close(
            GOING_AWAY,
            "instance stopping; reconnect with last_event_id",
        ))
    } else {
        None
    };
    if let Some(farewell) = farewell {
        let _ = tokio::time::timeout(CLOSE_GRACE, queue.send(farewell)).await;
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
