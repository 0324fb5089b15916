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
//! An event wakes the tailer through a one-slot channel when it concerns the
//! file: wake-ups coalesce (a burst of ten thousand writes is one or two
//! passes) and none is lost (a wake during a pass leaves the slot full, so
//! another pass follows). "Concerns" means it names the followed name, the
//! symlink's target, the path component we wait for under an ancestor, a
//! watched directory itself, or a name the followed file was renamed to (so
//! a writer still writing to `app.log.1` after `mv app.log app.log.1` keeps
//! waking us). Other files in a busy directory such as `/var/log` cost a
//! check of the event's names, not a pass over our file. `Access` events are
//! dropped (the tailer's own `open` produces them). Queue overflow (`Rescan`,
//! no paths) and errors wake it, and a pass re-examines everything, so
//! nothing is missed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

use notify::event::{ModifyKind, RenameMode};
use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// Watches the directories that matter for one followed path.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
    /// Every wanted directory is watched (false after a watch error).
    complete: bool,
    interest: Arc<Mutex<Interest>>,
}

/// Renamed-to names remembered at most (a writer may still write there).
const MAX_RENAMED: usize = 8;

/// Which paths an event must name to concern the followed file.
#[derive(Debug, Default)]
struct Interest {
    /// The watched directories themselves (their removal or move matters).
    dirs: Vec<PathBuf>,
    /// Paths under the watched directories that matter: the followed name,
    /// the symlink's target, or the next component of a missing parent.
    paths: Vec<PathBuf>,
    /// Where a path that matters was renamed to, newest last.
    renamed: VecDeque<PathBuf>,
}

impl Interest {
    fn concerns(&self, path: &Path) -> bool {
        self.dirs
            .iter()
            .chain(&self.paths)
            .chain(&self.renamed)
            .any(|p| p == path)
    }

    /// Whether `event` should wake the tailer; remembers rename targets.
    fn wakes(&mut self, event: &notify::Result<notify::Event>) -> bool {
        let event = match event {
            // An error may mean lost events: look.
            Err(_) => return true,
            Ok(event) => event,
        };
        if matches!(event.kind, EventKind::Access(_)) {
            return false;
        }
        // Queue overflow (`Rescan`) and anything without paths: look.
        if event.need_rescan() || event.paths.is_empty() {
            return true;
        }
        if let EventKind::Modify(ModifyKind::Name(RenameMode::Both)) = event.kind
            && let [from, to] = &event.paths[..]
            && self.concerns(from)
            && !self.concerns(to)
        {
            if self.renamed.len() == MAX_RENAMED {
                self.renamed.pop_front();
            }
            self.renamed.push_back(to.clone());
        }
        event.paths.iter().any(|p| self.concerns(p))
    }
}

impl DirWatcher {
    /// An inotify watcher that wakes the tailer through `wake`.
    pub fn new(wake: SyncSender<()>) -> notify::Result<DirWatcher> {
        let interest = Arc::new(Mutex::new(Interest::default()));
        let shared = Arc::clone(&interest);
        let handler = move |event: notify::Result<notify::Event>| {
            if lock(&shared).wakes(&event) {
                // Full means a pass is already due; disconnected means we are stopping.
                let _ = wake.try_send(());
            }
        };
        Ok(DirWatcher {
            watcher: RecommendedWatcher::new(handler, Config::default())?,
            watched: Vec::new(),
            complete: true,
            interest,
        })
    }

    /// False when a directory that matters could not be watched: the caller
    /// should then look now and then instead of trusting events alone.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Makes the watched set the right one for `path` as it is now: call it
    /// at start and whenever the path may have changed what it points to.
    /// Returns whether the set of directories changed.
    pub fn watch_for(&mut self, path: &Path) -> bool {
        let (wanted, paths) = watch_plan(path);
        {
            let mut interest = lock(&self.interest);
            interest.dirs = wanted.clone();
            interest.paths = paths;
        }
        if wanted == self.watched && self.complete {
            return false;
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
        true
    }
}

fn lock(interest: &Mutex<Interest>) -> MutexGuard<'_, Interest> {
    interest.lock().unwrap_or_else(|e| e.into_inner())
}

/// The directories to watch for `path`, and the paths under them whose
/// events matter.
fn watch_plan(path: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dirs = dirs_for(path);
    let mut paths = Vec::with_capacity(3);
    // The followed name, or (while its parent is missing) the component of
    // it directly under the existing ancestor: notify reports `dir/name`.
    let wanted = path.strip_prefix("./").unwrap_or(path);
    let under = |dir: &Path| -> Option<PathBuf> {
        let rest = if dir == Path::new(".") {
            wanted
        } else {
            wanted.strip_prefix(dir).ok()?
        };
        Some(dir.join(rest.components().next()?))
    };
    paths.extend(under(&dirs[0]));
    if let Ok(target) = std::fs::canonicalize(path) {
        paths.push(target);
    }
    (dirs, paths)
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
    fn events_that_concern_the_file_wake_others_do_not() {
        use notify::event::{AccessKind, DataChange, Flag};
        let dir = PathBuf::from("/var/log");
        let mut interest = Interest {
            dirs: vec![dir.clone()],
            paths: vec![dir.join("app.log")],
            renamed: VecDeque::new(),
        };
        let event = |kind, paths: &[&str]| {
            let mut e = notify::Event::new(kind);
            for p in paths {
                e = e.add_path(PathBuf::from(p));
            }
            Ok(e)
        };
        let data = || EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(interest.wakes(&event(data(), &["/var/log/app.log"])));
        assert!(!interest.wakes(&event(data(), &["/var/log/syslog"])));
        assert!(!interest.wakes(&event(
            EventKind::Access(AccessKind::Any),
            &["/var/log/app.log"]
        )));
        assert!(interest.wakes(&event(
            EventKind::Remove(notify::event::RemoveKind::Folder),
            &["/var/log"]
        )));
        // Renamed away: the new name matters from now on (a writer may still write there).
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(interest.wakes(&event(both, &["/var/log/app.log", "/var/log/app.log.1"])));
        assert!(interest.wakes(&event(data(), &["/var/log/app.log.1"])));
        assert!(!interest.wakes(&event(data(), &["/var/log/app.log.2"])));
        // Queue overflow: no paths, flag Rescan; and errors.
        let rescan = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(rescan.paths.is_empty());
        assert!(interest.wakes(&Ok(rescan)));
        assert!(interest.wakes(&Err(notify::Error::generic("inotify read failed"))));
    }

    #[test]
    fn plan_names_the_component_under_a_missing_parent() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("not/yet/app.log");
        let (dirs, paths) = watch_plan(&path);
        assert_eq!(dirs, vec![root.path().to_path_buf()]);
        assert_eq!(paths, vec![root.path().join("not")]);
        let (_, paths) = watch_plan(Path::new("app.log"));
        assert_eq!(paths[0], PathBuf::from("./app.log"));
    }

    #[test]
    fn missing_parent_falls_back_to_an_existing_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("not/yet/app.log");
        assert_eq!(dirs_for(&path), vec![root.path().to_path_buf()]);
    }
}
