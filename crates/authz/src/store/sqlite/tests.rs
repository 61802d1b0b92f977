//! Tests of [`SqliteStore`]: the store conformance suite (`store::conformance`) in memory,
//! its races over two connections to one file; and in [`records`] what is SQLite's own: the
//! file, its mode and journal, the schema version, the lock.

mod records;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::{schema, SqliteStore};
use crate::store::conformance::{self, client, grant, key, Guard, NOW};
use crate::store::{Store, StoreError};

/// A database file in the temp dir, removed (with its WAL files) when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "authz-sqlite-{}-{name}-{n}.sqlite3",
            std::process::id()
        ));
        let db = TempDb(path);
        db.remove();
        db
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn sidecar(&self, suffix: &str) -> PathBuf {
        let mut name = self.0.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    fn remove(&self) {
        for path in [self.0.clone(), self.sidecar("-wal"), self.sidecar("-shm")] {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn mem() -> SqliteStore {
    SqliteStore::open_in_memory().unwrap()
}

/// An empty store in memory.
fn fresh() -> (Guard, Arc<dyn Store>) {
    (Box::new(()), Arc::new(mem()))
}

/// Two connections to one new file, as two processes would have.
fn pair() -> (Guard, Arc<dyn Store>, Arc<dyn Store>) {
    let db = TempDb::new("pair");
    let first = Arc::new(SqliteStore::open(db.path()).unwrap());
    let second = Arc::new(SqliteStore::open(db.path()).unwrap());
    (Box::new(db), first, second)
}

conformance::store_conformance!(fresh, pair);
