//! A client's position in the stream of lines.
//!
//! A cursor hands out, in order and exactly once, every line from its start
//! on: live batches straight from the broadcast receiver while it keeps up,
//! and slices of the history whenever it does not (backlog, `since=`, a
//! `Lagged` receiver, a batch that does not follow on). Lines are identified
//! by `seq`, so the seam between history and live lines can have neither a
//! gap nor a duplicate. It also decides when a client is too slow: when the
//! newest line is more than `--client-queue` bytes ahead of it.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::{Batch, Hub, Line, Notice, Published};

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
    /// The newest `seq` when the client subscribed.
    subscribed_at: u64,
    replaying: bool,
    /// Accounting bytes published when the client subscribed: a client that
    /// asks for old lines is not "behind" for having asked.
    baseline_cost: u64,
    delivered_cost: u64,
    pending_gap: Option<Gap>,
    matches: Option<Arc<dyn Fn(&Line) -> bool + Send + Sync>>,
}

impl Cursor {
    pub(super) fn new(
        hub: Arc<Hub>,
        rx: broadcast::Receiver<Published>,
        next_seq: u64,
        subscribed_at: u64,
        baseline_cost: u64,
        gap: Option<Gap>,
        matches: Option<Arc<dyn Fn(&Line) -> bool + Send + Sync>>,
    ) -> Cursor {
        Cursor {
            hub,
            rx,
            replaying: next_seq <= subscribed_at,
            next_seq,
            subscribed_at,
            baseline_cost,
            delivered_cost: baseline_cost,
            pending_gap: gap,
            matches,
        }
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

    /// Whether `line` passes this client's filter.
    pub fn matches(&self, line: &Line) -> bool {
        self.matches.as_ref().is_none_or(|m| m(line))
    }

    /// Bytes of lines published that this client has not been handed yet.
    pub fn lag_bytes(&self) -> u64 {
        self.hub
            .cost_total()
            .saturating_sub(self.delivered_cost.max(self.baseline_cost))
    }

    /// The next delivery. Cancel-safe: it only awaits the broadcast receiver.
    pub async fn next(&mut self) -> Result<Delivery, CursorError> {
        loop {
            if let Some(d) = self.step()? {
                return Ok(d);
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
            if let Some(d) = self.step()? {
                return Ok(Some(d));
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
    fn step(&mut self) -> Result<Option<Delivery>, CursorError> {
        if let Some(gap) = self.pending_gap.take() {
            return Ok(Some(Delivery::Gap(gap)));
        }
        if self.lag_bytes() > self.hub.limits().client_queue {
            return Err(CursorError::TooSlow);
        }
        while self.replaying {
            if let Some(d) = self.replay_step() {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// One step of history replay; `None` once caught up.
    fn replay_step(&mut self) -> Option<Delivery> {
        let mut lines = Vec::new();
        let Some((first, last)) =
            self.hub
                .read_history(self.next_seq, REPLAY_LINES, REPLAY_BYTES, &mut lines)
        else {
            self.replaying = false;
            return None;
        };
        if self.next_seq < first {
            let gap = Gap {
                from: self.next_seq,
                to: first - 1,
                reason: GapReason::Evicted,
            };
            self.next_seq = first;
            return Some(Delivery::Gap(gap));
        }
        let Some(newest) = lines.last() else {
            self.replaying = false;
            return None;
        };
        self.next_seq = newest.seq + 1;
        self.delivered_cost = newest.cost_end;
        if newest.seq >= last {
            self.replaying = false;
        }
        Some(Delivery::Replay(lines))
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
                let start = (self.next_seq - first.seq) as usize;
                self.next_seq = last.seq + 1;
                self.delivered_cost = last.cost_end;
                Ok(Some(Delivery::Live { batch, start }))
            }
            Ok(Published::Notice(notice)) => {
                if notice.after_seq + 1 == self.next_seq {
                    Ok(Some(Delivery::Notice(notice)))
                } else {
                    if notice.after_seq + 1 > self.next_seq {
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
