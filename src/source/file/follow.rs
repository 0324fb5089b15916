//! Following one file by name, as `tail -F` does: the state machine that
//! decides, on each wake-up, whether the file grew, was truncated, was
//! rotated, vanished or came back — and reads what is new.
//!
//! The rules (DESIGN.md, "Following a file"), and how each is detected:
//! - **Growth**: read from our offset to end of file, in large chunks.
//! - **Truncation**: after every read, the bytes just before the offset we
//!   read from (up to 64, kept from the previous read) are compared with what
//!   the file holds there now. Gone (the file is shorter than our offset) or
//!   different (it was truncated and quickly rewritten, even to a larger
//!   size, before we looked — which a size comparison, GNU tail's, misses):
//!   what that read returned is new content at the wrong place, so it is
//!   dropped and reading restarts at offset 0. Checking *after* the read, not
//!   before, also catches a truncation that lands between a check and a read.
//! - **Rotation**: the path names another file (device, inode) than the one we
//!   hold. We keep reading the old file — a writer that has not reopened yet
//!   still writes there — until the new file has data; then we read the old
//!   one to its end (once more *after* seeing that data: its writer may have
//!   written to the old file just before it moved) and switch to the new one
//!   at offset 0. So lines written to the old file just after the rename
//!   arrive before the new file's lines.
//! - **Deletion**: the path is gone; we keep the old file open (its writer
//!   may go on) and wait for the path to come back.
//! - **Permission denied** (at start or after a rotation): logged once, and
//!   retried on every wake-up (with inotify, any change in the directory — a
//!   `chmod` is one). A file we never read is read from offset 0.
//!
//! A partial line held when the file is rotated or truncated is flushed as a
//! line of its own, so nothing is lost.
//!
//! Events for JSON and SSE clients, placed in the stream of lines: `rotated`
//! and `truncated` between the last line of the old content and the first of
//! the new; `waiting` when the path goes missing or cannot be opened, and
//! `following` when a file is read again after a `waiting` — so those two
//! alternate, and a rotation with no wait in between is just `rotated`.
//!
//! Writes to a file the path no longer names (deleted, or rotated into
//! another directory) wake the follower through a watch on that file itself
//! ([`super::watch`]), for as long as we hold it; `--poll` reads them at its
//! next look.
//!
//! A pass reads at most [`PASS_BYTES`] (then says there is [`Pass::more`]),
//! so a file written faster than it is read cannot keep a reader thread
//! from the other files.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::hub::{Line, NoticeKind};
use crate::source::{FileState, Publisher};

use super::identity::{FileId, PathNow, kind_of, path_now};
use super::replay::{Recorder, ReplayIndex};
use crate::lines::{LineSplitter, RawLine, to_text};

thread_local! {
    /// Each reader thread's read buffer (see `read_to_eof`).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How much is read per `read(2)`; also the most one broadcast batch carries.
const CHUNK: usize = 128 * 1024;
/// How much one pass reads at most before letting other files have a turn.
pub const PASS_BYTES: usize = 8 * CHUNK;
/// How many bytes before our offset are compared to detect a rewrite.
const FINGERPRINT: usize = 64;
/// The budget of a read that must reach the end (the history at start-up,
/// the old file at a rotation).
const UNBOUNDED: usize = usize::MAX;

/// Sizes a follower reads with.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// A longer line is handed out in pieces (`--max-line-bytes`).
    pub max_line_bytes: usize,
    /// How much of the file's end is read at start-up, for the history.
    pub backlog_bytes: u64,
}

/// What a pass found out, for whoever drives the follower.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// What the path leads to may have changed: plan the watches again.
    pub rewatch: bool,
    /// The pass stopped at [`PASS_BYTES`] (or after many switches): there is
    /// more to read now, so give it another pass soon.
    pub more: bool,
}

/// The file we hold open and where we are in it.
struct OpenFile {
    file: File,
    id: FileId,
    splitter: LineSplitter,
    /// The lines' [`Line::origin`]: the file's identity, mixed again at each
    /// truncation (the same offsets then hold other lines).
    origin: u64,
    /// The last bytes read, ending at our offset.
    recent: Fingerprint,
    /// The path no longer names this file (or anything).
    path_gone: bool,
    /// The file's change times when the last pass ended (see
    /// [`Follower::looks_unchanged`]).
    seen: Option<Stamp>,
}

/// What a `stat` says of a file's content: its size and change times.
type Stamp = (u64, i64, i64, i64, i64);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    (
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

impl OpenFile {
    fn new(file: File, id: FileId, offset: u64, max_line: usize) -> OpenFile {
        OpenFile {
            file,
            id,
            splitter: LineSplitter::new(offset, max_line),
            origin: id.origin(),
            recent: Fingerprint::default(),
            path_gone: false,
            seen: None,
        }
    }

    fn offset(&self) -> u64 {
        self.splitter.end_offset()
    }
}

/// The last bytes read from a file (up to [`FINGERPRINT`]), ending at our
/// offset: compared with what the file holds there to detect a rewrite.
#[derive(Debug, Default)]
struct Fingerprint(Vec<u8>);

impl Fingerprint {
    /// Takes in bytes just read, so the fingerprint ends at the new offset.
    fn remember(&mut self, read: &[u8]) {
        let n = read.len();
        if n >= FINGERPRINT {
            self.0.clear();
            self.0.extend_from_slice(&read[n - FINGERPRINT..]);
        } else if n > 0 {
            let keep = (FINGERPRINT - n).min(self.0.len());
            self.0.drain(..self.0.len() - keep);
            self.0.extend_from_slice(read);
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

enum State {
    /// The file does not exist or cannot be opened yet.
    Waiting,
    Open(OpenFile),
}

/// Follows one path. Driven by one reader thread at a time; all I/O is blocking.
pub struct Follower {
    path: PathBuf,
    /// The name clients see, for logs.
    display: String,
    /// The file index its lines carry.
    file: u32,
    out: Publisher,
    recorder: Recorder,
    limits: ReadLimits,
    state: State,
    /// The last open error reported, so a retry that fails the same way is
    /// not logged again.
    reported: Option<io::ErrorKind>,
    /// A `waiting` event was published and no `following` since.
    waiting: bool,
    /// For a glob match: who reads which file, so that a file another
    /// follower reads (a rotated copy under a matching name) is not read
    /// again as new.
    claims: Option<Arc<super::claims::Claims>>,
    /// Test hook, run in a pass between reading the open file and looking at
    /// the path, where a writer's move to a new file can race with us.
    #[cfg(test)]
    between_read_and_stat: Option<Box<dyn FnMut() + Send>>,
}

impl Follower {
    /// A follower of `path` (absolute, as [`super::path::absolute`] makes
    /// it), shown as `display`, publishing as file `file` into `out` and
    /// indexing what it publishes in `index`.
    pub fn new(
        path: PathBuf,
        display: String,
        file: u32,
        out: Publisher,
        index: Arc<ReplayIndex>,
        limits: ReadLimits,
    ) -> Follower {
        Follower {
            path,
            // Logs name the file as clients see it (as typed), not by the
            // absolute path it was resolved to.
            display,
            file,
            out,
            recorder: Recorder::new(index, file),
            limits,
            state: State::Waiting,
            reported: None,
            waiting: false,
            claims: None,
            #[cfg(test)]
            between_read_and_stat: None,
        }
    }

    /// Opens the file at start-up: positioned at its end, with the history
    /// filled from its last lines. A missing file is waited for.
    pub fn start(&mut self) {
        match self.open() {
            Ok((file, id, len)) => {
                let history = self.limits.backlog_bytes.min(len);
                let from = len - history;
                self.recorder.begin(&self.path, id, id.origin());
                let mut of = OpenFile::new(file, id, from, self.limits.max_line_bytes);
                if let Err(err) = of.file.seek(SeekFrom::Start(from)) {
                    tracing::warn!(file = %self.display, "cannot seek: {err}");
                }
                // Fill the history from the tail of the file; the first line is
                // probably cut by our starting point, so it is skipped.
                let mut skip_first = from > 0 && !self.byte_before_is_newline(&of, from);
                let mut unbounded = UNBOUNDED;
                self.read_to_eof(&mut of, Some(len), &mut skip_first, &mut unbounded);
                if of.recent.is_empty() && len > 0 {
                    let n = (len as usize).min(FINGERPRINT);
                    let mut tail = [0u8; FINGERPRINT];
                    if of
                        .file
                        .read_exact_at(&mut tail[..n], len - n as u64)
                        .is_ok()
                    {
                        of.recent.remember(&tail[..n]);
                    }
                }
                if self.claims.is_some() {
                    // A glob match at start-up: its glob logs one line for all.
                    tracing::debug!(file = %self.display, offset = of.offset(), "following {}", self.display);
                } else {
                    tracing::info!(file = %self.display, offset = of.offset(), "following {}", self.display);
                }
                self.out
                    .status()
                    .set(self.file, FileState::Following, of.offset());
                self.report_position(&mut of);
                self.state = State::Open(of);
            }
            Err(err) => {
                self.report_open_error(&err);
                self.announce_waiting(0);
            }
        }
    }

    /// Opens only files no other follower reads or has read (see
    /// [`super::claims`]).
    pub fn set_claims(&mut self, claims: Arc<super::claims::Claims>) {
        self.claims = Some(claims);
    }

    /// The file read now and the offset read up to in it.
    pub fn reading(&self) -> Option<(FileId, u64)> {
        match &self.state {
            State::Open(of) => Some((of.id, of.offset())),
            State::Waiting => None,
        }
    }

    /// Whether this follower has nothing left to read, ever: its name names
    /// nothing, and the file it held (if any) is deleted and read to its
    /// end. (A file renamed away may still be written to: not finished.)
    pub fn finished(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let named = std::fs::symlink_metadata(&self.path).is_ok();
        match &self.state {
            State::Waiting => !named,
            State::Open(of) => {
                of.path_gone
                    && !named
                    && of
                        .file
                        .metadata()
                        .is_ok_and(|m| m.nlink() == 0 && m.len() <= of.offset())
            }
        }
    }

    fn byte_before_is_newline(&self, of: &OpenFile, at: u64) -> bool {
        let mut b = [0u8; 1];
        of.file.read_exact_at(&mut b, at - 1).is_ok() && b[0] == b'\n'
    }

    /// Whether the path names the file we read: not waiting for it, and not
    /// holding a file the path no longer names. Until then, what the path
    /// leads to may change at any wake-up (a directory or a link target
    /// appears), so the watches are re-planned after every pass.
    pub fn is_settled(&self) -> bool {
        matches!(&self.state, State::Open(of) if !of.path_gone)
    }

    /// The file held open while the path no longer names it: its descriptor
    /// and identity, so it can be watched itself.
    pub fn held(&self) -> Option<(RawFd, FileId)> {
        match &self.state {
            State::Open(of) if of.path_gone => Some((of.file.as_raw_fd(), of.id)),
            _ => None,
        }
    }

    /// One pass: whatever happened since the last one, catch up with it.
    pub fn catch_up(&mut self) -> Pass {
        self.catch_up_watching(&mut || {})
    }

    /// [`catch_up`](Self::catch_up), calling `opened` when a file just
    /// opened is about to be read (the path names it, nothing else is held):
    /// the moment to plan the watches for it, so that they are in place
    /// before it is read — and a watch only the old file needed is gone
    /// before a client can see the new file's lines.
    pub fn catch_up_watching(&mut self, opened: &mut dyn FnMut()) -> Pass {
        let mut pass = Pass::default();
        let mut budget = PASS_BYTES;
        // Bounded: each iteration either returns or switches to another file,
        // and a switch needs the path to name a new file with data.
        for _ in 0..16 {
            match std::mem::replace(&mut self.state, State::Waiting) {
                State::Waiting => match self.open() {
                    Ok((file, id, _)) => {
                        tracing::info!(file = %self.display, "following {} from its start", self.display);
                        self.reported = None;
                        pass.rewatch = true;
                        self.resume_following(0);
                        self.recorder.begin(&self.path, id, id.origin());
                        opened();
                        let mut of = OpenFile::new(file, id, 0, self.limits.max_line_bytes);
                        self.read_to_eof(&mut of, None, &mut false, &mut budget);
                        self.state = State::Open(of);
                        continue;
                    }
                    Err(err) => {
                        self.report_open_error(&err);
                        self.announce_waiting(0);
                        return pass;
                    }
                },
                State::Open(mut of) => {
                    let drained = self.read_to_eof(&mut of, None, &mut false, &mut budget);
                    #[cfg(test)]
                    if let Some(hook) = &mut self.between_read_and_stat {
                        hook();
                    }
                    match path_now(&self.path, of.id) {
                        PathNow::Same => {
                            if of.path_gone {
                                // Back under its name (renamed back, or a
                                // symlink pointed at it again).
                                of.path_gone = false;
                                pass.rewatch = true;
                                self.resume_following(of.offset());
                            }
                        }
                        PathNow::NotAFile(kind) => {
                            // A directory (or a FIFO…) where the file was: the
                            // name names nothing to follow for now, so the old
                            // file — its writer may go on — is read on.
                            if !of.path_gone {
                                of.path_gone = true;
                                pass.rewatch = true;
                                tracing::info!(file = %self.display, "{} is now {kind}; reading what is left of the old file and waiting for a regular file", self.display);
                            }
                            self.announce_waiting(of.offset());
                        }
                        PathNow::NewEmpty => {
                            // A new, still empty file: its writer has not moved
                            // to it yet, so keep reading the old one.
                            if !of.path_gone {
                                of.path_gone = true;
                                pass.rewatch = true;
                            }
                        }
                        PathNow::Replaced => {
                            // The new file has data, so its writer has moved to
                            // it — possibly after writing more to the old one
                            // since our read above: read the old one to its end
                            // now, then switch.
                            let mut unbounded = UNBOUNDED;
                            self.read_to_eof(&mut of, None, &mut false, &mut unbounded);
                            self.finish(&mut of);
                            tracing::info!(file = %self.display, "{} was rotated; following the new file", self.display);
                            self.out.notice(self.file, NoticeKind::Rotated, 0);
                            self.recorder.end();
                            pass.rewatch = true;
                            self.state = State::Waiting;
                            continue;
                        }
                        PathNow::Gone => {
                            if !of.path_gone {
                                of.path_gone = true;
                                pass.rewatch = true;
                                tracing::info!(file = %self.display, "{} was removed or renamed; reading what is left of it and waiting for it to come back", self.display);
                            }
                            self.announce_waiting(of.offset());
                        }
                        PathNow::Unknown(err) => {
                            if self.reported != Some(err.kind()) {
                                tracing::warn!(file = %self.display, "cannot stat {}: {err}", self.display);
                                self.reported = Some(err.kind());
                            }
                        }
                    }
                    self.report_position(&mut of);
                    self.state = State::Open(of);
                    pass.more = !drained;
                    return pass;
                }
            }
        }
        // Sixteen switches in one pass (a name swapped over and over): look
        // again soon rather than trust that an event is still to come.
        pass.more = true;
        pass
    }

    /// Reports what is read now (inode, size, offset) for `/files`.
    fn report_position(&self, of: &mut OpenFile) {
        let meta = of.file.metadata().ok();
        of.seen = meta.as_ref().map(stamp);
        let size = meta.map_or(of.offset(), |m| m.len());
        self.out
            .status()
            .set_position(self.file, of.id.ino, size, of.offset());
    }

    /// For `--poll`: whether a pass now would find nothing, told by two
    /// `stat`s and no read: the file held is read to its end, has the size
    /// and change times it had when the last pass ended (a truncation
    /// rewritten to the same size changes them), and the path still names
    /// it. Anything else (waiting, a path gone, a stat failing) says no.
    pub fn looks_unchanged(&self) -> bool {
        let State::Open(of) = &self.state else {
            return false;
        };
        if of.path_gone || of.seen.is_none() {
            return false;
        }
        let Ok(meta) = of.file.metadata() else {
            return false;
        };
        meta.len() == of.offset()
            && of.seen == Some(stamp(&meta))
            && matches!(path_now(&self.path, of.id), PathNow::Same)
    }

    /// Tells clients the file cannot be read for now, once per wait.
    fn announce_waiting(&mut self, offset: u64) {
        if !self.waiting {
            self.waiting = true;
            self.out.notice(self.file, NoticeKind::Waiting, offset);
        }
    }

    /// A file is being read again: tells clients if they were told we waited.
    fn resume_following(&mut self, offset: u64) {
        if self.waiting {
            self.waiting = false;
            self.out.notice(self.file, NoticeKind::Following, offset);
        } else {
            self.out
                .status()
                .set(self.file, FileState::Following, offset);
        }
    }

    /// Opens the path if it names a regular file; anything else is refused.
    /// `O_NONBLOCK`, because `open(2)` of a FIFO with no writer would block
    /// until one came (a regular file's reads ignore the flag).
    fn open(&self) -> io::Result<(File, FileId, u64)> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)?;
        let meta = file.metadata()?;
        regular(&meta)?;
        let id = FileId::of(&meta);
        if let Some(claims) = &self.claims
            && claims.owner_other_than(self.file, id, meta.len()).is_some()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it is the file another name of the glob reads (a rotated copy): not read again",
            ));
        }
        Ok((file, id, meta.len()))
    }

    fn report_open_error(&mut self, err: &io::Error) {
        if self.reported == Some(err.kind()) {
            return;
        }
        self.reported = Some(err.kind());
        if err.kind() == io::ErrorKind::NotFound {
            tracing::info!(file = %self.display, "waiting for {} to appear", self.display);
        } else if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            tracing::error!(file = %self.display, "cannot open {}: out of file descriptors ({err}); every followed file that exists holds one: raise the limit (ulimit -n, LimitNOFILE=) or follow fewer files; will retry when it changes", self.display);
        } else if err.kind() == io::ErrorKind::AlreadyExists {
            tracing::info!(file = %self.display, "not reading {}: {err}", self.display);
        } else {
            tracing::warn!(file = %self.display, "cannot open {}: {err}; will retry when it changes", self.display);
        }
    }

    /// The file was truncated (or rewritten) under us: hands out the partial
    /// line, tells clients, and starts over at offset 0.
    fn restart(&mut self, of: &mut OpenFile, was: u64) {
        let mut lines = Vec::new();
        of.splitter.flush(&mut lines);
        self.publish(lines, of.origin);
        of.origin = of
            .origin
            .rotate_left(17)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .max(1);
        let now = of.file.metadata().map_or(0, |m| m.len());
        if now < was {
            tracing::info!(file = %self.display, was, now, "{} was truncated; reading it again from its start", self.display);
        } else {
            tracing::info!(file = %self.display, was, now, "{} was truncated and rewritten past our offset; reading it again from its start", self.display);
        }
        self.out.notice(self.file, NoticeKind::Truncated, 0);
        self.recorder.truncated(of.origin);
        of.splitter.reset(0);
        of.recent.clear();
        if let Err(err) = of.file.seek(SeekFrom::Start(0)) {
            tracing::warn!(file = %self.display, "cannot seek: {err}");
        }
    }

    /// Reads from our offset to end of file (or to `limit`), at most
    /// `budget` bytes (counted down), publishing a batch of lines per read;
    /// restarts at 0 when a read shows the file was truncated or rewritten
    /// under us (see the module docs). Returns whether it reached the end.
    fn read_to_eof(
        &mut self,
        of: &mut OpenFile,
        limit: Option<u64>,
        skip_first: &mut bool,
        budget: &mut usize,
    ) -> bool {
        let mut lines = Vec::new();
        loop {
            let left = match limit {
                Some(limit) => limit.saturating_sub(of.offset()) as usize,
                None => CHUNK,
            };
            if left == 0 {
                return true;
            }
            let want = CHUNK.min(left).min(*budget);
            if want == 0 {
                return false;
            }
            let before = of.offset();
            // Read into this reader thread's buffer, not one per file: ten
            // thousand followers must not hold ten thousand read buffers.
            let name = &self.display;
            let read = SCRATCH.with_borrow_mut(|scratch| {
                if scratch.len() < want {
                    scratch.resize(want, 0);
                }
                let spare = &mut scratch[..want];
                let n = match of.file.read(spare) {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
                    Err(err) => {
                        tracing::warn!(file = %name, "read failed: {err}");
                        0
                    }
                };
                if before > 0 && !still_there(&of.file, before, &of.recent.0) {
                    return None;
                }
                of.recent.remember(&spare[..n]);
                of.splitter.take(&spare[..n]);
                Some(n)
            });
            let Some(n) = read else {
                self.restart(of, before);
                *skip_first = false;
                continue;
            };
            if n > 0 {
                self.out.bytes_read(self.file, n as u64);
            }
            *budget -= n;
            if n == 0 {
                return true;
            }
            of.splitter.drain(&mut lines);
            if *skip_first && !lines.is_empty() {
                lines.remove(0);
                *skip_first = false;
            }
            self.publish(std::mem::take(&mut lines), of.origin);
        }
    }

    /// The old file is done with: its partial line becomes a line.
    fn finish(&mut self, of: &mut OpenFile) {
        let mut lines = Vec::new();
        of.splitter.flush(&mut lines);
        self.publish(lines, of.origin);
    }

    /// Publishes one read's lines, then indexes them for replay (outside
    /// the hub's lock: only the `seq` range comes back).
    fn publish(&mut self, raw: Vec<RawLine>, origin: u64) {
        if raw.is_empty() {
            return;
        }
        let lines: Vec<Line> = raw
            .into_iter()
            .map(|raw| Line {
                seq: 0,
                offset: raw.offset,
                file: self.file,
                origin,
                cost_end: 0,
                text: to_text(raw.bytes),
            })
            .collect();
        let prepared = self.recorder.prepare(&lines);
        let seqs = self.out.publish_lines(lines);
        self.recorder.record(seqs, prepared);
    }
}

/// `Ok` for a regular file; for anything else an error saying what it is.
fn regular(meta: &std::fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let kind = if meta.is_dir() {
        io::ErrorKind::IsADirectory
    } else {
        io::ErrorKind::InvalidInput
    };
    Err(io::Error::new(
        kind,
        format!("it is {}, not a regular file", kind_of(meta)),
    ))
}

/// Whether the file still holds `recent` — the last bytes we read from it —
/// just before `offset`. False when it got shorter than `offset` or was
/// rewritten there: then it was truncated under us. With no fingerprint (none
/// read yet), only the size can tell.
fn still_there(file: &File, offset: u64, recent: &[u8]) -> bool {
    if recent.is_empty() {
        return file.metadata().map_or(true, |m| m.len() >= offset);
    }
    let mut now = [0u8; FINGERPRINT];
    let now = &mut now[..recent.len()];
    match file.read_exact_at(now, offset - recent.len() as u64) {
        Ok(()) => now == recent,
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => false,
        // An I/O error is no evidence of truncation.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::hub::{Cursor, Delivery, Hub, HubLimits, Start};
    use crate::source::Status;

    /// A follower for `DIR/app.log` and a live client of its hub.
    fn setup() -> (tempfile::TempDir, PathBuf, Follower, Cursor) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let hub = Hub::new(
            vec!["app.log".into()],
            HubLimits {
                history_bytes: 1 << 20,
                client_queue: 1 << 20,
                lag_grace: std::time::Duration::from_secs(5),
                max_line_bytes: 1 << 20,
            },
            Default::default(),
        );
        let cursor = hub.subscribe(Start::Backlog(0), None);
        let status = Status::default();
        status.add(0, "app.log".into(), "app.log".into());
        let limits = ReadLimits {
            max_line_bytes: 1 << 20,
            backlog_bytes: 1 << 20,
        };
        let follower = Follower::new(
            path.clone(),
            "app.log".into(),
            0,
            Publisher::new(hub, status),
            ReplayIndex::new(limits.max_line_bytes),
            limits,
        );
        (dir, path, follower, cursor)
    }

    /// What the client got since the last call: `text@offset` per line,
    /// `<event>` per event.
    fn seen(cursor: &mut Cursor) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(delivery) = cursor.try_next().unwrap() {
            match &delivery {
                Delivery::Notice(n) => out.push(format!("<{}>", n.kind.as_str())),
                d => out.extend(
                    d.lines()
                        .iter()
                        .map(|l| format!("{}@{}", l.text.as_str(), l.offset)),
                ),
            }
        }
        out
    }

    fn writer(path: &Path) -> File {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn writes_to_the_old_file_racing_the_switch_come_first() {
        let (dir, path, mut f, mut client) = setup();
        let mut old = writer(&path);
        f.start();
        old.write_all(b"a1\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["a1@0"]);

        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        // After our read of the old file and before our look at the path, the
        // writer finishes with the old file and moves to a new one.
        let new_path = path.clone();
        f.between_read_and_stat = Some(Box::new(move || {
            old.write_all(b"a2\na3-part").unwrap();
            writer(&new_path).write_all(b"b1\n").unwrap();
        }));
        f.catch_up();
        assert_eq!(
            seen(&mut client),
            ["a2@3", "a3-part@6", "<rotated>", "b1@0"]
        );
    }

    #[test]
    fn truncate_then_rewrite_larger_restarts_at_zero() {
        let (_dir, path, mut f, mut client) = setup();
        writer(&path);
        f.start();
        writer(&path).write_all(b"line 1\nline 2\npart").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["line 1@0", "line 2@7"]);
        // Truncated and rewritten past our offset (18) before we look.
        std::fs::write(&path, b"rewritten 1\nrewritten 2\nrewritten 3\n").unwrap();
        f.catch_up();
        assert_eq!(
            seen(&mut client),
            [
                "part@14",
                "<truncated>",
                "rewritten 1@0",
                "rewritten 2@12",
                "rewritten 3@24"
            ]
        );
    }

    #[test]
    fn rewrite_to_the_same_size_is_a_truncation() {
        let (_dir, path, mut f, mut client) = setup();
        writer(&path);
        f.start();
        writer(&path).write_all(b"aaaa\nbbbb\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["aaaa@0", "bbbb@5"]);
        std::fs::write(&path, b"cccc\ndddd\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<truncated>", "cccc@0", "dddd@5"]);
    }

    #[test]
    fn plain_truncation_and_growth() {
        let (_dir, path, mut f, mut client) = setup();
        let mut w = writer(&path);
        f.start();
        w.write_all(b"one\ntwo\n").unwrap();
        f.catch_up();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        f.catch_up();
        w.write_all(b"three\n").unwrap();
        f.catch_up();
        assert_eq!(
            seen(&mut client),
            ["one@0", "two@4", "<truncated>", "three@0"]
        );
        // Nothing new: nothing happens.
        f.catch_up();
        assert!(seen(&mut client).is_empty());
    }

    #[test]
    fn a_new_empty_file_does_not_end_the_old_one() {
        let (dir, path, mut f, mut client) = setup();
        let mut old = writer(&path);
        f.start();
        old.write_all(b"a1\n").unwrap();
        f.catch_up();
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        File::create(&path).unwrap();
        f.catch_up();
        old.write_all(b"a2\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["a1@0", "a2@3"]);
        writer(&path).write_all(b"b1\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<rotated>", "b1@0"]);
    }

    /// coreutils `wait`: the name a followed file was renamed to is not followed — a
    /// file moved over that name later is someone else's.
    #[test]
    fn the_name_a_file_was_renamed_to_is_not_followed() {
        let (dir, path, mut f, mut client) = setup();
        writer(&path);
        f.start();
        writer(&path).write_all(b"a1\n").unwrap();
        f.catch_up();
        let l = dir.path().join("l");
        std::fs::rename(&path, &l).unwrap();
        File::create(&path).unwrap();
        std::fs::rename(&path, &l).unwrap();
        writer(&l).write_all(b"NO\n").unwrap();
        f.catch_up();
        writer(&path).write_all(b"yes\n").unwrap();
        f.catch_up();
        assert_eq!(
            seen(&mut client),
            ["a1@0", "<waiting>", "<rotated>", "<following>", "yes@0"]
        );
    }

    /// A directory made where the file was is not a new file: the old one is read on.
    #[test]
    fn a_directory_over_the_path_does_not_end_the_old_file() {
        let (dir, path, mut f, mut client) = setup();
        let mut old = writer(&path);
        f.start();
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        std::fs::create_dir(&path).unwrap();
        f.catch_up();
        old.write_all(b"a1\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<waiting>", "a1@0"]);
        std::fs::remove_dir(&path).unwrap();
        writer(&path).write_all(b"b1\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<rotated>", "<following>", "b1@0"]);
    }

    #[test]
    fn waiting_and_following_alternate() {
        let (dir, path, mut f, mut client) = setup();
        f.start();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<waiting>"]);
        writer(&path).write_all(b"a1\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<following>", "a1@0"]);
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        f.catch_up();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<waiting>"]);
        writer(&path).write_all(b"b1\n").unwrap();
        f.catch_up();
        assert_eq!(seen(&mut client), ["<rotated>", "<following>", "b1@0"]);
    }
}
