//! Resume beyond memory: replaying old lines from the file itself.
//!
//! The history holds the last `--history-bytes` of lines. A client that comes
//! back after a long disconnect asks for older lines; most of the time they
//! are still on disk — in the file we follow, or in the file it was just
//! rotated to (`app.log.1`). So the hub keeps a small sparse index from `seq`
//! to (file generation, byte offset): one entry at the start of each
//! generation and one per [`ENTRY_EVERY`] bytes after, a few bytes per entry.
//! Replaying re-reads the file from the entry before the wanted `seq` with the
//! same splitter the tailer uses, so the lines come out with the same `seq`
//! numbers and pieces.
//!
//! A *generation* is one stretch of one file read from start to end: it
//! begins when the tailer opens a file and ends at rotation or truncation. A
//! truncated generation's bytes are gone, so its entries are dropped; a
//! rotated one lives on under its new name, which we find by identity
//! (device, inode) in the file's directory. Each entry also keeps a hash of
//! its line, checked before replaying, so a file rewritten under the same
//! name is never replayed as if it were the old one: a `gap` is sent only for
//! what is really gone.

use std::collections::VecDeque;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Line;
use crate::lines::{LineSplitter, RawLine, to_text};

/// Bytes of lines between two index entries.
pub const ENTRY_EVERY: u64 = 64 * 1024;
/// Index entries kept (the oldest go first): 65 536 × 64 KiB ≈ 4 GiB of log
/// for about 2 MiB of memory.
const MAX_ENTRIES: usize = 65_536;
/// How much one replay step reads.
const STEP_BYTES: usize = 256 * 1024;
/// Directory entries looked at when searching for a rotated file.
const MAX_SCAN: usize = 10_000;

#[derive(Debug, Clone)]
struct Generation {
    id: u64,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The last `seq` read from it, once it has ended.
    last_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    generation: u64,
    offset: u64,
    check: u64,
}

fn check_of(text: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The sparse index. Lives in the hub, next to the history.
#[derive(Debug, Default)]
pub struct DiskIndex {
    generations: VecDeque<Generation>,
    entries: VecDeque<Entry>,
    next_generation: u64,
    /// Bytes published since the last entry of the current generation.
    since_entry: u64,
    /// The current generation wants an entry for its next line.
    want_entry: bool,
}

impl DiskIndex {
    /// A new generation starts: the tailer opened `path`, identified by
    /// (`dev`, `ino`).
    pub fn begin(&mut self, path: &Path, dev: u64, ino: u64, last_seq: u64) {
        self.end(last_seq);
        self.next_generation += 1;
        self.generations.push_back(Generation {
            id: self.next_generation,
            path: path.to_path_buf(),
            dev,
            ino,
            last_seq: None,
        });
        self.want_entry = true;
        self.since_entry = 0;
    }

    /// The current generation ended (rotation) after line `last_seq`.
    pub fn end(&mut self, last_seq: u64) {
        if let Some(g) = self.generations.back_mut()
            && g.last_seq.is_none()
        {
            g.last_seq = Some(last_seq);
        }
    }

    /// The current generation's bytes are gone (truncation): forget its entries.
    pub fn truncated(&mut self, last_seq: u64) {
        let Some(current) = self.generations.back().cloned() else {
            return;
        };
        self.entries.retain(|e| e.generation != current.id);
        self.generations.pop_back();
        self.begin(&current.path, current.dev, current.ino, last_seq);
    }

    /// Records entries for newly numbered lines (called under the hub lock).
    pub fn on_lines(&mut self, lines: &[Line]) {
        let Some(generation) = self.generations.back().map(|g| g.id) else {
            return;
        };
        for line in lines {
            if self.want_entry || self.since_entry >= ENTRY_EVERY {
                self.entries.push_back(Entry {
                    seq: line.seq,
                    generation,
                    offset: line.offset,
                    check: check_of(line.text.as_bytes()),
                });
                self.want_entry = false;
                self.since_entry = 0;
                if self.entries.len() > MAX_ENTRIES {
                    self.entries.pop_front();
                    let oldest = self.entries.front().map_or(0, |e| e.generation);
                    while self.generations.front().is_some_and(|g| g.id < oldest) {
                        self.generations.pop_front();
                    }
                }
            }
            self.since_entry += line.text.len() as u64 + 1;
        }
    }

    /// Where replay of `seq` could start: the entry at or before it, or the
    /// first entry after it (then the lines before it are a gap).
    pub fn locate(&self, seq: u64) -> Option<ReplayStart> {
        let idx = self.entries.partition_point(|e| e.seq <= seq);
        let entry = if idx > 0 {
            self.entries[idx - 1]
        } else {
            *self.entries.front()?
        };
        let generation = self.generations.iter().find(|g| g.id == entry.generation)?;
        // Where the next generation begins, so replay of this one stops there.
        let next_start = self
            .entries
            .iter()
            .skip(idx)
            .find(|e| e.generation != entry.generation)
            .map(|e| e.seq);
        Some(ReplayStart {
            seq: entry.seq,
            offset: entry.offset,
            check: entry.check,
            path: generation.path.clone(),
            dev: generation.dev,
            ino: generation.ino,
            last_seq: generation.last_seq.or(next_start.map(|s| s - 1)),
            next_start,
        })
    }

    #[cfg(test)]
    fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

/// Where and how to start replaying one generation.
#[derive(Debug, Clone)]
pub struct ReplayStart {
    pub seq: u64,
    offset: u64,
    check: u64,
    path: PathBuf,
    dev: u64,
    ino: u64,
    last_seq: Option<u64>,
    /// The first `seq` of the next generation: if this one cannot be read,
    /// the gap ends there.
    pub next_start: Option<u64>,
}

/// A client's open replay: a file positioned at the next line to hand out.
pub struct DiskReplay {
    file: File,
    splitter: LineSplitter,
    /// The `seq` of the next line the splitter produces.
    seq: u64,
    last_seq: Option<u64>,
    file_index: u32,
    pending: VecDeque<RawLine>,
    verified: bool,
    check: u64,
    eof: bool,
}

impl DiskReplay {
    /// Opens the generation `start` names, wherever it lives now. `None`
    /// when it cannot be found (deleted, or replaced by other content).
    pub fn open(start: &ReplayStart, file_index: u32, max_line: usize) -> Option<DiskReplay> {
        let mut file = find_file(&start.path, start.dev, start.ino)?;
        let len = file.metadata().ok()?.len();
        if len < start.offset {
            return None;
        }
        file.seek(SeekFrom::Start(start.offset)).ok()?;
        Some(DiskReplay {
            file,
            splitter: LineSplitter::new(start.offset, max_line),
            seq: start.seq,
            last_seq: start.last_seq,
            file_index,
            pending: VecDeque::new(),
            verified: false,
            check: start.check,
            eof: false,
        })
    }

    /// The `seq` of the next line this replay would produce.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Whether this generation has nothing more to give.
    pub fn finished(&self) -> bool {
        (self.eof && self.pending.is_empty()) || self.last_seq.is_some_and(|l| self.seq > l)
    }

    /// Reads the next lines with `seq` in `from..stop`, up to a step's worth.
    /// Lines before `from` are skipped. Returns `false` if the file turned
    /// out not to hold what the index says (then nothing can be replayed).
    pub fn step(&mut self, from: u64, stop: u64, out: &mut Vec<Line>) -> bool {
        let mut read = 0usize;
        while !self.finished() && self.seq < stop {
            let Some(raw) = self.pending.pop_front() else {
                if read >= STEP_BYTES || self.eof {
                    break;
                }
                let spare = self.splitter.spare(STEP_BYTES);
                let n = self.file.read(spare).unwrap_or(0);
                self.splitter.commit(STEP_BYTES, n);
                read += n;
                let mut lines = Vec::new();
                self.splitter.drain(&mut lines);
                if n == 0 {
                    // The generation ended without a newline: its partial line
                    // was flushed as a line when it was rotated.
                    if self.last_seq.is_some() {
                        self.splitter.flush(&mut lines);
                    }
                    self.eof = true;
                }
                self.pending.extend(lines);
                continue;
            };
            if !self.verified {
                if check_of(&raw.bytes) != self.check {
                    return false;
                }
                self.verified = true;
            }
            let seq = self.seq;
            self.seq += 1;
            if seq >= from {
                out.push(Line {
                    seq,
                    offset: raw.offset,
                    file: self.file_index,
                    cost_end: 0,
                    text: to_text(raw.bytes),
                });
            }
        }
        true
    }
}

/// The file with identity (`dev`, `ino`): at `path` if it is still there,
/// else under another name in the same directory (where rotation puts it).
fn find_file(path: &Path, dev: u64, ino: u64) -> Option<File> {
    let same = |meta: &std::fs::Metadata| meta.dev() == dev && meta.ino() == ino && meta.is_file();
    if let Ok(file) = File::open(path)
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
                && let Ok(file) = File::open(entry.path())
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

    fn lines(first_seq: u64, offset: u64, texts: &[&str]) -> Vec<Line> {
        let mut off = offset;
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let l = Line {
                    seq: first_seq + i as u64,
                    offset: off,
                    file: 0,
                    cost_end: 0,
                    text: Text::from(*t),
                };
                off += t.len() as u64 + 1;
                l
            })
            .collect()
    }

    #[test]
    fn replays_from_the_file_and_finds_a_rotated_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut index = DiskIndex::default();
        index.begin(&path, meta.dev(), meta.ino(), 0);
        index.on_lines(&lines(1, 0, &["a", "b", "c"]));
        // Rotated away: found again by identity under its new name.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        std::fs::write(&path, "d\n").unwrap();
        let meta2 = std::fs::metadata(&path).unwrap();
        index.begin(&path, meta2.dev(), meta2.ino(), 3);
        index.on_lines(&lines(4, 0, &["d"]));
        assert_eq!(index.entry_count(), 2);

        let start = index.locate(2).unwrap();
        let mut replay = DiskReplay::open(&start, 0, 1 << 20).unwrap();
        let mut out = Vec::new();
        assert!(replay.step(2, 100, &mut out));
        assert_eq!(
            out.iter()
                .map(|l| (l.seq, l.text.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, "b"), (3, "c")]
        );
        assert!(replay.finished());
        let start = index.locate(4).unwrap();
        let mut replay = DiskReplay::open(&start, 0, 1 << 20).unwrap();
        out.clear();
        assert!(replay.step(4, 100, &mut out));
        assert_eq!(
            out.iter()
                .map(|l| (l.seq, l.text.as_str()))
                .collect::<Vec<_>>(),
            vec![(4, "d")]
        );
    }

    #[test]
    fn rewritten_content_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut index = DiskIndex::default();
        index.begin(&path, meta.dev(), meta.ino(), 0);
        index.on_lines(&lines(1, 0, &["a", "b"]));
        std::fs::write(&path, "x\ny\n").unwrap(); // same inode, other bytes
        let start = index.locate(1).unwrap();
        let mut replay = DiskReplay::open(&start, 0, 1 << 20).unwrap();
        let mut out = Vec::new();
        assert!(!replay.step(1, 100, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn truncation_forgets_the_generation() {
        let mut index = DiskIndex::default();
        index.begin(Path::new("/nonexistent/app.log"), 1, 2, 0);
        index.on_lines(&lines(1, 0, &["a", "b"]));
        index.truncated(2);
        assert!(index.locate(1).is_none());
        index.on_lines(&lines(3, 0, &["c"]));
        assert_eq!(index.locate(1).unwrap().seq, 3);
    }
}
