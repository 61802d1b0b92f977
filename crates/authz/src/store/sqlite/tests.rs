//! Tests of [`SqliteStore`] in memory and on disk: records and files in [`records`],
//! the atomic steps and the sweep in [`steps`]; the fixtures here.

mod records;
mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::{schema, SqliteStore, SWEEP_GRACE};
use crate::store::{
    ApiKeyRecord, ClientAuthMethod, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus,
    GrantRecord, KeyRecord, RefreshRecord, RegisteredBy, Store, StoreError, TokenHash, UnixTime,
    PERMISSION_CLIENT_REGISTRATION,
};

const NOW: UnixTime = 1_700_000_000;

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

fn hash(tag: &str) -> TokenHash {
    TokenHash(format!("{tag:0>64}"))
}

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        id: id.to_owned(),
        secret_hash: Some(hash("5ec7e7")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        name: Some("Mail \"app\"\nsecond line".to_owned()),
        redirect_uris: vec![
            "https://app.example/cb".to_owned(),
            "com.example.app:/cb,with\ncomma".to_owned(),
        ],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        registered_by: RegisteredBy::ApiKey,
        created_at: NOW,
    }
}

fn grant(id: &str, client_id: &str, created_at: UnixTime) -> GrantRecord {
    GrantRecord {
        id: id.to_owned(),
        user: "alice@example.org".to_owned(),
        client_id: client_id.to_owned(),
        scope: "imap smtp".to_owned(),
        created_at,
        revoked_at: None,
    }
}

fn code(tag: &str, expires_at: UnixTime) -> CodeRecord {
    CodeRecord {
        hash: hash(tag),
        user: "alice@example.org".to_owned(),
        client_id: "app".to_owned(),
        redirect_uri: "http://127.0.0.1:4711/cb".to_owned(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned()),
        scope: "imap".to_owned(),
        expires_at,
        failed_attempts: 0,
        grant_id: None,
    }
}

fn refresh(tag: &str, grant_id: &str, expires_at: UnixTime) -> RefreshRecord {
    RefreshRecord {
        hash: hash(tag),
        grant_id: grant_id.to_owned(),
        expires_at,
        spent_at: None,
    }
}

fn device(tag: &str, user_code: &str, expires_at: UnixTime) -> DeviceRecord {
    DeviceRecord {
        device_hash: hash(tag),
        user_code: user_code.to_owned(),
        client_id: "tv".to_owned(),
        scope: "imap".to_owned(),
        expires_at,
        interval: 5,
        last_poll: None,
        status: DeviceStatus::Pending,
    }
}

fn key(kid: &str, created_at: UnixTime) -> KeyRecord {
    KeyRecord {
        kid: kid.to_owned(),
        algorithm: "ES256".to_owned(),
        private_pkcs8: vec![0x30, 0x81, 0x87, 0x00, 0xff, kid.len() as u8],
        created_at,
        retired_at: None,
    }
}
