//! What is SQLite's own: the file, its mode and journal, the schema version, the lock, and
//! server secrets across a reopen and between processes opening the file at once.

use super::*;

#[test]
fn round_trip_on_disk_and_reopen() {
    let db = TempDb::new("reopen");
    conformance::records::round_trip(&SqliteStore::open(db.path()).unwrap());
    let store = SqliteStore::open(db.path()).unwrap();
    assert_eq!(store.client("app").unwrap(), Some(client("app")));
    assert_eq!(store.signing_keys().unwrap().len(), 3);
    let version = schema::version(&store.conn()).unwrap();
    assert_eq!(version, schema::VERSION as i64);
    assert!(version >= 1);
    let mode: String = store
        .conn()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn newer_schema_is_refused() {
    let db = TempDb::new("newer");
    drop(SqliteStore::open(db.path()).unwrap());
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = SqliteStore::open(db.path()).unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
}

#[cfg(unix)]
#[test]
fn file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::new("mode");
    let store = SqliteStore::open(db.path()).unwrap();
    store.insert_signing_key(&key("k", NOW)).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(db.path()), 0o600);
    // SQLite gives the write-ahead log the database's mode; it holds the key too.
    assert!(db.sidecar("-wal").exists());
    assert_eq!(mode(&db.sidecar("-wal")), 0o600);
}

#[test]
fn open_fails_in_a_missing_directory() {
    let db = TempDb::new("missing-dir");
    let path = db.path().join("issuer.sqlite3");
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Database(_))
    ));
}

#[test]
fn debug_shows_no_keys() {
    let store = mem();
    store.insert_signing_key(&key("k", NOW)).unwrap();
    let debug = format!("{store:?}");
    assert!(debug.contains("SqliteStore"), "{debug}");
    assert!(!debug.contains("ES256") && !debug.contains("48"), "{debug}");
}

#[test]
fn poisoned_lock_is_recovered() {
    let store = Arc::new(mem());
    let poisoner = store.clone();
    let result = thread::spawn(move || {
        let _guard = poisoner.conn();
        panic!("poison the lock");
    })
    .join();
    assert!(result.is_err());
    assert!(store.conn.is_poisoned());
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    assert!(store.grant("g1").unwrap().is_some());
}

/// The sharing itself is a conformance case; here, the file keeps them.
#[test]
fn server_secrets_survive_a_reopen() {
    let db = TempDb::new("secrets");
    let first = SqliteStore::open(db.path()).unwrap();
    assert_eq!(first.server_secret("mac", b"one").unwrap(), b"one");
    drop(first);
    let reopened = SqliteStore::open(db.path()).unwrap();
    assert_eq!(reopened.server_secret("mac", b"four").unwrap(), b"one");
}

#[test]
fn server_secret_racers_agree() {
    let db = TempDb::new("secret-race");
    drop(SqliteStore::open(db.path()).unwrap());
    let barrier = Arc::new(Barrier::new(4));
    let path = db.path().to_path_buf();
    let got: Vec<Vec<u8>> = (0..4u8)
        .map(|n| {
            let (barrier, path) = (barrier.clone(), path.clone());
            thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                barrier.wait();
                store.server_secret("mac", &[n; 32]).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(got.iter().all(|secret| secret == &got[0]), "{got:?}");
}
