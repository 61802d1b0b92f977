//! Calling the synchronous logic from async handlers.

use std::sync::Arc;

use authz::AuthServer;

/// The blocking task did not finish (it panicked, or the runtime is shutting down).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interrupted;

/// Runs `work` on the blocking pool: the store may wait on the disk, which must not stall the
/// runtime's workers.
pub(crate) async fn blocking<T, F>(server: &Arc<AuthServer>, work: F) -> Result<T, Interrupted>
where
    F: FnOnce(&AuthServer) -> T + Send + 'static,
    T: Send + 'static,
{
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || work(&server))
        .await
        .map_err(|error| {
            tracing::error!(%error, "authorization server call did not finish");
            Interrupted
        })
}
