//! The host agent (`sealdesk host`): registered with a signaling server, it shows a one-time
//! code, answers attended (code) and unattended (paired) handshakes, asks its user, and runs
//! one session at a time (DESIGN.md §4, §5).
//!
//! Every step of a connection, in order, for one viewer at a time:
//!
//! 1. A1 (code) or B1 (paired) arrives: a fresh WebRTC [`Session`] is made on a new UDP
//!    socket, and its DTLS fingerprint goes into the handshake answer (A2/B2).
//! 2. A3/B3 proves the viewer's identity. Attended: the host user is asked (label,
//!    fingerprint, what it may do). Unattended: the pairing registry is read again from disk
//!    (a `devices revoke` takes effect at once), and the user is asked unless
//!    [`HostConfig::auto_accept_paired`].
//! 3. On yes, the sealed Accept goes out; the viewer's offer must arrive sealed, carrying
//!    exactly the fingerprint the handshake authenticated (the sealed channel checks it), and
//!    the answer goes back sealed.
//! 4. The session runs ([`crate::session`]); anything else that knocks meanwhile is told the
//!    host is busy.
//!
//! The agent talks to people only through [`HostEvent`]s and [`HostCommand`]s, so the CLI,
//! the demo and tests drive it the same way.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use sealdesk_auth::attended::host::{AttendedHost, ExpectA3, PendingConsent};
use sealdesk_auth::code::OneTimeCode;
use sealdesk_auth::messages::{self, Abort, AbortReason, Message};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sealed::{SealError, SealedKind, SealedSignaling, BYE_DECLINED};
use sealdesk_auth::session::{AccessKind, Established, PeerIdentity, ViewerKind};
use sealdesk_auth::trust::Permissions;
use sealdesk_auth::unattended::host::{handle_b1, ExpectB3, HostInfo};
use sealdesk_auth::{HandshakeError, IdentityKey};
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_client::{RelayCredential, SignalClient, SignalEvent};
use sealdesk_proto::{Body, RoutingNumber, SessionId};
use sealdesk_rtc::relay::{RelayServer, RelayUse};
use sealdesk_rtc::{driver, Session, SessionConfig, VideoCodec};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use sealdesk_record::cert::VerifiedRecipient;

use crate::clipboard::SyncedClipboard;
use crate::session::{
    self, SessionControl, SessionNote, SessionRecording, SessionSetup, SessionSummary,
};

/// Where the congestion controller's estimate starts, kbit/s — the pacer's first rate.
/// The encoder starts lower ([`crate::pipeline::PipelineConfig::initial_kbps`]), so the first keyframe is not
/// bigger for it, but crosses a fast path quickly: a 1080p keyframe of dense text is ~370 kB,
/// ~0.7 s behind a 4 Mbit/s pacer and ~0.2 s behind this one. On a slower path the estimate
/// falls within the first round trips (delay-based control), and the keyframe queues there
/// instead of in the pacer.
pub const START_ESTIMATE_KBPS: u32 = 16_000;
/// A relay credential is renewed when it has less than this left (seconds).
const RELAY_MARGIN_SECS: u64 = 120;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a browser viewer served by the signaling server is told when policy refuses it.
const SERVER_SERVED_REFUSAL: &str = "this host does not let in browser viewers served by the \
    signaling server, because the server wrote the code that runs them and could read the \
    session; open the viewer your own sealdesk serves instead (sealdesk connect --web)";

fn refusal_note(kind: ViewerKind) -> String {
    format!(
        "refused a {} (--deny-server-served-viewers)",
        kind.describe()
    )
}

/// How long a paired viewer has to send B3.
const B3_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the host user has to answer.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the viewer has to send its offer after the Accept.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);

/// How the host runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// How this host introduces itself.
    pub label: String,
    /// The data directory (its pairing registry is read at every unattended connection).
    pub data_dir: PathBuf,
    /// Capture, codec and timing; `permissions` is replaced per session.
    pub setup: SessionSetup,
    /// What an attended viewer may do when the user says yes.
    pub attended_permissions: Permissions,
    /// Let paired viewers with the `unattended` permission in without asking.
    pub auto_accept_paired: bool,
    /// Refuse browser viewers served by the signaling server (they say so inside the
    /// authenticated handshake; DESIGN.md §8), telling them why.
    pub deny_server_served: bool,
    /// The address the host's UDP sockets bind to (its WebRTC host candidate).
    pub local_ip: IpAddr,
    /// Whether sessions use the signaling server's relay.
    pub relay: RelayUse,
    /// Record every session (DESIGN.md §7).
    pub recording: Option<HostRecording>,
}

/// Recording every session to an owner whose recipient certificate verified.
#[derive(Debug, Clone)]
pub struct HostRecording {
    /// The verified recipient.
    pub recipient: VerifiedRecipient,
    /// Where recordings go: one new directory per session inside.
    pub dir: PathBuf,
    /// Keep clipboard text in the recording (else only sizes).
    pub keep_clipboard: bool,
    /// Upload each segment, once durable, to the signaling server's blob store for the owner.
    pub upload: Option<sealdesk_client::blobs::BlobClient>,
}

/// A question for the host's user: may this viewer in?
#[derive(Debug)]
pub struct ConsentRequest {
    /// Who, as authenticated.
    pub peer: PeerIdentity,
    /// With a code, or as a paired device.
    pub kind: AccessKind,
    /// What it would be allowed.
    pub permissions: Permissions,
    reply: oneshot::Sender<Option<Permissions>>,
}

impl ConsentRequest {
    /// Answers: `Some(permissions)` lets it in with those (attended: any subset of what was
    /// offered, e.g. view only; unattended: exactly what was offered), `None` declines.
    pub fn answer(self, decision: Option<Permissions>) {
        let _ = self.reply.send(decision);
    }
}

/// What the host's user should see.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostEvent {
    /// A new one-time code to show (`R · S`, grouped). Secret: show it, never log it.
    Code {
        /// The code, as the viewer types it.
        code: zeroize::Zeroizing<String>,
        /// When it stops working.
        expires_in: Duration,
    },
    /// The code cannot be used any more (exhausted by wrong guesses); a
    /// [`HostCommand::NewCode`] makes another.
    CodeLocked(HandshakeError),
    /// A device is trying the code.
    Trying {
        /// Its routing number.
        from: RoutingNumber,
    },
    /// A connection attempt failed.
    Failed {
        /// From whom.
        from: RoutingNumber,
        /// Why, in words.
        error: String,
    },
    /// The user must decide.
    Consent(ConsentRequest),
    /// A session is starting (fingerprints verified next, before any data).
    SessionStarted {
        /// Who.
        peer: PeerIdentity,
        /// How it was authenticated.
        kind: AccessKind,
        /// What it may do.
        permissions: Permissions,
    },
    /// Something about the running session.
    Session(SessionNote),
    /// The session ended.
    SessionEnded(SessionSummary),
    /// A signaling message that failed authentication (forged, replayed or altered by the
    /// path) was dropped: someone may be tampering.
    Tampering {
        /// From which routing number it claimed to come.
        from: RoutingNumber,
        /// What was wrong.
        error: String,
    },
    /// The signaling connection dropped and is being re-established.
    SignalingLost(String),
    /// UDP to the relay is blocked from here: sessions relay over TCP (tried first for the
    /// next [`TCP_FIRST_FOR`]).
    RelayOverTcp,
    /// A session's recording was uploaded (as far as it could be).
    RecordingUploaded(sealdesk_client::recording::UploadReport),
    /// This session is being recorded (the viewer is told too).
    Recording {
        /// The recording's directory.
        dir: PathBuf,
        /// For whom ("label (fingerprint)").
        owner: String,
    },
}

/// How long, after UDP to the relay was found blocked, sessions try TCP first.
pub const TCP_FIRST_FOR: Duration = Duration::from_secs(600);

/// What the host's user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCommand {
    /// Show a new one-time code (the old one stops working).
    NewCode,
    /// End the running session now.
    EndSession,
    /// End any session and stop.
    Quit,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The signaling server is gone for good.
    #[error("lost the signaling server: {0}")]
    Signaling(String),
}

/// Who a run is with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    from: RoutingNumber,
    session: SessionId,
}

/// The WebRTC session a connection will use, made when the viewer knocks.
struct Media {
    rtc: Session,
    link: driver::Link,
}

#[allow(
    clippy::large_enum_variant,
    reason = "one at a time, and boxed where it is kept"
)]
enum Pending {
    Attended(PendingConsent),
    Unattended {
        est: Established,
        sealed: SealedSignaling,
        accept: Vec<u8>,
    },
}

enum Phase {
    Idle,
    AwaitA3 {
        peer: Peer,
        state: ExpectA3,
        media: Media,
    },
    AwaitB3 {
        peer: Peer,
        state: ExpectB3,
        media: Media,
        deadline: Instant,
    },
    AwaitConsent {
        peer: Peer,
        pending: Box<Pending>,
        media: Media,
        deadline: Instant,
    },
    AwaitOffer {
        peer: Peer,
        est: Established,
        sealed: SealedSignaling,
        media: Media,
        deadline: Instant,
    },
    InSession {
        peer: Peer,
        sealed: SealedSignaling,
        control: SessionControl,
    },
}

struct Agent {
    config: HostConfig,
    identity: Arc<IdentityKey>,
    client: SignalClient,
    events: mpsc::Sender<HostEvent>,
    offer: Offer,
    code: Option<AttendedHost>,
    phase: Phase,
    consent: Option<oneshot::Receiver<Option<Permissions>>>,
    task: Option<JoinHandle<SessionSummary>>,
    quitting: bool,
    /// The latest relay credential the server issued.
    relay: Option<RelayCredential>,
    /// When to ask for a fresh relay credential.
    relay_refresh: Option<Instant>,
    /// How long the latest credential lived when it came, seconds.
    relay_life: u64,
    /// Since when UDP to the relay has been found blocked (sessions then try TCP first).
    relay_tcp_since: Option<Instant>,
    /// The answer to the viewer's ICE restart, being made by the session.
    restart: Option<oneshot::Receiver<Result<String, sealdesk_rtc::SessionError>>>,
}

/// Runs the host until [`HostCommand::Quit`] (or the commands channel closes) or the
/// signaling server is lost for good.
pub async fn serve(
    config: HostConfig,
    identity: Arc<IdentityKey>,
    client: SignalClient,
    mut commands: mpsc::Receiver<HostCommand>,
    events: mpsc::Sender<HostEvent>,
) -> Result<(), HostError> {
    let mut agent = Agent {
        config,
        identity,
        client,
        events,
        offer: Offer::default(),
        code: None,
        phase: Phase::Idle,
        consent: None,
        task: None,
        quitting: false,
        relay: None,
        relay_refresh: None,
        relay_life: 0,
        relay_tcp_since: None,
        restart: None,
    };
    agent.ask_relay().await;
    agent.new_code().await;
    let result = agent.run(&mut commands).await;
    agent.shutdown().await;
    result
}

impl Agent {
    async fn emit(&self, event: HostEvent) {
        let _ = self.events.send(event).await;
    }

    async fn new_code(&mut self) {
        let code = OneTimeCode::draw(self.client.routing_number(), &mut OsRng);
        let host = AttendedHost::new(code, &self.offer, Instant::now());
        let shown = host.code().display();
        let expires_in = host.expires_at().saturating_duration_since(Instant::now());
        // A run in flight with the old code is over.
        if matches!(self.phase, Phase::AwaitA3 { .. }) {
            self.phase = Phase::Idle;
        }
        self.code = Some(host);
        self.emit(HostEvent::Code {
            code: shown,
            expires_in,
        })
        .await;
    }

    /// The next moment something times out.
    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitA3 { .. } => self.code.as_ref().map(AttendedHost::poll_timeout),
            Phase::AwaitB3 { deadline, .. }
            | Phase::AwaitConsent { deadline, .. }
            | Phase::AwaitOffer { deadline, .. } => Some(*deadline),
            Phase::Idle => self.code.as_ref().map(AttendedHost::expires_at),
            Phase::InSession { .. } => None,
        }
    }

    async fn run(&mut self, commands: &mut mpsc::Receiver<HostCommand>) -> Result<(), HostError> {
        loop {
            if self.quitting && self.task.is_none() {
                return Ok(());
            }
            let deadline = self.deadline().map(tokio::time::Instant::from_std);
            let consent = &mut self.consent;
            let task = &mut self.task;
            let restart = &mut self.restart;
            let relay_refresh = self.relay_refresh.map(tokio::time::Instant::from_std);
            tokio::select! {
                ev = self.client.next_event() => match ev {
                    None => return Err(HostError::Signaling("the connection ended".into())),
                    Some(ev) => self.on_signal(ev).await?,
                },
                cmd = commands.recv() => match cmd {
                    Some(HostCommand::NewCode) => self.new_code().await,
                    Some(HostCommand::EndSession) => self.end_session(),
                    Some(HostCommand::Quit) | None => {
                        self.quitting = true;
                        self.end_session();
                        if self.task.is_none() {
                            return Ok(());
                        }
                    }
                },
                () = async {
                    match relay_refresh {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    // Retried in a minute if no credential comes (a new one resets this).
                    self.relay_refresh = Some(Instant::now() + Duration::from_secs(60));
                    self.ask_relay().await;
                }
                answer = async {
                    match restart.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.restart = None;
                    self.on_restart_answer(answer).await;
                }
                answer = async {
                    match consent.as_mut() {
                        Some(rx) => rx.await.ok().flatten(),
                        None => std::future::pending().await,
                    }
                } => {
                    self.consent = None;
                    self.on_consent(answer).await;
                }
                summary = async {
                    match task.as_mut() {
                        Some(t) => t.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.task = None;
                    self.phase = Phase::Idle;
                    match summary {
                        Ok(summary) => self.emit(HostEvent::SessionEnded(summary)).await,
                        Err(e) => tracing::error!(error = %e, "the session task failed"),
                    }
                    self.after_session().await;
                }
                () = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => self.on_timeout().await,
            }
        }
    }

    /// Seals and sends the answer to the viewer's ICE restart.
    async fn on_restart_answer(
        &mut self,
        answer: Result<Result<String, sealdesk_rtc::SessionError>, oneshot::error::RecvError>,
    ) {
        let answer = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "could not answer the viewer's ICE restart");
                return;
            }
            Err(_) => return, // the session ended meanwhile
        };
        let Phase::InSession { peer, sealed, .. } = &mut self.phase else {
            return;
        };
        let peer = *peer;
        match sealed.seal(SealedKind::Answer, answer.as_bytes()) {
            Ok(bytes) => self.send(peer, bytes).await,
            Err(e) => tracing::warn!(error = %e, "could not seal the restart answer"),
        }
    }

    fn end_session(&mut self) {
        if let Phase::InSession { control, .. } = &self.phase {
            control.end();
        }
    }

    async fn shutdown(&mut self) {
        self.end_session();
        if let Some(task) = self.task.take() {
            if let Ok(summary) = task.await {
                self.emit(HostEvent::SessionEnded(summary)).await;
            }
        }
    }

    /// After a session: a spent code is replaced, so the host can be reached again.
    async fn after_session(&mut self) {
        let now = Instant::now();
        if self.code.as_ref().is_none_or(|c| c.is_finished(now)) && !self.quitting {
            self.new_code().await;
        }
    }

    async fn send(&self, peer: Peer, bytes: Vec<u8>) {
        let body = match Body::new(bytes) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "a handshake message did not fit an envelope");
                return;
            }
        };
        if let Err(e) = self.client.send(peer.from, peer.session, body).await {
            tracing::warn!(error = %e, "could not send to the signaling server");
        }
    }

    async fn busy(&self, peer: Peer) {
        self.send(peer, Abort::new(AbortReason::Busy).encode())
            .await;
    }

    /// Whether policy refuses this kind of viewer before its user is asked.
    fn refuses(&self, kind: &ViewerKind) -> bool {
        self.config.deny_server_served && *kind == ViewerKind::ServerServedBrowser
    }

    async fn fail(&mut self, from: RoutingNumber, error: String) {
        self.phase = Phase::Idle;
        self.emit(HostEvent::Failed { from, error }).await;
    }

    async fn media(&mut self) -> Result<Media, String> {
        let socket = UdpSocket::bind(SocketAddr::new(self.config.local_ip, 0))
            .await
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let local = socket
            .local_addr()
            .map_err(|e| format!("cannot read the UDP socket's address: {e}"))?;
        let relay_use = self.config.relay;
        let config = SessionConfig {
            codecs: vec![VideoCodec::Vp9, VideoCodec::Vp8],
            initial_kbps: Some(START_ESTIMATE_KBPS),
            host_candidate: relay_use != RelayUse::Only,
        };
        let mut rtc =
            Session::with_config(Instant::now(), local, &config).map_err(|e| e.to_string())?;
        let credential = self.relay_credential().await;
        let credential = credential
            .as_ref()
            .map(|c| (c.urls.as_slice(), c.username.as_str(), c.password.as_str()));
        let mut link = driver::Link::new(socket);
        let tcp_first = self
            .relay_tcp_since
            .is_some_and(|t| t.elapsed() < TCP_FIRST_FOR);
        let relayed =
            driver::relay_candidate(&mut rtc, &mut link, relay_use, credential, tcp_first).await?;
        if link.relay_over_tcp() {
            if !tcp_first {
                self.relay_tcp_since = Some(Instant::now());
                self.emit(HostEvent::RelayOverTcp).await;
            }
        } else if relayed.is_some() {
            self.relay_tcp_since = None;
        }
        Ok(Media { rtc, link })
    }

    /// The relay credential, if one is valid for long enough; asks for a new one when it
    /// nears its end (it arrives with the signaling events).
    async fn relay_credential(&self) -> Option<RelayCredential> {
        if self.config.relay == RelayUse::Off {
            return None;
        }
        let now = unix_now();
        // Short-lived credentials (a test's) get a proportionate margin.
        let margin = RELAY_MARGIN_SECS.min(self.relay_life / 4);
        let fresh = self
            .relay
            .as_ref()
            .filter(|c| c.expires_at > now + margin)
            .cloned();
        if fresh.is_none()
            || self
                .relay
                .as_ref()
                .is_some_and(|c| c.expires_at < now + 2 * margin)
        {
            self.ask_relay().await;
        }
        fresh
    }

    /// The current relay credential as a relay to allocate on, if it is still valid.
    async fn fresh_relay_server(&self) -> Option<RelayServer> {
        let c = self
            .relay
            .as_ref()
            .filter(|c| c.expires_at > unix_now() + 5)?;
        sealdesk_rtc::relay::resolve(&c.urls, &c.username, &c.password).await
    }

    async fn ask_relay(&self) {
        if self.config.relay != RelayUse::Off {
            let _ = self.client.request_relay().await;
        }
    }

    async fn on_signal(&mut self, ev: SignalEvent) -> Result<(), HostError> {
        match ev {
            SignalEvent::Envelope {
                from,
                session,
                body,
            } => {
                self.on_envelope(Peer { from, session }, body.as_bytes())
                    .await;
                Ok(())
            }
            SignalEvent::Disconnected {
                reason,
                retry_in: None,
            } => Err(HostError::Signaling(reason)),
            SignalEvent::Disconnected { reason, .. } => {
                self.emit(HostEvent::SignalingLost(reason)).await;
                Ok(())
            }
            SignalEvent::Relay(c) => {
                // Ask again at half its life, so a valid one is always at hand (an idle
                // host's first session, and restarts, need one at once).
                let life = c.expires_at.saturating_sub(unix_now());
                self.relay_refresh = Some(Instant::now() + Duration::from_secs((life / 2).max(1)));
                self.relay_life = life;
                self.relay = Some(c);
                Ok(())
            }
            SignalEvent::Registered(_) => {
                // (Re)registered: a fresh relay credential for the sessions to come.
                self.ask_relay().await;
                Ok(())
            }
            SignalEvent::Error { code, message, .. } => {
                tracing::debug!(code = code.as_str(), %message, "signaling error");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_envelope(&mut self, peer: Peer, bytes: &[u8]) {
        let msg = match messages::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                // Anyone can send us envelopes: ignore what is not a handshake message.
                tracing::debug!(from = %peer.from, error = %e, "ignored an envelope that does not parse");
                return;
            }
        };
        let mine = |p: &Peer| *p == peer;
        match (msg, std::mem::replace(&mut self.phase, Phase::Idle)) {
            (Message::A1(_), Phase::Idle) => self.on_a1(peer, bytes).await,
            (Message::B1(_), Phase::Idle) => self.on_b1(peer, bytes).await,
            (Message::A1(_) | Message::B1(_), phase) => {
                self.phase = phase;
                self.busy(peer).await;
            }
            (
                Message::A3(_),
                Phase::AwaitA3 {
                    peer: p,
                    state,
                    media,
                },
            ) if mine(&p) => {
                self.on_a3(peer, state, media, bytes).await;
            }
            (
                Message::B3(_),
                Phase::AwaitB3 {
                    peer: p,
                    state,
                    media,
                    ..
                },
            ) if mine(&p) => {
                self.on_b3(peer, state, media, bytes).await;
            }
            (
                Message::Abort(_),
                Phase::AwaitA3 {
                    peer: p,
                    state,
                    media,
                },
            ) if mine(&p) => {
                let said = self
                    .code
                    .as_mut()
                    .and_then(|c| c.handle_abort(&state, bytes));
                match said {
                    Some(e) => self.fail(peer.from, e.to_string()).await,
                    None => {
                        self.phase = Phase::AwaitA3 {
                            peer: p,
                            state,
                            media,
                        }
                    }
                }
            }
            (
                Message::Abort(_),
                Phase::AwaitB3 { peer: p, .. }
                | Phase::AwaitConsent { peer: p, .. }
                | Phase::AwaitOffer { peer: p, .. },
            ) if mine(&p) => {
                self.consent = None;
                self.fail(peer.from, "the viewer gave up".into()).await;
            }
            (
                Message::Sealed(_),
                Phase::AwaitOffer {
                    peer: p,
                    est,
                    sealed,
                    media,
                    deadline,
                },
            ) if mine(&p) => {
                self.on_offer(peer, est, sealed, media, deadline, bytes)
                    .await;
            }
            (
                Message::Sealed(_),
                Phase::InSession {
                    peer: p,
                    mut sealed,
                    control,
                },
            ) if mine(&p) => {
                match sealed.open(bytes) {
                    Ok(m) if m.kind == SealedKind::Bye => control.viewer_said_bye(),
                    Ok(m) if m.kind == SealedKind::Offer => {
                        // An ICE restart: the sealed channel checked its fingerprint and setup.
                        match String::from_utf8(m.body) {
                            Ok(offer) => {
                                // Allocate anew with a current credential: the session's own
                                // may have expired, and the relay refuses expired ones.
                                let fresh = self.fresh_relay_server().await;
                                match control.restart(offer, fresh) {
                                    Some(rx) => self.restart = Some(rx),
                                    None => tracing::debug!(
                                        "an ICE restart while one is queued: dropped"
                                    ),
                                }
                            }
                            Err(_) => tracing::debug!("a restart offer that is not UTF-8"),
                        }
                    }
                    Ok(m) => {
                        tracing::debug!(kind = ?m.kind, "sealed message during the session ignored")
                    }
                    Err(e) => {
                        self.emit(HostEvent::Tampering {
                            from: peer.from,
                            error: e.to_string(),
                        })
                        .await;
                    }
                }
                self.phase = Phase::InSession {
                    peer: p,
                    sealed,
                    control,
                };
            }
            (_, phase) => {
                self.phase = phase;
                tracing::debug!(from = %peer.from, "ignored a message for no run in flight");
            }
        }
    }

    async fn on_a1(&mut self, peer: Peer, bytes: &[u8]) {
        if self.code.is_none() {
            self.send(peer, Abort::new(AbortReason::CodeExpired).encode())
                .await;
            return;
        }
        let media = match self.media().await {
            Ok(m) => m,
            Err(e) => return self.fail(peer.from, e).await,
        };
        let Some(code) = self.code.as_mut() else {
            return;
        };
        let fp = media.rtc.local_fingerprint();
        let result = code.handle_a1(
            Instant::now(),
            bytes,
            &self.identity,
            &self.config.label,
            fp,
            &mut OsRng,
        );
        match result {
            Ok((state, a2)) => {
                self.send(peer, a2).await;
                self.phase = Phase::AwaitA3 { peer, state, media };
                self.emit(HostEvent::Trying { from: peer.from }).await;
            }
            Err(e) => {
                self.send(peer, e.abort_message()).await;
                self.fail(peer.from, e.to_string()).await;
                self.check_code().await;
            }
        }
    }

    /// Reports a code that can no longer be used because of wrong guesses.
    async fn check_code(&mut self) {
        let now = Instant::now();
        if let Some(code) = &self.code {
            if code.is_finished(now) && now < code.expires_at() && code.attempts_left() == 0 {
                self.code = None;
                self.emit(HostEvent::CodeLocked(HandshakeError::CodeExhausted))
                    .await;
            }
        }
    }

    async fn on_a3(&mut self, peer: Peer, state: ExpectA3, media: Media, bytes: &[u8]) {
        let Some(code) = self.code.as_mut() else {
            return;
        };
        match code.handle_a3(Instant::now(), state, bytes) {
            Ok(pending) if self.refuses(&pending.peer().kind) => {
                let peer_kind = pending.peer().kind;
                self.send(peer, pending.refuse(SERVER_SERVED_REFUSAL)).await;
                self.fail(peer.from, refusal_note(peer_kind)).await;
            }
            Ok(pending) => {
                let request = self.ask(
                    pending.peer().clone(),
                    AccessKind::Attended,
                    self.config.attended_permissions,
                );
                self.emit(HostEvent::Consent(request)).await;
                self.phase = Phase::AwaitConsent {
                    peer,
                    pending: Box::new(Pending::Attended(pending)),
                    media,
                    deadline: Instant::now() + CONSENT_TIMEOUT,
                };
            }
            Err(e) => {
                self.fail(peer.from, e.to_string()).await;
                self.check_code().await;
            }
        }
    }

    fn ask(
        &mut self,
        peer: PeerIdentity,
        kind: AccessKind,
        permissions: Permissions,
    ) -> ConsentRequest {
        let (reply, rx) = oneshot::channel();
        self.consent = Some(rx);
        ConsentRequest {
            peer,
            kind,
            permissions,
            reply,
        }
    }

    async fn on_b1(&mut self, peer: Peer, bytes: &[u8]) {
        let media = match self.media().await {
            Ok(m) => m,
            Err(e) => return self.fail(peer.from, e).await,
        };
        let info = HostInfo {
            routing: self.client.routing_number(),
            identity: &self.identity,
            label: &self.config.label,
            offer: &self.offer,
        };
        match handle_b1(info, bytes, media.rtc.local_fingerprint(), &mut OsRng) {
            Ok((state, b2)) => {
                self.send(peer, b2).await;
                self.phase = Phase::AwaitB3 {
                    peer,
                    state,
                    media,
                    deadline: Instant::now() + B3_TIMEOUT,
                };
            }
            Err(e) => {
                self.send(peer, e.abort_message()).await;
                self.fail(peer.from, e.to_string()).await;
            }
        }
    }

    async fn on_b3(&mut self, peer: Peer, state: ExpectB3, media: Media, bytes: &[u8]) {
        // Read the registry now: a revocation since start-up counts.
        let registry = match TrustFiles::new(&self.config.data_dir).registry() {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(peer.from, format!("cannot read the pairing registry: {e}"))
                    .await
            }
        };
        match state.handle_b3(bytes, &registry) {
            Ok((est, mut sealed, _)) if self.refuses(&est.peer.kind) => {
                if let Ok(bye) = sealed.seal(SealedKind::Bye, SERVER_SERVED_REFUSAL.as_bytes()) {
                    self.send(peer, bye).await;
                }
                self.fail(peer.from, refusal_note(est.peer.kind)).await;
            }
            Ok((est, sealed, accept)) => {
                if self.config.auto_accept_paired {
                    self.accepted(peer, est, sealed, media, accept).await;
                } else {
                    let request =
                        self.ask(est.peer.clone(), AccessKind::Unattended, est.permissions);
                    self.emit(HostEvent::Consent(request)).await;
                    self.phase = Phase::AwaitConsent {
                        peer,
                        pending: Box::new(Pending::Unattended {
                            est,
                            sealed,
                            accept,
                        }),
                        media,
                        deadline: Instant::now() + CONSENT_TIMEOUT,
                    };
                }
            }
            Err(rejected) => {
                if let Some(notice) = rejected.notice {
                    self.send(peer, notice).await;
                }
                self.fail(peer.from, rejected.error.to_string()).await;
            }
        }
    }

    async fn on_consent(&mut self, answer: Option<Permissions>) {
        let Phase::AwaitConsent {
            peer,
            pending,
            media,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        match (*pending, answer) {
            (Pending::Attended(p), Some(granted)) => {
                // Never more than was offered.
                let granted = granted.minus(granted.minus(self.config.attended_permissions));
                let (est, sealed, accept) = p.approve(granted);
                self.accepted(peer, est, sealed, media, accept).await;
            }
            (Pending::Attended(p), None) => {
                self.send(peer, p.decline()).await;
                self.fail(peer.from, "declined by this machine's user".into())
                    .await;
            }
            (
                Pending::Unattended {
                    est,
                    sealed,
                    accept,
                },
                Some(_),
            ) => {
                self.accepted(peer, est, sealed, media, accept).await;
            }
            (Pending::Unattended { mut sealed, .. }, None) => {
                if let Ok(bye) = sealed.seal(SealedKind::Bye, BYE_DECLINED) {
                    self.send(peer, bye).await;
                }
                self.fail(peer.from, "declined by this machine's user".into())
                    .await;
            }
        }
    }

    async fn accepted(
        &mut self,
        peer: Peer,
        est: Established,
        sealed: SealedSignaling,
        media: Media,
        accept: Vec<u8>,
    ) {
        self.send(peer, accept).await;
        self.phase = Phase::AwaitOffer {
            peer,
            est,
            sealed,
            media,
            deadline: Instant::now() + OFFER_TIMEOUT,
        };
    }

    async fn on_offer(
        &mut self,
        peer: Peer,
        est: Established,
        mut sealed: SealedSignaling,
        mut media: Media,
        deadline: Instant,
        bytes: &[u8],
    ) {
        let opened = match sealed.open(bytes) {
            Ok(o) => o,
            Err(e @ (SealError::Forged | SealError::Replay { .. } | SealError::Malformed(_))) => {
                // Dropped; the real offer may still come.
                self.emit(HostEvent::Tampering {
                    from: peer.from,
                    error: e.to_string(),
                })
                .await;
                self.phase = Phase::AwaitOffer {
                    peer,
                    est,
                    sealed,
                    media,
                    deadline,
                };
                return;
            }
            Err(e) => {
                let bye = sealed.seal(SealedKind::Bye, e.to_string().as_bytes());
                if let Ok(bye) = bye {
                    self.send(peer, bye).await;
                }
                return self
                    .fail(peer.from, format!("the viewer's offer was refused: {e}"))
                    .await;
            }
        };
        match opened.kind {
            SealedKind::Offer => {}
            SealedKind::Bye => return self.fail(peer.from, "the viewer gave up".into()).await,
            other => {
                tracing::debug!(kind = ?other, "waiting for the offer; ignored");
                self.phase = Phase::AwaitOffer {
                    peer,
                    est,
                    sealed,
                    media,
                    deadline,
                };
                return;
            }
        }
        media.rtc.set_peer_fingerprint(est.fp_peer);
        let answer = std::str::from_utf8(&opened.body)
            .map_err(|_| "the offer is not UTF-8".to_owned())
            .and_then(|sdp| media.rtc.accept_offer(sdp).map_err(|e| e.to_string()))
            .and_then(|answer| {
                sealed
                    .seal(SealedKind::Answer, answer.as_bytes())
                    .map_err(|e| e.to_string())
            });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                if let Ok(bye) = sealed.seal(SealedKind::Bye, e.as_bytes()) {
                    self.send(peer, bye).await;
                }
                return self
                    .fail(peer.from, format!("cannot answer the viewer's offer: {e}"))
                    .await;
            }
        };
        self.send(peer, answer).await;
        self.start_session(peer, est, sealed, media).await;
    }

    async fn start_session(
        &mut self,
        peer: Peer,
        est: Established,
        sealed: SealedSignaling,
        media: Media,
    ) {
        let mut setup = self.config.setup.clone();
        setup.permissions = est.permissions;
        let clipboard = if est.permissions.contains(Permissions::CLIPBOARD) {
            match SyncedClipboard::connect(setup.capture.display.as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "clipboard unavailable for this session");
                    None
                }
            }
        } else {
            None
        };
        let recording = match self.start_recording(&est.peer) {
            Ok(r) => r,
            Err(e) => {
                // Asked to record and cannot: no unrecorded session.
                let why = format!("cannot record the session, so it does not start: {e}");
                let _ = sealed;
                return self.fail(peer.from, why).await;
            }
        };
        if let Some(r) = &recording {
            self.emit(HostEvent::Recording {
                dir: r.sink.dir().to_path_buf(),
                owner: r.owner.clone(),
            })
            .await;
        }
        let (control, end) = SessionControl::new();
        let events = self.events.clone();
        let notes = move |note| {
            let _ = events.try_send(HostEvent::Session(note));
        };
        self.task = Some(tokio::spawn(session::run(
            media.rtc, media.link, setup, clipboard, recording, end, notes,
        )));
        self.emit(HostEvent::SessionStarted {
            peer: est.peer.clone(),
            kind: est.kind,
            permissions: est.permissions,
        })
        .await;
        self.phase = Phase::InSession {
            peer,
            sealed,
            control,
        };
    }

    /// A new recording for a session with `peer`, if this host records.
    fn start_recording(
        &self,
        peer: &PeerIdentity,
    ) -> Result<Option<SessionRecording>, std::io::Error> {
        let Some(config) = &self.config.recording else {
            return Ok(None);
        };
        let durable = config.upload.as_ref().map(|client| {
            let (tx, task) = sealdesk_client::recording::spawn_uploader(
                client.clone(),
                *config.recipient.owner(),
            );
            let events = self.events.clone();
            tokio::spawn(async move {
                if let Ok(report) = task.await {
                    let _ = events.send(HostEvent::RecordingUploaded(report)).await;
                }
            });
            tx
        });
        let (sink, owner) = sealdesk_client::recording::start_session(
            &config.dir,
            self.identity.clone(),
            config.recipient.clone(),
            peer,
            true,
            durable,
        )?;
        Ok(Some(SessionRecording {
            sink: Arc::new(sink),
            owner,
            keep_clipboard: config.keep_clipboard,
        }))
    }

    async fn on_timeout(&mut self) {
        let now = Instant::now();
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitA3 { peer, state, media } => {
                if now >= self.code.as_ref().map_or(now, AttendedHost::poll_timeout) {
                    if let Some(code) = self.code.as_mut() {
                        code.abandon(state);
                    }
                    self.fail(peer.from, "the device stopped answering".into())
                        .await;
                    self.check_code().await;
                } else {
                    self.phase = Phase::AwaitA3 { peer, state, media };
                }
            }
            Phase::AwaitConsent { peer, pending, .. } => {
                self.consent = None;
                if let Pending::Attended(p) = *pending {
                    self.send(peer, p.decline()).await;
                }
                self.fail(peer.from, "nobody answered on this machine in time".into())
                    .await;
            }
            Phase::AwaitB3 { peer, .. } => {
                self.fail(peer.from, "the device stopped answering".into())
                    .await;
            }
            Phase::AwaitOffer { peer, .. } => {
                self.fail(peer.from, "the viewer sent no offer in time".into())
                    .await;
            }
            Phase::Idle => {
                // The code expired: show a fresh one so the host stays reachable.
                if self.code.as_ref().is_some_and(|c| now >= c.expires_at()) {
                    self.new_code().await;
                }
            }
            phase @ Phase::InSession { .. } => self.phase = phase,
        }
    }
}
