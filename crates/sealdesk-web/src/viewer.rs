//! [`WebViewer`]: everything the browser viewer decides, as one state machine that does no
//! I/O. The page feeds it [`Input`]s with the time, and does what its [`Output`]s say.
//!
//! ```text
//! registering ─ServerOpen/Server→ idle ─Dial→ [relay credential] → A1 + CreateOffer
//!   ─A2→ A3 → accept → (the page's Offer, sealed) ─sealed answer→ Answer ─Dtls (both
//!   certificates checked)→ Verified: control channel open both ways, input enabled
//! ```
//!
//! Nothing reaches the host's screen or input, and no picture is shown, before
//! [`Output::Verified`]: control messages the page sends before then are dropped, and those
//! the host sends are held (a few) until then.

use std::collections::VecDeque;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use sealdesk_auth::attended::viewer::{self as attended, ExpectA2};
use sealdesk_auth::code::{Elapsed, Moment as _, OneTimeCode, ViewerAttempts};
use sealdesk_auth::messages::{
    self, Abort, AbortReason, Message, TAG_A2, TAG_ABORT, TAG_B2, TAG_SEALED,
};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::safety::SafetyNumber;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::{SealError, SealedKind, SealedSignaling};
use sealdesk_auth::session::{Established, ExpectAccept, PeerIdentity, ViewerKind};
use sealdesk_auth::trust::{Permissions, PinnedHost};
use sealdesk_auth::unattended::viewer::{self as unattended, ExpectB2};
use sealdesk_auth::{HandshakeError, IdentityKey};
use sealdesk_proto::client_conn::{ClientConn, ClientEvent, ClientOutput};
use sealdesk_proto::control::{caps, ControlMessage, EndReason, CONTROL_VERSION};
use sealdesk_proto::{Body, ClientMessage, DeviceKey, ErrorCode, RoutingNumber, SessionId};
use zeroize::Zeroizing;

use crate::api::{Config, ErrorKind, IceServer, Input, Output, Pin, ServedBy};
use crate::keys::Held;

mod live;
use live::Live;

/// How long the host has to answer each handshake message, and the offer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the host's user has to approve.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server has to issue a relay credential.
const RELAY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the page has to make its offer, and the transport to connect.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A host silent this long (no control message, and it answers a ping every second) is gone.
const HOST_GONE_AFTER: Duration = Duration::from_secs(20);
/// How often the viewer pings the host and reports its stats (the host pauses a viewer
/// silent for 1.5 s).
const PING_EVERY: Duration = Duration::from_millis(500);
/// Control messages from the host held until the certificates are checked.
const MAX_EARLY_CONTROL: usize = 32;
/// What a paired host is asked for.
const UNATTENDED_REQUEST: Permissions = Permissions::VIEW
    .union(Permissions::INPUT)
    .union(Permissions::CLIPBOARD);
/// Wheel pixels per notch (Chromium's pixel deltas for one notch of a mouse wheel).
const WHEEL_PIXELS_PER_NOTCH: f64 = 100.0;

/// Why a machine could not be made from a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid browser viewer configuration: {0}")]
pub struct ConfigError(String);

/// What an attempt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A session.
    Session,
    /// Pairing (`sealdesk pair host` on the other side): no session, the host is pinned.
    Pair,
}

/// One attempt to reach a host.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    host: RoutingNumber,
    session: SessionId,
    purpose: Purpose,
    relay_only: bool,
}

/// How an attempt starts, once the relay credential is in.
enum Start {
    Code(OneTimeCode),
    Pin(PinnedHost),
}

enum Phase {
    Idle,
    AwaitRelay {
        attempt: Attempt,
        start: Start,
        deadline: Elapsed,
    },
    AwaitA2 {
        attempt: Attempt,
        state: Box<ExpectA2>,
        deadline: Elapsed,
    },
    AwaitB2 {
        attempt: Attempt,
        state: Box<ExpectB2>,
        deadline: Elapsed,
    },
    AwaitAccept {
        attempt: Attempt,
        state: Box<ExpectAccept>,
        deadline: Elapsed,
    },
    AwaitOffer(Box<Sealed>),
    AwaitAnswer(Box<Sealed>),
    AwaitDtls(Box<Sealed>),
    Live(Box<Live>),
}

/// An accepted attempt: the handshake's result and the sealed channel.
struct Sealed {
    attempt: Attempt,
    est: Established,
    sealed: SealedSignaling,
    deadline: Elapsed,
    /// Control messages from the host, held until the certificates are checked.
    early: Vec<Vec<u8>>,
}

/// Which step between accept and live a sealed message arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Offer,
    Answer,
    Dtls,
}

impl Step {
    fn phase(self, s: Box<Sealed>) -> Phase {
        match self {
            Step::Offer => Phase::AwaitOffer(s),
            Step::Answer => Phase::AwaitAnswer(s),
            Step::Dtls => Phase::AwaitDtls(s),
        }
    }
}

/// The browser viewer's state machine. See the module documentation.
pub struct WebViewer {
    identity: IdentityKey,
    label: String,
    kind: ViewerKind,
    fp_local: DtlsFingerprint,
    origin: String,
    rng: ChaCha20Rng,
    conn: Option<ClientConn>,
    attempts: ViewerAttempts<Elapsed>,
    pins: Vec<PinnedHost>,
    next_send_id: u64,
    /// The relay credential the server issued for the current attempt.
    relay: Option<IceServer>,
    /// The page's offer, when it was ready before the host accepted (it is made while the
    /// handshake runs, so candidates are gathered by then).
    offer: Option<String>,
    answer_timeout: Duration,
    phase: Phase,
    now: Elapsed,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for WebViewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebViewer")
            .field("device", &self.identity.fingerprint())
            .field("registered", &self.routing())
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(text: &str, what: &str) -> Result<Vec<u8>, ConfigError> {
    B64.decode(text)
        .map_err(|e| ConfigError(format!("{what} is not base64: {e}")))
}

fn seed32(text: &str, what: &str) -> Result<Zeroizing<[u8; 32]>, ConfigError> {
    let bytes = Zeroizing::new(unb64(text, what)?);
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(ConfigError(format!(
            "{what} must be 32 bytes, not {}",
            bytes.len()
        )));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

impl WebViewer {
    /// A machine for this page. `now` is the page's clock (`performance.now()`).
    pub fn new(config: Config, now: Elapsed) -> Result<Self, ConfigError> {
        let seed = seed32(&config.identity_seed, "identity_seed")?;
        let random = seed32(&config.random_seed, "random_seed")?;
        let identity = IdentityKey::from_seed(&seed);
        let fp_local = DtlsFingerprint::from_sdp(&config.fingerprint).ok_or_else(|| {
            ConfigError("fingerprint is not a SHA-256 fingerprint in SDP form".into())
        })?;
        let origin = sealdesk_proto::signaling::normalize_origin(&config.origin)
            .ok_or_else(|| ConfigError(format!("{:?} is not a server origin", config.origin)))?;
        sealdesk_auth::trust::check_label(&config.label)
            .map_err(|e| ConfigError(format!("label: {e}")))?;
        let mut pins = Vec::new();
        for p in &config.pins {
            pins.push(pin_from(p)?);
        }
        let kind = match config.served_by {
            ServedBy::Local => ViewerKind::Browser,
            ServedBy::Server => ViewerKind::ServerServedBrowser,
        };
        let mut v = Self {
            identity,
            label: config.label,
            kind,
            fp_local,
            origin,
            rng: ChaCha20Rng::from_seed(*random),
            conn: None,
            attempts: ViewerAttempts::default(),
            pins,
            next_send_id: 1,
            relay: None,
            offer: None,
            answer_timeout: config
                .timeout_secs
                .map_or(ANSWER_TIMEOUT, |s| Duration::from_secs(s.clamp(1, 600))),
            phase: Phase::Idle,
            now,
            out: VecDeque::new(),
        };
        v.out.push_back(Output::Identity {
            fingerprint: v.identity.fingerprint().to_string(),
        });
        Ok(v)
    }

    /// This browser's routing number, once registered.
    pub fn routing(&self) -> Option<RoutingNumber> {
        self.conn.as_ref().and_then(ClientConn::routing_number)
    }

    /// The next thing for the page to do. Call after every [`WebViewer::handle_input`] until
    /// it returns `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Something happened at `now`.
    pub fn handle_input(&mut self, now: Elapsed, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::ServerOpen => {
                self.conn = Some(ClientConn::new(self.identity.public(), self.origin.clone()));
            }
            Input::Server { text } => self.on_server_text(&text),
            Input::ServerClosed { code, reason } => self.on_server_closed(code, &reason),
            Input::Dial { code, relay_only } => {
                self.dial_code(&Zeroizing::new(code), relay_only, Purpose::Session)
            }
            Input::Pair { code } => self.dial_code(&Zeroizing::new(code), false, Purpose::Pair),
            Input::DialPaired {
                routing,
                relay_only,
            } => self.dial_paired(routing, relay_only),
            Input::Offer { sdp } => self.on_offer(&sdp),
            Input::RtcFailed { message } => {
                if self.in_attempt() {
                    self.fail(
                        ErrorKind::Rtc,
                        format!("the browser's WebRTC failed: {message}"),
                    );
                }
            }
            Input::Dtls {
                local,
                remote,
                algorithm,
            } => self.on_dtls(&local, &remote, &algorithm),
            Input::Control { data } => self.on_control_bytes(&data),
            Input::Pointer { x, y } => self.on_pointer(x, y),
            Input::Button { button, down } => self.on_button(button, down),
            Input::Wheel { dx, dy } => self.on_wheel(dx, dy),
            Input::Key { code, key, down } => self.on_key(&code, key.as_deref(), down),
            Input::ReleaseAll => self.release_all(),
            Input::Clipboard { text } => {
                if text.len() > sealdesk_proto::control::MAX_CLIPBOARD_BYTES {
                    self.out.push_back(Output::Warning {
                        text: format!(
                            "the clipboard ({} bytes) is over the {} KiB a session carries; not sent",
                            text.len(),
                            sealdesk_proto::control::MAX_CLIPBOARD_BYTES / 1024
                        ),
                    });
                } else {
                    self.control(ControlMessage::Clipboard { text });
                }
            }
            Input::SelectMonitor { index } => self.control(ControlMessage::SelectMonitor { index }),
            Input::RequestKeyframe => self.control(ControlMessage::RequestKeyframe),
            Input::End => self.end_by_user(),
            Input::Tick { fps, kbps, relayed } => self.on_tick(fps, kbps, relayed),
        }
    }

    fn in_attempt(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Live(_))
    }

    // ---- signaling -------------------------------------------------------------------

    fn on_server_text(&mut self, text: &str) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let identity = &self.identity;
        if let Err(e) = conn.handle_text(text, |b| identity.sign(b)) {
            // The server misbehaved: this connection is over; the page opens another.
            self.conn = None;
            self.out.push_back(Output::Reconnect {
                text: format!("the signaling server sent something invalid ({e}); reconnecting"),
            });
            if self.in_attempt() {
                self.fail(ErrorKind::Signaling, format!("signaling: {e}"));
            }
            return;
        }
        while let Some(out) = self.conn.as_mut().and_then(ClientConn::poll_output) {
            match out {
                ClientOutput::Send(msg) => self.out.push_back(Output::Send { text: msg.encode() }),
                ClientOutput::Event(ev) => self.on_client_event(ev),
            }
        }
    }

    fn on_server_closed(&mut self, code: u16, reason: &str) {
        self.conn = None;
        let why = match sealdesk_proto::CloseReason::from_code(code) {
            Some(r) => format!("{} ({code})", r.as_str()),
            None => format!("code {code}"),
        };
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        if self.in_attempt() {
            self.fail(
                ErrorKind::Signaling,
                format!(
                    "lost the signaling server ({why}{}{reason})",
                    if reason.is_empty() { "" } else { ": " }
                ),
            );
        }
    }

    fn on_client_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Registered(n) => self.out.push_back(Output::Registered {
                routing: n.grouped(),
            }),
            ClientEvent::Envelope {
                from,
                session,
                body,
            } => self.on_envelope(from, session, &body.into_bytes()),
            ClientEvent::Relay {
                urls,
                username,
                password,
                ..
            } => {
                // Only relays the browser can use: TURN over UDP or TCP.
                let urls: Vec<String> = urls
                    .into_iter()
                    .filter(|u| u.starts_with("turn:") || u.starts_with("turns:"))
                    .collect();
                self.relay = (!urls.is_empty()).then_some(IceServer {
                    urls,
                    username,
                    credential: password,
                });
                self.relay_answered();
            }
            ClientEvent::Error { code, message, .. } => self.on_server_error(code, &message),
            _ => {}
        }
    }

    fn on_server_error(&mut self, code: ErrorCode, message: &str) {
        if code == ErrorCode::NoRelay {
            self.relay = None;
            self.relay_answered();
            return;
        }
        let Some(host) = self.attempt().map(|a| a.host) else {
            return;
        };
        let message: String = message
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        match code {
            ErrorCode::PeerOffline | ErrorCode::UnknownNumber => self.fail(
                ErrorKind::Offline,
                format!(
                    "host {} is not connected to this signaling server: check the code, and that \
                     sealdesk is running there with the same server",
                    host.grouped()
                ),
            ),
            other => self.fail(
                ErrorKind::Signaling,
                format!(
                    "the server did not deliver the message to host {} ({}): {message}",
                    host.grouped(),
                    other.as_str()
                ),
            ),
        }
    }

    fn send_to(&mut self, attempt: &Attempt, bytes: Vec<u8>) {
        let Ok(body) = Body::new(bytes) else {
            return; // our own messages are far below the limit
        };
        let id = self.next_send_id;
        self.next_send_id += 1;
        let msg = ClientMessage::Send {
            id,
            to: attempt.host,
            session: attempt.session,
            body,
        };
        self.out.push_back(Output::Send { text: msg.encode() });
    }

    fn attempt(&self) -> Option<Attempt> {
        match &self.phase {
            Phase::Idle => None,
            Phase::AwaitRelay { attempt, .. }
            | Phase::AwaitA2 { attempt, .. }
            | Phase::AwaitB2 { attempt, .. }
            | Phase::AwaitAccept { attempt, .. } => Some(*attempt),
            Phase::AwaitOffer(s) | Phase::AwaitAnswer(s) | Phase::AwaitDtls(s) => Some(s.attempt),
            Phase::Live(l) => Some(l.attempt),
        }
    }

    // ---- starting an attempt ----------------------------------------------------------

    fn ready_to_dial(&mut self) -> bool {
        if !matches!(self.phase, Phase::Idle) {
            self.out.push_back(Output::Warning {
                text: "a connection is already in progress; end it first".into(),
            });
            return false;
        }
        if self.routing().is_none() {
            self.error(
                ErrorKind::Signaling,
                "not registered with the signaling server yet; wait a moment".into(),
                None,
            );
            return false;
        }
        true
    }

    fn new_attempt(&mut self, host: RoutingNumber, purpose: Purpose, relay_only: bool) -> Attempt {
        let mut sid = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut self.rng, &mut sid);
        Attempt {
            host,
            session: SessionId(sid),
            purpose,
            relay_only,
        }
    }

    fn dial_code(&mut self, typed: &str, relay_only: bool, purpose: Purpose) {
        if !self.ready_to_dial() {
            return;
        }
        let code = match OneTimeCode::parse(typed) {
            Ok(c) => c,
            Err(e) => {
                return self.error(
                    ErrorKind::BadCode,
                    format!("that is not a code ({e}); it looks like 123 456 789 · 1234 5678"),
                    None,
                )
            }
        };
        if Some(code.routing) == self.routing() {
            return self.error(
                ErrorKind::BadCode,
                "this is this browser's own number; type the code the host shows".into(),
                None,
            );
        }
        let attempt = self.new_attempt(code.routing, purpose, relay_only);
        self.begin(attempt, Start::Code(code));
    }

    fn dial_paired(&mut self, routing: u32, relay_only: bool) {
        if !self.ready_to_dial() {
            return;
        }
        let Some(pin) = self
            .pins
            .iter()
            .find(|p| routing == p.routing.get())
            .cloned()
        else {
            return self.error(
                ErrorKind::BadCode,
                format!("not paired with host {routing}: pair once with the code it shows"),
                None,
            );
        };
        let attempt = self.new_attempt(pin.routing, Purpose::Session, relay_only);
        self.begin(attempt, Start::Pin(pin));
    }

    /// A session needs the relay credential before the offer is made: ask for it first.
    fn begin(&mut self, attempt: Attempt, start: Start) {
        if attempt.purpose == Purpose::Session {
            self.relay = None;
            self.out.push_back(Output::Send {
                text: ClientMessage::Relay {}.encode(),
            });
            self.phase = Phase::AwaitRelay {
                attempt,
                start,
                deadline: self.now.after(RELAY_TIMEOUT),
            };
        } else {
            self.start_handshake(attempt, start);
        }
    }

    /// The server answered the relay request (or will not): the waiting attempt goes on.
    fn relay_answered(&mut self) {
        if let Phase::AwaitRelay { .. } = self.phase {
            if let Phase::AwaitRelay { attempt, start, .. } =
                std::mem::replace(&mut self.phase, Phase::Idle)
            {
                self.start_handshake(attempt, start);
            }
        }
    }

    fn start_handshake(&mut self, attempt: Attempt, start: Start) {
        if attempt.relay_only && self.relay.is_none() {
            return self.error(
                ErrorKind::Signaling,
                "relay only was asked for, but this signaling server issues no relay credential"
                    .into(),
                None,
            );
        }
        let offer = Offer::default();
        let deadline = self.now.after(self.answer_timeout);
        self.offer = None;
        if attempt.purpose == Purpose::Session {
            // The page makes its RTCPeerConnection and gathers candidates while the handshake
            // runs (as the native viewer does); the offer is sealed only once the host accepts.
            let ice_servers = self.relay.iter().cloned().collect();
            self.out.push_back(Output::CreateOffer {
                ice_servers,
                relay_only: attempt.relay_only,
            });
        }
        match start {
            Start::Code(code) => {
                match attended::start(
                    &code,
                    &offer,
                    self.fp_local,
                    &mut self.attempts,
                    self.now,
                    &mut self.rng,
                ) {
                    Ok((state, a1)) => {
                        drop(code);
                        self.send_to(&attempt, a1);
                        self.progress(format!("asking host {}…", attempt.host.grouped()));
                        self.phase = Phase::AwaitA2 {
                            attempt,
                            state: Box::new(state),
                            deadline,
                        };
                    }
                    Err(e) => self.handshake_failed(&attempt, e),
                }
            }
            Start::Pin(pin) => {
                let (state, b1) = unattended::start(&pin, &offer, self.fp_local, &mut self.rng);
                self.send_to(&attempt, b1);
                self.progress(format!(
                    "asking paired host {:?} ({})…",
                    pin.label,
                    attempt.host.grouped()
                ));
                self.phase = Phase::AwaitB2 {
                    attempt,
                    state: Box::new(state),
                    deadline,
                };
            }
        }
    }

    // ---- the handshake --------------------------------------------------------------

    fn on_envelope(&mut self, from: RoutingNumber, session: SessionId, bytes: &[u8]) {
        let Some(attempt) = self.attempt() else {
            return;
        };
        if from != attempt.host || session != attempt.session {
            return; // anyone may send us envelopes; only this host in this session counts
        }
        let Some(&tag) = bytes.first() else {
            return;
        };
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitA2 { attempt, state, .. } if tag == TAG_A2 || tag == TAG_ABORT => {
                self.on_a2(attempt, *state, bytes)
            }
            Phase::AwaitB2 { attempt, state, .. } if tag == TAG_B2 || tag == TAG_ABORT => {
                self.on_b2(attempt, *state, bytes)
            }
            Phase::AwaitAccept {
                attempt,
                state,
                deadline,
            } if tag == TAG_SEALED || tag == TAG_ABORT => {
                self.on_accept(attempt, *state, deadline, bytes)
            }
            Phase::AwaitOffer(s) if tag == TAG_SEALED => {
                self.on_sealed_before_live(Step::Offer, s, bytes)
            }
            Phase::AwaitAnswer(s) if tag == TAG_SEALED => {
                self.on_sealed_before_live(Step::Answer, s, bytes)
            }
            Phase::AwaitDtls(s) if tag == TAG_SEALED => {
                self.on_sealed_before_live(Step::Dtls, s, bytes)
            }
            Phase::Live(mut live) if tag == TAG_SEALED => {
                match live.sealed.open(bytes) {
                    Ok(m) if m.kind == SealedKind::Bye => {
                        let why = sanitize(&m.body);
                        self.phase = Phase::Live(live);
                        self.finish_live(format!("the host ended the session: {why}"));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => self.tamper_warning(&e),
                }
                self.phase = Phase::Live(live);
            }
            other => self.phase = other, // not what this phase waits for
        }
    }

    fn on_a2(&mut self, attempt: Attempt, state: ExpectA2, bytes: &[u8]) {
        if let Some(said) = state.check_abort(bytes) {
            return self.handshake_failed(&attempt, said);
        }
        let result = state.handle_a2_as(
            bytes,
            &self.identity,
            &self.label,
            self.kind,
            &mut self.attempts,
            self.now,
        );
        let (waiting, a3) = match result {
            Ok(v) => v,
            Err(e) => {
                self.send_to(&attempt, e.abort_message());
                return self.handshake_failed(&attempt, e);
            }
        };
        let host = waiting.peer().clone();
        if let Some(pin) = self.pins.iter().find(|p| p.routing == attempt.host) {
            if pin.key != host.key {
                let e = HandshakeError::HostKeyChanged {
                    pinned: pin.fingerprint(),
                    presented: host.fingerprint(),
                };
                self.send_to(&attempt, Abort::new(AbortReason::Other).encode());
                return self.handshake_failed(&attempt, e);
            }
        }
        self.send_to(&attempt, a3);
        self.host_proved(&host);
        self.phase = Phase::AwaitAccept {
            attempt,
            state: Box::new(waiting),
            deadline: self.now.after(APPROVAL_TIMEOUT),
        };
    }

    fn on_b2(&mut self, attempt: Attempt, state: ExpectB2, bytes: &[u8]) {
        if bytes.first() == Some(&TAG_ABORT) {
            let reason = match messages::decode(bytes) {
                Ok(Message::Abort(a)) => a.reason(),
                _ => AbortReason::Other,
            };
            return self.handshake_failed(&attempt, HandshakeError::PeerAborted(reason));
        }
        match state.handle_b2_as(
            bytes,
            &self.identity,
            &self.label,
            self.kind,
            UNATTENDED_REQUEST,
        ) {
            Ok((waiting, b3)) => {
                self.send_to(&attempt, b3);
                let host = waiting.peer().clone();
                self.host_proved(&host);
                self.phase = Phase::AwaitAccept {
                    attempt,
                    state: Box::new(waiting),
                    deadline: self.now.after(APPROVAL_TIMEOUT),
                };
            }
            Err(e) => {
                self.send_to(&attempt, e.abort_message());
                self.handshake_failed(&attempt, e);
            }
        }
    }

    fn host_proved(&mut self, host: &PeerIdentity) {
        let safety = SafetyNumber::of(&self.identity.public(), &host.key);
        self.out.push_back(Output::HostProved {
            label: sanitize(host.label.as_bytes()),
            fingerprint: host.fingerprint().to_string(),
            safety_number: safety.grouped(),
        });
        self.progress("the host proved the code; waiting for its user to approve…".into());
    }

    fn on_accept(
        &mut self,
        attempt: Attempt,
        state: ExpectAccept,
        deadline: Elapsed,
        bytes: &[u8],
    ) {
        if bytes.first() == Some(&TAG_ABORT) {
            let reason = match messages::decode(bytes) {
                Ok(Message::Abort(a)) => a.reason(),
                _ => AbortReason::Other,
            };
            return self.handshake_failed(&attempt, HandshakeError::PeerAborted(reason));
        }
        let host = state.peer().clone();
        match state.handle(bytes) {
            Ok(Ok((est, sealed))) => self.accepted(attempt, est, sealed, &host),
            Ok(Err(still)) => {
                self.out.push_back(Output::Warning {
                    text: "dropped a signaling message that failed authentication (forged, \
                           altered or replayed on the way)"
                        .into(),
                });
                self.phase = Phase::AwaitAccept {
                    attempt,
                    state: Box::new(still),
                    deadline,
                };
            }
            Err(e) => self.handshake_failed(&attempt, e),
        }
    }

    fn accepted(
        &mut self,
        attempt: Attempt,
        est: Established,
        sealed: SealedSignaling,
        host: &PeerIdentity,
    ) {
        match attempt.purpose {
            Purpose::Pair => {
                let pin = Pin {
                    routing: attempt.host.get(),
                    key: b64(host.key.as_bytes()),
                    label: sanitize(host.label.as_bytes()),
                };
                self.pins.retain(|p| p.routing != attempt.host);
                self.pins.push(PinnedHost {
                    routing: attempt.host,
                    key: host.key,
                    label: pin.label.clone(),
                    added_at: 0,
                });
                self.out.push_back(Output::Paired {
                    pin,
                    allowed: est.permissions.to_string(),
                });
                self.phase = Phase::Idle;
            }
            Purpose::Session => {
                self.progress(format!("approved ({}); connecting…", est.permissions));
                self.phase = Phase::AwaitOffer(Box::new(Sealed {
                    attempt,
                    est,
                    sealed,
                    deadline: self.now.after(PAGE_TIMEOUT),
                    early: Vec::new(),
                }));
                if let Some(sdp) = self.offer.take() {
                    self.on_offer(&sdp);
                }
            }
        }
    }

    fn on_offer(&mut self, sdp: &str) {
        if let Phase::AwaitA2 { attempt, .. }
        | Phase::AwaitB2 { attempt, .. }
        | Phase::AwaitAccept { attempt, .. } = &self.phase
        {
            if attempt.purpose == Purpose::Session {
                self.offer = Some(sdp.to_owned()); // sealed once the host accepts
            }
            return;
        }
        let Phase::AwaitOffer(mut s) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        match s.sealed.seal(SealedKind::Offer, sdp.as_bytes()) {
            Ok(bytes) => {
                let attempt = s.attempt;
                self.send_to(&attempt, bytes);
                s.deadline = self.now.after(self.answer_timeout);
                self.phase = Phase::AwaitAnswer(s);
            }
            Err(e) => {
                let attempt = s.attempt;
                self.phase = Phase::AwaitOffer(s);
                self.fail(
                    ErrorKind::Rtc,
                    format!(
                        "this browser's offer cannot be sent ({e}); its certificate must be the \
                         one the handshake named ({attempt_host})",
                        attempt_host = attempt.host.grouped()
                    ),
                );
            }
        }
    }

    /// A sealed message between the accept and a live session: the answer (when one is
    /// awaited), a bye, or something forged or replayed on the way.
    fn on_sealed_before_live(&mut self, step: Step, mut s: Box<Sealed>, bytes: &[u8]) {
        let opened = s.sealed.open(bytes);
        match opened {
            Ok(m) if m.kind == SealedKind::Answer && step == Step::Answer => {
                let Ok(sdp) = String::from_utf8(m.body) else {
                    self.phase = step.phase(s);
                    return self.fail(ErrorKind::Tampering, SealError::NotUtf8.to_string());
                };
                s.deadline = self.now.after(PAGE_TIMEOUT);
                self.out.push_back(Output::Answer { sdp });
                self.progress("answer verified; connecting…".into());
                self.phase = Phase::AwaitDtls(s);
            }
            Ok(m) if m.kind == SealedKind::Bye => {
                // The host closed the sealed channel: nothing more may be sent on it.
                let why = sanitize(&m.body);
                self.phase = Phase::Idle;
                self.error(
                    ErrorKind::Refused,
                    format!("the host ended the connection: {why}"),
                    None,
                );
            }
            Ok(_) => self.phase = step.phase(s),
            Err(e @ (SealError::Forged | SealError::Replay { .. } | SealError::Malformed(_))) => {
                self.tamper_warning(&e);
                self.phase = step.phase(s);
            }
            Err(e) => {
                self.phase = step.phase(s);
                self.fail(
                    ErrorKind::Tampering,
                    format!("the host's answer was refused: {e}"),
                );
            }
        }
    }

    fn on_dtls(&mut self, local: &str, remote: &str, algorithm: &str) {
        let Phase::AwaitDtls(s) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let fp_peer = *s.sealed.fp_peer();
        let fp_local = *s.sealed.fp_local();
        let remote_ok = algorithm.eq_ignore_ascii_case("sha-256")
            && DtlsFingerprint::from_sdp(remote) == Some(fp_peer);
        let local_ok = DtlsFingerprint::from_sdp(local) == Some(fp_local);
        if !(remote_ok && local_ok) {
            self.phase = Phase::AwaitDtls(s);
            let got = if remote.is_empty() { "none" } else { remote };
            return self.fail(
                ErrorKind::Tampering,
                format!(
                    "the connection's DTLS certificate is not the one authenticated in the \
                     handshake — someone tampered with the connection (expected {}, got {algorithm} {got}{})",
                    fp_peer.to_sdp(),
                    if local_ok { "" } else { "; and ours is not the one we announced" }
                ),
            );
        }
        let Sealed {
            attempt,
            est,
            sealed,
            early,
            ..
        } = *s;
        let permissions = est.permissions;
        self.phase = Phase::Live(Box::new(Live {
            attempt,
            sealed,
            permissions,
            held: Held::default(),
            active_monitor: 0,
            last_pointer: None,
            last_heard: self.now,
            next_ping: self.now,
            ping_id: 0,
            rtt: None,
            path: None,
            fps: 0.0,
            kbps: 0.0,
        }));
        self.out.push_back(Output::Verified {
            permissions: permissions.bits(),
            allowed: permissions.to_string(),
        });
        self.control(ControlMessage::Hello {
            version: CONTROL_VERSION,
            capabilities: caps::INPUT | caps::CLIPBOARD_TEXT | caps::MONITORS,
        });
        for bytes in early {
            self.on_control(&bytes);
        }
    }

    // ---- failures ---------------------------------------------------------------------

    fn handshake_failed(&mut self, attempt: &Attempt, e: HandshakeError) {
        let left = match &e {
            HandshakeError::WrongCodeOrTampered { attempts_left } => Some(*attempts_left),
            HandshakeError::ViewerLockedOut(_) => Some(0),
            _ => None,
        };
        let kind = match &e {
            HandshakeError::WrongCodeOrTampered { attempts_left: 0 }
            | HandshakeError::ViewerLockedOut(_)
            | HandshakeError::CodeExhausted
            | HandshakeError::PeerAborted(AbortReason::CodeExhausted) => ErrorKind::CodeBurned,
            HandshakeError::WrongCodeOrTampered { .. } => ErrorKind::WrongCode,
            HandshakeError::Downgrade
            | HandshakeError::BadIdentityProof
            | HandshakeError::HostKeyChanged { .. }
            | HandshakeError::InvalidKeyShare => ErrorKind::Tampering,
            HandshakeError::Declined | HandshakeError::RefusedByHost(_) => ErrorKind::Refused,
            HandshakeError::PeerAborted(_) => ErrorKind::Refused,
            _ => ErrorKind::Other,
        };
        let text = match (kind, &e) {
            (ErrorKind::CodeBurned, _) => format!(
                "{e}. This code is burned: no attempt with it is left. Ask the person at host {} \
                 for a new code.",
                attempt.host.grouped()
            ),
            _ => e.to_string(),
        };
        self.phase = Phase::Idle;
        self.error(kind, text, left);
    }

    /// Ends the attempt or session with an error (and tells the host when there is a sealed
    /// channel to say it on).
    fn fail(&mut self, kind: ErrorKind, text: String) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitOffer(mut s) | Phase::AwaitAnswer(mut s) | Phase::AwaitDtls(mut s) => {
                if let Ok(bye) = s.sealed.seal(SealedKind::Bye, b"the viewer gave up") {
                    let attempt = s.attempt;
                    self.send_to(&attempt, bye);
                }
            }
            Phase::Live(mut live) => {
                if let Ok(bye) = live.sealed.seal(SealedKind::Bye, b"the viewer gave up") {
                    let attempt = live.attempt;
                    self.send_to(&attempt, bye);
                }
            }
            _ => {}
        }
        self.error(kind, text, None);
    }

    fn error(&mut self, kind: ErrorKind, text: String, attempts_left: Option<u8>) {
        self.out.push_back(Output::Error {
            kind,
            text,
            attempts_left,
        });
    }

    fn tamper_warning(&mut self, e: &SealError) {
        self.out.push_back(Output::Warning {
            text: format!("{e} — someone on the path may be tampering"),
        });
    }

    fn progress(&mut self, text: String) {
        self.out.push_back(Output::Progress { text });
    }

    fn end_by_user(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => {}
            Phase::Live(live) => {
                let attempt = live.attempt;
                self.phase = Phase::Live(live);
                self.release_all();
                self.control(ControlMessage::End {
                    reason: EndReason::UserEnded,
                    text: "the viewer ended the session".into(),
                });
                if let Phase::Live(mut live) = std::mem::replace(&mut self.phase, Phase::Idle) {
                    if let Ok(bye) = live
                        .sealed
                        .seal(SealedKind::Bye, b"the viewer ended the session")
                    {
                        self.send_to(&attempt, bye);
                    }
                }
                self.out.push_back(Output::Ended {
                    text: "you ended the session".into(),
                });
            }
            Phase::AwaitOffer(mut s) | Phase::AwaitAnswer(mut s) | Phase::AwaitDtls(mut s) => {
                if let Ok(bye) = s.sealed.seal(SealedKind::Bye, b"the viewer cancelled") {
                    let attempt = s.attempt;
                    self.send_to(&attempt, bye);
                }
                self.out.push_back(Output::Ended {
                    text: "cancelled".into(),
                });
            }
            Phase::AwaitA2 { attempt, .. }
            | Phase::AwaitB2 { attempt, .. }
            | Phase::AwaitAccept { attempt, .. } => {
                self.send_to(&attempt, Abort::new(AbortReason::Other).encode());
                self.out.push_back(Output::Ended {
                    text: "cancelled".into(),
                });
            }
            Phase::AwaitRelay { .. } => self.out.push_back(Output::Ended {
                text: "cancelled".into(),
            }),
        }
    }

    fn on_tick(&mut self, fps: f64, kbps: f64, relayed: Option<bool>) {
        let now = self.now;
        if let Some(deadline) = self.deadline() {
            if now >= deadline {
                return self.timed_out();
            }
        }
        let Some(live) = self.live() else {
            return;
        };
        if now.since(live.last_heard) >= HOST_GONE_AFTER {
            let after = HOST_GONE_AFTER.as_secs();
            self.phase = Phase::Idle;
            return self.error(
                ErrorKind::Timeout,
                format!("the host stopped answering ({after} s without a word); the session ended"),
                None,
            );
        }
        let finite = |v: f64| if v.is_finite() && v >= 0.0 { v } else { 0.0 };
        live.fps = finite(fps);
        live.kbps = finite(kbps);
        if let Some(r) = relayed {
            live.path = Some(if r { "relay" } else { "direct" });
        }
        if now < live.next_ping {
            return;
        }
        live.next_ping = now.after(PING_EVERY);
        live.ping_id = live.ping_id.wrapping_add(1);
        let (id, fps, kbps, rtt, path) = (live.ping_id, live.fps, live.kbps, live.rtt, live.path);
        self.control(ControlMessage::Ping {
            id,
            sent_micros: u64::try_from(now.0.as_micros()).unwrap_or(u64::MAX),
        });
        self.control(ControlMessage::Stats {
            fps_x10: (fps * 10.0).min(f64::from(u16::MAX)) as u16,
            kbps: kbps.min(f64::from(u32::MAX)) as u32,
            rtt_ms: rtt.map_or(0, |r| u16::try_from(r.as_millis()).unwrap_or(u16::MAX)),
            loss_permille: 0,
        });
        self.out.push_back(Output::Stats {
            fps,
            kbps,
            rtt_ms: rtt.map(|r| r.as_secs_f64() * 1000.0),
            path: path.map(str::to_owned),
        });
    }

    fn deadline(&self) -> Option<Elapsed> {
        match &self.phase {
            Phase::Idle | Phase::Live(_) => None,
            Phase::AwaitRelay { deadline, .. }
            | Phase::AwaitA2 { deadline, .. }
            | Phase::AwaitB2 { deadline, .. }
            | Phase::AwaitAccept { deadline, .. } => Some(*deadline),
            Phase::AwaitOffer(s) | Phase::AwaitAnswer(s) | Phase::AwaitDtls(s) => Some(s.deadline),
        }
    }

    fn timed_out(&mut self) {
        let Some(attempt) = self.attempt() else {
            return;
        };
        let host = attempt.host.grouped();
        match &self.phase {
            Phase::AwaitRelay { .. } => {
                // No answer about the relay: go on without one.
                self.relay = None;
                self.relay_answered();
            }
            Phase::AwaitA2 { .. } | Phase::AwaitB2 { .. } => {
                let secs = self.answer_timeout.as_secs();
                self.phase = Phase::Idle;
                self.error(
                    ErrorKind::Timeout,
                    format!(
                        "no answer from host {host} within {secs} s: check the code, and that \
                         sealdesk is still running there with the same server"
                    ),
                    None,
                );
            }
            Phase::AwaitAccept { .. } => {
                let secs = APPROVAL_TIMEOUT.as_secs();
                self.send_to(&attempt, Abort::new(AbortReason::Other).encode());
                self.phase = Phase::Idle;
                self.error(
                    ErrorKind::Timeout,
                    format!("host {host} did not approve within {secs} s"),
                    None,
                );
            }
            Phase::AwaitOffer(_) => self.fail(
                ErrorKind::Rtc,
                "this browser did not make its WebRTC offer in time".into(),
            ),
            Phase::AwaitAnswer(_) => self.fail(
                ErrorKind::Timeout,
                format!(
                    "host {host} did not answer the offer within {} s; the signaling server may \
                     have dropped or altered it",
                    self.answer_timeout.as_secs()
                ),
            ),
            Phase::AwaitDtls(_) => self.fail(
                ErrorKind::Rtc,
                format!(
                    "the connection to host {host} did not come up within {} s (no path between \
                     the two; a relay may help)",
                    PAGE_TIMEOUT.as_secs()
                ),
            ),
            Phase::Idle | Phase::Live(_) => {}
        }
    }
}

/// A peer's text made safe to show: no control characters, at most 200 characters.
fn sanitize(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

fn pin_from(p: &Pin) -> Result<PinnedHost, ConfigError> {
    let routing = RoutingNumber::new(u64::from(p.routing))
        .map_err(|e| ConfigError(format!("pinned host {}: {e}", p.routing)))?;
    let bytes = unb64(&p.key, "pinned host key")?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| {
        ConfigError(format!(
            "pinned host {}: the key must be 32 bytes",
            p.routing
        ))
    })?;
    let key = DeviceKey::try_from_bytes(arr)
        .map_err(|e| ConfigError(format!("pinned host {}: {e}", p.routing)))?;
    Ok(PinnedHost {
        routing,
        key,
        label: sanitize(p.label.as_bytes()),
        added_at: 0,
    })
}
