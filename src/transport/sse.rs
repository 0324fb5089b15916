//! `/events`: the Server-Sent Events stream.
//!
//! The same cursor and the same delivery loop ([`crate::pump`]) as `/ws`,
//! encoded as SSE ([`Encoding::Sse`]): `id: EPOCH:SEQ` and `data: LINE` per
//! line, file events and gaps as named events. A reconnecting `EventSource`
//! sends back the last id as `Last-Event-ID` and resumes exactly where it
//! stopped. The stream starts with `retry: 1000` and a `: keep-alive`
//! comment goes out every 15 s so proxies keep it open.
//!
//! The response body is a small bounded channel of chunks that the pump
//! fills through an [`SseSink`] (one chunk per flush, so a burst is one
//! write, not one per line) and hyper drains. A client whose socket accepts
//! nothing fills it: the pump's next feed waits, and after `--send-timeout`
//! the client is too slow, as one more than `--client-queue` behind for
//! longer than the grace is. Either way it gets a final `event: closed`
//! (data `client too slow`) after what was in flight, within a grace
//! ([`CLOSE_CAP`]): a client that reads again within it (a laptop waking up)
//! learns that it must resume.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, HeaderValue, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use super::{AppState, CLOSE_CAP, ClientSlot, RawParams, admit};
use crate::encode::{self, Encoding};
use crate::hub::Cursor;
use crate::lines::Text;
use crate::pump::{PeerEnd, PumpOptions, Sink, SinkGone};
use crate::server::SendLimit;

/// How often an idle stream carries a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Bytes of lines fed before a flush, at most; also the largest chunk.
const FLUSH_BYTES: usize = 64 * 1024;
/// Chunks queued between the pump and hyper: a little slack, not a queue
/// (a client's backlog is its cursor's lag, which costs no memory).
const CHUNKS: usize = 4;

pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    limit: Option<Extension<SendLimit>>,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let raw = RawParams::from_query(uri.query());
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let admitted = match admit(&app, "sse", peer, &raw, &uri, &headers, last_event_id) {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.into_response(),
    };
    let limit = limit.map(|Extension(limit)| limit);
    // The pump bounds every write; the socket's own timeout would race it.
    if let Some(limit) = &limit {
        limit.stream_owned();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS);
    let tracker = app.tracker.clone();
    let encoding = Encoding::Sse.prefixed(admitted.prefix);
    tracker.spawn(client(
        admitted.cursor,
        encoding,
        tx,
        app,
        admitted.slot,
        limit,
    ));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // A stream that ended (too slow, shutdown) ends its HTTP/1.1 connection
    // too: the connection's write limits were the stream's, and a client
    // reusing it should start afresh. `EventSource` reconnects with a new one
    // anyway. (HTTP/2 has no such header: each stream has its own limits.)
    if version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// One SSE client: the pump, then its last word.
async fn client(
    mut cursor: Cursor,
    encoding: Encoding,
    tx: mpsc::Sender<Bytes>,
    app: AppState,
    slot: ClientSlot,
    limit: Option<SendLimit>,
) {
    let mut sink = SseSink {
        tx,
        chunk: BytesMut::new(),
    };
    let options = PumpOptions {
        encoding,
        send_timeout: app.config.send_timeout,
        keep_alive: Some(KEEP_ALIVE),
        flush_bytes: FLUSH_BYTES,
    };
    let (end, delivered) = super::deliver(&app, &slot, &mut cursor, &mut sink, &options).await;
    if end.too_slow() {
        drop(cursor);
        // What was in flight, then `closed`, within the grace; hyper's own
        // writes of those last bytes are bounded by the same deadline.
        let deadline = Instant::now() + CLOSE_CAP;
        if let Some(limit) = &limit {
            limit.wait_until(deadline);
        }
        let last = encode::sse_event("closed", "client too slow");
        let goodbye = async {
            sink.chunk.extend_from_slice(last.as_bytes());
            sink.send_chunk().await
        };
        tokio::select! {
            _ = timeout_at(deadline, goodbye) => {}
            () = app.cancel.cancelled() => {}
        }
    }
    // Otherwise (shutdown, the peer gone) the body just ends: dropping the
    // sender lets hyper finish the response, within the grace at most (on
    // HTTP/2 a stream whose client stopped reading is then reset; on
    // HTTP/1.1 the connection ends with the response anyway).
    if let Some(limit) = &limit {
        limit.wait_until(Instant::now() + CLOSE_CAP);
    }
    let mut slot = slot;
    slot.ended(end, delivered);
    drop(slot);
}

/// The response body as the pump's [`Sink`]: frames are gathered into a
/// chunk, and a flush hands the chunk to hyper through the channel.
struct SseSink {
    tx: mpsc::Sender<Bytes>,
    chunk: BytesMut,
}

impl SseSink {
    async fn send_chunk(&mut self) -> Result<(), SinkGone> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = self.chunk.split().freeze();
        self.tx.send(chunk).await.map_err(|_| SinkGone)
    }
}

impl Sink for SseSink {
    fn try_feed(&mut self, frame: Text) -> Result<Option<Text>, SinkGone> {
        if self.chunk.len() + frame.len() > FLUSH_BYTES {
            return Ok(Some(frame));
        }
        self.chunk.extend_from_slice(frame.as_bytes());
        Ok(None)
    }

    async fn feed(&mut self, frame: Text) -> Result<(), SinkGone> {
        self.chunk.extend_from_slice(frame.as_bytes());
        if self.chunk.len() >= FLUSH_BYTES {
            self.send_chunk().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkGone> {
        self.send_chunk().await
    }

    async fn keep_alive(&mut self) -> Result<(), SinkGone> {
        self.chunk
            .extend_from_slice(encode::SSE_KEEP_ALIVE.as_bytes());
        Ok(())
    }

    async fn peer_end(&mut self) -> PeerEnd {
        // hyper dropped the body: the client is gone.
        self.tx.closed().await;
        PeerEnd::Gone
    }
}
