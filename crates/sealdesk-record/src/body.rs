//! The plaintext inside a segment's age file: a short header binding it to its recording and
//! place, then records.
//!
//! ```text
//! body    = "sdrecb01" ‖ recording_id[16] ‖ seq u32 ‖ record*
//! record  = kind u8 ‖ t_us u64 ‖ len u32 ‖ payload[len]      (big-endian; t_us from the recording's start)
//! kind 1  = video:  codec u8 (8 = VP8, 9 = VP9) ‖ flags u8 (bit 0 keyframe) ‖ bitstream
//! kind 2  = event:  tag u8 ‖ fields (see [`Event`])
//! ```
//!
//! Video is the encoder's output exactly as sent, so export needs no re-encode. Clipboard
//! transfers are events with the size only unless the recorder was asked to keep content.

use crate::RecordingId;

const MAGIC: &[u8; 8] = b"sdrecb01";
/// Bytes before the first record.
pub const HEADER_LEN: usize = 8 + 16 + 4;
/// The largest single record payload accepted (a 4K keyframe is well under this).
pub const MAX_RECORD: usize = 8 << 20;
/// The largest body accepted when opening a segment.
pub const MAX_BODY: usize = 32 << 20;
/// Longest text field in an event, in bytes (clipboard content is cut to this).
pub const MAX_TEXT: usize = 64 << 10;

/// A video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
}

/// Something that happened in the session (no screen content; clipboard text only if asked).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The recording started: who recorded (`host` true for the host), and the other party.
    Started {
        /// Recorded by the host (else by the viewer).
        by_host: bool,
        /// The other party's device fingerprint.
        peer_fingerprint: [u8; 32],
        /// The other party's label.
        peer_label: String,
    },
    /// Input the viewer sent since the last such event (counts only).
    Input {
        /// Key presses.
        keys: u32,
        /// Button presses.
        buttons: u32,
        /// Pointer motions.
        motions: u32,
        /// Wheel steps.
        wheel: u32,
    },
    /// Clipboard text moved.
    Clipboard {
        /// Host → viewer.
        to_viewer: bool,
        /// Its size in bytes.
        bytes: u32,
        /// The text itself, only when the recorder was asked to keep it.
        content: Option<String>,
    },
    /// The viewer selected another monitor.
    Monitor {
        /// Its index.
        index: u8,
    },
    /// The recorder could not keep up and dropped frames; video resumes at the next keyframe.
    FramesLost {
        /// How many.
        count: u32,
    },
    /// The session ended.
    Ended {
        /// Why, in words.
        reason: String,
    },
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An encoded video frame.
    Video {
        /// Its codec.
        codec: VideoCodec,
        /// Whether it is a keyframe.
        keyframe: bool,
        /// The bitstream.
        data: Vec<u8>,
    },
    /// A session event.
    Event(Event),
}

/// A record with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    /// Microseconds since the recording started.
    pub t_us: u64,
    /// What.
    pub record: Record,
}

/// A decrypted body did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The header is missing or wrong.
    #[error("the decrypted segment does not start with a sealdesk recording header")]
    BadHeader,
    /// The body names another recording or position than its signed entry.
    #[error("the decrypted segment says it is segment {seq} of recording {id}, not what its signed entry says")]
    Misplaced {
        /// The id inside.
        id: RecordingId,
        /// The position inside.
        seq: u32,
    },
    /// A record runs past the end or is malformed.
    #[error("record {index} is malformed: {why}")]
    BadRecord {
        /// Which record (from 0).
        index: usize,
        /// What is wrong.
        why: &'static str,
    },
}

pub(crate) fn header(id: RecordingId, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 << 10);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Appends one record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, timed: &Timed) {
    let mut payload = Vec::new();
    let kind = match &timed.record {
        Record::Video {
            codec,
            keyframe,
            data,
        } => {
            payload.push(match codec {
                VideoCodec::Vp8 => 8,
                VideoCodec::Vp9 => 9,
            });
            payload.push(u8::from(*keyframe));
            payload.extend_from_slice(data);
            1
        }
        Record::Event(e) => {
            match e {
                Event::Started {
                    by_host,
                    peer_fingerprint,
                    peer_label,
                } => {
                    payload.push(1);
                    payload.push(u8::from(*by_host));
                    payload.extend_from_slice(peer_fingerprint);
                    put_text(&mut payload, peer_label);
                }
                Event::Input {
                    keys,
                    buttons,
                    motions,
                    wheel,
                } => {
                    payload.push(2);
                    for n in [keys, buttons, motions, wheel] {
                        payload.extend_from_slice(&n.to_be_bytes());
                    }
                }
                Event::Clipboard {
                    to_viewer,
                    bytes,
                    content,
                } => {
                    payload.push(3);
                    payload.push(u8::from(*to_viewer));
                    payload.extend_from_slice(&bytes.to_be_bytes());
                    match content {
                        Some(c) => {
                            payload.push(1);
                            put_text(&mut payload, c);
                        }
                        None => payload.push(0),
                    }
                }
                Event::Monitor { index } => {
                    payload.push(4);
                    payload.push(*index);
                }
                Event::FramesLost { count } => {
                    payload.push(5);
                    payload.extend_from_slice(&count.to_be_bytes());
                }
                Event::Ended { reason } => {
                    payload.push(6);
                    put_text(&mut payload, reason);
                }
            }
            2
        }
    };
    // Video frames are bounded by the encoder (and checked by the recorder); a larger one
    // is cut at MAX_RECORD and then fails to decode, which the export reports.
    payload.truncate(MAX_RECORD);
    out.push(kind);
    out.extend_from_slice(&timed.t_us.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
    fn text(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        if n > MAX_TEXT {
            return None;
        }
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

fn decode_event(payload: &[u8]) -> Result<Event, &'static str> {
    let mut r = Reader { bytes: payload };
    let short = "event shorter than its fields";
    let event = match r.u8().ok_or("empty event")? {
        1 => Event::Started {
            by_host: r.flag().ok_or(short)?,
            peer_fingerprint: r.take(32).and_then(|b| b.try_into().ok()).ok_or(short)?,
            peer_label: r.text().ok_or("bad label")?,
        },
        2 => Event::Input {
            keys: r.u32().ok_or(short)?,
            buttons: r.u32().ok_or(short)?,
            motions: r.u32().ok_or(short)?,
            wheel: r.u32().ok_or(short)?,
        },
        3 => Event::Clipboard {
            to_viewer: r.flag().ok_or(short)?,
            bytes: r.u32().ok_or(short)?,
            content: if r.flag().ok_or(short)? {
                Some(r.text().ok_or("bad clipboard text")?)
            } else {
                None
            },
        },
        4 => Event::Monitor {
            index: r.u8().ok_or(short)?,
        },
        5 => Event::FramesLost {
            count: r.u32().ok_or(short)?,
        },
        6 => Event::Ended {
            reason: r.text().ok_or("bad reason")?,
        },
        _ => return Err("unknown event tag"),
    };
    if !r.bytes.is_empty() {
        return Err("event longer than its fields");
    }
    Ok(event)
}

/// Parses a decrypted body, checking it belongs at (`id`, `seq`).
pub fn decode(bytes: &[u8], id: RecordingId, seq: u32) -> Result<Vec<Timed>, BodyError> {
    let mut r = Reader { bytes };
    if r.take(8) != Some(&MAGIC[..]) {
        return Err(BodyError::BadHeader);
    }
    let inner_id = r
        .take(16)
        .and_then(|b| b.try_into().ok())
        .map(RecordingId)
        .ok_or(BodyError::BadHeader)?;
    let inner_seq = r.u32().ok_or(BodyError::BadHeader)?;
    if inner_id != id || inner_seq != seq {
        return Err(BodyError::Misplaced {
            id: inner_id,
            seq: inner_seq,
        });
    }
    let mut out = Vec::new();
    while !r.bytes.is_empty() {
        let index = out.len();
        let bad = |why| BodyError::BadRecord { index, why };
        let kind = r.u8().ok_or(bad("no kind"))?;
        let t_us = r.u64().ok_or(bad("no time"))?;
        let len = r.u32().ok_or(bad("no length"))? as usize;
        if len > MAX_RECORD {
            return Err(bad("longer than the record limit"));
        }
        let payload = r.take(len).ok_or(bad("runs past the end of the segment"))?;
        let record = match kind {
            1 => {
                let (head, data) = payload
                    .split_first_chunk::<2>()
                    .ok_or(bad("video record without codec and flags"))?;
                let codec = match head[0] {
                    8 => VideoCodec::Vp8,
                    9 => VideoCodec::Vp9,
                    _ => return Err(bad("unknown codec")),
                };
                if head[1] > 1 {
                    return Err(bad("unknown video flags"));
                }
                Record::Video {
                    codec,
                    keyframe: head[1] == 1,
                    data: data.to_vec(),
                }
            }
            2 => Record::Event(decode_event(payload).map_err(bad)?),
            _ => return Err(bad("unknown record kind")),
        };
        out.push(Timed { t_us, record });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Timed> {
        vec![
            Timed {
                t_us: 0,
                record: Record::Event(Event::Started {
                    by_host: true,
                    peer_fingerprint: [3; 32],
                    peer_label: "alice".into(),
                }),
            },
            Timed {
                t_us: 5,
                record: Record::Video {
                    codec: VideoCodec::Vp9,
                    keyframe: true,
                    data: vec![1, 2, 3],
                },
            },
            Timed {
                t_us: 9,
                record: Record::Event(Event::Clipboard {
                    to_viewer: false,
                    bytes: 12,
                    content: Some("héllo".into()),
                }),
            },
            Timed {
                t_us: 10,
                record: Record::Event(Event::Clipboard {
                    to_viewer: true,
                    bytes: 3,
                    content: None,
                }),
            },
            Timed {
                t_us: 11,
                record: Record::Event(Event::Input {
                    keys: 1,
                    buttons: 2,
                    motions: 3,
                    wheel: 4,
                }),
            },
            Timed {
                t_us: 12,
                record: Record::Event(Event::Monitor { index: 1 }),
            },
            Timed {
                t_us: 13,
                record: Record::Event(Event::FramesLost { count: 7 }),
            },
            Timed {
                t_us: 14,
                record: Record::Event(Event::Ended {
                    reason: "bye".into(),
                }),
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let id = RecordingId([1; 16]);
        let mut body = header(id, 4);
        for t in sample() {
            encode(&mut body, &t);
        }
        assert_eq!(decode(&body, id, 4).unwrap(), sample());
        assert_eq!(
            decode(&body, id, 5).unwrap_err(),
            BodyError::Misplaced { id, seq: 4 }
        );
        assert_eq!(
            decode(&body, RecordingId([2; 16]), 4).unwrap_err(),
            BodyError::Misplaced { id, seq: 4 }
        );
        assert_eq!(decode(b"nope", id, 4).unwrap_err(), BodyError::BadHeader);
        let cut = &body[..body.len() - 1];
        assert!(matches!(
            decode(cut, id, 4).unwrap_err(),
            BodyError::BadRecord { index: 7, .. }
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let id = RecordingId([1; 16]);
            let mut body = header(id, 0);
            body.extend_from_slice(&tail);
            let _ = decode(&body, id, 0);
        }
    }
}
