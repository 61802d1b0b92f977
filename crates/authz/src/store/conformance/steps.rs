//! The atomic steps the grant logic relies on, key rotation, and the sweep.

use super::*;
use crate::store::steps::SWEEP_GRACE;
use crate::store::{DeviceStatus, Store, StoreError};

pub(crate) fn code_is_redeemed_once_and_counts_failures(store: &dyn Store) {
    store.insert_code(&code("c1", NOW + 600)).unwrap();
    assert_eq!(store.code_failed(&hash("c1")).unwrap(), 1);
    assert_eq!(store.code_failed(&hash("c1")).unwrap(), 2);
    assert_eq!(store.code_failed(&hash("nope")).unwrap(), 0);
    assert!(store.redeem_code(&hash("c1"), "g1").unwrap());
    assert!(!store.redeem_code(&hash("c1"), "g2").unwrap());
    assert!(!store.redeem_code(&hash("nope"), "g3").unwrap());
    let redeemed = store.code(&hash("c1")).unwrap().unwrap();
    assert_eq!(redeemed.grant_id.as_deref(), Some("g1"));
    assert_eq!(redeemed.failed_attempts, 2);
    store.delete_code(&hash("c1")).unwrap();
    assert_eq!(store.code(&hash("c1")).unwrap(), None);
}

pub(crate) fn refresh_rotates_once(store: &dyn Store) {
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    store
        .insert_refresh(&refresh("r1", "g1", NOW + 100))
        .unwrap();
    assert!(store
        .rotate_refresh(&hash("r1"), &refresh("r2", "g1", NOW + 200), NOW + 10)
        .unwrap());
    let old = store.refresh(&hash("r1")).unwrap().unwrap();
    assert_eq!(old.spent_at, Some(NOW + 10));
    assert_eq!(
        store.refresh(&hash("r2")).unwrap(),
        Some(refresh("r2", "g1", NOW + 200))
    );

    // Reuse of the spent one: refused, and its would-be successor never written.
    assert!(!store
        .rotate_refresh(&hash("r1"), &refresh("r3", "g1", NOW + 300), NOW + 20)
        .unwrap());
    assert_eq!(store.refresh(&hash("r3")).unwrap(), None);
    assert_eq!(
        store.refresh(&hash("r1")).unwrap().unwrap().spent_at,
        Some(NOW + 10)
    );
    assert!(!store
        .rotate_refresh(&hash("nope"), &refresh("r4", "g1", NOW), NOW)
        .unwrap());
    assert_eq!(store.refresh(&hash("r4")).unwrap(), None);

    // A failed insert of the successor leaves the old token unspent.
    let error = store
        .rotate_refresh(&hash("r2"), &refresh("r1", "g1", NOW + 300), NOW + 30)
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    assert_eq!(store.refresh(&hash("r2")).unwrap().unwrap().spent_at, None);
}

pub(crate) fn device_decided_only_while_pending_and_finished_once(store: &dyn Store) {
    store
        .insert_device(&device("d1", "AAAA1111", NOW + 900))
        .unwrap();
    let approved = DeviceStatus::Approved {
        user: "alice".to_owned(),
    };
    assert!(
        !store.finish_device(&hash("d1")).unwrap(),
        "pending is not approved"
    );
    assert!(!store
        .decide_device("AAAA1111", &DeviceStatus::Finished)
        .unwrap());
    assert!(!store
        .decide_device("AAAA1111", &DeviceStatus::Pending)
        .unwrap());
    assert_eq!(
        store.device(&hash("d1")).unwrap().unwrap().status,
        DeviceStatus::Pending
    );
    assert!(store.decide_device("AAAA1111", &approved).unwrap());
    assert!(!store
        .decide_device("AAAA1111", &DeviceStatus::Denied)
        .unwrap());
    assert_eq!(store.device(&hash("d1")).unwrap().unwrap().status, approved);
    assert!(store.finish_device(&hash("d1")).unwrap());
    assert!(!store.finish_device(&hash("d1")).unwrap());
    assert_eq!(
        store.device(&hash("d1")).unwrap().unwrap().status,
        DeviceStatus::Finished
    );
    assert!(!store.decide_device("AAAA1111", &approved).unwrap());

    store
        .insert_device(&device("d2", "BBBB2222", NOW + 900))
        .unwrap();
    assert!(store
        .decide_device("BBBB2222", &DeviceStatus::Denied)
        .unwrap());
    assert!(!store.decide_device("BBBB2222", &approved).unwrap());
    assert!(!store.finish_device(&hash("d2")).unwrap());
    assert_eq!(
        store.device(&hash("d2")).unwrap().unwrap().status,
        DeviceStatus::Denied
    );
    assert!(!store.decide_device("NOSUCH00", &approved).unwrap());
}

pub(crate) fn device_polls_are_recorded(store: &dyn Store) {
    store
        .insert_device(&device("d1", "AAAA1111", NOW + 900))
        .unwrap();
    assert_eq!(store.device_polled(&hash("d1"), NOW + 5, 5).unwrap(), None);
    assert_eq!(
        store.device_polled(&hash("d1"), NOW + 7, 10).unwrap(),
        Some(NOW + 5)
    );
    let d = store.device(&hash("d1")).unwrap().unwrap();
    assert_eq!((d.last_poll, d.interval), (Some(NOW + 7), 10));
    assert_eq!(store.device_polled(&hash("nope"), NOW, 5).unwrap(), None);
}

pub(crate) fn revoke_grant_is_idempotent(store: &dyn Store) {
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    assert!(store.revoke_grant("g1", NOW + 5).unwrap());
    assert!(!store.revoke_grant("g1", NOW + 9).unwrap());
    assert_eq!(
        store.grant("g1").unwrap().unwrap().revoked_at,
        Some(NOW + 5)
    );
    assert!(!store.revoke_grant("nope", NOW).unwrap());
}

pub(crate) fn removing_a_client_revokes_its_grants(store: &dyn Store) {
    store.insert_client(&client("app")).unwrap();
    store.insert_client(&client("other")).unwrap();
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    let mut earlier = grant("g2", "app", NOW);
    earlier.revoked_at = Some(NOW + 1);
    store.insert_grant(&earlier).unwrap();
    store.insert_grant(&grant("g3", "other", NOW)).unwrap();
    store
        .insert_grant(&grant("g4", "unregistered", NOW))
        .unwrap();
    store.insert_code(&code("c1", NOW + 600)).unwrap();
    store.put_consent("alice", "app", "imap", NOW).unwrap();

    assert!(store.remove_client("app", NOW + 10).unwrap());
    assert_eq!(store.client("app").unwrap(), None);
    assert!(store.client("other").unwrap().is_some());
    assert_eq!(
        store.grant("g1").unwrap().unwrap().revoked_at,
        Some(NOW + 10)
    );
    assert_eq!(
        store.grant("g2").unwrap().unwrap().revoked_at,
        Some(NOW + 1)
    );
    assert_eq!(store.grant("g3").unwrap().unwrap().revoked_at, None);
    assert_eq!(
        store.code(&hash("c1")).unwrap(),
        None,
        "codes of client app go"
    );
    assert_eq!(store.consent("alice", "app").unwrap(), None);
    assert!(!store.remove_client("app", NOW + 20).unwrap());

    // An id never registered: nothing removed, its grants revoked all the same.
    assert!(!store.remove_client("unregistered", NOW + 30).unwrap());
    assert_eq!(
        store.grant("g4").unwrap().unwrap().revoked_at,
        Some(NOW + 30)
    );
}

pub(crate) fn retired_keys_only_are_deleted(store: &dyn Store) {
    store.insert_signing_key(&key("k1", NOW)).unwrap();
    store.delete_signing_key("k1").unwrap();
    assert_eq!(store.signing_keys().unwrap().len(), 1, "current key kept");
    store.retire_signing_key("k1", NOW + 5).unwrap();
    store.retire_signing_key("k1", NOW + 9).unwrap();
    assert_eq!(store.signing_keys().unwrap()[0].retired_at, Some(NOW + 5));
    store.delete_signing_key("k1").unwrap();
    assert!(store.signing_keys().unwrap().is_empty());
}

pub(crate) fn sweep_deletes_the_dead_and_keeps_the_living(store: &dyn Store) {
    let day = SWEEP_GRACE;
    // Codes: expired (one redeemed) go; live ones, redeemed or not, stay.
    store.insert_code(&code("c-expired", NOW - 1)).unwrap();
    let mut redeemed_expired = code("c-redeemed-expired", NOW - 1);
    redeemed_expired.grant_id = Some("g-live".to_owned());
    store.insert_code(&redeemed_expired).unwrap();
    store.insert_code(&code("c-live", NOW + 60)).unwrap();
    let mut redeemed_live = code("c-redeemed-live", NOW + 60);
    redeemed_live.grant_id = Some("g-live".to_owned());
    store.insert_code(&redeemed_live).unwrap();
    // Devices.
    store
        .insert_device(&device("d-expired", "EXPIRED0", NOW - 1))
        .unwrap();
    store
        .insert_device(&device("d-live", "LIVE0000", NOW + 60))
        .unwrap();
    // A live grant with a live and a long-expired refresh token.
    store
        .insert_grant(&grant("g-live", "app", NOW - 40 * day))
        .unwrap();
    store
        .insert_refresh(&refresh("r-live", "g-live", NOW + day))
        .unwrap();
    store
        .insert_refresh(&refresh("r-dead", "g-live", NOW - day - 1))
        .unwrap();
    // A grant whose last refresh token expired only just: its access tokens may live.
    store
        .insert_grant(&grant("g-recent-expiry", "app", NOW - 40 * day))
        .unwrap();
    store
        .insert_refresh(&refresh("r-recent", "g-recent-expiry", NOW - 10))
        .unwrap();
    // A grant whose refresh tokens all expired more than a day ago.
    store
        .insert_grant(&grant("g-stale", "app", NOW - 40 * day))
        .unwrap();
    store
        .insert_refresh(&refresh("r-stale", "g-stale", NOW - day - 1))
        .unwrap();
    // A new grant without a refresh token yet.
    store
        .insert_grant(&grant("g-new", "app", NOW - 60))
        .unwrap();
    // Revoked long ago (its unexpired refresh token goes with it) and just now.
    store
        .insert_grant(&grant("g-revoked-old", "app", NOW - 3 * day))
        .unwrap();
    store
        .insert_refresh(&refresh("r-revoked", "g-revoked-old", NOW + day))
        .unwrap();
    store.revoke_grant("g-revoked-old", NOW - day - 1).unwrap();
    store
        .insert_grant(&grant("g-revoked-now", "app", NOW - 3 * day))
        .unwrap();
    store
        .insert_refresh(&refresh("r-revoked-now", "g-revoked-now", NOW + day))
        .unwrap();
    store.revoke_grant("g-revoked-now", NOW - 60).unwrap();
    store
        .put_consent("alice", "app", "imap", NOW - 400 * day)
        .unwrap();

    // codes 2, devices 1, refresh r-dead r-stale r-revoked, grants g-revoked-old g-stale
    assert_eq!(store.sweep(NOW).unwrap(), 8);

    for gone in ["c-expired", "c-redeemed-expired"] {
        assert_eq!(store.code(&hash(gone)).unwrap(), None, "{gone}");
    }
    for kept in ["c-live", "c-redeemed-live"] {
        assert!(store.code(&hash(kept)).unwrap().is_some(), "{kept}");
    }
    assert_eq!(store.device(&hash("d-expired")).unwrap(), None);
    assert!(store.device(&hash("d-live")).unwrap().is_some());
    for gone in ["r-dead", "r-stale", "r-revoked"] {
        assert_eq!(store.refresh(&hash(gone)).unwrap(), None, "{gone}");
    }
    for kept in ["r-live", "r-recent", "r-revoked-now"] {
        assert!(store.refresh(&hash(kept)).unwrap().is_some(), "{kept}");
    }
    for gone in ["g-stale", "g-revoked-old"] {
        assert_eq!(store.grant(gone).unwrap(), None, "{gone}");
    }
    for kept in ["g-live", "g-recent-expiry", "g-new", "g-revoked-now"] {
        assert!(store.grant(kept).unwrap().is_some(), "{kept}");
    }
    assert!(store.consent("alice", "app").unwrap().is_some());

    // Nothing more to do at the same time; a day later the recently expired family goes.
    assert_eq!(store.sweep(NOW).unwrap(), 0);
    assert!(store.sweep(NOW + day + 1).unwrap() >= 2);
    assert_eq!(store.grant("g-recent-expiry").unwrap(), None);
    assert_eq!(store.refresh(&hash("r-recent")).unwrap(), None);
    assert!(store.grant("g-live").unwrap().is_some());
}

/// A rotation goes in only while no unretired key is younger than the cut-off, and retires
/// every other unretired key when it does.
pub(crate) fn signing_key_rotation_is_conditional(store: &dyn Store) {
    assert!(store
        .rotate_signing_key(&key("k1", NOW), UnixTime::MIN)
        .unwrap());
    assert!(
        !store
            .rotate_signing_key(&key("k1b", NOW), UnixTime::MIN)
            .unwrap(),
        "a store with a key gets no first key"
    );
    // k1 is 600 s old at NOW + 600: due for a 600 s lifetime, not for a longer one.
    assert!(!store
        .rotate_signing_key(&key("k2", NOW + 600), NOW - 1)
        .unwrap());
    assert!(store
        .rotate_signing_key(&key("k2", NOW + 600), NOW)
        .unwrap());
    let keys = store.signing_keys().unwrap();
    let state: Vec<_> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.retired_at))
        .collect();
    assert_eq!(state, [("k2", None), ("k1", Some(NOW + 600))]);
    // A second instance rotating with the same cut-off finds k2: nothing changes.
    assert!(!store
        .rotate_signing_key(&key("k3", NOW + 601), NOW)
        .unwrap());
    assert_eq!(store.signing_keys().unwrap().len(), 2);
    // MAX always rotates; a kid taken is a conflict and changes nothing.
    assert!(matches!(
        store.rotate_signing_key(&key("k2", NOW + 700), UnixTime::MAX),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.signing_keys().unwrap()[0].retired_at, None);
    assert!(store
        .rotate_signing_key(&key("k4", NOW + 700), UnixTime::MAX)
        .unwrap());
    let keys = store.signing_keys().unwrap();
    assert_eq!(keys[0].kid, "k4");
    assert!(keys[1..].iter().all(|k| k.retired_at.is_some()), "{keys:?}");
    assert_eq!(keys[1].retired_at, Some(NOW + 700), "k2 retired by k4");
    assert_eq!(
        keys[2].retired_at,
        Some(NOW + 600),
        "k1 keeps its first retirement"
    );
}
