//! Races between two stores over one database (two connections to one SQLite file, or two
//! instances' PostgreSQL pools): threads released at once by a barrier call the same
//! single-winner step, half through each store, and exactly one must win.

use std::sync::{Arc, Barrier};
use std::thread;

use super::*;
use crate::store::{DeviceStatus, Store};

/// Threads per race, half on each store.
const THREADS: usize = 8;
/// Races per test: a lucky interleaving passes once, not every time.
const ROUNDS: usize = 4;

/// Runs `step(store, n)` on [`THREADS`] threads released together, thread `n` through
/// `first` when even and `second` when odd; what each returned.
fn race<T: Send + 'static>(
    first: &Arc<dyn Store>,
    second: &Arc<dyn Store>,
    step: impl Fn(&dyn Store, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(THREADS));
    let step = Arc::new(step);
    let handles: Vec<_> = (0..THREADS)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { first } else { second });
            let (barrier, step) = (barrier.clone(), step.clone());
            thread::spawn(move || {
                barrier.wait();
                step(store.as_ref(), n)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().expect("racer panicked"))
        .collect()
}

/// The one winner's index.
fn one_winner(wins: &[bool]) -> usize {
    assert_eq!(wins.iter().filter(|&&won| won).count(), 1, "{wins:?}");
    wins.iter().position(|&won| won).unwrap_or(usize::MAX)
}

pub(crate) fn code_redemption_race_has_one_winner(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    for round in 0..ROUNDS {
        let tag = format!("race{round}");
        first.insert_code(&code(&tag, NOW + 600)).unwrap();
        let racing = tag.clone();
        let wins = race(&first, &second, move |store, n| {
            store
                .redeem_code(&hash(&racing), &format!("grant-{n}"))
                .unwrap()
        });
        let winner = one_winner(&wins);
        let stored = second.code(&hash(&tag)).unwrap().unwrap();
        assert_eq!(stored.grant_id, Some(format!("grant-{winner}")));
    }
}

/// One successor written, by the one winner.
pub(crate) fn refresh_rotation_race_has_one_winner(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    first.insert_grant(&grant("g1", "app", NOW)).unwrap();
    for round in 0..ROUNDS {
        let old = format!("r{round}");
        first
            .insert_refresh(&refresh(&old, "g1", NOW + 100))
            .unwrap();
        let racing = old.clone();
        let wins = race(&first, &second, move |store, n| {
            let next = refresh(&format!("next{round}-{n}"), "g1", NOW + 200);
            store
                .rotate_refresh(&hash(&racing), &next, NOW + 1)
                .unwrap()
        });
        let winner = one_winner(&wins);
        let successors: Vec<usize> = (0..THREADS)
            .filter(|n| {
                second
                    .refresh(&hash(&format!("next{round}-{n}")))
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(successors, [winner]);
        assert_eq!(
            first.refresh(&hash(&old)).unwrap().unwrap().spent_at,
            Some(NOW + 1)
        );
    }
}

/// An approved device authorization gives tokens to one poll.
pub(crate) fn device_finish_race_has_one_winner(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    for round in 0..ROUNDS {
        let tag = format!("dev{round}");
        let user_code = format!("RACE000{round}");
        first
            .insert_device(&device(&tag, &user_code, NOW + 900))
            .unwrap();
        let approved = DeviceStatus::Approved {
            user: "alice".to_owned(),
        };
        assert!(second.decide_device(&user_code, &approved).unwrap());
        let racing = tag.clone();
        let wins = race(&first, &second, move |store, _| {
            store.finish_device(&hash(&racing)).unwrap()
        });
        one_winner(&wins);
        assert_eq!(
            first.device(&hash(&tag)).unwrap().unwrap().status,
            DeviceStatus::Finished
        );
    }
}

/// Instances rotating at once with the same cut-off: one new key, every other retired.
pub(crate) fn signing_key_rotation_race_has_one_winner(
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
) {
    first.insert_signing_key(&key("k0", NOW - 600)).unwrap();
    for round in 0..ROUNDS {
        let at = NOW + 600 * round as i64;
        let wins = race(&first, &second, move |store, n| {
            store
                .rotate_signing_key(&key(&format!("k{round}-{n}"), at), at - 600)
                .unwrap()
        });
        let winner = one_winner(&wins);
        let keys = second.signing_keys().unwrap();
        let unretired: Vec<&str> = keys
            .iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(unretired, [format!("k{round}-{winner}")]);
        assert_eq!(keys.len(), round + 2, "one key per rotation: {keys:?}");
    }
}
