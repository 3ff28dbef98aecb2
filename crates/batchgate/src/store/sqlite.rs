//! The embedded default backend: one SQLite file, WAL journal, `synchronous=FULL` (every commit is
//! fsynced before it returns). One row per group, its families encoded as protobuf and checked
//! with a CRC, so a damaged file is detected at start instead of being served or overwritten.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use batchgate_format::MetricFamily;
use batchgate_format::proto::LabelPair;
use prost::Message;
use rusqlite::{Connection, OpenFlags, params};

use super::{Backend, Group, GroupKey, StorageError, StoredFamily};

/// `batg`: marks the file as batchgate's, so a foreign SQLite file is refused, not modified.
const APPLICATION_ID: i32 = 0x6261_7467;
const SCHEMA_VERSION: i32 = 1;
pub const FILE_NAME: &str = "batchgate.db";

/// The stored form of a group.
#[derive(Clone, PartialEq, prost::Message)]
struct GroupRecord {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    families: Vec<FamilyRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FamilyRecord {
    #[prost(int64, tag = "1")]
    time_ns: i64,
    #[prost(message, optional, tag = "2")]
    family: Option<MetricFamily>,
}

pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    /// Groups read while verifying an existing file, handed over by the first `load`.
    loaded: Option<Vec<(GroupKey, Group)>>,
    /// Held for the life of the process: two batchgates on one directory would each keep their
    /// own view of it and overwrite each other's acknowledged pushes.
    _lock: std::fs::File,
}

/// Takes the storage directory's lock file, or says who holds it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join("batchgate.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::Io(format!("cannot open the lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Io(format!(
            "another batchgate is already using {} (it holds {}); stop it, or give this one its own --storage.path",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::Io(format!("cannot lock {}: {e}", path.display()))),
    }
}

impl SqliteBackend {
    /// Opens (or creates) the store under `dir`. An existing file is read completely through a
    /// read-only connection first: one that is not a batchgate store, fails SQLite's integrity
    /// check or holds a damaged group is refused without a single byte of it being written.
    pub fn open(dir: &Path) -> Result<SqliteBackend, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Io(format!(
                "cannot create the storage directory {}: {e}; check --storage.path and its permissions",
                dir.display()
            ))
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(FILE_NAME);
        let loaded = if path.exists() { Some(verify(&path)?) } else { None };
        let io = |e: rusqlite::Error| StorageError::Io(format!("cannot open {}: {e}", path.display()));
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(io)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(io)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(io)?;
        conn.pragma_update(None, "busy_timeout", 5000).map_err(io)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS groups (
                 key BLOB PRIMARY KEY,
                 crc INTEGER NOT NULL,
                 data BLOB NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(io)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID).map_err(io)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(io)?;
        Ok(SqliteBackend {
            conn,
            path,
            loaded,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads and checks every group of an existing file without writing to it.
fn verify(path: &Path) -> Result<Vec<(GroupKey, Group)>, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| corrupt(e.to_string()))?;
    let pragma = |name: &str| -> Result<i32, StorageError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))
    };
    let (app_id, version) = (pragma("application_id")?, pragma("user_version")?);
    if app_id == 0 && version == 0 && is_empty_db(&conn) {
        return Ok(Vec::new());
    }
    if app_id != APPLICATION_ID {
        return Err(corrupt(
            "it is not a batchgate data file (wrong SQLite application id)".into(),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(StorageError::Io(format!(
            "{} was written by a newer batchgate (schema {version}, this one knows {SCHEMA_VERSION}); \
             upgrade batchgate or point --storage.path elsewhere",
            path.display()
        )));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if check != "ok" {
        return Err(corrupt(format!("SQLite integrity check failed: {check}")));
    }
    read_groups(&conn).map_err(corrupt)
}

fn read_groups(conn: &Connection) -> Result<Vec<(GroupKey, Group)>, String> {
    let mut stmt = conn
        .prepare("SELECT key, crc, data FROM groups")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
        })
        .map_err(|e| e.to_string())?;
    let mut groups = Vec::new();
    for row in rows {
        let (key, crc, data) = row.map_err(|e| e.to_string())?;
        let shown = String::from_utf8_lossy(&key).replace('\u{fffd}', "/");
        if i64::from(crc32fast::hash(&data)) != crc {
            return Err(format!("group {shown:?} fails its checksum"));
        }
        let group = decode(&data).map_err(|e| format!("group {shown:?} cannot be decoded: {e}"))?;
        let gk = GroupKey::new(&group.labels);
        if gk.to_bytes() != key {
            return Err(format!("group {shown:?} is stored under the wrong key"));
        }
        groups.push((gk, group));
    }
    Ok(groups)
}

fn is_empty_db(conn: &Connection) -> bool {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map(|n| n == 0)
        .unwrap_or(false)
}

fn encode(group: &Group) -> Vec<u8> {
    GroupRecord {
        labels: group.labels.iter().map(|(n, v)| LabelPair::new(n, v)).collect(),
        families: group
            .families
            .values()
            .map(|f| FamilyRecord {
                time_ns: f.time_ns,
                family: Some(f.family.clone()),
            })
            .collect(),
    }
    .encode_to_vec()
}

fn decode(data: &[u8]) -> Result<Group, String> {
    let record = GroupRecord::decode(data).map_err(|e| e.to_string())?;
    let mut group = Group {
        labels: record
            .labels
            .into_iter()
            .map(|l| (l.name.unwrap_or_default(), l.value.unwrap_or_default()))
            .collect(),
        ..Group::default()
    };
    for f in record.families {
        let family = f.family.ok_or("a family record without a family")?;
        let name = family.name.clone().unwrap_or_default();
        group.families.insert(
            name,
            StoredFamily {
                time_ns: f.time_ns,
                family,
            },
        );
    }
    Ok(group)
}

impl Backend for SqliteBackend {
    fn load(&mut self) -> Result<Vec<(GroupKey, Group)>, StorageError> {
        match self.loaded.take() {
            Some(groups) => Ok(groups),
            None => read_groups(&self.conn).map_err(|reason| StorageError::Corrupt {
                path: self.path.display().to_string(),
                reason,
            }),
        }
    }

    fn commit(&mut self, changes: &[(GroupKey, Option<Arc<Group>>)]) -> Result<(), StorageError> {
        let err = |e: rusqlite::Error| StorageError::Io(format!("commit to {} failed: {e}", self.path.display()));
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare_cached("INSERT OR REPLACE INTO groups (key, crc, data) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            let mut delete = tx.prepare_cached("DELETE FROM groups WHERE key = ?1").map_err(err)?;
            for (key, group) in changes {
                match group {
                    Some(g) => {
                        let data = encode(g);
                        upsert
                            .execute(params![key.to_bytes(), i64::from(crc32fast::hash(&data)), data])
                            .map_err(err)?;
                    }
                    None => {
                        delete.execute(params![key.to_bytes()]).map_err(err)?;
                    }
                }
            }
        }
        tx.commit().map_err(err)
    }
}
