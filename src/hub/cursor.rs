//! A client's position in the stream of lines.
//!
//! A cursor hands out, in order and exactly once, every line from its start
//! on: live batches straight from the broadcast receiver while it keeps up,
//! and slices of the history whenever it does not (backlog, `since=`, a
//! `Lagged` receiver, a batch that does not follow on). Lines are identified
//! by `seq`, so the seam between history and live lines can have neither a
//! gap nor a duplicate. Lines older than the history come from the source's
//! [`Replay`](super::Replay), read on the blocking pool. It also decides when a client is too slow: when the
//! newest line has been more than `--client-queue` bytes ahead of it for
//! longer than the grace period (`--send-timeout`).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::replay::{Gone, ReplayReader};
use super::{Batch, Hub, Line, LineFilter, Notice, Published, Selection};

/// Lines replayed from the history per step: bounds both the time the hub
/// lock is held and the size of one delivery.
const REPLAY_LINES: usize = 1024;
const REPLAY_BYTES: usize = 1 << 20;

/// Why a range of lines cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The lines are older than the history holds.
    Evicted,
    /// The client's `seq` comes from another server life (another epoch).
    Epoch,
}

/// An inclusive range of `seq` that will not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
    pub reason: GapReason,
}

/// What a cursor hands out next.
#[derive(Debug)]
pub enum Delivery {
    /// Lines `batch.lines[start..]`, straight from the broadcast.
    Live { batch: Arc<Batch>, start: usize },
    /// Lines copied from the history.
    Replay(Vec<Line>),
    /// A file event.
    Notice(Arc<Notice>),
    /// Lines that cannot be delivered.
    Gap(Gap),
}

impl Delivery {
    /// The lines in this delivery (none for notices and gaps).
    pub fn lines(&self) -> &[Line] {
        match self {
            Delivery::Live { batch, start } => &batch.lines[*start..],
            Delivery::Replay(lines) => lines,
            Delivery::Notice(_) | Delivery::Gap(_) => &[],
        }
    }
}

/// What a cursor does about a subscriber that falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LagPolicy {
    /// A client: more than `--client-queue` behind for longer than the
    /// grace, it is too slow ([`CursorError::TooSlow`]) and is closed, to
    /// resume with `since=`.
    #[default]
    Close,
    /// A publisher to a broker (or anything that must not lose lines while
    /// the server can still give them): never too slow; it replays from the
    /// history (or the file) however far behind it is.
    Replay,
}

/// Why a cursor stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorError {
    /// The client fell more than `--client-queue` bytes behind.
    TooSlow,
    /// The hub is gone (the server is stopping).
    Closed,
}

/// See the module docs.
pub struct Cursor {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Published>,
    next_seq: u64,
    /// The `id` of the next notice this cursor may hand out: each is handed
    /// out once, whether it came live or from the history.
    next_notice: u64,
    /// The newest `seq` when the client subscribed.
    subscribed_at: u64,
    replaying: bool,
    /// Accounting bytes published when the client subscribed: a client that
    /// asks for old lines is not "behind" for having asked.
    baseline_cost: u64,
    delivered_cost: u64,
    pending_gap: Option<Gap>,
    files: Option<Arc<Selection>>,
    matches: Option<LineFilter>,
    /// The source's replay in progress (lines older than the history).
    disk: Option<Box<dyn ReplayReader>>,
    /// Disk replay must stop before this `seq` (the history has it).
    disk_stop: u64,
    /// Since when the client has been more than `client_queue` behind.
    behind_since: Option<Instant>,
    lag_policy: LagPolicy,
}

/// What a step without the receiver found.
enum Step {
    Ready(Delivery),
    /// Old lines must be read from disk (blocking I/O, done off the runtime).
    Disk,
    Idle,
}

/// Where a new cursor starts, as [`Hub::subscribe`] decided it.
pub(super) struct StartAt {
    pub next_seq: u64,
    /// The first notice it may hand out (see [`Notice::id`]).
    pub next_notice: u64,
    /// The newest `seq` when it subscribed.
    pub subscribed_at: u64,
    /// Accounting bytes published when it subscribed.
    pub baseline_cost: u64,
    pub gap: Option<Gap>,
}

impl Cursor {
    pub(super) fn new(
        hub: Arc<Hub>,
        rx: broadcast::Receiver<Published>,
        at: StartAt,
        files: Option<Arc<Selection>>,
        matches: Option<LineFilter>,
    ) -> Cursor {
        let StartAt {
            next_seq,
            next_notice,
            subscribed_at,
            baseline_cost,
            gap,
        } = at;
        Cursor {
            hub,
            rx,
            replaying: next_seq <= subscribed_at || next_notice == 0,
            next_seq,
            next_notice,
            subscribed_at,
            baseline_cost,
            delivered_cost: baseline_cost,
            pending_gap: gap,
            files,
            matches,
            disk: None,
            disk_stop: 0,
            behind_since: None,
            lag_policy: LagPolicy::Close,
        }
    }

    /// Sets what happens when this subscriber falls behind (a client is
    /// closed; a broker publisher replays).
    pub fn set_lag_policy(&mut self, policy: LagPolicy) {
        self.lag_policy = policy;
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The newest `seq` when this client subscribed (for the `hello` frame).
    pub fn subscribed_at(&self) -> u64 {
        self.subscribed_at
    }

    /// The `seq` of the next line this cursor will hand out.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether `line` passes this client's filter: one of its files, and
    /// matching its `grep=`.
    pub fn matches(&self, line: &Line) -> bool {
        self.wants_file(line.file) && self.matches.as_ref().is_none_or(|m| m(line))
    }

    /// Whether this client reads file `file` (its lines and its events).
    pub fn wants_file(&self, file: u32) -> bool {
        self.files
            .as_ref()
            .is_none_or(|f| f.contains(file, &self.hub))
    }

    /// Bytes of lines published that this client has not been handed yet.
    pub fn lag_bytes(&self) -> u64 {
        self.hub
            .cost_total()
            .saturating_sub(self.delivered_cost.max(self.baseline_cost))
    }

    /// The next delivery. Cancel-safe: the cursor's position changes only
    /// after an await completes (the broadcast receiver, or a disk read on
    /// the blocking pool — a disk read cancelled midway is simply redone).
    pub async fn next(&mut self) -> Result<Delivery, CursorError> {
        loop {
            match self.step()? {
                Step::Ready(d) => return Ok(d),
                Step::Disk => return Ok(self.read_disk().await),
                Step::Idle => {}
            }
            let item = self.rx.recv().await;
            if let Some(d) = self.take(item.map_err(|e| match e {
                RecvError::Closed => TryRecvError::Closed,
                RecvError::Lagged(n) => TryRecvError::Lagged(n),
            }))? {
                return Ok(d);
            }
        }
    }

    /// The next delivery if one is ready now, without waiting: lets a writer
    /// gather what is already there before it flushes.
    pub fn try_next(&mut self) -> Result<Option<Delivery>, CursorError> {
        loop {
            match self.step()? {
                Step::Ready(d) => return Ok(Some(d)),
                // Disk reads wait for `next`, after the writer has flushed.
                Step::Disk => return Ok(None),
                Step::Idle => {}
            }
            match self.rx.try_recv() {
                Err(TryRecvError::Empty) => return Ok(None),
                item => {
                    if let Some(d) = self.take(item)? {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }

    /// What can be handed out without the receiver: a pending gap, or a
    /// step of history replay.
    fn step(&mut self) -> Result<Step, CursorError> {
        if let Some(gap) = self.pending_gap.take() {
            return Ok(Step::Ready(Delivery::Gap(gap)));
        }
        let limits = self.hub.limits();
        if self.lag_policy == LagPolicy::Replay {
            self.behind_since = None;
        } else if self.lag_bytes() > limits.client_queue {
            let since = *self.behind_since.get_or_insert_with(Instant::now);
            if since.elapsed() > limits.lag_grace {
                return Err(CursorError::TooSlow);
            }
        } else {
            self.behind_since = None;
        }
        while self.replaying {
            if let Some(step) = self.replay_step() {
                return Ok(step);
            }
        }
        Ok(Step::Idle)
    }

    /// One step of history replay; `None` once caught up.
    fn replay_step(&mut self) -> Option<Step> {
        // A notice kept after the line before `next_seq` comes first; lines
        // are replayed only up to the next one.
        let due = self.hub.next_notice(self.next_notice, self.next_seq);
        let mut stop = u64::MAX;
        if let Some(notice) = &due {
            if notice.after_seq + 1 == self.next_seq {
                self.next_notice = notice.id + 1;
                return Some(Step::Ready(Delivery::Notice(Arc::clone(notice))));
            }
            stop = notice.after_seq;
        }
        let mut lines = Vec::new();
        let Some((first, _)) =
            self.hub
                .read_history(self.next_seq, REPLAY_LINES, REPLAY_BYTES, &mut lines)
        else {
            self.replaying = false;
            return None;
        };
        // By `seq`, not by count: preserved upstream numbering may skip.
        let copied = !lines.is_empty();
        lines.retain(|line| line.seq <= stop);
        if self.next_seq < first {
            // Older than the history: from the source, if it still has them.
            self.disk_stop = first;
            if self.hub.replay().is_some() {
                return Some(Step::Disk);
            }
            return Some(Step::Ready(self.gap_until(first)));
        }
        if let Some(notice) = due
            && copied
            && lines.is_empty()
        {
            // No line left before the notice (numbering skipped over it).
            self.next_seq = notice.after_seq + 1;
            self.next_notice = notice.id + 1;
            return Some(Step::Ready(Delivery::Notice(notice)));
        }
        let Some(newest) = lines.last() else {
            self.replaying = false;
            return None;
        };
        self.next_seq = newest.seq + 1;
        self.delivered_cost = newest.cost_end;
        // Caught up only when a step finds nothing: a notice after the
        // newest line is still to come.
        Some(Step::Ready(Delivery::Replay(lines)))
    }

    /// A gap from `next_seq` up to (not including) `until`; moves past it.
    fn gap_until(&mut self, until: u64) -> Delivery {
        let gap = Gap {
            from: self.next_seq,
            to: until - 1,
            reason: GapReason::Evicted,
        };
        self.next_seq = until;
        Delivery::Gap(gap)
    }

    /// One step of disk replay, run on the blocking pool: old lines, or a
    /// gap when the source no longer holds them.
    async fn read_disk(&mut self) -> Delivery {
        let from = self.next_seq;
        let stop = self.disk_stop;
        let reader = match (self.disk.take(), self.hub.replay()) {
            (Some(reader), _) if reader.next_seq() == from => reader,
            (_, Some(replay)) => replay.open(from),
            (_, None) => return self.gap_until(stop),
        };
        let work = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let got = reader.read(stop);
            (reader, got)
        });
        match work.await {
            Ok((reader, Ok(lines))) => match lines.last() {
                Some(newest) if newest.seq >= from && newest.seq < stop => {
                    self.next_seq = newest.seq + 1;
                    self.disk = Some(reader);
                    Delivery::Replay(lines)
                }
                // No line exists in the range (preserved upstream numbers skip it).
                None if reader.next_seq() >= stop => {
                    self.next_seq = stop;
                    Delivery::Replay(lines)
                }
                _ => self.gap_until(stop),
            },
            // Not on disk after all (deleted, rewritten, shorter): a gap, honestly.
            Ok((_, Err(Gone { until }))) => {
                self.gap_until(until.clamp(from + 1, stop.max(from + 1)))
            }
            Err(err) => {
                tracing::warn!("replay from disk failed: {err}; sending a gap instead");
                self.gap_until(stop.max(from + 1))
            }
        }
    }

    /// Turns one receiver item into a delivery, or into a switch to replay.
    fn take(
        &mut self,
        item: Result<Published, TryRecvError>,
    ) -> Result<Option<Delivery>, CursorError> {
        match item {
            Ok(Published::Lines(batch)) => {
                let (Some(first), Some(last)) = (batch.lines.first(), batch.lines.last()) else {
                    return Ok(None);
                };
                if last.seq < self.next_seq {
                    return Ok(None); // already handed out from the history
                }
                if first.seq > self.next_seq {
                    self.replaying = true; // something was missed: the history has it
                    return Ok(None);
                }
                // By `seq`, not by subtraction: preserved numbers may skip.
                let start = batch.lines.partition_point(|l| l.seq < self.next_seq);
                self.next_seq = last.seq + 1;
                self.delivered_cost = last.cost_end;
                Ok(Some(Delivery::Live { batch, start }))
            }
            Ok(Published::Notice(notice)) => {
                if notice.id < self.next_notice {
                    return Ok(None); // already handed out from the history
                }
                if notice.after_seq + 1 == self.next_seq {
                    self.next_notice = notice.id + 1;
                    Ok(Some(Delivery::Notice(notice)))
                } else {
                    if notice.after_seq + 1 > self.next_seq {
                        // Lines before it were missed: the history has
                        // both, in order.
                        self.replaying = true;
                    }
                    Ok(None)
                }
            }
            Err(TryRecvError::Lagged(_)) => {
                self.replaying = true;
                Ok(None)
            }
            Err(TryRecvError::Closed) => Err(CursorError::Closed),
            Err(TryRecvError::Empty) => Ok(None),
        }
    }
}
