//! Lines older than the history: the seam through which a cursor asks the
//! source that owns them.
//!
//! The hub keeps only the last `--history-bytes` of lines. Older ones may
//! still exist where the source got them — the file source re-reads them from
//! the followed file or the one it was rotated to, a broker source would ask
//! its stream — so the hub asks, through [`Replay`], and never knows how. A
//! hub without a replay (or a replay that cannot find the lines) sends a
//! `gap`, honestly.
//!
//! A replay is a small session ([`ReplayReader`]) rather than one call per
//! step: reading on from where the last step stopped saves finding and
//! re-reading the file each time. Its [`ReplayReader::read`] blocks (file
//! I/O), so the cursor runs it on tokio's blocking pool, never on a runtime
//! worker; the cursor moves only once a read has completed, so a read
//! cancelled midway is simply redone.

use super::Line;

/// Lines from the asked position up to (not including) `until` cannot be
/// replayed: deleted, rewritten, or never known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    pub until: u64,
}

/// Where a source's old lines can be read back. Implemented by sources
/// (the file source's index), called by cursors.
pub trait Replay: Send + Sync {
    /// A reader whose first line will be `from` (or the first line after it
    /// that still exists). Cheap: no I/O happens until [`ReplayReader::read`].
    fn open(&self, from: u64) -> Box<dyn ReplayReader>;
}

/// One cursor's replay in progress.
pub trait ReplayReader: Send + Sync {
    /// The `seq` the next [`read`](Self::read) starts at.
    fn next_seq(&self) -> u64;

    /// Blocking: the next lines, in `seq` order, each below `stop` (the
    /// oldest line the history holds), a bounded step's worth — or the range
    /// from [`next_seq`](Self::next_seq) on that is gone. `Ok` with no lines
    /// only when no line exists below `stop` (an edge's preserved upstream
    /// numbers skip over other subjects' lines): then `next_seq()` is `stop`.
    fn read(&mut self, stop: u64) -> Result<Vec<Line>, Gone>;
}
