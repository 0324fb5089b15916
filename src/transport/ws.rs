//! `/ws`: the WebSocket stream.
//!
//! The handler runs every check while it can still answer with an HTTP
//! status (Origin, token, client limit, parameters) and subscribes the client
//! *before* returning the 101, so a line appended after the client saw its
//! handshake complete is a live line for it.
//!
//! After the upgrade the socket is split: a reader task reads and ignores
//! what the client sends (bounded: 4 KiB messages, or close 1009), answers
//! pings and notices a silent peer; the writer — this task — is the
//! delivery loop ([`crate::pump`]) over a [`WsSink`]: every line that is
//! ready is fed and flushed once, so a burst costs one `write(2)` per
//! ~64 KiB instead of one per line, and a client whose socket accepts
//! nothing for `--send-timeout` is closed with 1013 instead of pinning
//! memory or a task. That deadline is the pump's; the connection's own
//! socket timeout is turned off for a WebSocket ([`SendLimit::stream_owned`]),
//! so the two never race.
//!
//! Closing keeps the connection for a grace ([`CLOSE_CAP`]) with nothing
//! more queued: what the socket was given but the client has not taken
//! (frames a feed the pump gave up on left in tungstenite's buffer included),
//! then the Close frame, then the client's answer. So a stuck client that
//! reads again within the grace (a laptop waking up) still gets what was in
//! flight and then its 1013, and knows to resume with `since=`. It counts
//! among `--max-clients` until the connection ends.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink as _, SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout, timeout_at};

use super::{Admitted, AppState, CLOSE_CAP, ClientSlot, Format, RawParams, admit};
use crate::encode::Encoding;
use crate::hub::Cursor;
use crate::lines::Text;
use crate::pump::{End, PeerEnd, PumpOptions, Sink, SinkGone};
use crate::server::{OpenStream, SHUTDOWN_FLUSH, SendLimit};

/// Largest message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 4096;
/// At shutdown, how long the client's answer to the Close is waited for.
const SHUTDOWN_ANSWER: Duration = Duration::from_millis(500);
/// Bytes fed before a flush, at most.
const FLUSH_BYTES: usize = 256 * 1024;

/// Close codes and reasons, as DESIGN.md lists them.
const AWAY: u16 = 1001;
const TOO_BIG: u16 = 1009;
const TRY_AGAIN_LATER: u16 = 1013;

// One argument per extractor, as axum handlers go.
#[allow(clippy::too_many_arguments)]
pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    limit: Option<Extension<SendLimit>>,
    stream: Option<Extension<OpenStream>>,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if version == Version::HTTP_3 {
        // Neither h3 nor any browser does RFC 9220 (WebSocket over HTTP/3).
        return super::Rejection::new(
            StatusCode::BAD_REQUEST,
            "WebSocket is not available over HTTP/3: connect to /ws over TCP \
             (HTTP/1.1 or HTTP/2, same port)",
        )
        .into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let raw = RawParams::from_query(uri.query());
    let Admitted {
        access,
        format,
        prefix,
        cursor,
        slot,
    } = match admit(&app, "ws", peer, &raw, &uri, &headers, None) {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.into_response(),
    };
    let mut upgrade = upgrade
        .read_buffer_size(1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    if let Some(protocol) = access.protocol {
        upgrade.set_selected_protocol(protocol);
    }
    let tracker = app.tracker.clone();
    let limit = limit.map(|Extension(limit)| limit);
    upgrade
        .on_failed_upgrade(|err| tracing::debug!("websocket upgrade failed: {err}"))
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                // Counted as an open stream (`/metrics`) while the socket lives.
                let _stream = stream;
                client(socket, cursor, format, prefix, app, slot, limit).await;
            })
        })
}

/// What the reader task tells the writer.
enum FromReader {
    TooBig,
    /// Nothing (not even a pong) for two ping periods.
    Silent,
    Gone,
}

async fn client(
    socket: WebSocket,
    mut cursor: Cursor,
    format: Format,
    prefix: bool,
    app: AppState,
    slot: ClientSlot,
    limit: Option<SendLimit>,
) {
    // The pump bounds every write; the socket's own timeout would race it.
    if let Some(limit) = &limit {
        limit.stream_owned();
    }
    let (sink, stream) = socket.split();
    // One message at most, so a oneshot: polling it in every loop turn is one
    // atomic load (an mpsc receiver showed up in profiles).
    let (tell, told) = oneshot::channel();
    let mut reader = tokio::spawn(read_client(stream, tell, app.config.ping_interval * 2));
    let mut ws = WsSink {
        sink,
        told,
        lines: (format == Format::JsonLines).then(String::new),
    };
    let options = PumpOptions {
        encoding: match format {
            Format::Text => Encoding::Text.prefixed(prefix),
            Format::Json | Format::JsonLines => Encoding::Json,
        },
        send_timeout: app.config.send_timeout,
        keep_alive: Some(app.config.ping_interval),
        flush_bytes: FLUSH_BYTES,
    };
    let (end, delivered) = super::deliver(&app, &slot, &mut cursor, &mut ws, &options).await;
    let close = match end {
        End::Shutdown | End::SourceClosed => Some((AWAY, "server shutting down")),
        End::Behind | End::Stuck => Some((TRY_AGAIN_LATER, "client too slow")),
        End::Peer(PeerEnd::TooBig) => Some((TOO_BIG, "message too big")),
        End::Peer(PeerEnd::Gone | PeerEnd::Silent) => None,
    };
    let mut slot = slot;
    slot.ended(end, delivered);
    // Nothing more is queued for this client.
    drop(cursor);
    let mut sink = ws.sink;
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Text::from_static(reason),
        };
        if end == End::Shutdown {
            // The process exits within 2 s: a short flush, a short wait.
            let by = Instant::now() + SHUTDOWN_FLUSH;
            if send_close(&mut sink, frame, by, &slot).await {
                let _ = timeout(SHUTDOWN_ANSWER, &mut reader).await;
            }
        } else {
            // The frame queues behind what the socket already holds, however
            // long it has accepted nothing: a feed the pump gave up on left
            // its bytes buffered, and they go first, within the grace. (On
            // HTTP/2 the stream is reset when the grace ends: see below.)
            let deadline = Instant::now() + CLOSE_CAP;
            let goodbye = async {
                if send_close(&mut sink, frame, deadline, &slot).await {
                    let _ = timeout_at(deadline, &mut reader).await;
                }
            };
            tokio::pin!(goodbye);
            tokio::select! {
                () = &mut goodbye => {}
                // Shutdown cuts the grace short.
                () = app.cancel.cancelled() => {
                    let _ = timeout(SHUTDOWN_FLUSH, goodbye).await;
                }
            }
        }
    }
    reader.abort();
    drop(slot);
    // What the socket still holds gets a short while to leave, and no more:
    // on HTTP/2 the stream's unsent bytes (a client whose window stays shut)
    // are then dropped and the stream reset; on HTTP/1.1 dropping the socket
    // below closes the connection anyway.
    if let Some(limit) = &limit {
        limit.wait_until(Instant::now() + SHUTDOWN_FLUSH);
    }
}

/// The WebSocket as the pump's [`Sink`]: frames become Text messages (or,
/// for `format=jsonl`, lines of one message per flush), the keep-alive a
/// Ping; the reader task tells how the peer ended.
struct WsSink {
    sink: SplitSink<WebSocket, Message>,
    told: oneshot::Receiver<FromReader>,
    /// `format=jsonl`: the frames fed since the last flush, `\n` between them.
    lines: Option<String>,
}

impl WsSink {
    /// Appends a frame to the pending `jsonl` message; false if it is full.
    fn gather(lines: &mut String, frame: &Text, always: bool) -> bool {
        if !always && !lines.is_empty() && lines.len() + 1 + frame.len() > FLUSH_BYTES {
            return false;
        }
        if !lines.is_empty() {
            lines.push('\n');
        }
        lines.push_str(frame.as_str());
        true
    }

    /// Queues the pending `jsonl` message, if any.
    async fn feed_gathered(&mut self) -> Result<(), SinkGone> {
        let Some(lines) = self.lines.as_mut().filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        let message = Message::Text(Text::from(std::mem::take(lines)));
        self.sink.feed(message).await.map_err(|_| SinkGone)
    }
}

impl Sink for WsSink {
    fn try_feed(&mut self, frame: Text) -> Result<Option<Text>, SinkGone> {
        if let Some(lines) = self.lines.as_mut() {
            return Ok((!Self::gather(lines, &frame, false)).then_some(frame));
        }
        // Polled once with a waker that does nothing: if the sink is not
        // ready, the pump's `feed` polls it again with the task's own.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.sink).poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.sink)
                .start_send(Message::Text(frame))
                .map(|()| None)
                .map_err(|_| SinkGone),
            Poll::Ready(Err(_)) => Err(SinkGone),
            Poll::Pending => Ok(Some(frame)),
        }
    }

    async fn feed(&mut self, frame: Text) -> Result<(), SinkGone> {
        if self.lines.is_some() {
            // Full: the gathered message goes first, then this frame starts the next.
            self.feed_gathered().await?;
            if let Some(lines) = self.lines.as_mut() {
                Self::gather(lines, &frame, true);
            }
            return Ok(());
        }
        self.sink
            .feed(Message::Text(frame))
            .await
            .map_err(|_| SinkGone)
    }

    async fn flush(&mut self) -> Result<(), SinkGone> {
        self.feed_gathered().await?;
        self.sink.flush().await.map_err(|_| SinkGone)
    }

    async fn keep_alive(&mut self) -> Result<(), SinkGone> {
        self.sink
            .feed(Message::Ping(Default::default()))
            .await
            .map_err(|_| SinkGone)
    }

    async fn peer_end(&mut self) -> PeerEnd {
        match (&mut self.told).await {
            Ok(FromReader::TooBig) => PeerEnd::TooBig,
            Ok(FromReader::Silent) => PeerEnd::Silent,
            Ok(FromReader::Gone) | Err(_) => PeerEnd::Gone,
        }
    }
}

/// Sends the Close frame after whatever the sink still holds, by `by`; true
/// if it went out. Then the caller waits for the client's answer (the reader
/// ends on its Close or EOF), bounded, so the connection ends cleanly rather
/// than with a reset that could lose the frame.
async fn send_close(
    sink: &mut SplitSink<WebSocket, Message>,
    frame: CloseFrame,
    by: Instant,
    slot: &ClientSlot,
) -> bool {
    match timeout_at(by, sink.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(peer = %slot.peer, "close frame not sent: {err}");
            false
        }
        Err(_) => {
            tracing::debug!(peer = %slot.peer, "close frame not taken in time");
            false
        }
    }
}

/// Reads (and drops) what the client sends; reports an oversized message
/// or a peer gone silent. Reading also lets tungstenite answer pings and
/// close frames.
///
/// It ends on the client's Close, EOF or an error, not on silence: a client
/// being closed is still read from (its answer, or pongs sent as it catches
/// up) until the writer is done with it and aborts this task.
async fn read_client(
    mut stream: SplitStream<WebSocket>,
    tell: oneshot::Sender<FromReader>,
    silence_limit: Duration,
) {
    let mut tell = Some(tell);
    loop {
        let next = if tell.is_some() {
            match timeout(silence_limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    report(&mut tell, FromReader::Silent);
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        match next {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                if is_too_big(&err) {
                    report(&mut tell, FromReader::TooBig);
                }
                break;
            }
        }
    }
    report(&mut tell, FromReader::Gone);
}

/// Tells the writer `what`, unless something was told already.
fn report(tell: &mut Option<oneshot::Sender<FromReader>>, what: FromReader) {
    if let Some(tell) = tell.take() {
        let _ = tell.send(what);
    }
}

/// `err` and every error beneath it.
fn causes(err: &axum::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
}

fn is_too_big(err: &axum::Error) -> bool {
    causes(err).any(|e| {
        matches!(
            e.downcast_ref::<tungstenite::Error>(),
            Some(tungstenite::Error::Capacity(_))
        )
    })
}
