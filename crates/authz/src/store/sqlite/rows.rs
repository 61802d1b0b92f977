//! How SQLite keeps each kind of column ([`Columns`]): lists as JSON arrays of strings,
//! counters and times as `INTEGER`. The column lists and the readers are the shared ones
//! (`store::columns`).

use rusqlite::types::{FromSql, Type};
use rusqlite::Row;

use crate::store::columns::{Columns, Reader};
use crate::store::{StoreError, UnixTime};

/// A row being read, column after column.
struct Cursor<'r, 's> {
    row: &'r Row<'s>,
    /// The index of the next column.
    at: usize,
}

impl Cursor<'_, '_> {
    fn next<T: FromSql>(&mut self) -> rusqlite::Result<T> {
        self.at += 1;
        self.row.get(self.at - 1)
    }
}

impl Columns for Cursor<'_, '_> {
    type Error = rusqlite::Error;

    fn text(&mut self) -> rusqlite::Result<String> {
        self.next()
    }

    fn optional_text(&mut self) -> rusqlite::Result<Option<String>> {
        self.next()
    }

    fn time(&mut self) -> rusqlite::Result<UnixTime> {
        self.next()
    }

    fn optional_time(&mut self) -> rusqlite::Result<Option<UnixTime>> {
        self.next()
    }

    fn count(&mut self) -> rusqlite::Result<u32> {
        self.next()
    }

    fn list(&mut self) -> rusqlite::Result<Vec<String>> {
        let text: String = self.next()?;
        // serde_json's message names a position, never the text.
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(self.at - 1, Type::Text, Box::new(e))
        })
    }

    fn bytes(&mut self) -> rusqlite::Result<Vec<u8>> {
        self.next()
    }

    /// The value is not echoed.
    fn unknown(&self, what: &str) -> rusqlite::Error {
        let message = format!("unknown {what}").into();
        rusqlite::Error::FromSqlConversionFailure(self.at.saturating_sub(1), Type::Text, message)
    }
}

/// `row` read by `record`.
pub(super) fn read<T>(row: &Row<'_>, record: Reader<T, rusqlite::Error>) -> rusqlite::Result<T> {
    record(&mut Cursor { row, at: 0 })
}

/// A list column's text: a JSON array of strings.
pub(super) fn list_text(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Database(format!("encode list: {e}")))
}
