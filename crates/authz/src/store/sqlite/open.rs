//! Opening a [`SqliteStore`]: the file (created private), the connection's settings and the
//! schema.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{db, schema, SqliteStore};
use crate::store::StoreError;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl SqliteStore {
    /// Opens the store at `path`, creating the file (mode 0600) if missing and bringing its
    /// schema up to date. The directory must exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        // No CREATE flag: the file exists now, with our mode; anything else is an error.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(db("open"))?;
        let store = Self::with_connection(conn, Some(path.to_path_buf()))?;
        Ok(store)
    }

    /// A store that lives and dies with this value (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db("open"))?;
        Self::with_connection(conn, None)
    }

    fn with_connection(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("busy_timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(db("journal_mode"))?;
        if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot do WAL; SQLite keeps its old mode,
            // which is slower under concurrent readers but still correct.
            tracing::warn!(journal_mode = %mode, "store: WAL journal mode unavailable");
        }
        // NORMAL is durable across application crashes; in WAL mode a power loss can lose
        // the last transactions but never corrupts the file.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db("synchronous"))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(db("foreign_keys"))?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }
}

/// Creates `path` mode 0600 unless it exists; warns if an existing one is readable by
/// others (the admin's choice, not changed behind their back).
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            warn_if_shared(path);
            Ok(())
        }
        Err(e) => Err(StoreError::Database(format!(
            "create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "store: the file holds private signing keys but others may read it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}
