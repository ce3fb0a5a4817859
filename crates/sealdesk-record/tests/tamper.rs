//! The tampering matrix at the format level: every way of damaging a recording is reported
//! exactly, at the right segment, without the owner's key; the owner's key opens what verifies.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use rand::{Rng as _, SeedableRng as _};
use sealdesk_auth::IdentityKey;
use sealdesk_proto::SignatureBytes;
use sealdesk_record::body::{Event, Record, VideoCodec};
use sealdesk_record::cert::RecipientCertificate;
use sealdesk_record::owner::OwnerKey;
use sealdesk_record::segment::{
    inspect, open, Entry, Recorder, Segment, SegmentPolicy, AGE_OFFSET, MAGIC,
};
use sealdesk_record::verify::{verify, Broken, Verdict};
use sealdesk_record::RecordingId;

struct World {
    recorder_key: Arc<IdentityKey>,
    owner: OwnerKey,
    owner_ik: IdentityKey,
}

impl World {
    fn new() -> Self {
        Self {
            recorder_key: Arc::new(IdentityKey::from_seed(&[1; 32])),
            owner: OwnerKey::generate(),
            owner_ik: IdentityKey::from_seed(&[2; 32]),
        }
    }

    fn recorder(&self, id: u8) -> Recorder {
        let cert = RecipientCertificate::issue(&self.owner_ik, &self.owner.recipient(), "owner", 1);
        let verified = cert.verify(|k| *k == self.owner_ik.public()).unwrap();
        Recorder::new(
            RecordingId([id; 16]),
            1_764_000_000_000,
            self.recorder_key.clone(),
            verified,
            SegmentPolicy {
                max_duration_us: 2_000_000,
                max_bytes: 4096,
            },
        )
    }

    /// A recording of `n` segments (n-1 filled by size, then the final one).
    fn record(&self, id: u8, n: usize) -> Vec<Segment> {
        let mut r = self.recorder(id);
        let mut out = Vec::new();
        let mut t = 0;
        r.push(
            0,
            Record::Event(Event::Started {
                by_host: true,
                peer_fingerprint: [5; 32],
                peer_label: "viewer".into(),
            }),
        )
        .unwrap();
        while out.len() < n - 1 {
            t += 16_000;
            let frame = Record::Video {
                codec: VideoCodec::Vp9,
                keyframe: t == 16_000,
                data: vec![(t / 1000) as u8; 1500],
            };
            if let Some(s) = r.push(t, frame).unwrap() {
                out.push(s);
            }
        }
        out.push(r.finish().unwrap());
        out
    }

    fn trusted(&self) -> impl Fn(&sealdesk_proto::DeviceKey) -> bool + '_ {
        |k| *k == self.recorder_key.public()
    }

    fn verdict(&self, files: &[Vec<u8>]) -> Verdict {
        let inspected: Vec<_> = files.iter().map(|f| inspect(f)).collect();
        verify(&inspected, self.trusted())
    }
}

fn files(segments: &[Segment]) -> Vec<Vec<u8>> {
    segments.iter().map(|s| s.bytes.clone()).collect()
}

#[test]
fn an_untouched_recording_is_complete_and_opens_with_the_owner_key_only() {
    let w = World::new();
    let segs = w.record(1, 6);
    assert_eq!(w.verdict(&files(&segs)), Verdict::Complete { segments: 6 });
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.entry.seq as usize, i);
        assert_eq!(s.file_name(), format!("{i:06}.sdseg"));
        assert_eq!(&s.bytes[..8], MAGIC);
        let (entry, records) = open(&s.bytes, w.owner.identity()).unwrap();
        assert_eq!(entry, s.entry);
        assert!(!records.is_empty() || entry.is_final);
    }
    // The first segment starts with the Started event and the first (key) frame.
    let (_, first) = open(&segs[0].bytes, w.owner.identity()).unwrap();
    assert!(matches!(
        first[0].record,
        Record::Event(Event::Started { .. })
    ));
    assert!(matches!(
        first[1].record,
        Record::Video { keyframe: true, .. }
    ));
    // Anyone else's key opens nothing.
    let stranger = OwnerKey::generate();
    assert!(open(&segs[0].bytes, stranger.identity()).is_err());
}

#[test]
fn a_segment_is_a_standard_age_file_after_its_entry() {
    let w = World::new();
    let segs = w.record(1, 2);
    let age_part = &segs[0].bytes[AGE_OFFSET..];
    assert!(age_part.starts_with(b"age-encryption.org/v1\n"));
    let plain = age::decrypt(w.owner.identity(), age_part).unwrap();
    assert!(plain.starts_with(b"sdrecb01"));
}

#[test]
fn dropped_reordered_duplicated_and_truncated_segments_are_reported_where_they_are() {
    let w = World::new();
    let good = files(&w.record(1, 6));

    let mut dropped = good.clone();
    dropped.remove(2);
    assert_eq!(w.verdict(&dropped), Verdict::Gap { at: 2, found: 3 });

    let mut first_dropped = good.clone();
    first_dropped.remove(0);
    assert_eq!(w.verdict(&first_dropped), Verdict::Gap { at: 0, found: 1 });

    let mut swapped = good.clone();
    swapped.swap(2, 3);
    assert_eq!(w.verdict(&swapped), Verdict::Reorder { at: 2, found: 3 });

    let mut duplicated = good.clone();
    duplicated.insert(3, good[2].clone());
    assert_eq!(
        w.verdict(&duplicated),
        Verdict::Duplicate { at: 3, found: 2 }
    );

    let mut final_twice = good.clone();
    final_twice.push(good[5].clone());
    assert_eq!(
        w.verdict(&final_twice),
        Verdict::Duplicate { at: 6, found: 5 }
    );

    let truncated = good[..4].to_vec();
    let v = w.verdict(&truncated);
    assert_eq!(v, Verdict::Truncated { segments: 4 });
    assert!(
        v.to_string().starts_with("truncated after segment 3"),
        "{v}"
    );
    assert_eq!(w.verdict(&[]), Verdict::Truncated { segments: 0 });

    // A segment file cut short (a torn copy) is content that does not match its entry.
    let mut cut = good.clone();
    let len = cut[4].len();
    cut[4].truncate(len - 10);
    assert_eq!(
        w.verdict(&cut),
        Verdict::Forged {
            at: 4,
            reason: Broken::ContentAltered
        }
    );
}

#[test]
fn every_bit_flip_is_caught_at_its_segment() {
    let w = World::new();
    let good = files(&w.record(1, 4));
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let len = good[1].len();
    // Every bit of the magic and the entry, and a sample of the age file.
    let positions: Vec<usize> = (0..AGE_OFFSET)
        .chain((0..300).map(|_| rng.gen_range(AGE_OFFSET..len)))
        .collect();
    for byte in positions {
        for bit in 0..8 {
            let mut files = good.clone();
            files[1][byte] ^= 1 << bit;
            match w.verdict(&files) {
                Verdict::Forged { at: 1, .. } => {}
                other => panic!("flip at byte {byte} bit {bit}: {other:?}"),
            }
            if byte >= AGE_OFFSET {
                assert_eq!(
                    w.verdict(&files),
                    Verdict::Forged {
                        at: 1,
                        reason: Broken::ContentAltered
                    }
                );
            }
        }
    }
}

#[test]
fn a_segment_spliced_from_another_recording_is_named() {
    let w = World::new();
    let a = files(&w.record(1, 5));
    let b = files(&w.record(2, 5));
    let mut spliced = a.clone();
    spliced[2] = b[2].clone();
    assert_eq!(
        w.verdict(&spliced),
        Verdict::Forged {
            at: 2,
            reason: Broken::OtherRecording(RecordingId([2; 16]))
        }
    );
    // Even as the first segment, the foreign one is named (the recording is what most
    // segments say it is).
    let mut first = a.clone();
    first[0] = b[0].clone();
    assert_eq!(
        w.verdict(&first),
        Verdict::Forged {
            at: 0,
            reason: Broken::OtherRecording(RecordingId([2; 16]))
        }
    );
    // A fork: the recorder's own key, the same recording id, another history.
    let fork = files(&w.record(1, 5));
    let mut forked = a.clone();
    forked[3] = fork[3].clone();
    assert_eq!(
        w.verdict(&forked),
        Verdict::Forged {
            at: 3,
            reason: Broken::ChainBroken
        }
    );
}

#[test]
fn server_forged_segments_are_refused() {
    let w = World::new();
    let good = w.record(1, 4);
    // The server encrypts its own content to the owner's recipient (it knows it) and
    // (a) keeps the recorder's entry: the hash does not match;
    let forged_body = age::encrypt(&w.owner.recipient(), b"sdrecb01 fake").unwrap();
    let mut kept_entry = good[2].bytes[..AGE_OFFSET].to_vec();
    kept_entry.extend_from_slice(&forged_body);
    let mut files1 = files(&good);
    files1[2] = kept_entry;
    assert_eq!(
        w.verdict(&files1),
        Verdict::Forged {
            at: 2,
            reason: Broken::ContentAltered
        }
    );
    // (b) writes a matching entry claiming the recorder's key, without its signature;
    let mut entry = good[2].entry.clone();
    entry.age_len = forged_body.len() as u64;
    entry.age_hash = sha2_256(&forged_body);
    entry.signature = SignatureBytes([7; 64]);
    let mut unsigned = MAGIC.to_vec();
    unsigned.extend_from_slice(&entry.to_bytes());
    unsigned.extend_from_slice(&forged_body);
    let mut files2 = files(&good);
    files2[2] = unsigned;
    assert_eq!(
        w.verdict(&files2),
        Verdict::Forged {
            at: 2,
            reason: Broken::BadSignature
        }
    );
    // (c) records a whole recording of its own with its own key: not a trusted recorder.
    let server = World {
        recorder_key: Arc::new(IdentityKey::from_seed(&[66; 32])),
        owner: OwnerKey::generate(),
        owner_ik: IdentityKey::from_seed(&[2; 32]),
    };
    let theirs = files(&server.record(1, 3));
    let v = w.verdict(&theirs);
    assert!(
        matches!(
            v,
            Verdict::Forged {
                at: 0,
                reason: Broken::UntrustedRecorder(_)
            }
        ),
        "{v:?}"
    );
    let mut mixed = files(&good);
    mixed[1] = theirs[1].clone();
    assert!(matches!(
        w.verdict(&mixed),
        Verdict::Forged {
            at: 1,
            reason: Broken::UntrustedRecorder(_)
        }
    ));
    // Garbage is named as such.
    let mut garbage = files(&good);
    garbage[3] = b"GET /../../etc/passwd".to_vec();
    assert!(matches!(
        w.verdict(&garbage),
        Verdict::Forged {
            at: 3,
            reason: Broken::Malformed(_)
        }
    ));
}

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

#[test]
fn segments_close_by_time_and_by_size_and_chain() {
    let w = World::new();
    let mut r = w.recorder(3);
    assert!(
        r.poll(10_000_000).unwrap().is_none(),
        "nothing buffered: nothing to close"
    );
    r.push(100, Record::Event(Event::Monitor { index: 0 }))
        .unwrap();
    assert!(r.poll(1_999_000).unwrap().is_none());
    let by_time = r.poll(2_000_100).unwrap().unwrap();
    assert_eq!((by_time.entry.seq, by_time.entry.is_final), (0, false));
    let big = Record::Video {
        codec: VideoCodec::Vp8,
        keyframe: true,
        data: vec![0; 5000],
    };
    let by_size = r.push(2_100_000, big).unwrap().unwrap();
    assert_eq!(by_size.entry.seq, 1);
    assert_eq!(by_size.entry.prev, by_time.entry.link());
    // Time never goes backwards inside a recording.
    r.push(5, Record::Event(Event::Ended { reason: "x".into() }))
        .unwrap();
    let last = r.finish().unwrap();
    assert!(last.entry.is_final && last.entry.start_us >= 2_100_000);
    let parsed = Entry::parse(&last.bytes[MAGIC.len()..AGE_OFFSET]).unwrap();
    assert_eq!(parsed, last.entry);
}
