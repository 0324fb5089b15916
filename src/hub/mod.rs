//! The fan-out hub: where sources publish lines and every client reads them.
//!
//! It numbers, keeps, fans out — and asks. A source (through its
//! `source::Publisher`) calls [`Hub::publish_lines`], which numbers the lines
//! (`seq`, per [`Numbering`]), appends them to the [`History`] and broadcasts
//! the batch on a tokio `broadcast` channel. Each client holds a [`Cursor`]:
//! it reads live batches from its broadcast receiver and, when it has fallen
//! behind (a `Lagged` receiver, a backlog, a `since=` resume), reads from the
//! history instead — and, for lines older than the history, asks the
//! source's [`Replay`]. So a client never has a queue of its own: every line
//! exists once in memory, shared by reference count, whatever the number of
//! clients.
//!
//! The hub knows nothing of files: not their identity, not their state, not
//! how old lines are found again. Those belong to the file source.
//!
//! The hub's one lock guards the history; it is held only to append a batch or
//! to copy a bounded slice of references, never across an `.await`.

mod cursor;
pub mod history;
#[cfg(test)]
mod model_tests;
pub mod replay;
pub mod selection;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::encode::{self, Encoding};
use crate::lines::Text;
use tokio::sync::broadcast;

pub use cursor::{Cursor, CursorError, Delivery, Gap, GapReason, LagPolicy};
pub use history::History;
pub use replay::{Gone, Replay, ReplayReader};
pub use selection::{NamePredicate, Selection};

use crate::metrics::Metrics;

/// One line, as every client sees it.
#[derive(Debug, Clone)]
pub struct Line {
    /// Position in the server's stream of lines: from 1, never reused, across
    /// rotations and truncations. Assigned by the hub ([`Numbering::Assign`]),
    /// or given by the source ([`Numbering::Preserve`]).
    pub seq: u64,
    /// Byte offset of the line's first byte in its file.
    pub offset: u64,
    /// Index of the file in [`Hub::file_name`].
    pub file: u32,
    /// Which file the source read it from, as the source names file
    /// instances (the file source: a hash of device and inode; 0: none).
    /// Opaque to the hub; with `offset` it names the line across restarts,
    /// which is what a broker publisher's message id needs.
    pub origin: u64,
    /// Running total of the accounting bytes of all lines up to and including
    /// this one: how far behind a client is, in bytes, is a subtraction.
    pub cost_end: u64,
    /// The line's text, shared by every client that sends it.
    pub text: Text,
}

/// Something that happened to a followed file, told to JSON and SSE clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The path now names another file; the old one was read to its end.
    Rotated,
    /// The file got shorter (or was rewritten); reading restarts at offset 0.
    Truncated,
    /// The file does not exist (or cannot be read) for now.
    Waiting,
    /// The file is being followed (again).
    Following,
    /// A file joined the stream (a glob match that appeared).
    Added,
    /// A file left the stream for good (a glob match that disappeared).
    Removed,
    /// The input ended (standard input reached its end).
    Ended,
    /// Lines of the file that its source could not publish to the broker
    /// (an edge tells it where the source's marker sits in the stream):
    /// `lines` of them when the source could count them, else `bytes`.
    Unpublished {
        lines: Option<u64>,
        bytes: Option<u64>,
    },
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Rotated => "rotated",
            NoticeKind::Truncated => "truncated",
            NoticeKind::Waiting => "waiting",
            NoticeKind::Following => "following",
            NoticeKind::Added => "added",
            NoticeKind::Removed => "removed",
            NoticeKind::Ended => "ended",
            NoticeKind::Unpublished { .. } => "gap",
        }
    }

    /// The kind named `name` ([`as_str`](Self::as_str)), for a file event
    /// that came through a broker; `gap` is [`NoticeKind::Unpublished`],
    /// whose counts the caller fills in.
    pub fn from_name(name: &str) -> Option<NoticeKind> {
        Some(match name {
            "rotated" => NoticeKind::Rotated,
            "truncated" => NoticeKind::Truncated,
            "waiting" => NoticeKind::Waiting,
            "following" => NoticeKind::Following,
            "added" => NoticeKind::Added,
            "removed" => NoticeKind::Removed,
            "ended" => NoticeKind::Ended,
            "gap" => NoticeKind::Unpublished {
                lines: None,
                bytes: None,
            },
            _ => return None,
        })
    }

    /// The event's JSON frame, for file `file` after line `after_seq`.
    pub fn json(&self, file: &str, after_seq: u64) -> String {
        match *self {
            NoticeKind::Unpublished { lines, bytes } => {
                encode::json_unpublished(file, after_seq, lines, bytes)
            }
            kind => encode::json_notice(kind.as_str(), file, after_seq),
        }
    }
}

/// A file event, placed in the stream of lines: it follows line `after_seq`.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Numbers notices from 0 in publishing order, so a cursor hands each
    /// out once whether it came live or from the history.
    pub id: u64,
    pub kind: NoticeKind,
    pub file: u32,
    pub after_seq: u64,
}

/// A run of consecutive lines published together (one read of the file).
#[derive(Debug)]
pub struct Batch {
    pub lines: Vec<Line>,
    /// When the hub published it (the start of its delivery delay).
    pub published_at: std::time::Instant,
    /// The lines encoded once per shared encoding (JSON, SSE), for every
    /// client that wants them that way: filled by the first client that
    /// sends them, one slot per encoding.
    encoded: [OnceLock<Vec<Text>>; Encoding::SHARED],
}

impl Batch {
    fn new(lines: Vec<Line>) -> Batch {
        Batch {
            lines,
            published_at: std::time::Instant::now(),
            encoded: Default::default(),
        }
    }

    /// Every line encoded as `encoding` by `encode`, computed by the first
    /// caller and shared by all others asking for the same encoding; `None`
    /// for an encoding that is not shared (text: the line is its own frame).
    pub fn encoded(&self, encoding: Encoding, encode: impl Fn(&Line) -> Text) -> Option<&[Text]> {
        let slot = self.encoded.get(encoding.shared_slot()?)?;
        Some(slot.get_or_init(|| self.lines.iter().map(encode).collect()))
    }
}

/// What goes through the broadcast channel: a pointer, cloned per receiver.
#[derive(Debug, Clone)]
pub enum Published {
    Lines(Arc<Batch>),
    Notice(Arc<Notice>),
}

/// A client's line filter (`grep=`), applied by its cursor.
pub type LineFilter = Arc<dyn Fn(&Line) -> bool + Send + Sync>;

/// Where a new client starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The last `n` (matching) lines of history, then live lines.
    Backlog(usize),
    /// Every retained line after `seq`, then live lines; `epoch` is the
    /// server life the client's `seq` belongs to, when it knows it.
    Since { seq: u64, epoch: Option<String> },
}

/// Who numbers the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numbering {
    /// The hub does: `seq` from 1, one more per line, and a random epoch per
    /// server life. What a server that reads its own files uses.
    Assign,
    /// The source did: an edge node fed from a broker keeps the broker's
    /// sequence and the stream's epoch, so a client can resume on any edge.
    /// Each line's `seq` is taken as given and must increase; a line at or
    /// below the last one kept (a redelivery) is dropped. Upstream numbers
    /// may skip (another subject's lines): a cursor then catches up through
    /// the history at each skip, losing nothing.
    Preserve { epoch: String },
}

/// Sizes the hub works with.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    pub history_bytes: u64,
    /// A client more than this many bytes behind the newest line…
    pub client_queue: u64,
    /// …for longer than this is too slow. The grace is what lets a healthy
    /// client drain a burst (`cat big.log >> app.log`) larger than its queue:
    /// a client behind costs no memory of its own here (it reads the shared
    /// history, or the file), so only a client that *stays* behind is closed.
    pub lag_grace: std::time::Duration,
    pub max_line_bytes: usize,
}

struct Shared {
    history: History,
    /// One more than the newest `seq` published (1 before the first line).
    next_seq: u64,
    cost_total: u64,
    next_notice: u64,
}

/// The hub. Cheap to share (`Arc<Hub>`); see the module docs.
pub struct Hub {
    shared: Mutex<Shared>,
    tx: broadcast::Sender<Published>,
    /// Mirror of `Shared::cost_total`, read without the lock by clients to
    /// measure how far behind they are.
    cost_total: AtomicU64,
    epoch: String,
    numbering: Numbering,
    /// File names by index: only ever added to, so an index in the history
    /// always has its name.
    files: std::sync::RwLock<FileNames>,
    /// Where lines older than the history are asked for; set once by the
    /// source that owns them.
    replay: OnceLock<Arc<dyn Replay>>,
    limits: HubLimits,
    pub metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub for the given files (their names as shown to clients) that
    /// numbers lines itself ([`Numbering::Assign`]), counting what it does
    /// in `metrics`.
    pub fn new(files: Vec<String>, limits: HubLimits, metrics: Arc<Metrics>) -> Arc<Hub> {
        Hub::with_numbering(files, limits, metrics, Numbering::Assign)
    }

    /// A hub whose lines are numbered as `numbering` says.
    pub fn with_numbering(
        files: Vec<String>,
        limits: HubLimits,
        metrics: Arc<Metrics>,
        numbering: Numbering,
    ) -> Arc<Hub> {
        // The channel holds pointers to batches of up to one read (128 KiB);
        // sized so that what a stuck receiver pins stays near its queue bound.
        // A receiver that lags past it recovers from the history, losing nothing.
        let capacity = (limits.client_queue / (128 * 1024)).clamp(16, 4096) as usize;
        let (tx, _) = broadcast::channel(capacity);
        let epoch = match &numbering {
            Numbering::Assign => new_epoch(),
            Numbering::Preserve { epoch } => epoch.clone(),
        };
        Arc::new(Hub {
            shared: Mutex::new(Shared {
                history: History::new(limits.history_bytes),
                next_seq: 1,
                cost_total: 0,
                next_notice: 0,
            }),
            tx,
            cost_total: AtomicU64::new(0),
            epoch,
            numbering,
            files: std::sync::RwLock::new(FileNames::new(files)),
            replay: OnceLock::new(),
            limits,
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the history inconsistent
        // in a way that matters more than stopping the stream would.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of the stream `seq` values belong to (with [`Numbering::Assign`],
    /// random per server life); `seq` values are meaningful only together
    /// with it.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    fn names(&self) -> std::sync::RwLockReadGuard<'_, FileNames> {
        self.files.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The public name of file `index` (empty for an index never registered).
    pub fn file_name(&self, index: u32) -> Arc<str> {
        self.names().name(index)
    }

    /// The index of the file named `name`: the one it had if it was named
    /// before (a file that comes back keeps its index), else a new one.
    pub fn register_file(&self, name: &str) -> u32 {
        if let Some(index) = self.names().index(name) {
            return index;
        }
        self.files
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .register(name)
    }

    /// The index of the file named `name`, if one was ever registered.
    pub fn file_index(&self, name: &str) -> Option<u32> {
        self.names().index(name)
    }

    /// How many file indices exist (registered names, removed ones included).
    pub fn file_count(&self) -> u32 {
        self.names().len()
    }

    /// The newest `seq` published so far (0 before the first line).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// (lines, accounting bytes) held in the history, and the last `seq`,
    /// all at one instant (so `/healthz` never shows a history that does not
    /// match its `seq`).
    pub fn history_usage(&self) -> (usize, u64, u64) {
        let shared = self.lock();
        (
            shared.history.len(),
            shared.history.bytes(),
            shared.next_seq - 1,
        )
    }

    pub(crate) fn cost_total(&self) -> u64 {
        self.cost_total.load(Ordering::Acquire)
    }

    /// Numbers `lines` (their `seq` — unless [`Numbering::Preserve`] — and
    /// `cost_end` are filled in here), keeps them in the history and sends
    /// them to every client. Returns the `seq` range they were given, so the
    /// source can index its own lines afterwards, outside this lock; with
    /// [`Numbering::Assign`] it holds exactly one `seq` per line, in order.
    pub fn publish_lines(&self, mut lines: Vec<Line>) -> Range<u64> {
        let mut shared = self.lock();
        if let Numbering::Preserve { .. } = self.numbering {
            let mut last = shared.next_seq - 1;
            lines.retain(|line| {
                let keep = line.seq > last;
                if keep {
                    last = line.seq;
                } else {
                    tracing::debug!(
                        seq = line.seq,
                        last,
                        "dropping a line numbered at or below the last one kept"
                    );
                }
                keep
            });
        }
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return shared.next_seq..shared.next_seq;
        };
        let assign = matches!(self.numbering, Numbering::Assign);
        let (first, last) = if assign {
            (shared.next_seq, shared.next_seq + lines.len() as u64 - 1)
        } else {
            (first.seq, last.seq)
        };
        let count = lines.len() as u64;
        let file = lines[0].file;
        for (n, line) in lines.iter_mut().enumerate() {
            if assign {
                line.seq = first + n as u64;
            }
            shared.cost_total += history::line_cost(line.text.len());
            line.cost_end = shared.cost_total;
            shared.history.push(line.clone());
        }
        shared.next_seq = last + 1;
        self.cost_total.store(shared.cost_total, Ordering::Release);
        // Counted before any client can have the lines, so `/metrics` never
        // shows fewer lines read than a client has received.
        self.metrics.lines_read(&self.file_name(file), count);
        // Sent while holding the lock, so that a subscriber (which takes the
        // lock to subscribe) sees every batch either in the history or in its
        // receiver — never in neither. `send` fails only with no receivers.
        let _ = self.tx.send(Published::Lines(Arc::new(Batch::new(lines))));
        drop(shared);
        first..last + 1
    }

    /// Tells clients what happened to file `file`, after the last line
    /// published.
    pub fn publish_notice(&self, file: u32, kind: NoticeKind) {
        match kind {
            NoticeKind::Rotated => self.metrics.rotation(&self.file_name(file)),
            NoticeKind::Truncated => self.metrics.truncation(&self.file_name(file)),
            _ => {}
        }
        let mut shared = self.lock();
        let notice = Arc::new(Notice {
            id: shared.next_notice,
            kind,
            file,
            after_seq: shared.next_seq - 1,
        });
        shared.next_notice += 1;
        shared.history.push_notice(Arc::clone(&notice));
        // Under the lock, as lines are: see `publish_lines`.
        let _ = self.tx.send(Published::Notice(notice));
    }

    /// Where cursors ask for lines older than the history from now on. Set
    /// once, by the source that owns the lines; a second call is ignored
    /// (and returns false).
    pub fn set_replay(&self, replay: Arc<dyn Replay>) -> bool {
        self.replay.set(replay).is_ok()
    }

    pub(crate) fn replay(&self) -> Option<&Arc<dyn Replay>> {
        self.replay.get()
    }

    /// A cursor for a new client. `matches` is the client's line filter
    /// (`grep=`): a backlog of N counts only matching lines.
    pub fn subscribe(self: &Arc<Self>, start: Start, matches: Option<LineFilter>) -> Cursor {
        self.subscribe_to(start, None, matches)
    }

    /// A cursor for a new client reading only the files of `files` (all
    /// when `None`), and of their lines those `matches` lets through.
    pub fn subscribe_to(
        self: &Arc<Self>,
        start: Start,
        files: Option<Arc<Selection>>,
        matches: Option<LineFilter>,
    ) -> Cursor {
        let filtered = files.is_some() || matches.is_some();
        let shared = self.lock();
        let rx = self.tx.subscribe();
        let last = shared.next_seq - 1;
        let first = shared.history.first_seq().unwrap_or(shared.next_seq);
        let baseline = shared.cost_total;
        let notices_now = shared.next_notice;
        let mut gap = None;
        let next_seq = match &start {
            Start::Backlog(0) => last + 1,
            Start::Backlog(n) if !filtered => shared.history.nth_last_seq(*n).unwrap_or(first),
            Start::Backlog(_) => first, // refined below, outside the lock
            Start::Since { seq, epoch } => {
                if epoch.as_deref().is_some_and(|e| e != self.epoch) {
                    gap = Some(Gap {
                        from: 1,
                        to: first - 1,
                        reason: GapReason::Epoch,
                    });
                    first
                } else if *seq == 0 {
                    first
                } else if *seq >= last && matches!(self.numbering, Numbering::Assign) {
                    last + 1
                } else {
                    // An edge may be behind the edge the client came from: the
                    // lines after `seq` are still on their way here, not a reason to
                    // send older ones again.
                    seq + 1
                }
            }
        };
        drop(shared);
        let next_seq = match &start {
            Start::Backlog(n) if *n > 0 && filtered => {
                let selected = |line: &Line| {
                    files.as_ref().is_none_or(|f| f.contains(line.file, self))
                        && matches.as_ref().is_none_or(|m| m(line))
                };
                self.backlog_start(last, *n, &selected)
            }
            _ => next_seq,
        };
        // Live only: only notices from now on. Any other start replays, and
        // the notices kept among the replayed lines come with them.
        let first_notice = match start {
            Start::Backlog(0) => notices_now,
            _ => 0,
        };
        let at = cursor::StartAt {
            next_seq,
            next_notice: first_notice,
            subscribed_at: last,
            baseline_cost: baseline,
            gap,
        };
        Cursor::new(Arc::clone(self), rx, at, files, matches)
    }

    /// The `seq` from which the last `n` lines matching `matches` (up to
    /// `last`) begin. Walks the history backwards in steps, holding the lock
    /// only to copy each step, so a costly filter never stalls a source.
    fn backlog_start(&self, last: u64, n: usize, matches: &dyn Fn(&Line) -> bool) -> u64 {
        const STEP: usize = 4096;
        let mut before = last + 1;
        let mut found = 0usize;
        let mut step = Vec::with_capacity(STEP);
        loop {
            step.clear();
            self.lock().history.copy_before(before, STEP, &mut step);
            let Some(oldest) = step.first().map(|l| l.seq) else {
                return before;
            };
            for line in step.iter().rev() {
                if matches(line) {
                    found += 1;
                    if found == n {
                        return line.seq;
                    }
                }
            }
            before = oldest;
        }
    }

    /// The next kept notice a replay from `seq` must hand out (see
    /// [`History::next_notice`]).
    pub(crate) fn next_notice(&self, min_id: u64, seq: u64) -> Option<Arc<Notice>> {
        self.lock().history.next_notice(min_id, seq)
    }

    /// Copies history lines from `seq` on (bounded) into `out`; returns the
    /// oldest `seq` the history can still answer for (below it, lines were
    /// evicted) and the newest.
    pub(crate) fn read_history(
        &self,
        seq: u64,
        max_lines: usize,
        max_bytes: usize,
        out: &mut Vec<Line>,
    ) -> Option<(u64, u64)> {
        let shared = self.lock();
        let first = shared.history.owed_from();
        let last = shared.history.last_seq()?;
        shared.history.copy_from(seq, max_lines, max_bytes, out);
        Some((first, last))
    }
}

/// Public file names by index, and back.
struct FileNames {
    by_index: Vec<Arc<str>>,
    by_name: std::collections::HashMap<Arc<str>, u32>,
}

impl FileNames {
    fn new(names: Vec<String>) -> FileNames {
        let mut table = FileNames {
            by_index: Vec::new(),
            by_name: std::collections::HashMap::new(),
        };
        for name in names {
            table.register(&name);
        }
        table
    }

    fn name(&self, index: u32) -> Arc<str> {
        self.by_index
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    fn index(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    fn len(&self) -> u32 {
        self.by_index.len() as u32
    }

    fn register(&mut self, name: &str) -> u32 {
        if let Some(index) = self.index(name) {
            return index;
        }
        let index = self.len();
        let name: Arc<str> = Arc::from(name);
        self.by_index.push(Arc::clone(&name));
        self.by_name.insert(name, index);
        index
    }
}

/// 64 random bits in hex: a new one each time the server starts.
fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the start time still differs between lives.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()) << 32).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HubLimits {
        HubLimits {
            history_bytes: 1 << 20,
            client_queue: 1 << 20,
            lag_grace: std::time::Duration::from_secs(5),
            max_line_bytes: 1 << 20,
        }
    }

    fn line(seq: u64, text: &str) -> Line {
        Line {
            seq,
            offset: 0,
            file: 0,
            cost_end: 0,
            origin: 0,
            text: Text::from(text.to_string()),
        }
    }

    /// Every line a cursor has ready now: `seq` per line, `gap A-B` per gap.
    fn drain(cursor: &mut Cursor) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(delivery) = cursor.try_next().unwrap() {
            match &delivery {
                Delivery::Gap(g) => out.push(format!("gap {}-{}", g.from, g.to)),
                d => out.extend(d.lines().iter().map(|l| l.seq.to_string())),
            }
        }
        out
    }

    #[test]
    fn assign_numbers_from_one_and_returns_the_range() {
        let hub = Hub::new(vec!["a".into()], limits(), Default::default());
        assert_eq!(hub.epoch().len(), 16);
        // The source's numbers are ignored.
        assert_eq!(hub.publish_lines(vec![line(7, "a"), line(7, "b")]), 1..3);
        assert_eq!(hub.publish_lines(Vec::new()), 3..3);
        assert_eq!(hub.publish_lines(vec![line(0, "c")]), 3..4);
        let mut cursor = hub.subscribe(Start::Backlog(2), None);
        assert_eq!(drain(&mut cursor), ["2", "3"]);
    }

    /// An edge fed from a broker keeps the broker's numbers and epoch; a
    /// redelivered line is dropped, and numbers that skip are no gap.
    #[test]
    fn preserve_keeps_upstream_numbers_and_drops_repeats() {
        let hub = Hub::with_numbering(
            vec!["a".into()],
            limits(),
            Default::default(),
            Numbering::Preserve {
                epoch: "LOGTAIL@2026-01-01T00:00:00Z".into(),
            },
        );
        assert_eq!(hub.epoch(), "LOGTAIL@2026-01-01T00:00:00Z");
        let mut live = hub.subscribe(Start::Backlog(0), None);
        assert_eq!(hub.publish_lines(vec![line(5, "a"), line(6, "b")]), 5..7);
        assert_eq!(drain(&mut live), ["5", "6"]);
        // At or below the last one kept: dropped, also within one batch.
        let batch = vec![
            line(6, "again"),
            line(4, "old"),
            line(9, "c"),
            line(9, "c'"),
        ];
        assert_eq!(hub.publish_lines(batch), 9..10);
        assert_eq!(hub.publish_lines(vec![line(2, "old")]), 10..10);
        assert_eq!(hub.last_seq(), 9);
        hub.publish_lines(vec![line(12, "d"), line(13, "e")]);
        assert_eq!(drain(&mut live), ["9", "12", "13"]);
        // Late subscribers find lines by number, with no gap for numbers
        // that were never published here.
        let mut since = hub.subscribe(
            Start::Since {
                seq: 6,
                epoch: Some(hub.epoch().to_string()),
            },
            None,
        );
        assert_eq!(drain(&mut since), ["9", "12", "13"]);
        let mut backlog = hub.subscribe(Start::Backlog(3), None);
        assert_eq!(drain(&mut backlog), ["9", "12", "13"]);
        let mut from_start = hub.subscribe(
            Start::Since {
                seq: 0,
                epoch: None,
            },
            None,
        );
        assert_eq!(drain(&mut from_start), ["5", "6", "9", "12", "13"]);
        // The notice follows the last line kept.
        hub.publish_notice(0, NoticeKind::Rotated);
        match live.try_next().unwrap() {
            Some(Delivery::Notice(n)) => assert_eq!(n.after_seq, 13),
            other => panic!("{other:?}"),
        }
    }

    /// With preserved numbers, lines evicted from the history are still a
    /// gap for a cursor that wanted them.
    #[test]
    fn preserve_reports_evicted_lines_as_a_gap() {
        let mut small = limits();
        small.history_bytes = 2 * history::line_cost(1);
        let hub = Hub::with_numbering(
            vec!["a".into()],
            small,
            Default::default(),
            Numbering::Preserve { epoch: "e".into() },
        );
        for seq in [10, 20, 30, 40] {
            hub.publish_lines(vec![line(seq, "x")]);
        }
        let mut cursor = hub.subscribe(
            Start::Since {
                seq: 15,
                epoch: None,
            },
            None,
        );
        assert_eq!(drain(&mut cursor), ["gap 16-20", "30", "40"]);
    }
}
