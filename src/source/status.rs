//! What each followed file is doing, for `/healthz`: a handle the source
//! writes and the transports read.
//!
//! Not in the hub, which numbers and fans out lines and knows nothing of
//! files. One lock over a small map: it is written once per pass of a
//! follower (an offset) and read once per `/healthz`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a followed file is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Added, not looked at yet.
    Starting,
    /// Open and read as it grows.
    Following,
    /// Missing, or not readable, for now.
    Waiting,
}

/// One file, as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileStatus {
    /// The name clients see (as typed).
    pub path: String,
    pub state: FileState,
    /// Offset read up to in the current file.
    pub offset: u64,
}

/// The state of every followed file, by file index. Cheap to clone (an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Status {
    files: Arc<Mutex<BTreeMap<u32, FileStatus>>>,
}

impl Status {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, FileStatus>> {
        // Plain values: a panic elsewhere cannot leave them half-written.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// File `file`, shown as `path`, is starting.
    pub fn add(&self, file: u32, path: String) {
        self.lock().insert(
            file,
            FileStatus {
                path,
                state: FileState::Starting,
                offset: 0,
            },
        );
    }

    /// File `file` is no longer followed.
    pub fn remove(&self, file: u32) {
        self.lock().remove(&file);
    }

    /// File `file` is now `state`, read up to `offset`.
    pub fn set(&self, file: u32, state: FileState, offset: u64) {
        if let Some(s) = self.lock().get_mut(&file) {
            s.state = state;
            s.offset = offset;
        }
    }

    /// File `file` has been read up to `offset`.
    pub fn set_offset(&self, file: u32, offset: u64) {
        if let Some(s) = self.lock().get_mut(&file) {
            s.offset = offset;
        }
    }

    /// Every file, in file-index order.
    pub fn files(&self) -> Vec<FileStatus> {
        self.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/healthz` shows the same JSON as when the state was a string.
    #[test]
    fn serializes_as_before() {
        let status = Status::default();
        status.add(1, "b.log".into());
        status.add(0, "app.log".into());
        status.set(0, FileState::Following, 42);
        status.set_offset(1, 7);
        assert_eq!(
            serde_json::to_string(&status.files()).unwrap(),
            r#"[{"path":"app.log","state":"following","offset":42},{"path":"b.log","state":"starting","offset":7}]"#
        );
        status.set(1, FileState::Waiting, 0);
        status.remove(0);
        assert_eq!(
            serde_json::to_string(&status.files()).unwrap(),
            r#"[{"path":"b.log","state":"waiting","offset":0}]"#
        );
    }
}
