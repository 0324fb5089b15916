//! `/ws`: the WebSocket stream.
//!
//! The handler runs every check while it can still answer with an HTTP
//! status (Origin, token, client limit, parameters) and subscribes the client
//! *before* returning the 101, so a line appended after the client saw its
//! handshake complete is a live line for it.
//!
//! After the upgrade the socket is split: a reader task reads and ignores
//! what the client sends (bounded: 4 KiB messages, or close 1009), answers
//! pings and notices a silent peer; the writer — this task — sends lines.
//! The writer feeds every line that is ready and flushes once, so a burst
//! costs one `write(2)` per ~64 KiB instead of one per line, and bounds each
//! write with `--send-timeout`: a client that stops reading is closed with
//! 1013 instead of pinning memory or a task.
//!
//! Closing keeps the connection for a grace ([`CLOSE_CAP`]) with nothing
//! more queued: what the socket was given but the client has not taken
//! (the frames a timed-out write left in tungstenite's buffer included),
//! then the Close frame, then the client's answer. So a stuck client that
//! reads again within the grace (a laptop waking up) still gets what was in
//! flight and then its 1013, and knows to resume with `since=`. It counts
//! among `--max-clients` until the connection ends.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};

use super::{Admitted, CLOSE_CAP, Format, RawParams, admit, frame};
use super::{AppState, ClientSlot};
use crate::hub::{Cursor, CursorError, Delivery, GapReason};
use crate::metrics::Metrics;
use crate::server::{SHUTDOWN_FLUSH, SendLimit};

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

pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    limit: Option<Extension<SendLimit>>,
    Query(raw): Query<RawParams>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Admitted {
        access,
        format,
        cursor,
        slot,
    } = match admit(&app, peer, &raw, &uri, &headers, None) {
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
            tracker.track_future(client(socket, cursor, format, app, slot, limit))
        })
}

/// Why a client's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    TooSlow,
    TooBig,
    /// The peer closed, vanished, or stayed silent past two ping periods.
    PeerGone,
    /// A write timed out: the socket accepted nothing for `--send-timeout`.
    WriteFailed,
}

/// What the reader task tells the writer.
enum FromReader {
    TooBig,
    Gone,
}

async fn client(
    socket: WebSocket,
    mut cursor: Cursor,
    format: Format,
    app: AppState,
    slot: ClientSlot,
    limit: Option<SendLimit>,
) {
    let (mut sink, stream) = socket.split();
    // One message at most, so a oneshot: polling it in every loop turn is one
    // atomic load (an mpsc receiver showed up in profiles).
    let (tell, mut told) = oneshot::channel();
    let mut reader = tokio::spawn(read_client(stream, tell, app.config.ping_interval * 2));
    let end = write_lines(&mut sink, &mut cursor, format, &app, &mut told).await;
    let close = match end {
        End::Shutdown => Some((AWAY, "server shutting down")),
        End::TooSlow => Some((TRY_AGAIN_LATER, "client too slow")),
        End::TooBig => Some((TOO_BIG, "message too big")),
        End::WriteFailed => Some((TRY_AGAIN_LATER, "client too slow")),
        End::PeerGone => None,
    };
    if matches!(end, End::TooSlow | End::WriteFailed) {
        Metrics::add(&app.hub.metrics.slow_client_drops, 1);
        tracing::info!(peer = %slot.peer, lag_bytes = cursor.lag_bytes(), "closing a client that is too slow");
    }
    // Nothing more is queued for this client.
    drop(cursor);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        if end == End::Shutdown {
            // The process exits within 2 s: a short flush, a short wait.
            let by = Instant::now() + SHUTDOWN_FLUSH;
            if send_close(&mut sink, frame, by, &slot).await {
                let _ = timeout(SHUTDOWN_ANSWER, &mut reader).await;
            }
        } else {
            // The frame queues behind what the socket already holds, however
            // long it has accepted nothing: a write that timed out left its
            // bytes buffered, and from now on a write waits up to the grace
            // instead of `--send-timeout`.
            let deadline = Instant::now() + CLOSE_CAP;
            if let Some(limit) = &limit {
                limit.wait_until(deadline);
            }
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
                    report(&mut tell, FromReader::Gone);
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

async fn write_lines(
    sink: &mut SplitSink<WebSocket, Message>,
    cursor: &mut Cursor,
    format: Format,
    app: &AppState,
    told: &mut oneshot::Receiver<FromReader>,
) -> End {
    let json = format == Format::Json;
    // Every write below is bounded by the connection's `TimeoutIo`: a socket
    // that accepts nothing for `--send-timeout` fails the write (`TimedOut`),
    // whatever the size of the batch, so a slow reader that makes progress is
    // judged by its lag, and only a stuck one by the timeout.
    if json {
        let hello = frame::hello_json(cursor.hub().epoch(), cursor.subscribed_at());
        if let Err(err) = sink.send(Message::Text(hello.into())).await {
            return write_failed(&err);
        }
    }
    let period = app.config.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut started = false;
    // Created once: a fresh `cancelled()` per turn registers and drops a
    // waiter each time.
    let cancelled = app.cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut cancelled => return End::Shutdown,
            from_reader = &mut *told => {
                return match from_reader {
                    Ok(FromReader::TooBig) => End::TooBig,
                    Ok(FromReader::Gone) | Err(_) => End::PeerGone,
                };
            }
            _ = ping.tick() => {
                match sink.send(Message::Ping(Default::default())).await {
                    Ok(()) => continue,
                    Err(err) => return write_failed(&err),
                }
            }
            delivery = cursor.next() => delivery,
        };
        let mut fed = 0usize;
        let mut next = Some(first);
        while let Some(delivery) = next.take() {
            match delivery {
                Ok(delivery) => {
                    match feed(sink, cursor, &delivery, json, &mut started, app).await {
                        Ok(bytes) => fed += bytes,
                        Err(end) => return end,
                    }
                }
                Err(CursorError::TooSlow) => return End::TooSlow,
                Err(CursorError::Closed) => return End::Shutdown,
            }
            if fed < FLUSH_BYTES {
                next = cursor.try_next().transpose();
            }
        }
        if let Err(err) = sink.flush().await {
            return write_failed(&err);
        }
    }
}

/// A failed write: too slow when the socket accepted nothing for the send
/// timeout (`TimeoutIo`'s `TimedOut`), otherwise the peer went away.
fn write_failed(err: &axum::Error) -> End {
    let timed_out = causes(err).any(|e| {
        let io = match e.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Io(io)) => Some(io),
            _ => e.downcast_ref::<std::io::Error>(),
        };
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if timed_out {
        End::WriteFailed
    } else {
        End::PeerGone
    }
}

/// Feeds one delivery into the sink (no flush); returns the bytes fed.
async fn feed(
    sink: &mut SplitSink<WebSocket, Message>,
    cursor: &Cursor,
    delivery: &Delivery,
    json: bool,
    started: &mut bool,
    app: &AppState,
) -> Result<usize, End> {
    let hub = cursor.hub();
    let mut bytes = 0usize;
    let mut lines = 0u64;
    match delivery {
        Delivery::Notice(notice) if json => {
            sink.feed(Message::Text(frame::notice_json(hub, notice).into()))
                .await
                .map_err(|err| write_failed(&err))?;
        }
        Delivery::Notice(_) => {}
        Delivery::Gap(gap) => {
            Metrics::add(&hub.metrics.gaps, 1);
            if json {
                sink.feed(Message::Text(frame::gap_json(gap).into()))
                    .await
                    .map_err(|err| write_failed(&err))?;
            } else if *started && gap.reason == GapReason::Evicted {
                // A text client cannot be told about a gap in its stream:
                // close it as too slow, so it knows to resume.
                return Err(End::TooSlow);
            }
        }
        Delivery::Live { batch, start } if json => {
            // Encoded once per batch for all JSON clients (the viewer's
            // format), then shared like the text itself.
            let frames = batch.encoded(|line| frame::line_json(hub, line).into());
            for (line, encoded) in batch.lines.iter().zip(frames).skip(*start) {
                if !cursor.matches(line) {
                    continue;
                }
                bytes += line.text.len();
                lines += 1;
                sink.feed(Message::Text(encoded.clone()))
                    .await
                    .map_err(|err| write_failed(&err))?;
            }
        }
        Delivery::Live { .. } | Delivery::Replay(_) => {
            for line in delivery.lines() {
                if !cursor.matches(line) {
                    continue;
                }
                bytes += line.text.len();
                lines += 1;
                sink.feed(frame::line_message(hub, line, json))
                    .await
                    .map_err(|err| write_failed(&err))?;
            }
        }
    }
    *started = true;
    Metrics::add(&app.hub.metrics.lines_sent, lines);
    Metrics::add(&app.hub.metrics.bytes_sent, bytes as u64);
    Ok(bytes.max(1))
}
