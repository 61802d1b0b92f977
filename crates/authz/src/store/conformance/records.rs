//! Records in and out, uniqueness, references, server secrets.

use std::sync::Arc;

use super::*;
use crate::store::steps::SWEEP_GRACE;
use crate::store::{ApiKeyRecord, Store, StoreError, PERMISSION_CLIENT_REGISTRATION};

/// Every record type in, the same out.
pub(crate) fn round_trip(store: &dyn Store) {
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

pub(crate) fn duplicates_conflict(store: &dyn Store) {
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

pub(crate) fn refresh_needs_its_grant(store: &dyn Store) {
    let error = store
        .insert_refresh(&refresh("r1", "no-grant", NOW))
        .unwrap_err();
    assert!(matches!(error, StoreError::Database(_)), "{error}");
}

/// Written once: the second store (another instance) offering its own secret gets the
/// first one's; a sweep keeps them.
pub(crate) fn server_secrets_are_written_once_and_shared(
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
) {
    assert_eq!(first.server_secret("mac", b"one").unwrap(), b"one");
    assert_eq!(second.server_secret("mac", b"two").unwrap(), b"one");
    assert_eq!(first.server_secret("mac", b"three").unwrap(), b"one");
    assert_eq!(second.server_secret("other", b"two").unwrap(), b"two");
    first.sweep(NOW + 100 * SWEEP_GRACE).unwrap();
    assert_eq!(second.server_secret("mac", b"four").unwrap(), b"one");
}
