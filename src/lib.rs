//! logtail-ws: follow a log file like `tail -F` and stream every new line,
//! live, to WebSocket and Server-Sent Events clients.
//!
//! # Layout
//!
//! Data flows one way: **source → hub → pump → sink** (a transport's
//! client, later a broker), and no module imports one further up the flow.
//!
//! - [`config`]: the command line and the validated settings.
//! - [`error`]: why the server could not start or stopped, and the one rule
//!   from an error to an exit code.
//! - [`lines`]: the shared line text type and the bytes → lines splitter.
//! - [`encode`]: how lines and events look on the wire (text, JSON, SSE).
//! - [`source`]: where lines come from, and the narrow door to the hub
//!   (`Publisher`). [`source::file`] follows files by name (rotation,
//!   truncation, deletion), splits what is appended into lines, publishes
//!   them, reports each file's state and replays old lines from disk.
//! - [`hub`]: numbers lines, keeps the bounded history, fans lines out over a
//!   broadcast channel; each client reads through its own cursor, which asks
//!   the source's replay for lines older than the history.
//! - [`pump`]: the one delivery loop, cursor → encoded frames → a sink.
//! - [`transport`]: `/ws`, `/events`, the viewer page, `/healthz`, `/metrics`,
//!   and the checks in front of them (Origin, token, limits).
//! - [`server`]: plumbing: the accept loop (TLS, timeouts) for a given router.
//! - [`fdlimit`]: the descriptor limit raised at start-up, the client
//!   capacity it gives, and the spare descriptor behind the fast 503.
//! - [`shutdown`]: signals → cancellation → Close 1001 to every client.
//! - [`metrics`]: counters behind `/metrics` and `/healthz`, one method per event.

pub mod config;
pub mod encode;
pub mod error;
pub mod fdlimit;
pub mod hub;
pub mod lines;
pub mod metrics;
pub mod pump;
pub mod server;
pub mod shutdown;
pub mod source;
pub mod transport;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Config};
pub use error::Error;
use hub::{Hub, HubLimits};
use source::file::follow::ReadLimits;
use source::file::{FileOptions, FileSource, WatchMode};
use source::{Publisher, Source, Status};

/// Runs the server on an already bound listener until `shutdown` resolves,
/// then tells every client and returns within the grace period.
///
/// The file is opened (or found missing) and watched before the
/// `listening on` line is logged, so a line appended after that line is
/// always a live line.
pub async fn run(
    config: Config,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let config = Arc::new(config);
    // One set of counters for every stage.
    let metrics = Arc::new(metrics::Metrics::default());
    let hub = Hub::new(
        vec![config.file.display().to_string()],
        HubLimits {
            history_bytes: config.history_bytes,
            client_queue: config.client_queue,
            lag_grace: config.send_timeout,
            max_line_bytes: config.max_line_bytes,
        },
        Arc::clone(&metrics),
    );
    let mode = match config.poll {
        Some(interval) => WatchMode::Poll(interval),
        None => WatchMode::Events,
    };
    let options = FileOptions::new(
        mode,
        ReadLimits {
            max_line_bytes: config.max_line_bytes,
            backlog_bytes: config.history_bytes,
        },
    );
    let status = Status::default();
    let publisher = Publisher::new(Arc::clone(&hub), status.clone());
    // Decided once: the path followed from now on (see `source::file::path`).
    // Clients and logs keep the name as typed (file 0 in the hub's names).
    let watch_error = |source| Error::Watch {
        path: config.file.clone(),
        source,
    };
    let path = source::file::path::absolute(&config.file).map_err(watch_error)?;
    if path != config.file {
        tracing::info!(file = %config.file.display(), path = %path.display(), "{} resolves to {}", config.file.display(), path.display());
    }
    let name = config.file.display().to_string();
    let files = tokio::task::spawn_blocking(move || {
        let files = FileSource::start(publisher, options)?;
        files.add(path, name);
        Ok::<_, std::io::Error>(files)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|started| started)
    .map_err(watch_error)?;

    let cancel = CancellationToken::new();
    tokio::spawn(shutdown::cancel_on(shutdown, cancel.clone()));
    let state = transport::AppState::new(hub, status, Arc::clone(&config), cancel.clone());
    let options = server::ServeOptions {
        cancel: cancel.clone(),
        tracker: state.tracker.clone(),
        send_timeout: config.send_timeout,
        handshake_timeout: config.handshake_timeout,
        metrics,
    };
    let router = transport::router(state.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let local = listener.local_addr().map_err(|source| Error::Io {
        what: "reading the listener's address",
        source,
    })?;
    tracing::info!("listening on {scheme}://{local}");
    server::serve(listener, router, options, tls).await;

    // Stopped accepting; every client is being told. Wait for them, bounded.
    state.tracker.close();
    if tokio::time::timeout(config.shutdown_grace, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time; exiting anyway");
    }
    // The file source's threads end with it (they hold nothing that must be
    // flushed): a join error here changes nothing about how we exit.
    if let Err(err) = tokio::task::spawn_blocking(move || files.stop()).await {
        tracing::debug!("stopping the file source: {err}");
    }
    Ok(())
}
