//! The I/O shell around [`ServerConn`]: one task per WebSocket connection.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sealdesk_proto::server_conn::{ServerConn, ServerOutput};
use sealdesk_proto::signaling::normalize_origin;
use sealdesk_proto::{CloseReason, ErrorCode, Nonce, RoutingNumber, ServerMessage};

use crate::hub::{DeliverError, Inbox, Outbox};
use crate::metrics::Metrics;
use crate::AppState;

/// Decrements the open-connection gauge when a connection ends, however it ends.
struct ConnGuard(Arc<AppState>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The origin device signatures (registration, blob requests) must cover: the configured
/// public origin, else the request's `Host`, normalised.
pub(crate) fn addressed_origin(
    public_origin: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> Option<String> {
    public_origin
        .or_else(|| {
            headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .and_then(normalize_origin)
}

/// `GET /ws`: admission control, then the WebSocket upgrade with explicit limits.
pub(crate) async fn handler(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let limits = state.config.limits;
    let origin = addressed_origin(state.config.public_origin.as_deref(), &headers);
    let Some(origin) = origin else {
        state.metrics.reject("bad_host");
        return (StatusCode::BAD_REQUEST, "missing or invalid Host header\n").into_response();
    };
    if !state.ip_limiter.allow(peer.ip(), Instant::now()) {
        state.metrics.reject("rate_limited_ip");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many new connections from your address; retry later\n",
        )
            .into_response();
    }
    if state.open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
        state.open.fetch_sub(1, Ordering::AcqRel);
        state.metrics.reject("max_connections");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "server is at its connection limit; retry later\n",
        )
            .into_response();
    }
    let guard = ConnGuard(state.clone());
    Metrics::inc(&state.metrics.connections_total);
    state
        .metrics
        .connections_open
        .fetch_add(1, Ordering::Relaxed);
    upgrade
        // Every tungstenite limit set explicitly (its defaults are unbounded or 64 MiB).
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message_bytes * 2)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade(move |socket| async move {
            run(socket, state, peer, origin).await;
            drop(guard);
        })
}

/// Whether a WebSocket error is "message or frame too large".
fn is_too_large(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        src = s.source();
    }
    false
}

struct Conn {
    state: Arc<AppState>,
    proto: ServerConn,
    outbox: Arc<Outbox>,
    watching: HashSet<RoutingNumber>,
}

async fn run(mut socket: WebSocket, state: Arc<AppState>, peer: SocketAddr, origin: String) {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let mut nonce = Nonce([0; 32]);
    rand::rngs::OsRng.fill_bytes(&mut nonce.0);
    let (outbox, mut inbox) = Outbox::new(conn_id, state.config.limits.outbound_queue_bytes);
    let mut conn = Conn {
        proto: ServerConn::new(
            Instant::now(),
            nonce,
            origin,
            state.config.limits.conn_limits(),
        ),
        state,
        outbox,
        watching: HashSet::new(),
    };
    let mut shutdown = conn.state.shutdown.subscribe();
    tracing::debug!(conn_id, %peer, "connection opened");
    let reason = drive(&mut conn, &mut socket, &mut inbox, &mut shutdown).await;
    tracing::debug!(conn_id, %peer, reason = reason.as_str(), "connection closed");
    if let Some(n) = conn.proto.routing_number() {
        conn.state.hub.unregister(n, conn_id);
    }
    conn.state.hub.unwatch_all(conn_id, &conn.watching);
}

/// Runs the connection until it ends; returns why.
async fn drive(
    conn: &mut Conn,
    socket: &mut WebSocket,
    inbox: &mut Inbox,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> CloseReason {
    loop {
        // Act on everything the state machine asked for.
        while let Some(out) = conn.proto.poll_output() {
            match out {
                ServerOutput::Send(msg) => {
                    if socket
                        .send(Message::Text(Utf8Bytes::from(msg.encode())))
                        .await
                        .is_err()
                    {
                        return CloseReason::Normal;
                    }
                }
                ServerOutput::Relay(number) => match &conn.state.relay {
                    Some(issuer) => {
                        let msg = issuer.issue(number);
                        Metrics::inc(&conn.state.metrics.relay_credentials_total);
                        if socket
                            .send(Message::Text(Utf8Bytes::from(msg.encode())))
                            .await
                            .is_err()
                        {
                            return CloseReason::Normal;
                        }
                    }
                    None => conn.proto.handle_no_relay(),
                },
                ServerOutput::Register(key) => match conn.state.registry.register(key).await {
                    Ok(reg) => {
                        Metrics::inc(&conn.state.metrics.registrations_total);
                        if reg.new {
                            Metrics::inc(&conn.state.metrics.new_devices_total);
                        }
                        conn.state.hub.register(reg.number, conn.outbox.clone());
                        conn.proto.handle_registered(Instant::now(), reg.number);
                    }
                    Err(e) => {
                        tracing::error!("registration failed: {e}");
                        conn.proto.close(
                            CloseReason::ServerError,
                            "the server could not store the registration; retry later".into(),
                        );
                    }
                },
                ServerOutput::Route {
                    id,
                    from,
                    to,
                    session,
                    body,
                } => {
                    let len = body.len() as u64;
                    let text = ServerMessage::Envelope {
                        from,
                        session,
                        body,
                    }
                    .encode();
                    match conn.state.hub.deliver(to, Utf8Bytes::from(text)) {
                        Ok(()) => {
                            Metrics::inc(&conn.state.metrics.envelopes_routed_total);
                            conn.state
                                .metrics
                                .envelope_bytes_total
                                .fetch_add(len, Ordering::Relaxed);
                        }
                        Err(DeliverError::Offline) => {
                            let code = if conn.state.registry.exists(to) {
                                ErrorCode::PeerOffline
                            } else {
                                ErrorCode::UnknownNumber
                            };
                            conn.state.metrics.reject(code.as_str());
                            conn.proto.handle_route_failed(id, to, code);
                        }
                        Err(DeliverError::Busy) => {
                            conn.state.metrics.reject("peer_busy");
                            conn.proto.handle_route_failed(id, to, ErrorCode::PeerBusy);
                        }
                    }
                }
                ServerOutput::Watch(numbers) => {
                    let new: HashSet<_> = numbers.into_iter().collect();
                    let (online, offline) =
                        conn.state.hub.watch(&conn.outbox, &conn.watching, &new);
                    conn.watching = new;
                    let msg = ServerMessage::Presence { online, offline };
                    if socket
                        .send(Message::Text(Utf8Bytes::from(msg.encode())))
                        .await
                        .is_err()
                    {
                        return CloseReason::Normal;
                    }
                }
                ServerOutput::Close(reason, text) => {
                    conn.state.metrics.reject_close(reason);
                    let frame = CloseFrame {
                        code: reason.code(),
                        reason: Utf8Bytes::from(text),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return reason;
                }
            }
        }

        let deadline = conn.proto.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = socket.recv() => {
                let now = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(t))) => conn.proto.handle_text(now, t.as_str()),
                    Some(Ok(Message::Binary(b))) => conn.proto.handle_binary(now, b.len()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => conn.proto.handle_activity(now),
                    Some(Ok(Message::Close(_))) | None => return CloseReason::Normal,
                    Some(Err(e)) if is_too_large(&e) => {
                        conn.proto.handle_oversized(now, conn.state.config.limits.max_message_bytes)
                    }
                    Some(Err(_)) => return CloseReason::Normal,
                }
            }
            queued = inbox.recv(&conn.outbox) => {
                let Some(text) = queued else { return CloseReason::Normal };
                // A reader that stops reading blocks this send; the kill below still wins.
                tokio::select! {
                    sent = socket.send(Message::Text(text)) => if sent.is_err() { return CloseReason::Normal },
                    reason = conn.outbox.killed() => {
                        conn.state.metrics.reject_close(reason);
                        return reason;
                    }
                }
            }
            reason = conn.outbox.killed() => {
                let text = match reason {
                    CloseReason::SlowConsumer => "outbound queue full: this connection is not reading its messages",
                    CloseReason::Replaced => "the same device registered on a newer connection",
                    _ => "closed by the server",
                };
                conn.proto.close(reason, text.into());
            }
            _ = shutdown.changed() => {
                conn.proto.close(CloseReason::GoingAway, "server shutting down".into());
            }
            _ = sleep => conn.proto.handle_timeout(Instant::now()),
        }
    }
}
