//! Tests of [`PostgresStore`] against a real PostgreSQL server started per test: the store
//! conformance suite (`store::conformance`), with its races between two pools over one
//! database — two instances; and what is PostgreSQL's own: migrations run by instances
//! starting together, a newer schema refused, a server restart, TLS, and a password that
//! never shows.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::test_server::{ServerTls, TestPostgres};
use super::{PostgresStore, StoreUrl};
use crate::store::conformance::{self, grant, Guard, NOW};
use crate::store::{Store, StoreError};

/// A server with an empty database `issuer`, and its URL.
fn server() -> (TestPostgres, StoreUrl) {
    let server = TestPostgres::start();
    server.create_database("issuer");
    let url = StoreUrl::new(server.url("issuer"));
    (server, url)
}

fn open(url: &StoreUrl) -> PostgresStore {
    PostgresStore::open(url, Path::new(".")).expect("the store opens")
}

/// An empty store.
fn fresh() -> (Guard, Arc<dyn Store>) {
    let (server, url) = server();
    let store = Arc::new(open(&url));
    (Box::new(server), store)
}

/// Two stores, each with its own pool, over one database: two instances.
fn pair() -> (Guard, Arc<dyn Store>, Arc<dyn Store>) {
    let (server, url) = server();
    let first = Arc::new(open(&url));
    let second = Arc::new(open(&url));
    (Box::new(server), first, second)
}

conformance::store_conformance!(fresh, pair);

/// Instances starting together on an empty database: each waits for the migration lock,
/// one creates the schema, every one of them opens.
#[test]
fn instances_starting_at_once_migrate_once() {
    let (server, url) = server();
    const INSTANCES: usize = 6;
    let barrier = Arc::new(Barrier::new(INSTANCES));
    let stores: Vec<PostgresStore> = (0..INSTANCES)
        .map(|_| {
            let (barrier, url) = (barrier.clone(), url.clone());
            thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(&url, Path::new("."))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap().expect("every instance opens"))
        .collect();
    assert_eq!(
        server.psql("issuer", "SELECT version FROM schema_version"),
        PostgresStore::SCHEMA_VERSION.to_string()
    );
    stores[0].insert_grant(&grant("g1", "app", NOW)).unwrap();
    assert!(stores[INSTANCES - 1].grant("g1").unwrap().is_some());
    // Opening again changes nothing.
    drop(open(&url));
    assert_eq!(
        server.psql("issuer", "SELECT count(*) FROM schema_version"),
        "1"
    );
}

#[test]
fn newer_schema_is_refused() {
    let (server, url) = server();
    drop(open(&url));
    server.psql("issuer", "UPDATE schema_version SET version = 99");
    let error = PostgresStore::open(&url, Path::new(".")).unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
}

/// A restart closes every connection the pool holds; calls after it go on as if nothing
/// happened: reads run again on a fresh connection, writes check theirs first.
#[test]
fn calls_survive_a_server_restart() {
    let (server, url) = server();
    let store = Arc::new(open(&url));
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    // Every thread of the pool holds a connection once several calls ran at once.
    let at_once = |call: fn(&dyn Store, usize)| {
        let barrier = Arc::new(Barrier::new(8));
        let callers: Vec<_> = (0..8)
            .map(|n| {
                let (store, barrier) = (store.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    call(store.as_ref(), n);
                })
            })
            .collect();
        for caller in callers {
            caller.join().expect("call after a restart");
        }
    };
    at_once(|store, _| assert!(store.grant("g1").unwrap().is_some()));
    server.restart();
    at_once(|store, n| {
        store
            .insert_grant(&grant(&format!("w{n}"), "app", NOW))
            .unwrap();
    });
    server.restart();
    at_once(|store, _| assert!(store.grant("g1").unwrap().is_some()));
}

/// The database goes away: calls fail, and after the first failed connect they fail at once
/// (they would otherwise each wait for a connect); it comes back: the store finds it.
#[test]
fn a_database_away_fails_calls_at_once_and_is_found_again() {
    let (server, url) = server();
    let store = open(&url);
    store.insert_grant(&grant("g1", "app", NOW)).unwrap();
    server.stop();
    let first = store.grant("g1").unwrap_err().to_string();
    assert!(first.contains("connect"), "{first}");
    let again = store.grant("g1").unwrap_err().to_string();
    assert!(again.contains("unreachable a moment ago"), "{again}");
    server.start_again();
    // Calls fail fast for a second after the last failed connect, then one tries again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.grant("g1") {
            Ok(found) => {
                assert!(found.is_some());
                break;
            }
            Err(error) if Instant::now() < deadline => {
                assert!(error.to_string().contains("unreachable"), "{error}");
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("the database did not come back: {error}"),
        }
    }
    store.insert_grant(&grant("g2", "app", NOW)).unwrap();
}

#[test]
fn password_never_shows() {
    let (server, url) = server();
    let store = open(&url);
    let debug = format!("{store:?}");
    assert!(
        debug.contains("PostgresStore") && debug.contains(":***@"),
        "{debug}"
    );
    assert!(!debug.contains(server.password()), "{debug}");

    let wrong = StoreUrl::new(
        server
            .url("issuer")
            .replace(server.password(), "not-the-password-4711"),
    );
    let error = PostgresStore::open(&wrong, Path::new(".")).unwrap_err();
    let text = format!("{error} {error:?} {wrong:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("not-the-password-4711"), "{text}");
}

/// Nobody listening: the store fails to open, quickly, naming the cause.
#[test]
fn unreachable_database_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = StoreUrl::new(format!(
        "postgres://bg:secret@127.0.0.1:{port}/issuer?sslmode=disable"
    ));
    let started = Instant::now();
    let error = PostgresStore::open(&url, Path::new(".")).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    assert!(error.to_string().contains("connect"), "{error}");
}

/// A test CA and a server certificate for `localhost` (not for 127.0.0.1).
fn certificates() -> (String, ServerTls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let tls = ServerTls {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        required: true,
    };
    (ca.pem(), tls)
}

/// A server that takes TLS connections only: `verify-full` (and `require`, as strict) with
/// the CA in `sslrootcert` connects; plaintext is refused by the server; a certificate that
/// the public roots do not vouch for, or that names another host, is refused by us.
#[test]
fn tls_is_used_and_verified() {
    let (ca_pem, tls) = certificates();
    let server = TestPostgres::start_with(Some(&tls));
    server.create_database("issuer");
    let dir = std::env::temp_dir().join(format!("bearergate-pg-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    let url = |host: &str, query: &str| {
        StoreUrl::new(format!(
            "{}?{query}",
            server.url_without_sslmode(host, "issuer")
        ))
    };
    let opens = |url: &StoreUrl| PostgresStore::open(url, &dir);

    for query in [
        "sslmode=verify-full&sslrootcert=ca.pem",
        "sslmode=require&sslrootcert=ca.pem",
        "sslrootcert=ca.pem",
    ] {
        let store = opens(&url("localhost", query)).unwrap_or_else(|e| panic!("{query}: {e}"));
        store.insert_grant(&grant(query, "app", NOW)).unwrap();
    }
    let refused: [(StoreUrl, &str); 3] = [
        (url("localhost", "sslmode=disable"), "no encryption"),
        (url("localhost", "sslmode=verify-full"), "UnknownIssuer"),
        (
            url("127.0.0.1", "sslmode=verify-full&sslrootcert=ca.pem"),
            "not valid for name",
        ),
    ];
    for (url, why) in refused {
        let error = match opens(&url) {
            Err(StoreError::Database(error)) => error,
            other => panic!("{url:?}: want a database error, got {other:?}"),
        };
        assert!(error.contains(why), "{url:?}: {error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
