//! The device's data directory and its identity key file.
//!
//! The identity key is created on first use with mode 0600 (written to a temporary
//! file, fsynced, renamed into place, directory fsynced). A key file that group or
//! others can read is refused with a message saying how to fix it.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sealdesk_auth::identity::{IdentityKey, KeyFileError};

/// The file name of the identity key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// The environment variable that overrides the data directory for every subcommand.
pub const DATA_DIR_ENV: &str = "SEALDESK_DATA_DIR";

/// The data directory or key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No home directory to put the XDG data directory in.
    #[error("cannot find a data directory: set {DATA_DIR_ENV} or --data-dir")]
    NoDataDir,
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
    /// The key file is readable by others.
    #[error("identity key {path} has mode {mode:o}: group or others can read it. Fix with: chmod 600 {path}")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a valid sealdesk identity key.
    #[error("identity key {path}: {source}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: KeyFileError,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The data directory: `explicit` if given (from `--data-dir` or `SEALDESK_DATA_DIR`),
/// else the XDG data directory (`$XDG_DATA_HOME/sealdesk`, usually `~/.local/share/sealdesk`).
pub fn resolve_data_dir(explicit: Option<&Path>) -> Result<PathBuf, StoreError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    directories::ProjectDirs::from("", "", "sealdesk")
        .map(|d| d.data_dir().to_owned())
        .ok_or(StoreError::NoDataDir)
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("cannot create directory", dir))
}

/// Loads the identity key from `dir`, creating it on first use. Returns the key and
/// whether it was created now.
pub fn load_or_create_identity(dir: &Path) -> Result<(IdentityKey, bool), StoreError> {
    ensure_private_dir(dir)?;
    let path = dir.join(IDENTITY_FILE);
    match load_identity(&path) {
        Ok(k) => return Ok((k, false)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = IdentityKey::generate(&mut rand::rngs::OsRng);
    match write_new_private_file(&path, &key.to_file_bytes()) {
        Ok(()) => Ok((key, true)),
        // Another process created it first: use theirs.
        Err(StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Ok((load_identity(&path)?, false))
        }
        Err(e) => Err(e),
    }
}

/// Loads an identity key file, refusing one that group or others can read.
pub fn load_identity(path: &Path) -> Result<IdentityKey, StoreError> {
    let meta = fs::metadata(path).map_err(io("cannot read identity key", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes =
        zeroize::Zeroizing::new(fs::read(path).map_err(io("cannot read identity key", path))?);
    IdentityKey::from_file_bytes(&bytes).map_err(|source| StoreError::BadKeyFile {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a new file at `path` with mode 0600, durably: temporary file,
/// fsync, hard-link into place (fails if `path` exists), fsync the directory.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot create", &tmp))?;
        f.write_all(contents).map_err(io("cannot write", &tmp))?;
        f.sync_all().map_err(io("cannot sync", &tmp))?;
        fs::hard_link(&tmp, path).map_err(io("cannot create", path))?;
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync directory", dir))
}

/// Writes `name` in `dir` durably: `.name.part`, fsync, rename, fsync the directory.
/// Mode 0600. A crash leaves the old file or the new one, never a torn one (only a
/// `.name.part` temporary, which readers ignore).
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.part"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let (k1, created) = load_or_create_identity(&sub).unwrap();
        assert!(created);
        let path = sub.join(IDENTITY_FILE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (k2, created) = load_or_create_identity(&sub).unwrap();
        assert!(!created);
        assert_eq!(k1.public(), k2.public());
    }

    #[test]
    fn readable_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create_identity(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_identity(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("644"), "{e}");
    }

    #[test]
    fn corrupt_key_is_an_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        write_new_private_file(&path, b"garbage").unwrap();
        let e = load_or_create_identity(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a sealdesk identity key"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"garbage");
    }
}
