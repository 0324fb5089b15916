//! What each followed input is doing, for `/healthz` and `/files`: a handle
//! the sources write and the transports read.
//!
//! Not in the hub, which numbers and fans out lines and knows nothing of
//! files. One lock over a small map: it is written once per pass of a
//! follower (its position) and once per published batch (its line count),
//! and read once per `/healthz` or `/files`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// What a followed input is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Added, not looked at yet.
    Starting,
    /// Open and read as it grows.
    Following,
    /// Missing, or not readable, for now.
    Waiting,
    /// Read to its end for good (standard input after EOF).
    Ended,
}

/// One input, as `/healthz` and `/files` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// The public name, what clients see and select with.
    pub name: String,
    /// Where it is read from on the server (never sent unless asked for).
    pub path: String,
    pub state: FileState,
    /// The inode of the file read now (0: none).
    pub inode: u64,
    /// The size of the file read now, when last looked at.
    pub size: u64,
    /// Offset read up to in the current file.
    pub offset: u64,
    /// Lines published from it since the server started.
    pub lines: u64,
    /// When its last line was published.
    pub last_line_at: Option<SystemTime>,
}

/// The state of every followed input, by file index. Cheap to clone (an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Status {
    files: Arc<Mutex<BTreeMap<u32, FileStatus>>>,
}

impl Status {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, FileStatus>> {
        // Plain values: a panic elsewhere cannot leave them half-written.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Input `file`, named `name` and read from `path`, is starting.
    pub fn add(&self, file: u32, name: String, path: String) {
        self.lock().insert(
            file,
            FileStatus {
                name,
                path,
                state: FileState::Starting,
                inode: 0,
                size: 0,
                offset: 0,
                lines: 0,
                last_line_at: None,
            },
        );
    }

    /// Input `file` is no longer followed.
    pub fn remove(&self, file: u32) {
        self.lock().remove(&file);
    }

    /// Input `file` is now `state`, read up to `offset`.
    pub fn set(&self, file: u32, state: FileState, offset: u64) {
        if let Some(s) = self.lock().get_mut(&file) {
            s.state = state;
            s.offset = offset;
        }
    }

    /// Input `file` has been read up to `offset`.
    pub fn set_offset(&self, file: u32, offset: u64) {
        if let Some(s) = self.lock().get_mut(&file) {
            s.offset = offset;
        }
    }

    /// Input `file` reads inode `inode`, `size` bytes long, up to `offset`.
    pub fn set_position(&self, file: u32, inode: u64, size: u64, offset: u64) {
        if let Some(s) = self.lock().get_mut(&file) {
            s.inode = inode;
            s.size = size;
            s.offset = offset;
        }
    }

    /// `count` more lines were published from input `file`, now.
    pub fn count_lines(&self, file: u32, count: u64) {
        if let Some(s) = self.lock().get_mut(&file) {
            s.lines += count;
            s.last_line_at = Some(SystemTime::now());
        }
    }

    /// Every input, in file-index order (the order they were added).
    pub fn files(&self) -> Vec<FileStatus> {
        self.lock().values().cloned().collect()
    }

    /// Where input `file` is read from, if it is followed.
    pub fn path_of(&self, file: u32) -> Option<String> {
        self.lock().get(&file).map(|s| s.path.clone())
    }

    /// Whether input `file` is followed.
    pub fn contains(&self, file: u32) -> bool {
        self.lock().contains_key(&file)
    }

    /// The names of the inputs not looked at yet (`/readyz` waits for none).
    pub fn not_started(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter(|s| s.state == FileState::Starting)
            .map(|s| s.name.clone())
            .collect()
    }

    /// How many inputs are followed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_each_input_in_index_order() {
        let status = Status::default();
        status.add(1, "b.log".into(), "/x/b.log".into());
        status.add(0, "app.log".into(), "/x/app.log".into());
        status.set(0, FileState::Following, 42);
        status.set_position(1, 9, 100, 7);
        status.count_lines(1, 3);
        let files = status.files();
        assert_eq!(files.len(), 2);
        assert_eq!(
            (files[0].name.as_str(), files[0].state, files[0].offset),
            ("app.log", FileState::Following, 42)
        );
        assert_eq!(
            (
                files[1].inode,
                files[1].size,
                files[1].offset,
                files[1].lines
            ),
            (9, 100, 7, 3)
        );
        assert!(files[1].last_line_at.is_some() && files[0].last_line_at.is_none());
        assert_eq!(status.not_started(), ["b.log"], "b.log was never looked at");
        status.set(1, FileState::Waiting, 0);
        assert!(
            status.not_started().is_empty(),
            "waited for counts as looked at"
        );
        status.remove(0);
        assert_eq!(status.len(), 1);
    }
}
