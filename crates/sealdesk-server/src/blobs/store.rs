//! Where blobs live: metadata in SQLite (`blobs.sqlite`), bytes in one file per blob.
//!
//! A blob's file is `blobs/<first 2 hex>/<32 hex id>`, named only from the 16 random bytes
//! the server chose. An upload streams into `blobs/tmp/<random>` (mode 0600); once the
//! whole body has arrived and the request is authenticated, the file is fsynced, linked to
//! its final name (never replacing an existing file), its directory fsynced, and only then
//! is the metadata row committed (`synchronous=FULL`). Anything that fails before the
//! commit removes what it made. A crash can leave a temporary file or a file without a
//! row; [`BlobStore::open`] removes both.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::RngCore as _;
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};
use sealdesk_proto::blob_auth::{BlobId, BodyDigest, BodyHasher};
use sealdesk_proto::DeviceKey;
use tokio::io::AsyncWriteExt as _;

const SCHEMA_VERSION: i64 = 1;

/// The least a blob counts against a quota: what a small file costs the filesystem.
pub(crate) const MIN_CHARGE: u64 = 4096;

/// The blob store failed (a local failure, never the client's fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobStoreError {
    /// SQLite reported an error.
    #[error("blob database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer sealdesk.
    #[error("blob database {path} has schema version {found}; this sealdesk understands up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A file or directory could not be used.
    #[error("blob store {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a finished upload was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    #[error("the owner's storage quota is full: {used} of {limit} bytes used, this blob needs {need}; the owner must delete blobs first")]
    OwnerQuota { used: u64, limit: u64, need: u64 },
    #[error(
        "the owner already has {limit} blobs, the most allowed; the owner must delete blobs first"
    )]
    OwnerCount { limit: u64 },
    #[error("this device's upload quota is full: {used} of {limit} bytes used, this blob needs {need}; delete blobs it uploaded first")]
    UploaderQuota { used: u64, limit: u64, need: u64 },
    #[error(transparent)]
    Store(#[from] BlobStoreError),
}

/// The quotas a commit checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quotas {
    pub(crate) owner_bytes: u64,
    pub(crate) owner_blobs: u64,
    pub(crate) uploader_bytes: u64,
}

/// One stored blob, as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRow {
    pub(crate) id: BlobId,
    pub(crate) size: u64,
    pub(crate) created_at: u64,
    pub(crate) uploader: DeviceKey,
}

/// The blob store of one server.
pub(crate) struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    db_path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BlobStoreError + '_ {
    move |source| BlobStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The size a blob counts against quotas.
pub(crate) fn charge(size: u64) -> u64 {
    size.max(MIN_CHARGE)
        .div_ceil(MIN_CHARGE)
        .saturating_mul(MIN_CHARGE)
}

impl BlobStore {
    /// Opens (creating if needed) the store in `dir` (`<data_dir>/server`): the database
    /// `dir/blobs.sqlite` and the files under `dir/blobs/`. Removes what a crash left.
    pub(crate) fn open(dir: &Path) -> Result<Self, BlobStoreError> {
        let root = dir.join("blobs");
        let tmp = root.join("tmp");
        let db_path = dir.join("blobs.sqlite");
        for d in [dir, &root, &tmp] {
            create_private_dir(d)?;
        }
        let sql = |source| BlobStoreError::Sqlite {
            path: db_path.clone(),
            source,
        };
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&db_path)
                .map_err(io_err(&db_path))?;
        }
        let (conn, version) = crate::registry::open_durable(&db_path).map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(BlobStoreError::NewerSchema {
                path: db_path,
                found: version,
            });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS blobs (
                 id         BLOB PRIMARY KEY CHECK (length(id) = 16),
                 owner      BLOB NOT NULL CHECK (length(owner) = 32),
                 uploader   BLOB NOT NULL CHECK (length(uploader) = 32),
                 size       INTEGER NOT NULL,
                 created_at INTEGER NOT NULL
             ) STRICT;
             CREATE INDEX IF NOT EXISTS blobs_by_owner ON blobs (owner, created_at, id);
             CREATE INDEX IF NOT EXISTS blobs_by_uploader ON blobs (uploader);
             PRAGMA user_version = 1;",
        )
        .map_err(sql)?;
        let store = Self {
            root,
            tmp,
            db_path,
            conn: Mutex::new(conn),
        };
        store.sweep()?;
        Ok(store)
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> BlobStoreError + '_ {
        |source| BlobStoreError::Sqlite {
            path: self.db_path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (rusqlite rolls
        // back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The final path of a blob: built from the id's hex digits only.
    fn path_of(&self, id: &BlobId) -> (PathBuf, PathBuf) {
        let hex = id.to_hex();
        let dir = self.root.join(hex.get(..2).unwrap_or("00"));
        let file = dir.join(&hex);
        (dir, file)
    }

    /// Removes temporary files and files without a row (left by a crash).
    fn sweep(&self) -> Result<(), BlobStoreError> {
        for entry in std::fs::read_dir(&self.tmp).map_err(io_err(&self.tmp))? {
            let path = entry.map_err(io_err(&self.tmp))?.path();
            tracing::info!("removing unfinished upload {}", path.display());
            let _ = std::fs::remove_file(&path);
        }
        let known: HashSet<[u8; 16]> = {
            let conn = self.lock();
            let mut stmt = conn.prepare("SELECT id FROM blobs").map_err(self.sql())?;
            let rows = stmt
                .query_map([], |r| r.get::<_, Vec<u8>>(0))
                .map_err(self.sql())?;
            let mut ids = HashSet::new();
            for row in rows {
                if let Ok(id) = <[u8; 16]>::try_from(row.map_err(self.sql())?) {
                    ids.insert(id);
                }
            }
            ids
        };
        for sub in std::fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let sub = sub.map_err(io_err(&self.root))?.path();
            let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if sub == self.tmp || name.len() != 2 || !sub.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&sub).map_err(io_err(&sub))? {
                let path = entry.map_err(io_err(&sub))?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                match BlobId::parse(name) {
                    Ok(id) if !known.contains(&id.0) => {
                        tracing::info!("removing blob file without a record {}", path.display());
                        let _ = std::fs::remove_file(&path);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!("unexpected file in the blob store: {}", path.display())
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts receiving an upload into a new temporary file.
    pub(crate) async fn begin_upload(&self) -> Result<TempBlob, BlobStoreError> {
        let mut name = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut name);
        let path = self.tmp.join(format!("{}.part", BlobId(name).to_hex()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(io_err(&path))?;
        Ok(TempBlob {
            path,
            file: Some(file),
            size: 0,
            hasher: BodyHasher::new(),
        })
    }

    /// Current usage of `owner` (charged bytes, blobs) and of `uploader` (charged bytes).
    fn usage(
        tx: &rusqlite::Transaction<'_>,
        owner: &DeviceKey,
        uploader: &DeviceKey,
    ) -> rusqlite::Result<(u64, u64, u64)> {
        let charged = format!(
            "COALESCE(SUM(MAX((size + {m} - 1) / {m}, 1) * {m}), 0)",
            m = MIN_CHARGE
        );
        let (owner_bytes, owner_blobs): (i64, i64) = tx.query_row(
            &format!("SELECT {charged}, COUNT(*) FROM blobs WHERE owner = ?1"),
            params![&owner.as_bytes()[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let uploader_bytes: i64 = tx.query_row(
            &format!("SELECT {charged} FROM blobs WHERE uploader = ?1"),
            params![&uploader.as_bytes()[..]],
            |r| r.get(0),
        )?;
        let u = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        Ok((u(owner_bytes), u(owner_blobs), u(uploader_bytes)))
    }

    /// Stores a finished, fsynced upload for `owner` under a new random id, if the quotas
    /// allow. Blocking: call it from `spawn_blocking`.
    pub(crate) fn commit(
        &self,
        mut blob: TempBlob,
        owner: &DeviceKey,
        uploader: &DeviceKey,
        quotas: Quotas,
        created_at: u64,
    ) -> Result<BlobId, CommitError> {
        let need = charge(blob.size);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql())?;
        let (owner_used, owner_blobs, uploader_used) =
            Self::usage(&tx, owner, uploader).map_err(self.sql())?;
        if owner_blobs >= quotas.owner_blobs {
            return Err(CommitError::OwnerCount {
                limit: quotas.owner_blobs,
            });
        }
        if owner_used.saturating_add(need) > quotas.owner_bytes {
            return Err(CommitError::OwnerQuota {
                used: owner_used,
                limit: quotas.owner_bytes,
                need,
            });
        }
        if uploader_used.saturating_add(need) > quotas.uploader_bytes {
            return Err(CommitError::UploaderQuota {
                used: uploader_used,
                limit: quotas.uploader_bytes,
                need,
            });
        }
        let (id, dir, file) = self.link_new(&blob.path)?;
        // The file is durable under its final name; now the row may say it exists.
        let size = i64::try_from(blob.size).unwrap_or(i64::MAX);
        let created = i64::try_from(created_at).unwrap_or(i64::MAX);
        let inserted = tx
            .execute(
                "INSERT INTO blobs (id, owner, uploader, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&id.0[..], &owner.as_bytes()[..], &uploader.as_bytes()[..], size, created],
            )
            .and_then(|_| tx.commit());
        if let Err(e) = inserted {
            let _ = std::fs::remove_file(&file);
            let _ = sync_dir(&dir);
            return Err(self.sql()(e).into());
        }
        drop(conn);
        blob.discard();
        Ok(id)
    }

    /// Links `tmp` to the final name of a fresh random id (never replacing a file) and
    /// makes the name durable.
    fn link_new(&self, tmp: &Path) -> Result<(BlobId, PathBuf, PathBuf), BlobStoreError> {
        let mut last = None;
        for _ in 0..4 {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let id = BlobId(bytes);
            let (dir, file) = self.path_of(&id);
            if !dir.is_dir() {
                create_private_dir(&dir)?;
                sync_dir(&self.root).map_err(io_err(&self.root))?;
            }
            match std::fs::hard_link(tmp, &file) {
                Ok(()) => {
                    if let Err(e) = sync_dir(&dir) {
                        let _ = std::fs::remove_file(&file);
                        return Err(io_err(&dir)(e));
                    }
                    return Ok((id, dir, file));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(io_err(&file)(e)),
            }
        }
        Err(io_err(tmp)(last.unwrap_or_else(|| {
            std::io::Error::other("no unused blob id found")
        })))
    }

    /// The owner's blobs, oldest first.
    pub(crate) fn list(&self, owner: &DeviceKey) -> Result<Vec<BlobRow>, BlobStoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, size, created_at, uploader FROM blobs WHERE owner = ?1 ORDER BY created_at, id",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(params![&owner.as_bytes()[..]], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, size, created_at, uploader) = row.map_err(self.sql())?;
            let id = <[u8; 16]>::try_from(id).ok().map(BlobId);
            let uploader = <[u8; 32]>::try_from(uploader)
                .ok()
                .and_then(|k| DeviceKey::try_from_bytes(k).ok());
            let (Some(id), Some(uploader)) = (id, uploader) else {
                tracing::warn!("skipping a malformed row in {}", self.db_path.display());
                continue;
            };
            out.push(BlobRow {
                id,
                size: u64::try_from(size).unwrap_or(0),
                created_at: u64::try_from(created_at).unwrap_or(0),
                uploader,
            });
        }
        Ok(out)
    }

    /// Opens a blob's file if `owner` owns it; `None` if it does not exist or is not
    /// theirs (the two are not told apart).
    pub(crate) fn open_owned(
        &self,
        id: &BlobId,
        owner: &DeviceKey,
    ) -> Result<Option<(std::fs::File, u64)>, BlobStoreError> {
        let found: Option<i64> = self
            .lock()
            .prepare_cached("SELECT size FROM blobs WHERE id = ?1 AND owner = ?2")
            .and_then(|mut s| {
                s.query_row(params![&id.0[..], &owner.as_bytes()[..]], |r| r.get(0))
                    .optional()
            })
            .map_err(self.sql())?;
        if found.is_none() {
            return Ok(None);
        }
        let (_, path) = self.path_of(id);
        let file = std::fs::File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        Ok(Some((file, len)))
    }

    /// Deletes a blob if `owner` owns it; `false` if it does not exist or is not theirs.
    pub(crate) fn delete_owned(
        &self,
        id: &BlobId,
        owner: &DeviceKey,
    ) -> Result<bool, BlobStoreError> {
        let deleted = self
            .lock()
            .execute(
                "DELETE FROM blobs WHERE id = ?1 AND owner = ?2",
                params![&id.0[..], &owner.as_bytes()[..]],
            )
            .map_err(self.sql())?;
        if deleted == 0 {
            return Ok(false);
        }
        let (dir, path) = self.path_of(id);
        // The row is gone, so the blob is gone; a file left by a failure here is swept
        // at the next start.
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
        let _ = sync_dir(&dir);
        Ok(true)
    }
}

/// An upload being received. Dropping it removes the temporary file, so an upload that
/// fails or is abandoned leaves nothing behind.
pub(crate) struct TempBlob {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
    hasher: BodyHasher,
}

impl TempBlob {
    /// Appends the next piece of the body.
    pub(crate) async fn write(&mut self, piece: &[u8]) -> Result<(), BlobStoreError> {
        let file = self.file.as_mut().ok_or_else(|| BlobStoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("upload already finished"),
        })?;
        file.write_all(piece).await.map_err(io_err(&self.path))?;
        self.hasher.update(piece);
        self.size = self.size.saturating_add(piece.len() as u64);
        Ok(())
    }

    /// Bytes received so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Makes the bytes durable and returns the body's digest.
    pub(crate) async fn finish(&mut self) -> Result<BodyDigest, BlobStoreError> {
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io_err(&self.path))?;
            file.sync_all().await.map_err(io_err(&self.path))?;
        }
        Ok(self.hasher.clone().finish())
    }

    /// Removes the temporary file now.
    fn discard(&mut self) {
        self.file = None;
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        self.discard();
    }
}

fn create_private_dir(dir: &Path) -> Result<(), BlobStoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> DeviceKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        DeviceKey::from_verifying_key(&sk.verifying_key())
    }

    const BIG: Quotas = Quotas {
        owner_bytes: u64::MAX,
        owner_blobs: u64::MAX,
        uploader_bytes: u64::MAX,
    };

    async fn upload(store: &BlobStore, bytes: &[u8]) -> TempBlob {
        let mut t = store.begin_upload().await.unwrap();
        t.write(bytes).await.unwrap();
        t.finish().await.unwrap();
        t
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn charges_round_up_to_blocks() {
        assert_eq!(charge(0), 4096);
        assert_eq!(charge(1), 4096);
        assert_eq!(charge(4096), 4096);
        assert_eq!(charge(4097), 8192);
        assert_eq!(charge(u64::MAX), u64::MAX);
    }

    #[tokio::test]
    async fn committed_blob_is_a_private_file_named_by_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let t = upload(&store, b"segment").await;
        let id = store.commit(t, &key(1), &key(2), BIG, 5).unwrap();
        let files = files_under(&dir.path().join("blobs"));
        let (_, want) = store.path_of(&id);
        assert_eq!(files, vec![want.clone()]);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&want).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&want).unwrap(), b"segment");
        assert_eq!(
            store.list(&key(1)).unwrap(),
            vec![BlobRow {
                id,
                size: 7,
                created_at: 5,
                uploader: key(2)
            }]
        );
        assert!(store.list(&key(2)).unwrap().is_empty());
        assert!(store.open_owned(&id, &key(2)).unwrap().is_none());
        assert!(!store.delete_owned(&id, &key(2)).unwrap());
        assert!(store.delete_owned(&id, &key(1)).unwrap());
        assert!(files_under(&dir.path().join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn refused_and_abandoned_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut t = store.begin_upload().await.unwrap();
        t.write(b"half").await.unwrap();
        drop(t);
        let t = upload(&store, &[0; 5000]).await;
        let q = Quotas {
            owner_bytes: 4096,
            ..BIG
        };
        let e = store.commit(t, &key(1), &key(2), q, 0).unwrap_err();
        assert!(
            matches!(e, CommitError::OwnerQuota { need: 8192, .. }),
            "{e}"
        );
        assert!(files_under(&dir.path().join("blobs")).is_empty());
        assert!(store.list(&key(1)).unwrap().is_empty());
    }

    #[tokio::test]
    async fn reopening_sweeps_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let kept = store
            .commit(upload(&store, b"kept").await, &key(1), &key(1), BIG, 0)
            .unwrap();
        // A crash between the file and the row, and one during an upload.
        let orphan = BlobId([0x11; 16]);
        let (odir, ofile) = store.path_of(&orphan);
        std::fs::create_dir_all(&odir).unwrap();
        std::fs::write(&ofile, b"orphan").unwrap();
        let t = store.begin_upload().await.unwrap();
        std::mem::forget(t);
        drop(store);
        let store = BlobStore::open(dir.path()).unwrap();
        let (_, kept_file) = store.path_of(&kept);
        assert_eq!(files_under(&dir.path().join("blobs")), vec![kept_file]);
    }
}
