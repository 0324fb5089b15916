//! The one delivery loop: a cursor's lines and events, encoded, into a sink.
//!
//! Every transport (WebSocket, SSE, and later HTTP/2-3 streams and broker
//! publishers) is a thin [`Sink`] adapter around [`pump`], which owns what
//! they would otherwise each get slightly wrong:
//!
//! - **encoding**, once per batch per shared encoding ([`Batch::encoded`]),
//!   the per-line text frame being the line's own buffer;
//! - **`grep=`**: only lines the cursor's filter matches are sent;
//! - **batching**: every delivery that is ready is fed, up to
//!   [`PumpOptions::flush_bytes`], then one flush;
//! - **keep-alive**: the sink's own (a WebSocket ping, an SSE comment) every
//!   period;
//! - **counting**: lines and bytes sent, gaps;
//! - **the slow-client rules**: the cursor's lag rule (more than
//!   `--client-queue` behind for longer than the grace, see
//!   [`crate::hub::Cursor`]), and *no progress*: a feed or a flush that waits
//!   longer than `--send-timeout` means the peer accepts nothing. The
//!   deadline lives here, not in a wrapper around one TCP socket, so it holds
//!   for any sink — an HTTP/2 stream under flow control or a QUIC stream has
//!   no socket of its own. It costs nothing while the sink has room: the
//!   timer is armed only when a feed or flush has to wait;
//! - **shutdown**: the cancellation token ends the loop at once.
//!
//! What happens *after* the loop — a Close frame, an `event: closed`, and the
//! grace for a stuck client to read what was in flight — is the transport's,
//! since each says goodbye in its own way; [`End`] tells it why.
//!
//! [`Batch::encoded`]: crate::hub::Batch::encoded

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_util::sync::CancellationToken;

use crate::encode::{self, Encoding};
use crate::hub::{Cursor, CursorError, Delivery, Gap, GapReason, Hub, Line, Notice};
use crate::lines::Text;
use crate::metrics::Metrics;

/// Where a stream's frames go: one client's connection, or a broker.
///
/// Each method may wait for room; the pump bounds that wait. An error means
/// the peer is gone (the pump ends with [`End::Peer`]).
pub trait Sink: Send {
    /// Queues one frame now if there is room, without waiting; hands it
    /// back if there is not (then the pump awaits [`feed`](Self::feed)).
    /// The fast path of a burst: no future, no timer per frame.
    fn try_feed(&mut self, frame: Text) -> Result<Option<Text>, SinkGone> {
        Ok(Some(frame))
    }
    /// Queues one frame, without pushing it out yet.
    fn feed(&mut self, frame: Text) -> impl Future<Output = Result<(), SinkGone>> + Send;
    /// Pushes what was fed towards the peer.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkGone>> + Send;
    /// Queues what keeps an idle stream alive (a ping, a comment).
    fn keep_alive(&mut self) -> impl Future<Output = Result<(), SinkGone>> + Send;
    /// Resolves when the peer ended the stream from its side, with why.
    /// Polled once per loop turn; it must be cheap to create and cancel.
    fn peer_end(&mut self) -> impl Future<Output = PeerEnd> + Send;
}

/// A write failed: the peer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkGone;

/// How a peer ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEnd {
    /// It closed, or vanished.
    Gone,
    /// It stayed silent too long (no answer to pings).
    Silent,
    /// It sent a message larger than it may.
    TooBig,
}

/// Why [`pump`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server is shutting down.
    Shutdown,
    /// The client stayed more than `--client-queue` behind for longer than
    /// the grace (or, in text, fell behind the history: a text stream cannot
    /// carry a gap).
    Behind,
    /// The sink accepted nothing for `--send-timeout`.
    Stuck,
    /// The peer ended the stream, or a write to it failed.
    Peer(PeerEnd),
    /// The source side ended the stream.
    SourceClosed,
}

impl End {
    /// Whether the client is closed for being too slow (code 1013).
    pub fn too_slow(self) -> bool {
        matches!(self, End::Behind | End::Stuck)
    }

    /// Why the stream ended, in a word or two, for the server's log.
    pub fn reason(self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::Behind => "too slow (behind)",
            End::Stuck => "too slow (socket stuck)",
            End::Peer(PeerEnd::Gone) => "closed by client",
            End::Peer(PeerEnd::Silent) => "ping timeout",
            End::Peer(PeerEnd::TooBig) => "message too big",
            End::SourceClosed => "source closed",
        }
    }
}

/// What one stream delivered: lines (and their bytes) fed to its sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub lines: u64,
    pub bytes: u64,
}

/// How one stream is pumped.
#[derive(Debug, Clone)]
pub struct PumpOptions {
    pub encoding: Encoding,
    /// The longest a feed or a flush may wait for the sink to take it.
    pub send_timeout: Duration,
    /// How often the sink's keep-alive is sent; `None` for never.
    pub keep_alive: Option<Duration>,
    /// Bytes of lines fed before a flush, at most.
    pub flush_bytes: usize,
}

/// Delivers `cursor`'s stream into `sink` until something ends it; see the
/// module docs for everything it takes care of.
pub async fn pump<S: Sink>(
    cursor: &mut Cursor,
    sink: &mut S,
    options: &PumpOptions,
    cancel: &CancellationToken,
    metrics: &Metrics,
) -> (End, Delivered) {
    let mut out = Out {
        sink,
        options,
        deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
        started: false,
        delivered: Delivered::default(),
    };
    let end = match run(cursor, &mut out, cancel, metrics).await {
        Ok(never) => match never {},
        Err(end) => end,
    };
    (end, out.delivered)
}

/// The sink with its deadline, and whether any line or event went out.
struct Out<'a, S> {
    sink: &'a mut S,
    options: &'a PumpOptions,
    /// Re-armed whenever a feed or flush has to wait.
    deadline: Pin<Box<Sleep>>,
    started: bool,
    delivered: Delivered,
}

enum Never {}

async fn run<S: Sink>(
    cursor: &mut Cursor,
    out: &mut Out<'_, S>,
    cancel: &CancellationToken,
    metrics: &Metrics,
) -> Result<Never, End> {
    let encoding = out.options.encoding;
    if let Some(hello) = hello(encoding, cursor) {
        out.feed(hello).await?;
        out.flush().await?;
    }
    let mut keep_alive = out.options.keep_alive.map(|period| {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    // Created once: a fresh `cancelled()` per turn registers and drops a
    // waiter each time.
    let cancelled = cancel.cancelled();
    let mut cancelled = pin!(cancelled);
    loop {
        let first = tokio::select! {
            biased;
            () = &mut cancelled => return Err(End::Shutdown),
            end = out.sink.peer_end() => return Err(End::Peer(end)),
            () = tick(&mut keep_alive) => {
                out.bounded_keep_alive().await?;
                out.flush().await?;
                continue;
            }
            delivery = cursor.next() => delivery,
        };
        let mut fed = 0usize;
        let mut next = Some(first);
        while let Some(delivery) = next.take() {
            match delivery {
                Ok(delivery) => fed += out.deliver(cursor, &delivery, metrics).await?,
                Err(CursorError::TooSlow) => return Err(End::Behind),
                Err(CursorError::Closed) => return Err(End::SourceClosed),
            }
            if fed < out.options.flush_bytes {
                next = cursor.try_next().transpose();
            }
        }
        out.flush().await?;
    }
}

/// Resolves at the interval's next tick; never without one.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl<S: Sink> Out<'_, S> {
    /// Feeds one delivery's frames; returns the bytes of line text fed (at
    /// least 1, so that notices count towards a flush too).
    async fn deliver(
        &mut self,
        cursor: &Cursor,
        delivery: &Delivery,
        metrics: &Metrics,
    ) -> Result<usize, End> {
        let encoding = self.options.encoding;
        let hub = cursor.hub();
        let mut lines = 0u64;
        let mut bytes = 0usize;
        match delivery {
            Delivery::Notice(notice) => {
                if !cursor.wants_file(notice.file) {
                    return Ok(1);
                }
                if let Some(frame) = notice_frame(encoding, hub, notice) {
                    self.feed(frame).await?;
                }
            }
            Delivery::Gap(gap) => {
                metrics.gap_sent();
                match gap_frame(encoding, gap) {
                    Some(frame) => self.feed(frame).await?,
                    // A text stream cannot be told about a gap in it: close
                    // it as too slow, so the client knows to resume. (A gap
                    // before anything was sent is where it asked to start.)
                    None if self.started && gap.reason == GapReason::Evicted => {
                        return Err(End::Behind);
                    }
                    None => {}
                }
            }
            Delivery::Live { batch, start } => {
                metrics.delivered_after(batch.published_at.elapsed());
                // Encoded once per batch for every client of this encoding.
                let shared = batch.encoded(encoding, |line| line_frame(encoding, hub, line));
                for (i, line) in batch.lines.iter().enumerate().skip(*start) {
                    if !cursor.matches(line) {
                        continue;
                    }
                    let frame = match shared {
                        Some(frames) => frames[i].clone(),
                        None => line.text.clone(),
                    };
                    lines += 1;
                    bytes += line.text.len();
                    self.feed(frame).await?;
                }
            }
            Delivery::Replay(replayed) => {
                for line in replayed {
                    if !cursor.matches(line) {
                        continue;
                    }
                    lines += 1;
                    bytes += line.text.len();
                    self.feed(line_frame(encoding, hub, line)).await?;
                }
            }
        }
        self.started = true;
        if lines > 0 {
            metrics.lines_sent(lines, bytes as u64);
            self.delivered.lines += lines;
            self.delivered.bytes += bytes as u64;
        }
        Ok(bytes.max(1))
    }

    async fn feed(&mut self, frame: Text) -> Result<(), End> {
        let frame = match self.sink.try_feed(frame) {
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => frame,
            Err(SinkGone) => return Err(End::Peer(PeerEnd::Gone)),
        };
        let limit = self.options.send_timeout;
        bounded(self.sink.feed(frame), self.deadline.as_mut(), limit).await
    }

    async fn flush(&mut self) -> Result<(), End> {
        let limit = self.options.send_timeout;
        bounded(self.sink.flush(), self.deadline.as_mut(), limit).await
    }

    async fn bounded_keep_alive(&mut self) -> Result<(), End> {
        let limit = self.options.send_timeout;
        bounded(self.sink.keep_alive(), self.deadline.as_mut(), limit).await
    }
}

/// Runs `write`; if it has to wait, for at most `limit` from then
/// ([`End::Stuck`] after that). The timer is touched only when it waits.
async fn bounded(
    write: impl Future<Output = Result<(), SinkGone>>,
    mut deadline: Pin<&mut Sleep>,
    limit: Duration,
) -> Result<(), End> {
    let mut write = pin!(write);
    let mut armed = false;
    poll_fn(|cx| {
        if let Poll::Ready(result) = write.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(|SinkGone| End::Peer(PeerEnd::Gone)));
        }
        if !armed {
            deadline.as_mut().reset(Instant::now() + limit);
            armed = true;
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(End::Stuck)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// What a stream starts with: JSON's `hello`, SSE's `retry:`.
fn hello(encoding: Encoding, cursor: &Cursor) -> Option<Text> {
    match encoding {
        Encoding::Text | Encoding::PrefixedText => None,
        Encoding::Json => {
            Some(encode::json_hello(cursor.hub().epoch(), cursor.subscribed_at()).into())
        }
        Encoding::Sse | Encoding::PrefixedSse => Some(encode::sse_retry(1000).into()),
    }
}

/// One line's frame.
fn line_frame(encoding: Encoding, hub: &Hub, line: &Line) -> Text {
    match encoding {
        Encoding::Text => line.text.clone(),
        Encoding::PrefixedText => encode::prefixed(&hub.file_name(line.file), &line.text).into(),
        Encoding::Json => {
            encode::json_line(line.seq, line.offset, &hub.file_name(line.file), &line.text).into()
        }
        Encoding::Sse => encode::sse_line(hub.epoch(), line.seq, &line.text).into(),
        Encoding::PrefixedSse => encode::sse_line(
            hub.epoch(),
            line.seq,
            &encode::prefixed(&hub.file_name(line.file), &line.text),
        )
        .into(),
    }
}

/// A file event's frame (none in text).
fn notice_frame(encoding: Encoding, hub: &Hub, notice: &Notice) -> Option<Text> {
    let json = || {
        notice
            .kind
            .json(&hub.file_name(notice.file), notice.after_seq)
    };
    match encoding {
        Encoding::Text | Encoding::PrefixedText => None,
        Encoding::Json => Some(json().into()),
        Encoding::Sse | Encoding::PrefixedSse => {
            Some(encode::sse_event(notice.kind.as_str(), &json()).into())
        }
    }
}

/// A gap's frame (none in text).
fn gap_frame(encoding: Encoding, gap: &Gap) -> Option<Text> {
    let reason = match gap.reason {
        GapReason::Evicted => "evicted",
        GapReason::Epoch => "epoch",
    };
    let json = || encode::json_gap(gap.from, gap.to, reason);
    match encoding {
        Encoding::Text | Encoding::PrefixedText => None,
        Encoding::Json => Some(json().into()),
        Encoding::Sse | Encoding::PrefixedSse => Some(encode::sse_event("gap", &json()).into()),
    }
}
