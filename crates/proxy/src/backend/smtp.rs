//! SMTP submission backends: the start-up probe. Logging in is
//! [`session::backend::smtp::SmtpLogin`]'s, driven by [`super::login`].

use session::backend::smtp::SmtpLogin;

use super::{Backend, BackendError};
use crate::config::BackendTls;

/// Connects, reads the EHLO reply (learning the backend's extensions, so that the proxy's
/// own EHLO offers CHUNKING, SMTPUTF8, ... before any client has logged in) and quits.
pub async fn probe(backend: &Backend) -> Result<(), BackendError> {
    let machine = SmtpLogin::probe(backend.tls_mode == BackendTls::Starttls);
    super::probe(backend, machine).await
}
