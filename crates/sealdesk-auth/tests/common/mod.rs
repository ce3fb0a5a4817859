//! An in-memory, deterministic harness between viewer and host state machines.
//!
//! Messages pass through an `Adversary` callback that sees every message by step name and
//! may rewrite, drop or replace it — the malicious signaling server of DESIGN.md §10.3.
//! Time is simulated (`Instant` arithmetic from one fixed base), randomness is a seeded RNG.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness; each test file uses part of it"
)]

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealdesk_auth::attended::host::{AttendedHost, PendingConsent};
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::SealedSignaling;
use sealdesk_auth::session::{Established, ExpectAccept};
use sealdesk_auth::trust::{PairedDevice, PairingRegistry, Permissions, PinnedHost};
use sealdesk_auth::unattended;
use sealdesk_auth::{HandshakeError, IdentityKey};
use sealdesk_proto::RoutingNumber;

/// One fixed base instant for simulated time.
#[allow(
    clippy::disallowed_methods,
    reason = "simulated time needs one real Instant to offset from"
)]
pub fn t0() -> Instant {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

pub const HOST_R: u64 = 123_456_789;

pub fn routing() -> RoutingNumber {
    RoutingNumber::new(HOST_R).unwrap()
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Which message is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    A1,
    A2,
    A3,
    B1,
    B2,
    B3,
}

/// What an adversary did to a message.
pub enum Verdict {
    Deliver(Vec<u8>),
    Drop,
}

pub struct Devices {
    pub host: IdentityKey,
    pub viewer: IdentityKey,
    pub fp_h: DtlsFingerprint,
    pub fp_v: DtlsFingerprint,
}

impl Devices {
    pub fn new() -> Self {
        Self {
            host: IdentityKey::from_seed(&[0x11; 32]),
            viewer: IdentityKey::from_seed(&[0x22; 32]),
            fp_h: DtlsFingerprint([0xaa; 32]),
            fp_v: DtlsFingerprint([0xbb; 32]),
        }
    }
}

/// Everything observable after one attended run.
pub struct AttendedRun {
    pub viewer: Result<ExpectAccept, HandshakeError>,
    /// `None` when the host never got an A3 (the viewer aborted earlier or it was dropped).
    pub host: Option<Result<PendingConsent, HandshakeError>>,
    /// The A1 result on the host, when it failed there.
    pub host_a1: Option<HandshakeError>,
    pub wire: Vec<(Step, Vec<u8>)>,
}

/// Both sides of a finished session.
#[derive(Debug)]
pub struct Both {
    pub viewer: Established,
    pub viewer_sealed: SealedSignaling,
    pub host: Established,
    pub host_sealed: SealedSignaling,
}

impl AttendedRun {
    /// The host user approves; the viewer gets the sealed Accept. `Ok` only if both ends
    /// released their session.
    pub fn approve(self) -> Result<Both, String> {
        let waiting = self.viewer.map_err(|e| format!("viewer: {e}"))?;
        let pending = self
            .host
            .ok_or_else(|| "host: no A3".to_owned())?
            .map_err(|e| format!("host: {e}"))?;
        let (host, host_sealed, accept) = pending.approve(Permissions::DEFAULT_PAIRED);
        match waiting.handle(&accept) {
            Ok(Ok((viewer, viewer_sealed))) => Ok(Both {
                viewer,
                viewer_sealed,
                host,
                host_sealed,
            }),
            Ok(Err(_)) => Err("viewer: accept did not open".to_owned()),
            Err(e) => Err(format!("viewer: {e}")),
        }
    }

    pub fn viewer_err(&self) -> Option<&HandshakeError> {
        self.viewer.as_ref().err()
    }

    pub fn host_err(&self) -> Option<&HandshakeError> {
        self.host_a1
            .as_ref()
            .or(self.host.as_ref().and_then(|h| h.as_ref().err()))
    }
}

/// Runs one attended handshake: the viewer types `typed`, the host holds `host`.
#[allow(
    clippy::too_many_arguments,
    reason = "a test harness entry point; each input varies across cases"
)]
pub fn attended_run(
    d: &Devices,
    host: &mut AttendedHost,
    typed: &OneTimeCode,
    attempts: &mut ViewerAttempts,
    now: Instant,
    seed: u64,
    viewer_offer: &Offer,
    adversary: &mut dyn FnMut(Step, Vec<u8>) -> Verdict,
) -> AttendedRun {
    let mut r = rng(seed);
    let mut wire = Vec::new();
    let (v, a1) = match viewer::start(typed, viewer_offer, d.fp_v, attempts, now, &mut r) {
        Ok(x) => x,
        Err(e) => {
            return AttendedRun {
                viewer: Err(e),
                host: None,
                host_a1: None,
                wire,
            }
        }
    };
    let a1 = match adversary(Step::A1, a1) {
        Verdict::Deliver(b) => b,
        Verdict::Drop => {
            return AttendedRun {
                viewer: Err(HandshakeError::UnexpectedMessage("A1 dropped")),
                host: None,
                host_a1: None,
                wire,
            }
        }
    };
    wire.push((Step::A1, a1.clone()));
    let (h_state, a2) = match host.handle_a1(now, &a1, &d.host, "office pc", d.fp_h, &mut r) {
        Ok(x) => x,
        Err(e) => {
            return AttendedRun {
                viewer: Err(HandshakeError::UnexpectedMessage("no A2")),
                host: None,
                host_a1: Some(e),
                wire,
            }
        }
    };
    let a2 = match adversary(Step::A2, a2) {
        Verdict::Deliver(b) => b,
        Verdict::Drop => {
            host.abandon(h_state);
            return AttendedRun {
                viewer: Err(HandshakeError::UnexpectedMessage("A2 dropped")),
                host: None,
                host_a1: None,
                wire,
            };
        }
    };
    wire.push((Step::A2, a2.clone()));
    let (v_est, a3) = match v.handle_a2(&a2, &d.viewer, "alice laptop", attempts, now) {
        Ok(x) => x,
        Err(e) => {
            // The viewer tells the host (as the real shell does); the host ends the run.
            if host.handle_abort(&h_state, &e.abort_message()).is_none() {
                host.abandon(h_state);
            }
            return AttendedRun {
                viewer: Err(e),
                host: None,
                host_a1: None,
                wire,
            };
        }
    };
    let a3 = match adversary(Step::A3, a3) {
        Verdict::Deliver(b) => b,
        Verdict::Drop => {
            host.abandon(h_state);
            return AttendedRun {
                viewer: Ok(v_est),
                host: None,
                host_a1: None,
                wire,
            };
        }
    };
    wire.push((Step::A3, a3.clone()));
    let h = host.handle_a3(now, h_state, &a3);
    AttendedRun {
        viewer: Ok(v_est),
        host: Some(h),
        host_a1: None,
        wire,
    }
}

pub fn honest(_: Step, b: Vec<u8>) -> Verdict {
    Verdict::Deliver(b)
}

/// A host with a fresh code drawn from `seed`.
pub fn new_host(seed: u64, now: Instant) -> AttendedHost {
    AttendedHost::new(
        OneTimeCode::draw(routing(), &mut rng(seed)),
        &Offer::default(),
        now,
    )
}

/// The code as the honest user types it.
pub fn typed(host: &AttendedHost) -> OneTimeCode {
    OneTimeCode::parse(&host.code().display()).unwrap()
}

/// A code with the same R and a different secret.
pub fn wrong_code(host: &AttendedHost) -> OneTimeCode {
    let s = (host.code().secret.value() + 1) % 100_000_000;
    OneTimeCode::parse(&format!("{HOST_R}{s:08}")).unwrap()
}

/// Asserts two established sides agree on everything that must match.
pub fn assert_agree(v: &Established, h: &Established) {
    assert_eq!(v.th_final, h.th_final);
    assert_eq!(v.fp_local, h.fp_peer);
    assert_eq!(v.fp_peer, h.fp_local);
    assert_eq!(v.suite, h.suite);
    assert_eq!(v.version, h.version);
    assert!(v.keys.sig_h2v.ct_eq(&h.keys.sig_h2v));
    assert!(v.keys.sig_v2h.ct_eq(&h.keys.sig_v2h));
    assert!(v.keys.chan_h2v.ct_eq(&h.keys.chan_h2v));
    assert!(v.keys.chan_v2h.ct_eq(&h.keys.chan_v2h));
}

/// A pairing registry holding the viewer with `perms`, and the viewer's pin of the host.
pub fn paired(d: &Devices, perms: Permissions, revoked: bool) -> (PairingRegistry, PinnedHost) {
    let mut reg = PairingRegistry::new();
    reg.pair(PairedDevice {
        key: d.viewer.public(),
        label: "alice laptop".into(),
        permissions: perms,
        added_at: 1_700_000_000,
        revoked,
    })
    .unwrap();
    let pin = PinnedHost {
        routing: routing(),
        key: d.host.public(),
        label: "office pc".into(),
        added_at: 1_700_000_000,
    };
    (reg, pin)
}

/// What the host returns for B3.
pub type HostB3 = Result<(Established, SealedSignaling, Vec<u8>), unattended::host::Rejected>;

/// A boxed adversary.
pub type Attack = Box<dyn FnMut(Step, Vec<u8>) -> Verdict>;

pub struct UnattendedRun {
    pub viewer: Result<ExpectAccept, HandshakeError>,
    pub host: Option<HostB3>,
    pub wire: Vec<(Step, Vec<u8>)>,
}

impl UnattendedRun {
    /// The viewer reads the host's answer. `Ok` only if both ends released their session.
    pub fn finish(self) -> Result<Both, String> {
        let waiting = self.viewer.map_err(|e| format!("viewer: {e}"))?;
        match self.host.ok_or_else(|| "host: no B3".to_owned())? {
            Ok((host, host_sealed, accept)) => match waiting.handle(&accept) {
                Ok(Ok((viewer, viewer_sealed))) => Ok(Both {
                    viewer,
                    viewer_sealed,
                    host,
                    host_sealed,
                }),
                Ok(Err(_)) => Err("viewer: accept did not open".to_owned()),
                Err(e) => Err(format!("viewer: {e}")),
            },
            Err(rej) => {
                // The viewer learns why, if the host could say so.
                let viewer_saw = match rej.notice {
                    Some(n) => match waiting.handle(&n) {
                        Err(e) => e.to_string(),
                        Ok(_) => "viewer accepted a refusal!".to_owned(),
                    },
                    None => "no notice".to_owned(),
                };
                Err(format!("host: {} | viewer: {viewer_saw}", rej.error))
            }
        }
    }
}

/// Runs one unattended handshake.
pub fn unattended_run(
    d: &Devices,
    host_key: &IdentityKey,
    registry: &PairingRegistry,
    pin: &PinnedHost,
    requested: Permissions,
    seed: u64,
    adversary: &mut dyn FnMut(Step, Vec<u8>) -> Verdict,
) -> UnattendedRun {
    let mut r = rng(seed);
    let mut wire = Vec::new();
    let offer = Offer::default();
    let (v, b1) = unattended::viewer::start(pin, &offer, d.fp_v, &mut r);
    let Verdict::Deliver(b1) = adversary(Step::B1, b1) else {
        return UnattendedRun {
            viewer: Err(HandshakeError::UnexpectedMessage("B1 dropped")),
            host: None,
            wire,
        };
    };
    wire.push((Step::B1, b1.clone()));
    let info = unattended::host::HostInfo {
        routing: routing(),
        identity: host_key,
        label: "office pc",
        offer: &offer,
    };
    let (h, b2) = match unattended::host::handle_b1(info, &b1, d.fp_h, &mut r) {
        Ok(x) => x,
        Err(e) => {
            return UnattendedRun {
                viewer: Err(HandshakeError::UnexpectedMessage("no B2")),
                host: Some(Err(e.into())),
                wire,
            }
        }
    };
    let Verdict::Deliver(b2) = adversary(Step::B2, b2) else {
        return UnattendedRun {
            viewer: Err(HandshakeError::UnexpectedMessage("B2 dropped")),
            host: None,
            wire,
        };
    };
    wire.push((Step::B2, b2.clone()));
    let (v_est, b3) = match v.handle_b2(&b2, &d.viewer, "alice laptop", requested) {
        Ok(x) => x,
        Err(e) => {
            return UnattendedRun {
                viewer: Err(e),
                host: None,
                wire,
            }
        }
    };
    let Verdict::Deliver(b3) = adversary(Step::B3, b3) else {
        return UnattendedRun {
            viewer: Ok(v_est),
            host: None,
            wire,
        };
    };
    wire.push((Step::B3, b3.clone()));
    let h_est = h.handle_b3(&b3, registry);
    UnattendedRun {
        viewer: Ok(v_est),
        host: Some(h_est),
        wire,
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
