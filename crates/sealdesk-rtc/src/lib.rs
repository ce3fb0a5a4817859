//! sealdesk's WebRTC session (DESIGN.md §4 "After DTLS connects", §5).
//!
//! [`Session`] wraps one [`str0m::Rtc`] and keeps str0m's single-mutation invariant inside:
//! every call that changes the engine drains it at once into this type's own queues, so the
//! caller simply moves bytes. Like str0m it does no I/O and reads no clock: a shell (one
//! task with a UDP socket) feeds it packets and time.
//!
//! The fingerprints are bound to the authentication core:
//! - The local DTLS fingerprint ([`Session::local_fingerprint`]) goes into the handshake
//!   (`fp_v`/`fp_h`), and the SDPs travel only through `sealdesk_auth::sealed`, which
//!   refuses any SDP whose fingerprint is not the authenticated one.
//! - After DTLS connects, the remote certificate's fingerprint as str0m saw it must equal
//!   the authenticated `fp_peer` (and ours `fp_local`). Until that check passes, nothing is
//!   delivered or sent on the data channels; if it fails, the session ends
//!   ([`SessionEvent::Closed`] with [`SessionError::FingerprintMismatch`]). str0m's own
//!   fingerprint verification stays on (it is never disabled).
//!
//! The `control` data channel carries [`ControlMessage`]s; malformed ones are reported and
//! dropped, never a panic.
//!
//! Driving two sessions in memory (a shell does the same with a UDP socket: send every
//! [`Session::poll_transmit`], feed every datagram to [`Session::handle_receive`], and call
//! [`Session::handle_timeout`] at [`Session::poll_timeout`]):
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sealdesk_rtc::{Session, SessionEvent};
//! use sealdesk_proto::control::ControlMessage;
//! # #[allow(clippy::disallowed_methods)]
//! let mut now = Instant::now();
//! let (va, ha) = ("127.0.0.1:5001".parse()?, "127.0.0.1:5002".parse()?);
//! let (mut viewer, mut host) = (Session::new(now, va)?, Session::new(now, ha)?);
//! // In sealdesk these come out of the authenticated handshake, and the SDPs travel sealed.
//! viewer.set_peer_fingerprint(host.local_fingerprint());
//! host.set_peer_fingerprint(viewer.local_fingerprint());
//! let answer = host.accept_offer(&viewer.create_offer()?)?;
//! viewer.accept_answer(&answer)?;
//! let mut got = None;
//! for _ in 0..1000 {
//!     while let Some(t) = viewer.poll_transmit() { host.handle_receive(now, va, t.destination, &t.contents); }
//!     while let Some(t) = host.poll_transmit() { viewer.handle_receive(now, ha, t.destination, &t.contents); }
//!     while let Some(e) = viewer.poll_event() {
//!         if let SessionEvent::Ready { .. } = e {
//!             viewer.send_control(&ControlMessage::RequestKeyframe)?;
//!         }
//!     }
//!     while let Some(e) = host.poll_event() {
//!         if let SessionEvent::Control(m) = e { got = Some(m); }
//!     }
//!     if got.is_some() { break; }
//!     now += Duration::from_millis(5);
//!     viewer.handle_timeout(now);
//!     host.handle_timeout(now);
//! }
//! assert_eq!(got, Some(ControlMessage::RequestKeyframe));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod driver;
#[cfg(feature = "insecure-keylog")]
pub mod keylog;
pub mod relay;

/// The insecure, test-only features compiled into this build (empty in a release build,
/// which cannot compile them): `sealdesk --version` and `sealdesk audit` report this.
pub const INSECURE_FEATURES: &[&str] = &[
    #[cfg(feature = "insecure-keylog")]
    "insecure-keylog",
];

/// Test builds only: writes this process's DTLS and SRTP keys to `path` from now on (see
/// `keylog`), so `sealdesk audit` can search the wire for them. Returns `false` — and does
/// nothing — in any build without the insecure-keylog feature, which includes every release.
pub fn insecure_keylog_to(path: &std::path::Path) -> bool {
    #[cfg(feature = "insecure-keylog")]
    return keylog::install_to(path);
    #[cfg(not(feature = "insecure-keylog"))]
    {
        let _ = path;
        false
    }
}

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_proto::control::ControlMessage;
use sealdesk_proto::wire::WireError;
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// The label of the control data channel.
pub const CONTROL_CHANNEL: &str = "control";

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The DTLS peer is not the one the handshake authenticated.
    #[error("the connection's DTLS certificate is not the one authenticated in the handshake — someone tampered with the connection (expected {expected:?}, got {got})")]
    FingerprintMismatch {
        /// The authenticated fingerprint.
        expected: DtlsFingerprint,
        /// What DTLS presented (hex, or "none").
        got: String,
    },
    /// An SDP str0m could not use.
    #[error("the session description could not be used: {0}")]
    Sdp(String),
    /// An operation in the wrong state (e.g. an answer with no offer pending).
    #[error("{0}")]
    State(&'static str),
    /// The WebRTC engine failed.
    #[error("WebRTC error: {0}")]
    Rtc(String),
    /// The local address cannot be a candidate.
    #[error("cannot use {0} as a local candidate")]
    Candidate(SocketAddr),
    /// A control message could not be encoded or sent.
    #[error("cannot send on the control channel: {0}")]
    Send(String),
}

/// A video codec both sides can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP9 (the default: best bitrate on screen content).
    Vp9,
    /// VP8 (compatibility).
    Vp8,
}

/// Datagrams held while ICE has not validated their source yet (before the session is ready).
const MAX_EARLY_DATAGRAMS: usize = 16;
/// How long such a datagram is held.
const EARLY_DATAGRAM_LIFETIME: Duration = Duration::from_secs(2);
/// How often str0m reports link statistics ([`SessionEvent::Link`]).
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What a session offers and how it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The video codecs this side accepts (at least one). Nothing else is offered: no audio,
    /// no codec sealdesk cannot decode.
    pub codecs: Vec<VideoCodec>,
    /// The sender's first bandwidth estimate in kbit/s; `Some` turns on str0m's congestion
    /// controller (transport-wide CC), whose estimates arrive as [`SessionEvent::Bitrate`].
    /// The host sets it; a receive-only viewer leaves it `None`.
    pub initial_kbps: Option<u32>,
    /// Offer the socket's own address as a (host) candidate. `false` with a relay
    /// ([`Session::add_relay`]) is `--relay-only`: the peer never learns this address.
    pub host_candidate: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            codecs: vec![VideoCodec::Vp9, VideoCodec::Vp8],
            initial_kbps: None,
            host_candidate: true,
        }
    }
}

/// The path the session's packets take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Straight between the two endpoints.
    Direct,
    /// Through a TURN relay (which forwards ciphertext).
    Relay,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Path::Direct => "direct",
            Path::Relay => "relay",
        })
    }
}

/// Link statistics, every [`STATS_INTERVAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// The latest round trip (ICE consent checks or RTCP), if measured.
    pub rtt: Option<Duration>,
    /// The selected path, once ICE has chosen one.
    pub path: Option<Path>,
    /// Bytes received so far (all packets).
    pub bytes_rx: u64,
    /// Bytes sent so far (all packets).
    pub bytes_tx: u64,
}

/// Something the application must know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// DTLS connected, both fingerprints matched the authenticated ones, and the control
    /// channel is open: the session may carry application data now.
    Ready {
        /// The codecs this side may send video with, VP9 first (host: what the viewer's
        /// offer accepts; empty on a receive-only viewer).
        send_codecs: Vec<VideoCodec>,
    },
    /// A control message from the peer.
    Control(ControlMessage),
    /// A complete encoded video frame from the host (viewer side).
    Video {
        /// Its codec.
        codec: VideoCodec,
        /// Presentation time, 90 kHz.
        time_90khz: u64,
        /// False if packets before it were lost (ask for a keyframe).
        contiguous: bool,
        /// The encoded frame.
        data: Vec<u8>,
    },
    /// The viewer asked for a keyframe (host side: encode the next frame as one).
    KeyframeRequested,
    /// A control message that did not decode (dropped).
    Malformed(WireError),
    /// ICE lost the path (may come back: give it a grace period, then restart ICE —
    /// [`Session::restart_offer`] on the viewer).
    Disconnected,
    /// ICE has a working path again after [`SessionEvent::Disconnected`].
    Reconnected,
    /// The congestion controller's estimate of what the path carries, in kbit/s (host):
    /// set the encoder's bitrate from it.
    Bitrate(u32),
    /// Link statistics.
    Link(LinkStats),
    /// The session ended.
    Closed(Option<SessionError>),
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// From this local address.
    pub source: SocketAddr,
    /// To this address.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// One WebRTC session, fingerprint-bound.
pub struct Session {
    rtc: Rtc,
    fp_local: DtlsFingerprint,
    fp_peer: Option<DtlsFingerprint>,
    pending: Option<SdpPendingOffer>,
    control: Option<ChannelId>,
    video: Option<Mid>,
    /// Whether this side sends on the video track (the host).
    video_sends: bool,
    dtls_ok: bool,
    ready: bool,
    closed: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    timeout: Instant,
    /// Our host candidates: a selected pair from any other local address is relayed.
    host_addrs: Vec<SocketAddr>,
    /// The video codecs our answer accepted (host).
    answered_codecs: Vec<VideoCodec>,
    /// The UDP socket's address.
    socket_addr: SocketAddr,
    /// The TURN allocation, if any.
    turn: Option<relay::TurnLink>,
    turn_timeout: Option<Instant>,
    /// The relay and credential the allocation was made with (to allocate again).
    relay_server: Option<relay::RelayServer>,
    /// Every relayed address this session had (a pair from one is relayed).
    relayed_addrs: Vec<SocketAddr>,
    /// Whether this side's own address may be a candidate (not `--relay-only`): then the
    /// server-reflexive address is one too.
    direct_candidates: bool,
    /// ICE reported the path lost and has not reported it back.
    ice_lost: bool,
    /// Datagrams that arrived before ICE validated their source ([`MAX_EARLY_DATAGRAMS`]).
    early: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// The latest time seen (str0m's outputs are drained without one).
    now: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("fp_local", &self.fp_local)
            .field("fp_peer", &self.fp_peer)
            .field("ready", &self.ready)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The video codecs an SDP's `a=rtpmap` lines name, VP9 first.
fn codecs_in_sdp(sdp: &str) -> Vec<VideoCodec> {
    let names = |name: &str| {
        sdp.lines().any(|l| {
            l.strip_prefix("a=rtpmap:")
                .and_then(|r| r.split_whitespace().nth(1))
                .is_some_and(|enc| enc.eq_ignore_ascii_case(name))
        })
    };
    [
        (VideoCodec::Vp9, "VP9/90000"),
        (VideoCodec::Vp8, "VP8/90000"),
    ]
    .into_iter()
    .filter(|(_, n)| names(n))
    .map(|(c, _)| c)
    .collect()
}

/// str0m's input for a UDP datagram, if it is one str0m parses (STUN, DTLS, RTP, RTCP).
fn udp_input<'a>(
    now: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: &'a [u8],
) -> Option<Input<'a>> {
    let contents = data.try_into().ok()?;
    Some(Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source,
            destination,
            contents,
        },
    ))
}

fn to_fp(f: &str0m::crypto::Fingerprint) -> Option<DtlsFingerprint> {
    if !f.hash_func.eq_ignore_ascii_case("sha-256") {
        return None;
    }
    let bytes: [u8; 32] = f.bytes.as_slice().try_into().ok()?;
    Some(DtlsFingerprint(bytes))
}

impl Session {
    /// A session with one host candidate at `local` (a bound UDP socket's address), offering
    /// VP9 and VP8.
    pub fn new(now: Instant, local: SocketAddr) -> Result<Self, SessionError> {
        Self::with_config(now, local, &SessionConfig::default())
    }

    /// A session with one host candidate at `local` and the given codecs and bandwidth estimation.
    pub fn with_config(
        now: Instant,
        local: SocketAddr,
        config: &SessionConfig,
    ) -> Result<Self, SessionError> {
        if config.codecs.is_empty() {
            return Err(SessionError::State("no video codec enabled"));
        }
        #[cfg(feature = "insecure-keylog")]
        keylog::install_from_env();
        let mut builder = Rtc::builder()
            .clear_codecs()
            .set_stats_interval(Some(STATS_INTERVAL));
        for codec in &config.codecs {
            builder = match codec {
                VideoCodec::Vp9 => builder.enable_vp9(true),
                VideoCodec::Vp8 => builder.enable_vp8(true),
            };
        }
        if let Some(kbps) = config.initial_kbps {
            builder = builder.enable_bwe(Some(Bitrate::kbps(u64::from(kbps))));
        }
        let mut rtc = builder.build(now);
        if config.host_candidate {
            let candidate =
                Candidate::host(local, "udp").map_err(|_| SessionError::Candidate(local))?;
            rtc.add_local_candidate(candidate);
        }
        let fp_local = to_fp(rtc.direct_api().local_dtls_fingerprint()).ok_or(
            SessionError::State("str0m's local fingerprint is not sha-256"),
        )?;
        let mut s = Self {
            rtc,
            fp_local,
            fp_peer: None,
            pending: None,
            control: None,
            video: None,
            video_sends: false,
            dtls_ok: false,
            ready: false,
            closed: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timeout: now,
            host_addrs: vec![local],
            answered_codecs: Vec::new(),
            socket_addr: local,
            turn: None,
            turn_timeout: None,
            relay_server: None,
            relayed_addrs: Vec::new(),
            direct_candidates: config.host_candidate,
            ice_lost: false,
            early: VecDeque::new(),
            now,
        };
        s.drain();
        Ok(s)
    }

    /// Starts a TURN allocation on `relay` from this session's socket. Its relayed address
    /// becomes a candidate once allocated ([`Session::relay_state`]); gather before the SDP
    /// is made ([`crate::driver::gather`]).
    pub fn add_relay(&mut self, now: Instant, relay: &relay::RelayServer) {
        self.now = now;
        self.turn = Some(relay::TurnLink::new(now, self.socket_addr, relay));
        self.relay_server = Some(relay.clone());
        self.poll_turn(now);
    }

    /// Before an ICE restart: releases the TURN allocation (if the relay still holds it) and
    /// makes a new one on the same relay with the same credential — a relay that restarted
    /// has forgotten the old one. Its relayed address becomes a candidate once allocated
    /// ([`Session::relay_state`]); returns `false` if the session has no relay. `fresh`
    /// replaces the credential (and relay) the session had — credentials expire, and a relay
    /// refuses every request, refreshes included, once they have.
    /// A session that reached its relay over TCP stays on TCP (UDP was blocked).
    pub fn renew_relay(&mut self, now: Instant, fresh: Option<relay::RelayServer>) -> bool {
        if let Some(f) = fresh {
            let tcp = self.relay_server.as_ref().is_some_and(|r| r.tcp);
            self.relay_server = Some(match f.over_tcp() {
                Some(t) if tcp => t,
                _ => f,
            });
        }
        let Some(server) = self.relay_server.clone() else {
            return false;
        };
        self.now = now;
        if let Some(old) = self.turn.as_mut() {
            let mut out = Vec::new();
            old.release(now, &mut out);
            self.apply_link(out);
        }
        self.turn = Some(relay::TurnLink::new(now, self.socket_addr, &server));
        self.poll_turn(now);
        true
    }

    /// Viewer: an ICE restart offer to seal and send — new ICE credentials, the same DTLS
    /// association and certificates (the sealed channel checks the fingerprint again), and
    /// every current local candidate (renew the relay first, [`Session::renew_relay`], so a
    /// fresh relayed candidate is among them). The host's answer goes to
    /// [`Session::accept_answer`].
    pub fn restart_offer(&mut self) -> Result<String, SessionError> {
        if self.closed {
            return Err(SessionError::State("the session has ended"));
        }
        if !self.ready {
            return Err(SessionError::State(
                "an ICE restart before the session was ready",
            ));
        }
        // A restart whose answer never came is abandoned for this one.
        self.pending = None;
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().ok_or(SessionError::State("nothing to offer"))?;
        self.pending = Some(pending);
        self.drain();
        Ok(offer.to_sdp_string())
    }

    /// Whether ICE reported the path lost and has not found one since.
    pub fn is_path_lost(&self) -> bool {
        self.ice_lost
    }

    /// The relay this session allocates on (`None`: no relay).
    pub fn relay_server(&self) -> Option<&relay::RelayServer> {
        self.relay_server.as_ref()
    }

    /// How the TURN allocation is doing (`None`: no relay).
    pub fn relay_state(&self) -> Option<relay::RelayState> {
        self.turn.as_ref().map(relay::TurnLink::state)
    }

    /// Through a relay, asks for permissions to the peer's candidates right away.
    fn permit_candidates(&mut self, sdp: &str) {
        if let Some(t) = self.turn.as_mut() {
            t.permit(self.now, relay::candidate_ips(sdp));
            let now = self.now;
            self.poll_turn(now);
        }
    }

    fn poll_turn(&mut self, now: Instant) {
        let mut out = Vec::new();
        if let Some(t) = self.turn.as_mut() {
            self.turn_timeout = t.poll(now, &mut out);
        }
        self.apply_link(out);
    }

    fn apply_link(&mut self, out: Vec<relay::LinkOutput>) {
        for o in out {
            match o {
                relay::LinkOutput::Transmit(to, contents) => {
                    if !self.closed {
                        self.transmits.push_back(Transmit {
                            source: self.socket_addr,
                            destination: to,
                            contents,
                        });
                    }
                }
                relay::LinkOutput::Reflexive(mapped) => {
                    // Behind a NAT the relay saw another address than ours: the peer may
                    // reach us there directly (both NATs open a hole with ICE's checks).
                    // Never with --relay-only: the peer must not learn this address.
                    tracing::debug!(%mapped, local = %self.socket_addr, "the relay saw us at");
                    if self.direct_candidates && mapped != self.socket_addr {
                        match Candidate::server_reflexive(mapped, self.socket_addr, "udp") {
                            Ok(c) => {
                                self.rtc.add_local_candidate(c);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot use the reflexive address")
                            }
                        }
                    }
                }
                relay::LinkOutput::Allocated(relayed) => {
                    self.relayed_addrs.push(relayed);
                    match Candidate::relayed(relayed, self.socket_addr, "udp") {
                        Ok(c) => {
                            self.rtc.add_local_candidate(c);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot use the relayed address"),
                    }
                }
            }
        }
    }

    /// This side's DTLS certificate fingerprint: put it in the handshake.
    pub fn local_fingerprint(&self) -> DtlsFingerprint {
        self.fp_local
    }

    /// The peer's fingerprint as the handshake authenticated it. Must be set before any SDP
    /// is applied.
    pub fn set_peer_fingerprint(&mut self, fp: DtlsFingerprint) {
        self.fp_peer = Some(fp);
    }

    /// Viewer: the offer (a receive-only video track and the control channel) to seal and send.
    pub fn create_offer(&mut self) -> Result<String, SessionError> {
        if self.fp_peer.is_none() {
            return Err(SessionError::State("no authenticated peer fingerprint yet"));
        }
        let mut api = self.rtc.sdp_api();
        self.video = Some(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
        api.add_channel(CONTROL_CHANNEL.to_owned());
        let (offer, pending) = api.apply().ok_or(SessionError::State("nothing to offer"))?;
        self.pending = Some(pending);
        self.drain();
        Ok(offer.to_sdp_string())
    }

    /// Host: applies the viewer's offer (already opened and checked by the sealed channel)
    /// and returns the answer to seal and send.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, SessionError> {
        if self.fp_peer.is_none() {
            return Err(SessionError::State("no authenticated peer fingerprint yet"));
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SessionError::Sdp(e.to_string()))?;
        self.permit_candidates(sdp);
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SessionError::Sdp(e.to_string()));
        self.drain();
        let answer = answer?.to_sdp_string();
        self.answered_codecs = codecs_in_sdp(&answer);
        Ok(answer)
    }

    /// Host, once it answered: the codecs the answer accepted for video, VP9 first. The same
    /// as [`SessionEvent::Ready`]'s `send_codecs` will say, but known before DTLS is up, so
    /// the host can get its encoder ready (and its first keyframe) while the transport connects.
    pub fn answered_codecs(&self) -> &[VideoCodec] {
        &self.answered_codecs
    }

    /// Viewer: applies the host's answer (already opened and checked by the sealed channel).
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), SessionError> {
        let pending = self
            .pending
            .take()
            .ok_or(SessionError::State("an answer with no offer pending"))?;
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SessionError::Sdp(e.to_string()))?;
        self.permit_candidates(sdp);
        let r = self
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SessionError::Sdp(e.to_string()));
        self.drain();
        r
    }

    /// A datagram arrived on the socket bound at `destination`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.now = now;
        if let Some(t) = self.turn.as_mut() {
            if t.is_from_server(source, destination) {
                let peers = t.receive(now, data);
                let relayed = t.relayed();
                self.poll_turn(now);
                if let Some(relayed) = relayed {
                    for (peer, bytes) in peers {
                        self.receive_one(now, peer, relayed, &bytes);
                    }
                }
                self.drain();
                return;
            }
        }
        self.receive_one(now, source, destination, data);
        self.drain();
    }

    fn receive_one(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Some(input) = udp_input(now, source, destination, data) else {
            return; // not STUN/DTLS/RTP: not for us
        };
        if self.rtc.accepts(&input) {
            let stun = data.first().is_some_and(|b| *b < 4); // RFC 7983
            if let Err(e) = self.rtc.handle_input(input) {
                self.fail(SessionError::Rtc(e.to_string()));
                return;
            }
            // A connectivity check may just have validated a held datagram's source.
            if stun && !self.early.is_empty() {
                self.retry_early(now);
            }
        } else if self.early.len() < MAX_EARLY_DATAGRAMS && !self.ready {
            // str0m takes DTLS only from a source an ICE check has validated. With several
            // candidate pairs the peer's first DTLS flight can beat the check that validates
            // its path; dropping it costs DTLS's 1 s retransmission timer. Hold a few, briefly.
            self.early
                .push_back((now, source, destination, data.to_vec()));
        }
    }

    /// Offers held datagrams again; keeps those still refused while they are young.
    fn retry_early(&mut self, now: Instant) {
        let held = std::mem::take(&mut self.early);
        for (at, source, destination, data) in held {
            if now.saturating_duration_since(at) > EARLY_DATAGRAM_LIFETIME {
                continue;
            }
            let Some(input) = udp_input(now, source, destination, &data) else {
                continue;
            };
            if self.rtc.accepts(&input) {
                if let Err(e) = self.rtc.handle_input(input) {
                    self.fail(SessionError::Rtc(e.to_string()));
                    return;
                }
            } else {
                self.early.push_back((at, source, destination, data));
            }
        }
    }

    /// Time passed; call at [`Session::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.turn_timeout.is_some_and(|t| t <= now) {
            self.poll_turn(now);
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(SessionError::Rtc(e.to_string()));
        }
        self.drain();
    }

    /// Sends a control message. Refused until the session is [`SessionEvent::Ready`].
    pub fn send_control(&mut self, msg: &ControlMessage) -> Result<(), SessionError> {
        let bytes = msg
            .encode()
            .map_err(|e| SessionError::Send(e.to_string()))?;
        self.send_control_bytes(&bytes)
    }

    /// Sends raw bytes on the control channel, as a misbehaving peer would (tests and fuzzing
    /// of the receiver). Refused until ready, like [`Session::send_control`].
    pub fn send_control_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if !self.ready {
            return Err(SessionError::State(
                "the session is not ready (fingerprints not yet verified)",
            ));
        }
        let id = self
            .control
            .ok_or(SessionError::State("no control channel"))?;
        let result = match self.rtc.channel(id) {
            Some(mut ch) => ch
                .write(true, bytes)
                .map(|_| ())
                .map_err(|e| SessionError::Send(e.to_string())),
            None => Err(SessionError::State("the control channel is closed")),
        };
        self.drain();
        result
    }

    /// Host: the codec video will be sent with (VP9 if the viewer offered it, else VP8).
    /// Known once DTLS is up (str0m announces media then).
    pub fn video_codec(&mut self) -> Option<VideoCodec> {
        self.video_codecs().first().copied()
    }

    /// Host: every codec the negotiated video track can carry, VP9 first (empty before DTLS
    /// is up, and on a receive-only side).
    pub fn video_codecs(&mut self) -> Vec<VideoCodec> {
        if !self.video_sends {
            return Vec::new();
        }
        let Some(writer) = self.video.and_then(|mid| self.rtc.writer(mid)) else {
            return Vec::new();
        };
        let has = |c: Codec| writer.payload_params().any(|p| p.spec().codec == c);
        [(Codec::Vp9, VideoCodec::Vp9), (Codec::Vp8, VideoCodec::Vp8)]
            .into_iter()
            .filter(|(c, _)| has(*c))
            .map(|(_, v)| v)
            .collect()
    }

    /// Host: sends one encoded frame (str0m packetizes it). Refused until ready.
    pub fn send_video(
        &mut self,
        now: Instant,
        codec: VideoCodec,
        time_90khz: u64,
        frame: &[u8],
    ) -> Result<(), SessionError> {
        if !self.ready {
            return Err(SessionError::State(
                "the session is not ready (fingerprints not yet verified)",
            ));
        }
        let mid = self.video.ok_or(SessionError::State("no video track"))?;
        let want = match codec {
            VideoCodec::Vp9 => Codec::Vp9,
            VideoCodec::Vp8 => Codec::Vp8,
        };
        let result = match self.rtc.writer(mid) {
            Some(writer) => {
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == want)
                    .map(|p| p.pt());
                match pt {
                    Some(pt) => writer
                        .write(
                            pt,
                            now,
                            MediaTime::new(time_90khz, Frequency::NINETY_KHZ),
                            frame.to_vec(),
                        )
                        .map_err(|e| SessionError::Send(e.to_string())),
                    None => Err(SessionError::State("the peer did not accept this codec")),
                }
            }
            None => Err(SessionError::State("the video track is not sending")),
        };
        self.drain();
        result
    }

    /// Viewer: asks the host for a keyframe (picture loss).
    pub fn request_keyframe(&mut self) -> Result<(), SessionError> {
        let mid = self.video.ok_or(SessionError::State("no video track"))?;
        let result = match self.rtc.writer(mid) {
            Some(mut w) => w
                .request_keyframe(None, KeyframeRequestKind::Pli)
                .map_err(|e| SessionError::Send(e.to_string())),
            None => Err(SessionError::State("no video track")),
        };
        self.drain();
        result
    }

    /// Ends the session.
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.drain();
        if !self.closed {
            self.release_relay();
            self.closed = true;
            self.events.push_back(SessionEvent::Closed(None));
        }
    }

    /// The next packet to send. Call until `None` after every `handle_*`/`send_*`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event. Call until `None` after every `handle_*`/`send_*`.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When to call [`Session::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        match self.turn_timeout {
            Some(t) => t.min(self.timeout),
            None => self.timeout,
        }
    }

    /// Whether the session may carry application data.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Gives the relay allocation back (the relay would otherwise hold it, and count it
    /// against the credential's quota, until it expires). Before `closed` is set: the
    /// release is the last datagram this session sends.
    fn release_relay(&mut self) {
        if let Some(t) = self.turn.as_mut() {
            let mut out = Vec::new();
            t.release(self.now, &mut out);
            self.turn = None;
            self.apply_link(out);
        }
    }

    fn fail(&mut self, e: SessionError) {
        self.rtc.disconnect();
        if !self.closed {
            self.release_relay();
            self.closed = true;
            self.ready = false;
            self.events.push_back(SessionEvent::Closed(Some(e)));
        }
    }

    /// Checks the DTLS peer against the authenticated fingerprints (DESIGN.md §4).
    fn bind(&mut self) -> Result<(), SessionError> {
        let expected = self
            .fp_peer
            .ok_or(SessionError::State("no authenticated peer fingerprint"))?;
        let api = self.rtc.direct_api();
        let got = api.remote_dtls_fingerprint().and_then(to_fp);
        let local = to_fp(api.local_dtls_fingerprint());
        match got {
            Some(fp) if fp == expected && local == Some(self.fp_local) => Ok(()),
            other => Err(SessionError::FingerprintMismatch {
                expected,
                got: other.map_or_else(|| "none".to_owned(), |f| f.to_sdp()),
            }),
        }
    }

    /// Drains str0m to its next timeout (the single-mutation invariant).
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if self.closed {
                        continue;
                    }
                    let relayed = self.turn.as_ref().and_then(relay::TurnLink::relayed);
                    if relayed != Some(t.source) && !self.host_addrs.contains(&t.source) {
                        // From a relayed candidate of an allocation since replaced: there
                        // is no way to send it any more.
                        continue;
                    }
                    if relayed == Some(t.source) {
                        // From our relayed candidate: through the TURN server.
                        let mut out = Vec::new();
                        if let Some(link) = self.turn.as_mut() {
                            link.send(self.now, t.destination, &t.contents, &mut out);
                        }
                        self.apply_link(out);
                        self.poll_turn(self.now);
                    } else {
                        self.transmits.push_back(Transmit {
                            source: t.source,
                            destination: t.destination,
                            contents: t.contents.to_vec(),
                        });
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    self.fail(SessionError::Rtc(e.to_string()));
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        if self.closed {
            return;
        }
        match e {
            Event::Connected => match self.bind() {
                Ok(()) => {
                    self.dtls_ok = true;
                    self.maybe_ready();
                }
                Err(err) => self.fail(err),
            },
            Event::ChannelOpen(id, label) if label == CONTROL_CHANNEL => {
                self.control = Some(id);
                self.maybe_ready();
            }
            Event::ChannelData(d) if Some(d.id) == self.control && self.ready => {
                match ControlMessage::decode(&d.data) {
                    Ok(m) => self.events.push_back(SessionEvent::Control(m)),
                    Err(err) => self.events.push_back(SessionEvent::Malformed(err)),
                }
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                self.video = Some(m.mid);
                self.video_sends = matches!(m.direction, Direction::SendOnly | Direction::SendRecv);
            }
            Event::MediaData(d) if self.ready && Some(d.mid) == self.video => {
                let codec = match d.params.spec().codec {
                    Codec::Vp9 => Some(VideoCodec::Vp9),
                    Codec::Vp8 => Some(VideoCodec::Vp8),
                    _ => None,
                };
                if let Some(codec) = codec {
                    self.events.push_back(SessionEvent::Video {
                        codec,
                        time_90khz: d.time.rebase(Frequency::NINETY_KHZ).numer(),
                        contiguous: d.contiguous,
                        data: d.data.to_vec(),
                    });
                }
            }
            Event::KeyframeRequest(_) if self.ready => {
                self.events.push_back(SessionEvent::KeyframeRequested)
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if !self.ice_lost => {
                self.ice_lost = true;
                self.events.push_back(SessionEvent::Disconnected);
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.ice_lost => {
                self.ice_lost = false;
                self.events.push_back(SessionEvent::Reconnected);
            }
            Event::EgressBitrateEstimate(
                BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
            ) => {
                let kbps = u32::try_from(estimate.as_u64() / 1000).unwrap_or(u32::MAX);
                self.events.push_back(SessionEvent::Bitrate(kbps));
            }
            Event::PeerStats(p) => {
                let pair = p.selected_candidate_pair.as_ref();
                let path = pair.map(|c| {
                    if self.relayed_addrs.contains(&c.local.addr) {
                        Path::Relay
                    } else {
                        Path::Direct
                    }
                });
                self.events.push_back(SessionEvent::Link(LinkStats {
                    rtt: pair.and_then(|c| c.current_round_trip_time).or(p.rtt),
                    path,
                    bytes_rx: p.peer_bytes_rx,
                    bytes_tx: p.peer_bytes_tx,
                }));
            }
            _ => {}
        }
    }

    fn maybe_ready(&mut self) {
        if self.dtls_ok && self.control.is_some() && !self.ready {
            self.ready = true;
            let send_codecs = self.video_codecs();
            self.events.push_back(SessionEvent::Ready { send_codecs });
        }
    }
}
