//! The one inotify watcher of the file source: every follower's watches in
//! one notify watcher (one inotify instance, one thread), events routed by
//! the [table](super::table) into the [ready set](super::ready).
//!
//! A directory is watched once, however many followers need it, and
//! unwatched when the last one stops needing it. One directory under two
//! spellings (`/var/run` and `/run`) is one inotify watch, which notify
//! reports under one spelling, so a directory is also watched once per
//! identity: a follower whose plan spells it differently is registered under
//! the spelling already watched.
//!
//! A watch follows the directory's inode: if the directory is removed and
//! made again (`rm -r logs; mkdir logs`), the old watch sees nothing of the
//! new one. So every watched directory is remembered with its identity, and
//! watched again when its name names another directory, or when an event
//! said it was removed or moved (the inode may be reused). Watching a
//! directory anew wakes every follower that uses it: a change made before a
//! watch was added reports nothing, so each must look again.
//!
//! While a followed name no longer names the file its follower holds open
//! (deleted, or renamed out of every watched directory), that file itself is
//! watched through `/proc/self/fd/N`, so a writer that never reopens still
//! wakes the follower at once. While the name does name it, the directory's
//! events already do, and a second watch would only double them.
//!
//! Locks: the notify thread takes only the table's lock (and the ready
//! set's); `watch`/`unwatch` are called only without it, since notify
//! answers them on that same thread.
//!
//! This is inotify only: `--poll` needs no watcher (see the parent module).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use notify::{Config, RecommendedWatcher, RecursiveMode, Watcher};

use super::FollowerId;
use super::identity::FileId;
use super::plan::{Plan, watch_plan};
use super::ready::Ready;
use super::table::{ScanId, Table};

/// Where entries of scanned directories go (see [`Watches::scan`]); called
/// on the notify thread, so it must not block.
pub type OnScan = Box<dyn Fn(ScanId, Option<PathBuf>) + Send + Sync>;

/// What planning a follower's watches did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replanned {
    /// A watch of this follower's was added, replaced or removed: it must
    /// look again (a change made before a watch was added reports nothing).
    pub changed: bool,
    /// Every watch it needs is in place; if not, it should be looked at now
    /// and then instead of trusting events alone.
    pub complete: bool,
}

#[derive(Debug)]
struct DirWatch {
    /// The identity the directory had when its watch was added (`None`:
    /// could not tell).
    id: Option<FileId>,
    /// The watch was added (false: it failed, and is retried at the next plan).
    ok: bool,
}

#[derive(Debug)]
struct HeldWatch {
    id: FileId,
    ok: bool,
    /// The follower whose descriptor the path names.
    owner: FollowerId,
    users: BTreeSet<FollowerId>,
}

struct Inner {
    notify: RecommendedWatcher,
    /// Watched directories, by the spelling events come under.
    dirs: HashMap<PathBuf, DirWatch>,
    /// The spelling each watched directory identity is watched under.
    by_id: HashMap<FileId, PathBuf>,
    /// Held files' own watches, by `/proc/self/fd/N` path.
    held: HashMap<PathBuf, HeldWatch>,
    /// The held watch each follower is registered under.
    held_of: HashMap<FollowerId, PathBuf>,
    /// Followers with a watch that could not be added.
    incomplete: HashSet<FollowerId>,
}

/// See the module docs.
pub struct Watches {
    table: Arc<Mutex<Table>>,
    inner: Mutex<Inner>,
    ready: Arc<Ready>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Bookkeeping only: after a panic elsewhere, the next plan repairs it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watches {
    /// One inotify watcher whose events mark followers in `ready`, and
    /// hand entries of scanned directories to `on_scan`.
    pub fn new(ready: Arc<Ready>, on_scan: OnScan) -> notify::Result<Watches> {
        let table = Arc::new(Mutex::new(Table::default()));
        let handler = {
            let table = Arc::clone(&table);
            let ready = Arc::clone(&ready);
            move |event: notify::Result<notify::Event>| {
                let routed = lock(&table).route(&event);
                for (id, replan) in routed.wake {
                    ready.mark(id, replan);
                }
                for (scan, path) in routed.scan {
                    on_scan(scan, path);
                }
            }
        };
        Ok(Watches {
            table,
            inner: Mutex::new(Inner {
                notify: RecommendedWatcher::new(handler, Config::default())?,
                dirs: HashMap::new(),
                by_id: HashMap::new(),
                held: HashMap::new(),
                held_of: HashMap::new(),
                incomplete: HashSet::new(),
            }),
            ready,
        })
    }

    /// `id` takes part: its events are routed from now on.
    pub fn enroll(&self, id: FollowerId) {
        lock(&self.table).enroll(id);
    }

    /// Followers with a watch missing.
    pub fn incomplete(&self) -> Vec<FollowerId> {
        lock(&self.inner).incomplete.iter().copied().collect()
    }

    /// Makes `id`'s watches the right ones for `path` as it is now, and for
    /// `held`, the file it holds open while the path no longer names it:
    /// call it at start and whenever either may have changed. Does nothing
    /// for a follower not enrolled (removed meanwhile).
    pub fn replan(&self, id: FollowerId, path: &Path, held: Option<(RawFd, FileId)>) -> Replanned {
        // Looking at the file system takes no lock.
        let plan = watch_plan(path);
        let mut inner = lock(&self.inner);
        let plan = inner.respell(plan);
        let held = held.map(|(fd, fid)| inner.held_path(fd, fid));
        let mut paths = plan.paths.clone();
        paths.extend(held.iter().map(|(p, _)| p.clone()));
        let (old, check, gone) = {
            let mut table = lock(&self.table);
            let old = table.dirs_of(id);
            let mut check = old.clone();
            if !table.set(id, &plan.dirs, &paths) {
                return Replanned {
                    changed: false,
                    complete: true,
                };
            }
            let gone = table.take_gone();
            for dir in plan.dirs.iter().chain(&gone) {
                if !check.contains(dir) {
                    check.push(dir.clone());
                }
            }
            (old, check, gone)
        };
        let mut wake = Vec::new();
        let mut changed = false;
        for dir in &check {
            let mine = plan.dirs.contains(dir) || old.contains(dir);
            if self.refresh(&mut inner, dir, gone.contains(dir), id, &mut wake) {
                changed |= mine;
            }
        }
        changed |= self.set_held(&mut inner, id, held, &mut wake);
        let complete = plan
            .dirs
            .iter()
            .all(|d| inner.dirs.get(d).is_some_and(|w| w.ok))
            && inner
                .held_of
                .get(&id)
                .is_none_or(|p| inner.held.get(p).is_some_and(|h| h.ok));
        if complete {
            inner.incomplete.remove(&id);
        } else {
            inner.incomplete.insert(id);
        }
        drop(inner);
        for other in wake {
            self.ready.mark(other, true);
        }
        Replanned { changed, complete }
    }

    /// Glob `scan` scans `dirs` from now on (as well as what it scanned
    /// before): every entry created, moved or removed in them reaches
    /// `on_scan`. Returns whether every watch is in place.
    pub fn scan(&self, scan: ScanId, dirs: &[PathBuf]) -> bool {
        let mut inner = lock(&self.inner);
        let new = lock(&self.table).scan(scan, dirs);
        let mut wake = Vec::new();
        for dir in &new {
            self.refresh(&mut inner, dir, false, FollowerId::MAX, &mut wake);
        }
        let complete = dirs.iter().all(|d| inner.dirs.get(d).is_some_and(|w| w.ok));
        drop(inner);
        for other in wake {
            self.ready.mark(other, true);
        }
        complete
    }

    /// Glob `scan` no longer scans `dir` nor anything below it (it is gone).
    pub fn unscan_below(&self, scan: ScanId, dir: &Path) {
        let mut inner = lock(&self.inner);
        let below = lock(&self.table).scanned_below(scan, dir);
        let mut wake = Vec::new();
        for d in &below {
            lock(&self.table).unscan(scan, d);
            self.refresh(&mut inner, d, true, FollowerId::MAX, &mut wake);
        }
        drop(inner);
        for other in wake {
            self.ready.mark(other, true);
        }
    }

    /// `id` is no longer followed: unwatch what only it needed.
    pub fn forget(&self, id: FollowerId) {
        let mut inner = lock(&self.inner);
        let check = lock(&self.table).forget(id);
        let mut wake = Vec::new();
        for dir in &check {
            self.refresh(&mut inner, dir, false, id, &mut wake);
        }
        self.set_held(&mut inner, id, None, &mut wake);
        inner.incomplete.remove(&id);
        drop(inner);
        for other in wake {
            self.ready.mark(other, true);
        }
    }

    /// Brings the watch on `dir` in line with the table: unwatched if no
    /// follower needs it, (re)watched if it is missing, failed, `gone`, or
    /// its name names another directory now. Followers other than `me` that
    /// use it go to `wake` when its watch changed. Returns whether it did.
    fn refresh(
        &self,
        inner: &mut Inner,
        dir: &Path,
        gone: bool,
        me: FollowerId,
        wake: &mut Vec<FollowerId>,
    ) -> bool {
        let (users, needed) = {
            let table = lock(&self.table);
            (table.watchers(dir).to_vec(), table.is_needed(dir))
        };
        if !needed {
            let Some(old) = inner.dirs.remove(dir) else {
                return false;
            };
            inner.forget_dir(dir, &old);
            tracing::debug!(dir = %dir.display(), "no longer watching directory");
            return true;
        }
        if let Some(w) = inner.dirs.get(dir)
            && w.ok
            && w.id.is_some()
            && !gone
            && FileId::of_path(dir) == w.id
        {
            return false;
        }
        if let Some(old) = inner.dirs.remove(dir) {
            inner.forget_dir(dir, &old);
        }
        // The identity before the watch: if the directory is replaced in
        // between, the next plan sees a mismatch and watches again.
        let id = FileId::of_path(dir);
        let ok = match inner.notify.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "watching directory");
                true
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), "cannot watch directory: {err}; looking every second instead");
                false
            }
        };
        if ok && let Some(id) = id {
            inner.by_id.insert(id, dir.to_path_buf());
        }
        inner.dirs.insert(dir.to_path_buf(), DirWatch { id, ok });
        wake.extend(users.into_iter().filter(|u| *u != me));
        true
    }

    /// Makes `id`'s held-file watch `held` (a path and the file's identity,
    /// or none). Returns whether it changed.
    fn set_held(
        &self,
        inner: &mut Inner,
        id: FollowerId,
        held: Option<(PathBuf, FileId)>,
        wake: &mut Vec<FollowerId>,
    ) -> bool {
        let old = inner.held_of.get(&id).cloned();
        if old.as_ref() == held.as_ref().map(|(p, _)| p)
            && old
                .as_ref()
                .and_then(|p| inner.held.get(p))
                .is_none_or(|h| h.ok)
        {
            return false;
        }
        if let Some(old) = old {
            inner.held_of.remove(&id);
            if let Some(h) = inner.held.get_mut(&old) {
                h.users.remove(&id);
                if h.users.is_empty() || h.owner == id {
                    // Its descriptor may close now: others re-plan onto their own.
                    let h = inner.held.remove(&old);
                    let _ = inner.notify.unwatch(&old);
                    wake.extend(h.into_iter().flat_map(|h| h.users));
                }
            }
        }
        let Some((path, fid)) = held else {
            return true;
        };
        if let Some(h) = inner.held.get_mut(&path) {
            if h.id == fid && h.ok {
                h.users.insert(id);
                inner.held_of.insert(id, path);
                return true;
            }
            // The descriptor number was reused for another file (its owner
            // has not re-planned yet), or the watch failed: start over.
            let stale = inner.held.remove(&path);
            let _ = inner.notify.unwatch(&path);
            wake.extend(stale.into_iter().flat_map(|h| h.users).filter(|u| *u != id));
        }
        let ok = match inner.notify.watch(&path, RecursiveMode::NonRecursive) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(
                    "cannot watch the file held open ({}): {err}; looking every second instead",
                    path.display()
                );
                false
            }
        };
        inner.held.insert(
            path.clone(),
            HeldWatch {
                id: fid,
                ok,
                owner: id,
                users: BTreeSet::from([id]),
            },
        );
        inner.held_of.insert(id, path);
        true
    }

    /// How many inotify watches are in place (directories and held files).
    #[cfg(test)]
    pub fn watch_count(&self) -> usize {
        let inner = lock(&self.inner);
        inner.dirs.values().filter(|w| w.ok).count() + inner.held.values().filter(|h| h.ok).count()
    }
}

impl Inner {
    /// `plan` with each directory spelled as the watch on its identity is
    /// (so that its events, reported under that spelling, are routed).
    fn respell(&self, plan: Plan) -> Plan {
        let spelling = |dir: &Path| -> PathBuf {
            match FileId::of_path(dir).and_then(|id| self.by_id.get(&id)) {
                Some(watched) if watched != dir && self.dirs.contains_key(watched) => {
                    watched.clone()
                }
                _ => dir.to_path_buf(),
            }
        };
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(plan.dirs.len());
        let mut renamed: HashMap<PathBuf, PathBuf> = HashMap::new();
        for dir in plan.dirs {
            let to = spelling(&dir);
            if !dirs.contains(&to) {
                dirs.push(to.clone());
            }
            if to != dir {
                renamed.insert(dir, to);
            }
        }
        let paths = plan
            .paths
            .into_iter()
            .map(
                |p| match (p.parent().and_then(|d| renamed.get(d)), p.file_name()) {
                    (Some(dir), Some(name)) => dir.join(name),
                    _ => p,
                },
            )
            .collect();
        Plan { dirs, paths }
    }

    /// The path `id`'s held file is watched under: another follower's, if
    /// one already watches that very file, else `/proc/self/fd/N`.
    fn held_path(&self, fd: RawFd, fid: FileId) -> (PathBuf, FileId) {
        let own = PathBuf::from(format!("/proc/self/fd/{fd}"));
        let shared = self
            .held
            .iter()
            .find(|(p, h)| h.id == fid && h.ok && **p != own)
            .map(|(p, _)| p.clone());
        (shared.unwrap_or(own), fid)
    }

    fn forget_dir(&mut self, dir: &Path, old: &DirWatch) {
        if old.ok {
            // Already gone from notify's table when the directory was removed.
            let _ = self.notify.unwatch(dir);
        }
        if let Some(id) = old.id
            && self.by_id.get(&id).is_some_and(|d| d == dir)
        {
            self.by_id.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    /// Waits until `ready` hands out `id` (finishing passes over others).
    fn woken(ready: &Ready, id: FollowerId) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some((got, _)) = ready.take_within(deadline - Instant::now()) {
            ready.done(got, false);
            if got == id {
                return true;
            }
        }
        false
    }

    /// Hands out everything pending, quickly.
    fn drain(ready: &Ready) {
        while let Some((got, _)) = ready.take_within(Duration::from_millis(100)) {
            ready.done(got, false);
        }
    }

    /// On a real inotify: a directory removed and made again under the same
    /// name is watched again, and the held file's own watch wakes on writes
    /// to a deleted file.
    #[test]
    fn a_recreated_directory_and_a_deleted_held_file_still_wake() {
        let _serial = super::super::SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (_keep, root) = root();
        let logs = root.join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("app.log");
        let ready = Arc::new(Ready::default());
        let watches = Watches::new(Arc::clone(&ready), Box::new(|_, _| {})).unwrap();
        watches.enroll(1);
        assert!(watches.replan(1, &path, None).changed);
        assert!(!watches.replan(1, &path, None).changed, "nothing changed");

        // Removed and made again before the watcher is asked: the identity
        // (or the removal event) tells the old watch is dead.
        std::fs::remove_dir(&logs).unwrap();
        std::fs::create_dir(&logs).unwrap();
        assert!(woken(&ready, 1));
        assert!(watches.replan(1, &path, None).changed, "re-watched");
        std::fs::write(&path, b"x\n").unwrap();
        assert!(woken(&ready, 1), "no wake-up from the new directory");

        // The held file, deleted: its own watch wakes on every write.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let id = FileId::of(&file.metadata().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(
            watches
                .replan(1, &path, Some((file.as_raw_fd(), id)))
                .changed
        );
        assert_eq!(watches.watch_count(), 2);
        drain(&ready);
        file.write_all(b"y\n").unwrap();
        assert!(
            woken(&ready, 1),
            "no wake-up for a write to the deleted file"
        );
        assert!(watches.replan(1, &path, None).changed, "held watch removed");
        assert_eq!(watches.watch_count(), 1);
    }

    /// Two followers in one directory share its watch; it goes when the
    /// last of them does.
    #[test]
    fn a_shared_directory_is_watched_once_and_unwatched_last() {
        let _serial = super::super::SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (_keep, root) = root();
        let ready = Arc::new(Ready::default());
        let watches = Watches::new(Arc::clone(&ready), Box::new(|_, _| {})).unwrap();
        std::fs::create_dir(root.join("b")).unwrap();
        for id in 0..3 {
            watches.enroll(id);
        }
        watches.replan(0, &root.join("a.log"), None);
        watches.replan(1, &root.join("b.log"), None);
        watches.replan(2, &root.join("b/c.log"), None);
        assert_eq!(watches.watch_count(), 2, "the root once, and b");
        watches.forget(0);
        assert_eq!(watches.watch_count(), 2, "b.log still needs the root");
        watches.forget(1);
        assert_eq!(watches.watch_count(), 1);
        watches.forget(2);
        assert_eq!(watches.watch_count(), 0);
        // A forgotten follower is not planned for again.
        assert!(!watches.replan(2, &root.join("b/c.log"), None).changed);
        assert_eq!(watches.watch_count(), 0);
    }

    /// One directory under two spellings, planned by two followers, is one
    /// watch; events reach both.
    #[test]
    fn two_spellings_of_one_directory_are_one_watch() {
        let _serial = super::super::SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (_keep, root) = root();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("alias")).unwrap();
        let ready = Arc::new(Ready::default());
        let watches = Watches::new(Arc::clone(&ready), Box::new(|_, _| {})).unwrap();
        watches.enroll(1);
        watches.enroll(2);
        watches.replan(1, &root.join("real/one.log"), None);
        watches.replan(2, &root.join("alias/two.log"), None);
        // `real` once under both spellings, and the root, where the `alias`
        // link could be re-pointed.
        assert_eq!(watches.watch_count(), 2);
        std::fs::write(root.join("real/two.log"), b"x\n").unwrap();
        assert!(
            woken(&ready, 2),
            "an event under the watched spelling reaches 2"
        );
    }
}
