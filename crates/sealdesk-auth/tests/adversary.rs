//! The malicious signaling server of DESIGN.md §10.3, in memory and deterministic.
//!
//! Every attack must end the handshake before either side releases a session (no
//! `Established` on either end), and each case has a positive control: the same run
//! without the attack succeeds, so a case cannot pass because the harness is broken.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by panicking"
)]

mod common;

use common::*;
use sealdesk_auth::code::{ViewerAttempts, CODE_LIFETIME, RUN_TIMEOUT};
use sealdesk_auth::messages::{decode, Message};
use sealdesk_auth::negotiate::{Offer, Suite};
use sealdesk_auth::sdp::{DtlsFingerprint, SdpError};
use sealdesk_auth::sealed::{SealError, SealedKind};
use sealdesk_auth::trust::Permissions;
use sealdesk_auth::{HandshakeError, IdentityKey};

const EVIL_FP: DtlsFingerprint = DtlsFingerprint([0xee; 32]);

/// Rewrites one message at `step` through its decoded form.
fn rewrite(step: Step, f: impl Fn(&mut Message)) -> impl FnMut(Step, Vec<u8>) -> Verdict {
    move |s, bytes| {
        if s != step {
            return Verdict::Deliver(bytes);
        }
        let mut m = decode(&bytes).unwrap();
        f(&mut m);
        let out = m.encode();
        assert_ne!(out, bytes, "the attack must change the message");
        Verdict::Deliver(out)
    }
}

fn honest_attended(seed: u64) -> Both {
    let d = Devices::new();
    let mut host = new_host(seed, t0());
    let code = typed(&host);
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        seed,
        &Offer::default(),
        &mut honest,
    );
    run.approve().unwrap()
}

#[test]
fn honest_attended_run_agrees_on_everything() {
    let both = honest_attended(1);
    assert_agree(&both.viewer, &both.host);
    let d = Devices::new();
    assert_eq!(both.viewer.fp_local, d.fp_v);
    assert_eq!(both.viewer.fp_peer, d.fp_h);
    assert_eq!(both.viewer.peer.key, d.host.public());
    assert_eq!(both.host.peer.key, d.viewer.public());
    assert_eq!(both.viewer.peer.label, "office pc");
    assert_eq!(both.host.peer.label, "alice laptop");
    assert_eq!(both.viewer.suite, Suite::ChaCha20Poly1305);
    assert_eq!(both.viewer.permissions, Permissions::DEFAULT_PAIRED);
}

#[test]
fn fingerprint_swap_in_a1_aborts_both_sides() {
    let d = Devices::new();
    let mut host = new_host(2, t0());
    let code = typed(&host);
    let mut attack = rewrite(Step::A1, |m| {
        if let Message::A1(a1) = m {
            a1.fp_v = EVIL_FP;
        }
    });
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        2,
        &Offer::default(),
        &mut attack,
    );
    assert!(
        matches!(
            run.viewer_err(),
            Some(HandshakeError::WrongCodeOrTampered { .. })
        ),
        "{:?}",
        run.viewer_err()
    );
    assert!(run.host.is_none(), "the host never saw a valid A3");
    assert!(run.approve().is_err());
}

#[test]
fn fingerprint_swap_in_a2_aborts_both_sides() {
    let d = Devices::new();
    let mut host = new_host(3, t0());
    let code = typed(&host);
    let mut attack = rewrite(Step::A2, |m| {
        if let Message::A2(a2) = m {
            a2.fp_h = EVIL_FP;
        }
    });
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        3,
        &Offer::default(),
        &mut attack,
    );
    assert!(matches!(
        run.viewer_err(),
        Some(HandshakeError::WrongCodeOrTampered { .. })
    ));
    assert!(run.host.is_none());
}

#[test]
fn any_field_of_a2_or_a3_changed_aborts() {
    // Positive control first: the harness completes without tampering.
    honest_attended(4);
    type Edit = Box<dyn Fn(&mut Message)>;
    let fields: Vec<(Step, Edit)> = vec![
        (
            Step::A1,
            Box::new(|m| {
                if let Message::A1(a) = m {
                    a.n_v[0] ^= 1
                }
            }),
        ),
        (
            Step::A1,
            Box::new(|m| {
                if let Message::A1(a) = m {
                    a.x[5] ^= 1
                }
            }),
        ),
        (
            Step::A2,
            Box::new(|m| {
                if let Message::A2(a) = m {
                    a.n_h[0] ^= 1
                }
            }),
        ),
        (
            Step::A2,
            Box::new(|m| {
                if let Message::A2(a) = m {
                    a.y[7] ^= 1
                }
            }),
        ),
        (
            Step::A2,
            Box::new(|m| {
                if let Message::A2(a) = m {
                    a.id_h[3] ^= 1
                }
            }),
        ),
        (
            Step::A2,
            Box::new(|m| {
                if let Message::A2(a) = m {
                    a.conf_h[0] ^= 1
                }
            }),
        ),
        (
            Step::A3,
            Box::new(|m| {
                if let Message::A3(a) = m {
                    a.id_v[0] ^= 1
                }
            }),
        ),
        (
            Step::A3,
            Box::new(|m| {
                if let Message::A3(a) = m {
                    a.conf_v[31] ^= 1
                }
            }),
        ),
    ];
    for (i, (step, f)) in fields.into_iter().enumerate() {
        let d = Devices::new();
        let mut host = new_host(40 + i as u64, t0());
        let code = typed(&host);
        let mut attack = rewrite(step, f);
        let run = attended_run(
            &d,
            &mut host,
            &code,
            &mut ViewerAttempts::new(),
            t0(),
            4,
            &Offer::default(),
            &mut attack,
        );
        assert!(
            run.approve().is_err(),
            "tampering {step:?} (case {i}) must abort"
        );
    }
}

#[test]
fn wrong_code_aborts_and_spends_one_attempt() {
    let d = Devices::new();
    let mut host = new_host(5, t0());
    let wrong = wrong_code(&host);
    let mut tries = ViewerAttempts::new();
    let run = attended_run(
        &d,
        &mut host,
        &wrong,
        &mut tries,
        t0(),
        5,
        &Offer::default(),
        &mut honest,
    );
    assert_eq!(
        run.viewer_err(),
        Some(&HandshakeError::WrongCodeOrTampered { attempts_left: 2 })
    );
    assert_eq!(
        run.viewer_err().unwrap().to_string(),
        "wrong code, or someone tampered with the connection (2 attempts left)"
    );
    assert_eq!(host.attempts_left(), 2);
    // Positive control: the right code still works on the same host.
    let right = typed(&host);
    let run = attended_run(
        &d,
        &mut host,
        &right,
        &mut tries,
        t0(),
        6,
        &Offer::default(),
        &mut honest,
    );
    run.approve().unwrap();
}

#[test]
fn an_attacker_posing_as_viewer_spends_attempts_on_the_host() {
    // The attacker sends A1 with a guess, gets A2, cannot confirm, and sends a forged A3.
    let d = Devices::new();
    let mut host = new_host(7, t0());
    let mut r = rng(70);
    for left in [2u8, 1, 0] {
        let guess = wrong_code(&host);
        let (_v, a1) = sealdesk_auth::attended::viewer::start(
            &guess,
            &Offer::default(),
            EVIL_FP,
            &mut ViewerAttempts::new(),
            t0(),
            &mut r,
        )
        .unwrap();
        let (state, _a2) = host
            .handle_a1(t0(), &a1, &d.host, "office pc", d.fp_h, &mut r)
            .unwrap();
        let forged_a3 = sealdesk_auth::messages::A3 {
            id_v: vec![0; 150],
            conf_v: [0; 32],
        }
        .encode();
        let err = host.handle_a3(t0(), state, &forged_a3).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::WrongCodeOrTampered {
                attempts_left: left
            }
        );
    }
    // The 4th try, now with the right code, fails: the code is locked.
    let code = typed(&host);
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        8,
        &Offer::default(),
        &mut honest,
    );
    assert_eq!(run.host_a1, Some(HandshakeError::CodeExhausted));
    assert!(run.approve().is_err());
}

#[test]
fn fourth_try_with_the_right_code_fails() {
    let d = Devices::new();
    let mut host = new_host(9, t0());
    let wrong = wrong_code(&host);
    for i in 0..3 {
        // Separate viewer records: a different viewer device each time.
        let run = attended_run(
            &d,
            &mut host,
            &wrong,
            &mut ViewerAttempts::new(),
            t0(),
            90 + i,
            &Offer::default(),
            &mut honest,
        );
        assert!(matches!(
            run.viewer_err(),
            Some(HandshakeError::WrongCodeOrTampered { .. })
        ));
    }
    let code = typed(&host);
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        99,
        &Offer::default(),
        &mut honest,
    );
    assert_eq!(run.host_a1, Some(HandshakeError::CodeExhausted));
    assert_eq!(
        HandshakeError::CodeExhausted.to_string(),
        "this code was tried 3 times and is now locked; ask for a new one"
    );
}

#[test]
fn expired_code_is_refused() {
    let d = Devices::new();
    let mut host = new_host(10, t0());
    let code = typed(&host);
    let late = t0() + CODE_LIFETIME;
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        late,
        10,
        &Offer::default(),
        &mut honest,
    );
    assert_eq!(run.host_a1, Some(HandshakeError::CodeExpired));
    // Positive control: one second earlier works.
    let mut host = new_host(10, t0());
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        late - secs(1),
        10,
        &Offer::default(),
        &mut honest,
    );
    run.approve().unwrap();
}

#[test]
fn a_code_lets_in_only_one_session() {
    let d = Devices::new();
    let mut host = new_host(11, t0());
    let code = typed(&host);
    assert!(!host.is_finished(t0()));
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        11,
        &Offer::default(),
        &mut honest,
    );
    let first = run.wire.clone();
    run.approve().unwrap();
    assert!(host.is_finished(t0()), "a used code is finished");
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        12,
        &Offer::default(),
        &mut honest,
    );
    assert_eq!(run.host_a1, Some(HandshakeError::CodeUsed));
    // Replaying the first session's A1 verbatim is refused the same way.
    let err = host
        .handle_a1(
            t0(),
            &first[0].1,
            &d.host,
            "office pc",
            d.fp_h,
            &mut rng(13),
        )
        .unwrap_err();
    assert_eq!(err, HandshakeError::CodeUsed);
}

#[test]
fn two_first_messages_in_parallel() {
    let d = Devices::new();
    let mut host = new_host(14, t0());
    let code = typed(&host);
    let mut r = rng(140);
    let mut tries = ViewerAttempts::new();
    let (v1, a1_first) = sealdesk_auth::attended::viewer::start(
        &code,
        &Offer::default(),
        d.fp_v,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let (_v2, a1_second) = sealdesk_auth::attended::viewer::start(
        &code,
        &Offer::default(),
        EVIL_FP,
        &mut ViewerAttempts::new(),
        t0(),
        &mut r,
    )
    .unwrap();
    let (state, a2) = host
        .handle_a1(t0(), &a1_first, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap();
    let err = host
        .handle_a1(t0(), &a1_second, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap_err();
    assert_eq!(err, HandshakeError::Busy);
    assert_eq!(
        host.attempts_left(),
        2,
        "a refused parallel run spends nothing"
    );
    // The first run completes undisturbed.
    let (waiting, a3) = v1
        .handle_a2(&a2, &d.viewer, "alice laptop", &mut tries, t0())
        .unwrap();
    let pending = host.handle_a3(t0(), state, &a3).unwrap();
    let (_est, _sealed, accept) = pending.approve(Permissions::VIEW);
    assert!(matches!(waiting.handle(&accept), Ok(Ok(_))));
}

#[test]
fn an_abandoned_run_frees_the_code_after_the_run_timeout() {
    let d = Devices::new();
    let mut host = new_host(15, t0());
    let code = typed(&host);
    let mut r = rng(150);
    let (_v, a1) = sealdesk_auth::attended::viewer::start(
        &code,
        &Offer::default(),
        d.fp_v,
        &mut ViewerAttempts::new(),
        t0(),
        &mut r,
    )
    .unwrap();
    let (stale, _a2) = host
        .handle_a1(t0(), &a1, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap();
    assert_eq!(host.poll_timeout(), t0() + RUN_TIMEOUT);
    let later = t0() + RUN_TIMEOUT;
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        later,
        16,
        &Offer::default(),
        &mut honest,
    );
    assert!(run.host_a1.is_none());
    // The stale run's state cannot be used any more.
    let err = host.handle_a3(later, stale, &run.wire[2].1).unwrap_err();
    assert!(matches!(err, HandshakeError::UnexpectedMessage(_)));
}

#[test]
fn replay_from_another_session_fails() {
    let d = Devices::new();
    // Session 1, recorded by the server.
    let mut host1 = new_host(17, t0());
    let code = typed(&host1);
    let run1 = attended_run(
        &d,
        &mut host1,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        17,
        &Offer::default(),
        &mut honest,
    );
    let old = run1.wire.clone();
    let both1 = run1.approve().unwrap();

    // Session 2: replay session 1's A2 to the new viewer run.
    let mut host2 = new_host(18, t0());
    let code2 = typed(&host2);
    let old_a2 = old[1].1.clone();
    let mut replay_a2 = move |s: Step, b: Vec<u8>| {
        if s == Step::A2 {
            Verdict::Deliver(old_a2.clone())
        } else {
            Verdict::Deliver(b)
        }
    };
    let run = attended_run(
        &d,
        &mut host2,
        &code2,
        &mut ViewerAttempts::new(),
        t0(),
        18,
        &Offer::default(),
        &mut replay_a2,
    );
    assert!(matches!(
        run.viewer_err(),
        Some(HandshakeError::WrongCodeOrTampered { .. })
    ));

    // Session 3: replay session 1's A3 to the new host run.
    let mut host3 = new_host(19, t0());
    let code3 = typed(&host3);
    let old_a3 = old[2].1.clone();
    let mut replay_a3 = move |s: Step, b: Vec<u8>| {
        if s == Step::A3 {
            Verdict::Deliver(old_a3.clone())
        } else {
            Verdict::Deliver(b)
        }
    };
    let run = attended_run(
        &d,
        &mut host3,
        &code3,
        &mut ViewerAttempts::new(),
        t0(),
        19,
        &Offer::default(),
        &mut replay_a3,
    );
    assert!(matches!(
        run.host_err(),
        Some(HandshakeError::WrongCodeOrTampered { .. })
    ));

    // Sealed messages of session 1 do not open in session 4.
    let mut s1 = both1;
    let msg = s1
        .host_sealed
        .seal(
            SealedKind::Candidate,
            b"candidate:1 1 udp 1 192.0.2.1 5000 typ host",
        )
        .unwrap();
    let mut both4 = honest_attended(20);
    assert_eq!(both4.viewer_sealed.open(&msg), Err(SealError::Forged));
    // Positive control: it opens in its own session.
    assert_eq!(
        s1.viewer_sealed.open(&msg).unwrap().kind,
        SealedKind::Candidate
    );
}

#[test]
fn suite_downgrade_and_list_tampering_fail() {
    honest_attended(21);
    // The server strips ChaCha20 from the viewer's offer: the host picks AES.
    let strip = rewrite(Step::A1, |m| {
        if let Message::A1(a) = m {
            a.offer
                .suites
                .retain(|&s| s != Suite::ChaCha20Poly1305.id());
        }
    });
    // The server reorders the viewer's offer.
    let reorder = rewrite(Step::A1, |m| {
        if let Message::A1(a) = m {
            a.offer.suites.reverse();
        }
    });
    // The server also rewrites the host's list so AES looks like the best common choice.
    let hide = rewrite(Step::A2, |m| {
        if let Message::A2(a) = m {
            a.choice
                .host
                .suites
                .retain(|&s| s != Suite::ChaCha20Poly1305.id());
            a.choice.suite = Suite::Aes256Gcm;
        }
    });
    // The host's list reordered: the choice is unchanged but the transcript differs.
    let reorder_host = rewrite(Step::A2, |m| {
        if let Message::A2(a) = m {
            a.choice.host.suites.reverse();
        }
    });
    // A version the viewer never offered.
    let version = rewrite(Step::A2, |m| {
        if let Message::A2(a) = m {
            a.choice.version = 2;
        }
    });
    let cases: Vec<(&str, Attack, HandshakeError)> = vec![
        ("strip", Box::new(strip), HandshakeError::Downgrade),
        ("reorder", Box::new(reorder), HandshakeError::Downgrade),
        (
            "hide",
            Box::new(hide),
            HandshakeError::WrongCodeOrTampered { attempts_left: 2 },
        ),
        (
            "reorder host",
            Box::new(reorder_host),
            HandshakeError::WrongCodeOrTampered { attempts_left: 2 },
        ),
        ("version", Box::new(version), HandshakeError::Downgrade),
    ];
    for (name, mut attack, want) in cases {
        let d = Devices::new();
        let mut host = new_host(22, t0());
        let code = typed(&host);
        let run = attended_run(
            &d,
            &mut host,
            &code,
            &mut ViewerAttempts::new(),
            t0(),
            22,
            &Offer::default(),
            &mut *attack,
        );
        assert_eq!(run.viewer_err(), Some(&want), "case {name}");
    }
}

#[test]
fn a_host_that_only_has_aes_is_not_a_downgrade() {
    let d = Devices::new();
    let mut host = sealdesk_auth::attended::host::AttendedHost::new(
        sealdesk_auth::code::OneTimeCode::draw(routing(), &mut rng(23)),
        &Offer::with_suites(&[Suite::Aes256Gcm]),
        t0(),
    );
    let code = typed(&host);
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        23,
        &Offer::default(),
        &mut honest,
    );
    let both = run.approve().unwrap();
    assert_eq!(both.viewer.suite, Suite::Aes256Gcm);
    assert_agree(&both.viewer, &both.host);
}

#[test]
fn no_common_version_or_suite() {
    let d = Devices::new();
    let mut host = new_host(24, t0());
    let code = typed(&host);
    let no_versions = rewrite(Step::A1, |m| {
        if let Message::A1(a) = m {
            a.offer.versions = vec![7]
        }
    });
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        24,
        &Offer::default(),
        &mut Box::new(no_versions),
    );
    assert_eq!(run.host_a1, Some(HandshakeError::NoCommonVersion));
    let no_suites = rewrite(Step::A1, |m| {
        if let Message::A1(a) = m {
            a.offer.suites = vec![0x0999]
        }
    });
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        25,
        &Offer::default(),
        &mut Box::new(no_suites),
    );
    assert_eq!(run.host_a1, Some(HandshakeError::NoCommonSuite));
}

#[test]
fn reflection_fails() {
    let d = Devices::new();
    let mut host = new_host(26, t0());
    let code = typed(&host);
    let mut r = rng(260);
    let mut tries = ViewerAttempts::new();
    // The viewer's own A1 reflected back as if it were A2.
    let (v, a1) = sealdesk_auth::attended::viewer::start(
        &code,
        &Offer::default(),
        d.fp_v,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let err = v
        .handle_a2(&a1, &d.viewer, "alice laptop", &mut tries, t0())
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err}");
    // The host's Y reflected to the host as the viewer's X.
    let (v, a1) = sealdesk_auth::attended::viewer::start(
        &code,
        &Offer::default(),
        d.fp_v,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let (state, a2) = host
        .handle_a1(t0(), &a1, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap();
    host.abandon(state);
    let Message::A2(a2m) = decode(&a2).unwrap() else {
        panic!()
    };
    let Message::A1(mut a1m) = decode(&a1).unwrap() else {
        panic!()
    };
    a1m.x = a2m.y;
    let err = host
        .handle_a1(t0(), &a1m.encode(), &d.host, "office pc", d.fp_h, &mut r)
        .unwrap_err();
    assert!(matches!(err, HandshakeError::UnexpectedMessage(_)), "{err}");
    drop(v);
    // Sealed messages reflected to their sender do not open (one key per direction).
    let mut both = honest_attended(27);
    // (The viewer already received the host's Accept as seq 1; its own seq 2 is "new".)
    let _first = both
        .viewer_sealed
        .seal(SealedKind::Candidate, b"candidate:0")
        .unwrap();
    let m = both
        .viewer_sealed
        .seal(
            SealedKind::Candidate,
            b"candidate:1 1 udp 1 192.0.2.1 5000 typ host",
        )
        .unwrap();
    assert_eq!(both.viewer_sealed.open(&m), Err(SealError::Forged));
    assert_eq!(
        both.host_sealed.open(&m).unwrap().kind,
        SealedKind::Candidate
    );
}

fn sdp(fp: &DtlsFingerprint, setup: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
        fp.to_sdp()
    )
}

#[test]
fn sealed_sdp_fingerprints_are_enforced() {
    let d = Devices::new();
    let mut both = honest_attended(28);
    // Honest offer/answer: positive control.
    let offer = both
        .viewer_sealed
        .seal(SealedKind::Offer, sdp(&d.fp_v, "actpass").as_bytes())
        .unwrap();
    assert_eq!(
        both.host_sealed.open(&offer).unwrap().kind,
        SealedKind::Offer
    );
    let answer = both
        .host_sealed
        .seal(SealedKind::Answer, sdp(&d.fp_h, "active").as_bytes())
        .unwrap();
    assert_eq!(
        both.viewer_sealed.open(&answer).unwrap().kind,
        SealedKind::Answer
    );

    // A side cannot seal an SDP with a fingerprint other than its authenticated one.
    assert_eq!(
        both.host_sealed
            .seal(SealedKind::Offer, sdp(&EVIL_FP, "actpass").as_bytes()),
        Err(SealError::Sdp(SdpError::FingerprintMismatch))
    );
    // The server flips a bit in a sealed SDP: it no longer opens.
    let mut flipped = both
        .viewer_sealed
        .seal(SealedKind::Offer, sdp(&d.fp_v, "actpass").as_bytes())
        .unwrap();
    let n = flipped.len();
    flipped[n - 20] ^= 1;
    assert_eq!(both.host_sealed.open(&flipped), Err(SealError::Forged));

    // A misbehaving peer (its session object altered to claim another fingerprint) sends a
    // renegotiation with a new fingerprint: the receiver refuses it.
    let mut evil = honest_attended(29);
    evil.host.fp_local = EVIL_FP;
    let mut evil_host_sealed = evil.host.sealed();
    let offer = evil
        .viewer_sealed
        .seal(SealedKind::Offer, sdp(&d.fp_v, "actpass").as_bytes())
        .unwrap();
    evil_host_sealed.open(&offer).unwrap();
    // (seq 1 was the real Accept; the rebuilt channel must move past it.)
    let _ = evil_host_sealed
        .seal(SealedKind::Candidate, b"candidate:0")
        .unwrap();
    let bad_answer = evil_host_sealed
        .seal(SealedKind::Answer, sdp(&EVIL_FP, "active").as_bytes())
        .unwrap();
    assert_eq!(
        evil.viewer_sealed.open(&bad_answer),
        Err(SealError::Sdp(SdpError::FingerprintMismatch))
    );
}

#[test]
fn sealed_setup_must_complement_and_seq_must_increase() {
    let d = Devices::new();
    let mut both = honest_attended(30);
    let offer = both
        .viewer_sealed
        .seal(SealedKind::Offer, sdp(&d.fp_v, "active").as_bytes())
        .unwrap();
    both.host_sealed.open(&offer).unwrap();
    assert_eq!(
        both.host_sealed
            .seal(SealedKind::Answer, sdp(&d.fp_h, "active").as_bytes()),
        Err(SealError::Sdp(SdpError::SetupNotComplementary))
    );
    let c1 = both
        .viewer_sealed
        .seal(SealedKind::Candidate, b"a")
        .unwrap();
    let c2 = both
        .viewer_sealed
        .seal(SealedKind::Candidate, b"b")
        .unwrap();
    assert_eq!(both.host_sealed.open(&c2).unwrap().body, b"b");
    assert!(
        matches!(both.host_sealed.open(&c1), Err(SealError::Replay { .. })),
        "reordered"
    );
    assert!(
        matches!(both.host_sealed.open(&c2), Err(SealError::Replay { .. })),
        "replayed"
    );
    // A viewer may not send Accept.
    assert_eq!(
        both.viewer_sealed.seal(SealedKind::Accept, &[0, 1]),
        Err(SealError::WrongDirection(SealedKind::Accept))
    );
    let bye = both.viewer_sealed.seal(SealedKind::Bye, b"done").unwrap();
    assert_eq!(both.host_sealed.open(&bye).unwrap().kind, SealedKind::Bye);
    assert!(both.host_sealed.is_closed());
}

#[test]
fn the_viewer_stops_after_three_failed_runs_per_host_number() {
    // A fake host guesses the code the user typed: each run is one guess.
    let d = Devices::new();
    let mut tries = ViewerAttempts::new();
    for i in 0..3 {
        let mut fake = new_host(300 + i, t0()); // same R, its own (wrong) secret
        let typed_by_user = wrong_code(&new_host(399, t0()));
        let run = attended_run(
            &d,
            &mut fake,
            &typed_by_user,
            &mut tries,
            t0(),
            31 + i,
            &Offer::default(),
            &mut honest,
        );
        assert!(matches!(
            run.viewer_err(),
            Some(HandshakeError::WrongCodeOrTampered { .. })
        ));
    }
    let mut fake = new_host(310, t0());
    let code = typed(&fake);
    let run = attended_run(
        &d,
        &mut fake,
        &code,
        &mut tries,
        t0(),
        35,
        &Offer::default(),
        &mut honest,
    );
    assert_eq!(
        run.viewer_err(),
        Some(&HandshakeError::ViewerLockedOut(routing()))
    );
    // After 10 minutes the viewer tries again (with a host's new code).
    let later = t0() + CODE_LIFETIME;
    let mut real = new_host(311, later);
    let code = typed(&real);
    let run = attended_run(
        &d,
        &mut real,
        &code,
        &mut tries,
        later,
        36,
        &Offer::default(),
        &mut honest,
    );
    assert!(run.viewer_err().is_none());
}

#[test]
fn the_host_user_can_decline() {
    let d = Devices::new();
    let mut host = new_host(37, t0());
    let code = typed(&host);
    let run = attended_run(
        &d,
        &mut host,
        &code,
        &mut ViewerAttempts::new(),
        t0(),
        37,
        &Offer::default(),
        &mut honest,
    );
    let waiting = run.viewer.unwrap();
    let bye = run.host.unwrap().unwrap().decline();
    assert_eq!(waiting.handle(&bye).unwrap_err(), HandshakeError::Declined);
}

// ---------------------------------------------------------------- unattended

#[test]
fn honest_unattended_run() {
    let d = Devices::new();
    let (reg, pin) = paired(&d, Permissions::ALL, false);
    let run = unattended_run(
        &d,
        &d.host,
        &reg,
        &pin,
        Permissions::VIEW.union(Permissions::INPUT),
        40,
        &mut honest,
    );
    let both = run.finish().unwrap();
    assert_agree(&both.viewer, &both.host);
    assert_eq!(
        both.host.permissions,
        Permissions::VIEW.union(Permissions::INPUT)
    );
    assert_eq!(both.viewer.permissions, both.host.permissions);
    assert_eq!(both.host.peer.key, d.viewer.public());
}

#[test]
fn unattended_refusals_reach_the_viewer_in_words() {
    let d = Devices::new();
    let want = Permissions::VIEW.union(Permissions::INPUT);
    // Unknown device: the registry holds someone else.
    let other = Devices {
        viewer: IdentityKey::from_seed(&[0x33; 32]),
        ..Devices::new()
    };
    let (reg_other, pin) = paired(&other, Permissions::ALL, false);
    let err = unattended_run(&d, &d.host, &reg_other, &pin, want, 41, &mut honest)
        .finish()
        .unwrap_err();
    assert!(err.contains("is not paired with this host"), "{err}");
    assert!(
        err.contains("viewer: the host refused the connection: device"),
        "{err}"
    );
    // Revoked.
    let (reg, pin) = paired(&d, Permissions::ALL, true);
    let err = unattended_run(&d, &d.host, &reg, &pin, want, 42, &mut honest)
        .finish()
        .unwrap_err();
    assert!(err.contains("pairing was revoked"), "{err}");
    // Paired but not for unattended access.
    let (reg, pin) = paired(&d, Permissions::DEFAULT_PAIRED, false);
    let err = unattended_run(&d, &d.host, &reg, &pin, want, 43, &mut honest)
        .finish()
        .unwrap_err();
    assert!(err.contains("not allowed to use unattended"), "{err}");
    // Asking for more than granted.
    let (reg, pin) = paired(&d, Permissions::VIEW.union(Permissions::UNATTENDED), false);
    let err = unattended_run(&d, &d.host, &reg, &pin, want, 44, &mut honest)
        .finish()
        .unwrap_err();
    assert!(err.contains("not allowed to use input"), "{err}");
    // Positive control: the same registry lets in a view-only request.
    unattended_run(&d, &d.host, &reg, &pin, Permissions::VIEW, 45, &mut honest)
        .finish()
        .unwrap();
}

#[test]
fn unattended_host_key_change_is_refused() {
    let d = Devices::new();
    let (reg, pin) = paired(&d, Permissions::ALL, false);
    let impostor = IdentityKey::from_seed(&[0x44; 32]);
    let run = unattended_run(
        &d,
        &impostor,
        &reg,
        &pin,
        Permissions::VIEW,
        46,
        &mut honest,
    );
    let err = run.viewer.as_ref().unwrap_err();
    assert!(matches!(err, HandshakeError::HostKeyChanged { .. }));
    assert!(err
        .to_string()
        .starts_with("this host's identity changed — refusing to connect"));
}

#[test]
fn unattended_fingerprint_swaps_abort() {
    let d = Devices::new();
    let (reg, pin) = paired(&d, Permissions::ALL, false);
    let in_b1 = rewrite(Step::B1, |m| {
        if let Message::B1(b) = m {
            b.fp_v = EVIL_FP
        }
    });
    let in_b2 = rewrite(Step::B2, |m| {
        if let Message::B2(b) = m {
            b.fp_h = EVIL_FP
        }
    });
    let eph = rewrite(Step::B2, |m| {
        if let Message::B2(b) = m {
            b.e_h[0] ^= 1
        }
    });
    let enc_v = rewrite(Step::B3, |m| {
        if let Message::B3(b) = m {
            b.enc_v[0] ^= 1
        }
    });
    let strip = rewrite(Step::B1, |m| {
        if let Message::B1(b) = m {
            b.offer.suites.retain(|&s| s != 1)
        }
    });
    let cases: Vec<(&str, Attack)> = vec![
        ("B1 fp", Box::new(in_b1)),
        ("B2 fp", Box::new(in_b2)),
        ("B2 e_h", Box::new(eph)),
        ("B3", Box::new(enc_v)),
        ("strip", Box::new(strip)),
    ];
    for (name, mut attack) in cases {
        let run = unattended_run(&d, &d.host, &reg, &pin, Permissions::VIEW, 47, &mut *attack);
        assert!(run.finish().is_err(), "{name} must abort");
    }
    unattended_run(&d, &d.host, &reg, &pin, Permissions::VIEW, 47, &mut honest)
        .finish()
        .unwrap();
}

#[test]
fn unattended_low_order_share_is_refused() {
    let d = Devices::new();
    let (reg, pin) = paired(&d, Permissions::ALL, false);
    let zero = rewrite(Step::B1, |m| {
        if let Message::B1(b) = m {
            b.e_v = [0; 32]
        }
    });
    let run = unattended_run(
        &d,
        &d.host,
        &reg,
        &pin,
        Permissions::VIEW,
        48,
        &mut Box::new(zero),
    );
    assert!(matches!(run.host, Some(Err(ref r)) if r.error == HandshakeError::InvalidKeyShare));
    let zero = rewrite(Step::B2, |m| {
        if let Message::B2(b) = m {
            b.e_h = [0; 32]
        }
    });
    let run = unattended_run(
        &d,
        &d.host,
        &reg,
        &pin,
        Permissions::VIEW,
        49,
        &mut Box::new(zero),
    );
    assert_eq!(
        run.viewer.as_ref().unwrap_err(),
        &HandshakeError::InvalidKeyShare
    );
}

#[test]
fn unattended_replay_of_b3_from_another_session_fails() {
    let d = Devices::new();
    let (reg, pin) = paired(&d, Permissions::ALL, false);
    let old = unattended_run(&d, &d.host, &reg, &pin, Permissions::VIEW, 50, &mut honest).wire;
    let old_b3 = old[2].1.clone();
    let mut replay = move |s: Step, b: Vec<u8>| {
        if s == Step::B3 {
            Verdict::Deliver(old_b3.clone())
        } else {
            Verdict::Deliver(b)
        }
    };
    let run = unattended_run(&d, &d.host, &reg, &pin, Permissions::VIEW, 51, &mut replay);
    assert!(matches!(run.host, Some(Err(ref r)) if r.error == HandshakeError::BadIdentityProof));
}

#[test]
fn debug_output_never_shows_secrets() {
    let d = Devices::new();
    let mut host = new_host(60, t0());
    let code = typed(&host);
    let secret = format!("{:08}", code.secret.value());
    let mut r = rng(61);
    let mut tries = ViewerAttempts::new();
    let (v, a1) = sealdesk_auth::attended::viewer::start(
        &code,
        &Offer::default(),
        d.fp_v,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let (h, a2) = host
        .handle_a1(t0(), &a1, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap();
    let mut shown = vec![
        format!("{host:?}"),
        format!("{code:?}"),
        format!("{v:?}"),
        format!("{h:?}"),
    ];
    let (waiting, a3) = v
        .handle_a2(&a2, &d.viewer, "alice laptop", &mut tries, t0())
        .unwrap();
    shown.push(format!("{waiting:?}"));
    let pending = host.handle_a3(t0(), h, &a3).unwrap();
    shown.push(format!("{pending:?}"));
    let (est, sealed, _) = pending.approve(Permissions::ALL);
    shown.push(format!("{est:?}"));
    shown.push(format!("{sealed:?}"));
    shown.push(format!("{:?}", d.host));
    let key_hex: Vec<String> = [
        &est.keys.sig_h2v,
        &est.keys.sig_v2h,
        &est.keys.chan_h2v,
        &est.keys.chan_v2h,
    ]
    .iter()
    .map(|k| {
        k.expose()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect()
    })
    .collect();
    let key_dec: Vec<String> = [&est.keys.sig_h2v]
        .iter()
        .map(|k| format!("{:?}", &k.expose()[..4]))
        .collect();
    for s in &shown {
        assert!(!s.contains(&secret), "code digits in {s}");
        for k in key_hex.iter().chain(&key_dec) {
            assert!(!s.contains(k.as_str()), "key bytes in {s}");
        }
        assert!(
            !s.contains(&format!("{:?}", &[0x11u8; 4][..])),
            "identity seed in {s}"
        );
    }
    // Positive control: the checks above would see the secret if it were printed.
    assert!(format!("{secret} {}", key_hex[0]).contains(&secret));
}

#[test]
fn aborts_end_runs_early_without_extra_cost() {
    use sealdesk_auth::messages::{Abort, AbortReason};
    let d = Devices::new();
    let mut host = new_host(70, t0());
    let mut r = rng(71);
    // A viewer with a wrong code tells the host at once; the host's slot is free again.
    let wrong = wrong_code(&host);
    let mut tries = ViewerAttempts::new();
    let (v, a1) = sealdesk_auth::attended::viewer::start(
        &wrong,
        &Offer::default(),
        d.fp_v,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let (state, a2) = host
        .handle_a1(t0(), &a1, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap();
    let err = v
        .handle_a2(&a2, &d.viewer, "alice laptop", &mut tries, t0())
        .unwrap_err();
    assert_eq!(err.abort_reason(), AbortReason::ConfirmationFailed);
    let said = host.handle_abort(&state, &err.abort_message()).unwrap();
    assert_eq!(
        said,
        HandshakeError::WrongCodeOrTampered { attempts_left: 2 }
    );
    assert_eq!(host.in_flight_deadline(), None);
    // Bytes that are not an abort leave the run in flight.
    let (v2, a1) = sealdesk_auth::attended::viewer::start(
        &typed(&host),
        &Offer::default(),
        d.fp_v,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let (state, a2) = host
        .handle_a1(t0(), &a1, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap();
    assert!(host.handle_abort(&state, b"\x03junk").is_none());
    assert!(host.in_flight_deadline().is_some());
    // The host refuses a parallel A1 and says so; the viewer shows it, spending nothing.
    let (v3, a1_other) = sealdesk_auth::attended::viewer::start(
        &typed(&host),
        &Offer::default(),
        EVIL_FP,
        &mut tries,
        t0(),
        &mut r,
    )
    .unwrap();
    let busy = host
        .handle_a1(t0(), &a1_other, &d.host, "office pc", d.fp_h, &mut r)
        .unwrap_err();
    let said = v3.check_abort(&busy.abort_message()).unwrap();
    assert_eq!(said, HandshakeError::PeerAborted(AbortReason::Busy));
    assert!(said
        .to_string()
        .starts_with("the other device ended the attempt, saying: another connection attempt"));
    // The first run still completes.
    let (waiting, a3) = v2
        .handle_a2(&a2, &d.viewer, "alice laptop", &mut tries, t0())
        .unwrap();
    let (_e, _s, accept) = host
        .handle_a3(t0(), state, &a3)
        .unwrap()
        .approve(Permissions::VIEW);
    assert!(matches!(waiting.handle(&accept), Ok(Ok(_))));
    // Unknown reason bytes decode as "other" and keep their byte (canonical encoding).
    let m = decode(&[0x7f, 200]).unwrap();
    assert_eq!(m, Message::Abort(Abort { reason_byte: 200 }));
    assert_eq!(m.encode(), vec![0x7f, 200]);
}
