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
//! - [`server`]: plumbing: the accept loop (TLS, timeouts) for a given router,
//!   HTTP/1.1 and HTTP/2 on TCP, and with `--http3` HTTP/3 on UDP.
//! - [`fdlimit`]: the descriptor limit raised at start-up, the client
//!   capacity it gives, and the spare descriptor behind the fast 503.
//! - [`shutdown`]: signals → cancellation → Close 1001 to every client.
//! - [`metrics`]: counters behind `/metrics` and `/healthz`, one method per event.
//! - [`sink`]: every line also published to brokers (`--publish`), at least once.
//! - [`nats`]: the subject names the JetStream publisher and the edge share.

pub mod config;
pub mod encode;
pub mod error;
pub mod fdlimit;
pub mod hash;
pub mod hub;
pub mod lines;
pub mod metrics;
pub mod nats;
pub mod packaging;
pub mod pump;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod transport;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use config::InputPath;
pub use config::{Cli, Config};
pub use error::Error;
use hub::{Hub, HubLimits};
use source::file::follow::ReadLimits;
use source::file::glob::Glob;
use source::file::{FileOptions, FileSource, WatchMode};
use source::stdin::StdinSource;
use source::{Publisher, Source, Status};

/// Runs the server on an already bound listener (and, with `--http3`, the
/// QUIC endpoint bound on the same port number) until `shutdown` resolves,
/// then tells every client and returns within the grace period.
///
/// The file is opened (or found missing) and watched before the
/// `listening on` line is logged, so a line appended after that line is
/// always a live line.
pub async fn run(
    config: Config,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    quic: Option<server::Quic>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let config = Arc::new(config);
    // One set of counters for every stage.
    let metrics = Arc::new(metrics::Metrics::default());
    let limits = HubLimits {
        history_bytes: config.history_bytes,
        client_queue: config.client_queue,
        lag_grace: config.send_timeout,
        max_line_bytes: config.max_line_bytes,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown::cancel_on(shutdown, cancel.clone()));
    // An edge numbers lines as its stream does: it must know the stream first.
    let upstream = match &config.from {
        Some(edge) => {
            match source::nats::Upstream::connect(&edge.urls, &edge.stream, &edge.subject, &cancel)
                .await
                .map_err(Error::Config)?
            {
                Some(upstream) => Some(upstream),
                None => return Ok(()), // stopped while waiting for the broker
            }
        }
        None => None,
    };
    let numbering = match &upstream {
        Some(up) => hub::Numbering::Preserve {
            epoch: up.epoch.clone(),
        },
        None => hub::Numbering::Assign,
    };
    let hub = Hub::with_numbering(Vec::new(), limits, Arc::clone(&metrics), numbering);
    let status = Status::default();
    let publisher = Publisher::new(Arc::clone(&hub), status.clone());
    let mut edge_status = None;
    let sources: Vec<Box<dyn Source>> = match upstream {
        Some(upstream) => {
            tracing::info!("serving {}", upstream.describe());
            let status = upstream.status();
            edge_status = Some(Arc::clone(&status));
            vec![Box::new(source::nats::EdgeSource::start(
                upstream,
                publisher,
                status,
                cancel.clone(),
            ))]
        }
        None => start_sources(&config, publisher).await?,
    };
    fdlimit::log_capacity_after_files(status.len(), config.max_clients);

    let publishers = start_publishers(&config, &hub, &cancel)?;
    let mut state = transport::AppState::new(hub, status, Arc::clone(&config), cancel.clone())
        .with_publishers(publishers);
    state.edge = edge_status.clone();
    let quic = quic.map(|quic| {
        if let Some(cert) = quic.self_signed {
            tracing::info!(sha256 = %cert.hash.current(), "QUIC uses a self-signed certificate (GET /wt-cert-hash)");
            state.wt_cert = Some(cert.hash.clone());
            tokio::spawn(server::cert::renew(
                quic.endpoint.clone(),
                cert,
                server::cert::RENEW_EVERY,
                cancel.clone(),
            ));
        }
        quic.endpoint
    });
    // POST /rtc: WebRTC's UDP socket and its driver (see transport::rtc).
    if let Ok(tcp) = listener.local_addr() {
        state.rtc = transport::rtc::start(&state, tcp)?;
    }
    let options = server::ServeOptions {
        cancel: cancel.clone(),
        tracker: state.tracker.clone(),
        send_timeout: config.send_timeout,
        handshake_timeout: config.handshake_timeout,
        ping_interval: config.ping_interval,
        close_grace: transport::CLOSE_CAP,
        metrics,
    };
    let router = transport::router(state.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let local = listener.local_addr().map_err(|source| Error::Io {
        what: "reading the listener's address",
        source,
    })?;
    tracing::info!("listening on {scheme}://{local}");
    match quic {
        Some(endpoint) => {
            tracing::info!("serving HTTP/3 on udp/{local}");
            // TCP responses tell browsers where HTTP/3 is.
            let alt_svc = server::alt_svc(local.port());
            let tcp_router = router.clone().layer(tower::util::MapResponseLayer::new(
                move |mut response: axum::response::Response| {
                    response
                        .headers_mut()
                        .insert(axum::http::header::ALT_SVC, alt_svc.clone());
                    response
                },
            ));
            tokio::join!(
                server::serve(listener, tcp_router, options.clone(), tls),
                server::serve_h3(endpoint, router, options),
            );
        }
        None => server::serve(listener, router, options, tls).await,
    }

    // Stopped accepting; every client is being told. Wait for them, bounded.
    state.tracker.close();
    if tokio::time::timeout(config.shutdown_grace, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time; exiting anyway");
    }
    // The sources' threads end with them (they hold nothing that must be
    // flushed): a join error here changes nothing about how we exit.
    let stopping = tokio::task::spawn_blocking(move || {
        for source in &sources {
            source.stop();
        }
    });
    if let Err(err) = stopping.await {
        tracing::debug!("stopping the sources: {err}");
    }
    // An edge whose stream was made anew stopped on its own: a failure (exit 1).
    if let Some(why) = edge_status.and_then(|s| s.ended()) {
        return Err(Error::Stopped(why));
    }
    Ok(())
}

/// Starts a publisher per `--publish` broker (all nats:// URLs are one
/// cluster; each mqtt:// and amqp:// URL is one): each runs until `cancel`.
fn start_publishers(
    config: &Config,
    hub: &Arc<Hub>,
    cancel: &CancellationToken,
) -> Result<Vec<Arc<sink::SinkStatus>>, Error> {
    let publish = &config.publish;
    let mut targets: Vec<Arc<dyn sink::Target>> = Vec::new();
    if !publish.nats.is_empty() {
        let stream = sink::nats::StreamSettings {
            name: publish.nats_stream.clone(),
            replicas: publish.nats_replicas,
            max_age: publish.nats_max_age,
            max_bytes: publish.nats_max_bytes,
        };
        let target = sink::nats::NatsTarget::new(&publish.nats, stream, publish.node.clone())
            .map_err(Error::Config)?;
        targets.push(Arc::new(target));
    }
    for (host, port, prefix) in &publish.mqtt {
        targets.push(Arc::new(sink::mqtt::MqttTarget::new(
            host.clone(),
            *port,
            prefix.clone(),
            publish.node.clone(),
            publish.format,
            config.max_line_bytes,
        )));
    }
    for (url, exchange) in &publish.amqp {
        let target = sink::amqp::AmqpTarget::new(
            url,
            exchange.clone(),
            publish.node.clone(),
            publish.format,
        )
        .map_err(Error::Config)?;
        targets.push(Arc::new(target));
    }
    let mut statuses = Vec::new();
    for target in targets {
        let status = Arc::new(sink::SinkStatus::new(target.kind(), target.describe()));
        statuses.push(Arc::clone(&status));
        tokio::spawn(sink::run(
            Arc::clone(hub),
            target,
            publish.node.clone(),
            status,
            cancel.clone(),
        ));
    }
    Ok(statuses)
}

/// Starts every input of the command line: files and globs in one file
/// source, standard input in its own. Returns once each file is open (or
/// known to be missing) and watched, so a line appended after the
/// `listening on` line is a live line.
async fn start_sources(
    config: &Config,
    publisher: Publisher,
) -> Result<Vec<Box<dyn Source>>, Error> {
    let mode = match config.poll {
        Some(interval) => WatchMode::Poll(interval),
        None => WatchMode::Events,
    };
    let files_given = config
        .inputs
        .iter()
        .filter(|i| matches!(i.what, InputPath::File(_)))
        .count()
        .max(1) as u64;
    // Each file given reads its share of the history at start-up (a glob
    // shares its own among its matches): the history holds no more anyway.
    let options = FileOptions::new(
        mode,
        ReadLimits {
            max_line_bytes: config.max_line_bytes,
            backlog_bytes: config.history_bytes / files_given,
        },
    );
    let inputs = config.inputs.clone();
    let history_bytes = config.history_bytes;
    let max_line_bytes = config.max_line_bytes;
    tokio::task::spawn_blocking(move || {
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        let needs_files = inputs.iter().any(|i| !matches!(i.what, InputPath::Stdin));
        let files = if needs_files {
            let files = FileSource::start(publisher.clone(), options).map_err(|source| Error::Io {
                what: "starting the file watcher",
                source,
            })?;
            Some(files)
        } else {
            None
        };
        for input in inputs {
            match (&input.what, &files) {
                (InputPath::File(typed), Some(files)) => {
                    // Decided once: the path followed from now on (see
                    // `source::file::path`). Clients see the name.
                    let path = source::file::path::absolute(typed).map_err(|source| Error::Watch {
                        path: typed.clone(),
                        source,
                    })?;
                    if path != *typed {
                        tracing::info!(file = %input.name, path = %path.display(), "{} resolves to {}", typed.display(), path.display());
                    }
                    files.add(path, input.name.clone());
                }
                (InputPath::Glob(pattern), Some(files)) => {
                    let typed = std::path::Path::new(pattern);
                    let absolute = source::file::path::absolute(typed).map_err(|source| Error::Watch {
                        path: typed.to_path_buf(),
                        source,
                    })?;
                    let glob = Glob::new(pattern, &absolute, &input.name).map_err(Error::Config)?;
                    let root = glob.root.display().to_string();
                    let found = files.add_glob(glob, history_bytes);
                    tracing::info!(glob = %pattern, "{pattern}: {found} matching files followed; watching {root} for more");
                }
                (InputPath::Stdin, _) => {
                    let stdin = StdinSource::start(publisher.clone(), input.name.clone(), std::io::stdin(), max_line_bytes)
                        .map_err(|source| Error::Io {
                            what: "starting the standard input reader",
                            source,
                        })?;
                    sources.push(Box::new(stdin));
                }
                (_, None) => {}
            }
        }
        if let Some(files) = files {
            tracing::info!("following {}", files.describe());
            sources.push(Box::new(files));
        }
        Ok::<_, Error>(sources)
    })
    .await
    .map_err(|err| Error::Io {
        what: "starting the sources",
        source: std::io::Error::other(err),
    })?
}
