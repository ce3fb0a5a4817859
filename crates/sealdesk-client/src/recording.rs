//! The recorder's shell (DESIGN.md §7): a thread that feeds the sans-IO
//! [`sealdesk_record::segment::Recorder`] and makes each finished segment durable —
//! written to a temporary file, fsynced, renamed into place, directory fsynced — before the
//! next one counts. A crash (kill -9, power loss) loses at most the open segment.
//!
//! Producers (the capture thread, the session task) never block: records go through a
//! bounded queue; when it is full, video is dropped until the next keyframe and a
//! `FramesLost` event says so ([`RecordingSink::wants_keyframe`] asks the encoder for one).

use std::fs;

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealdesk_record::body::{Event, Record, VideoCodec};
use sealdesk_record::segment::{self, Recorder, Segment};

use crate::store::write_durably;

/// Where a recording says which segment files are durable (for an uploader).
pub type DurableSender = tokio::sync::mpsc::UnboundedSender<PathBuf>;

/// Records queued at most (frames and events) before video is dropped.
pub const QUEUE: usize = 512;

enum Msg {
    Record(Instant, Record),
    Finish,
}

#[derive(Debug, Default)]
struct Shared {
    /// Video is being dropped until a keyframe.
    lost: AtomicBool,
    lost_count: AtomicU32,
    segments: AtomicU32,
    bytes: AtomicU64,
    failed: Mutex<Option<String>>,
}

/// Input counted for a recording: key presses, button presses, pointer motions, wheel steps
/// (never which keys: a recording holds no keystrokes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputCounts([u32; 4]);

impl InputCounts {
    /// Counts `msg` if it is input.
    pub fn count(&mut self, msg: &sealdesk_proto::control::ControlMessage) {
        use sealdesk_proto::control::ControlMessage as M;
        let slot = match msg {
            M::Key { down: true, .. } => 0,
            M::PointerButton { down: true, .. } => 1,
            M::PointerMove { .. } => 2,
            M::Wheel { .. } => 3,
            _ => return,
        };
        self.0[slot] = self.0[slot].saturating_add(1);
    }

    /// The counts since the last call, as an event (none if nothing happened).
    pub fn take(&mut self) -> Option<Event> {
        let [keys, buttons, motions, wheel] = std::mem::take(&mut self.0);
        (keys | buttons | motions | wheel != 0).then_some(Event::Input {
            keys,
            buttons,
            motions,
            wheel,
        })
    }
}

/// What a finished recording wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Its directory.
    pub dir: PathBuf,
    /// Segments written (the last one final, unless `error`).
    pub segments: u32,
    /// Bytes written.
    pub bytes: u64,
    /// Why recording stopped early, if it did.
    pub error: Option<String>,
}

/// A running recording. Cheap to share (`Arc`); [`RecordingSink::finish`] writes the final
/// segment. Dropped without `finish`, the recording stays truncated (as after a crash).
pub struct RecordingSink {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl std::fmt::Debug for RecordingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSink")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Starts recording a session with `peer` (the host's or the viewer's side) into a new
/// directory under `dir`: a random recording id, the Started event, and who the owner is in
/// words ("label (fingerprint)") for the other side.
pub fn start_session(
    dir: &Path,
    identity: Arc<sealdesk_auth::IdentityKey>,
    recipient: sealdesk_record::cert::VerifiedRecipient,
    peer: &sealdesk_auth::session::PeerIdentity,
    by_host: bool,
    durable: Option<DurableSender>,
) -> std::io::Result<(RecordingSink, String)> {
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let id = sealdesk_record::RecordingId(id);
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let owner = format!(
        "{} ({})",
        recipient.label(),
        sealdesk_auth::DeviceFingerprint::of(recipient.owner()).short()
    );
    let recorder = Recorder::new(
        id,
        unix_ms,
        identity,
        recipient,
        sealdesk_record::segment::SegmentPolicy::default(),
    );
    let sink = RecordingSink::start(
        dir.join(dir_name(unix_ms, &id)),
        recorder,
        Instant::now(),
        durable,
    )?;
    sink.event(Event::Started {
        by_host,
        peer_fingerprint: peer.fingerprint().0,
        peer_label: peer.label.clone(),
    });
    Ok((sink, owner))
}

/// A recording directory name: `YYYYmmdd-HHMMSS-<first 8 hex digits of the id>` (UTC).
pub fn dir_name(unix_ms: u64, id: &sealdesk_record::RecordingId) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        &id.to_hex()[..8]
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl RecordingSink {
    /// Starts recording into `dir` (created, mode 0700; must not exist). `started` is the
    /// recording's time zero (the recorder's `started_unix_ms` matches it). `durable` hears
    /// the path of each segment once it is durable (an uploader); it is dropped when the
    /// recording ends.
    pub fn start(
        dir: PathBuf,
        recorder: Recorder,
        started: Instant,
        durable: Option<DurableSender>,
    ) -> std::io::Result<Self> {
        if let Some(parent) = dir.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        // Not recursive: an existing directory is an error, never mixed into.
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            let dir = dir.clone();
            std::thread::Builder::new()
                .name("sealdesk-recorder".into())
                .spawn(move || writer(dir, recorder, started, rx, shared, durable))?
        };
        Ok(Self {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            dir,
        })
    }

    /// The recording's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records an encoded frame (never blocks).
    pub fn video(&self, codec: VideoCodec, keyframe: bool, data: &[u8]) {
        let s = &self.shared;
        if s.lost.load(Ordering::Relaxed) {
            if !keyframe {
                s.lost_count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let count = s.lost_count.swap(0, Ordering::Relaxed);
            if self
                .tx
                .try_send(Msg::Record(
                    Instant::now(),
                    Record::Event(Event::FramesLost { count }),
                ))
                .is_err()
            {
                s.lost_count.fetch_add(count + 1, Ordering::Relaxed);
                return;
            }
            s.lost.store(false, Ordering::Relaxed);
        }
        let record = Record::Video {
            codec,
            keyframe,
            data: data.to_vec(),
        };
        match self.tx.try_send(Msg::Record(Instant::now(), record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                s.lost.store(true, Ordering::Relaxed);
                s.lost_count.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Whether video is being dropped until the next keyframe (ask the encoder for one).
    pub fn wants_keyframe(&self) -> bool {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// Records a session event (never blocks; dropped only if the queue is full).
    pub fn event(&self, event: Event) {
        if self
            .tx
            .try_send(Msg::Record(Instant::now(), Record::Event(event)))
            .is_err()
        {
            tracing::warn!("recording queue full: an event was not recorded");
        }
    }

    /// Why recording stopped, if it did (a disk error).
    pub fn failed(&self) -> Option<String> {
        lock(&self.shared.failed).clone()
    }

    /// Segments made durable so far.
    pub fn segments(&self) -> u32 {
        self.shared.segments.load(Ordering::Relaxed)
    }

    /// Records the end of the session (`reason`) and the input counted since the last
    /// count, then writes the final segment off the async runtime and waits for it.
    pub async fn end(
        self: Arc<Self>,
        input: &mut InputCounts,
        reason: String,
    ) -> Option<RecordingSummary> {
        if let Some(e) = input.take() {
            self.event(e);
        }
        self.event(Event::Ended { reason });
        tokio::task::spawn_blocking(move || self.finish())
            .await
            .ok()
    }

    /// Writes the final segment and waits for it to be durable.
    pub fn finish(&self) -> RecordingSummary {
        let _ = self.tx.send(Msg::Finish);
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                *lock(&self.shared.failed) = Some("the recorder thread crashed".into());
            }
        }
        RecordingSummary {
            dir: self.dir.clone(),
            segments: self.shared.segments.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            error: self.failed(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn micros(started: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(started).as_micros()).unwrap_or(u64::MAX)
}

fn writer(
    dir: PathBuf,
    mut recorder: Recorder,
    started: Instant,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    notify: Option<DurableSender>,
) {
    let fail = |e: String| {
        tracing::warn!(error = %e, "recording stopped");
        *lock(&shared.failed) = Some(e);
    };
    let durable = |s: Segment| -> Result<(), String> {
        write_durably(&dir, &s.file_name(), &s.bytes)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(s.file_name()).display()))?;
        shared.segments.fetch_add(1, Ordering::Relaxed);
        shared
            .bytes
            .fetch_add(s.bytes.len() as u64, Ordering::Relaxed);
        if let Some(n) = &notify {
            let _ = n.send(dir.join(s.file_name()));
        }
        Ok(())
    };
    loop {
        let msg = rx.recv_timeout(Duration::from_millis(100));
        let out = match msg {
            Ok(Msg::Record(at, record)) => {
                leak(&dir, &record, notify.as_ref());
                recorder.push(micros(started, at), record)
            }
            Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => {
                let last = recorder.finish().map_err(|e| e.to_string());
                if let Err(e) = last.and_then(durable) {
                    fail(e);
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => recorder.poll(micros(started, Instant::now())),
        };
        let out = match out {
            Ok(Some(s)) => durable(s),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        // A segment closes on time too while records keep coming.
        let out = out.and_then(|()| match recorder.poll(micros(started, Instant::now())) {
            Ok(Some(s)) => durable(s),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        if let Err(e) = out {
            // Nothing more is written: the recording stays truncated at the last good segment.
            fail(e);
            return;
        }
    }
}

/// The deliberate leak `plaintext-recording` (test builds only, the `insecure` module):
/// clipboard text in a plain file, handed to the uploader like a segment.
fn leak(dir: &Path, record: &Record, notify: Option<&DurableSender>) {
    if !crate::insecure_control("plaintext-recording") {
        return;
    }
    if let Record::Event(Event::Clipboard {
        content: Some(text),
        ..
    }) = record
    {
        let name = format!("leak-{}.txt", text.len());
        if write_durably(dir, &name, text.as_bytes()).is_ok() {
            if let Some(n) = notify {
                let _ = n.send(dir.join(name));
            }
        }
    }
}

/// A recording directory's segment files (`*.sdseg`), sorted by name, read one at a time
/// (each at most [`segment::MAX_SEGMENT_FILE`] bytes).
pub fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "sdseg")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one segment file, refusing anything larger than a segment can be.
pub fn read_segment(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(segment::MAX_SEGMENT_FILE as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > segment::MAX_SEGMENT_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than any segment", path.display()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_are_utc_dates() {
        let id = sealdesk_record::RecordingId([0xab; 16]);
        assert_eq!(dir_name(0, &id), "19700101-000000-abababab");
        // 2026-12-02 13:49:34 UTC
        assert_eq!(dir_name(1_796_219_374_000, &id), "20261202-134934-abababab");
        assert_eq!(dir_name(951_782_400_000, &id), "20000229-000000-abababab");
    }
}

/// What an uploader did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Segments stored on the server.
    pub uploaded: u32,
    /// Segments that could not be stored (they stay on this device).
    pub failed: u32,
    /// The last error, in words.
    pub last_error: Option<String>,
}

/// Uploads each segment it hears of to the signaling server's blob store, for `owner`,
/// in order, retrying each a few times (1, 2, 4, 8 s apart). Ends when the recording ends
/// (the sender is dropped) and everything heard of was tried.
pub fn spawn_uploader(
    client: crate::blobs::BlobClient,
    owner: sealdesk_proto::DeviceKey,
) -> (DurableSender, tokio::task::JoinHandle<UploadReport>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let task = tokio::spawn(async move {
        let mut report = UploadReport::default();
        while let Some(path) = rx.recv().await {
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    report.failed += 1;
                    report.last_error = Some(format!("cannot read {}: {e}", path.display()));
                    continue;
                }
            };
            let mut wait = Duration::from_secs(1);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match client.upload(&owner, bytes.clone()).await {
                    Ok(id) => {
                        tracing::debug!(%id, path = %path.display(), "segment uploaded");
                        report.uploaded += 1;
                        break;
                    }
                    Err(e) => {
                        let words = format!("{} not uploaded: {e}", path.display());
                        tracing::warn!(error = %e, attempt, "segment upload failed");
                        // A refusal (quota, size, authentication) will not change by retrying.
                        let refused = e
                            .status()
                            .is_some_and(|s| (400..500).contains(&s) || s == 507);
                        if refused || attempt >= 5 {
                            report.failed += 1;
                            report.last_error = Some(words);
                            break;
                        }
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        report
    });
    (tx, task)
}
