//! Resume beyond memory: replaying old lines from the files themselves.
//!
//! The hub's history holds the last `--history-bytes` of lines. A client that
//! comes back after a long disconnect asks for older lines; most of the time
//! they are still on disk — in the file we follow, or in the file it was just
//! rotated to (`app.log.1`). So the file source keeps a small sparse index
//! from `seq` to (file generation, byte offset), and implements the hub's
//! [`Replay`] with it: re-reading a file from an entry with the same splitter
//! the follower uses gives the same lines, with the same pieces, and so the
//! same `seq` numbers.
//!
//! A *generation* is one stretch of one file read from start to end: it
//! begins when a follower opens a file and ends at rotation or truncation. A
//! truncated generation's bytes are gone, so its entries are dropped; a
//! rotated one lives on under its new name, which we find by identity
//! (device, inode) in the file's directory. Each entry also keeps a hash of
//! its line, checked before replaying, so a file rewritten under the same
//! name is never replayed as if it were the old one: a `gap` is sent only
//! for what is really gone.
//!
//! Many files share one `seq` space, so one file's lines are not consecutive
//! in it: each entry starts a *run*, lines `seq..=last` that are consecutive
//! both in `seq` and in one file. A run grows while its follower publishes
//! batch after batch with nothing in between; another file's lines, or
//! [`ENTRY_EVERY`] bytes, start a new one. A `seq` outside every run (not
//! indexed yet, or pruned) is never guessed at: it is a gap.
//!
//! Followers write ([`Recorder`], one each, after publishing and outside the
//! hub's lock); replaying cursors read ([`FileReplay`]), on the blocking
//! pool. Each replaying cursor holds at most one file open.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::identity::FileId;
use crate::hub::{Gone, Line, Replay, ReplayReader};
use crate::lines::{LineSplitter, RawLine, to_text};

/// Bytes of lines between two index entries of one run.
pub const ENTRY_EVERY: u64 = 64 * 1024;
/// Index entries kept (the oldest go first): 65 536 × 64 KiB ≈ 4 GiB of one
/// busy file's log for about 3 MiB of memory. Many files writing in turn
/// need an entry per turn, so they are covered for fewer lines.
const MAX_ENTRIES: usize = 65_536;
/// How much one replay step reads.
const STEP_BYTES: usize = 256 * 1024;
/// Runs one replay step moves through at most (many small ones of
/// interleaved files): bounds the time one step takes.
const MAX_RUNS_PER_STEP: usize = 64;
/// Directory entries looked at when searching for a rotated file.
const MAX_SCAN: usize = 10_000;

#[derive(Debug, Clone)]
struct Generation {
    /// The file index its lines carry.
    file: u32,
    path: PathBuf,
    id: FileId,
    /// The [`Line::origin`] its lines carry.
    origin: u64,
    /// Rotated away (or its follower is gone): its partial last line was
    /// published, flushed, as a line.
    ended: bool,
    /// Index entries that point into it.
    entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The run's first line.
    seq: u64,
    /// Its last line: `seq..=last` are consecutive lines of one generation.
    last: u64,
    generation: u64,
    /// Byte offset of line `seq`.
    offset: u64,
    /// Hash of line `seq`'s bytes.
    check: u64,
}

fn check_of(text: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

#[derive(Debug, Default)]
struct Table {
    /// Sorted by `seq` (followers index in parallel, so not always appended).
    entries: VecDeque<Entry>,
    generations: HashMap<u64, Generation>,
    next_generation: u64,
}

impl Table {
    fn insert(&mut self, entry: Entry) {
        let at = self.entries.partition_point(|e| e.seq < entry.seq);
        self.entries.insert(at, entry);
        if let Some(g) = self.generations.get_mut(&entry.generation) {
            g.entries += 1;
        }
        while self.entries.len() > MAX_ENTRIES {
            if let Some(old) = self.entries.pop_front() {
                self.release(old.generation);
            }
        }
    }

    /// One entry of `generation` is gone: forget the generation once it has
    /// none left and no follower writes to it.
    fn release(&mut self, generation: u64) {
        if let Some(g) = self.generations.get_mut(&generation) {
            g.entries = g.entries.saturating_sub(1);
            if g.entries == 0 && g.ended {
                self.generations.remove(&generation);
            }
        }
    }

    /// Where `seq` is: in a run (its entry, its generation), or gone up to
    /// the next entry.
    fn locate(&self, seq: u64) -> Result<(Entry, Generation), Gone> {
        let idx = self.entries.partition_point(|e| e.seq <= seq);
        let next = self.entries.get(idx).map_or(u64::MAX, |e| e.seq);
        let Some(entry) = idx.checked_sub(1).and_then(|i| self.entries.get(i)) else {
            return Err(Gone { until: next });
        };
        match self.generations.get(&entry.generation) {
            Some(g) if seq <= entry.last => Ok((*entry, g.clone())),
            _ => Err(Gone { until: next }),
        }
    }

    /// Where the lines of `generation` from `seq` on end: the first entry
    /// of another generation after it (so a file that turns out to be gone
    /// is one gap, not one per run).
    fn generation_end(&self, seq: u64, generation: u64) -> u64 {
        let idx = self
            .entries
            .partition_point(|e| e.seq <= seq)
            .saturating_sub(1);
        let mut end = seq + 1;
        for e in self.entries.range(idx..) {
            if e.generation == generation {
                end = end.max(e.last + 1);
            } else if e.seq > seq {
                return e.seq;
            }
        }
        end
    }
}

/// The sparse index of one file source: written by its followers, read by
/// replaying cursors.
#[derive(Debug)]
pub struct ReplayIndex {
    table: Mutex<Table>,
    /// The followers' `--max-line-bytes`: replays must cut lines the same way.
    max_line: usize,
}

impl ReplayIndex {
    pub fn new(max_line: usize) -> Arc<ReplayIndex> {
        Arc::new(ReplayIndex {
            table: Mutex::new(Table::default()),
            max_line,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Plain data: a panic elsewhere leaves it usable (at worst a gap).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, file: u32, path: &Path, id: FileId, origin: u64) -> u64 {
        let mut table = self.lock();
        table.next_generation += 1;
        let generation = table.next_generation;
        table.generations.insert(
            generation,
            Generation {
                file,
                path: path.to_path_buf(),
                id,
                origin,
                ended: false,
                entries: 0,
            },
        );
        generation
    }

    fn end(&self, generation: u64) {
        let mut table = self.lock();
        if let Some(g) = table.generations.get_mut(&generation) {
            g.ended = true;
            if g.entries == 0 {
                table.generations.remove(&generation);
            }
        }
    }

    /// Drops `generation` and every entry into it (its bytes are gone).
    fn forget(&self, generation: u64) {
        let mut table = self.lock();
        table.entries.retain(|e| e.generation != generation);
        table.generations.remove(&generation);
    }

    /// Extends the run starting at `run` to `last`; false if that entry is
    /// no longer indexed.
    fn extend(&self, run: u64, last: u64) -> bool {
        let mut table = self.lock();
        let idx = table.entries.partition_point(|e| e.seq < run);
        match table.entries.get_mut(idx) {
            Some(e) if e.seq == run => {
                e.last = last;
                true
            }
            _ => false,
        }
    }

    fn insert(&self, entries: &[Entry]) {
        let mut table = self.lock();
        for entry in entries {
            table.insert(*entry);
        }
    }

    #[cfg(test)]
    fn entry_count(&self) -> usize {
        self.lock().entries.len()
    }
}

/// What one follower writes into the index: its current generation and run.
#[derive(Debug)]
pub struct Recorder {
    index: Arc<ReplayIndex>,
    file: u32,
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    generation: u64,
    path: PathBuf,
    id: FileId,
    /// The first `seq` of the run being extended, and its last so far.
    run: Option<(u64, u64)>,
    /// Bytes of lines recorded since the run's last entry.
    since_entry: u64,
}

/// What [`Recorder::prepare`] noted about a batch before it was published:
/// the lines that may become entries.
#[derive(Debug)]
struct Mark {
    /// Index in the batch.
    at: usize,
    offset: u64,
    check: u64,
    /// [`ENTRY_EVERY`] bytes since the last entry: an entry even where the
    /// run goes on.
    checkpoint: bool,
}

#[derive(Debug, Default)]
pub struct Prepared {
    /// The first line and each line past [`ENTRY_EVERY`] bytes.
    marks: Vec<Mark>,
    since_entry: u64,
}

impl Recorder {
    pub fn new(index: Arc<ReplayIndex>, file: u32) -> Recorder {
        Recorder {
            index,
            file,
            current: None,
        }
    }

    /// The follower opened `path`, identified by `id`: lines recorded from
    /// now on are read from it.
    pub fn begin(&mut self, path: &Path, id: FileId, origin: u64) {
        self.end();
        let generation = self.index.begin(self.file, path, id, origin);
        self.current = Some(Current {
            generation,
            path: path.to_path_buf(),
            id,
            run: None,
            since_entry: 0,
        });
    }

    /// The current file was rotated away (or is no longer followed).
    pub fn end(&mut self) {
        if let Some(current) = self.current.take() {
            self.index.end(current.generation);
        }
    }

    /// The current file's bytes are gone (truncation): forget them; it is
    /// read again from offset 0.
    /// Its lines carry `origin` from now on.
    pub fn truncated(&mut self, origin: u64) {
        if let Some(current) = self.current.take() {
            self.index.forget(current.generation);
            self.begin(&current.path, current.id, origin);
        }
    }

    /// Notes what must be known of `lines` (about to be published) to index them.
    pub fn prepare(&self, lines: &[Line]) -> Prepared {
        let mut since = self.current.as_ref().map_or(0, |c| c.since_entry);
        let mut prepared = Prepared::default();
        for (at, line) in lines.iter().enumerate() {
            let checkpoint = since >= ENTRY_EVERY;
            if at == 0 || checkpoint {
                prepared.marks.push(Mark {
                    at,
                    offset: line.offset,
                    check: check_of(line.text.as_bytes()),
                    checkpoint,
                });
                if checkpoint {
                    since = 0;
                }
            }
            since += line.text.len() as u64 + 1;
        }
        prepared.since_entry = since;
        prepared
    }

    /// Records lines published as `seqs` (one `seq` per line, as
    /// [`prepare`](Self::prepare) saw them).
    pub fn record(&mut self, seqs: Range<u64>, prepared: Prepared) {
        let Some(current) = &mut self.current else {
            return;
        };
        if seqs.is_empty() {
            return;
        }
        let last = seqs.end - 1;
        let mut entries: Vec<Entry> = Vec::new();
        let mut extend_to = last;
        let follows_on = current
            .run
            .is_some_and(|(_, run_last)| run_last + 1 == seqs.start);
        for mark in prepared.marks {
            if follows_on && !mark.checkpoint {
                continue; // the run goes on: no entry needed
            }
            let seq = seqs.start + mark.at as u64;
            match entries.last_mut() {
                Some(prev) => prev.last = seq - 1,
                None => extend_to = seq.saturating_sub(1),
            }
            entries.push(Entry {
                seq,
                last,
                generation: current.generation,
                offset: mark.offset,
                check: mark.check,
            });
        }
        if let Some((run, _)) = current.run.filter(|_| follows_on)
            && !(extend_to >= run && self.index.extend(run, extend_to))
        {
            // Its entry was pruned: lines from here to the next entry are unindexed.
            current.run = None;
        }
        self.index.insert(&entries);
        current.run = match (entries.last(), current.run) {
            (Some(e), _) => Some((e.seq, last)),
            (None, Some((run, _))) => Some((run, last)),
            (None, None) => None,
        };
        current.since_entry = prepared.since_entry;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.end();
    }
}

/// The file source's [`Replay`]: reads old lines back through the index.
pub struct FileReplay {
    index: Arc<ReplayIndex>,
}

impl FileReplay {
    pub fn new(index: Arc<ReplayIndex>) -> FileReplay {
        FileReplay { index }
    }
}

impl Replay for FileReplay {
    fn open(&self, from: u64) -> Box<dyn ReplayReader> {
        Box::new(Reader {
            index: Arc::clone(&self.index),
            seq: from,
            run: None,
        })
    }
}

/// One cursor's replay: the file of the run being read, positioned at its
/// next line.
struct Reader {
    index: Arc<ReplayIndex>,
    /// The `seq` of the next line to hand out.
    seq: u64,
    run: Option<Run>,
}

struct Run {
    generation: u64,
    file_index: u32,
    /// [`FileId::origin`] of the file read.
    origin: u64,
    file: File,
    splitter: LineSplitter,
    pending: VecDeque<RawLine>,
    /// The `seq` of the next line the splitter produces, and the run's last.
    next: u64,
    last: u64,
    ended: bool,
    eof: bool,
    /// The hash the next line must have (the entry's line), until checked.
    check: Option<u64>,
}

/// Why a run could not be read on.
enum Broken {
    /// The file is gone, or holds other bytes than the index says.
    Gone,
}

impl Run {
    /// The offset of the next line the splitter produces.
    fn next_offset(&self) -> u64 {
        self.pending.front().map_or_else(
            || self.splitter.end_offset() - self.splitter.pending() as u64,
            |l| l.offset,
        )
    }

    /// Reads lines `from..stop` of this run into `out`, until [`STEP_BYTES`]
    /// have been read (counted in `read`) and something was found.
    fn step(
        &mut self,
        from: u64,
        stop: u64,
        out: &mut Vec<Line>,
        read: &mut usize,
    ) -> Result<(), Broken> {
        while self.next <= self.last && self.next < stop {
            let Some(raw) = self.pending.pop_front() else {
                if *read >= STEP_BYTES && !out.is_empty() {
                    return Ok(());
                }
                if self.eof {
                    // Shorter than the index says: the bytes are gone.
                    return Err(Broken::Gone);
                }
                let spare = self.splitter.spare(STEP_BYTES);
                let n = match self.file.read(spare) {
                    Ok(n) => n,
                    Err(err) => {
                        tracing::debug!("replay read failed: {err}");
                        0
                    }
                };
                self.splitter.commit(STEP_BYTES, n);
                *read += n;
                let mut lines = Vec::new();
                self.splitter.drain(&mut lines);
                if n == 0 {
                    // A generation that ended without a newline: its partial
                    // line was flushed as a line when it was rotated.
                    if self.ended {
                        self.splitter.flush(&mut lines);
                    }
                    self.eof = true;
                }
                self.pending.extend(lines);
                continue;
            };
            if let Some(check) = self.check.take()
                && check_of(&raw.bytes) != check
            {
                return Err(Broken::Gone);
            }
            let seq = self.next;
            self.next += 1;
            if seq >= from {
                out.push(Line {
                    seq,
                    offset: raw.offset,
                    file: self.file_index,
                    origin: self.origin,
                    cost_end: 0,
                    text: to_text(raw.bytes),
                });
            }
        }
        Ok(())
    }
}

impl Reader {
    /// Makes `self.run` the run holding `self.seq`, reusing the open file
    /// when it already stands there.
    fn position(&mut self) -> Result<(), Gone> {
        let (entry, generation) = self.index.lock().locate(self.seq)?;
        if let Some(run) = &mut self.run
            && run.generation == entry.generation
            && run.next_offset() == entry.offset
        {
            // The next run of the same file starts where we are.
            run.next = entry.seq;
            run.last = entry.last;
            run.ended = generation.ended;
            return Ok(());
        }
        let file = match self.run.take() {
            Some(run) if run.generation == entry.generation => Some(run.file),
            _ => None,
        };
        let opened = file.or_else(|| find_file(&generation.path, generation.id));
        let Some(mut file) = opened else {
            tracing::debug!(path = %generation.path.display(), "cannot replay: the file is gone");
            return Err(self.gone_from(&entry));
        };
        if file.seek(SeekFrom::Start(entry.offset)).is_err()
            || file.metadata().is_ok_and(|m| m.len() < entry.offset)
        {
            tracing::debug!(path = %generation.path.display(), "cannot replay: the file is shorter now");
            return Err(self.gone_from(&entry));
        }
        self.run = Some(Run {
            generation: entry.generation,
            file_index: generation.file,
            origin: generation.origin,
            file,
            splitter: LineSplitter::new(entry.offset, self.index.max_line),
            pending: VecDeque::new(),
            next: entry.seq,
            last: entry.last,
            ended: generation.ended,
            eof: false,
            check: Some(entry.check),
        });
        Ok(())
    }

    /// The gap when the generation of `entry` cannot be read: its lines
    /// from here on.
    fn gone_from(&self, entry: &Entry) -> Gone {
        Gone {
            until: self
                .index
                .lock()
                .generation_end(entry.seq, entry.generation)
                .max(self.seq + 1),
        }
    }
}

impl ReplayReader for Reader {
    fn next_seq(&self) -> u64 {
        self.seq
    }

    fn read(&mut self, stop: u64) -> Result<Vec<Line>, Gone> {
        self.read_lines(stop).map_err(|gone| Gone {
            until: gone.until.min(stop),
        })
    }
}

impl Reader {
    fn read_lines(&mut self, stop: u64) -> Result<Vec<Line>, Gone> {
        let mut out = Vec::new();
        let mut read = 0usize;
        for _ in 0..MAX_RUNS_PER_STEP {
            if self.seq >= stop || (read >= STEP_BYTES && !out.is_empty()) {
                break;
            }
            let in_run = self
                .run
                .as_ref()
                .is_some_and(|r| r.next == self.seq && r.next <= r.last);
            if !in_run && let Err(gone) = self.position() {
                if out.is_empty() {
                    return Err(gone);
                }
                break;
            }
            let Some(run) = &mut self.run else {
                break;
            };
            let stepped = run.step(self.seq, stop, &mut out, &mut read);
            if let Some(newest) = out.last() {
                self.seq = newest.seq + 1;
            }
            if let Err(Broken::Gone) = stepped {
                tracing::debug!("cannot replay: the file holds other bytes than were read from it");
                let run = self.run.take();
                if out.is_empty() {
                    let generation = run.map_or(0, |r| r.generation);
                    let until = self.index.lock().generation_end(self.seq, generation);
                    return Err(Gone {
                        until: until.max(self.seq + 1),
                    });
                }
                break;
            }
        }
        if out.is_empty() && self.seq < stop {
            // Unreachable (each run holds `self.seq`); never hand out nothing.
            return Err(Gone { until: stop });
        }
        Ok(out)
    }
}

/// Opens `path` for reading without ever blocking: `O_NONBLOCK`, because
/// `open(2)` of a FIFO put where the file was would wait for a writer (on a
/// blocking-pool thread, holding up shutdown). The caller checks what it is.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// The file with identity `id`: at `path` if it is still there, else under
/// another name in the same directory (where rotation puts it).
fn find_file(path: &Path, id: FileId) -> Option<File> {
    let same = |meta: &std::fs::Metadata| FileId::of(meta) == id && meta.is_file();
    if let Ok(file) = open_nonblocking(path)
        && file.metadata().is_ok_and(|m| same(&m))
    {
        return Some(file);
    }
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut dirs = vec![path.parent().map(Path::to_path_buf).unwrap_or_default()];
    if let Some(d) = target.parent() {
        dirs.push(d.to_path_buf());
    }
    for dir in dirs {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.take(MAX_SCAN).flatten() {
            if entry.metadata().is_ok_and(|m| same(&m))
                && let Ok(file) = open_nonblocking(&entry.path())
                && file.metadata().is_ok_and(|m| same(&m))
            {
                return Some(file);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::Text;

    fn lines(file: u32, offset: u64, texts: &[&str]) -> Vec<Line> {
        let mut off = offset;
        texts
            .iter()
            .map(|t| {
                let l = Line {
                    seq: 0,
                    offset: off,
                    file,
                    origin: 0,
                    cost_end: 0,
                    text: Text::from(*t),
                };
                off += t.len() as u64 + 1;
                l
            })
            .collect()
    }

    /// Records `batch` as published at `first..`.
    fn record(r: &mut Recorder, first: u64, batch: &[Line]) {
        let prepared = r.prepare(batch);
        r.record(first..first + batch.len() as u64, prepared);
    }

    fn seqs_and_texts(lines: &[Line]) -> Vec<(u64, u32, &str)> {
        lines
            .iter()
            .map(|l| (l.seq, l.file, l.text.as_str()))
            .collect()
    }

    fn id_of(path: &Path) -> FileId {
        FileId::of_path(path).unwrap()
    }

    #[test]
    fn replays_from_the_file_and_finds_a_rotated_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let index = ReplayIndex::new(1 << 20);
        let mut r = Recorder::new(Arc::clone(&index), 0);
        r.begin(&path, id_of(&path), 1);
        record(&mut r, 1, &lines(0, 0, &["a", "b", "c"]));
        // Rotated away: found again by identity under its new name.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        std::fs::write(&path, "d\n").unwrap();
        r.begin(&path, id_of(&path), 1);
        record(&mut r, 4, &lines(0, 0, &["d"]));
        assert_eq!(index.entry_count(), 2);

        let replay = FileReplay::new(Arc::clone(&index));
        let mut reader = replay.open(2);
        let got = reader.read(100).unwrap();
        assert_eq!(
            seqs_and_texts(&got),
            [(2, 0, "b"), (3, 0, "c"), (4, 0, "d")]
        );
        assert_eq!(reader.next_seq(), 5);
        assert_eq!(reader.read(100).map(|l| l.len()), Err(Gone { until: 100 }));
        // Stopped where the history begins.
        let mut reader = replay.open(1);
        assert_eq!(
            seqs_and_texts(&reader.read(3).unwrap()),
            [(1, 0, "a"), (2, 0, "b")]
        );
    }

    #[test]
    fn rewritten_content_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        let index = ReplayIndex::new(1 << 20);
        let mut r = Recorder::new(Arc::clone(&index), 0);
        r.begin(&path, id_of(&path), 1);
        record(&mut r, 1, &lines(0, 0, &["a", "b"]));
        std::fs::write(&path, "x\ny\n").unwrap(); // same inode, other bytes
        let mut reader = FileReplay::new(index).open(1);
        assert_eq!(reader.read(100).map(|l| l.len()), Err(Gone { until: 3 }));
    }

    #[test]
    fn truncation_forgets_the_generation() {
        let index = ReplayIndex::new(1 << 20);
        let mut r = Recorder::new(Arc::clone(&index), 0);
        r.begin(
            Path::new("/nonexistent/app.log"),
            FileId {
                dev: 1,
                ino: 2,
                born: 0,
            },
            1,
        );
        record(&mut r, 1, &lines(0, 0, &["a", "b"]));
        r.truncated(2);
        assert_eq!(
            index.lock().locate(1).map(|(e, _)| e.seq),
            Err(Gone { until: u64::MAX })
        );
        record(&mut r, 3, &lines(0, 0, &["c"]));
        assert_eq!(
            index.lock().locate(1).map(|(e, _)| e.seq),
            Err(Gone { until: 3 })
        );
        assert_eq!(index.lock().locate(3).map(|(e, _)| e.seq), Ok(3));
    }

    /// Two files publishing in turn: each run maps to its own file, and a
    /// replay across them hands out every line once, in `seq` order.
    #[test]
    fn interleaved_files_replay_each_line_from_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::write(&a, "a1\na2\na3\na4\n").unwrap();
        std::fs::write(&b, "b1\nb2\n").unwrap();
        let index = ReplayIndex::new(1 << 20);
        let mut ra = Recorder::new(Arc::clone(&index), 0);
        let mut rb = Recorder::new(Arc::clone(&index), 1);
        ra.begin(&a, id_of(&a), 1);
        rb.begin(&b, id_of(&b), 2);
        record(&mut ra, 1, &lines(0, 0, &["a1"]));
        record(&mut ra, 2, &lines(0, 3, &["a2"])); // extends a's run
        // b's batch is numbered after a's next one but indexed first.
        let a3 = lines(0, 6, &["a3"]);
        let b12 = lines(1, 0, &["b1", "b2"]);
        let pa = ra.prepare(&a3);
        let pb = rb.prepare(&b12);
        rb.record(4..6, pb);
        ra.record(3..4, pa);
        record(&mut ra, 6, &lines(0, 9, &["a4"]));
        assert_eq!(index.entry_count(), 3, "runs 1..=3 (a), 4..=5 (b), 6 (a)");
        let mut reader = FileReplay::new(index).open(2);
        let got = reader.read(7).unwrap();
        assert_eq!(
            seqs_and_texts(&got),
            [
                (2, 0, "a2"),
                (3, 0, "a3"),
                (4, 1, "b1"),
                (5, 1, "b2"),
                (6, 0, "a4")
            ]
        );
    }

    /// A run whose lines are not indexed yet (or pruned) is a gap, never
    /// another file's lines under wrong numbers.
    #[test]
    fn a_seq_outside_every_run_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        std::fs::write(&a, "a1\na2\n").unwrap();
        let index = ReplayIndex::new(1 << 20);
        let mut ra = Recorder::new(Arc::clone(&index), 0);
        ra.begin(&a, id_of(&a), 1);
        record(&mut ra, 1, &lines(0, 0, &["a1"]));
        // Seqs 2..=4 went to another file, not indexed (yet).
        record(&mut ra, 5, &lines(0, 3, &["a2"]));
        let mut reader = FileReplay::new(Arc::clone(&index)).open(1);
        assert_eq!(seqs_and_texts(&reader.read(10).unwrap()), [(1, 0, "a1")]);
        assert_eq!(reader.read(10).map(|l| l.len()), Err(Gone { until: 5 }));
        let mut reader = FileReplay::new(index).open(5);
        assert_eq!(seqs_and_texts(&reader.read(10).unwrap()), [(5, 0, "a2")]);
    }

    /// Long runs get an entry every [`ENTRY_EVERY`] bytes, and a replay reads
    /// straight through them.
    #[test]
    fn a_long_run_is_read_through_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let text = "x".repeat(999);
        let count = 200; // 200 KB: three or four entries
        std::fs::write(&path, format!("{text}\n").repeat(count)).unwrap();
        let index = ReplayIndex::new(1 << 20);
        let mut r = Recorder::new(Arc::clone(&index), 0);
        r.begin(&path, id_of(&path), 1);
        for i in 0..count {
            record(&mut r, 1 + i as u64, &lines(0, i as u64 * 1000, &[&text]));
        }
        assert!(index.entry_count() >= 3, "{}", index.entry_count());
        let mut reader = FileReplay::new(index).open(1);
        let mut got = Vec::new();
        while reader.next_seq() <= count as u64 {
            let step = reader.read(1 + count as u64).unwrap();
            got.extend(step.into_iter().map(|l| (l.seq, l.offset)));
        }
        let want: Vec<_> = (0..count)
            .map(|i| (1 + i as u64, i as u64 * 1000))
            .collect();
        assert_eq!(got, want);
    }
}
