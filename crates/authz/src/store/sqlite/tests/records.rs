//! Records in and out, the file, the schema version, errors.

use super::*;

/// Every record type in, the same out.
fn round_trip(store: &SqliteStore) {
    let mut public = client("public");
    public.secret_hash = None;
    public.auth_method = ClientAuthMethod::None;
    public.name = None;
    public.redirect_uris = Vec::new();
    public.registered_by = RegisteredBy::Anonymous;
    let mut admin = client("admin-app");
    admin.auth_method = ClientAuthMethod::ClientSecretPost;
    admin.registered_by = RegisteredBy::Admin;
    for c in [&public, &admin, &client("app")] {
        store.insert_client(c).unwrap();
    }
    assert_eq!(store.client("app").unwrap(), Some(client("app")));
    assert_eq!(store.client("public").unwrap(), Some(public.clone()));
    assert_eq!(store.client("nobody").unwrap(), None);
    let ids: Vec<_> = store.clients().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["admin-app", "app", "public"]);

    let api_key = ApiKeyRecord {
        hash: hash("a91"),
        permissions: vec![PERMISSION_CLIENT_REGISTRATION.to_owned()],
        created_at: NOW,
    };
    store.insert_api_key(&api_key).unwrap();
    assert_eq!(store.api_key(&hash("a91")).unwrap(), Some(api_key));
    assert_eq!(store.api_key(&hash("a92")).unwrap(), None);

    let mut revoked = grant("g2", "app", NOW);
    revoked.revoked_at = Some(NOW + 1);
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    store.insert_grant(&revoked).unwrap();
    assert_eq!(store.grant("g1").unwrap(), Some(grant("g1", "app", NOW)));
    assert_eq!(store.grant("g2").unwrap(), Some(revoked));
    assert_eq!(store.grant("g3").unwrap(), None);

    let mut confidential = code("c2", NOW + 600);
    confidential.code_challenge = None;
    confidential.failed_attempts = 2;
    confidential.grant_id = Some("g1".to_owned());
    store.insert_code(&code("c1", NOW + 600)).unwrap();
    store.insert_code(&confidential).unwrap();
    assert_eq!(
        store.code(&hash("c1")).unwrap(),
        Some(code("c1", NOW + 600))
    );
    assert_eq!(store.code(&hash("c2")).unwrap(), Some(confidential));
    assert_eq!(store.code(&hash("c3")).unwrap(), None);

    let mut spent = refresh("r2", "g1", NOW + 100);
    spent.spent_at = Some(NOW + 50);
    store
        .insert_refresh(&refresh("r1", "g1", NOW + 100))
        .unwrap();
    store.insert_refresh(&spent).unwrap();
    assert_eq!(
        store.refresh(&hash("r1")).unwrap(),
        Some(refresh("r1", "g1", NOW + 100))
    );
    assert_eq!(store.refresh(&hash("r2")).unwrap(), Some(spent));
    assert_eq!(store.refresh(&hash("r3")).unwrap(), None);

    let statuses = [
        DeviceStatus::Pending,
        DeviceStatus::Approved {
            user: "bob".to_owned(),
        },
        DeviceStatus::Denied,
        DeviceStatus::Finished,
    ];
    for (n, status) in statuses.into_iter().enumerate() {
        let mut d = device(&format!("d{n}"), &format!("USER000{n}"), NOW + 900);
        d.last_poll = (n % 2 == 1).then_some(NOW + 7);
        d.interval = 5 + n as u32;
        d.status = status;
        store.insert_device(&d).unwrap();
        assert_eq!(store.device(&d.device_hash).unwrap(), Some(d.clone()));
        assert_eq!(store.device_by_user_code(&d.user_code).unwrap(), Some(d));
    }
    assert_eq!(store.device(&hash("d9")).unwrap(), None);
    assert_eq!(store.device_by_user_code("NOSUCH00").unwrap(), None);

    assert_eq!(store.consent("alice", "app").unwrap(), None);
    store.put_consent("alice", "app", "imap", NOW).unwrap();
    store.put_consent("alice", "other", "smtp", NOW).unwrap();
    assert_eq!(
        store.consent("alice", "app").unwrap().as_deref(),
        Some("imap")
    );
    store
        .put_consent("alice", "app", "imap smtp", NOW + 1)
        .unwrap();
    assert_eq!(
        store.consent("alice", "app").unwrap().as_deref(),
        Some("imap smtp")
    );
    assert_eq!(
        store.consent("alice", "other").unwrap().as_deref(),
        Some("smtp")
    );
    assert_eq!(store.consent("bob", "app").unwrap(), None);

    let mut old = key("k-old", NOW - 10);
    old.retired_at = Some(NOW);
    store.insert_signing_key(&old).unwrap();
    store.insert_signing_key(&key("k-new", NOW)).unwrap();
    store
        .insert_signing_key(&key("k-same-second", NOW))
        .unwrap();
    let kids: Vec<_> = store
        .signing_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k-same-second", "k-new", "k-old"]);
    assert_eq!(store.signing_keys().unwrap()[2], old);
}

#[test]
fn round_trip_in_memory() {
    round_trip(&mem());
}

#[test]
fn round_trip_on_disk_and_reopen() {
    let db = TempDb::new("reopen");
    round_trip(&SqliteStore::open(db.path()).unwrap());
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
fn duplicates_conflict() {
    let store = mem();
    store.insert_client(&client("app")).unwrap();
    let error = store.insert_client(&client("app")).unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict(what) if what.contains("app")),
        "{error}"
    );

    store
        .insert_device(&device("d1", "ABCD2345", NOW + 900))
        .unwrap();
    let error = store
        .insert_device(&device("d2", "ABCD2345", NOW + 900))
        .unwrap_err();
    assert!(matches!(&error, StoreError::Conflict(what) if !what.contains("ABCD2345")));
    // The losing insert left nothing behind.
    assert_eq!(store.device(&hash("d2")).unwrap(), None);
}

#[test]
fn refresh_needs_its_grant() {
    let store = mem();
    let error = store
        .insert_refresh(&refresh("r1", "no-grant", NOW))
        .unwrap_err();
    assert!(matches!(error, StoreError::Database(_)), "{error}");
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
