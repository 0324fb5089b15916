//! The HTTP server's plumbing: the accept loop and each connection's I/O.
//! It knows nothing of the endpoints: it is handed a [`Router`] (built by
//! [`crate::transport::router`]) and [`ServeOptions`].
//!
//! Every connection speaks HTTP/1.1 or HTTP/2 on the same port: over TLS as
//! ALPN decided, in cleartext as its first bytes say (the HTTP/2 preface, or
//! anything else); both within the handshake timeout. HTTP/2 connections,
//! their limits and their streams' deadlines are [`h2`]'s. With `--http3`
//! the same port number on UDP serves HTTP/3 with the same router, through
//! [`h3`]'s adapter ([`serve_h3`]), which also accepts WebTransport sessions
//! ([`webtransport`]); without `--tls-cert` QUIC's certificate is
//! self-signed and renewed ([`cert`]).
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
//! Each HTTP/1.1 connection's write timeout comes with a [`SendLimit`], shared with
//! the handlers through each request's extensions (on HTTP/2 each stream has
//! its own, see [`h2`]): a stream bounds its own
//! writes (the delivery loop's deadline works for any transport), and when
//! it gives up on a stuck client it sets one deadline for what was in
//! flight and its last word.

pub mod cert;
mod h2;
mod h3;
pub mod webtransport;

use std::convert::Infallible;
use std::future::Future;
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
use tokio::time::{Instant, Sleep, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use h2::PREFACE;
pub use h3::{alt_svc, quic_config, serve_h3};

use crate::error::{Error, TlsFileError};
use crate::fdlimit::{self, RateLimited, Spare};
use crate::metrics::{HttpVersion, Metrics};
use h2::{Opening, Rewind};

/// The QUIC side of `--http3`: the bound endpoint, and its self-signed
/// certificate when there is no `--tls-cert` (renewed by [`cert::renew`]).
pub struct Quic {
    pub endpoint: quinn::Endpoint,
    pub self_signed: Option<cert::SelfSigned>,
}

/// What the accept loop needs besides the router: plumbing only.
#[derive(Clone)]
pub struct ServeOptions {
    /// Stop accepting (and ask each connection to finish) when cancelled.
    pub cancel: CancellationToken,
    /// Every connection task is spawned on it, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// A write that waits this long for the peer fails (see [`TimeoutIo`]).
    pub send_timeout: Duration,
    /// Request headers (and a TLS handshake, an HTTP/2 preface) must
    /// arrive within this.
    pub handshake_timeout: Duration,
    /// HTTP/2 PING period (`--ping-interval`); a peer that answers none for
    /// two periods is dropped.
    pub ping_interval: Duration,
    /// How long a stream that is closing a stuck client waits for it (the
    /// transports' `CLOSE_CAP`): an HTTP/2 socket's writes may wait
    /// `send_timeout` plus this, so that it never cuts a stream's grace short.
    pub close_grace: Duration,
    pub metrics: Arc<Metrics>,
}

impl ServeOptions {
    /// How long a write on an HTTP/2 connection's socket may wait. Its
    /// streams bound their own writes (see [`h2`]); the socket's limit is the
    /// backstop for a peer that reads nothing at all, once every stream on
    /// it has had its `--send-timeout` and its grace.
    fn h2_socket_timeout(&self) -> Duration {
        self.send_timeout + self.close_grace
    }
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
        let io = TimeoutIo::new(tcp, state.send_timeout, SendLimit::default());
        let conn = Conn {
            peer,
            router: router.clone(),
            options: state.clone(),
        };
        let tls = tls.clone();
        let closed = Arc::clone(&closed);
        state.tracker.spawn(async move {
            conn.serve(io, tls).await;
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

/// One accepted connection, until it is served: who, and what serves it.
struct Conn {
    peer: SocketAddr,
    router: Router,
    options: ServeOptions,
}

impl Conn {
    /// Finds out which protocol the connection speaks, within the handshake
    /// timeout (the TLS handshake and, for HTTP/2, its preface: see
    /// [`h2`]), and serves it.
    async fn serve(self, mut io: TimeoutIo<tokio::net::TcpStream>, tls: Option<TlsAcceptor>) {
        let peer = self.peer;
        let deadline = Instant::now() + self.options.handshake_timeout;
        let Some(acceptor) = tls else {
            match timeout_at(deadline, h2::read_opening(&mut io)).await {
                Ok(Ok((Opening::H2, seen))) => {
                    io.set_timeout(self.options.h2_socket_timeout());
                    self.serve_h2(Rewind::new(seen, io)).await;
                }
                Ok(Ok((Opening::Http1, seen))) => {
                    let limit = io.limit.clone();
                    self.serve_http1(Rewind::new(seen, io), limit).await;
                }
                Ok(Ok((Opening::Closed, _))) => tracing::debug!(%peer, "closed before a request"),
                Ok(Err(err)) => tracing::debug!(%peer, "connection failed before a request: {err}"),
                Err(_) => tracing::debug!(%peer, "no request within the handshake timeout"),
            }
            return;
        };
        let mut stream = match timeout_at(deadline, acceptor.accept(io)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return tracing::debug!(%peer, "TLS handshake failed: {err}"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            let limit = stream.get_ref().0.limit.clone();
            return self.serve_http1(stream, limit).await;
        }
        match timeout_at(deadline, h2::read_opening(&mut stream)).await {
            Ok(Ok((Opening::H2, seen))) => {
                stream
                    .get_mut()
                    .0
                    .set_timeout(self.options.h2_socket_timeout());
                self.serve_h2(Rewind::new(seen, stream)).await;
            }
            Ok(Ok(_)) | Ok(Err(_)) => {
                tracing::debug!(%peer, "negotiated h2 but sent no HTTP/2 preface")
            }
            Err(_) => tracing::debug!(%peer, "no HTTP/2 preface within the handshake timeout"),
        }
    }

    /// The router as hyper's service for this connection: each request gets
    /// the peer's address, its [`SendLimit`] (the connection's on HTTP/1.1,
    /// its stream's on HTTP/2) and its [`OpenStream`] among its extensions.
    fn service(
        router: Router,
        peer: SocketAddr,
        version: HttpVersion,
        connection_limit: Option<SendLimit>,
        open: Arc<OpenConnection>,
    ) -> TowerToHyperService<
        impl tower::Service<
            Request<Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
            Future = impl Future + Send,
        > + Clone
        + Send,
    > {
        TowerToHyperService::new(tower::service_fn(move |mut request: Request<Incoming>| {
            let router = router.clone();
            let limit = connection_limit.clone();
            let stream = OpenStream::new(&open);
            async move {
                // On HTTP/2 this runs inside the stream's task (see `h2`).
                let limit = limit.or_else(h2::stream_limit).unwrap_or_default();
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(limit.clone());
                request.extensions_mut().insert(stream.clone());
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|inner| {
                    let inner = match version {
                        HttpVersion::H2 => Body::new(h2::WatchedBody::new(inner, limit)),
                        // HTTP/3 requests are not served here, but by `h3`.
                        HttpVersion::Http1 | HttpVersion::H3 => inner,
                    };
                    Body::new(Counted {
                        inner,
                        _stream: stream,
                    })
                }))
            }
        }))
    }

    async fn serve_http1<I>(self, io: I, limit: SendLimit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let open = OpenConnection::new(&self.options.metrics, HttpVersion::Http1);
        let service = Conn::service(
            self.router.clone(),
            self.peer,
            HttpVersion::Http1,
            Some(limit),
            open,
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.handshake_timeout)
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(peer = %self.peer, "connection ended: {err}");
                }
            }
            _ = self.options.cancel.cancelled() => {
                // Bounded: a response still being written to a stuck client (an SSE
                // stream in its grace) must not hold up the exit.
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_FLUSH, connection).await;
            }
        }
    }

    /// Serves an HTTP/2 connection with the limits of [`h2`] and
    /// `--ping-interval` keep-alive; at shutdown, GOAWAY, and the streams
    /// (each WebSocket sends its Close 1001) get [`SHUTDOWN_FLUSH`].
    async fn serve_h2<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let open = OpenConnection::new(&self.options.metrics, HttpVersion::H2);
        let service = Conn::service(self.router.clone(), self.peer, HttpVersion::H2, None, open);
        let options = &self.options;
        let executor = h2::StreamExecutor {
            tracker: options.tracker.clone(),
            send_timeout: options.send_timeout,
            metrics: Arc::clone(&options.metrics),
        };
        let mut builder = hyper::server::conn::http2::Builder::new(executor);
        builder
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(h2::MAX_CONCURRENT_STREAMS)
            .max_header_list_size(h2::MAX_HEADER_LIST)
            .initial_stream_window_size(h2::STREAM_WINDOW)
            .initial_connection_window_size(h2::CONNECTION_WINDOW)
            .max_send_buf_size(h2::MAX_SEND_BUF)
            // A peer that answers no PING for two periods is gone, as a
            // WebSocket peer silent that long is.
            .keep_alive_interval(options.ping_interval)
            .keep_alive_timeout(options.ping_interval);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(peer = %self.peer, "HTTP/2 connection ended: {err}");
                }
            }
            _ = options.cancel.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_FLUSH, connection).await;
            }
        }
    }
}

/// A connection being served, counted per version until the last of its
/// requests ends (an HTTP/1.1 WebSocket outlives hyper's connection task).
struct OpenConnection {
    metrics: Arc<Metrics>,
    version: HttpVersion,
}

impl OpenConnection {
    fn new(metrics: &Arc<Metrics>, version: HttpVersion) -> Arc<OpenConnection> {
        metrics.connection_opened(version);
        Arc::new(OpenConnection {
            metrics: Arc::clone(metrics),
            version,
        })
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connection_closed(self.version);
    }
}

/// A request being served (an HTTP/2 stream), counted per version while it
/// lives: held by its response body and, for a WebSocket, by the socket's
/// task (found among the request's extensions).
#[derive(Clone)]
pub struct OpenStream {
    _count: Arc<StreamCount>,
}

struct StreamCount {
    connection: Arc<OpenConnection>,
}

impl OpenStream {
    fn new(connection: &Arc<OpenConnection>) -> OpenStream {
        connection.metrics.stream_opened(connection.version);
        OpenStream {
            _count: Arc::new(StreamCount {
                connection: Arc::clone(connection),
            }),
        }
    }
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        let connection = &self.connection;
        connection.metrics.stream_closed(connection.version);
    }
}

/// A response body that holds its request's [`OpenStream`].
struct Counted {
    inner: Body,
    _stream: OpenStream,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
///
/// On HTTP/2 each stream has one of its own, with the same meaning, kept by
/// the watchdog its tasks run under instead of a socket (see [`h2`]); on
/// HTTP/3 likewise, kept by the task that sends the stream's response (see
/// [`h3`]): the handlers cannot tell them apart.
#[derive(Clone)]
pub struct SendLimit(Arc<LimitState>);

struct LimitState {
    born: Instant,
    /// While not 0: writes may wait until `born` + this many nanoseconds,
    /// however long that is, and no longer.
    until: AtomicU64,
    /// The stream on this connection bounds its own writes.
    stream_owned: AtomicBool,
    /// A write waiting with no deadline of its own (stream-owned), or an
    /// HTTP/2 stream's watchdog (an HTTP/3 stream's sender): woken when a
    /// deadline is set.
    waiting: AtomicWaker,
    /// HTTP/2 and HTTP/3 only: while not 0, hyper (h3) has held a chunk of
    /// the response since `born` + this many nanoseconds, waiting for the
    /// client's window.
    handed: AtomicU64,
}

impl Default for SendLimit {
    /// `--send-timeout` for each write.
    fn default() -> SendLimit {
        SendLimit(Arc::new(LimitState {
            born: Instant::now(),
            until: AtomicU64::new(0),
            stream_owned: AtomicBool::new(false),
            waiting: AtomicWaker::new(),
            handed: AtomicU64::new(0),
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
    /// flight and its last word. A deadline already set and earlier stays.
    pub fn wait_until(&self, deadline: Instant) {
        let nanos = self.nanos(deadline);
        let _ = self
            .0
            .until
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old == 0 || nanos < old).then_some(nanos)
            });
        self.0.waiting.wake();
    }

    /// `at` as nanoseconds since `born`, never 0 (0 means none).
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0.born);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// HTTP/2, HTTP/3: hyper (h3) holds a chunk of the response it could not
    /// pass on yet.
    fn handed(&self) {
        let now = self.nanos(Instant::now());
        self.0.handed.store(now, Ordering::Release);
    }

    /// HTTP/2, HTTP/3: the chunk was passed on and the next is asked for.
    fn taken(&self) {
        self.0.handed.store(0, Ordering::Release);
    }

    /// HTTP/2, HTTP/3: when the stream is to be given up: the deadline set with
    /// [`wait_until`](Self::wait_until), else (unless the stream bounds its
    /// writes itself) `timeout` after hyper began to hold a chunk it cannot
    /// pass on; `None` while neither applies.
    fn stream_deadline(&self, timeout: Duration) -> Option<Instant> {
        if let Some(at) = self.deadline() {
            return Some(at);
        }
        if self.0.stream_owned.load(Ordering::Relaxed) {
            return None;
        }
        match self.0.handed.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.0.born + Duration::from_nanos(nanos) + timeout),
        }
    }

    /// Wakes `waker` when a deadline is set.
    fn register(&self, waker: &std::task::Waker) {
        self.0.waiting.register(waker);
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

    /// Each write that waits may wait `timeout` from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
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

/// Loads a PEM certificate chain and key into a TLS acceptor offering, by
/// ALPN, `h2` then `http/1.1` (a client that offers neither gets HTTP/1.1).
/// A file that cannot be read or used is named with its flag
/// ([`Error::TlsFile`], [`Error::TlsPair`]): the command line is at fault.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, Error> {
    let mut config = tls_config(cert, key, rustls::DEFAULT_VERSIONS)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A rustls server configuration (ring) with the certificate chain and key
/// of `--tls-cert`/`--tls-key`, for the protocol `versions`, no ALPN yet:
/// the one TLS setup behind TCP ([`tls_acceptor`]) and QUIC
/// ([`h3::quic_config`]).
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ServerConfig, Error> {
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
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|source| Error::TlsPair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })
}
