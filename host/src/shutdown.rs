//! The run's shutdown signal, as every stage waits on it.

use tokio::sync::watch;

/// Resolves once the host is stopping. Returns nothing, so no borrow of the
/// channel is held across later awaits.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
