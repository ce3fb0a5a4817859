//! Sealed signaling (DESIGN.md §4): after a handshake, every SDP, ICE candidate, restart
//! and bye travels as `{kind, seq, AEAD(k_sig_dir, nonce = seq, aad = TH_final ‖ kind, body)}`.
//!
//! `seq` is strictly increasing per direction, so a replayed or reordered message is
//! refused; each direction has its own key, so a reflected message does not open. SDPs are
//! checked on both ways: ours must carry our authenticated fingerprint, the peer's must carry
//! exactly the peer's authenticated fingerprint and a complementary `a=setup`.
//!
//! A message that fails to open ([`SealError::Forged`], [`SealError::Replay`]) can be
//! injected by anyone on the path: drop it and go on. An authenticated message that breaks
//! the rules ([`SealError::Sdp`]) means the peer misbehaves: end the session.

use std::fmt;

use crate::crypto::{open, seal, Secret32};
use crate::messages::{decode_sealed, SealedWire, MAX_SEALED_CT};
use crate::negotiate::Suite;
use crate::sdp::{
    check_fingerprint, check_setup_answer, setup_of, DtlsFingerprint, SdpError, Setup,
};
use crate::session::{Established, Role};
use crate::wire::DecodeError;

/// The body of a bye sent when the host user declines.
pub const BYE_DECLINED: &[u8] = b"declined";
/// The most plaintext bytes of one sealed message.
pub const MAX_SEALED_BODY: usize = MAX_SEALED_CT - crate::crypto::AEAD_TAG_LEN;

/// What a sealed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedKind {
    /// Host → viewer: the session is allowed; body = granted permissions (u16 BE).
    Accept,
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// An ICE candidate line.
    Candidate,
    /// An ICE restart request.
    Restart,
    /// The session ends; body = a short reason.
    Bye,
}

impl SealedKind {
    const fn byte(self) -> u8 {
        match self {
            SealedKind::Accept => 1,
            SealedKind::Offer => 2,
            SealedKind::Answer => 3,
            SealedKind::Candidate => 4,
            SealedKind::Restart => 5,
            SealedKind::Bye => 6,
        }
    }

    const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => SealedKind::Accept,
            2 => SealedKind::Offer,
            3 => SealedKind::Answer,
            4 => SealedKind::Candidate,
            5 => SealedKind::Restart,
            6 => SealedKind::Bye,
            _ => return None,
        })
    }
}

/// A sealed message could not be sent or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not a sealed message.
    #[error("malformed sealed message: {0}")]
    Malformed(#[from] DecodeError),
    /// An unknown message kind.
    #[error("unknown sealed message kind {0}")]
    UnknownKind(u8),
    /// A sequence number not above the last accepted one.
    #[error("replayed or reordered signaling message (seq {seq}, last accepted {last}); dropped")]
    Replay {
        /// The message's number.
        seq: u64,
        /// The last accepted number.
        last: u64,
    },
    /// The message did not authenticate: forged, corrupted, reflected or from another session.
    #[error("a signaling message failed authentication (forged, altered or from another session); dropped")]
    Forged,
    /// An SDP that breaks the fingerprint or setup rules.
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// A message kind this side must not receive or send (e.g. a viewer sending Accept).
    #[error("a {0:?} message is not allowed in this direction")]
    WrongDirection(SealedKind),
    /// SDP bodies must be UTF-8.
    #[error("the SDP is not UTF-8")]
    NotUtf8,
    /// The body is larger than [`MAX_SEALED_BODY`].
    #[error("signaling message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A bye was sent or received: the channel is closed.
    #[error("the session has ended")]
    Closed,
    /// The sequence numbers are exhausted.
    #[error("too many signaling messages in one session")]
    Exhausted,
}

/// A message that opened and passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its kind.
    pub kind: SealedKind,
    /// Its sequence number.
    pub seq: u64,
    /// The plaintext body.
    pub body: Vec<u8>,
}

/// One session's sealed signaling channel, both directions.
pub struct SealedSignaling {
    role: Role,
    suite: Suite,
    send_key: Secret32,
    recv_key: Secret32,
    th_final: [u8; 32],
    fp_local: DtlsFingerprint,
    fp_peer: DtlsFingerprint,
    next_send: u64,
    last_recv: u64,
    local_offer_setup: Option<Setup>,
    remote_offer_setup: Option<Setup>,
    closed: bool,
}

impl fmt::Debug for SealedSignaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSignaling")
            .field("role", &self.role)
            .field("next_send", &self.next_send)
            .field("last_recv", &self.last_recv)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl SealedSignaling {
    pub(crate) fn new(est: &Established) -> Self {
        let (send_key, recv_key) = match est.role {
            Role::Host => (est.keys.sig_h2v.clone(), est.keys.sig_v2h.clone()),
            Role::Viewer => (est.keys.sig_v2h.clone(), est.keys.sig_h2v.clone()),
        };
        Self {
            role: est.role,
            suite: est.suite,
            send_key,
            recv_key,
            th_final: est.th_final,
            fp_local: est.fp_local,
            fp_peer: est.fp_peer,
            next_send: 1,
            last_recv: 0,
            local_offer_setup: None,
            remote_offer_setup: None,
            closed: false,
        }
    }

    fn aad(&self, kind: SealedKind) -> [u8; 33] {
        let mut aad = [0u8; 33];
        aad[..32].copy_from_slice(&self.th_final);
        aad[32] = kind.byte();
        aad
    }

    fn allowed_from(&self, sender: Role, kind: SealedKind) -> bool {
        kind != SealedKind::Accept || sender == Role::Host
    }

    /// Whether a bye was sent or received.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Seals a message to the peer. SDPs must carry our authenticated fingerprint.
    pub fn seal(&mut self, kind: SealedKind, body: &[u8]) -> Result<Vec<u8>, SealError> {
        if self.closed {
            return Err(SealError::Closed);
        }
        if body.len() > MAX_SEALED_BODY {
            return Err(SealError::TooLarge(body.len()));
        }
        if !self.allowed_from(self.role, kind) {
            return Err(SealError::WrongDirection(kind));
        }
        match kind {
            SealedKind::Offer | SealedKind::Answer => {
                let sdp = std::str::from_utf8(body).map_err(|_| SealError::NotUtf8)?;
                check_fingerprint(sdp, &self.fp_local)?;
                let setup = setup_of(sdp)?;
                if kind == SealedKind::Offer {
                    self.local_offer_setup = Some(setup);
                } else {
                    let offer = self
                        .remote_offer_setup
                        .ok_or(SdpError::SetupNotComplementary)?;
                    check_setup_answer(offer, setup)?;
                }
            }
            SealedKind::Bye => self.closed = true,
            _ => {}
        }
        let seq = self.next_send;
        self.next_send = seq.checked_add(1).ok_or(SealError::Exhausted)?;
        let ct = seal(self.suite, &self.send_key, seq, &self.aad(kind), body);
        Ok(SealedWire {
            kind: kind.byte(),
            seq,
            ct,
        }
        .encode())
    }

    /// Opens a message from the peer and applies every check before returning it.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Opened, SealError> {
        if self.closed {
            return Err(SealError::Closed);
        }
        let wire = decode_sealed(bytes)?;
        let kind = SealedKind::from_byte(wire.kind).ok_or(SealError::UnknownKind(wire.kind))?;
        if wire.seq <= self.last_recv {
            return Err(SealError::Replay {
                seq: wire.seq,
                last: self.last_recv,
            });
        }
        let body = open(
            self.suite,
            &self.recv_key,
            wire.seq,
            &self.aad(kind),
            &wire.ct,
        )
        .ok_or(SealError::Forged)?;
        let peer_role = match self.role {
            Role::Host => Role::Viewer,
            Role::Viewer => Role::Host,
        };
        // Authentic from here on: the sequence number is spent even if a check fails.
        self.last_recv = wire.seq;
        if !self.allowed_from(peer_role, kind) {
            return Err(SealError::WrongDirection(kind));
        }
        match kind {
            SealedKind::Offer | SealedKind::Answer => {
                let sdp = std::str::from_utf8(&body).map_err(|_| SealError::NotUtf8)?;
                check_fingerprint(sdp, &self.fp_peer)?;
                let setup = setup_of(sdp)?;
                if kind == SealedKind::Offer {
                    self.remote_offer_setup = Some(setup);
                } else {
                    let offer = self
                        .local_offer_setup
                        .ok_or(SdpError::SetupNotComplementary)?;
                    check_setup_answer(offer, setup)?;
                }
            }
            SealedKind::Bye => self.closed = true,
            _ => {}
        }
        Ok(Opened {
            kind,
            seq: wire.seq,
            body: body.to_vec(),
        })
    }

    /// The peer's authenticated DTLS fingerprint: the WebRTC stack's remote certificate
    /// must hash to exactly this before any media or data is enabled.
    pub fn fp_peer(&self) -> &DtlsFingerprint {
        &self.fp_peer
    }

    /// Our authenticated DTLS fingerprint.
    pub fn fp_local(&self) -> &DtlsFingerprint {
        &self.fp_local
    }
}
