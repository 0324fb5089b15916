//! Sources: where lines come from, and the narrow door through which they
//! reach the hub.
//!
//! A source (today [`file`], the followed files; later stdin or a broker)
//! owns everything about its data that the hub must not know: what it
//! reads, in what state each input is ([`Status`], for `/healthz`), and how
//! old lines are found again ([`Replay`], which it implements and hands to
//! the hub). It feeds the hub only through a [`Publisher`]: lines, notices,
//! and the replay — never the hub itself. (The replay traits are the hub's,
//! since the hub's cursors call them; they are re-exported here for
//! sources.)
//!
//! - [`Publisher`]: lines and notices in, `seq` ranges out; the status handle.
//! - [`Source`]: what the server holds for each running source.
//! - [`status`]: each input's state and offset.
//! - [`file`]: any number of files followed by name (`tail -F`).
//!
//! Adding a source is one module here that turns its input into
//! `Publisher::publish_lines` calls (and implements [`Source`]), plus one
//! line in `lib.rs` that starts it.

pub mod file;
pub mod nats;
pub mod status;
pub mod stdin;

use std::ops::Range;
use std::sync::Arc;

use crate::hub::{Hub, Line, NoticeKind};

pub use crate::hub::{Gone, Replay, ReplayReader};
pub use status::{FileState, FileStatus, Status};

/// A running source, held by the server for as long as it serves. Each kind
/// is started by its own constructor, given a [`Publisher`].
pub trait Source: Send + Sync {
    /// What it reads, for logs.
    fn describe(&self) -> String;

    /// Stops it: nothing is published once this returns, and its threads
    /// end. Calling it again does nothing.
    fn stop(&self);
}

/// What a source may do to the hub, and the state it reports. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    hub: Arc<Hub>,
    status: Status,
}

impl Publisher {
    /// Publishes into `hub`, reporting file states in `status`.
    pub fn new(hub: Arc<Hub>, status: Status) -> Publisher {
        Publisher { hub, status }
    }

    /// A new input, named `name` (its public name) and read from `path`
    /// (shown only with `--show-paths`): its file index, which its lines
    /// carry. A name seen before gets its old index back.
    pub fn add_input(&self, name: &str, path: String) -> u32 {
        let file = self.hub.register_file(name);
        self.status.add(file, name.to_string(), path);
        file
    }

    /// Whether an input named `name` is followed now.
    pub fn is_followed(&self, name: &str) -> bool {
        self.hub
            .file_index(name)
            .is_some_and(|file| self.status.contains(file))
    }

    /// Tells clients input `file` joined the stream (`added`).
    pub fn announce_added(&self, file: u32) {
        self.hub.publish_notice(file, NoticeKind::Added);
    }

    /// Where the input named `name` is read from, if it is followed now.
    pub fn followed_path(&self, name: &str) -> Option<String> {
        let file = self.hub.file_index(name)?;
        self.status.path_of(file)
    }

    /// The file index `name` has, if it was ever named.
    pub fn file_index(&self, name: &str) -> Option<u32> {
        self.hub.file_index(name)
    }

    /// Input `file` is no longer followed; clients are told (`removed`).
    pub fn remove_input(&self, file: u32) {
        self.hub.publish_notice(file, NoticeKind::Removed);
        self.status.remove(file);
        self.hub.metrics.file_removed(&self.hub.file_name(file));
    }

    /// `bytes` more bytes were read from input `file` (newlines and all).
    pub fn bytes_read(&self, file: u32, bytes: u64) {
        self.hub
            .metrics
            .bytes_read(&self.hub.file_name(file), bytes);
    }

    /// Publishes one batch of consecutive lines (one read of one input);
    /// returns the `seq` range they were given, one per line, in order.
    pub fn publish_lines(&self, lines: Vec<Line>) -> Range<u64> {
        let Some(file) = lines.first().map(|l| l.file) else {
            return self.hub.publish_lines(lines);
        };
        let count = lines.len() as u64;
        let seqs = self.hub.publish_lines(lines);
        self.status.count_lines(file, count);
        seqs
    }

    /// Tells clients what happened to file `file`, and records the state it
    /// leaves the file in (read up to `offset`).
    pub fn notice(&self, file: u32, kind: NoticeKind, offset: u64) {
        let state = match kind {
            NoticeKind::Waiting => Some(FileState::Waiting),
            NoticeKind::Rotated | NoticeKind::Truncated | NoticeKind::Following => {
                Some(FileState::Following)
            }
            NoticeKind::Ended => Some(FileState::Ended),
            NoticeKind::Added | NoticeKind::Removed | NoticeKind::Unpublished { .. } => None,
        };
        if let Some(state) = state {
            self.status.set(file, state, offset);
        }
        self.hub.publish_notice(file, kind);
    }

    /// An edge's consumer handed on the stream's message `seq` (for `/metrics`).
    pub fn edge_consumed(&self, seq: u64) {
        self.hub.metrics.edge_consumed(seq);
    }

    /// The status handle: the source adds, updates and removes its inputs there.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Where the hub asks for lines older than its history from now on.
    /// One source per hub owns the old lines; a second replay is refused.
    pub fn serve_replay(&self, replay: Arc<dyn Replay>) {
        if !self.hub.set_replay(replay) {
            tracing::warn!("this hub already replays from another source; ignoring a second one");
        }
    }
}
