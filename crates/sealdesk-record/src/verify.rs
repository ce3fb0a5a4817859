//! Checks a recording's segments against their signed, hash-chained manifest entries, without
//! any secret key, and reports exactly one [`Verdict`].
//!
//! The segments are given in the order they were presented (a directory's files sorted by
//! name, or a download's order). Position `n` should hold segment `n`; the first thing that
//! is not so is reported, with the segment and the reason.

use sealdesk_proto::DeviceKey;

use crate::segment::{start_link, Inspected};
use crate::RecordingId;

/// Why a segment is forged or corrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broken {
    /// The file is not a segment at all (bad magic, bad entry).
    Malformed(&'static str),
    /// The entry's signature does not verify: altered, or made without the recorder's key.
    BadSignature,
    /// The signature verifies, under a key the verifier does not trust.
    UntrustedRecorder(DeviceKey),
    /// Signed by another key than the rest of the recording.
    OtherRecorder(DeviceKey),
    /// A validly signed segment of another recording, spliced in.
    OtherRecording(RecordingId),
    /// The entry does not chain to the one before (a fork of the recording).
    ChainBroken,
    /// The age file does not have the length and hash its entry signs.
    ContentAltered,
    /// More segments after the one marked final.
    AfterFinal,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Malformed(why) => write!(f, "it is not a recording segment ({why})"),
            Broken::BadSignature => f.write_str(
                "its manifest entry's signature does not verify (altered, or not made by the recorder)",
            ),
            Broken::UntrustedRecorder(k) => write!(
                f,
                "it is signed by device {}, which is not a recorder you trust",
                sealdesk_auth::DeviceFingerprint::of(k).short()
            ),
            Broken::OtherRecorder(k) => write!(
                f,
                "it is signed by device {}, not by the device that recorded the rest",
                sealdesk_auth::DeviceFingerprint::of(k).short()
            ),
            Broken::OtherRecording(id) => {
                write!(f, "it belongs to another recording ({id}), spliced in")
            }
            Broken::ChainBroken => {
                f.write_str("its manifest entry does not chain to the previous segment's")
            }
            Broken::ContentAltered => {
                f.write_str("its encrypted content does not match the hash its entry signs")
            }
            Broken::AfterFinal => f.write_str("it follows the segment marked final"),
        }
    }
}

/// The one outcome of verifying a recording. `at` is a position (= the segment number it
/// should hold), from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every segment present, in order, intact, ending with the final one.
    Complete {
        /// How many.
        segments: u32,
    },
    /// Intact and in order, but the final segment never came: the recorder stopped (crash,
    /// power loss) or the tail was removed. `segments` are good (0 = none at all).
    Truncated {
        /// How many good segments there are.
        segments: u32,
    },
    /// Segment `at` is missing (position `at` holds a later one, and no later position holds it).
    Gap {
        /// Position.
        at: u32,
        /// The segment found there instead.
        found: u32,
    },
    /// Position `at` holds segment `found`, and segment `at` comes later.
    Reorder {
        /// Position.
        at: u32,
        /// The segment found there.
        found: u32,
    },
    /// Position `at` holds a second copy of segment `found`.
    Duplicate {
        /// Position.
        at: u32,
        /// The segment copied.
        found: u32,
    },
    /// Position `at` is forged or corrupted.
    Forged {
        /// Position.
        at: u32,
        /// Why.
        reason: Broken,
    },
}

impl Verdict {
    /// How many segments, from the start, are good (export reads these).
    pub fn good_segments(&self) -> u32 {
        match self {
            Verdict::Complete { segments } | Verdict::Truncated { segments } => *segments,
            Verdict::Gap { at, .. }
            | Verdict::Reorder { at, .. }
            | Verdict::Duplicate { at, .. }
            | Verdict::Forged { at, .. } => *at,
        }
    }

    /// Whether the recording is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Verdict::Complete { .. })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Complete { segments } => {
                write!(f, "complete: {segments} segments, all intact and in order")
            }
            Verdict::Truncated { segments: 0 } => {
                f.write_str("truncated: not even the first segment is here")
            }
            Verdict::Truncated { segments } => write!(
                f,
                "truncated after segment {}: segments 0–{} are intact, but the final segment is missing \
                 (the recorder stopped, or the tail was removed)",
                segments - 1,
                segments - 1
            ),
            Verdict::Gap { at: 0, found } => write!(
                f,
                "gap at segment 0: it is missing (the first segment here is segment {found})"
            ),
            Verdict::Gap { at, found } => write!(
                f,
                "gap at segment {at}: it is missing (segment {found} follows segment {})",
                at - 1
            ),
            Verdict::Reorder { at, found } => write!(
                f,
                "reorder at segment {at}: segment {found} is in its place, segment {at} comes later"
            ),
            Verdict::Duplicate { at, found } => write!(
                f,
                "duplicate at segment {at}: a second copy of segment {found} is in its place"
            ),
            Verdict::Forged { at, reason } => {
                write!(f, "forged or corrupted at segment {at}: {reason}")
            }
        }
    }
}

/// Verifies segments in presentation order. `trusted` says whether a recorder key is one
/// the verifier trusts (its own device, a pinned host, a paired device).
pub fn verify(segments: &[Inspected], trusted: impl Fn(&DeviceKey) -> bool) -> Verdict {
    // Which recording this is: the one most validly signed segments belong to (the first on
    // a tie), so that a foreign segment is named even when it is the first one.
    let reference = reference_recording(segments, &trusted);
    let mut prev_link = [0u8; 32];
    let mut links: Vec<[u8; 32]> = Vec::with_capacity(segments.len());
    let mut finished = false;
    for (pos, item) in segments.iter().enumerate() {
        let at = u32::try_from(pos).unwrap_or(u32::MAX);
        let forged = |reason| Verdict::Forged { at, reason };
        let entry = match &item.entry {
            Ok(e) => e,
            Err(why) => return forged(Broken::Malformed(why)),
        };
        if !item.signature_ok {
            return forged(Broken::BadSignature);
        }
        if !trusted(&entry.recorder) {
            return forged(Broken::UntrustedRecorder(entry.recorder));
        }
        let Some((id, recorder)) = reference else {
            return forged(Broken::BadSignature);
        };
        if entry.recording_id != id {
            return forged(Broken::OtherRecording(entry.recording_id));
        }
        if entry.recorder != recorder {
            return forged(Broken::OtherRecorder(entry.recorder));
        }
        if pos == 0 {
            prev_link = start_link(id);
        }
        if entry.seq < at {
            let copy = links
                .get(entry.seq as usize)
                .is_some_and(|l| *l == entry.link());
            if copy {
                return Verdict::Duplicate {
                    at,
                    found: entry.seq,
                };
            }
            return forged(Broken::ChainBroken);
        }
        if finished {
            return forged(Broken::AfterFinal);
        }
        if entry.seq > at {
            let later = segments[pos + 1..].iter().any(|s| {
                s.entry
                    .as_ref()
                    .is_ok_and(|e| e.seq == at && e.recording_id == id && s.signature_ok)
            });
            return if later {
                Verdict::Reorder {
                    at,
                    found: entry.seq,
                }
            } else {
                Verdict::Gap {
                    at,
                    found: entry.seq,
                }
            };
        }
        if entry.prev != prev_link {
            return forged(Broken::ChainBroken);
        }
        if !item.age_ok {
            return forged(Broken::ContentAltered);
        }
        prev_link = entry.link();
        links.push(prev_link);
        finished = entry.is_final;
    }
    let segments = u32::try_from(links.len()).unwrap_or(u32::MAX);
    if finished {
        Verdict::Complete { segments }
    } else {
        Verdict::Truncated { segments }
    }
}

/// The (recording, recorder) most validly signed, trusted segments name; the first on a tie.
fn reference_recording(
    segments: &[Inspected],
    trusted: &impl Fn(&DeviceKey) -> bool,
) -> Option<(RecordingId, DeviceKey)> {
    let mut counts: Vec<((RecordingId, DeviceKey), usize)> = Vec::new();
    for s in segments {
        let Ok(e) = &s.entry else { continue };
        if !s.signature_ok || !trusted(&e.recorder) {
            continue;
        }
        let key = (e.recording_id, e.recorder);
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(k, _)| k)
}
