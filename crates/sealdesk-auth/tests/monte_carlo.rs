//! Monte Carlo check of online code guessing (DESIGN.md §2: success ≤ 3·10⁻⁸ per code on
//! the host). An attacker posing as a viewer runs real handshakes against real
//! `AttendedHost`s with guessed codes; a guess "wins" when key confirmation passes.
//!
//! Two experiments, both deterministic (seeded):
//! 1. Full code space: thousands of codes, 3 guesses each, the 4th always refused. The
//!    expected number of wins is ~10⁻⁴, so any win fails the test.
//! 2. The attacker is handed 6 of the 8 secret digits (100 candidates left) so the rate is
//!    measurable: with one guess per run the win rate is 3/100; if a run leaked enough to test
//!    two candidates it would be 6/100. The observed count must sit within 4σ of 3/100.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by panicking"
)]

mod common;

use common::*;
use rand::seq::index::sample;
use rand::Rng;
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::HandshakeError;

/// One run of the attacker with `guess` (the secret as a number). `Ok(true)` = confirmed.
fn attempt(
    host: &mut sealdesk_auth::attended::host::AttendedHost,
    guess: u32,
    r: &mut rand_chacha::ChaCha20Rng,
) -> Result<bool, HandshakeError> {
    let d = Devices::new();
    let code = OneTimeCode::parse(&format!("{HOST_R}{guess:08}")).unwrap();
    let (v, a1) = viewer::start(
        &code,
        &Offer::default(),
        DtlsFingerprint([9; 32]),
        &mut ViewerAttempts::new(),
        t0(),
        r,
    )?;
    let (state, a2) = host.handle_a1(t0(), &a1, &d.host, "host", d.fp_h, r)?;
    let won = v
        .handle_a2(&a2, &d.viewer, "attacker", &mut ViewerAttempts::new(), t0())
        .is_ok();
    host.abandon(state);
    Ok(won)
}

#[test]
fn full_space_guessing_never_wins_and_gets_exactly_three_runs() {
    let codes = 2_000u32;
    let mut r = rng(1234);
    let mut wins = 0u32;
    for i in 0..codes {
        let mut host = new_host(10_000 + u64::from(i), t0());
        for _ in 0..3 {
            let guess = r.gen_range(0..100_000_000);
            if attempt(&mut host, guess, &mut r).unwrap() {
                wins += 1;
            }
        }
        let right = host.code().secret.value();
        let fourth = attempt(&mut host, right, &mut r);
        assert_eq!(
            fourth,
            Err(HandshakeError::CodeExhausted),
            "code {i}: a 4th run was allowed"
        );
    }
    // Expected wins: 3 · 2000 / 10⁸ = 6·10⁻⁵.
    assert_eq!(wins, 0, "{wins} wins in {codes} codes");
}

#[test]
fn one_guess_per_run_when_the_space_is_small() {
    let codes = 3_000u32;
    let mut r = rng(5678);
    let mut wins = 0u32;
    for i in 0..codes {
        let mut host = new_host(50_000 + u64::from(i), t0());
        let secret = host.code().secret.value();
        let known = secret - secret % 100; // the attacker knows all but the last two digits
        for last in sample(&mut r, 100, 3).into_iter() {
            if attempt(&mut host, known + last as u32, &mut r).unwrap() {
                wins += 1;
                break;
            }
        }
    }
    let p = 3.0 / 100.0;
    let n = f64::from(codes);
    let (mean, sd) = (n * p, (n * p * (1.0 - p)).sqrt());
    let z = (f64::from(wins) - mean) / sd;
    eprintln!("{wins} wins in {codes} codes with 3 runs each over 100 candidates: expected {mean:.0} ± {sd:.1}, z = {z:.2}");
    assert!(
        z.abs() < 4.0,
        "{wins} wins in {codes} codes: expected {mean:.0} ± {sd:.1} (z = {z:.2})"
    );
    // Two candidates per run would give ~180 wins: far outside this band.
    assert!(f64::from(wins) < n * 0.06 - 4.0 * sd);
}
