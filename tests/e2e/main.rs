//! End-to-end tests: the `bearergate` binary between real clients (curl, Python imaplib, a raw
//! test client) and a private Dovecot, validating tokens against a fake RFC 7662 IdP.
//!
//! Needs root (a system user owns the test maildirs) and Dovecot; `scripts/test` installs it.

#[allow(dead_code)] // each test module uses a different part of the support code
mod support;

mod auth_limits;
mod autoconfig;
mod cli;
mod connection_limits;
mod dovecot_backend;
mod examples;
mod flapping_provider;
mod hostile_inputs;
mod imap_backend;
mod imap_jwt;
mod imap_login;
mod imap_negative;
mod imap_passthrough_fallback;
mod imap_security;
mod issuer;
mod issuer_postgres;
mod issuer_proxy_protocol;
mod mail_profile;
mod managesieve;
mod new_mail_client;
mod oidc_provider;
mod operations;
mod password_fallback;
mod pop3;
mod prelogin_replies;
mod proxy_protocol;
mod reload;
mod rolling_restart;
mod several_instances;
mod sieve_fidelity;
mod smtp_fidelity;
mod smtp_submission;
mod smtp_xclient;
mod strategies_smtp_sieve;
mod token_helper;
mod token_sizes;
mod validator_policy;
