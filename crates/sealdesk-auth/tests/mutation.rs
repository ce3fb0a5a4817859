//! Property: a signaling server that changes any byte of any handshake message gets
//! "abort", or both sides agree on both DTLS fingerprints and all keys — never two
//! sides that each think they share a session with the other but don't.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by panicking"
)]

mod common;

use common::*;
use proptest::prelude::*;
use sealdesk_auth::code::ViewerAttempts;
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::trust::Permissions;

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: prop::sample::Index, mask: u8 },
    Truncate { at: prop::sample::Index },
    Insert { at: prop::sample::Index, byte: u8 },
    Replace { with: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|with| Mutation::Replace { with }),
    ]
}

fn apply(m: &Mutation, mut b: Vec<u8>) -> Vec<u8> {
    match m {
        Mutation::Flip { at, mask } => {
            let i = at.index(b.len());
            b[i] ^= mask;
        }
        Mutation::Truncate { at } => b.truncate(at.index(b.len())),
        Mutation::Insert { at, byte } => b.insert(at.index(b.len() + 1), *byte),
        Mutation::Replace { with } => b = with.clone(),
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn attended_mutations_abort_or_agree(step in 0usize..3, m in mutation(), seed in 0u64..1000) {
        let target = [Step::A1, Step::A2, Step::A3][step];
        let d = Devices::new();
        let mut host = new_host(seed, t0());
        let code = typed(&host);
        let mut changed = false;
        let mut adversary = |s: Step, b: Vec<u8>| {
            if s == target {
                let out = apply(&m, b.clone());
                changed = out != b;
                Verdict::Deliver(out)
            } else {
                Verdict::Deliver(b)
            }
        };
        let run = attended_run(&d, &mut host, &code, &mut ViewerAttempts::new(), t0(), seed, &Offer::default(), &mut adversary);
        match run.approve() {
            Ok(both) => {
                assert_agree(&both.viewer, &both.host);
                prop_assert_eq!(both.viewer.fp_local, d.fp_v);
                prop_assert_eq!(both.viewer.fp_peer, d.fp_h);
                prop_assert_eq!(both.viewer.peer.key, d.host.public());
                prop_assert_eq!(both.host.peer.key, d.viewer.public());
                prop_assert!(!changed, "a changed message was accepted");
            }
            Err(_) => prop_assert!(changed, "an unchanged run failed"),
        }
    }

    #[test]
    fn unattended_mutations_abort_or_agree(step in 0usize..3, m in mutation(), seed in 0u64..1000) {
        let target = [Step::B1, Step::B2, Step::B3][step];
        let d = Devices::new();
        let (reg, pin) = paired(&d, Permissions::ALL, false);
        let mut changed = false;
        let mut adversary = |s: Step, b: Vec<u8>| {
            if s == target {
                let out = apply(&m, b.clone());
                changed = out != b;
                Verdict::Deliver(out)
            } else {
                Verdict::Deliver(b)
            }
        };
        let run = unattended_run(&d, &d.host, &reg, &pin, Permissions::VIEW, seed, &mut adversary);
        match run.finish() {
            Ok(both) => {
                assert_agree(&both.viewer, &both.host);
                prop_assert_eq!(both.viewer.fp_local, d.fp_v);
                prop_assert_eq!(both.viewer.fp_peer, d.fp_h);
                prop_assert!(!changed, "a changed message was accepted");
            }
            Err(_) => prop_assert!(changed, "an unchanged run failed"),
        }
    }

    #[test]
    fn sealed_mutations_never_open(m in mutation(), seed in 0u64..1000) {
        let d = Devices::new();
        let mut host = new_host(seed, t0());
        let code = typed(&host);
        let run = attended_run(&d, &mut host, &code, &mut ViewerAttempts::new(), t0(), seed, &Offer::default(), &mut honest);
        let mut both = run.approve().unwrap();
        let msg = both.viewer_sealed.seal(sealdesk_auth::sealed::SealedKind::Candidate, b"candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host").unwrap();
        let bad = apply(&m, msg.clone());
        if bad != msg {
            prop_assert!(both.host_sealed.open(&bad).is_err());
        }
        // The genuine message still opens afterwards: a forgery spends nothing.
        prop_assert!(both.host_sealed.open(&msg).is_ok());
    }
}
