//! File-system notifications, reduced to one thing: "look at the file again".
//!
//! We watch directories, not the file: a watch on a file follows its inode, so
//! it goes quiet when the file is renamed away or deleted, and never reports
//! the new file created under the old name (crates.md §2.1, notify's "Known
//! Problems"). So we watch the file's parent directory — or, while that does
//! not exist yet, its nearest existing ancestor — and, when the path is a
//! symlink, the directory of the file it points to, since that is where the
//! writes happen (Kubernetes' `/var/log/containers/*.log`).
//!
//! This is inotify only: `--poll` needs no watcher (see the parent module).
//!
//! Every event except `Access` wakes the tailer through a one-slot channel:
//! wake-ups coalesce (a burst of ten thousand writes is one or two passes) and
//! none is lost (a wake during a pass leaves the slot full, so another pass
//! follows). `Access` events are dropped because the tailer's own `open`
//! produces them. Queue overflow (`Rescan`, no paths) wakes too, and a pass
//! re-examines everything, so nothing is missed.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// Watches the directories that matter for one followed path.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
    /// Every wanted directory is watched (false after a watch error).
    complete: bool,
}

/// Whether a notify report should wake the tailer: everything but `Access`
/// (our own `open` causes those). Errors and `Rescan` (inotify queue
/// overflow: an event with no paths) wake it too, since a pass re-examines
/// everything.
fn wakes(event: &notify::Result<notify::Event>) -> bool {
    !matches!(event, Ok(event) if matches!(event.kind, EventKind::Access(_)))
}

impl DirWatcher {
    /// An inotify watcher that wakes the tailer through `wake`.
    pub fn new(wake: SyncSender<()>) -> notify::Result<DirWatcher> {
        let handler = move |event: notify::Result<notify::Event>| {
            if wakes(&event) {
                // Full means a pass is already due; disconnected means we are stopping.
                let _ = wake.try_send(());
            }
        };
        Ok(DirWatcher {
            watcher: RecommendedWatcher::new(handler, Config::default())?,
            watched: Vec::new(),
            complete: true,
        })
    }

    /// False when a directory that matters could not be watched: the caller
    /// should then look now and then instead of trusting events alone.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Makes the watched set the right one for `path` as it is now: call it
    /// at start and whenever the path may have changed what it points to.
    pub fn watch_for(&mut self, path: &Path) {
        let wanted = dirs_for(path);
        if wanted == self.watched && self.complete {
            return;
        }
        for dir in &self.watched {
            if !wanted.contains(dir) {
                let _ = self.watcher.unwatch(dir);
            }
        }
        let wanted_len = wanted.len();
        let mut now = Vec::new();
        for dir in wanted {
            if self.watched.contains(&dir) {
                now.push(dir);
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching directory");
                    now.push(dir);
                }
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), "cannot watch directory: {err}; looking every second instead");
                }
            }
        }
        self.complete = now.len() == wanted_len;
        self.watched = now;
    }
}

/// The directories whose events can concern `path`.
fn dirs_for(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::with_capacity(2);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // While the parent does not exist, its nearest existing ancestor tells us
    // when it appears.
    let mut dir = parent.as_path();
    loop {
        if dir.is_dir() {
            dirs.push(dir.to_path_buf());
            break;
        }
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => {
                dirs.push(PathBuf::from("."));
                break;
            }
        }
    }
    if let Ok(target) = std::fs::canonicalize(path)
        && let Some(target_dir) = target.parent()
    {
        let same = std::fs::canonicalize(&dirs[0]).is_ok_and(|d| d == target_dir);
        if !same {
            dirs.push(target_dir.to_path_buf());
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_parent_and_symlink_target_dir() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        let pods = root.path().join("pods");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::write(pods.join("0.log"), b"").unwrap();
        let link = logs.join("app.log");
        std::os::unix::fs::symlink(pods.join("0.log"), &link).unwrap();
        let dirs = dirs_for(&link);
        assert_eq!(dirs[0], logs);
        assert_eq!(dirs[1], std::fs::canonicalize(&pods).unwrap());
    }

    #[test]
    fn every_report_but_access_wakes() {
        use notify::event::{AccessKind, DataChange, Flag, ModifyKind};
        let event = |kind| Ok(notify::Event::new(kind));
        assert!(!wakes(&event(EventKind::Access(AccessKind::Any))));
        assert!(wakes(&event(EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        )))));
        // Queue overflow: no paths, flag Rescan.
        let rescan = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(rescan.paths.is_empty());
        assert!(wakes(&Ok(rescan)));
        assert!(wakes(&Err(notify::Error::generic("inotify read failed"))));
    }

    #[test]
    fn missing_parent_falls_back_to_an_existing_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("not/yet/app.log");
        assert_eq!(dirs_for(&path), vec![root.path().to_path_buf()]);
    }
}
