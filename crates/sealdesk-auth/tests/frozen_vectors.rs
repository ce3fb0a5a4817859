//! Frozen vectors of sealdesk's own key schedule, transcripts and wire format.
//!
//! Each file in `tests/vectors/` lists every input of a run — identity seeds, the code,
//! labels, DTLS fingerprints, offers and *the exact random bytes each side drew, in order* —
//! and every output: each message on the wire, `TH_final`, the four session keys, the first
//! sealed messages and the safety number. This test replays the random bytes into our state
//! machines and requires byte-identical output, so any change to the protocol shows up here,
//! and a second implementation (the browser's, another language's) has a target to match.
//! See `tests/vectors/README.md` for the draw order.
//!
//! To regenerate after a deliberate protocol change: `SEALDESK_WRITE_VECTORS=1 cargo test
//! -p sealdesk-auth --test frozen_vectors`, and say why in the commit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by panicking"
)]

mod common;

use std::path::PathBuf;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore};
use sealdesk_auth::attended::host::AttendedHost;
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::safety::SafetyNumber;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::SealedKind;
use sealdesk_auth::session::Established;
use sealdesk_auth::trust::{PairedDevice, PairingRegistry, Permissions, PinnedHost};
use sealdesk_auth::{unattended, IdentityKey};
use serde_json::{json, Value};

/// Either records the bytes a seeded generator hands out, or replays recorded bytes
/// (and fails the test if the protocol asks for more or fewer).
enum VecRng {
    Record(Box<ChaCha20Rng>, Vec<u8>),
    Replay(Vec<u8>, usize),
}

impl VecRng {
    fn bytes(&self) -> Vec<u8> {
        match self {
            VecRng::Record(_, out) => out.clone(),
            VecRng::Replay(b, used) => {
                assert_eq!(
                    *used,
                    b.len(),
                    "the run drew fewer random bytes than recorded"
                );
                b.clone()
            }
        }
    }
}

impl RngCore for VecRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match self {
            VecRng::Record(r, out) => {
                r.fill_bytes(dest);
                out.extend_from_slice(dest);
            }
            VecRng::Replay(b, used) => {
                let end = *used + dest.len();
                assert!(
                    end <= b.len(),
                    "the run drew more random bytes than recorded"
                );
                dest.copy_from_slice(&b[*used..end]);
                *used = end;
            }
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for VecRng {}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn writing() -> bool {
    std::env::var_os("SEALDESK_WRITE_VECTORS").is_some()
}

fn rng_for(stored: Option<&Value>, key: &str, seed: u64) -> VecRng {
    match stored {
        Some(v) if !writing() => {
            VecRng::Replay(hex::decode(v["inputs"][key].as_str().unwrap()).unwrap(), 0)
        }
        _ => VecRng::Record(Box::new(ChaCha20Rng::seed_from_u64(seed)), Vec::new()),
    }
}

fn load(name: &str) -> Option<Value> {
    if writing() {
        return None;
    }
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some(serde_json::from_str(&text).unwrap())
}

fn keys(e: &Established) -> Value {
    json!({
        "th_final": hex::encode(e.th_final),
        "k_sig_h2v": hex::encode(e.keys.sig_h2v.expose()),
        "k_sig_v2h": hex::encode(e.keys.sig_v2h.expose()),
        "k_chan_h2v": hex::encode(e.keys.chan_h2v.expose()),
        "k_chan_v2h": hex::encode(e.keys.chan_v2h.expose()),
    })
}

/// Compares every field of `got` with the stored vector (or writes it).
fn check(name: &str, stored: Option<Value>, got: Value) {
    match stored {
        None => {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(dir().join(name), text).unwrap();
        }
        Some(want) => {
            for section in ["inputs", "messages", "outputs"] {
                let (w, g) = (&want[section], &got[section]);
                assert!(
                    w.is_object() && !w.as_object().unwrap().is_empty(),
                    "{name}: no {section}"
                );
                for (k, v) in w.as_object().unwrap() {
                    assert_eq!(
                        &g[k], v,
                        "{name}: {section}.{k} differs from the frozen vector"
                    );
                }
                assert_eq!(
                    w.as_object().unwrap().len(),
                    g.as_object().unwrap().len(),
                    "{name}: {section} fields"
                );
            }
        }
    }
}

const HOST_SEED: [u8; 32] = [0x48; 32];
const VIEWER_SEED: [u8; 32] = [0x56; 32];
const FP_H: DtlsFingerprint = DtlsFingerprint([0xf1; 32]);
const FP_V: DtlsFingerprint = DtlsFingerprint([0xf2; 32]);
const CODE: &str = "123 456 789 · 8765 4321";

#[test]
fn attended_v1() {
    let name = "attended-v1.json";
    let stored = load(name);
    let host_key = IdentityKey::from_seed(&HOST_SEED);
    let viewer_key = IdentityKey::from_seed(&VIEWER_SEED);
    let now = common::t0();
    let mut vr = rng_for(stored.as_ref(), "viewer_random", 1);
    let mut hr = rng_for(stored.as_ref(), "host_random", 2);
    let mut host = AttendedHost::new(OneTimeCode::parse(CODE).unwrap(), &Offer::default(), now);
    let typed = OneTimeCode::parse(CODE).unwrap();
    let mut tries = ViewerAttempts::new();
    let (v, a1) = viewer::start(&typed, &Offer::default(), FP_V, &mut tries, now, &mut vr).unwrap();
    let (h, a2) = host
        .handle_a1(now, &a1, &host_key, "office pc", FP_H, &mut hr)
        .unwrap();
    let (waiting, a3) = v
        .handle_a2(&a2, &viewer_key, "alice laptop", &mut tries, now)
        .unwrap();
    let (host_est, mut host_sealed, accept) = host
        .handle_a3(now, h, &a3)
        .unwrap()
        .approve(Permissions::DEFAULT_PAIRED);
    let Ok(Ok((viewer_est, mut viewer_sealed))) = waiting.handle(&accept) else {
        panic!("accept")
    };
    common::assert_agree(&viewer_est, &host_est);
    let candidate = viewer_sealed
        .seal(
            SealedKind::Candidate,
            b"candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host",
        )
        .unwrap();
    assert_eq!(
        host_sealed.open(&candidate).unwrap().kind,
        SealedKind::Candidate
    );
    let got = json!({
        "description": "sealdesk/v1 attended handshake (SPAKE2 Ed25519 + key confirmation), suite 0x0001; see README.md",
        "inputs": {
            "host_identity_seed": hex::encode(HOST_SEED),
            "viewer_identity_seed": hex::encode(VIEWER_SEED),
            "code": CODE,
            "host_label": "office pc",
            "viewer_label": "alice laptop",
            "fp_h": hex::encode(FP_H.0),
            "fp_v": hex::encode(FP_V.0),
            "viewer_offer": {"versions": [1], "suites": [1, 2]},
            "host_offer": {"versions": [1], "suites": [1, 2]},
            "granted_permissions": Permissions::DEFAULT_PAIRED.bits(),
            "viewer_random": hex::encode(vr.bytes()),
            "host_random": hex::encode(hr.bytes()),
        },
        "messages": {
            "a1": hex::encode(&a1),
            "a2": hex::encode(&a2),
            "a3": hex::encode(&a3),
            "sealed_accept_h2v_seq1": hex::encode(&accept),
            "sealed_candidate_v2h_seq1": hex::encode(&candidate),
        },
        "outputs": keys(&host_est),
    });
    check(name, stored, got);
}

#[test]
fn unattended_v1() {
    let name = "unattended-v1.json";
    let stored = load(name);
    let host_key = IdentityKey::from_seed(&HOST_SEED);
    let viewer_key = IdentityKey::from_seed(&VIEWER_SEED);
    let routing = common::routing();
    let mut vr = rng_for(stored.as_ref(), "viewer_random", 3);
    let mut hr = rng_for(stored.as_ref(), "host_random", 4);
    let mut reg = PairingRegistry::new();
    reg.pair(PairedDevice {
        key: viewer_key.public(),
        label: "alice laptop".into(),
        permissions: Permissions::ALL,
        added_at: 0,
        revoked: false,
    })
    .unwrap();
    let pin = PinnedHost {
        routing,
        key: host_key.public(),
        label: "office pc".into(),
        added_at: 0,
    };
    let offer = Offer::default();
    let requested = Permissions::VIEW.union(Permissions::INPUT);
    let (v, b1) = unattended::viewer::start(&pin, &offer, FP_V, &mut vr);
    let info = unattended::host::HostInfo {
        routing,
        identity: &host_key,
        label: "office pc",
        offer: &offer,
    };
    let (h, b2) = unattended::host::handle_b1(info, &b1, FP_H, &mut hr).unwrap();
    let (waiting, b3) = v
        .handle_b2(&b2, &viewer_key, "alice laptop", requested)
        .unwrap();
    let (host_est, _host_sealed, accept) = h.handle_b3(&b3, &reg).unwrap();
    let Ok(Ok((viewer_est, _))) = waiting.handle(&accept) else {
        panic!("accept")
    };
    common::assert_agree(&viewer_est, &host_est);
    let got = json!({
        "description": "sealdesk/v1 unattended handshake (SIGMA-I, X25519 + Ed25519), suite 0x0001; see README.md",
        "inputs": {
            "host_identity_seed": hex::encode(HOST_SEED),
            "viewer_identity_seed": hex::encode(VIEWER_SEED),
            "host_routing_number": routing.get(),
            "host_label": "office pc",
            "viewer_label": "alice laptop",
            "requested_permissions": requested.bits(),
            "fp_h": hex::encode(FP_H.0),
            "fp_v": hex::encode(FP_V.0),
            "viewer_offer": {"versions": [1], "suites": [1, 2]},
            "host_offer": {"versions": [1], "suites": [1, 2]},
            "viewer_random": hex::encode(vr.bytes()),
            "host_random": hex::encode(hr.bytes()),
        },
        "messages": {
            "b1": hex::encode(&b1),
            "b2": hex::encode(&b2),
            "b3": hex::encode(&b3),
            "sealed_accept_h2v_seq1": hex::encode(&accept),
        },
        "outputs": keys(&host_est),
    });
    check(name, stored, got);
}

#[test]
fn safety_number_v1() {
    let name = "safety-number-v1.json";
    let stored = load(name);
    let a = IdentityKey::from_seed(&HOST_SEED).public();
    let b = IdentityKey::from_seed(&VIEWER_SEED).public();
    let n = SafetyNumber::of(&a, &b);
    let got = json!({
        "description": "Signal's numeric fingerprint (5200 × SHA-512) over 32-byte Ed25519 keys with stable id \"sealdesk/v1 safety-number\"",
        "inputs": {"key_a": hex::encode(a.as_bytes()), "key_b": hex::encode(b.as_bytes())},
        "messages": {"qr_text": n.qr_text()},
        "outputs": {"safety_number": n.digits()},
    });
    check(name, stored, got);
}

#[test]
fn a_changed_vector_is_detected() {
    // Positive control for `check`: a vector with one altered output must fail.
    if writing() {
        return;
    }
    let mut v = load("attended-v1.json").unwrap();
    let th = v["outputs"]["th_final"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if th.starts_with('0') { "1" } else { "0" },
        &th[1..]
    );
    v["outputs"]["th_final"] = json!(flipped);
    let result = std::panic::catch_unwind(|| {
        let got = load("attended-v1.json").unwrap();
        check("attended-v1.json", Some(v), got);
    });
    assert!(result.is_err());
}
