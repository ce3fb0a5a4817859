//! Handshake CPU time and sealed-signaling throughput, with criterion.
//!
//! * `attended/<suite>/{both,viewer,host}`: the attended (SPAKE2 one-time code) handshake in
//!   memory: SPAKE2 start and finish, HKDF, the encrypted signed identities and key
//!   confirmation, up to the sealed Accept. `both` is the whole exchange end to end (the host
//!   drawing its code, the viewer parsing it, every message both ways); `viewer` and `host`
//!   time only that side's calls, so each is that side's CPU cost for one session.
//! * `unattended/{both,viewer,host}`: the paired (SIGMA-I) handshake: X25519 and two Ed25519
//!   signatures and verifications, against a pinned host and a pairing registry.
//! * `sealed/<suite>/{seal,open}/<bytes>`: sealed signaling (SDPs, ICE candidates) after an
//!   attended handshake.
//!
//! `cargo bench -p sealdesk-auth --bench handshake` (add `-- --quick` for a smoke run).

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark reads the clock and stops at the first setup error; criterion's macros generate items"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealdesk_auth::attended::host::AttendedHost;
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::{Offer, Suite};
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::{SealedKind, SealedSignaling};
use sealdesk_auth::trust::{PairedDevice, PairingRegistry, Permissions, PinnedHost};
use sealdesk_auth::{unattended, IdentityKey};
use sealdesk_proto::RoutingNumber;

/// Short runs: the whole set of sealdesk benches should take minutes, not an hour.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// Which side's calls a measurement counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Viewer,
    Host,
}

/// Accumulates the time of the calls made for the timed side.
struct Clock {
    side: Option<Side>,
    spent: Duration,
}

impl Clock {
    fn new(side: Option<Side>) -> Self {
        Self {
            side,
            spent: Duration::ZERO,
        }
    }

    /// Runs `f`, counting its time if `side` is the timed one (or every side is).
    fn on<R>(&mut self, side: Side, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        if self.side.is_none_or(|s| s == side) {
            self.spent += start.elapsed();
        }
        r
    }
}

/// The fixed parts of both handshakes: identities and the host's routing number.
struct Keys {
    host: IdentityKey,
    viewer: IdentityKey,
    routing: RoutingNumber,
}

impl Keys {
    fn new() -> Self {
        Self {
            host: IdentityKey::from_seed(&[1; 32]),
            viewer: IdentityKey::from_seed(&[2; 32]),
            routing: RoutingNumber::new(123_456_789).expect("routing number"),
        }
    }
}

/// One attended handshake; the time of `clock`'s side. Returns both sealed channels
/// (viewer's, host's).
fn attended(
    keys: &Keys,
    offer: &Offer,
    rng: &mut ChaCha20Rng,
    clock: &mut Clock,
) -> (SealedSignaling, SealedSignaling) {
    let now = Instant::now();
    let mut host = clock.on(Side::Host, || {
        AttendedHost::new(OneTimeCode::draw(keys.routing, rng), offer, now)
    });
    let shown = host.code().display();
    let (v, a1, mut tries) = clock.on(Side::Viewer, || {
        let code = OneTimeCode::parse(&shown).expect("code");
        let mut tries = ViewerAttempts::new();
        let (v, a1) = viewer::start(&code, offer, DtlsFingerprint([2; 32]), &mut tries, now, rng)
            .expect("a1");
        (v, a1, tries)
    });
    let (h, a2) = clock.on(Side::Host, || {
        host.handle_a1(now, &a1, &keys.host, "host", DtlsFingerprint([1; 32]), rng)
            .expect("a2")
    });
    let (waiting, a3) = clock.on(Side::Viewer, || {
        v.handle_a2(&a2, &keys.viewer, "viewer", &mut tries, now)
            .expect("a3")
    });
    let (_est, host_sealed, accept) = clock.on(Side::Host, || {
        host.handle_a3(now, h, &a3)
            .expect("confirmed")
            .approve(Permissions::ALL)
    });
    let viewer_sealed = clock.on(Side::Viewer, || {
        let Ok((_est, sealed)) = waiting.handle(&accept).expect("accept") else {
            panic!("the host refused")
        };
        sealed
    });
    (viewer_sealed, host_sealed)
}

/// The viewer's pin of the host and the host's registry with the viewer paired.
fn pairing(keys: &Keys) -> (PinnedHost, PairingRegistry) {
    let mut registry = PairingRegistry::new();
    registry
        .pair(PairedDevice {
            key: keys.viewer.public(),
            label: "v".into(),
            permissions: Permissions::ALL,
            added_at: 0,
            revoked: false,
        })
        .expect("pair");
    let pin = PinnedHost {
        routing: keys.routing,
        key: keys.host.public(),
        label: "h".into(),
        added_at: 0,
    };
    (pin, registry)
}

/// One unattended handshake; the time of `clock`'s side.
fn unattended_once(
    keys: &Keys,
    offer: &Offer,
    pairing: &(PinnedHost, PairingRegistry),
    rng: &mut ChaCha20Rng,
    clock: &mut Clock,
) {
    let (pin, registry) = pairing;
    let (v, b1) = clock.on(Side::Viewer, || {
        unattended::viewer::start(pin, offer, DtlsFingerprint([2; 32]), rng)
    });
    let (h, b2) = clock.on(Side::Host, || {
        let info = unattended::host::HostInfo {
            routing: keys.routing,
            identity: &keys.host,
            label: "h",
            offer,
        };
        unattended::host::handle_b1(info, &b1, DtlsFingerprint([1; 32]), rng).expect("b2")
    });
    let (waiting, b3) = clock.on(Side::Viewer, || {
        v.handle_b2(&b2, &keys.viewer, "v", Permissions::VIEW)
            .expect("b3")
    });
    let (_est, _sealed, accept) = clock.on(Side::Host, || h.handle_b3(&b3, registry).expect("b3"));
    let ok = clock.on(Side::Viewer, || {
        waiting.handle(&accept).expect("accept").is_ok()
    });
    assert!(ok, "the host refused");
}

const SIDES: [(&str, Option<Side>); 3] = [
    ("both", None),
    ("viewer", Some(Side::Viewer)),
    ("host", Some(Side::Host)),
];

fn handshakes(c: &mut Criterion) {
    let keys = Keys::new();
    let mut group = c.benchmark_group("attended");
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        let offer = Offer::with_suites(&[suite]);
        for (name, side) in SIDES {
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            group.bench_function(format!("{suite:?}/{name}"), |b| {
                b.iter_custom(|iters| {
                    let mut clock = Clock::new(side);
                    for _ in 0..iters {
                        black_box(attended(&keys, &offer, &mut rng, &mut clock));
                    }
                    clock.spent
                });
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("unattended");
    let offer = Offer::default();
    let pairing = pairing(&keys);
    for (name, side) in SIDES {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut clock = Clock::new(side);
                for _ in 0..iters {
                    unattended_once(&keys, &offer, &pairing, &mut rng, &mut clock);
                }
                clock.spent
            });
        });
    }
    group.finish();
}

fn sealed(c: &mut Criterion) {
    let keys = Keys::new();
    let mut group = c.benchmark_group("sealed");
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        let offer = Offer::with_suites(&[suite]);
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (mut vs, mut hs) = attended(&keys, &offer, &mut rng, &mut Clock::new(None));
        // 200 bytes: an ICE candidate; 4 KiB: an SDP offer.
        for size in [200usize, 4096] {
            group.throughput(Throughput::Bytes(size as u64));
            let body = vec![0x61u8; size];
            group.bench_function(BenchmarkId::new(format!("{suite:?}/seal"), size), |b| {
                b.iter(|| {
                    hs.seal(SealedKind::Candidate, black_box(&body))
                        .expect("seal")
                });
            });
            group.bench_function(BenchmarkId::new(format!("{suite:?}/open"), size), |b| {
                b.iter_custom(|iters| {
                    // Each message opens once, in order (sequence numbers only go up).
                    let msgs: Vec<Vec<u8>> = (0..iters)
                        .map(|_| hs.seal(SealedKind::Candidate, &body).expect("seal"))
                        .collect();
                    let start = Instant::now();
                    for m in &msgs {
                        black_box(vs.open(m).expect("open"));
                    }
                    start.elapsed()
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = handshakes, sealed
}
criterion_main!(benches);
