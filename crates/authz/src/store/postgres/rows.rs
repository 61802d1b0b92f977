//! How PostgreSQL keeps each kind of column ([`Columns`]): lists as `TEXT[]`, counters and
//! times as `BIGINT`. The column lists and the readers are the shared ones
//! (`store::columns`).

use postgres::types::FromSql;
use postgres::Row;

use crate::store::columns::{Columns, Reader};
use crate::store::{StoreError, UnixTime};

type Read<T> = Result<T, StoreError>;

/// Column `idx` of `row`, as `T`.
fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Read<T> {
    row.try_get(idx).map_err(|e| {
        let name = row.columns().get(idx).map_or("?", |c| c.name());
        StoreError::Database(format!("reading column {name}: {e}"))
    })
}

/// A row being read, column after column.
struct Cursor<'r> {
    row: &'r Row,
    /// The index of the next column.
    at: usize,
}

impl Cursor<'_> {
    fn next<T: for<'a> FromSql<'a>>(&mut self) -> Read<T> {
        self.at += 1;
        get(self.row, self.at - 1)
    }
}

impl Columns for Cursor<'_> {
    type Error = StoreError;

    fn text(&mut self) -> Read<String> {
        self.next()
    }

    fn optional_text(&mut self) -> Read<Option<String>> {
        self.next()
    }

    fn time(&mut self) -> Read<UnixTime> {
        self.next()
    }

    fn optional_time(&mut self) -> Read<Option<UnixTime>> {
        self.next()
    }

    /// A `BIGINT`, which must fit.
    fn count(&mut self) -> Read<u32> {
        let value: i64 = self.next()?;
        u32::try_from(value).map_err(|_| self.unknown("counter"))
    }

    fn list(&mut self) -> Read<Vec<String>> {
        self.next()
    }

    fn bytes(&mut self) -> Read<Vec<u8>> {
        self.next()
    }

    /// Names the column, not `what`; the value is not echoed.
    fn unknown(&self, _what: &str) -> StoreError {
        let name = self
            .row
            .columns()
            .get(self.at.saturating_sub(1))
            .map_or("?", |c| c.name());
        StoreError::Database(format!(
            "column {name} holds a value this program does not know"
        ))
    }
}

/// `row` read by `record`.
pub(super) fn read<T>(row: &Row, record: Reader<T, StoreError>) -> Read<T> {
    record(&mut Cursor { row, at: 0 })
}

/// A single-column answer (a scope, a counter, a secret, a flag).
pub(super) fn first<T: for<'a> FromSql<'a>>(row: &Row) -> Read<T> {
    get(row, 0)
}
