//! Sinks: every line this server reads, also published to brokers
//! (`--publish`).
//!
//! A sink is a hub subscriber that is never closed as too slow: its cursor's
//! [`LagPolicy::Replay`] reads every line in order, from the history or from
//! disk, however far behind it falls. [`run`] hands each line to a broker
//! [`Link`] with a bounded window of messages the broker has not yet
//! acknowledged, and moves on only as acknowledgements arrive, in order
//! ([`SinkStatus`]'s `acked`). When the link fails (the broker went away, an
//! acknowledgement timed out) it reconnects with backoff and resumes after
//! the last acknowledged line, so an outage loses nothing the server can
//! still read; lines it can no longer read (evicted from the history and gone
//! from disk) are counted, logged and shown by `/healthz` and `/metrics`,
//! and told in the stream itself where the broker can carry it
//! ([`Link::send_event`]: a `gap` with `reason: "unpublished"`), never
//! skipped silently.
//!
//! File events (rotated, truncated, waiting, …) go the same way, so an edge
//! or a JSON consumer sees them where they happened.
//!
//! Delivery is at least once: a line sent again after a reconnect may arrive
//! twice. Consumers dedupe by `(epoch, seq)`; JetStream does it itself by
//! message id ([`Outgoing::id`], stable across restarts of this server).
//!
//! A broker that keeps what it was sent (JetStream) is also where a
//! restarted server learns what it already published ([`Link::last_published`]):
//! lines of the same file at or before that position are not sent again.
//!
//! - [`nats`]: JetStream, the stream edges serve from (`--from`).
//! - [`mqtt`]: MQTT 3.1.1 at QoS 1, topic `PREFIX/NODE/FILE`, acked by PUBACK.
//! - [`amqp`]: an AMQP 0-9-1 topic exchange (RabbitMQ), key `NODE.FILE`, publisher confirms.
//! - [`acks`]: the acknowledgements still to come on an MQTT or AMQP link.

mod acks;
pub mod amqp;
pub mod mqtt;
pub mod nats;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::{CursorError, Delivery, Hub, LagPolicy, Line, Notice, NoticeKind, Start};

/// Messages sent and not yet acknowledged, at most.
pub const WINDOW: usize = 1024;
/// Reconnect backoff: from this, doubling, up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a link failed, in words for the log and `/healthz`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

impl LinkError {
    pub fn new(what: impl std::fmt::Display) -> LinkError {
        LinkError(what.to_string())
    }
}

/// The broker's acknowledgement of one message, to come.
pub type Ack = Pin<Box<dyn Future<Output = Result<(), LinkError>> + Send>>;
/// What a [`Link`] or [`Target`] call returns.
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LinkError>> + Send + 'a>>;

/// One line to publish, and what names it.
pub struct Outgoing<'a> {
    pub line: &'a Line,
    /// The file's public name.
    pub file: &'a str,
    /// The epoch of this server's `seq` numbers.
    pub epoch: &'a str,
    /// `NODE:ORIGIN:OFFSET`: the same for the same line when it is read
    /// again, also by a restarted server, so a broker can drop the copy.
    pub id: &'a str,
}

/// One file event to publish: a notice, or lines that could not be.
pub struct OutgoingEvent<'a> {
    pub kind: NoticeKind,
    /// The file's public name.
    pub file: &'a str,
    /// The epoch of this server's `seq` numbers.
    pub epoch: &'a str,
    /// The `seq` of the last line before it.
    pub after_seq: u64,
    /// Names it for a broker that drops copies (as [`Outgoing::id`]).
    pub id: &'a str,
    /// Where the file's lines published so far end, if known: a broker that
    /// is also the offset store keeps it with the event.
    pub position: Option<Published>,
}

/// Where the broker's copy of one file ends: the last line it holds from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// That line's [`Line::origin`] (which file instance).
    pub origin: u64,
    /// Its offset in that file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// One connection to a broker, as [`run`] drives it.
pub trait Link: Send {
    /// Sends one line; resolves once it is on its way (it may wait for room
    /// in the client) with the future of the broker's acknowledgement.
    fn send<'a>(&'a mut self, out: Outgoing<'a>) -> LinkFuture<'a, Ack>;

    /// Sends a file event where this link's consumers can see it; resolves
    /// with the future of its acknowledgement, or `None` if the link carries
    /// lines only (text payloads on MQTT and AMQP).
    fn send_event<'a>(&'a mut self, _event: OutgoingEvent<'a>) -> LinkFuture<'a, Option<Ack>> {
        Box::pin(async { Ok(None) })
    }

    /// The last line the broker holds from the file named `file`, if it keeps
    /// such a thing (JetStream does; MQTT and AMQP do not).
    fn last_published<'a>(&'a mut self, _file: &'a str) -> LinkFuture<'a, Option<Published>> {
        Box::pin(async { Ok(None) })
    }

    /// Resolves if the link fails on its own (the connection was lost while
    /// nothing was waiting for an acknowledgement), so that [`run`] tells it
    /// and reconnects without waiting for the next line; never, for a link
    /// whose client reconnects by itself (JetStream's).
    fn failed(&self) -> Pin<Box<dyn Future<Output = LinkError> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

/// A broker to publish to: connects links.
pub trait Target: Send + Sync {
    /// `nats`, `mqtt`, `amqp`.
    fn kind(&self) -> &'static str;
    /// Where, for logs and `/healthz` (no password).
    fn describe(&self) -> String;
    /// A link ready to send (the stream, exchange… made sure of).
    fn connect(&self) -> LinkFuture<'_, Box<dyn Link>>;
}

/// What one publisher is doing, for `/healthz` and `/metrics`. Written by
/// [`run`], read by the transports.
#[derive(Debug, Default)]
pub struct SinkStatus {
    pub kind: &'static str,
    pub target: String,
    connected: AtomicBool,
    /// The `seq` of the last line the broker acknowledged, in order.
    acked: AtomicU64,
    /// Lines acknowledged (or found already published) since start.
    published: AtomicU64,
    /// Lines that could not be published: no longer readable when their
    /// turn came (evicted and gone from disk).
    lost: AtomicU64,
    /// Bytes of a file written while this server was not publishing (down)
    /// and no longer held when it came back: their lines were not counted.
    lost_bytes: AtomicU64,
    /// Connections lost or refused since start.
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// `/metrics`' copy of `acked`.
    acked_gauge: std::sync::OnceLock<prometheus_client::metrics::gauge::Gauge>,
}

/// A snapshot of a [`SinkStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkReport {
    pub kind: &'static str,
    pub target: String,
    pub connected: bool,
    pub acked_seq: u64,
    pub published: u64,
    pub lost: u64,
    pub lost_bytes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl SinkStatus {
    pub fn new(kind: &'static str, target: String) -> SinkStatus {
        SinkStatus {
            kind,
            target,
            ..SinkStatus::default()
        }
    }

    pub fn report(&self) -> SinkReport {
        SinkReport {
            kind: self.kind,
            target: self.target.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            acked_seq: self.acked.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            lost_bytes: self.lost_bytes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn set_acked(&self, seq: u64) {
        self.acked.store(seq, Ordering::Relaxed);
        if let Some(g) = self.acked_gauge.get() {
            g.set(i64::try_from(seq).unwrap_or(i64::MAX));
        }
    }

    fn set_error(&self, err: &LinkError) {
        self.connected.store(false, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.0.clone());
    }
}

/// Why a session with a link ended.
enum Stop {
    /// Shutting down, or the hub is gone.
    Done,
    /// The link failed: reconnect and resume after the last acknowledged line.
    Link(LinkError),
}

/// What [`run`] remembers across sessions.
struct Progress {
    /// The `seq` of the last line done with (acknowledged, already there, or lost).
    acked: u64,
    /// The `seq` of the last line read from the hub.
    read: u64,
    /// The id after the last notice read (a new cursor from `read` hands
    /// out the notice after that line again).
    notices_read: u64,
    /// Read from the hub, not yet sent.
    pending: VecDeque<Pending>,
    /// Sent, not yet acknowledged, in order.
    inflight: VecDeque<InFlight>,
    /// Files whose broker position was asked for.
    looked_up: HashSet<u32>,
    /// Broker positions not yet passed: lines of that file instance at or
    /// before it are already published.
    already: HashMap<u32, Published>,
    /// This server's name, for message ids.
    node: String,
    /// The file of the last line sent, to tell a gap on.
    last_file: Option<u32>,
    /// Where each file's lines sent so far (or found published) end.
    position: HashMap<u32, Published>,
}

/// One message sent and not yet acknowledged.
struct InFlight {
    /// Done with up to this `seq` once acknowledged.
    seq: u64,
    ack: Ack,
    /// A line, counted as published once acknowledged.
    counted: bool,
    /// What to send again if the link fails before the acknowledgement.
    again: Option<Pending>,
}

/// What the hub handed over and is still to be sent.
enum Pending {
    Line(Line),
    Notice(Arc<Notice>),
    /// Lines `from..=to` that can no longer be read.
    Gap {
        from: u64,
        to: u64,
    },
}

/// A ready acknowledgement: nothing to wait for.
fn no_ack() -> Ack {
    Box::pin(async { Ok(()) })
}

/// Publishes every line of `hub` to `target` until `cancel`, reconnecting as
/// needed; reports in `status`.
pub async fn run(
    hub: Arc<Hub>,
    target: Arc<dyn Target>,
    node: String,
    status: Arc<SinkStatus>,
    cancel: CancellationToken,
) {
    let mut progress = Progress {
        acked: 0,
        read: 0,
        notices_read: 0,
        pending: VecDeque::new(),
        inflight: VecDeque::new(),
        looked_up: HashSet::new(),
        already: HashMap::new(),
        node,
        last_file: None,
        position: HashMap::new(),
    };
    let (connected_gauge, acked_gauge) = hub.metrics.publisher_gauges(status.kind, &status.target);
    let _ = status.acked_gauge.set(acked_gauge);
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            link = target.connect() => link,
        };
        let stop = match connected {
            Ok(mut link) => {
                tracing::info!(target = %status.target, "publishing to {} from seq {}", status.target, progress.acked + 1);
                status.connected.store(true, Ordering::Relaxed);
                connected_gauge.set(1);
                backoff = BACKOFF_MIN;
                session(&hub, link.as_mut(), &mut progress, &status, &cancel).await
            }
            Err(err) => Stop::Link(err),
        };
        match stop {
            Stop::Done => return,
            Stop::Link(err) => {
                let first = status.connected.load(Ordering::Relaxed)
                    || status.failures.load(Ordering::Relaxed) == 0;
                status.set_error(&err);
                connected_gauge.set(0);
                hub.metrics.publish_failed(status.kind);
                if first {
                    tracing::warn!(target = %status.target, "publishing to {}: {err}; retrying, and catching up from seq {} when it is back", status.target, progress.acked + 1);
                } else {
                    tracing::debug!(target = %status.target, "still cannot publish to {}: {err}", status.target);
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Asks the broker, once per file, where its copy of `file` ends.
async fn look_up(
    link: &mut dyn Link,
    progress: &mut Progress,
    file: u32,
    name: &str,
) -> Result<(), LinkError> {
    if !progress.looked_up.insert(file) {
        return Ok(());
    }
    match link.last_published(name).await {
        Ok(Some(p)) => {
            progress.already.insert(file, p);
            progress.position.entry(file).or_insert(p);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(err) => {
            progress.looked_up.remove(&file);
            Err(err)
        }
    }
}

/// One connected stretch: sends again what was in flight when the last link
/// failed (the same ids, so a broker that got it drops the copy), then what
/// was read and not yet sent, then reads the hub on, keeping up to [`WINDOW`]
/// messages in flight. Lines are read from the hub once: a line read before
/// an outage is held here, not read again after it (by then it may be gone).
async fn session(
    hub: &Arc<Hub>,
    link: &mut dyn Link,
    progress: &mut Progress,
    status: &SinkStatus,
    cancel: &CancellationToken,
) -> Stop {
    let mut again: VecDeque<Pending> = progress
        .inflight
        .drain(..)
        .filter_map(|f| f.again)
        .collect();
    again.append(&mut progress.pending);
    progress.pending = again;
    let mut cursor = hub.subscribe(
        Start::Since {
            seq: progress.read,
            epoch: None,
        },
        None,
    );
    cursor.set_lag_policy(LagPolicy::Replay);
    let epoch = hub.epoch().to_string();
    loop {
        // Fill the window from what was read.
        while progress.inflight.len() < WINDOW {
            let Some(next) = progress.pending.pop_front() else {
                break;
            };
            if let Err(err) = send_one(hub, link, progress, status, &epoch, next).await {
                return Stop::Link(err);
            }
        }
        let want_more = progress.pending.is_empty() && progress.inflight.len() < WINDOW;
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Stop::Done,
            acked = async {
                match progress.inflight.front_mut() {
                    Some(f) => (&mut f.ack).await,
                    None => std::future::pending().await,
                }
            }, if !progress.inflight.is_empty() => {
                if let Err(err) = acked {
                    return Stop::Link(err);
                }
                if let Some(f) = progress.inflight.pop_front() {
                    progress.acked = progress.acked.max(f.seq);
                    status.set_acked(progress.acked);
                    if f.counted {
                        status.published.fetch_add(1, Ordering::Relaxed);
                        hub.metrics.lines_published(status.kind, 1);
                    }
                }
            }
            // After the acknowledgements, so those already in are counted.
            err = link.failed() => return Stop::Link(err),
            next = cursor.next(), if want_more => match next {
                Ok(Delivery::Live { .. } | Delivery::Replay(_)) => {
                    // Borrowing `next` again: both arms hold lines.
                    if let Ok(d) = &next {
                        if let Some(last) = d.lines().last() {
                            progress.read = last.seq;
                        }
                        progress.pending.extend(d.lines().iter().cloned().map(Pending::Line));
                    }
                }
                Ok(Delivery::Gap(gap)) => {
                    let n = gap.to.saturating_sub(gap.from) + 1;
                    status.lost.fetch_add(n, Ordering::Relaxed);
                    hub.metrics.lines_not_published(status.kind, n);
                    tracing::warn!(target = %status.target, "lines {}..={} can no longer be read (evicted from the history, gone from disk): not published to {}", gap.from, gap.to, status.target);
                    progress.read = progress.read.max(gap.to);
                    progress.pending.push_back(Pending::Gap { from: gap.from, to: gap.to });
                }
                Ok(Delivery::Notice(notice)) => {
                    if notice.id >= progress.notices_read {
                        progress.notices_read = notice.id + 1;
                        progress.pending.push_back(Pending::Notice(notice));
                    }
                }
                Err(CursorError::Closed) => return Stop::Done,
                Err(CursorError::TooSlow) => {
                    return Stop::Link(LinkError::new("fell behind the hub"));
                }
            },
        }
    }
}

/// Sends one thing read from the hub (a line, a file event, a gap) and puts
/// its acknowledgement in flight.
async fn send_one(
    hub: &Hub,
    link: &mut dyn Link,
    progress: &mut Progress,
    status: &SinkStatus,
    epoch: &str,
    next: Pending,
) -> Result<(), LinkError> {
    let line = match next {
        Pending::Line(line) => line,
        Pending::Notice(notice) => {
            let name = hub.file_name(notice.file);
            look_up(link, progress, notice.file, &name).await?;
            let id = format!("{}:{epoch}:event:{}", progress.node, notice.id);
            let event = OutgoingEvent {
                kind: notice.kind,
                file: &name,
                epoch,
                after_seq: notice.after_seq,
                id: &id,
                position: progress.position.get(&notice.file).copied(),
            };
            if let Some(ack) = link.send_event(event).await? {
                progress.inflight.push_back(InFlight {
                    seq: notice.after_seq,
                    ack,
                    counted: false,
                    again: Some(Pending::Notice(notice)),
                });
            }
            return Ok(());
        }
        Pending::Gap { from, to } => {
            // Told on the file of the line that follows it (else of the line
            // before): the files of its lines are no longer known.
            let file = progress
                .pending
                .iter()
                .find_map(|p| match p {
                    Pending::Line(l) => Some(l.file),
                    _ => None,
                })
                .or(progress.last_file)
                .unwrap_or(0);
            let name = hub.file_name(file);
            look_up(link, progress, file, &name).await?;
            let id = format!("{}:{epoch}:gap:{from}", progress.node);
            let event = OutgoingEvent {
                kind: NoticeKind::Unpublished {
                    lines: Some(to - from + 1),
                    bytes: None,
                },
                file: &name,
                epoch,
                after_seq: from.saturating_sub(1),
                id: &id,
                position: progress.position.get(&file).copied(),
            };
            let ack = link.send_event(event).await?.unwrap_or_else(no_ack);
            progress.inflight.push_back(InFlight {
                seq: to,
                ack,
                counted: false,
                again: Some(Pending::Gap { from, to }),
            });
            return Ok(());
        }
    };
    let name = hub.file_name(line.file);
    look_up(link, progress, line.file, &name).await?;
    if let Some(p) = progress.already.get(&line.file).copied() {
        if line.origin == p.origin && line.offset <= p.offset {
            // Published before this server (re)started.
            progress.inflight.push_back(InFlight {
                seq: line.seq,
                ack: no_ack(),
                counted: false,
                again: None,
            });
            return Ok(());
        }
        progress.already.remove(&line.file);
        let end = p.offset + p.len + 1;
        if line.origin != p.origin {
            tracing::info!(file = %name, "{name}: the broker's last line came from an earlier file (rotated or replaced while this server was not publishing); publishing from this file's first line held");
        } else if line.offset > end {
            let bytes = line.offset - end;
            tracing::warn!(file = %name, "{name}: bytes {end}..{} were written while this server was not publishing and are no longer held: not published", line.offset);
            status.lost_bytes.fetch_add(bytes, Ordering::Relaxed);
            // The same id when a restart finds the same hole again.
            let id = format!("{}:{:016x}:{}:gap", progress.node, line.origin, line.offset);
            let event = OutgoingEvent {
                kind: NoticeKind::Unpublished {
                    lines: None,
                    bytes: Some(bytes),
                },
                file: &name,
                epoch,
                after_seq: line.seq.saturating_sub(1),
                id: &id,
                // The hole's end: a restart then neither skips this line
                // nor finds the hole again.
                position: Some(Published {
                    origin: line.origin,
                    offset: line.offset.saturating_sub(1),
                    len: 0,
                }),
            };
            if let Some(ack) = link.send_event(event).await? {
                progress.inflight.push_back(InFlight {
                    seq: line.seq.saturating_sub(1),
                    ack,
                    counted: false,
                    again: None,
                });
            }
        }
    }
    let id = format!("{}:{:016x}:{}", progress.node, line.origin, line.offset);
    let ack = link
        .send(Outgoing {
            line: &line,
            file: &name,
            epoch,
            id: &id,
        })
        .await?;
    progress.last_file = Some(line.file);
    progress.position.insert(
        line.file,
        Published {
            origin: line.origin,
            offset: line.offset,
            len: line.text.as_str().len() as u64,
        },
    );
    progress.inflight.push_back(InFlight {
        seq: line.seq,
        ack,
        counted: true,
        again: Some(Pending::Line(line)),
    });
    Ok(())
}
