//! ManageSieve backends: the start-up probe. Logging in is
//! [`session::backend::sieve::SieveLogin`]'s, driven by [`super::login`].

use session::backend::sieve::SieveLogin;

use super::{Backend, BackendError};
use crate::config::BackendTls;

/// Connects and reads the capabilities, so that the proxy can advertise the backend's own
/// (its Sieve extensions, `NOTIFY`, ...) before any client has logged in, then logs out.
pub async fn probe(backend: &Backend) -> Result<(), BackendError> {
    let machine = SieveLogin::probe(backend.tls_mode == BackendTls::Starttls);
    super::probe(backend, machine).await
}
