//! Handshake CPU time per side and sealed-signaling throughput.
//!
//! `cargo bench -p sealdesk-auth` prints the figures (median of several batches). Each side's
//! time is measured around that side's calls only, so it is that side's CPU cost per session.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark reads the clock, prints figures and panics on setup errors"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealdesk_auth::attended::host::AttendedHost;
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::{Offer, Suite};
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::SealedKind;
use sealdesk_auth::trust::{PairedDevice, PairingRegistry, Permissions, PinnedHost};
use sealdesk_auth::{unattended, IdentityKey};
use sealdesk_proto::RoutingNumber;

const RUNS: u32 = 200;
const BATCHES: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_run(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

fn attended(suite: Suite) -> (Duration, Duration) {
    let hk = IdentityKey::from_seed(&[1; 32]);
    let vk = IdentityKey::from_seed(&[2; 32]);
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let offer = Offer::with_suites(&[suite]);
    let routing = RoutingNumber::new(123_456_789).unwrap();
    let (mut tv, mut th) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..RUNS {
        let now = Instant::now();
        let mut host = AttendedHost::new(OneTimeCode::draw(routing, &mut r), &offer, now);
        let code = OneTimeCode::parse(&host.code().display()).unwrap();
        let mut tries = ViewerAttempts::new();

        let t = Instant::now();
        let (v, a1) = viewer::start(
            &code,
            &offer,
            DtlsFingerprint([2; 32]),
            &mut tries,
            now,
            &mut r,
        )
        .unwrap();
        tv += t.elapsed();
        let t = Instant::now();
        let (h, a2) = host
            .handle_a1(now, &a1, &hk, "host", DtlsFingerprint([1; 32]), &mut r)
            .unwrap();
        th += t.elapsed();
        let t = Instant::now();
        let (waiting, a3) = v.handle_a2(&a2, &vk, "viewer", &mut tries, now).unwrap();
        tv += t.elapsed();
        let t = Instant::now();
        let (_est, _sealed, accept) = host
            .handle_a3(now, h, &a3)
            .unwrap()
            .approve(Permissions::ALL);
        th += t.elapsed();
        let t = Instant::now();
        let ok = waiting.handle(&accept).unwrap().is_ok();
        tv += t.elapsed();
        assert!(ok);
    }
    (tv, th)
}

fn unattended_run() -> (Duration, Duration) {
    let hk = IdentityKey::from_seed(&[1; 32]);
    let vk = IdentityKey::from_seed(&[2; 32]);
    let mut r = ChaCha20Rng::seed_from_u64(2);
    let routing = RoutingNumber::new(123_456_789).unwrap();
    let offer = Offer::default();
    let mut reg = PairingRegistry::new();
    reg.pair(PairedDevice {
        key: vk.public(),
        label: "v".into(),
        permissions: Permissions::ALL,
        added_at: 0,
        revoked: false,
    })
    .unwrap();
    let pin = PinnedHost {
        routing,
        key: hk.public(),
        label: "h".into(),
        added_at: 0,
    };
    let (mut tv, mut th) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..RUNS {
        let t = Instant::now();
        let (v, b1) = unattended::viewer::start(&pin, &offer, DtlsFingerprint([2; 32]), &mut r);
        tv += t.elapsed();
        let t = Instant::now();
        let info = unattended::host::HostInfo {
            routing,
            identity: &hk,
            label: "h",
            offer: &offer,
        };
        let (h, b2) =
            unattended::host::handle_b1(info, &b1, DtlsFingerprint([1; 32]), &mut r).unwrap();
        th += t.elapsed();
        let t = Instant::now();
        let (waiting, b3) = v.handle_b2(&b2, &vk, "v", Permissions::VIEW).unwrap();
        tv += t.elapsed();
        let t = Instant::now();
        let (_est, _sealed, accept) = h.handle_b3(&b3, &reg).unwrap();
        th += t.elapsed();
        let t = Instant::now();
        let ok = waiting.handle(&accept).unwrap().is_ok();
        tv += t.elapsed();
        assert!(ok);
    }
    (tv, th)
}

fn sealed_throughput(suite: Suite, size: usize) -> (f64, f64) {
    let hk = IdentityKey::from_seed(&[1; 32]);
    let vk = IdentityKey::from_seed(&[2; 32]);
    let mut r = ChaCha20Rng::seed_from_u64(3);
    let offer = Offer::with_suites(&[suite]);
    let now = Instant::now();
    let routing = RoutingNumber::new(123_456_789).unwrap();
    let mut host = AttendedHost::new(OneTimeCode::draw(routing, &mut r), &offer, now);
    let code = OneTimeCode::parse(&host.code().display()).unwrap();
    let mut tries = ViewerAttempts::new();
    let (v, a1) = viewer::start(
        &code,
        &offer,
        DtlsFingerprint([2; 32]),
        &mut tries,
        now,
        &mut r,
    )
    .unwrap();
    let (h, a2) = host
        .handle_a1(now, &a1, &hk, "host", DtlsFingerprint([1; 32]), &mut r)
        .unwrap();
    let (waiting, a3) = v.handle_a2(&a2, &vk, "viewer", &mut tries, now).unwrap();
    let (_est, mut hs, accept) = host
        .handle_a3(now, h, &a3)
        .unwrap()
        .approve(Permissions::ALL);
    let Ok((_v, mut vs)) = waiting.handle(&accept).unwrap() else {
        panic!()
    };
    let body = vec![0x61u8; size];
    let n = 2000u32;
    let mut msgs = Vec::with_capacity(n as usize);
    let t = Instant::now();
    for _ in 0..n {
        msgs.push(hs.seal(SealedKind::Candidate, black_box(&body)).unwrap());
    }
    let seal = t.elapsed();
    let t = Instant::now();
    for m in &msgs {
        black_box(vs.open(m).unwrap());
    }
    let open = t.elapsed();
    let mb = |d: Duration| (size as f64 * f64::from(n)) / d.as_secs_f64() / 1e6;
    (mb(seal), mb(open))
}

fn main() {
    println!(
        "sealdesk-auth handshake CPU time per side (median of {BATCHES} batches of {RUNS} runs)"
    );
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        let (v, h): (Vec<_>, Vec<_>) = (0..BATCHES).map(|_| attended(suite)).unzip();
        println!(
            "  attended ({suite:?}):   viewer {:7.1} µs   host {:7.1} µs",
            per_run(median(v), RUNS),
            per_run(median(h), RUNS)
        );
    }
    let (v, h): (Vec<_>, Vec<_>) = (0..BATCHES).map(|_| unattended_run()).unzip();
    println!(
        "  unattended (ChaCha20Poly1305): viewer {:7.1} µs   host {:7.1} µs",
        per_run(median(v), RUNS),
        per_run(median(h), RUNS)
    );
    println!("sealed signaling throughput (MB/s, seal / open)");
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        for size in [200usize, 4096, 32 * 1024] {
            let (s, o) = sealed_throughput(suite, size);
            println!("  {suite:?} {size:>6} B: {s:8.1} / {o:8.1}");
        }
    }
}
