//! The recorder under stress (DESIGN.md §7). Crash safety: 200 times, a real recorder process — the
//! same `RecordingSink` thread and age encryption the host uses, fed 60 frames a second — is
//! killed with SIGKILL at a random moment. Every time, every segment file present verifies and
//! opens, the recording reads as truncated exactly where the files end, at most the open
//! segment is lost (every segment the recorder had reported durable is there), and the frames
//! that survive are a gap-free prefix of what was recorded.
//!
//! The recorder is this test binary re-run as a child (`RECORDER_CHILD` set), so the test
//! needs nothing but itself; segments are made small (100 ms / 64 KiB) so that kills land
//! during segment writes as often as between them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests fail by panicking; the child reports on stdout"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use sealdesk_auth::IdentityKey;
use sealdesk_client::recording::{read_segment, segment_files, RecordingSink};
use sealdesk_record::body::{Record, VideoCodec};
use sealdesk_record::cert::RecipientCertificate;
use sealdesk_record::owner::OwnerKey;
use sealdesk_record::segment::{inspect, open, Recorder, SegmentPolicy};
use sealdesk_record::verify::{verify, Verdict};
use sealdesk_record::RecordingId;

const CHILD_ENV: &str = "RECORDER_CHILD";
const KILLS: usize = 200;
const PARALLEL: usize = 4;

fn recorder_key() -> IdentityKey {
    IdentityKey::from_seed(&[3; 32])
}

/// The child: records frames numbered 0, 1, 2, … until it is killed, printing
/// `durable N` each time the N-th segment has been made durable.
fn child(dir: PathBuf, owner_file: &Path) -> ! {
    let owner = OwnerKey::from_file_bytes(&std::fs::read(owner_file).unwrap()).unwrap();
    let ik = Arc::new(recorder_key());
    let cert = RecipientCertificate::issue(&ik, &owner.recipient(), "owner", 1);
    let verified = cert.verify(|k| *k == ik.public()).unwrap();
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let recorder = Recorder::new(
        RecordingId(id),
        0,
        ik,
        verified,
        SegmentPolicy {
            max_duration_us: 100_000,
            max_bytes: 64 << 10,
        },
    );
    let sink = RecordingSink::start(dir, recorder, Instant::now(), None).unwrap();
    let mut out = std::io::stdout();
    let mut reported = 0;
    for n in 0u32.. {
        // A frame: its number, then filler (a keyframe every 30 is larger).
        let mut frame = n.to_be_bytes().to_vec();
        frame.resize(if n % 30 == 0 { 20_000 } else { 1_500 }, (n % 251) as u8);
        sink.video(VideoCodec::Vp9, n % 30 == 0, &frame);
        let durable = sink.segments();
        if durable != reported {
            reported = durable;
            writeln!(out, "durable {durable}").unwrap();
            out.flush().unwrap();
        }
        std::thread::sleep(Duration::from_micros(16_667));
    }
    unreachable!()
}

struct Run {
    dir: tempfile::TempDir,
    reported: u32,
}

fn kill_one(owner_file: &Path, rng: &mut impl rand::Rng) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_recorder_killed_200_times_loses_at_most_its_open_segment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &rec)
        .env("RECORDER_OWNER", owner_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reported = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let reader = {
        let reported = reported.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("durable ") {
                    reported.store(n.parse().unwrap(), std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(rng.gen_range(30..600)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    Run {
        dir,
        reported: reported.load(std::sync::atomic::Ordering::SeqCst),
    }
}

fn check(run: &Run, owner: &OwnerKey, i: usize) -> (u32, usize) {
    let rec = run.dir.path().join("rec");
    let files = match segment_files(&rec) {
        Ok(f) => f,
        // Killed before the directory existed: nothing was reported durable either.
        Err(_) => {
            assert_eq!(run.reported, 0, "kill {i}");
            return (0, 0);
        }
    };
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| read_segment(f).unwrap()).collect();
    let inspected: Vec<_> = bytes.iter().map(|b| inspect(b)).collect();
    let me = recorder_key().public();
    let verdict = verify(&inspected, |k| *k == me);
    let segments = files.len() as u32;
    // Every finished segment verifies; the recording reads as truncated where they end.
    assert_eq!(
        verdict,
        Verdict::Truncated { segments },
        "kill {i}: {files:?}"
    );
    // At most the open segment is lost: all the recorder reported durable is here.
    assert!(
        segments >= run.reported,
        "kill {i}: {segments} segments but {} were reported durable",
        run.reported
    );
    // Every one opens, and the frames are 0, 1, 2, … without a hole.
    let mut next = 0u32;
    for (f, b) in files.iter().zip(&bytes) {
        let (_, records) =
            open(b, owner.identity()).unwrap_or_else(|e| panic!("kill {i}: {}: {e}", f.display()));
        for r in records {
            if let Record::Video { data, .. } = r.record {
                let n = u32::from_be_bytes(data[..4].try_into().unwrap());
                assert_eq!(n, next, "kill {i}: frame {n} where {next} was due");
                next += 1;
            }
        }
    }
    // No stray files but temporaries of the open segment.
    for e in std::fs::read_dir(&rec).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            name.ends_with(".sdseg") || (name.starts_with('.') && name.ends_with(".part")),
            "kill {i}: stray file {name}"
        );
    }
    (segments, next as usize)
}

#[test]
fn a_recorder_killed_200_times_loses_at_most_its_open_segment() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let owner = PathBuf::from(std::env::var_os("RECORDER_OWNER").unwrap());
        child(PathBuf::from(dir), &owner);
    }
    let keys = tempfile::tempdir().unwrap();
    let owner = OwnerKey::generate();
    let owner_file = keys.path().join("owner.key");
    std::fs::write(&owner_file, owner.to_file_bytes("test").as_slice()).unwrap();
    let seed: u64 = rand::random();
    eprintln!("kill schedule seed {seed}");
    let started = Instant::now();
    let results: Vec<(u32, usize, u32)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|w| {
                let owner_file = &owner_file;
                let owner = &owner;
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + w as u64);
                    (0..KILLS / PARALLEL)
                        .map(|k| {
                            let run = kill_one(owner_file, &mut rng);
                            let (segments, frames) = check(&run, owner, w * 1000 + k);
                            (segments, frames, run.reported)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), KILLS);
    let with_segments = results.iter().filter(|r| r.0 > 0).count();
    let lost_open = results.iter().filter(|r| r.0 > r.2).count();
    eprintln!(
        "{KILLS} kills in {:.1} s: {with_segments} left segments (up to {} segments, {} frames); \
         {lost_open} had finished a segment not yet reported",
        started.elapsed().as_secs_f64(),
        results.iter().map(|r| r.0).max().unwrap_or(0),
        results.iter().map(|r| r.1).max().unwrap_or(0),
    );
    // The schedule must actually kill mid-recording, most of the time after some segments.
    assert!(
        with_segments >= KILLS / 2,
        "{with_segments} of {KILLS} runs left segments"
    );
}

/// A producer much faster than the disk: the queue fills, video is dropped until the next
/// keyframe (never a frame that cannot decode), the loss is recorded as an event with its
/// count, and nothing is lost silently.
#[test]
fn a_full_queue_drops_video_until_a_keyframe_and_says_how_much() {
    let dir = tempfile::tempdir().unwrap();
    let owner = OwnerKey::generate();
    let ik = Arc::new(recorder_key());
    let cert = RecipientCertificate::issue(&ik, &owner.recipient(), "owner", 1);
    let verified = cert.verify(|k| *k == ik.public()).unwrap();
    let recorder = Recorder::new(
        RecordingId([7; 16]),
        0,
        ik,
        verified,
        SegmentPolicy::default(),
    );
    let rec = dir.path().join("rec");
    let sink = RecordingSink::start(rec.clone(), recorder, Instant::now(), None).unwrap();
    let frame = |n: u32| {
        let mut f = vec![0x5a; 20_000];
        f[..4].copy_from_slice(&n.to_be_bytes());
        f
    };
    // A burst far faster than any encoder: the queue fills and video is dropped.
    let burst = 3000u32;
    for n in 0..burst {
        sink.video(VideoCodec::Vp9, n == 0, &frame(n));
    }
    assert!(
        sink.wants_keyframe(),
        "the queue never filled: the test proves nothing"
    );
    // Delta frames keep being dropped until the keyframe the sink asks for arrives.
    std::thread::sleep(Duration::from_secs(2));
    sink.video(VideoCodec::Vp9, false, &frame(burst));
    assert!(sink.wants_keyframe());
    for n in burst + 1..burst + 11 {
        sink.video(VideoCodec::Vp9, n == burst + 1, &frame(n));
        std::thread::sleep(Duration::from_micros(16_667));
    }
    assert!(!sink.wants_keyframe());
    let pushed = burst + 11;
    let summary = sink.finish();
    assert!(summary.error.is_none(), "{summary:?}");

    let mut recorded = 0u32;
    let mut lost = 0u32;
    let mut after_loss = false;
    for f in segment_files(&rec).unwrap() {
        let (_, records) = open(&read_segment(&f).unwrap(), owner.identity()).unwrap();
        for r in records {
            match r.record {
                Record::Event(sealdesk_record::body::Event::FramesLost { count }) => {
                    assert!(count > 0);
                    lost += count;
                    after_loss = true;
                }
                Record::Video { keyframe, .. } => {
                    // What follows a loss starts with a keyframe: the recording decodes.
                    assert!(!after_loss || keyframe, "a delta frame right after a loss");
                    after_loss = false;
                    recorded += 1;
                }
                _ => {}
            }
        }
    }
    assert!(lost > 0);
    // Every frame is either recorded or counted as lost.
    assert_eq!(recorded + lost, pushed, "{recorded} recorded + {lost} lost");
    assert!(recorded >= 11);
    eprintln!("{pushed} frames: {recorded} recorded, {lost} counted lost");
}
