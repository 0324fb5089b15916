//! `/wt`: the WebTransport stream (`--http3`), and `/wt-cert-hash`.
//!
//! A session is an extended CONNECT over HTTP/3 (the plumbing is
//! [`crate::server::webtransport`]'s). The handler runs the checks of `/ws`
//! ([`admit`]: authority and Origin, token — `?token=`, since a browser's
//! `WebTransport` cannot send headers — parameters, a `--max-clients` slot)
//! while it can still answer with a status, subscribes, and answers 200.
//! The session then gets **one server-initiated unidirectional stream**
//! carrying the frames of `/ws?format=json`, each followed by `\n`
//! (newline-delimited JSON: the first line is the `hello`, then lines,
//! file events and gaps). `format` is not read: the stream is always JSON.
//! The same query parameters as `/ws` (`backlog`, `since`, `epoch`,
//! `grep`, `file`) choose where it starts and what it carries.
//!
//! The writer is the delivery loop ([`crate::pump`]) over a [`WtSink`]:
//! frames are gathered into one QUIC write per flush (up to
//! [`FLUSH_BYTES`]); a write that the client's flow control holds for
//! `--send-timeout` (or a client too far behind) is the pump's *too slow*.
//! Keep-alive is QUIC's own PING (every `--ping-interval`); a client that
//! answers none for two periods is gone (the idle timeout).
//!
//! # How a session ends
//!
//! The server closes a session with a `CLOSE_WEBTRANSPORT_SESSION` code and
//! reason, the codes of `/ws`'s Close frames:
//!
//! | code | reason | when |
//! |---|---|---|
//! | 1001 | `server shutting down` | shutdown (or the source ended) |
//! | 1013 | `client too slow` | behind by more than `--client-queue` for longer than the grace, or nothing taken for `--send-timeout` |
//!
//! Before the close, the stream is finished and what it carries gets a
//! grace to be acknowledged ([`CLOSE_CAP`], [`SHUTDOWN_FLUSH`] at
//! shutdown), so a client that reads again within it gets everything that
//! was in flight and then the close, and knows to resume with
//! `since=SEQ&epoch=EPOCH`. A stream still unacknowledged when the grace
//! ends is reset with the same code (as WebTransport maps application codes
//! onto HTTP/3's: [`webtransport::stream_error_code`]), then the session is
//! closed. A session the client closed (or whose
//! connection ended) is just dropped. A client that stops the stream
//! (STOP_SENDING) is noticed at the next write.
//!
//! `/wt-cert-hash` (any transport, open as `/healthz` is: a certificate
//! hash is public) answers the SHA-256 of the self-signed QUIC certificate,
//! 64 lowercase hex digits and nothing else (no newline), for `serverCertificateHashes`; 404 when QUIC
//! uses `--tls-cert` (browsers verify that one as usual) or without
//! `--http3`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use tokio::time::{Instant, timeout, timeout_at};

use super::{Admitted, AppState, CLOSE_CAP, ClientSlot, RawParams, Rejection, admit};
use crate::encode::Encoding;
use crate::hub::Cursor;
use crate::lines::Text;
use crate::pump::{End, PeerEnd, PumpOptions, Sink, SinkGone};
use crate::server::SHUTDOWN_FLUSH;
use crate::server::webtransport::{self, Ended, Session, WebTransportUpgrade};

/// Session close codes (as `/ws`'s Close codes).
pub const AWAY: u32 = 1001;
pub const TRY_AGAIN_LATER: u32 = 1013;

/// Bytes gathered before a write, at most.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// The transport's name in metrics and logs.
const TRANSPORT: &str = "wt";

pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: Option<Extension<WebTransportUpgrade>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(Extension(upgrade)) = upgrade else {
        return Rejection::new(
            StatusCode::BAD_REQUEST,
            "WebTransport is served over HTTP/3 (--http3): new WebTransport(\"https://HOST:PORT/wt\")",
        )
        .into_response();
    };
    let raw = RawParams::from_query(uri.query());
    let Admitted { cursor, slot, .. } =
        match admit(&app, TRANSPORT, peer, &raw, &uri, &headers, None) {
            Ok(admitted) => admitted,
            Err(rejection) => return rejection.into_response(),
        };
    let tracker = app.tracker.clone();
    tracker.spawn(async move {
        // The session comes once the 200 below went out.
        match upgrade.session().await {
            Some(session) => client(session, cursor, app, slot).await,
            None => tracing::debug!(%peer, "WebTransport session not set up"),
        }
    });
    let mut response = StatusCode::OK.into_response();
    // Chromium's draft of WebTransport over HTTP/3.
    response.headers_mut().insert(
        "sec-webtransport-http3-draft",
        HeaderValue::from_static("draft02"),
    );
    response
}

/// One session: its stream, the pump, then its last word.
async fn client(session: Session, mut cursor: Cursor, app: AppState, slot: ClientSlot) {
    let mut slot = slot;
    let send_timeout = app.config.send_timeout;
    let stream = match timeout(send_timeout, session.open_uni()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(peer = %slot.peer, "WebTransport stream not opened: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %slot.peer, "WebTransport stream not opened in time");
            let _ = timeout(
                SHUTDOWN_FLUSH,
                session.close(TRY_AGAIN_LATER, "client too slow"),
            )
            .await;
            return;
        }
    };
    let mut sink = WtSink {
        stream,
        gathered: BytesMut::new(),
        session,
        app: app.clone(),
    };
    let options = PumpOptions {
        // The frames of `/ws?format=json` (each line names its file).
        encoding: Encoding::Json,
        send_timeout,
        // QUIC PINGs keep the connection alive.
        keep_alive: None,
        flush_bytes: FLUSH_BYTES,
    };
    let (end, delivered) = super::deliver(&app, &slot, &mut cursor, &mut sink, &options).await;
    let close = match end {
        End::Shutdown | End::SourceClosed => Some((AWAY, "server shutting down")),
        End::Behind | End::Stuck => Some((TRY_AGAIN_LATER, "client too slow")),
        End::Peer(_) => None,
    };
    slot.ended(end, delivered);
    // Nothing more is queued for this client.
    drop(cursor);
    let Some((code, reason)) = close else { return };
    let grace = if end == End::Shutdown {
        // Half for the stream, half for the close: within the exit budget.
        SHUTDOWN_FLUSH / 2
    } else {
        CLOSE_CAP
    };
    let WtSink {
        mut stream,
        gathered,
        session,
        ..
    } = sink;
    let deadline = Instant::now() + grace;
    let metrics = &app.hub.metrics;
    let goodbye = async {
        // What a feed the pump gave up on left gathered goes first.
        if !gathered.is_empty() {
            let n = gathered.len() as u64;
            stream
                .write_chunk(gathered.freeze())
                .await
                .map_err(|_| ())?;
            metrics.stream_bytes_sent(TRANSPORT, n);
        }
        stream.finish().map_err(|_| ())?;
        // Everything sent was acknowledged (or the client stopped the stream).
        stream.stopped().await.map(|_| ()).map_err(|_| ())
    };
    let acked = tokio::select! {
        acked = timeout_at(deadline, goodbye) => matches!(acked, Ok(Ok(()))),
        // Shutdown cuts the grace short.
        () = app.cancel.cancelled(), if end != End::Shutdown => false,
    };
    if !acked {
        let _ = stream.reset(webtransport::stream_error_code(code));
    }
    let _ = timeout(SHUTDOWN_FLUSH / 2, session.close(code, reason)).await;
    drop(slot);
}

/// The session's stream as the pump's [`Sink`]: each frame and a `\n`
/// gathered, one write per flush; the session tells how the peer ended.
struct WtSink {
    stream: quinn::SendStream,
    gathered: BytesMut,
    session: Session,
    app: AppState,
}

impl WtSink {
    fn gather(&mut self, frame: &Text) {
        self.gathered.extend_from_slice(frame.as_str().as_bytes());
        self.gathered.extend_from_slice(b"\n");
    }

    /// Writes what was gathered. Cancel-safe (the pump gives up on a write
    /// that waits too long): each `write` takes some bytes or none, and
    /// what it did not take stays gathered, for the goodbye.
    async fn write_gathered(&mut self) -> Result<(), SinkGone> {
        while !self.gathered.is_empty() {
            let n = self
                .stream
                .write(&self.gathered)
                .await
                .map_err(|_| SinkGone)?;
            self.gathered.advance(n);
            self.app.hub.metrics.stream_bytes_sent(TRANSPORT, n as u64);
        }
        Ok(())
    }
}

impl Sink for WtSink {
    fn try_feed(&mut self, frame: Text) -> Result<Option<Text>, SinkGone> {
        if !self.gathered.is_empty() && self.gathered.len() + frame.len() + 1 > FLUSH_BYTES {
            return Ok(Some(frame));
        }
        self.gather(&frame);
        Ok(None)
    }

    async fn feed(&mut self, frame: Text) -> Result<(), SinkGone> {
        // Full: what was gathered goes first.
        self.write_gathered().await?;
        self.gather(&frame);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkGone> {
        self.write_gathered().await
    }

    async fn keep_alive(&mut self) -> Result<(), SinkGone> {
        Ok(())
    }

    async fn peer_end(&mut self) -> PeerEnd {
        match self.session.ended().await {
            Ended::Gone => PeerEnd::Gone,
            Ended::Silent => PeerEnd::Silent,
        }
    }
}

/// `GET /wt-cert-hash`: see the module doc.
pub async fn cert_hash(State(app): State<AppState>) -> Response {
    match &app.wt_cert {
        Some(hash) => {
            let mut response = hash.current().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            // It changes at each renewal.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => Rejection::new(
            StatusCode::NOT_FOUND,
            "no self-signed certificate: QUIC uses --tls-cert, or --http3 is off",
        )
        .into_response(),
    }
}
