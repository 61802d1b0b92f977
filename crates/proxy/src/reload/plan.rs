//! Which listeners a reload keeps, changes, adds and removes. Sockets are matched by
//! address: a listener whose address is in both configurations keeps its socket (no gap in
//! accepting, and no "address in use" from binding it twice), whatever else changed. Its
//! limits, though, belong to the listener — `(protocol, address)` — so a protocol change on
//! the same address starts fresh counts, while any other change keeps them.

use std::fmt;
use std::net::SocketAddr;

use crate::config::{ListenerConfig, Protocol};

/// How a listener whose address stays compares with the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not at all.
    None,
    /// Some setting other than the protocol: same listener, same limits and counts.
    Settings,
    /// The protocol: another listener on the same socket, with limits of its own.
    Protocol,
}

/// A listener of the new configuration at an address the running one already listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Its index in the new configuration's `listeners`.
    pub index: usize,
    /// How it differs from the running one.
    pub change: Change,
}

/// What a reload does to the listeners.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sockets that stay, with what changes on them.
    pub kept: Vec<Kept>,
    /// Indices in the new `listeners` whose addresses must be bound.
    pub added: Vec<usize>,
    /// Running addresses no longer configured: they stop accepting, their sessions go on.
    pub removed: Vec<SocketAddr>,
}

/// Compares the running listeners with the new ones. `check-config` has refused duplicate
/// addresses within each list, so an address matches at most one listener on each side.
pub fn plan(running: &[ListenerConfig], new: &[ListenerConfig]) -> Plan {
    let mut result = Plan::default();
    for (index, listener) in new.iter().enumerate() {
        match running.iter().find(|old| old.listen == listener.listen) {
            None => result.added.push(index),
            Some(old) => {
                let change = if old.protocol != listener.protocol {
                    Change::Protocol
                } else if old != listener {
                    Change::Settings
                } else {
                    Change::None
                };
                result.kept.push(Kept { index, change });
            }
        }
    }
    result.removed = running
        .iter()
        .filter(|old| new.iter().all(|listener| listener.listen != old.listen))
        .map(|old| old.listen)
        .collect();
    result
}

/// A listener as the reload's log line names it: `imap 127.0.0.1:993`.
#[derive(Debug, Clone, Copy)]
pub struct Named(pub Protocol, pub SocketAddr);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.name(), self.1)
    }
}

/// `a, b, c`, or `none`.
pub fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let joined = items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if joined.is_empty() {
        "none".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(protocol: &str, listen: &str, extra: &str) -> ListenerConfig {
        let text = format!(
            "protocol = \"{protocol}\"\nlisten = \"{listen}\"\ntls = \"none\"\n\
             backend = \"b\"\n{extra}"
        );
        toml::from_str(&text).expect("a listener table")
    }

    #[test]
    fn the_same_listeners_are_all_kept_unchanged() {
        let running = [
            listener("imap", "127.0.0.1:1143", ""),
            listener("smtp", "127.0.0.1:1587", ""),
        ];
        let new = [
            listener("smtp", "127.0.0.1:1587", ""),
            listener("imap", "127.0.0.1:1143", ""),
        ];
        let plan = plan(&running, &new);
        assert_eq!(
            plan,
            Plan {
                kept: vec![
                    Kept {
                        index: 0,
                        change: Change::None
                    },
                    Kept {
                        index: 1,
                        change: Change::None
                    },
                ],
                added: vec![],
                removed: vec![],
            },
            "order does not matter"
        );
    }

    #[test]
    fn a_moved_listener_is_removed_and_added_and_the_rest_kept() {
        let running = [
            listener("imap", "127.0.0.1:1143", ""),
            listener("pop3", "127.0.0.1:1110", ""),
        ];
        let new = [
            listener("imap", "127.0.0.1:1143", ""),
            listener("pop3", "127.0.0.1:2110", ""),
            listener("sieve", "127.0.0.1:4190", ""),
        ];
        let plan = plan(&running, &new);
        assert_eq!(
            plan.kept,
            vec![Kept {
                index: 0,
                change: Change::None
            }]
        );
        assert_eq!(plan.added, vec![1, 2]);
        assert_eq!(
            plan.removed,
            vec!["127.0.0.1:1110".parse::<SocketAddr>().expect("address")]
        );
    }

    #[test]
    fn settings_and_protocol_changes_keep_the_socket_and_are_told_apart() {
        let running = [
            listener("imap", "127.0.0.1:1143", ""),
            listener("imap", "127.0.0.1:1993", ""),
            listener("smtp", "127.0.0.1:1587", ""),
        ];
        let new = [
            listener("imap", "127.0.0.1:1143", "max_connections = 5"),
            listener("pop3", "127.0.0.1:1993", ""),
            listener("smtp", "127.0.0.1:1587", "hostname = \"localhost\""),
        ];
        let plan = plan(&running, &new);
        let changes: Vec<Change> = plan.kept.iter().map(|k| k.change).collect();
        assert_eq!(
            changes,
            vec![Change::Settings, Change::Protocol, Change::None],
            "a key written out with its default value is no change"
        );
        assert!(plan.added.is_empty() && plan.removed.is_empty(), "{plan:?}");
    }

    #[test]
    fn everything_replaced_and_from_nothing() {
        let running = [listener("imap", "127.0.0.1:1143", "")];
        let new = [listener("imap", "[::1]:1143", "")];
        let replaced = plan(&running, &new);
        assert!(replaced.kept.is_empty());
        assert_eq!(replaced.added, vec![0]);
        assert_eq!(replaced.removed.len(), 1);
        let start = plan(&[], &new);
        assert_eq!(start.added, vec![0], "start-up is a reload from nothing");
        assert!(start.kept.is_empty() && start.removed.is_empty());
    }

    #[test]
    fn log_names() {
        let named = Named(Protocol::Pop3, "127.0.0.1:995".parse().expect("address"));
        assert_eq!(named.to_string(), "pop3 127.0.0.1:995");
        assert_eq!(
            list([named, named]),
            "pop3 127.0.0.1:995, pop3 127.0.0.1:995"
        );
        assert_eq!(list(Vec::<Named>::new()), "none");
    }
}
