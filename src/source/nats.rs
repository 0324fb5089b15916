//! `--from nats://HOST:PORT`: an edge, whose lines come from a JetStream
//! stream that sources (`--publish nats://`) fill, instead of from files.
//!
//! - **Numbering**: a line's `seq` is its **stream sequence** and the epoch
//!   names the stream's incarnation ([`epoch_of`]: its name and creation
//!   time), so every edge numbers every line the same and a client resumes
//!   on any edge with `since=SEQ&epoch=E`. The hub keeps these numbers
//!   (`Numbering::Preserve`): a number that skips (another subject's line,
//!   filtered out) is normal.
//! - **One live consumer** per edge (an ordered, ephemeral consumer on
//!   `--subject`) feeds the hub, whatever the number of clients; async-nats
//!   recreates it after a server or leader loss, and the hub drops anything at
//!   or below the last line it kept (a recreated consumer may start over).
//! - **Copies**: a line the stream stored twice (a source sent again what was in
//!   flight when its node died) is dropped, live and in a replay, once the
//!   stream's leader confirms it ([`Copies`]); a consumer whose view disagrees
//!   with the leader's is made anew instead.
//! - **Older lines** than the edge's history are read back from the stream
//!   ([`StreamReplay`]), by start sequence; lines the stream no longer holds
//!   are an honest `gap`.
//! - **Files**: one per subject, named `NODE/FILE` from `logtail.NODE.FILE`.
//! - **File events**: a message with the `Lt-Event` header (a source's
//!   rotated, truncated, …, and `gap` for lines it could not publish) is told
//!   to clients as that event, after the lines before it. A replay from the
//!   stream (older than the edge's history) carries lines only.
//!
//! At start-up the edge reads the last [`BACKLOG_MESSAGES`] messages into its
//! history, so a new client has a backlog at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::{FileState, Gone, Publisher, Replay, ReplayReader, Source};
use crate::hub::{Line, NoticeKind};
use crate::lines::to_text;
use crate::nats::{EVENT_HEADER, token_text};

/// Messages read into the history at start-up, at most.
pub const BACKLOG_MESSAGES: u64 = 10_000;
/// Messages handed to the hub in one batch, at most.
const BATCH: usize = 512;
/// One replay step reads at most this many messages.
const REPLAY_STEP: usize = 1024;
/// A replay step that waits this long for the next message has read all there is.
const REPLAY_IDLE: Duration = Duration::from_secs(2);
/// Copies the live consumer found that are remembered for replays, at most (the oldest
/// go first; a replay that meets one of those again asks the stream's leader).
const KNOWN_COPIES: usize = 65_536;
/// A replay that does not start where the last step ended first reads the stream
/// sequences this far before its start, to know the last line of each subject there
/// ([`Copies`]). A copy is stored when a source sends again what was in flight, at most
/// its [`crate::sink::WINDOW`] unacknowledged lines: the original is that close in that
/// source's lines, though other subjects' messages may lie between them (then a copy
/// older than this is given twice by a fresh replay, unless the live consumer saw it).
const LOOKBACK: u64 = 4 * crate::sink::WINDOW as u64;
/// A replay step makes a new consumer at most this many times (a stale view, a consumer
/// that stopped short) before it hands on what it has, or, with nothing, gives up (its
/// range becomes a `gap`).
const STEP_TRIES: u32 = 3;
/// The stream's leader is asked this many times, [`RETRY`] apart, whether a message is a
/// copy (an election takes seconds); then the message is kept.
const JUDGE_TRIES: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);

/// What an edge's consumer is doing, for `/healthz`: written by the edge,
/// read by the transports.
#[derive(Debug, Default)]
pub struct EdgeStatus {
    pub stream: String,
    pub epoch: String,
    pub subject: String,
    consuming: std::sync::atomic::AtomicBool,
    /// The stream sequence of the last message handed to the hub.
    last_seq: std::sync::atomic::AtomicU64,
    /// Consumers lost and made again.
    restarts: std::sync::atomic::AtomicU64,
    /// Copies the stream stored twice, dropped by the live consumer ([`Copies`]).
    copies: std::sync::atomic::AtomicU64,
    /// Messages that looked like copies but were kept: the leader could not be asked.
    unconfirmed: std::sync::atomic::AtomicU64,
    /// Consumers made again because their view was not the stream leader's.
    stale: std::sync::atomic::AtomicU64,
    /// Why the edge stopped serving, when its stream was deleted or recreated.
    pub ended: Mutex<Option<String>>,
}

impl EdgeStatus {
    pub fn report(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "stream": self.stream,
            "epoch": self.epoch,
            "subject": self.subject,
            "consuming": self.consuming.load(Relaxed),
            "last_seq": self.last_seq.load(Relaxed),
            "restarts": self.restarts.load(Relaxed),
            "copies_dropped": self.copies.load(Relaxed),
            "copies_unconfirmed": self.unconfirmed.load(Relaxed),
            "stale_views": self.stale.load(Relaxed),
        })
    }

    /// Why the edge stopped, if it did on its own.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The edge's view of its stream, once connected.
pub struct Upstream {
    js: jetstream::Context,
    name: String,
    /// The stream's creation time (ns): changed, the stream is another one.
    created: i128,
    stream: stream::Stream,
    subject: String,
    /// The stream's identity: the same on every edge.
    pub epoch: String,
    first_seq: u64,
    last_seq: u64,
    shown: String,
}

/// The epoch of a stream: FNV-1a of its name and creation time (ns), as 16
/// hex digits, like a server's own epoch; a recreated stream has another.
pub fn epoch_of(name: &str, created_nanos: i128) -> String {
    let h = crate::hash::fnv1a(name.bytes().chain([0]).chain(created_nanos.to_le_bytes()));
    format!("{h:016x}")
}

/// A file's public name from its subject `logtail.NODE.FILE` (`None` for
/// another shape).
pub fn file_of_subject(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix("logtail.")?;
    let (node, file) = rest.split_once('.')?;
    if file.contains('.') {
        return None;
    }
    Some(format!("{}/{}", token_text(node)?, token_text(file)?))
}

impl Upstream {
    /// Connects to `urls` (seed servers of one cluster) and finds stream
    /// `name`, retrying every second until `cancel` (a missing broker or
    /// stream is waited for, and said so once).
    pub async fn connect(
        urls: &[String],
        name: &str,
        subject: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<Upstream>, String> {
        let (addrs, servers) = crate::nats::servers(urls)?;
        let shown = format!("{servers} stream {name}");
        let mut told = false;
        loop {
            let attempt = async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(CONNECT_TIMEOUT)
                    .name("logtail-ws edge")
                    .connect(addrs.clone())
                    .await
                    .map_err(|err| format!("cannot connect: {err}"))?;
                let js = jetstream::new(client);
                let mut stream = js
                    .get_stream(name)
                    .await
                    .map_err(|err| format!("stream {name}: {err}"))?;
                let info = stream
                    .info()
                    .await
                    .map_err(|err| format!("stream {name}: {err}"))?
                    .clone();
                Ok::<_, String>((js, stream, info))
            };
            let tried = tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                tried = attempt => tried,
            };
            match tried {
                Ok((js, stream, info)) => {
                    let created = info.created.unix_timestamp_nanos();
                    let epoch = epoch_of(name, created);
                    return Ok(Some(Upstream {
                        js,
                        name: name.to_string(),
                        created,
                        stream,
                        subject: subject.to_string(),
                        epoch,
                        first_seq: info.state.first_sequence,
                        last_seq: info.state.last_sequence,
                        shown,
                    }));
                }
                Err(err) => {
                    if !told {
                        tracing::warn!("waiting for {shown}: {err}; retrying every second");
                        told = true;
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.shown, self.subject)
    }

    /// Why the stream is no longer the one this edge numbers by: deleted, or
    /// made anew; `None` while it is the same one, or cannot be asked now.
    async fn replaced(&self) -> Option<String> {
        match self.js.get_stream(&self.name).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) if info.created.unix_timestamp_nanos() != self.created => Some(format!(
                    "the stream {} was made anew (a new epoch)",
                    self.name
                )),
                _ => None,
            },
            // Deleted (a source may make it anew), or the broker is away.
            Err(_) => None,
        }
    }

    /// Its status, to give to [`EdgeSource::start`].
    pub fn status(&self) -> Arc<EdgeStatus> {
        Arc::new(EdgeStatus {
            stream: self.name.clone(),
            epoch: self.epoch.clone(),
            subject: self.subject.clone(),
            ..EdgeStatus::default()
        })
    }
}

/// Subjects seen, and the file index each was given.
#[derive(Clone)]
struct Files {
    publisher: Publisher,
    by_subject: Arc<Mutex<HashMap<String, u32>>>,
    /// The stream sequences of the copies the live consumer found ([`Copies`]): a
    /// replay skips them without asking, even where it starts at one.
    copies: Arc<Mutex<BTreeSet<u64>>>,
}

impl Files {
    fn index(&self, subject: &str) -> u32 {
        let mut map = self.by_subject.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&i) = map.get(subject) {
            return i;
        }
        let name = file_of_subject(subject).unwrap_or_else(|| subject.to_string());
        let i = self.publisher.add_input(&name, subject.to_string());
        self.publisher.status().set(i, FileState::Following, 0);
        map.insert(subject.to_string(), i);
        i
    }

    /// Notes that the stream holds a copy at `seq`.
    fn copy_at(&self, seq: u64) {
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        copies.insert(seq);
        while copies.len() > KNOWN_COPIES {
            copies.pop_first();
        }
    }

    fn is_copy(&self, seq: u64) -> bool {
        let copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        copies.contains(&seq)
    }
}

/// The source's own numbering of a message (`Lt-Epoch`, `Lt-Seq`), by subject, to drop
/// a copy the stream stored twice. JetStream drops a copy sent again with the same
/// `Nats-Msg-Id`, but not always when the node the source was connected to dies with
/// acknowledgements in flight: the source sends again, and a new leader may store it
/// again. Same epoch and a `Lt-Seq` not above the last one of that subject: a copy.
///
/// A message that looks like a copy is dropped only once the stream's leader holds the
/// same at that stream sequence ([`leader_holds`]): a consumer that sits on a replica
/// has been seen, after a failover, to hand out a stretch whose stream sequences carried
/// older lines than the ones the stream settled on (seen with nats-server 2.9.10, three
/// nodes, the leader killed); every line of it, taken for a copy, would have been lost.
#[derive(Default)]
struct Copies(HashMap<String, (String, u64)>);

impl Copies {
    /// Whether `message` repeats a line already handed on ([`Copies::remember`] it if
    /// not, once it is handed on).
    fn repeats(&self, message: &async_nats::jetstream::Message) -> bool {
        let Some((epoch, seq)) = numbering(message.headers.as_ref()) else {
            return false;
        };
        matches!(
            self.0.get(message.subject.as_str()),
            Some((e, last)) if *e == epoch && seq <= *last
        )
    }

    /// Notes `message`'s numbering as the last one of its subject (unless a higher one
    /// of the same epoch is: a kept [`Repeat::Unknown`] lowers nothing).
    fn remember(&mut self, message: &async_nats::jetstream::Message) {
        let Some((epoch, seq)) = numbering(message.headers.as_ref()) else {
            return;
        };
        match self.0.get_mut(message.subject.as_str()) {
            Some((e, last)) if *e == epoch => *last = (*last).max(seq),
            _ => {
                self.0.insert(message.subject.to_string(), (epoch, seq));
            }
        }
    }
}

/// A message's `Lt-Epoch` and `Lt-Seq`: the source's numbering of it.
fn numbering(headers: Option<&async_nats::HeaderMap>) -> Option<(String, u64)> {
    let headers = headers?;
    let epoch = headers.get("Lt-Epoch")?.as_str().to_string();
    let seq = headers.get("Lt-Seq")?.as_str().parse::<u64>().ok()?;
    Some((epoch, seq))
}

/// Whether the stream's leader holds `message` (same subject and numbering) at its
/// stream sequence: then a [`Copies`] repeat is a copy the stream stored, not a stale
/// view. `Err` when the leader cannot be asked now (no leader during a failover).
async fn leader_holds(
    stream: &stream::Stream,
    message: &async_nats::jetstream::Message,
    seq: u64,
) -> Result<bool, String> {
    // The direct-get API answers from any replica; this one from the leader.
    let held = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| format!("asking the stream leader for seq {seq}: {e}"))?;
    Ok(held.subject == message.subject
        && numbering(Some(&held.headers)) == numbering(message.headers.as_ref()))
}

/// The stream sequence of the first message on `subject` (a filter) at or after `seq`,
/// as the stream's leader has it; `None` when there is none.
async fn first_on_subject(
    stream: &stream::Stream,
    subject: &str,
    seq: u64,
) -> Result<Option<u64>, String> {
    match stream.get_first_raw_message_by_subject(subject, seq).await {
        Ok(message) => Ok(Some(message.sequence)),
        Err(err) if matches!(err.kind(), stream::RawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

/// What the stream's leader says of a message [`Copies`] takes for a repeat.
enum Repeat {
    /// It holds the same at that sequence: a copy the stream stored; drop it.
    Copy,
    /// It holds another message there: the consumer's view is stale; read again with a
    /// new consumer.
    Stale(String),
    /// It could not be asked ([`JUDGE_TRIES`] times): keep the message, since a line
    /// given twice is better than a line lost.
    Unknown(String),
}

/// Asks the stream's leader about `message`, at stream sequence `seq`; a copy is noted
/// in `files` for replays.
async fn judge_repeat(
    stream: &stream::Stream,
    files: &Files,
    message: &async_nats::jetstream::Message,
    seq: u64,
) -> Repeat {
    let mut why = String::new();
    for attempt in 0..JUDGE_TRIES {
        if attempt > 0 {
            tokio::time::sleep(RETRY).await;
        }
        match leader_holds(stream, message, seq).await {
            Ok(true) => {
                files.copy_at(seq);
                return Repeat::Copy;
            }
            Ok(false) => {
                return Repeat::Stale(format!(
                    "the consumer handed out, at seq {seq}, another message than the stream's \
                     leader holds there"
                ));
            }
            Err(err) => why = err,
        }
    }
    Repeat::Unknown(format!(
        "seq {seq} looks like a copy, but {why}; keeping it"
    ))
}

/// A file event a source published (a message with [`EVENT_HEADER`]): its
/// kind, with the counts of a `gap`.
fn event_of(message: &async_nats::jetstream::Message) -> Option<NoticeKind> {
    let headers = message.headers.as_ref()?;
    let name = headers.get(EVENT_HEADER)?.as_str();
    let count = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.as_str().parse::<u64>().ok())
    };
    match NoticeKind::from_name(name) {
        Some(NoticeKind::Unpublished { .. }) => Some(NoticeKind::Unpublished {
            lines: count("Lt-Lines"),
            bytes: count("Lt-Bytes"),
        }),
        Some(kind) => Some(kind),
        None => {
            tracing::debug!("ignoring an event of a kind this edge does not know: {name}");
            None
        }
    }
}

/// What a message of the stream is to the edge.
enum Item {
    Line(Line),
    /// A file event, at stream sequence `seq`.
    Event {
        file: u32,
        kind: NoticeKind,
        seq: u64,
    },
    /// An event this edge does not know, at `seq`.
    Skip {
        seq: u64,
    },
}

fn item_of(files: &Files, message: &async_nats::jetstream::Message) -> Option<Item> {
    let is_event = message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(EVENT_HEADER).is_some());
    if !is_event {
        return line_of(files, message).map(Item::Line);
    }
    let seq = message.info().ok()?.stream_sequence;
    Some(match event_of(message) {
        Some(kind) => Item::Event {
            file: files.index(message.subject.as_str()),
            kind,
            seq,
        },
        None => Item::Skip { seq },
    })
}

/// A line message as a [`Line`] (`None` for an event, which is no line).
fn line_of(files: &Files, message: &async_nats::jetstream::Message) -> Option<Line> {
    if message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(EVENT_HEADER).is_some())
    {
        return None;
    }
    let seq = message.info().ok()?.stream_sequence;
    let offset = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Lt-Offset"))
        .and_then(|v| v.as_str().parse::<u64>().ok())
        .unwrap_or(0);
    Some(Line {
        seq,
        offset,
        file: files.index(message.subject.as_str()),
        origin: 0,
        cost_end: 0,
        text: to_text(message.payload.clone()),
    })
}

/// The running edge: its live consumer's task.
pub struct EdgeSource {
    shown: String,
    stop: CancellationToken,
}

impl Source for EdgeSource {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}

impl EdgeSource {
    /// Starts the live consumer (from the last [`BACKLOG_MESSAGES`]) and
    /// serves older lines from the stream. If the stream is deleted or made
    /// anew (another epoch: these numbers no longer name its lines), the edge
    /// says why in `status` and cancels `serving`: the server stops, and its
    /// clients, reconnecting to an edge started again, learn the new epoch.
    pub fn start(
        upstream: Upstream,
        publisher: Publisher,
        status: Arc<EdgeStatus>,
        serving: CancellationToken,
    ) -> EdgeSource {
        let files = Files {
            publisher: publisher.clone(),
            by_subject: Arc::new(Mutex::new(HashMap::new())),
            copies: Arc::default(),
        };
        publisher.serve_replay(Arc::new(StreamReplay {
            stream: upstream.stream.clone(),
            subject: upstream.subject.clone(),
            files: files.clone(),
            handle: tokio::runtime::Handle::current(),
        }));
        let stop = CancellationToken::new();
        let shown = upstream.describe();
        let from = upstream
            .first_seq
            .max(upstream.last_seq.saturating_sub(BACKLOG_MESSAGES) + 1)
            .max(1);
        let upstream = Arc::new(upstream);
        tokio::spawn(watch_identity(
            Arc::clone(&upstream),
            Arc::clone(&status),
            serving.clone(),
            stop.clone(),
        ));
        tokio::spawn(live(upstream, files, from, stop.clone(), status, serving));
        EdgeSource { shown, stop }
    }
}

/// Stops the edge when its stream is made anew. JetStream announces every
/// change to a stream (`$JS.EVENT.ADVISORY.STREAM.{CREATED,DELETED,UPDATED}.NAME`);
/// at each, the stream's creation time is compared with the edge's. (A consumer
/// does not notice by itself: recreated on the new stream after the old one's
/// last sequence, it waits, healthy and silent, for numbers the new stream
/// reaches only later.)
async fn watch_identity(
    upstream: Arc<Upstream>,
    status: Arc<EdgeStatus>,
    serving: CancellationToken,
    stop: CancellationToken,
) {
    let subject = format!("$JS.EVENT.ADVISORY.STREAM.*.{}", upstream.name);
    let mut advisories = match upstream.js.client().subscribe(subject).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::warn!(
                "cannot watch the stream {} for being made anew: {err}",
                upstream.name
            );
            return;
        }
    };
    loop {
        // Also once now: the subscription is in place, so nothing is missed after this look.
        if let Some(why) = upstream.replaced().await {
            tracing::error!(
                "{why}; stopping so that clients reconnect to an edge on the new stream"
            );
            *status.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            serving.cancel();
            return;
        }
        let advisory = tokio::select! {
            () = stop.cancelled() => return,
            advisory = advisories.next() => advisory,
        };
        let Some(advisory) = advisory else { return };
        if advisory.subject.as_str().contains(".DELETED.") {
            tracing::warn!(
                "the stream {} was deleted; waiting for it to be made anew",
                upstream.name
            );
        }
    }
}

/// Feeds the hub from one ordered consumer, recreated (after the last line
/// kept) whenever it fails for good.
async fn live(
    upstream: Arc<Upstream>,
    files: Files,
    mut from: u64,
    stop: CancellationToken,
    status: Arc<EdgeStatus>,
    serving: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut copies = Copies::default();
    loop {
        if serving.is_cancelled() {
            return;
        }
        match ordered_from(&upstream.stream, &upstream.subject, from).await {
            Ok(mut messages) => {
                tracing::info!("reading {} from seq {from}", upstream.describe());
                status.consuming.store(true, Relaxed);
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => return,
                        next = messages.next() => next,
                    };
                    let Some(first) = next else { break };
                    let mut batch = Vec::new();
                    let mut failed = None;
                    let mut item = Some(first);
                    // Hands on the lines so far, then sets where the consumer stands.
                    let hand_on = |batch: &mut Vec<Line>, upto: u64, from: &mut u64| {
                        if !batch.is_empty() {
                            files.publisher.publish_lines(std::mem::take(batch));
                        }
                        *from = upto + 1;
                        status.last_seq.store(upto, Relaxed);
                        files.publisher.edge_consumed(upto);
                    };
                    while let Some(it) = item.take() {
                        match it {
                            Ok(message) => {
                                let seq = message.info().map(|i| i.stream_sequence);
                                let repeat = match seq {
                                    Ok(seq) if copies.repeats(&message) => {
                                        let judged =
                                            judge_repeat(&upstream.stream, &files, &message, seq);
                                        tokio::select! {
                                            () = stop.cancelled() => return,
                                            judged = judged => Some((judged, seq)),
                                        }
                                    }
                                    _ => None,
                                };
                                if let Some((Repeat::Unknown(why), _)) = &repeat {
                                    tracing::warn!("reading {}: {why}", upstream.describe());
                                    status.unconfirmed.fetch_add(1, Relaxed);
                                }
                                match repeat {
                                    Some((Repeat::Copy, seq)) => {
                                        tracing::debug!("dropping a copy the stream stored twice");
                                        status.copies.fetch_add(1, Relaxed);
                                        // Read past: not judged again after a restart.
                                        hand_on(&mut batch, seq, &mut from);
                                    }
                                    Some((Repeat::Stale(why), _)) => {
                                        // Nothing of it is kept: a new consumer reads from
                                        // the line after the last one kept.
                                        status.stale.fetch_add(1, Relaxed);
                                        failed = Some(why);
                                        break;
                                    }
                                    None | Some((Repeat::Unknown(_), _)) => {
                                        copies.remember(&message);
                                        match item_of(&files, &message) {
                                            Some(Item::Line(line)) => batch.push(line),
                                            Some(Item::Event { file, kind, seq }) => {
                                                // After the lines before it, at its place.
                                                hand_on(&mut batch, seq, &mut from);
                                                files.publisher.notice(file, kind, 0);
                                            }
                                            Some(Item::Skip { seq }) => {
                                                hand_on(&mut batch, seq, &mut from);
                                            }
                                            None => {}
                                        }
                                    }
                                }
                            }
                            Err(err) => {
                                failed = Some(err.to_string());
                                break;
                            }
                        }
                        if batch.len() >= BATCH {
                            break;
                        }
                        // What else is ready now joins the batch.
                        item = messages.next().now_or_never().flatten();
                    }
                    if let Some(last) = batch.last().map(|l| l.seq) {
                        hand_on(&mut batch, last, &mut from);
                    }
                    if let Some(err) = failed {
                        // A consumer lost with its server (they live in memory) or
                        // deleted: a new one, from the line after the last one kept.
                        tracing::warn!(
                            "reading {}: {err}; reading again from seq {from}",
                            upstream.describe()
                        );
                        break;
                    }
                }
                status.consuming.store(false, Relaxed);
                status.restarts.fetch_add(1, Relaxed);
            }
            Err(err) => {
                tracing::warn!(
                    "cannot read {} from seq {from}: {err}; retrying",
                    upstream.describe()
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The messages of `subject` from stream sequence `from` on, through a new
/// ordered (ephemeral) consumer: the live feed and each replay step read so.
async fn ordered_from(
    stream: &stream::Stream,
    subject: &str,
    from: u64,
) -> Result<pull::Ordered, String> {
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// Lines older than the edge's history, read back from the stream.
struct StreamReplay {
    stream: stream::Stream,
    subject: String,
    files: Files,
    handle: tokio::runtime::Handle,
}

impl Replay for StreamReplay {
    fn open(&self, from: u64) -> Box<dyn ReplayReader> {
        Box::new(StreamReader {
            next: from,
            copies: None,
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            files: self.files.clone(),
            handle: self.handle.clone(),
        })
    }
}

struct StreamReader {
    next: u64,
    /// The last line of each subject before `next`, once a step has read up to it.
    copies: Option<Copies>,
    stream: stream::Stream,
    subject: String,
    files: Files,
    handle: tokio::runtime::Handle,
}

impl ReplayReader for StreamReader {
    fn next_seq(&self) -> u64 {
        self.next
    }

    fn read(&mut self, stop: u64) -> Result<Vec<Line>, Gone> {
        let from = self.next;
        let mut stream = self.stream.clone();
        let subject = self.subject.clone();
        let files = self.files.clone();
        let known = self.copies.take();
        let got = self.handle.block_on(async move {
            let info = stream.info().await.map_err(|e| e.to_string())?.clone();
            if from < info.state.first_sequence {
                return Ok::<_, String>(Err(Gone {
                    until: info.state.first_sequence.min(stop),
                }));
            }
            // Where the last step ended, what came before is known; elsewhere it is read.
            let (mut copies, mut at) = match known {
                Some(copies) => (copies, from),
                None => (
                    Copies::default(),
                    from.saturating_sub(LOOKBACK).max(info.state.first_sequence),
                ),
            };
            let mut lines = Vec::new();
            // Where this step may end: at `stop`, or past the stream's last message.
            let end = stop.min(info.state.last_sequence + 1);
            let mut tries = 0;
            'consumer: loop {
                tries += 1;
                if tries > 1 {
                    tokio::time::sleep(RETRY).await;
                }
                let mut messages = ordered_from(&stream, &subject, at).await?;
                // The last stream sequence this consumer handed out.
                let mut seen = at.saturating_sub(1);
                let mut done = false;
                while lines.len() < REPLAY_STEP {
                    let Ok(next) = tokio::time::timeout(REPLAY_IDLE, messages.next()).await else {
                        break;
                    };
                    let Some(Ok(message)) = next else { break };
                    let Ok(seq) = message.info().map(|i| i.stream_sequence) else {
                        continue;
                    };
                    seen = seq;
                    if seq >= stop {
                        done = true;
                        break;
                    }
                    if files.is_copy(seq) {
                        continue;
                    }
                    if copies.repeats(&message) {
                        if seq < from {
                            // Before the start: read only to know what came before.
                            continue;
                        }
                        match judge_repeat(&stream, &files, &message, seq).await {
                            Repeat::Copy => continue,
                            Repeat::Stale(why) if tries < STEP_TRIES => {
                                // Read on from there with a new consumer.
                                tracing::warn!("replaying from the stream: {why}; again");
                                at = seq;
                                continue 'consumer;
                            }
                            Repeat::Stale(why) if lines.is_empty() => return Err(why),
                            // What came before it is good; the next step reads on.
                            Repeat::Stale(_) => {
                                done = true;
                                break;
                            }
                            Repeat::Unknown(why) => {
                                tracing::warn!("replaying from the stream: {why}");
                            }
                        }
                    }
                    copies.remember(&message);
                    if seq < from {
                        continue;
                    }
                    if let Some(line) = line_of(&files, &message) {
                        lines.push(line);
                    }
                }
                // Stopped short with nothing (idle, or the consumer failed): "no line
                // below stop" only if the leader has no message of ours before the end.
                if !done && lines.is_empty() && seen + 1 < end {
                    let more = match first_on_subject(&stream, &subject, seen + 1).await {
                        Ok(next) => next.is_some_and(|next| next < end),
                        Err(_) => true,
                    };
                    if more {
                        if tries >= STEP_TRIES {
                            return Err(format!(
                                "the stream handed out nothing of seqs {}..{end}",
                                seen + 1
                            ));
                        }
                        at = seen + 1;
                        continue 'consumer;
                    }
                }
                break;
            }
            Ok(Ok((lines, copies)))
        });
        match got {
            Ok(Ok((lines, copies))) => {
                // No line of ours in [from, stop): the numbers skip (other subjects).
                self.next = lines.last().map_or(stop, |l| l.seq + 1);
                // It remembered nothing at or after `next`: the next step goes on with it.
                self.copies = Some(copies);
                Ok(lines)
            }
            Ok(Err(gone)) => Err(gone),
            Err(err) => {
                tracing::warn!("replaying from the stream failed: {err}");
                Err(Gone { until: stop })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::subject;

    #[test]
    fn subjects_name_their_node_and_file() {
        assert_eq!(
            file_of_subject(&subject("web-1.example.com", "app.log")).as_deref(),
            Some("web-1.example.com/app.log")
        );
        assert_eq!(file_of_subject("other.x.y"), None);
        assert_eq!(file_of_subject("logtail.a.b.c"), None);
    }

    #[test]
    fn an_epoch_names_one_incarnation_of_a_stream() {
        assert_eq!(epoch_of("LOGTAIL", 1), epoch_of("LOGTAIL", 1));
        assert_ne!(epoch_of("LOGTAIL", 1), epoch_of("LOGTAIL", 2));
        assert_ne!(epoch_of("LOGTAIL", 1), epoch_of("OTHER", 1));
        assert_eq!(epoch_of("LOGTAIL", 1).len(), 16);
    }
}
