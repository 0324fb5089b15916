//! The HTTP server's plumbing: the accept loop and each connection's I/O.
//! It knows nothing of the endpoints: it is handed a [`Router`] (built by
//! [`crate::transport::router`]) and [`ServeOptions`].
//!
//! Why our own accept loop instead of `axum::serve`: we need what it does not
//! offer — TLS, a deadline on reading request headers (slowloris), a bound on
//! header size, TCP_NODELAY, a write timeout on every connection (so a client
//! that stops reading cannot hold a task or memory forever, WebSocket or SSE
//! alike) and connection tasks tracked for shutdown. It is the same
//! hyper-util plumbing `axum::serve` uses, with those settings added, and a
//! fast 503 instead of a hang in the accept queue when file descriptors run
//! out ([`crate::fdlimit`]).
//!
//! Each connection's write timeout comes with a [`SendLimit`], shared with
//! the handlers through each request's extensions: a stream bounds its own
//! writes (the delivery loop's deadline works for any transport), and when
//! it gives up on a stuck client it sets one deadline for what was in
//! flight and its last word.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::{Error, TlsFileError};
use crate::fdlimit::{self, RateLimited, Spare};
use crate::metrics::Metrics;

/// What the accept loop needs besides the router: plumbing only.
#[derive(Clone)]
pub struct ServeOptions {
    /// Stop accepting (and ask each connection to finish) when cancelled.
    pub cancel: CancellationToken,
    /// Every connection task is spawned on it, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// A write that waits this long for the peer fails (see [`TimeoutIo`]).
    pub send_timeout: Duration,
    /// Request headers (and a TLS handshake) must arrive within this.
    pub handshake_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Accepts connections until `options.cancel` fires.
///
/// Out of file descriptors (`EMFILE`/`ENFILE`), a connection would wait in
/// the accept queue until one frees; instead the spare descriptor is let go,
/// the connection accepted, answered 503 and closed, and the spare taken
/// back (see [`crate::fdlimit`]). Only when even that fails (another thread
/// took the freed slot, or the spare could not be taken back) does the loop
/// wait, for a connection of ours to close or 100 ms (`FD_BACKOFF`) at
/// most, whichever is first: descriptors are also freed where no connection
/// ends (a replay or a rotated file closed), and one `accept` per 100 ms
/// costs nothing.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    tls: Option<TlsAcceptor>,
) {
    let state = options;
    let mut spare = Spare::new();
    // Descriptors are numbered lowest first, so a connection's number is about
    // how many are open: past this one, the reserve for files is being eaten.
    let ceiling = fdlimit::client_ceiling(fdlimit::current_soft());
    let mut fd_warn = RateLimited::new(WARN_EVERY);
    let mut other_warn = RateLimited::new(WARN_EVERY);
    // Told whenever a connection task ends (its descriptor is closed by then).
    let closed = Arc::new(Notify::new());
    loop {
        // A no-op unless the spare was let go and could not be taken back.
        let _ = spare.take();
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = state.cancel.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) if fdlimit::is_exhaustion(&err) => {
                match refuse_one(&listener, &mut spare, tls.is_none()) {
                    Refused::One => {
                        state.metrics.fd_refusal();
                        if let Some(n) = fd_warn.hit() {
                            tracing::warn!(
                                "out of file descriptors (limit {}): answered {n} new \
                                 connection(s) 503 since the last warning ({err})",
                                fdlimit::current_soft()
                            );
                        }
                        continue;
                    }
                    Refused::NoneWaiting => continue,
                    Refused::Failed => {}
                }
                if let Some(n) = fd_warn.hit() {
                    tracing::warn!(
                        "out of file descriptors (limit {}), and not even the spare \
                         descriptor let a connection be accepted and refused ({n} time(s) \
                         since the last warning: {err}); waiting for a connection to close",
                        fdlimit::current_soft()
                    );
                }
                tokio::select! {
                    _ = closed.notified() => continue,
                    _ = tokio::time::sleep(FD_BACKOFF) => continue,
                    _ = state.cancel.cancelled() => break,
                }
            }
            Err(err) if is_connection_error(&err) => {
                // The peer gave up while queued: nothing to do but go on.
                tracing::debug!("accept: {err}");
                continue;
            }
            Err(err) => {
                // ENOBUFS, ENOMEM and the like: not fatal, but do not spin.
                if let Some(n) = other_warn.hit() {
                    tracing::warn!("accept failed ({n} since the last warning): {err}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(FD_BACKOFF) => continue,
                    _ = state.cancel.cancelled() => break,
                }
            }
        };
        if u64::try_from(tcp.as_raw_fd()).unwrap_or(u64::MAX) >= ceiling {
            // Not out of descriptors yet, but into the reserve that followed
            // files, replays and rotations need: refused like one that
            // could not be accepted at all.
            tracing::debug!(%peer, "past the client capacity of {ceiling} descriptors: refused with 503");
            fdlimit::refuse(tcp, tls.is_none());
            state.metrics.fd_refusal();
            if let Some(n) = fd_warn.hit() {
                tracing::warn!(
                    "out of file descriptors (limit {}, the last {} kept for files): \
                     answered {n} new connection(s) 503 since the last warning",
                    fdlimit::current_soft(),
                    fdlimit::KEPT_FOR_FILES
                );
            }
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let limit = SendLimit::default();
        let io = TimeoutIo::new(tcp, state.send_timeout, limit.clone());
        let router = router.clone();
        let cancel = state.cancel.clone();
        let handshake = state.handshake_timeout;
        let tls = tls.clone();
        let closed = Arc::clone(&closed);
        state.tracker.spawn(async move {
            match tls {
                None => serve_connection(io, peer, limit, router, cancel, handshake).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, limit, router, cancel, handshake).await
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            closed.notify_one();
        });
    }
}

/// The longest the accept loop waits, out of descriptors with no spare,
/// before it tries again.
const FD_BACKOFF: Duration = Duration::from_millis(100);

/// At most one accept warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What [`refuse_one`] did.
enum Refused {
    One,
    /// The queue was empty after all (the peer gave up).
    NoneWaiting,
    /// No spare to let go, or `accept` failed even with it released.
    Failed,
}

/// Out of descriptors: lets the spare go, accepts one waiting connection,
/// refuses it ([`fdlimit::refuse`]) and takes the spare back.
fn refuse_one(listener: &TcpListener, spare: &mut Spare, plain_http: bool) -> Refused {
    if !spare.release() {
        return Refused::Failed;
    }
    // One poll: the listener is still readable (an error does not clear
    // tokio's readiness), so this is one `accept` call, never a wait.
    let refused = match listener.accept().now_or_never() {
        Some(Ok((tcp, peer))) => {
            tracing::debug!(%peer, "out of file descriptors: refused with 503");
            fdlimit::refuse(tcp, plain_http);
            Refused::One
        }
        Some(Err(_)) => Refused::Failed,
        None => Refused::NoneWaiting,
    };
    // The refused connection's descriptor is closed: its slot is free again.
    let _ = spare.take();
    refused
}

/// Errors about one queued connection, not about the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
    )
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    limit: SendLimit,
    router: Router,
    cancel: CancellationToken,
    handshake: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(limit.clone());
        request.map(Body::new)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, "connection ended: {err}");
            }
        }
        _ = cancel.cancelled() => {
            // Bounded: a response still being written to a stuck client (an SSE
            // stream in its grace) must not hold up the exit.
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, connection).await;
        }
    }
}

/// At shutdown, how long a connection may take to send its last bytes.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// How long the writes on one connection may wait for the peer to accept
/// anything: `--send-timeout` each, unless the stream on the connection
/// bounds its writes itself. Shared by the connection's [`TimeoutIo`] and
/// the handler that streams on it, which finds it among the request's
/// extensions.
///
/// A streaming handler ([`crate::pump`] bounds every feed and flush) calls
/// [`stream_owned`](Self::stream_owned): the socket then waits as long as
/// the stream lets it. When the stream gives up on a stuck client and only
/// its last bytes remain (the Close 1013, `event: closed`), it sets a
/// deadline for them with [`wait_until`](Self::wait_until), which wakes a
/// write already waiting so that the deadline applies to it too.
#[derive(Clone)]
pub struct SendLimit(Arc<LimitState>);

struct LimitState {
    born: Instant,
    /// While not 0: writes may wait until `born` + this many nanoseconds,
    /// however long that is, and no longer.
    until: AtomicU64,
    /// The stream on this connection bounds its own writes.
    stream_owned: AtomicBool,
    /// A write waiting with no deadline of its own (stream-owned): woken
    /// when a deadline is set.
    waiting: AtomicWaker,
}

impl Default for SendLimit {
    /// `--send-timeout` for each write.
    fn default() -> SendLimit {
        SendLimit(Arc::new(LimitState {
            born: Instant::now(),
            until: AtomicU64::new(0),
            stream_owned: AtomicBool::new(false),
            waiting: AtomicWaker::new(),
        }))
    }
}

impl SendLimit {
    /// The stream on this connection bounds its own writes from now on: a
    /// write here waits as long as the stream lets it, unless
    /// [`wait_until`](Self::wait_until) sets a deadline.
    pub fn stream_owned(&self) {
        self.0.stream_owned.store(true, Ordering::Relaxed);
    }

    /// From now on writes may wait until `deadline` and no longer: for a
    /// stream that has given up on its client and only flushes what is in
    /// flight and its last word.
    pub fn wait_until(&self, deadline: Instant) {
        let since = deadline.saturating_duration_since(self.0.born);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.until.store(nanos, Ordering::Release);
        self.0.waiting.wake();
    }

    /// The deadline set by [`wait_until`](Self::wait_until), if any.
    fn deadline(&self) -> Option<Instant> {
        match self.0.until.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.0.born + Duration::from_nanos(nanos)),
        }
    }
}

/// A connection whose writes fail when the peer accepts nothing for
/// `--send-timeout`: the defence against clients that stop reading for
/// every ordinary response. A streaming response bounds its own writes
/// instead ([`SendLimit::stream_owned`]) until it sets one deadline for its
/// last bytes ([`SendLimit::wait_until`]).
///
/// A failed write leaves the connection usable: that write wrote nothing,
/// the deadline is disarmed, and the next write that has to wait gets the
/// limit in force then.
pub struct TimeoutIo<T> {
    inner: T,
    timeout: Duration,
    limit: SendLimit,
    /// Armed while a write is pending; created on first need.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<T> TimeoutIo<T> {
    pub fn new(inner: T, timeout: Duration, limit: SendLimit) -> Self {
        TimeoutIo {
            inner,
            timeout,
            limit,
            deadline: None,
            armed: false,
        }
    }

    /// Called when a write is pending: arms the deadline, or reports that it
    /// passed.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.armed {
            let at = match self.limit.deadline() {
                Some(at) => at,
                None if self.limit.0.stream_owned.load(Ordering::Relaxed) => {
                    // The stream bounds its writes itself: wait as the inner
                    // write does (its waker is registered), and be woken if a
                    // deadline is set meanwhile.
                    self.limit.0.waiting.register(cx.waker());
                    if self.limit.deadline().is_none() {
                        return Poll::Pending;
                    }
                    return self.pending(cx);
                }
                None => Instant::now() + self.timeout,
            };
            let timeout = self.timeout;
            let sleep = self
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            sleep.as_mut().reset(at);
            self.armed = true;
        }
        let Some(sleep) = self.deadline.as_mut() else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "peer accepted nothing within the send timeout",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimeoutIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimeoutIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx).map(|r| r.map(|()| 0)),
            ready => {
                this.armed = false;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx).map(|r| r.map(|()| 0)),
            ready => {
                this.armed = false;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.armed = false;
                ready
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Loads a PEM certificate chain and key into a TLS acceptor (http/1.1
/// only). A file that cannot be read or used is named with its flag
/// ([`Error::TlsFile`], [`Error::TlsPair`]): the command line is at fault.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_error = |flag, path: &std::path::Path, reason| Error::TlsFile {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect())
        .map_err(|err| {
            file_error(
                "--tls-cert",
                cert,
                TlsFileError::from_pem(err, "certificate"),
            )
        })?;
    if certs.is_empty() {
        return Err(file_error(
            "--tls-cert",
            cert,
            TlsFileError::Missing("certificate"),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| file_error("--tls-key", key, TlsFileError::from_pem(err, "private key")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|source| Error::TlsPair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
