//! The history: a byte-bounded ring of the most recent lines, and the file
//! events (notices) placed among them.
//!
//! It is what makes backlog, resume (`since=`) and recovery from a lagging
//! broadcast receiver possible without a per-client queue: every client reads
//! the same shared lines. Its size is bounded by `--history-bytes`, counted as
//! the lines' bytes plus a fixed per-line overhead, so memory stays bounded
//! whatever the line sizes.
//!
//! Notices are kept beside the lines for as long as the line before them is
//! (at most [`MAX_NOTICES`]), so a client that replays from the history — a
//! backlog, a resume, a receiver that lagged — gets `rotated`, `truncated`,
//! `waiting` and `following` where they happened, not only clients that
//! were live at the time.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Line, Notice};

/// Notices kept at most (a file flapping between waiting and following
/// with no line in between must not grow memory).
pub const MAX_NOTICES: usize = 4096;

/// Bookkeeping bytes counted for each line on top of its text, so that a
/// flood of empty lines is bounded too.
pub const LINE_OVERHEAD: u64 = 64;

/// The accounting size of one line.
pub fn line_cost(text_len: usize) -> u64 {
    text_len as u64 + LINE_OVERHEAD
}

/// Recent lines, increasing in `seq` (contiguous, unless the source
/// numbers lines itself and skips some).
#[derive(Debug)]
pub struct History {
    lines: VecDeque<Line>,
    bytes: u64,
    limit: u64,
    /// In publishing order (so by `id` and by `after_seq`).
    notices: VecDeque<Arc<Notice>>,
    /// The `seq` of the newest line evicted (0: none yet).
    evicted: u64,
}

impl History {
    pub fn new(limit: u64) -> Self {
        History {
            lines: VecDeque::new(),
            bytes: 0,
            limit,
            notices: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Appends a line (its `seq` must be above the last one), evicting the
    /// oldest lines past the limit. The newest line is always kept.
    pub fn push(&mut self, line: Line) {
        debug_assert!(self.lines.back().is_none_or(|l| l.seq < line.seq));
        self.bytes += line_cost(line.text.len());
        self.lines.push_back(line);
        while self.bytes > self.limit && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= line_cost(old.text.len());
                self.evicted = old.seq;
            }
        }
        // A notice after an evicted line can no longer be placed in a replay.
        let first = self.first_seq().unwrap_or(0);
        while self
            .notices
            .front()
            .is_some_and(|n| n.after_seq + 1 < first)
        {
            self.notices.pop_front();
        }
    }

    /// Keeps a notice (published after the newest line).
    pub fn push_notice(&mut self, notice: Arc<Notice>) {
        if self.notices.len() == MAX_NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(notice);
    }

    /// The first notice kept with `id >= min_id` that sits at or after
    /// `seq` (its `after_seq + 1 >= seq`): the next one a replay from `seq`
    /// must hand out, before the lines after it.
    pub fn next_notice(&self, min_id: u64, seq: u64) -> Option<Arc<Notice>> {
        self.notices
            .iter()
            .find(|n| n.id >= min_id && n.after_seq + 1 >= seq)
            .cloned()
    }

    /// Accounting bytes held now (never above the limit, except for a single
    /// line larger than the limit).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The oldest retained `seq`, if any.
    pub fn first_seq(&self) -> Option<u64> {
        self.lines.front().map(|l| l.seq)
    }

    /// The lowest `seq` the history still answers for: one above the newest
    /// line evicted. The same as [`first_seq`](Self::first_seq) when numbers
    /// are contiguous; below it when they skip, so that numbers never
    /// published are not mistaken for lines lost.
    pub fn owed_from(&self) -> u64 {
        self.evicted + 1
    }

    /// The newest retained `seq`, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.lines.back().map(|l| l.seq)
    }

    /// The `seq` of the `n`th newest line (1: the newest), or of the oldest
    /// when fewer are retained; `None` when empty or `n` is 0.
    pub fn nth_last_seq(&self, n: usize) -> Option<u64> {
        if n == 0 {
            return None;
        }
        self.lines
            .get(self.lines.len().saturating_sub(n))
            .map(|l| l.seq)
    }

    /// Index in the ring of the first line at or after `seq`.
    fn index_of(&self, seq: u64) -> usize {
        match (self.first_seq(), self.last_seq()) {
            (Some(first), _) if seq <= first => 0,
            (_, Some(last)) if seq > last => self.lines.len(),
            // Contiguous numbering (the usual case): a subtraction.
            (Some(first), Some(last)) if last - first + 1 == self.lines.len() as u64 => {
                (seq - first) as usize
            }
            _ => self.lines.partition_point(|l| l.seq < seq),
        }
    }

    /// Copies (cheaply: shared buffers) up to `max_lines` lines and about
    /// `max_bytes` of text starting at `seq` (or at the oldest retained line
    /// when `seq` is older) into `out`.
    pub fn copy_from(&self, seq: u64, max_lines: usize, max_bytes: usize, out: &mut Vec<Line>) {
        let mut bytes = 0usize;
        for line in self.lines.range(self.index_of(seq)..).take(max_lines) {
            if bytes > 0 && bytes + line.text.len() > max_bytes {
                break;
            }
            bytes += line.text.len();
            out.push(line.clone());
        }
    }

    /// Copies up to `max_lines` lines that end just before `seq` (newest
    /// last): used to walk the history backwards in steps.
    pub fn copy_before(&self, seq: u64, max_lines: usize, out: &mut Vec<Line>) {
        let end = self.index_of(seq);
        let start = end.saturating_sub(max_lines);
        out.extend(self.lines.range(start..end).cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::Text;

    fn line(seq: u64, text: &str) -> Line {
        Line {
            seq,
            offset: 0,
            file: 0,
            cost_end: 0,
            origin: 0,
            text: Text::from(text),
        }
    }

    #[test]
    fn evicts_oldest_past_the_limit() {
        let mut h = History::new(3 * line_cost(4));
        for seq in 1..=5 {
            h.push(line(seq, "abcd"));
        }
        assert_eq!((h.first_seq(), h.last_seq()), (Some(3), Some(5)));
        assert!(h.bytes() <= 3 * line_cost(4));
    }

    #[test]
    fn keeps_a_single_oversized_line() {
        let mut h = History::new(10);
        h.push(line(1, "a long line, longer than the limit"));
        assert_eq!(h.len(), 1);
        h.push(line(2, "another"));
        assert_eq!((h.first_seq(), h.len()), (Some(2), 1));
    }

    #[test]
    fn copies_ranges() {
        let mut h = History::new(1 << 20);
        for seq in 1..=10 {
            h.push(line(seq, "x"));
        }
        let mut out = Vec::new();
        h.copy_from(4, 3, usize::MAX, &mut out);
        assert_eq!(out.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
        out.clear();
        h.copy_from(0, 2, usize::MAX, &mut out);
        assert_eq!(out.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![1, 2]);
        out.clear();
        h.copy_from(11, 2, usize::MAX, &mut out);
        assert!(out.is_empty());
        h.copy_before(4, 5, &mut out);
        assert_eq!(out.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(h.nth_last_seq(1), Some(10));
        assert_eq!(h.nth_last_seq(3), Some(8));
        assert_eq!(h.nth_last_seq(50), Some(1));
        assert_eq!(h.nth_last_seq(0), None);
        assert_eq!(h.owed_from(), 1);
    }

    /// Numbers given by the source may skip: ranges are still found by
    /// `seq`, and only evicted lines are owed.
    #[test]
    fn copies_ranges_when_numbers_skip() {
        let mut h = History::new(5 * line_cost(1));
        for seq in [3, 4, 9, 10, 20] {
            h.push(line(seq, "x"));
        }
        let seqs = |h: &History, from: u64| {
            let mut out = Vec::new();
            h.copy_from(from, 10, usize::MAX, &mut out);
            out.iter().map(|l| l.seq).collect::<Vec<_>>()
        };
        assert_eq!(seqs(&h, 5), [9, 10, 20]);
        assert_eq!(seqs(&h, 10), [10, 20]);
        assert!(seqs(&h, 21).is_empty());
        let mut out = Vec::new();
        h.copy_before(10, 10, &mut out);
        assert_eq!(out.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![3, 4, 9]);
        assert_eq!(h.nth_last_seq(2), Some(10));
        assert_eq!(h.owed_from(), 1, "nothing evicted: everything is owed");
        h.push(line(30, "x"));
        assert_eq!((h.first_seq(), h.owed_from()), (Some(4), 4));
        h.push(line(31, "x"));
        assert_eq!((h.first_seq(), h.owed_from()), (Some(9), 5));
    }
}
