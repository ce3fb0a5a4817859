//! The session's transport crypto and its per-session and per-frame cost.
//!
//! * `srtp_aead`: the AEADs of str0m's SRTP profiles `SRTP_AEAD_AES_256_GCM` and
//!   `SRTP_AEAD_AES_128_GCM`, called the way str0m's aws-lc-rs backend calls them
//!   (`str0m-aws-lc-rs` `src/srtp.rs`: copy the payload, `seal_in_place_separate_tag` with the
//!   12-byte RTP header as associated data, append the tag; `open_separate_gather` to open), on
//!   RTP-sized payloads. SRTP's key derivation, replay window and header handling are not in
//!   these figures; they are in `str0m_send`.
//! * `session_setup`: two [`Session`]s in memory, from `Session::with_config` (which makes the
//!   DTLS certificate) through offer/answer, ICE, the DTLS handshake and the SCTP control
//!   channel, until both report [`SessionEvent::Ready`]; one side's calls timed. No network,
//!   simulated time: this is the CPU one session's transport setup costs each side.
//! * `str0m_send`: one encoded video frame through a ready session: the host's
//!   [`Session::send_video`] (RTP packetization, SRTP, pacing, its timers and the viewer's RTCP
//!   feedback), or the viewer's receive of it (SRTP open, depacketization), one side's calls
//!   timed; frames of the sizes the 1080p session bench sends (BENCHMARKS.md).
//!
//! `cargo bench -p sealdesk-rtc --bench srtp` (add `-- --quick` for a smoke run).

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark reads the clock and stops at the first setup error; criterion's macros generate items"
)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{
    Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, MAX_TAG_LEN,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealdesk_rtc::{Session, SessionConfig, SessionEvent, VideoCodec};

/// Short runs: the whole set of sealdesk benches should take minutes, not an hour.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// An RTP header's length without extensions: SRTP's associated data.
const RTP_HEADER: usize = 12;

fn srtp_aead(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_aead");
    let ciphers: [(&str, &'static Algorithm, usize); 2] = [
        ("AES_256_GCM", &AES_256_GCM, 32),
        ("AES_128_GCM", &AES_128_GCM, 16),
    ];
    // 1200 bytes: a little more than a full RTP payload (str0m aims at 1150-byte datagrams);
    // 250 bytes: a typing frame's only packet.
    for size in [1200usize, 250] {
        group.throughput(Throughput::Bytes(size as u64));
        for (name, alg, key_len) in ciphers {
            let key = vec![0x42u8; key_len];
            let key = LessSafeKey::new(UnboundKey::new(alg, &key).expect("valid key"));
            let header: [u8; RTP_HEADER] =
                [0x80, 0x62, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut packet = vec![0u8; size + MAX_TAG_LEN];
            let mut index = 0u64;

            group.bench_function(BenchmarkId::new(format!("{name}/seal"), size), |b| {
                b.iter(|| {
                    // A fresh IV per packet, as SRTP's (SSRC, packet index) XOR salt gives.
                    index += 1;
                    let mut iv = [0u8; 12];
                    iv[4..].copy_from_slice(&index.to_be_bytes());
                    let nonce = Nonce::assume_unique_for_key(iv);
                    let (body, tag_out) = packet.split_at_mut(size);
                    body.copy_from_slice(black_box(&payload));
                    let tag = key
                        .seal_in_place_separate_tag(nonce, Aad::from(&header), body)
                        .expect("seals");
                    tag_out.copy_from_slice(tag.as_ref());
                    black_box(&packet);
                });
            });

            // One sealed packet, opened again and again.
            let iv = [7u8; 12];
            let (body, tag_out) = packet.split_at_mut(size);
            body.copy_from_slice(&payload);
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(&header),
                    body,
                )
                .expect("seals");
            tag_out.copy_from_slice(tag.as_ref());
            let mut plain = vec![0u8; size];
            group.bench_function(BenchmarkId::new(format!("{name}/open"), size), |b| {
                b.iter(|| {
                    let (ct, tag) = packet.split_at(size);
                    key.open_separate_gather(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&header),
                        black_box(ct),
                        tag,
                        &mut plain,
                    )
                    .expect("opens");
                    black_box(&plain);
                });
            });
        }
    }
    group.finish();
}

const V_ADDR: &str = "127.0.0.1:40001";
const H_ADDR: &str = "127.0.0.1:40002";
/// The host's first bandwidth estimate (sealdesk-host `agent::START_ESTIMATE_KBPS`).
const HOST_START_KBPS: u32 = 16_000;

/// Which side's calls a measurement counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Viewer,
    Host,
}

/// A viewer and a host session in simulated time, with the time each side spent in its calls.
struct Pair {
    v: Session,
    h: Session,
    now: Instant,
    timed: Side,
    spent: Duration,
}

impl Pair {
    /// Runs `f` on one side, counting its time if that side is timed.
    fn on<R>(&mut self, side: Side, f: impl FnOnce(&mut Session, Instant) -> R) -> R {
        let now = self.now;
        let start = Instant::now();
        let r = match side {
            Side::Viewer => f(&mut self.v, now),
            Side::Host => f(&mut self.h, now),
        };
        if side == self.timed {
            self.spent += start.elapsed();
        }
        r
    }

    /// Two new sessions (the host and viewer configurations sealdesk uses), offer and answer
    /// exchanged directly (the handshake that authenticates them is `sealdesk-auth`'s bench).
    fn new(now: Instant, timed: Side) -> Self {
        let timed_start = |side: Side| (side == timed).then(Instant::now);
        let start = timed_start(Side::Viewer);
        let v = Session::with_config(
            now,
            V_ADDR.parse().expect("address"),
            &SessionConfig::default(),
        )
        .expect("viewer session");
        let spent_v = start.map(|s| s.elapsed());
        let start = timed_start(Side::Host);
        let h = Session::with_config(
            now,
            H_ADDR.parse().expect("address"),
            &SessionConfig {
                codecs: vec![VideoCodec::Vp9, VideoCodec::Vp8],
                initial_kbps: Some(HOST_START_KBPS),
                host_candidate: true,
            },
        )
        .expect("host session");
        let spent_h = start.map(|s| s.elapsed());
        // Creating the session (its DTLS key and certificate) counts for the timed side.
        let mut pair = Self {
            v,
            h,
            now,
            timed,
            spent: spent_v.or(spent_h).unwrap_or_default(),
        };
        let fp_v = pair.v.local_fingerprint();
        let fp_h = pair.h.local_fingerprint();
        let offer = pair.on(Side::Viewer, |v, _| {
            v.set_peer_fingerprint(fp_h);
            v.create_offer().expect("offer")
        });
        let answer = pair.on(Side::Host, |h, _| {
            h.set_peer_fingerprint(fp_v);
            h.accept_offer(&offer).expect("answer")
        });
        pair.on(Side::Viewer, |v, _| {
            v.accept_answer(&answer).expect("accept")
        });
        pair
    }

    /// Delivers every pending datagram both ways, once; true if any moved.
    fn exchange(&mut self) -> bool {
        let (va, ha): (SocketAddr, SocketAddr) = (
            V_ADDR.parse().expect("address"),
            H_ADDR.parse().expect("address"),
        );
        let mut moved = false;
        let to_host: Vec<_> = self.on(Side::Viewer, |v, _| {
            std::iter::from_fn(|| v.poll_transmit()).collect()
        });
        for t in to_host {
            moved = true;
            self.on(Side::Host, |h, now| {
                h.handle_receive(now, va, t.destination, &t.contents)
            });
        }
        let to_viewer: Vec<_> = self.on(Side::Host, |h, _| {
            std::iter::from_fn(|| h.poll_transmit()).collect()
        });
        for t in to_viewer {
            moved = true;
            self.on(Side::Viewer, |v, now| {
                v.handle_receive(now, ha, t.destination, &t.contents)
            });
        }
        moved
    }

    /// Both sides' events since the last call: (viewer, host).
    fn events(&mut self) -> (Vec<SessionEvent>, Vec<SessionEvent>) {
        let v = self.on(Side::Viewer, |v, _| {
            std::iter::from_fn(|| v.poll_event()).collect()
        });
        let h = self.on(Side::Host, |h, _| {
            std::iter::from_fn(|| h.poll_event()).collect()
        });
        (v, h)
    }

    /// Runs both sides' timers that are due at `self.now`.
    fn timers(&mut self) {
        self.on(Side::Viewer, |v, now| {
            if v.poll_timeout() <= now {
                v.handle_timeout(now);
            }
        });
        self.on(Side::Host, |h, now| {
            if h.poll_timeout() <= now {
                h.handle_timeout(now);
            }
        });
    }

    /// Moves packets, and time up to `until`, running each timer when it falls due.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000 {
            while self.exchange() {}
            let due = self.v.poll_timeout().min(self.h.poll_timeout());
            if due > until {
                break;
            }
            self.now = self.now.max(due);
            self.timers();
        }
        self.now = until;
    }

    /// Moves packets and time until both sides are ready.
    fn connect(&mut self) {
        let ready = |e: &[SessionEvent]| e.iter().any(|e| matches!(e, SessionEvent::Ready { .. }));
        let (mut v_ready, mut h_ready) = (false, false);
        for _ in 0..20_000 {
            let moved = self.exchange();
            let (ve, he) = self.events();
            v_ready |= ready(&ve);
            h_ready |= ready(&he);
            if v_ready && h_ready {
                return;
            }
            if !moved {
                self.now = self
                    .now
                    .max(self.v.poll_timeout().min(self.h.poll_timeout()))
                    + Duration::from_millis(1);
                self.timers();
            }
        }
        panic!("the sessions did not connect");
    }
}

fn session_setup(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_setup");
    for (name, side) in [("host", Side::Host), ("viewer", Side::Viewer)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut pair = Pair::new(Instant::now(), side);
                    pair.connect();
                    total += pair.spent;
                }
                total
            });
        });
    }
    group.finish();
}

fn str0m_send(c: &mut Criterion) {
    let mut group = c.benchmark_group("str0m_send");
    // Bytes per frame of the 1080p session bench (BENCHMARKS.md, kbps / fps / 8):
    // typing 115 kbps at 59.4 fps, video 1846 kbps at 59.2 fps, scrolling 3717 kbps at 57.4 fps.
    for (scenario, bytes) in [("typing", 242usize), ("video", 3_898), ("scrolling", 8_094)] {
        group.throughput(Throughput::Bytes(bytes as u64));
        let frame: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        for (name, side) in [("host", Side::Host), ("viewer", Side::Viewer)] {
            let mut pair = Pair::new(Instant::now(), side);
            pair.connect();
            let mut time_90khz = 0u64;
            let (mut sent, mut received) = (0u64, 0u64);
            group.bench_function(BenchmarkId::new(format!("{scenario}/{name}"), bytes), |b| {
                b.iter_custom(|iters| {
                    pair.spent = Duration::ZERO;
                    for _ in 0..iters {
                        // One frame every 1/60 s of simulated time; the timers (pacer,
                        // RTCP, ICE consent) and the feedback in between run as they fall due.
                        pair.run_until(pair.now + Duration::from_micros(16_667));
                        time_90khz += 1_500;
                        pair.on(Side::Host, |h, now| {
                            h.send_video(now, VideoCodec::Vp9, time_90khz, &frame)
                                .expect("send")
                        });
                        while pair.exchange() {}
                        sent += 1;
                        let (ve, _) = pair.events();
                        received += ve
                            .iter()
                            .filter(|e| {
                                matches!(e, SessionEvent::Video { data, .. } if data.len() == bytes)
                            })
                            .count() as u64;
                    }
                    pair.spent
                });
            });
            // The frames must have arrived whole (the last may still be in flight): not queued
            // in the pacer, not lost.
            assert!(
                received + 1 >= sent,
                "{scenario}: {received} of {sent} frames reached the viewer"
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = srtp_aead, session_setup, str0m_send
}
criterion_main!(benches);
