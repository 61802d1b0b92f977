//! Schema versions, kept the same way by every store.
//!
//! A store's `MIGRATIONS[i]` takes a database from version `i` to `i + 1`; version 0 is an
//! empty one. Append a step for every change and never edit a released one: it has already
//! run on someone's disk. [`migrate`] runs the steps a database lacks, each followed by its
//! version bump, inside one transaction of the store's that no other instance migrates in
//! at the same time, so a failure leaves the database at the version before.

use crate::store::StoreError;

/// A database being migrated, in one transaction: where its version is recorded.
pub(super) trait Versioned {
    /// The version recorded (0: none yet).
    fn version(&mut self) -> Result<i64, StoreError>;
    /// Runs `step`, then records `version`.
    fn step(&mut self, step: &str, version: usize) -> Result<(), StoreError>;
}

/// Brings the database to `steps.len()`; refuses one written by a newer build, whose tables
/// this one would misread.
pub(super) fn migrate(db: &mut impl Versioned, steps: &[&str]) -> Result<(), StoreError> {
    let newest = steps.len();
    let current = db.version()?;
    let current = usize::try_from(current)
        .map_err(|_| StoreError::Database(format!("migrate: negative schema version {current}")))?;
    if current > newest {
        return Err(StoreError::Database(format!(
            "migrate: schema version {current} is newer than this program's {newest}"
        )));
    }
    for (done, step) in steps.iter().enumerate().skip(current) {
        db.step(step, done + 1)?;
    }
    Ok(())
}
