//! A private PostgreSQL server (the shared store of several bearergate instances): the same
//! launcher the authorization server's own tests use, kept in one place.

#[path = "../../../crates/authz/tests/support/postgres.rs"]
mod server;

pub use server::TestPostgres;
