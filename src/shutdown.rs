//! Shutdown as a first-class concern.
//!
//! One [`CancellationToken`] is cancelled on SIGINT or SIGTERM. The accept
//! loop stops accepting; each HTTP connection is asked to finish gracefully;
//! each WebSocket client sends Close 1001 `server shutting down`; each SSE
//! stream ends. Every connection and client task is spawned through one
//! [`TaskTracker`], so `run` can wait for all of them — bounded by a grace
//! period, so the process exits within 2 s whatever a peer does.

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Cancels `token` when `shutdown` resolves.
pub async fn cancel_on(shutdown: impl Future<Output = ()>, token: CancellationToken) {
    tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            token.cancel();
        }
        _ = token.cancelled() => {}
    }
}
