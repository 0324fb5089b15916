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
//! Every event except `Access` wakes the tailer through a one-slot channel:
//! wake-ups coalesce (a burst of ten thousand writes is one or two passes) and
//! none is lost (a wake during a pass leaves the slot full, so another pass
//! follows). `Access` events are dropped because the tailer's own `open`
//! produces them. Queue overflow (`Rescan`, no paths) wakes too, and a pass
//! re-examines everything, so nothing is missed.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use notify::{Config, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

/// Watches the directories that matter for one followed path.
pub struct DirWatcher {
    watcher: Box<dyn Watcher + Send>,
    watched: Vec<PathBuf>,
}

impl DirWatcher {
    /// An inotify watcher, or a polling one that looks every `poll` when given.
    pub fn new(poll: Option<Duration>, wake: SyncSender<()>) -> notify::Result<DirWatcher> {
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = &event
                && matches!(event.kind, EventKind::Access(_))
            {
                return;
            }
            // Full means a pass is already due; disconnected means we are stopping.
            let _ = wake.try_send(());
        };
        let watcher: Box<dyn Watcher + Send> = match poll {
            Some(interval) => Box::new(PollWatcher::new(
                handler,
                Config::default().with_poll_interval(interval),
            )?),
            None => Box::new(RecommendedWatcher::new(handler, Config::default())?),
        };
        Ok(DirWatcher {
            watcher,
            watched: Vec::new(),
        })
    }

    /// Makes the watched set the right one for `path` as it is now: call it
    /// at start and whenever the path may have changed what it points to.
    pub fn watch_for(&mut self, path: &Path) {
        let wanted = dirs_for(path);
        if wanted == self.watched {
            return;
        }
        for dir in &self.watched {
            if !wanted.contains(dir) {
                let _ = self.watcher.unwatch(dir);
            }
        }
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
                    tracing::warn!(dir = %dir.display(), "cannot watch directory: {err}");
                }
            }
        }
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
    fn missing_parent_falls_back_to_an_existing_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("not/yet/app.log");
        assert_eq!(dirs_for(&path), vec![root.path().to_path_buf()]);
    }
}
