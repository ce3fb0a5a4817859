//! The device registry: device key → stable routing number, in SQLite.
//!
//! One writer thread owns the database. Registrations queue to it; it takes all that
//! are waiting, runs them in one transaction, commits with `synchronous=FULL` (so the
//! commit is on disk), and only then answers each caller — a group commit. A
//! registration is therefore acknowledged only once it is durable, and a burst costs one
//! fsync per batch rather than one per device.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sealdesk_proto::{DeviceKey, RoutingNumber};
use tokio::sync::oneshot;

const SCHEMA_VERSION: i64 = 1;
const MAX_BATCH: usize = 1024;
const MAX_NUMBER_TRIES: usize = 64;

/// The registry failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// SQLite reported an error.
    #[error("registry database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer sealdesk.
    #[error("registry database {path} has schema version {found}; this sealdesk understands up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// The database or its directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The writer thread has stopped (after an earlier error).
    #[error("registry writer has stopped")]
    Stopped,
    /// No free routing number was found (the number space is nearly full).
    #[error("no free routing number found after {MAX_NUMBER_TRIES} tries")]
    Exhausted,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// The device's routing number.
    pub number: RoutingNumber,
    /// Whether this registration created it.
    pub new: bool,
}

struct Request {
    key: DeviceKey,
    reply: oneshot::Sender<Result<Registration, Arc<RegistryError>>>,
}

/// Handle to the registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    tx: mpsc::Sender<Request>,
    known: Arc<RwLock<Known>>,
}

/// What is registered, kept in memory for lookups that must not wait for the writer.
#[derive(Default)]
struct Known {
    numbers: HashSet<RoutingNumber>,
    keys: HashSet<DeviceKey>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens (creating if needed) the registry at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let sql = |source| RegistryError::Sqlite {
            path: path.to_owned(),
            source,
        };
        create_private_file(path)?;
        let (conn, version) = open_durable(path).map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(RegistryError::NewerSchema {
                path: path.to_owned(),
                found: version,
            });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS devices (
                 routing_number INTEGER PRIMARY KEY,
                 device_key     BLOB NOT NULL UNIQUE CHECK (length(device_key) = 32),
                 created_at     INTEGER NOT NULL
             ) STRICT;
             PRAGMA user_version = 1;",
        )
        .map_err(sql)?;
        let mut known = Known::default();
        {
            let mut stmt = conn
                .prepare("SELECT routing_number, device_key FROM devices")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(sql)?;
            for row in rows {
                let (n, key) = row.map_err(sql)?;
                // Rows were written by us; skip anything out of range rather than fail.
                let n = RoutingNumber::new(u64::try_from(n).unwrap_or(0));
                let key = <[u8; 32]>::try_from(key)
                    .ok()
                    .and_then(|k| DeviceKey::try_from_bytes(k).ok());
                if let (Ok(n), Some(key)) = (n, key) {
                    known.numbers.insert(n);
                    known.keys.insert(key);
                }
            }
        }
        let known = Arc::new(RwLock::new(known));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            path: path.to_owned(),
            known: known.clone(),
        };
        std::thread::Builder::new()
            .name("sealdesk-registry".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| RegistryError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self { tx, known })
    }

    /// Finds or durably assigns the routing number of `key`.
    pub async fn register(&self, key: DeviceKey) -> Result<Registration, Arc<RegistryError>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { key, reply })
            .map_err(|_| Arc::new(RegistryError::Stopped))?;
        rx.await.map_err(|_| Arc::new(RegistryError::Stopped))?
    }

    /// Whether any device has this routing number.
    pub fn exists(&self, number: RoutingNumber) -> bool {
        self.known
            .read()
            .map(|k| k.numbers.contains(&number))
            .unwrap_or(false)
    }

    /// Whether this device key is registered (durably).
    pub fn contains_key(&self, key: &DeviceKey) -> bool {
        self.known
            .read()
            .map(|k| k.keys.contains(key))
            .unwrap_or(false)
    }

    /// How many devices are registered.
    pub fn len(&self) -> usize {
        self.known.read().map(|k| k.numbers.len()).unwrap_or(0)
    }

    /// Whether no device is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens an SQLite database for durable writes (WAL, `synchronous=FULL`, a 5 s busy
/// timeout) and reads its schema version: the registry's and the blob store's settings.
pub(crate) fn open_durable(path: &Path) -> rusqlite::Result<(Connection, i64)> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((conn, version))
}

fn create_private_file(path: &Path) -> Result<(), RegistryError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    Ok(())
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    known: Arc<RwLock<Known>>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut rng = rand::rngs::OsRng;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let keys: Vec<DeviceKey> = batch.iter().map(|r| r.key).collect();
            match self.commit_batch(&keys, &mut rng) {
                Ok(results) => {
                    if let Ok(mut known) = self.known.write() {
                        for (key, r) in keys.iter().zip(&results).filter(|(_, r)| r.new) {
                            known.numbers.insert(r.number);
                            known.keys.insert(*key);
                        }
                    }
                    for (req, res) in batch.into_iter().zip(results) {
                        let _ = req.reply.send(Ok(res));
                    }
                }
                Err(e) => {
                    tracing::error!("registry commit failed: {e}");
                    let e = Arc::new(e);
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn commit_batch(
        &mut self,
        keys: &[DeviceKey],
        rng: &mut impl RngCore,
    ) -> Result<Vec<Registration>, RegistryError> {
        let path = self.path.clone();
        let sql = |source| RegistryError::Sqlite {
            path: path.clone(),
            source,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut find = tx
                .prepare_cached("SELECT routing_number FROM devices WHERE device_key = ?1")
                .map_err(sql)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO devices (routing_number, device_key, created_at) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            for key in keys {
                let existing: Option<i64> = find
                    .query_row(params![&key.as_bytes()[..]], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                if let Some(n) = existing {
                    let number = RoutingNumber::new(u64::try_from(n).unwrap_or(0))
                        .map_err(|_| RegistryError::Exhausted)?;
                    out.push(Registration { number, new: false });
                    continue;
                }
                let mut assigned = None;
                for _ in 0..MAX_NUMBER_TRIES {
                    let number = RoutingNumber::from_random(rng.next_u32());
                    match insert.execute(params![i64::from(number.get()), &key.as_bytes()[..], now])
                    {
                        Ok(_) => {
                            assigned = Some(number);
                            break;
                        }
                        Err(rusqlite::Error::SqliteFailure(e, _))
                            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                        {
                            continue
                        }
                        Err(e) => return Err(sql(e)),
                    }
                }
                let number = assigned.ok_or(RegistryError::Exhausted)?;
                out.push(Registration { number, new: true });
            }
        }
        tx.commit().map_err(sql)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> DeviceKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        DeviceKey::from_verifying_key(&sk.verifying_key())
    }

    #[tokio::test]
    async fn same_key_same_number_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server/registry.sqlite3");
        let reg = Registry::open(&path).unwrap();
        let a = reg.register(key(1)).await.unwrap();
        assert!(a.new);
        let b = reg.register(key(2)).await.unwrap();
        assert_ne!(a.number, b.number);
        let again = reg.register(key(1)).await.unwrap();
        assert_eq!(
            again,
            Registration {
                number: a.number,
                new: false
            }
        );
        assert!(reg.exists(a.number) && reg.exists(b.number));
        assert!(reg.contains_key(&key(1)) && !reg.contains_key(&key(3)));
        drop(reg);
        let reg = Registry::open(&path).unwrap();
        assert_eq!(reg.len(), 2);
        assert!(reg.contains_key(&key(2)) && !reg.contains_key(&key(3)));
        assert_eq!(reg.register(key(2)).await.unwrap().number, b.number);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn concurrent_registrations_are_batched_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("r.sqlite3")).unwrap();
        let tasks: Vec<_> = (0..200u8)
            .map(|i| {
                let reg = reg.clone();
                tokio::spawn(async move { reg.register(key(i)).await.unwrap() })
            })
            .collect();
        let mut numbers = HashSet::new();
        for t in tasks {
            assert!(numbers.insert(t.await.unwrap().number));
        }
        assert_eq!(reg.len(), 200);
    }

    #[test]
    fn newer_schema_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        let e = Registry::open(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 9"), "{e}");
    }
}
