//! Reaching a host (DESIGN.md §4): the attended handshake with a one-time code, or the
//! unattended one with a pinned host key, through the signaling server; then the offer and
//! answer, sealed. What comes out is a WebRTC [`Session`] bound to the authenticated
//! fingerprints, ready for [`crate::run`].
//!
//! The viewer makes its [`Session`] before the first message, so its real DTLS fingerprint
//! is in A1/B1 (`fp_v`). The host's fingerprint (`fp_h`) comes back inside the handshake; the
//! sealed channel refuses any answer whose SDP carries another, and after DTLS connects the
//! session checks the certificate it actually got against it again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::RngCore as _;
use sealdesk_auth::attended;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::messages::{
    self, Abort, AbortReason, Message, TAG_A2, TAG_ABORT, TAG_B2, TAG_SEALED,
};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sealed::{SealError, SealedKind, SealedSignaling};
use sealdesk_auth::session::{Established, ExpectAccept, PeerIdentity};
use sealdesk_auth::trust::{Permissions, PinnedHost};
use sealdesk_auth::{unattended, HandshakeError, IdentityKey};
use sealdesk_client::{RelayCredential, SignalClient, SignalEvent};
use sealdesk_proto::{Body, DeviceKey, ErrorCode, RoutingNumber, SessionId};
use sealdesk_rtc::relay::RelayUse;
use sealdesk_rtc::{driver, Session, SessionConfig, SessionError, VideoCodec};
use tokio::net::UdpSocket;

/// Whom to connect to.
#[derive(Debug)]
pub enum Target {
    /// A host showing this one-time code.
    Code(OneTimeCode),
    /// A paired host, by its pin.
    Paired(PinnedHost),
}

impl Target {
    /// The host's routing number.
    pub fn routing(&self) -> RoutingNumber {
        match self {
            Target::Code(c) => c.routing,
            Target::Paired(p) => p.routing,
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct DialConfig {
    /// How this viewer introduces itself.
    pub label: String,
    /// The codecs to offer (the host picks; VP9 first is best).
    pub codecs: Vec<VideoCodec>,
    /// What to ask a paired host for (unattended).
    pub permissions: Permissions,
    /// The address the viewer's UDP socket binds to (its WebRTC host candidate).
    pub local_ip: IpAddr,
    /// How long the host has to answer each handshake message.
    pub answer_timeout: Duration,
    /// How long the host's user has to approve.
    pub approval_timeout: Duration,
    /// For a code: the key pinned for this routing number, if any (a different one is refused).
    pub pinned_key: Option<DeviceKey>,
    /// Whether to use the signaling server's relay.
    pub relay: RelayUse,
}

/// Progress to show the viewer's user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialEvent {
    /// The first message went to the host.
    Asking(RoutingNumber),
    /// The host proved the code (or its pinned key): here it is.
    HostProved(PeerIdentity),
    /// Waiting for the host's user.
    WaitingForApproval,
    /// The host said yes with these permissions; the transport comes next.
    Accepted(Permissions),
    /// UDP to the relay is blocked from here: the relayed candidate is over TCP.
    RelayOverTcp,
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The handshake failed (wrong code, tampering, refused, …) in its own words.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The host did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The host is not on this signaling server.
    #[error(
        "host {0} is not connected to this signaling server: check the code, and that \
         sealdesk is running there (`sealdesk host` or `sealdesk pair host`) with the same server"
    )]
    HostOffline(String),
    /// The signaling server is unreachable or refused a message.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The WebRTC session could not be set up.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The sealed offer/answer failed (tampering or a misbehaving host).
    #[error("the host's answer was refused: {0}")]
    Sealed(#[from] SealError),
    /// A local failure (socket).
    #[error("{0}")]
    Local(String),
    /// This is the viewer's own code.
    #[error("this is this device's own code; type it on the other device")]
    OwnCode,
    /// The relay could not be used (with `--relay-only`).
    #[error("relay: {0}")]
    Relay(String),
}

/// A host reached: the transport is set up, not yet connected.
#[derive(Debug)]
pub struct Connected {
    /// What the handshake established (peer, permissions, fingerprints, keys).
    pub established: Established,
    /// The sealed signaling channel (for the bye, later restarts).
    pub sealed: SealedSignaling,
    /// Where the host is.
    pub host: Peer,
    /// The transport, for [`crate::run::run`].
    pub transport: Transport,
}

/// A WebRTC session with the host's answer applied, and its socket.
#[derive(Debug)]
pub struct Transport {
    /// The session.
    pub rtc: Session,
    /// Its UDP socket (and TCP connection to the relay, if UDP to it is blocked).
    pub link: driver::Link,
    /// When dialing started (for the time to first frame).
    pub started: Instant,
    /// How to renegotiate ICE with the host when the path is lost (set by the caller once
    /// dialing is done: it owns the signaling connection then).
    pub restarter: Option<crate::restart::Restarter>,
    /// When the relay credential the session allocated with expires (Unix seconds): before
    /// then the viewer re-allocates with a fresh one (relays refuse refreshes after it).
    pub relay_expires_at: Option<u64>,
    /// Record the session (set by the caller; DESIGN.md §7).
    pub recording: Option<crate::run::ViewerRecording>,
}

/// A host and the session id this viewer chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The host's routing number.
    pub routing: RoutingNumber,
    /// The session.
    pub session: SessionId,
}

impl Peer {
    /// A new session with the host at `routing`.
    pub fn new(routing: RoutingNumber) -> Self {
        let mut sid = [0u8; 16];
        OsRng.fill_bytes(&mut sid);
        Self {
            routing,
            session: SessionId(sid),
        }
    }

    /// Sends `bytes` to the host in this session.
    pub async fn send(&self, client: &SignalClient, bytes: Vec<u8>) -> Result<(), DialError> {
        let body = Body::new(bytes).map_err(|e| DialError::Signaling(e.to_string()))?;
        client
            .send(self.routing, self.session, body)
            .await
            .map_err(|e| {
                DialError::Signaling(format!("cannot send to the signaling server: {e}"))
            })?;
        Ok(())
    }

    /// The next envelope from this host in this session whose first byte is one of `tags`,
    /// or `None` at `deadline`. Envelopes from anyone else, or for another session, are
    /// ignored (anyone may send us envelopes).
    pub async fn next(
        &self,
        client: &mut SignalClient,
        tags: &[u8],
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, DialError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            let event = match tokio::time::timeout_at(deadline, client.next_event()).await {
                Err(_) => return Ok(None),
                Ok(None) => {
                    return Err(DialError::Signaling(
                        "the connection to the signaling server ended".into(),
                    ))
                }
                Ok(Some(event)) => event,
            };
            match event {
                SignalEvent::Envelope {
                    from,
                    session,
                    body,
                } if from == self.routing && session == self.session => {
                    if body.as_bytes().first().is_some_and(|t| tags.contains(t)) {
                        return Ok(Some(body.into_bytes()));
                    }
                }
                SignalEvent::Envelope { from, .. } => {
                    tracing::debug!(from = %from, "ignored an envelope from another device or session");
                }
                SignalEvent::Error {
                    code: ErrorCode::PeerOffline | ErrorCode::UnknownNumber,
                    ..
                } => return Err(DialError::HostOffline(self.routing.grouped())),
                SignalEvent::Error { code, message, .. } => {
                    return Err(DialError::Signaling(format!(
                        "the server did not deliver the message to host {} ({}): {message}",
                        self.routing.grouped(),
                        code.as_str()
                    )))
                }
                SignalEvent::Disconnected {
                    reason,
                    retry_in: None,
                } => {
                    return Err(DialError::Signaling(format!(
                        "lost the signaling server: {reason}"
                    )))
                }
                other => tracing::debug!(event = ?other, "signaling event while connecting"),
            }
        }
    }
}

/// A fresh WebRTC session on a new UDP socket at `ip`, with a relayed candidate from `relay`
/// when given (gathered before returning, so it is in the SDP). With [`RelayUse::Only`] the
/// socket's own address is not a candidate, and failing to allocate is an error.
pub async fn media(
    ip: IpAddr,
    codecs: &[VideoCodec],
    relay_use: RelayUse,
    relay: Option<&RelayCredential>,
) -> Result<(Session, driver::Link), DialError> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| DialError::Local(format!("cannot open a UDP socket: {e}")))?;
    let local = socket
        .local_addr()
        .map_err(|e| DialError::Local(format!("cannot read the UDP socket's address: {e}")))?;
    let config = SessionConfig {
        codecs: codecs.to_vec(),
        initial_kbps: None,
        host_candidate: relay_use != RelayUse::Only,
    };
    let mut rtc = Session::with_config(Instant::now(), local, &config)?;
    let mut link = driver::Link::new(socket);
    add_relay(&mut rtc, &mut link, relay_use, relay).await?;
    Ok((rtc, link))
}

/// Allocates on the relay `relay` names (if any) and waits for the relayed candidate.
pub async fn add_relay(
    rtc: &mut Session,
    link: &mut driver::Link,
    relay_use: RelayUse,
    relay: Option<&RelayCredential>,
) -> Result<(), DialError> {
    let credential = relay.map(|c| (c.urls.as_slice(), c.username.as_str(), c.password.as_str()));
    driver::relay_candidate(rtc, link, relay_use, credential, false)
        .await
        .map(drop)
        .map_err(DialError::Relay)
}

/// Asks the signaling server for a relay credential; `None` when it has no relay or does not
/// answer within `within`.
pub async fn fetch_relay(client: &mut SignalClient, within: Duration) -> Option<RelayCredential> {
    client.request_relay().await.ok()?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(SignalEvent::Relay(c))) => return Some(c),
            Ok(Some(SignalEvent::Error {
                code: ErrorCode::NoRelay,
                ..
            })) => return None,
            Ok(Some(other)) => {
                tracing::debug!(event = ?other, "signaling event while asking for a relay")
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Connects to `target` through `client`: handshake, approval, sealed offer and answer.
/// `attempts` counts failed code runs per host number (persist it between runs).
pub async fn dial(
    client: &mut SignalClient,
    identity: &Arc<IdentityKey>,
    target: Target,
    config: &DialConfig,
    attempts: &mut ViewerAttempts,
    mut progress: impl FnMut(DialEvent),
) -> Result<Connected, DialError> {
    let started = Instant::now();
    let routing = target.routing();
    if routing == client.routing_number() {
        return Err(DialError::OwnCode);
    }
    let credential = match config.relay {
        RelayUse::Off => None,
        _ => fetch_relay(client, Duration::from_secs(3)).await,
    };
    let (mut rtc, link) = media(
        config.local_ip,
        &config.codecs,
        config.relay,
        credential.as_ref(),
    )
    .await?;
    if link.relay_over_tcp() {
        progress(DialEvent::RelayOverTcp);
    }
    match negotiate(
        client,
        identity,
        target,
        config,
        attempts,
        &mut progress,
        &mut rtc,
    )
    .await
    {
        Ok((established, sealed, host)) => Ok(Connected {
            established,
            sealed,
            host,
            transport: Transport {
                rtc,
                link,
                started,
                restarter: None,
                relay_expires_at: credential.as_ref().map(|c| c.expires_at),
                recording: None,
            },
        }),
        Err(e) => {
            // Give the relay allocation back now, rather than when it expires.
            driver::abandon(rtc, link).await;
            Err(e)
        }
    }
}

/// The handshake and the offer/answer exchange, up to a transport ready to connect.
async fn negotiate(
    client: &mut SignalClient,
    identity: &Arc<IdentityKey>,
    target: Target,
    config: &DialConfig,
    attempts: &mut ViewerAttempts,
    progress: &mut impl FnMut(DialEvent),
    rtc: &mut Session,
) -> Result<(Established, SealedSignaling, Peer), DialError> {
    let routing = target.routing();
    let host = Peer::new(routing);
    let fp_v = rtc.local_fingerprint();
    let offer = Offer::default();
    let waiting = match target {
        Target::Code(code) => {
            let (expect_a2, a1) =
                attended::viewer::start(&code, &offer, fp_v, attempts, Instant::now(), &mut OsRng)?;
            drop(code);
            host.send(client, a1).await?;
            progress(DialEvent::Asking(routing));
            let a2 = host
                .next(
                    client,
                    &[TAG_A2, TAG_ABORT],
                    Instant::now() + config.answer_timeout,
                )
                .await?
                .ok_or_else(|| no_answer(routing, config.answer_timeout))?;
            if let Some(said) = expect_a2.check_abort(&a2) {
                return Err(said.into());
            }
            let result =
                expect_a2.handle_a2(&a2, identity, &config.label, attempts, Instant::now());
            let (waiting, a3) = match result {
                Ok(v) => v,
                Err(e) => {
                    // Tell the host, so it ends this run at once. Best effort.
                    let _ = host.send(client, e.abort_message()).await;
                    return Err(e.into());
                }
            };
            if let Some(pinned) = &config.pinned_key {
                if *pinned != waiting.peer().key {
                    let _ = host
                        .send(client, Abort::new(AbortReason::Other).encode())
                        .await;
                    return Err(HandshakeError::HostKeyChanged {
                        pinned: sealdesk_auth::DeviceFingerprint::of(pinned),
                        presented: waiting.peer().fingerprint(),
                    }
                    .into());
                }
            }
            host.send(client, a3).await?;
            waiting
        }
        Target::Paired(pin) => {
            let (expect_b2, b1) = unattended::viewer::start(&pin, &offer, fp_v, &mut OsRng);
            host.send(client, b1).await?;
            progress(DialEvent::Asking(routing));
            let b2 = host
                .next(
                    client,
                    &[TAG_B2, TAG_ABORT],
                    Instant::now() + config.answer_timeout,
                )
                .await?
                .ok_or_else(|| no_answer(routing, config.answer_timeout))?;
            if let Some(first) = b2.first() {
                if *first == TAG_ABORT {
                    return Err(HandshakeError::PeerAborted(abort_reason(&b2)).into());
                }
            }
            let (waiting, b3) =
                expect_b2.handle_b2(&b2, identity, &config.label, config.permissions)?;
            host.send(client, b3).await?;
            waiting
        }
    };
    progress(DialEvent::HostProved(waiting.peer().clone()));
    progress(DialEvent::WaitingForApproval);
    let (established, mut sealed) =
        wait_accept(client, &host, waiting, config.approval_timeout).await?;
    progress(DialEvent::Accepted(established.permissions));

    rtc.set_peer_fingerprint(established.fp_peer);
    let offer_sdp = rtc.create_offer()?;
    let sealed_offer = sealed.seal(SealedKind::Offer, offer_sdp.as_bytes())?;
    host.send(client, sealed_offer).await?;
    if sealdesk_client::insecure_control("leak-offer") {
        // The deliberate leak (test builds only): the offer in the clear, past the server.
        host.send(client, offer_sdp.as_bytes().to_vec()).await?;
    }
    let by = Instant::now() + config.answer_timeout;
    loop {
        let bytes = host.next(client, &[TAG_SEALED], by).await?.ok_or_else(|| {
            DialError::Timeout(format!(
                "host {} did not answer the offer within {} s; the signaling server may have \
                     dropped or altered it",
                routing.grouped(),
                config.answer_timeout.as_secs()
            ))
        })?;
        match sealed.open(&bytes) {
            Ok(m) if m.kind == SealedKind::Answer => {
                let sdp = std::str::from_utf8(&m.body).map_err(|_| SealError::NotUtf8)?;
                rtc.accept_answer(sdp)?;
                break;
            }
            Ok(m) if m.kind == SealedKind::Bye => {
                return Err(HandshakeError::RefusedByHost(
                    String::from_utf8_lossy(&m.body).into_owned(),
                )
                .into())
            }
            Ok(m) => tracing::debug!(kind = ?m.kind, "waiting for the answer; ignored"),
            // Someone on the path injected or replayed a message: drop it, say so, go on.
            Err(e @ (SealError::Forged | SealError::Replay { .. } | SealError::Malformed(_))) => {
                tracing::warn!(error = %e, "dropped a signaling message that failed authentication");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((established, sealed, host))
}

/// The reason an abort message gives (anything unreadable is "other").
fn abort_reason(bytes: &[u8]) -> AbortReason {
    match messages::decode(bytes) {
        Ok(Message::Abort(a)) => a.reason(),
        _ => AbortReason::Other,
    }
}

fn no_answer(routing: RoutingNumber, after: Duration) -> DialError {
    DialError::Timeout(format!(
        "no answer from host {} within {} s: check the code, and that `sealdesk host` is still \
         running there and uses the same server",
        routing.grouped(),
        after.as_secs()
    ))
}

async fn wait_accept(
    client: &mut SignalClient,
    host: &Peer,
    mut waiting: ExpectAccept,
    timeout: Duration,
) -> Result<(Established, SealedSignaling), DialError> {
    let by = Instant::now() + timeout;
    loop {
        let Some(bytes) = host.next(client, &[TAG_SEALED, TAG_ABORT], by).await? else {
            return Err(DialError::Timeout(format!(
                "host {} did not approve within {} s",
                host.routing.grouped(),
                timeout.as_secs()
            )));
        };
        if bytes.first() == Some(&TAG_ABORT) {
            return Err(HandshakeError::PeerAborted(abort_reason(&bytes)).into());
        }
        match waiting.handle(&bytes)? {
            Ok(done) => return Ok(done),
            Err(still) => waiting = still,
        }
    }
}
