//! File-system notifications, reduced to one thing: "look at the file again".
//!
//! We watch directories, not the file by name: a watch on a file follows its
//! inode, so it goes quiet when the file is renamed away or deleted, and
//! never reports the new file created under the old name (crates.md §2.1,
//! notify's "Known Problems"). So we watch the directory of every name that
//! matters — the followed path and, when it is a symlink, each name in the
//! chain of links down to the file it points to, since that is where the
//! writes happen (Kubernetes' `/var/log/containers/*.log`) — or, while such a
//! directory does not exist yet, its nearest existing ancestor. A dangling
//! link is therefore waited for like a missing file: the watch sits where its
//! target will appear.
//!
//! A watch follows the directory's inode too: if the directory is removed
//! and made again (`rm -r logs; mkdir logs`), the old watch sees nothing of
//! the new one. So every watched directory is remembered with its identity,
//! and re-watched when its name names another directory, or when an event
//! said it was removed or moved (the inode may be reused).
//!
//! A directory on the way that is itself a symlink (`current/log/app.log`
//! with `current -> releases/2`, as deploy tools do) is watched in its own
//! parent, so re-pointing it wakes us.
//!
//! While the followed name does not name the file we hold open (deleted,
//! renamed, or replaced by a new file that is still empty), we also watch
//! that file itself through `/proc/self/fd/N`, so a writer that never
//! reopens still wakes us at once, wherever the file went. While the name
//! does name it, the directory's events already do, and a second watch would
//! only double them.
//!
//! This is inotify only: `--poll` needs no watcher (see the parent module).
//!
//! An event wakes the tailer through a one-slot channel when it concerns the
//! file: wake-ups coalesce (a burst of ten thousand writes is one or two
//! passes) and none is lost (a wake during a pass leaves the slot full, so
//! another pass follows). "Concerns" means it names a name that matters, the
//! path component we wait for under an ancestor, a watched directory itself,
//! the held file, or a name the followed file was renamed to (so a writer
//! still writing to `app.log.1` after `mv app.log app.log.1` keeps waking
//! us). Other files in a busy directory such as `/var/log` cost a check of
//! the event's names, not a pass over our file. `Access` events are dropped
//! (the tailer's own `open` produces them). Queue overflow (`Rescan`, no
//! paths) and errors wake it, and a pass re-examines everything, so nothing
//! is missed.
//!
//! Every path here is absolute and lexically clean ([`super::path`]), as
//! notify reports them.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

use notify::event::{ModifyKind, RenameMode};
use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::identity::FileId;
use super::path::clean;

/// Watches the directories that matter for one followed path.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    /// Watched directories, each with the identity it had when its watch
    /// was added (`None`: could not tell).
    watched: Vec<(PathBuf, Option<FileId>)>,
    /// The held file's own watch: its `/proc/self/fd/N` path and identity.
    held: Option<(PathBuf, FileId)>,
    /// Every wanted watch is in place (false after a watch error).
    complete: bool,
    interest: Arc<Mutex<Interest>>,
}

/// Renamed-to names remembered at most (a writer may still write there).
const MAX_RENAMED: usize = 8;
/// Symlinks followed in a chain at most (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

/// Which paths an event must name to concern the followed file.
#[derive(Debug, Default)]
struct Interest {
    /// The watched directories themselves (their removal or move matters).
    dirs: Vec<PathBuf>,
    /// Paths under the watched directories that matter: every name in the
    /// symlink chain, or the next component of a missing parent; and the
    /// held file's `/proc/self/fd/N`.
    paths: Vec<PathBuf>,
    /// Where a path that matters was renamed to, newest last.
    renamed: VecDeque<PathBuf>,
    /// Watched directories an event said were removed or moved away: their
    /// watch is dead even if a new directory has the same name (and inode).
    gone: Vec<PathBuf>,
}

impl Interest {
    fn concerns(&self, path: &Path) -> bool {
        self.dirs
            .iter()
            .chain(&self.paths)
            .chain(&self.renamed)
            .any(|p| p == path)
    }

    /// Whether `event` should wake the tailer; remembers rename targets and
    /// directories that went away.
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
        // A watched directory removed (notify: `Remove`) or moved
        // (`MOVE_SELF`, reported as a rename `From`).
        if matches!(
            event.kind,
            EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Any))
        ) {
            for path in &event.paths {
                if self.dirs.contains(path) && !self.gone.contains(path) {
                    self.gone.push(path.clone());
                }
            }
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
            held: None,
            complete: true,
            interest,
        })
    }

    /// False when a watch that matters could not be added: the caller
    /// should then look now and then instead of trusting events alone.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Whether an event said a watched directory went away since the last
    /// [`watch_for`](Self::watch_for): its watch is dead (notify drops it when
    /// it handles the removal — possibly after a watch we added again under
    /// the same name, which it then drops instead), so watch again.
    pub fn stale(&self) -> bool {
        !lock(&self.interest).gone.is_empty()
    }

    /// Makes the watches the right ones for `path` as it is now, and for
    /// `held`, the file held open while the path no longer names it: call it
    /// at start and whenever either may have changed. Returns whether any
    /// watch changed (then the caller must look again: a change made before
    /// a watch was added reports nothing).
    pub fn watch_for(&mut self, path: &Path, held: Option<(RawFd, FileId)>) -> bool {
        let plan = watch_plan(path);
        let held = held.map(|(fd, id)| (PathBuf::from(format!("/proc/self/fd/{fd}")), id));
        let gone = {
            let mut interest = lock(&self.interest);
            interest.dirs.clone_from(&plan.dirs);
            interest.paths.clone_from(&plan.paths);
            interest.paths.extend(held.iter().map(|(p, _)| p.clone()));
            std::mem::take(&mut interest.gone)
        };
        let was_complete = self.complete;
        let mut complete = true;
        let mut changed = false;

        // Keep a directory's watch only while it is wanted and its name still
        // names the directory the watch was added to.
        let mut now = Vec::with_capacity(plan.dirs.len());
        for (dir, id) in std::mem::take(&mut self.watched) {
            let same = id.is_some() && !gone.contains(&dir) && FileId::of_path(&dir) == id;
            if plan.dirs.contains(&dir) && same {
                now.push((dir, id));
            } else {
                // Already gone from notify's table when the directory was removed.
                let _ = self.watcher.unwatch(&dir);
                changed = true;
            }
        }
        for dir in &plan.dirs {
            if now.iter().any(|(d, _)| d == dir) {
                continue;
            }
            // The identity before the watch: if the directory is replaced in
            // between, the next call sees a mismatch and watches again.
            let id = FileId::of_path(dir);
            changed = true;
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching directory");
                    now.push((dir.clone(), id));
                }
                Err(err) => {
                    complete = false;
                    if was_complete {
                        tracing::warn!(dir = %dir.display(), "cannot watch directory: {err}; looking every second instead");
                    }
                }
            }
        }
        self.watched = now;

        if self.held != held {
            changed = true;
            if let Some((old, _)) = self.held.take() {
                let _ = self.watcher.unwatch(&old);
            }
            if let Some((proc_path, id)) = held {
                match self.watcher.watch(&proc_path, RecursiveMode::NonRecursive) {
                    Ok(()) => self.held = Some((proc_path, id)),
                    Err(err) => {
                        complete = false;
                        if was_complete {
                            tracing::warn!(
                                "cannot watch the file held open ({}): {err}; looking every second instead",
                                proc_path.display()
                            );
                        }
                    }
                }
            }
        }
        self.complete = complete;
        changed
    }
}

fn lock(interest: &Mutex<Interest>) -> MutexGuard<'_, Interest> {
    interest.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to watch for one followed path.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Directories to watch, each once (by identity, whatever its spelling).
    dirs: Vec<PathBuf>,
    /// Paths under them whose events matter, spelled under `dirs` as notify
    /// reports them.
    paths: Vec<PathBuf>,
}

/// For every name in `path`'s symlink chain, and every symlinked directory
/// on the way to it: the directory to watch and the path under it that
/// matters.
fn watch_plan(path: &Path) -> Plan {
    let mut plan = Plan::default();
    let mut ids: Vec<Option<FileId>> = Vec::new();
    let mut wanted = Vec::new();
    for name in link_chain(path) {
        // A directory on the way that is a symlink (`current -> releases/2`)
        // is re-pointed in its own parent: watch it there.
        for link in symlinked_ancestors(&name) {
            if let (Some(dir), Some(entry)) = (link.parent(), link.file_name()) {
                wanted.push((dir.to_path_buf(), entry.to_os_string()));
            }
        }
        wanted.extend(nearest_watchable(&name));
    }
    for (dir, entry) in wanted {
        let id = FileId::of_path(&dir);
        // One directory under two spellings (`/var/run` and `/run`) is one
        // inotify watch, reported under one spelling: use the first.
        let known = plan
            .dirs
            .iter()
            .zip(&ids)
            .find(|(d, i)| **d == dir || (id.is_some() && **i == id))
            .map(|(d, _)| d.clone());
        let dir = match known {
            Some(known) => known,
            None => {
                plan.dirs.push(dir.clone());
                ids.push(id);
                dir
            }
        };
        let under = dir.join(entry);
        if !plan.paths.contains(&under) {
            plan.paths.push(under);
        }
    }
    plan
}

/// `path`, then the path each symlink in the chain points to, for as long
/// as the last one is a symlink (dangling or not).
fn link_chain(path: &Path) -> Vec<PathBuf> {
    let mut chain = vec![path.to_path_buf()];
    while chain.len() <= MAX_LINKS {
        let last = &chain[chain.len() - 1];
        let Ok(target) = std::fs::read_link(last) else {
            break;
        };
        // A relative target is relative to the directory the link is in —
        // the real one: `..` leaves it as the kernel's lookup does, even when
        // the link was reached through a symlinked directory.
        let parent = last.parent().unwrap_or(Path::new("/"));
        let base = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        let next = clean(&base.join(target));
        if chain.contains(&next) {
            break; // a loop: every name in it is already watched
        }
        chain.push(next);
    }
    chain
}

/// The directories on the way to `name` (not `name` itself) that are
/// symlinks, nearest the root first.
fn symlinked_ancestors(name: &Path) -> Vec<PathBuf> {
    let mut links: Vec<PathBuf> = name
        .ancestors()
        .skip(1)
        .take_while(|a| a.parent().is_some())
        .filter(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .map(Path::to_path_buf)
        .collect();
    links.reverse();
    links
}

/// The directory to watch for `name` — its parent, or while that does not
/// exist its nearest existing ancestor — and the entry in it that leads to
/// `name`. `None` for the root itself.
fn nearest_watchable(name: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    let mut dir = name.parent()?;
    loop {
        if dir.is_dir() {
            break;
        }
        dir = dir.parent()?;
    }
    let rest = name.strip_prefix(dir).ok()?;
    match rest.components().next()? {
        Component::Normal(entry) => Some((dir.to_path_buf(), entry.to_os_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn watches_parent_and_symlink_target_dir() {
        let (_keep, root) = root();
        let logs = root.join("logs");
        let pods = root.join("pods");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::write(pods.join("0.log"), b"").unwrap();
        let link = logs.join("app.log");
        // A relative target, as `ln -s ../pods/0.log logs/app.log` makes.
        std::os::unix::fs::symlink("../pods/0.log", &link).unwrap();
        let plan = watch_plan(&link);
        assert_eq!(plan.dirs, [logs.clone(), pods.clone()]);
        assert_eq!(plan.paths, [link, pods.join("0.log")]);
    }

    #[test]
    fn a_dangling_link_is_waited_for_where_its_target_will_appear() {
        let (_keep, root) = root();
        let link = root.join("app.log");
        std::os::unix::fs::symlink("pods/1.log", &link).unwrap();
        // `pods` does not exist yet: its parent (the root) is watched for it.
        let plan = watch_plan(&link);
        assert_eq!(plan.dirs, std::slice::from_ref(&root));
        assert_eq!(plan.paths, [link.clone(), root.join("pods")]);
        std::fs::create_dir(root.join("pods")).unwrap();
        let plan = watch_plan(&link);
        assert_eq!(plan.dirs, [root.clone(), root.join("pods")]);
        assert_eq!(plan.paths, [link, root.join("pods/1.log")]);
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_watched_where_it_can_be_re_pointed() {
        let (_keep, root) = root();
        std::fs::create_dir_all(root.join("releases/2/log")).unwrap();
        std::os::unix::fs::symlink("releases/2", root.join("current")).unwrap();
        let path = root.join("current/log/app.log");
        let plan = watch_plan(&path);
        assert_eq!(plan.dirs, [root.clone(), root.join("current/log")]);
        assert_eq!(plan.paths, [root.join("current"), path]);
    }

    #[test]
    fn a_relative_target_is_taken_from_the_real_directory_of_its_link() {
        let (_keep, root) = root();
        // logs -> deep/logs; deep/logs/app.log -> ../pods/0.log, which the
        // kernel finds in deep/pods, not in pods.
        std::fs::create_dir_all(root.join("deep/logs")).unwrap();
        std::fs::create_dir_all(root.join("deep/pods")).unwrap();
        std::os::unix::fs::symlink("deep/logs", root.join("logs")).unwrap();
        std::os::unix::fs::symlink("../pods/0.log", root.join("deep/logs/app.log")).unwrap();
        let chain = link_chain(&root.join("logs/app.log"));
        assert_eq!(chain[1], root.join("deep/pods/0.log"));
    }

    #[test]
    fn a_chain_of_links_is_followed_and_a_loop_ends() {
        let (_keep, root) = root();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::create_dir(root.join("b")).unwrap();
        std::os::unix::fs::symlink(root.join("a/x"), root.join("app.log")).unwrap();
        std::os::unix::fs::symlink("../b/y", root.join("a/x")).unwrap();
        let plan = watch_plan(&root.join("app.log"));
        assert_eq!(plan.dirs, [root.clone(), root.join("a"), root.join("b")]);
        assert_eq!(
            plan.paths,
            [root.join("app.log"), root.join("a/x"), root.join("b/y")]
        );
        std::os::unix::fs::symlink("../a/x", root.join("b/y")).unwrap();
        assert_eq!(link_chain(&root.join("app.log")).len(), 3);
    }

    #[test]
    fn one_directory_under_two_spellings_is_watched_once() {
        let (_keep, root) = root();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("alias")).unwrap();
        std::fs::write(root.join("real/0.log"), b"").unwrap();
        let link = root.join("real/app.log");
        std::os::unix::fs::symlink(root.join("alias/0.log"), &link).unwrap();
        let plan = watch_plan(&link);
        // `real` once, whichever way it is spelled; the root too, where the
        // `alias` link could be re-pointed.
        assert_eq!(plan.dirs, [root.join("real"), root.clone()]);
        assert_eq!(
            plan.paths,
            [link, root.join("alias"), root.join("real/0.log")]
        );
    }

    #[test]
    fn plan_names_the_component_under_a_missing_parent() {
        let (_keep, root) = root();
        let path = root.join("not/yet/app.log");
        let plan = watch_plan(&path);
        assert_eq!(plan.dirs, std::slice::from_ref(&root));
        assert_eq!(plan.paths, [root.join("not")]);
    }

    #[test]
    fn events_that_concern_the_file_wake_others_do_not() {
        use notify::event::{AccessKind, DataChange, Flag, RemoveKind};
        let dir = PathBuf::from("/var/log");
        let mut interest = Interest {
            dirs: vec![dir.clone()],
            paths: vec![dir.join("app.log"), PathBuf::from("/proc/self/fd/7")],
            ..Interest::default()
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
        // The held file's own watch.
        assert!(interest.wakes(&event(data(), &["/proc/self/fd/7"])));
        // Renamed away: the new name matters from now on (a writer may still write there).
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(interest.wakes(&event(both, &["/var/log/app.log", "/var/log/app.log.1"])));
        assert!(interest.wakes(&event(data(), &["/var/log/app.log.1"])));
        assert!(!interest.wakes(&event(data(), &["/var/log/app.log.2"])));
        assert!(interest.gone.is_empty());
        // The watched directory removed, or moved: remembered as gone.
        assert!(interest.wakes(&event(EventKind::Remove(RemoveKind::Folder), &["/var/log"])));
        assert_eq!(interest.gone, std::slice::from_ref(&dir));
        interest.gone.clear();
        let moved = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert!(interest.wakes(&event(moved, &["/var/log"])));
        assert_eq!(interest.gone, [dir]);
        // Queue overflow: no paths, flag Rescan; and errors.
        let rescan = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(rescan.paths.is_empty());
        assert!(interest.wakes(&Ok(rescan)));
        assert!(interest.wakes(&Err(notify::Error::generic("inotify read failed"))));
    }

    /// The watcher itself, on a real inotify: a directory removed and made
    /// again under the same name is watched again, and the held file's own
    /// watch wakes on writes to a deleted file.
    #[test]
    fn a_recreated_directory_and_a_deleted_held_file_still_wake() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::sync::mpsc::sync_channel;
        use std::time::Duration;

        let (_keep, root) = root();
        let logs = root.join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("app.log");
        let (wake, woken) = sync_channel(1);
        let mut watcher = DirWatcher::new(wake).unwrap();
        assert!(watcher.watch_for(&path, None));
        assert!(!watcher.watch_for(&path, None), "nothing changed");

        // Removed and made again before the watcher is asked: the identity
        // (or the removal event) tells the old watch is dead.
        std::fs::remove_dir(&logs).unwrap();
        std::fs::create_dir(&logs).unwrap();
        assert!(woken.recv_timeout(Duration::from_secs(10)).is_ok());
        assert!(watcher.watch_for(&path, None), "re-watched");
        while woken.try_recv().is_ok() {}
        std::fs::write(&path, b"x\n").unwrap();
        assert!(
            woken.recv_timeout(Duration::from_secs(10)).is_ok(),
            "no wake-up from the new directory"
        );

        // The held file, deleted: its own watch wakes on every write.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let id = FileId::of(&file.metadata().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(watcher.watch_for(&path, Some((file.as_raw_fd(), id))));
        while woken.try_recv().is_ok() {}
        file.write_all(b"y\n").unwrap();
        assert!(
            woken.recv_timeout(Duration::from_secs(10)).is_ok(),
            "no wake-up for a write to the deleted file"
        );
        assert!(watcher.watch_for(&path, None), "held watch removed");
    }
}
