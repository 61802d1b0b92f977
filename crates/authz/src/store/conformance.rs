//! What every [`Store`] must do, written once and run against each implementation: SQLite
//! (`sqlite/tests.rs`) and PostgreSQL (`postgres/tests.rs`, against a real server). Records
//! in and out in [`records`], the atomic steps and the sweep in [`steps`], and the races in
//! [`races`], where two stores over one database (two connections, or two instances' pools)
//! hammer one row and exactly one caller must win.
//!
//! An implementation's tests call [`store_conformance!`] with two functions: one giving a
//! fresh, empty store, one giving two stores over one fresh database; each returns a guard
//! to keep alive (a temporary file, a server) beside the stores.

pub(crate) mod races;
pub(crate) mod records;
pub(crate) mod steps;

use crate::store::{
    ClientAuthMethod, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus, GrantRecord, KeyRecord,
    RefreshRecord, RegisteredBy, TokenHash, UnixTime,
};

/// A fixed "now" for records.
pub(crate) const NOW: UnixTime = 1_700_000_000;

/// What keeps a test's database alive.
pub(crate) type Guard = Box<dyn std::any::Any>;

/// One `#[test]` per conformance case, over the stores `$fresh()` (a guard and an empty
/// store) and `$pair()` (a guard and two stores over one empty database) make.
macro_rules! store_conformance {
    ($fresh:path, $pair:path) => {
        $crate::store::conformance::store_conformance!(@single $fresh;
            records::round_trip,
            records::duplicates_conflict,
            records::refresh_needs_its_grant,
            steps::code_is_redeemed_once_and_counts_failures,
            steps::refresh_rotates_once,
            steps::device_decided_only_while_pending_and_finished_once,
            steps::device_polls_are_recorded,
            steps::revoke_grant_is_idempotent,
            steps::removing_a_client_revokes_its_grants,
            steps::retired_keys_only_are_deleted,
            steps::signing_key_rotation_is_conditional,
            steps::sweep_deletes_the_dead_and_keeps_the_living,
        );
        $crate::store::conformance::store_conformance!(@pair $pair;
            records::server_secrets_are_written_once_and_shared,
            races::code_redemption_race_has_one_winner,
            races::refresh_rotation_race_has_one_winner,
            races::device_finish_race_has_one_winner,
            races::signing_key_rotation_race_has_one_winner,
        );
    };
    (@single $fresh:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (_guard, store) = $fresh();
                $crate::store::conformance::$module::$case(&*store);
            }
        )*
    };
    (@pair $pair:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (_guard, first, second) = $pair();
                $crate::store::conformance::$module::$case(first, second);
            }
        )*
    };
}
pub(crate) use store_conformance;

/// A hash-shaped value tagged `tag`.
pub(crate) fn hash(tag: &str) -> TokenHash {
    TokenHash(format!("{tag:0>64}"))
}

pub(crate) fn client(id: &str) -> ClientRecord {
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

pub(crate) fn grant(id: &str, client_id: &str, created_at: UnixTime) -> GrantRecord {
    GrantRecord {
        id: id.to_owned(),
        user: "alice@example.org".to_owned(),
        client_id: client_id.to_owned(),
        scope: "imap smtp".to_owned(),
        resource: vec!["imap://mail.example.org".to_owned()],
        created_at,
        revoked_at: None,
    }
}

pub(crate) fn code(tag: &str, expires_at: UnixTime) -> CodeRecord {
    CodeRecord {
        hash: hash(tag),
        user: "alice@example.org".to_owned(),
        client_id: "app".to_owned(),
        redirect_uri: "http://127.0.0.1:4711/cb".to_owned(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned()),
        scope: "imap".to_owned(),
        resource: vec![
            "imap://mail.example.org".to_owned(),
            "smtp://mail.example.org:465".to_owned(),
        ],
        expires_at,
        failed_attempts: 0,
        grant_id: None,
    }
}

pub(crate) fn refresh(tag: &str, grant_id: &str, expires_at: UnixTime) -> RefreshRecord {
    RefreshRecord {
        hash: hash(tag),
        grant_id: grant_id.to_owned(),
        expires_at,
        spent_at: None,
    }
}

pub(crate) fn device(tag: &str, user_code: &str, expires_at: UnixTime) -> DeviceRecord {
    DeviceRecord {
        device_hash: hash(tag),
        user_code: user_code.to_owned(),
        client_id: "tv".to_owned(),
        scope: "imap".to_owned(),
        resource: Vec::new(),
        expires_at,
        interval: 5,
        last_poll: None,
        status: DeviceStatus::Pending,
    }
}

pub(crate) fn key(kid: &str, created_at: UnixTime) -> KeyRecord {
    KeyRecord {
        kid: kid.to_owned(),
        algorithm: "ES256".to_owned(),
        private_pkcs8: vec![0x30, 0x81, 0x87, 0x00, 0xff, kid.len() as u8],
        created_at,
        retired_at: None,
    }
}
