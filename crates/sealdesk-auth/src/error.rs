//! Why a handshake ended, in words a person can act on (STYLE.md §6).
//!
//! Variants are grouped as in rustls: malformed bytes ([`HandshakeError::Malformed`]),
//! a peer or network that misbehaved (tampering, wrong code, unknown key), and local
//! refusals (limits, expiry). None of them carries a secret.

use sealdesk_proto::RoutingNumber;

use crate::identity::DeviceFingerprint;
use crate::messages::{Abort, AbortReason};
use crate::trust::Permissions;
use crate::wire::DecodeError;

/// A handshake was refused or failed. Nothing was established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A message could not be parsed.
    #[error("a handshake message was malformed ({0}); the connection was closed")]
    Malformed(#[from] DecodeError),
    /// Key confirmation failed: the code was wrong, or a message was changed on the way.
    #[error("wrong code, or someone tampered with the connection ({})", attempts_text(*.attempts_left))]
    WrongCodeOrTampered {
        /// Runs this code (host) or this host number (viewer) still allows.
        attempts_left: u8,
    },
    /// The code is older than its 10-minute lifetime.
    #[error("this code has expired; ask for a new one")]
    CodeExpired,
    /// The code already let someone in.
    #[error("this code was already used; ask for a new one")]
    CodeUsed,
    /// The code was tried 3 times.
    #[error("this code was tried 3 times and is now locked; ask for a new one")]
    CodeExhausted,
    /// Another run with this code is in progress.
    #[error("another connection attempt with this code is in progress; try again in a minute")]
    Busy,
    /// The viewer already failed 3 runs against this host number.
    #[error("3 failed attempts to reach host {0}; wait 10 minutes or ask for a new code")]
    ViewerLockedOut(RoutingNumber),
    /// The first message was for a different host number.
    #[error("this code is for host {expected}, but the request named {got}")]
    WrongHost {
        /// Ours.
        expected: RoutingNumber,
        /// What the message said.
        got: RoutingNumber,
    },
    /// The two sides have no protocol version in common.
    #[error("no protocol version in common with the other device; update sealdesk on both")]
    NoCommonVersion,
    /// The two sides have no cipher suite in common.
    #[error("no cipher suite in common with the other device; check both configurations")]
    NoCommonSuite,
    /// The host did not choose the best option both sides support.
    #[error("the host's choice of protocol was downgraded — someone tampered with the connection")]
    Downgrade,
    /// An identity proof (signature or MAC) did not verify after keys were confirmed.
    #[error("the other device's identity proof is invalid — someone tampered with the connection")]
    BadIdentityProof,
    /// The host's key differs from the one pinned when the devices were paired.
    #[error("this host's identity changed — refusing to connect (pinned {pinned}, presented {presented})")]
    HostKeyChanged {
        /// The key we pinned.
        pinned: DeviceFingerprint,
        /// The key the host presented.
        presented: DeviceFingerprint,
    },
    /// No key is pinned for this host number: unattended access needs pairing first.
    #[error(
        "not paired with host {0}: pair once with the code it shows (`sealdesk pair connect CODE`)"
    )]
    NotPaired(RoutingNumber),
    /// The viewer's key is not in the host's pairing registry.
    #[error("device {0} is not paired with this host")]
    UnknownDevice(DeviceFingerprint),
    /// The viewer's pairing was revoked on the host.
    #[error("device {0}'s pairing was revoked on this host")]
    Revoked(DeviceFingerprint),
    /// The viewer asked for something its pairing does not allow.
    #[error("device {device} is not allowed to use {missing} on this host")]
    NotPermitted {
        /// The viewer.
        device: DeviceFingerprint,
        /// The permissions it lacks.
        missing: Permissions,
    },
    /// The peer's X25519 share was a low-order point.
    #[error("the other device sent an invalid key share — someone tampered with the connection")]
    InvalidKeyShare,
    /// A message came in the wrong state (replay, reflection or a confused peer).
    #[error("unexpected handshake message ({0}); the connection was closed")]
    UnexpectedMessage(&'static str),
    /// The host user refused the connection.
    #[error("the host's user declined the connection")]
    Declined,
    /// The other device ended the run and said why (unauthenticated: anyone on the path
    /// could have sent it, so it is reported as what the other side *says*).
    #[error("the other device ended the attempt, saying: {}", .0.text())]
    PeerAborted(AbortReason),
    /// The host refused after authenticating us, and said why.
    #[error("the host refused the connection: {0}")]
    RefusedByHost(String),
}

/// A peer's reason text, made safe to print: at most 200 characters, no control characters.
pub(crate) fn sanitize(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

impl From<crate::negotiate::NoCommon> for HandshakeError {
    fn from(n: crate::negotiate::NoCommon) -> Self {
        match n {
            crate::negotiate::NoCommon::Version => HandshakeError::NoCommonVersion,
            crate::negotiate::NoCommon::Suite => HandshakeError::NoCommonSuite,
        }
    }
}

/// A SPAKE2 message the `spake2` crate refused (`field` names it).
pub(crate) fn spake_error(e: spake2::Error, field: &'static str) -> HandshakeError {
    match e {
        spake2::Error::BadSide => {
            HandshakeError::UnexpectedMessage("SPAKE2 message from the wrong side")
        }
        _ => HandshakeError::Malformed(DecodeError::Invalid(field)),
    }
}

fn attempts_text(n: u8) -> String {
    match n {
        0 => "no attempts left; ask for a new code".to_owned(),
        1 => "1 attempt left".to_owned(),
        n => format!("{n} attempts left"),
    }
}

impl HandshakeError {
    /// Whether this failure must count against a code's or a host number's attempts.
    pub fn is_failed_confirmation(&self) -> bool {
        matches!(self, HandshakeError::WrongCodeOrTampered { .. })
    }

    /// What to tell the other side when a run ends with this error before keys are
    /// confirmed: send [`HandshakeError::abort_message`] so it need not wait for a timeout.
    pub fn abort_reason(&self) -> AbortReason {
        match self {
            HandshakeError::WrongCodeOrTampered { .. }
            | HandshakeError::Downgrade
            | HandshakeError::BadIdentityProof
            | HandshakeError::InvalidKeyShare => AbortReason::ConfirmationFailed,
            HandshakeError::CodeExpired => AbortReason::CodeExpired,
            HandshakeError::CodeUsed => AbortReason::CodeUsed,
            HandshakeError::CodeExhausted => AbortReason::CodeExhausted,
            HandshakeError::Busy => AbortReason::Busy,
            HandshakeError::WrongHost { .. } => AbortReason::WrongHost,
            HandshakeError::NoCommonVersion | HandshakeError::NoCommonSuite => {
                AbortReason::NoCommonProtocol
            }
            HandshakeError::Malformed(_) => AbortReason::Malformed,
            _ => AbortReason::Other,
        }
    }

    /// The abort message for this error (see [`HandshakeError::abort_reason`]).
    pub fn abort_message(&self) -> Vec<u8> {
        Abort::new(self.abort_reason()).encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        assert_eq!(
            HandshakeError::WrongCodeOrTampered { attempts_left: 2 }.to_string(),
            "wrong code, or someone tampered with the connection (2 attempts left)"
        );
        assert_eq!(
            HandshakeError::CodeExpired.to_string(),
            "this code has expired; ask for a new one"
        );
        let fp = DeviceFingerprint([0; 32]);
        assert!(HandshakeError::HostKeyChanged {
            pinned: fp,
            presented: fp
        }
        .to_string()
        .starts_with("this host's identity changed — refusing to connect"));
    }
}
