//! HTTP/3 (`--http3`): QUIC on UDP, the same port number as the TCP
//! listener, served by the same [`Router`] as TCP.
//!
//! quinn is the QUIC stack, with the rustls (ring) configuration of
//! `--tls-cert`/`--tls-key` built by the same code as TCP's (without them, a
//! self-signed certificate: [`super::cert`]), TLS 1.3 only and ALPN `h3`; h3 (with h3-quinn) speaks HTTP/3 on it. h3 has no hyper or axum
//! integration, so this module is the adapter, and nothing else: each request
//! stream becomes an `http::Request<axum::body::Body>` (its URI carries the
//! `https` scheme and the `:authority`, so the Origin, DNS-rebinding and token
//! checks of [`crate::transport::access`] see what they see over HTTP/2), with
//! the extensions the TCP path inserts ([`ConnectInfo`], a [`SendLimit`] of
//! its own, an [`OpenStream`]); the router answers it through
//! [`tower::ServiceExt::oneshot`], and the response head and body frames go
//! out with `send_response`, `send_data` and `finish`. Admission, framing and
//! the pump are the handlers' own: `/events` over HTTP/3 is the same SSE
//! handler. `/ws` is refused by its handler (h3 and browsers have no RFC
//! 9220 WebSocket over HTTP/3); WebSocket stays on TCP.
//!
//! WebTransport (`/wt`) is announced in the SETTINGS of every connection; an
//! extended CONNECT with `:protocol = webtransport` goes through the router
//! too, with a [`webtransport::WebTransportUpgrade`] among its extensions;
//! when the handler answers 2xx, the head is sent, the CONNECT stream stays
//! open and [`super::webtransport`] makes it a session. The stream keeps its
//! place among the connection's until the session ends, so shutdown waits
//! for a session's goodbye as for an SSE stream's.
//!
//! # One stream's deadline
//!
//! As on HTTP/2 (see [`super::h2`]), a stream whose reader stops is held back
//! by flow control while the connection goes on. Each stream gets its own
//! [`SendLimit`] with the same rules, kept here instead of by a watchdog
//! task: the body comes out in pieces ([`WatchedBody`]) and a piece that
//! `send_data` cannot hand to quinn within `--send-timeout` abandons an
//! ordinary response; SSE bounds its own writes (its pump's deadline, then
//! the `event: closed` grace) and sets the end of its grace. An abandoned
//! stream is **reset** (`H3_REQUEST_CANCELLED`), not just dropped: quinn
//! finishes a dropped send stream gracefully, which would keep what it
//! buffered for the stuck client until the connection ends.
//!
//! # Limits
//!
//! Per connection: [`MAX_CONCURRENT_STREAMS`] request streams (as HTTP/2),
//! a few unidirectional streams (HTTP/3 needs three: control and QPACK),
//! [`STREAM_WINDOW`]/[`CONNECTION_WINDOW`] of what a client may send unread,
//! [`MAX_FIELD_SECTION`] of request headers (431-like refusal by h3), a PING
//! every `--ping-interval` ([`MAX_PING_PERIOD`] at most) and an idle timeout
//! of two periods (a peer that answers nothing that long is gone). The QUIC handshake and HTTP/3's
//! SETTINGS, then each request's headers, must arrive within the handshake
//! timeout.
//!
//! # Shutdown
//!
//! On cancel the accept loop stops; each connection first lets its
//! WebTransport sessions close (their close capsule: some clients take a
//! GOAWAY for the end of everything), then sends GOAWAY, and its streams
//! end (an SSE stream's body ends as over TCP): all of that within
//! [`SHUTDOWN_FLUSH`]; the client, which then has nothing left,
//! is given [`LINGER`] to close the connection itself (so that nothing it
//! has not read yet is dropped by our close), and then the connection is
//! closed with `H3_NO_ERROR`; [`serve_h3`] returns once every connection's
//! close has gone out (bounded by [`CLOSE_FLUSH`]): all within the 2 s exit
//! budget.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Response};
use bytes::Bytes;
use h3::error::Code;
use http_body::Body as _;
use tokio::time::{Instant, Sleep, timeout, timeout_at};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::h2::WatchedBody;
use super::webtransport::{self, is_webtransport};
use super::{OpenConnection, OpenStream, SHUTDOWN_FLUSH, SendLimit, ServeOptions};
use crate::error::Error;
use crate::metrics::HttpVersion;

/// Request streams a client may have open at once on one connection (as on
/// HTTP/2: each streaming one also takes a `--max-clients` slot).
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Unidirectional streams a client may open: HTTP/3 uses three (control,
/// QPACK encoder and decoder); the rest is room for grease streams.
const MAX_UNI_STREAMS: u32 = 16;

/// WebTransport sessions a client may open on one connection (announced
/// in SETTINGS; each also takes a `--max-clients` slot).
const WEBTRANSPORT_SESSIONS: u64 = 16;

/// What a client may send on one stream before the server reads it (as
/// HTTP/2's `STREAM_WINDOW`: requests have no bodies).
pub const STREAM_WINDOW: u32 = 64 * 1024;

/// What a client may send on a whole connection before the server reads it.
pub const CONNECTION_WINDOW: u32 = 256 * 1024;

/// Bytes in flight (sent, not yet acknowledged) on one connection: what a
/// connection can make quinn hold; a stuck stream's share is bounded by its
/// deadline, like HTTP/2's `MAX_SEND_BUF`.
const SEND_WINDOW: u64 = 2 * 1024 * 1024;

/// The largest request header section (as HTTP/2's `MAX_HEADER_LIST`).
pub const MAX_FIELD_SECTION: u64 = 16 * 1024;

/// The longest time between two PINGs on a QUIC connection (`--ping-interval`
/// if shorter).
const MAX_PING_PERIOD: Duration = Duration::from_secs(10);

/// At shutdown, how long a connection whose streams have ended waits for the
/// client to close it (having read their last bytes) before closing it.
pub const LINGER: Duration = Duration::from_millis(250);

/// After every connection was closed, how long the endpoint may take to send
/// the closes.
pub const CLOSE_FLUSH: Duration = Duration::from_millis(300);

/// The application close code of a connection the server ends (RFC 9114
/// §8.1 `H3_NO_ERROR`).
const H3_NO_ERROR: quinn::VarInt = quinn::VarInt::from_u32(0x100);

/// The `Alt-Svc` value that advertises HTTP/3 on `port` (RFC 7838), for
/// every TCP response when `--http3` is on.
pub fn alt_svc(port: u16) -> HeaderValue {
    // Digits and punctuation only: always a valid header value.
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
        .unwrap_or_else(|_| HeaderValue::from_static("clear"))
}

/// The QUIC server configuration: `--tls-cert`/`--tls-key` (TLS 1.3, ALPN
/// `h3`, ring) and the per-connection limits of this module; keep-alive and
/// idle timeout from `--ping-interval`.
pub fn quic_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    ping_interval: Duration,
) -> Result<quinn::ServerConfig, Error> {
    let tls = super::tls_config(cert, key, &[&rustls::version::TLS13])?;
    quic_config_from(tls, ping_interval)
}

/// The same with a certificate and key in memory (the self-signed one of
/// [`super::cert`]).
pub fn quic_config_for(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    ping_interval: Duration,
) -> Result<quinn::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(Error::Tls)?;
    quic_config_from(tls, ping_interval)
}

fn quic_config_from(
    mut tls: rustls::ServerConfig,
    ping_interval: Duration,
) -> Result<quinn::ServerConfig, Error> {
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // Early data would let a request be replayed: off (rustls' default).
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))
        .map_err(|err| Error::Tls(rustls::Error::General(err.to_string())))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_CONCURRENT_STREAMS.into())
        .max_concurrent_uni_streams(MAX_UNI_STREAMS.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .send_window(SEND_WINDOW)
        // QUIC's idle timeout is the lower of the two peers': clients often
        // announce 30 s (quinn's and Chromium's default), which a PING every
        // --ping-interval (30 s by default) would not always beat.
        .keep_alive_interval(Some(ping_interval.min(MAX_PING_PERIOD)))
        // A peer that answers no PING for two periods is gone. Two periods
        // always fit quinn's limit (--ping-interval is at most a day).
        .max_idle_timeout((ping_interval * 2).try_into().ok());
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Accepts QUIC connections on `endpoint` until `options.cancel` fires, and
/// serves HTTP/3 on each with `router` (see the module doc); returns once
/// every connection has been closed.
pub async fn serve_h3(endpoint: quinn::Endpoint, router: Router, options: ServeOptions) {
    let connections = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = options.cancel.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let conn = H3Conn {
            peer: incoming.remote_address(),
            router: router.clone(),
            options: options.clone(),
        };
        options
            .tracker
            .spawn(connections.track_future(conn.serve(incoming)));
    }
    // Each connection sends GOAWAY and closes itself; then the closes must
    // leave the socket before the process does.
    connections.close();
    let _ = timeout(SHUTDOWN_FLUSH + LINGER, connections.wait()).await;
    endpoint.close(H3_NO_ERROR, b"server shutting down");
    let _ = timeout(CLOSE_FLUSH, endpoint.wait_idle()).await;
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One QUIC connection, until it is served.
struct H3Conn {
    peer: SocketAddr,
    router: Router,
    options: ServeOptions,
}

impl H3Conn {
    async fn serve(self, incoming: quinn::Incoming) {
        let peer = self.peer;
        let deadline = Instant::now() + self.options.handshake_timeout;
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(err) => return tracing::debug!(%peer, "QUIC connection refused: {err}"),
        };
        let quic = match timeout_at(deadline, connecting).await {
            Ok(Ok(quic)) => quic,
            Ok(Err(err)) => return tracing::debug!(%peer, "QUIC handshake failed: {err}"),
            Err(_) => return tracing::debug!(%peer, "QUIC handshake timed out"),
        };
        let mut builder = h3::server::builder();
        builder
            .max_field_section_size(MAX_FIELD_SECTION)
            // WebTransport (`/wt`, see `super::webtransport`).
            .enable_webtransport(true)
            .enable_extended_connect(true)
            .enable_datagram(true)
            .max_webtransport_sessions(WEBTRANSPORT_SESSIONS);
        let build = builder.build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()));
        let mut h3 = match timeout_at(deadline, build).await {
            Ok(Ok(h3)) => h3,
            Ok(Err(err)) => return tracing::debug!(%peer, "HTTP/3 setup failed: {err}"),
            Err(_) => {
                quic.close(H3_NO_ERROR, b"too slow");
                return tracing::debug!(%peer, "HTTP/3 setup timed out");
            }
        };
        let open = OpenConnection::new(&self.options.metrics, HttpVersion::H3);
        let streams = TaskTracker::new();
        // The request tasks that became WebTransport sessions.
        let sessions = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                accepted = h3.accept() => accepted,
                () = self.options.cancel.cancelled() => break,
            };
            let resolver = match accepted {
                Ok(Some(resolver)) => resolver,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%peer, "HTTP/3 connection ended: {err}");
                    break;
                }
            };
            let stream = OpenStream::new(&open);
            let request = RequestTask {
                peer,
                quic: quic.clone(),
                sessions: sessions.clone(),
                router: self.router.clone(),
                options: self.options.clone(),
                stream,
            };
            self.options
                .tracker
                .spawn(streams.track_future(request.serve(resolver)));
        }
        if self.options.cancel.is_cancelled() {
            // GOAWAY: no new request; those in progress (SSE ends at
            // shutdown) get the flush time to finish.
            let flushed = Instant::now() + SHUTDOWN_FLUSH;
            // WebTransport sessions close (their close capsule) before the
            // GOAWAY: some clients take a GOAWAY for the end of everything.
            let had_sessions = !sessions.is_empty();
            sessions.close();
            let _ = timeout_at(flushed, sessions.wait()).await;
            if had_sessions {
                // The capsules are on their CONNECT streams and the GOAWAY
                // would be on the control stream: QUIC does not order the
                // two, and a client that reads the GOAWAY first takes it for
                // a protocol error. One that closes on the capsule
                // (wtransport) is let do so first; others get LINGER.
                let _ = timeout_at(flushed.min(Instant::now() + LINGER), quic.closed()).await;
            }
            let _ = timeout_at(flushed, h3.shutdown(0)).await;
            streams.close();
            let _ = timeout_at(flushed, streams.wait()).await;
            // A stream's last bytes may still be on their way, or unread by
            // the client's application: closing now would let its QUIC
            // stack drop them. Told by GOAWAY that no request is left, the
            // client closes once it has read them; wait for that, briefly.
            let _ = timeout(LINGER, quic.closed()).await;
        } else {
            streams.close();
        }
        quic.close(H3_NO_ERROR, b"server shutting down");
        // The streams hold the connection's count until they end.
        drop(open);
    }
}

/// One request stream.
struct RequestTask {
    peer: SocketAddr,
    quic: quinn::Connection,
    /// Counts this task among the connection's sessions once it is one.
    sessions: TaskTracker,
    router: Router,
    options: ServeOptions,
    stream: OpenStream,
}

impl RequestTask {
    async fn serve(self, resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>) {
        let peer = self.peer;
        let head = timeout(self.options.handshake_timeout, resolver.resolve_request());
        let (request, mut stream) = match head.await {
            Ok(Ok(pair)) => pair,
            Ok(Err(err)) => return tracing::debug!(%peer, "HTTP/3 request refused: {err}"),
            Err(_) => return tracing::debug!(%peer, "no HTTP/3 request head in time"),
        };
        let limit = SendLimit::default();
        let webtransport = is_webtransport(&request);
        // Requests carry no body here (every route is a GET); what a client
        // sends anyway stays unread, bounded by STREAM_WINDOW.
        let mut request = request.map(|()| Body::empty());
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(limit.clone());
        request.extensions_mut().insert(self.stream.clone());
        let pending = webtransport.then(|| {
            let (upgrade, pending) = webtransport::upgrade();
            request.extensions_mut().insert(upgrade);
            pending
        });
        let Ok(response) = self.router.oneshot(request).await;
        if let Some(pending) = pending.filter(|_| response.status().is_success()) {
            // Accepted: the head goes out, the CONNECT stream stays open and
            // becomes the session's (see `super::webtransport`).
            let head = Response::from_parts(response.into_parts().0, ());
            let sent = timeout(self.options.send_timeout, stream.send_response(head)).await;
            match sent {
                Ok(Ok(())) => {
                    let _session = self.sessions.token();
                    pending.hand_over(self.quic, stream).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, "WebTransport session not opened: {err}"),
                Err(_) => tracing::debug!(%peer, "WebTransport session not opened in time"),
            }
            drop(self.stream);
            return;
        }
        let send_timeout = self.options.send_timeout;
        tokio::select! {
            biased;
            sent = respond(&mut stream, response, &limit) => {
                if let Err(err) = sent {
                    tracing::debug!(%peer, "HTTP/3 response ended: {err}");
                    stream.stop_stream(Code::H3_INTERNAL_ERROR);
                }
            }
            () = deadline(&limit, send_timeout) => {
                tracing::debug!(%peer, "reset an HTTP/3 stream whose client took nothing in time");
                self.options.metrics.stream_reset();
                stream.stop_stream(Code::H3_REQUEST_CANCELLED);
                stream.stop_sending(Code::H3_REQUEST_CANCELLED);
            }
        }
        drop(self.stream);
    }
}

/// Sends `response` on `stream`: the head, the body in pieces (telling
/// `limit` while a piece waits for the client's window), the end.
async fn respond(
    stream: &mut Stream,
    response: Response<Body>,
    limit: &SendLimit,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = response.into_parts();
    stream
        .send_response(Response::from_parts(parts, ()))
        .await?;
    let mut body = WatchedBody::new(body, limit.clone());
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame?.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => stream.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    stream.send_trailers(trailers).await?;
                }
            }
        }
    }
    stream.finish().await?;
    Ok(())
}

/// Resolves when the stream is to be given up ([`SendLimit::stream_deadline`]),
/// never while no deadline applies. Polled after [`respond`] in the same
/// task, so a piece handed in that poll is seen at once; a deadline set from
/// another task (the SSE pump's) wakes it.
async fn deadline(limit: &SendLimit, send_timeout: Duration) {
    let mut sleep: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        limit.register(cx.waker());
        let Some(at) = limit.stream_deadline(send_timeout) else {
            return Poll::Pending;
        };
        let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx)
    })
    .await
}
