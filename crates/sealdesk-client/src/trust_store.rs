//! The trust stores on disk: the host's pairing registry, the viewer's pinned hosts, and
//! the viewer's record of failed code attempts (DESIGN.md §3, §4).
//!
//! | file                  | holds                                   | written by             |
//! |-----------------------|-----------------------------------------|------------------------|
//! | `paired-devices.json` | [`PairingRegistry`] (viewers we trust)  | `pair host`, `devices` |
//! | `pinned-hosts.json`   | [`PinnedHosts`] (hosts we paired with)  | `pair connect`, `devices` |
//! | `code-attempts.json`  | failed runs per host number, wall clock | `pair connect`         |
//!
//! A missing file is an empty store. Every write is atomic and durable: a new temporary
//! file in the same directory (mode 0600 from creation), write, fsync, rename over the old
//! one, fsync the directory — a crash leaves either the old or the new contents, never a
//! mix. Changes go through [`TrustFiles::update_registry`] and friends, which hold an
//! exclusive `flock` on `.trust.lock` from reading to renaming, so two `sealdesk`
//! processes cannot lose each other's changes.
//!
//! A file (or the directory) that group or others can write is refused with the `chmod`
//! that fixes it: whoever can write the registry can let any device in. A file that does
//! not parse is reported with its path and the problem, and is never overwritten: every
//! change reads the file first and stops there.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore as _;
use sealdesk_auth::code::{ViewerAttempts, MAX_ATTEMPTS};
use sealdesk_auth::trust::{PairingRegistry, PinnedHosts, StoreError};
use sealdesk_proto::RoutingNumber;
use serde::{Deserialize, Serialize};

/// The host's pairing registry, in the data directory.
pub const PAIRED_DEVICES_FILE: &str = "paired-devices.json";
/// The viewer's pinned hosts, in the data directory.
pub const PINNED_HOSTS_FILE: &str = "pinned-hosts.json";
/// The viewer's failed code attempts, in the data directory.
pub const CODE_ATTEMPTS_FILE: &str = "code-attempts.json";
/// The lock file that serialises changes to the three files above.
pub const LOCK_FILE: &str = ".trust.lock";
/// The largest trust file read (4096 entries of a few hundred bytes fit easily).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// A trust file could not be read or written. Nothing was changed on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustFileError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may write the file, so its contents cannot be trusted.
    #[error(
        "{path} has mode {mode:03o}: group or others can change it, so sealdesk will not trust it. \
         Check that its contents are yours, then fix with: chmod 600 {path}"
    )]
    InsecureFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Group or others may write the data directory, so they could replace the files in it.
    #[error(
        "data directory {path} has mode {mode:03o}: group or others can replace the files in it. \
         Fix with: chmod 700 {path}"
    )]
    InsecureDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file exists but is not a sealdesk trust file of a version we read.
    #[error(
        "{path} is damaged: {problem}. It was left untouched; restore it from a backup, fix it, \
         or move it away to start with an empty list"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> TrustFileError + 'a {
    move |source| TrustFileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The trust files of one data directory.
#[derive(Debug, Clone)]
pub struct TrustFiles {
    dir: PathBuf,
}

/// A value stored as one JSON trust file.
trait TrustFile: Sized + Clone + PartialEq {
    const NAME: &'static str;
    fn empty() -> Self;
    fn encode(&self) -> String;
    fn decode(text: &str) -> Result<Self, StoreError>;
}

impl TrustFile for PairingRegistry {
    const NAME: &'static str = PAIRED_DEVICES_FILE;
    fn empty() -> Self {
        Self::new()
    }
    fn encode(&self) -> String {
        self.to_json()
    }
    fn decode(text: &str) -> Result<Self, StoreError> {
        Self::from_json(text)
    }
}

impl TrustFile for PinnedHosts {
    const NAME: &'static str = PINNED_HOSTS_FILE;
    fn empty() -> Self {
        Self::new()
    }
    fn encode(&self) -> String {
        self.to_json()
    }
    fn decode(text: &str) -> Result<Self, StoreError> {
        Self::from_json(text)
    }
}

/// An exclusive `flock` on the data directory's lock file, released on drop.
struct Lock {
    _file: File,
}

impl TrustFiles {
    /// The trust files in `dir` (the data directory; it is created, mode 0700, on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the pairing registry lives.
    pub fn registry_path(&self) -> PathBuf {
        self.dir.join(PAIRED_DEVICES_FILE)
    }

    /// Where the pinned hosts live.
    pub fn pinned_path(&self) -> PathBuf {
        self.dir.join(PINNED_HOSTS_FILE)
    }

    /// Where the failed code attempts live.
    pub fn attempts_path(&self) -> PathBuf {
        self.dir.join(CODE_ATTEMPTS_FILE)
    }

    /// The host's pairing registry (empty if there is no file yet).
    pub fn registry(&self) -> Result<PairingRegistry, TrustFileError> {
        self.load::<PairingRegistry>()
    }

    /// The viewer's pinned hosts (empty if there is no file yet).
    pub fn pinned(&self) -> Result<PinnedHosts, TrustFileError> {
        self.load::<PinnedHosts>()
    }

    /// Reads the registry, lets `change` edit it, and writes it back if `change` returned
    /// `Ok` and changed something. Holds the store lock throughout.
    pub fn update_registry<T, E: From<TrustFileError>>(
        &self,
        change: impl FnOnce(&mut PairingRegistry) -> Result<T, E>,
    ) -> Result<T, E> {
        self.update::<PairingRegistry, T, E>(change)
    }

    /// Reads the pinned hosts, lets `change` edit them, and writes them back if `change`
    /// returned `Ok` and changed something. Holds the store lock throughout.
    pub fn update_pinned<T, E: From<TrustFileError>>(
        &self,
        change: impl FnOnce(&mut PinnedHosts) -> Result<T, E>,
    ) -> Result<T, E> {
        self.update::<PinnedHosts, T, E>(change)
    }

    /// The viewer's failed code attempts, as of `now` (monotonic) and `wall` (the same
    /// moment on the wall clock, which is what the file records). Records from the future
    /// (the clock went back) count as fresh.
    pub fn attempts(
        &self,
        now: Instant,
        wall: SystemTime,
    ) -> Result<ViewerAttempts, TrustFileError> {
        let path = self.attempts_path();
        let Some(text) = read_checked(&self.dir, &path)? else {
            return Ok(ViewerAttempts::new());
        };
        let records = decode_attempts(&text, wall).map_err(|problem| TrustFileError::Corrupt {
            path: path.clone(),
            problem,
        })?;
        Ok(ViewerAttempts::import(&records, now))
    }

    /// Stores the viewer's failed code attempts (`now` and `wall` as for [`Self::attempts`]).
    /// Refuses, like every change, to replace a file that does not parse.
    pub fn save_attempts(
        &self,
        attempts: &ViewerAttempts,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), TrustFileError> {
        let _lock = self.lock()?;
        let path = self.attempts_path();
        if let Some(text) = read_checked(&self.dir, &path)? {
            decode_attempts(&text, wall).map_err(|problem| TrustFileError::Corrupt {
                path: path.clone(),
                problem,
            })?;
        }
        write_atomic(
            &path,
            encode_attempts(&attempts.export(now), wall).as_bytes(),
        )
    }

    fn load<S: TrustFile>(&self) -> Result<S, TrustFileError> {
        let path = self.dir.join(S::NAME);
        match read_checked(&self.dir, &path)? {
            None => Ok(S::empty()),
            Some(text) => S::decode(&text).map_err(|e| TrustFileError::Corrupt {
                path,
                problem: e.to_string(),
            }),
        }
    }

    fn update<S: TrustFile, T, E: From<TrustFileError>>(
        &self,
        change: impl FnOnce(&mut S) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = self.lock()?;
        let before = self.load::<S>()?;
        let mut after = before.clone();
        let out = change(&mut after)?;
        if after != before {
            write_atomic(&self.dir.join(S::NAME), after.encode().as_bytes())?;
        }
        Ok(out)
    }

    fn lock(&self) -> Result<Lock, TrustFileError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("cannot create directory", &self.dir))?;
        check_dir(&self.dir)?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("cannot open lock file", &path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            TrustFileError::Io {
                action: "cannot lock",
                path: path.clone(),
                source: e.into(),
            }
        })?;
        Ok(Lock { _file: file })
    }
}

/// Refuses a directory that group or others can write.
fn check_dir(dir: &Path) -> Result<(), TrustFileError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(TrustFileError::InsecureDir {
                    path: dir.to_owned(),
                    mode: mode & 0o777,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot read", dir)(e)),
    }
}

/// Reads a trust file: `None` if it does not exist; refused if group or others can write
/// it (or its directory), if it is not a regular file, or if it is implausibly large.
fn read_checked(dir: &Path, path: &Path) -> Result<Option<String>, TrustFileError> {
    check_dir(dir)?;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot open", path)(e)),
    };
    // Check the file we opened, not the name: no window for a swap in between.
    let meta = file.metadata().map_err(io_err("cannot read", path))?;
    if !meta.is_file() {
        return Err(TrustFileError::Corrupt {
            path: path.to_owned(),
            problem: "it is not a regular file".into(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(TrustFileError::InsecureFile {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(TrustFileError::Corrupt {
            path: path.to_owned(),
            problem: format!("it has {} bytes, more than a trust file can", meta.len()),
        });
    }
    let mut raw = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(io_err("cannot read", path))?;
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| TrustFileError::Corrupt {
            path: path.to_owned(),
            problem: "it is not UTF-8 text".into(),
        })
}

/// Replaces `path` with `contents` atomically and durably: a temporary file in the same
/// directory created with mode 0600, write, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), TrustFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("trust");
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        f.write_all(contents)
            .map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot replace", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync directory", dir))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptsFile {
    format: u32,
    attempts: Vec<AttemptRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptRecord {
    /// The host number the failed runs were against.
    routing: u32,
    /// How many runs failed.
    failures: u8,
    /// When the last one failed, in seconds since the Unix epoch.
    last_failure: u64,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn encode_attempts(records: &[(RoutingNumber, u8, Duration)], wall: SystemTime) -> String {
    let now = unix_secs(wall);
    let file = AttemptsFile {
        format: 1,
        attempts: records
            .iter()
            .map(|(r, n, age)| AttemptRecord {
                routing: r.get(),
                failures: *n,
                last_failure: now.saturating_sub(age.as_secs()),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
}

fn decode_attempts(
    text: &str,
    wall: SystemTime,
) -> Result<Vec<(RoutingNumber, u8, Duration)>, String> {
    let file: AttemptsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.format != 1 {
        return Err(format!(
            "it has format version {}; this sealdesk reads version 1 — update it",
            file.format
        ));
    }
    if file.attempts.len() > sealdesk_auth::trust::MAX_ENTRIES {
        return Err("it lists too many hosts".into());
    }
    let now = unix_secs(wall);
    file.attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let routing =
                RoutingNumber::new(u64::from(a.routing)).map_err(|e| format!("entry {i}: {e}"))?;
            if a.failures > MAX_ATTEMPTS {
                return Err(format!(
                    "entry {i}: {} failures, more than the {MAX_ATTEMPTS} allowed",
                    a.failures
                ));
            }
            // A time in the future (the clock went back) counts as just now.
            let age = Duration::from_secs(now.saturating_sub(a.last_failure));
            Ok((routing, a.failures, age))
        })
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "shell tests read the real clock like the shell does"
)]
mod tests {
    use super::*;
    use sealdesk_auth::code::CODE_LIFETIME;
    use sealdesk_auth::trust::{PairedDevice, Permissions, PinnedHost};
    use sealdesk_auth::IdentityKey;

    fn device(n: u8, label: &str) -> PairedDevice {
        PairedDevice {
            key: IdentityKey::from_seed(&[n; 32]).public(),
            label: label.into(),
            permissions: Permissions::DEFAULT_PAIRED,
            added_at: 1_700_000_000,
            revoked: false,
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn missing_files_are_empty_stores() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path().join("not-yet"));
        assert!(files.registry().unwrap().devices().is_empty());
        assert!(files.pinned().unwrap().hosts().is_empty());
        let now = Instant::now();
        let mut a = files.attempts(now, SystemTime::now()).unwrap();
        let r = RoutingNumber::new(123_456_789).unwrap();
        assert!(a.allowed(r, now));
        assert!(
            !dir.path().join("not-yet").exists(),
            "reading created files"
        );
    }

    #[test]
    fn updates_are_written_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path());
        files
            .update_registry(|reg| reg.pair(device(1, "alice laptop")).map_err(TestErr::from))
            .unwrap();
        let r = RoutingNumber::new(123_456_789).unwrap();
        files
            .update_pinned(|pins| {
                pins.pin(PinnedHost {
                    routing: r,
                    key: IdentityKey::from_seed(&[9; 32]).public(),
                    label: "office pc".into(),
                    added_at: 1,
                })
                .map_err(TestErr::from)
            })
            .unwrap();
        assert_eq!(files.registry().unwrap().devices()[0].label, "alice laptop");
        assert_eq!(files.pinned().unwrap().get(r).unwrap().label, "office pc");
        assert_eq!(mode(&files.registry_path()), 0o600);
        assert_eq!(mode(&files.pinned_path()), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path());
        let r: Result<(), TestErr> = files.update_registry(|reg| {
            reg.pair(device(1, "x")).map_err(TestErr::from)?;
            Err(TestErr("changed my mind".into()))
        });
        assert!(r.is_err());
        assert!(!files.registry_path().exists());
        // An unchanged store is not rewritten either.
        files.update_registry(|_| Ok::<_, TestErr>(())).unwrap();
        assert!(!files.registry_path().exists());
    }

    #[test]
    fn a_writable_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path());
        files
            .update_registry(|reg| reg.pair(device(1, "a")).map_err(TestErr::from))
            .unwrap();
        let path = files.registry_path();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        let e = files.registry().unwrap_err().to_string();
        assert!(
            e.contains(&format!("chmod 600 {}", path.display())) && e.contains("664"),
            "{e}"
        );
        // A world-readable (but not writable) file is fine: it holds public keys.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(files.registry().unwrap().devices().len(), 1);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = files.registry().unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_named_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path());
        let path = files.pinned_path();
        write_atomic(&path, b"{\"format\":1,\"hosts\":[").unwrap();
        let e = files.pinned().unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("damaged"),
            "{e}"
        );
        let r = files.update_pinned(|pins| {
            pins.forget("anything")
                .map_err(|e| TestErr(e.to_string()))?;
            Ok::<_, TestErr>(())
        });
        assert!(r.unwrap_err().0.contains("damaged"));
        assert_eq!(fs::read(&path).unwrap(), b"{\"format\":1,\"hosts\":[");

        let apath = files.attempts_path();
        write_atomic(&apath, b"[]").unwrap();
        let now = Instant::now();
        let e = files
            .attempts(now, SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(e.contains(CODE_ATTEMPTS_FILE), "{e}");
        assert!(files
            .save_attempts(&ViewerAttempts::new(), now, SystemTime::now())
            .is_err());
        assert_eq!(fs::read(&apath).unwrap(), b"[]");
    }

    #[test]
    fn attempts_survive_a_restart_by_the_wall_clock() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path());
        let r = RoutingNumber::new(123_456_789).unwrap();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let mut a = ViewerAttempts::new();
        for _ in 0..MAX_ATTEMPTS {
            a.record_failure(r, t0);
        }
        files.save_attempts(&a, t0, w0).unwrap();
        assert_eq!(mode(&files.attempts_path()), 0o600);

        // A new process a minute later: still locked out.
        let (t1, w1) = (Instant::now(), w0 + Duration::from_secs(60));
        assert!(!files.attempts(t1, w1).unwrap().allowed(r, t1));
        // Eleven minutes later: the record has expired.
        let w2 = w0 + CODE_LIFETIME + Duration::from_secs(60);
        assert!(files.attempts(t1, w2).unwrap().allowed(r, t1));
        // The clock went back an hour: the record counts as fresh, not as expired.
        let w3 = w0 - Duration::from_secs(3600);
        assert!(!files.attempts(t1, w3).unwrap().allowed(r, t1));
        let text = fs::read_to_string(files.attempts_path()).unwrap();
        assert!(text.contains("\"last_failure\""), "{text}");
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let files = TrustFiles::new(dir.path());
        let threads: Vec<_> = (1..=8u8)
            .map(|n| {
                let files = files.clone();
                std::thread::spawn(move || {
                    files
                        .update_registry(|reg| {
                            reg.pair(device(n, &format!("device {n}")))
                                .map_err(TestErr::from)
                        })
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(files.registry().unwrap().devices().len(), 8);
    }

    #[derive(Debug)]
    struct TestErr(String);
    impl From<TrustFileError> for TestErr {
        fn from(e: TrustFileError) -> Self {
            Self(e.to_string())
        }
    }
    impl From<StoreError> for TestErr {
        fn from(e: StoreError) -> Self {
            Self(e.to_string())
        }
    }
}
