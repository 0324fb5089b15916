//! Who an event concerns: directory → names → followers.
//!
//! One watcher serves every follower, so an event must be routed to the
//! followers it concerns, and only to them: in a busy directory such as
//! `/var/log` most events concern nobody, and a write to one file of three
//! hundred wakes one follower, not three hundred. Each follower registers
//! what its [plan](super::plan) says matters — the directories it watches
//! (their own removal or move matters) and the paths under them: every name
//! in its symlink chain, the path component it waits for under an ancestor,
//! and the held file's `/proc/self/fd/N` while the name no longer names it.
//! An event path wakes the followers of the directory it names, and those
//! registered under its parent for its last component: two hash lookups,
//! whatever the number of followers.
//!
//! The table also remembers, per follower, the names its file was renamed
//! to (a writer still writing to `app.log.1` after `mv app.log app.log.1`
//! keeps waking it), and which watched directories an event said were
//! removed or moved (their watch is dead even if a new directory gets the
//! same name and inode): their followers are woken to re-plan.
//!
//! `Access` events are dropped (our own `open` produces them). Queue overflow
//! (`Rescan`, no paths) and errors wake every follower, which re-examines
//! everything, so nothing is missed.
//!
//! Pure data: no I/O and no notify calls, so the notify thread can route
//! under this table's lock without ever waiting for a watch to be added.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::EventKind;
use notify::event::{ModifyKind, RenameMode};

use super::FollowerId;

/// Renamed-to names remembered per follower at most (a writer may still
/// write there).
const MAX_RENAMED: usize = 8;

/// A follower to wake, and whether it must plan its watches again.
pub type Wake = (FollowerId, bool);

/// A glob whose directories are scanned for new entries.
pub type ScanId = u32;

/// What one event asks for: followers to wake, and entries of scanned
/// directories for their globs to look at (`None`: everything, the events
/// may have been lost).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routed {
    pub wake: Vec<Wake>,
    pub scan: Vec<(ScanId, Option<PathBuf>)>,
}

#[derive(Debug, Default)]
struct Dir {
    /// Followers that watch this directory (its own events matter to them).
    watchers: Vec<FollowerId>,
    /// Entries in it that matter, and to whom.
    names: HashMap<OsString, Vec<FollowerId>>,
    /// Globs for which every entry created, moved or removed here matters.
    scanners: Vec<ScanId>,
}

impl Dir {
    fn is_empty(&self) -> bool {
        self.watchers.is_empty() && self.names.is_empty() && self.scanners.is_empty()
    }
}

/// What one follower registered.
#[derive(Debug, Default)]
struct Wants {
    dirs: Vec<PathBuf>,
    paths: Vec<PathBuf>,
    /// Where a path that matters was renamed to, newest last.
    renamed: VecDeque<PathBuf>,
}

impl Wants {
    fn concerns(&self, path: &Path) -> bool {
        self.dirs
            .iter()
            .chain(&self.paths)
            .chain(&self.renamed)
            .any(|p| p == path)
    }

    fn wants_path(&self, path: &Path) -> bool {
        self.paths.iter().chain(&self.renamed).any(|p| p == path)
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Table {
    dirs: HashMap<PathBuf, Dir>,
    followers: HashMap<FollowerId, Wants>,
    /// Watched directories an event said were removed or moved away.
    gone: HashSet<PathBuf>,
    /// The directories each glob scans.
    scans: HashMap<ScanId, HashSet<PathBuf>>,
}

fn split(path: &Path) -> Option<(&Path, &std::ffi::OsStr)> {
    Some((path.parent()?, path.file_name()?))
}

impl Table {
    /// `id` takes part from now on (with nothing registered yet).
    pub fn enroll(&mut self, id: FollowerId) {
        self.followers.entry(id).or_default();
    }

    pub fn is_enrolled(&self, id: FollowerId) -> bool {
        self.followers.contains_key(&id)
    }

    /// Every enrolled follower.
    pub fn all(&self) -> Vec<FollowerId> {
        self.followers.keys().copied().collect()
    }

    /// The directories `id` watches.
    pub fn dirs_of(&self, id: FollowerId) -> Vec<PathBuf> {
        self.followers
            .get(&id)
            .map_or_else(Vec::new, |w| w.dirs.clone())
    }

    /// The followers that watch `dir`.
    pub fn watchers(&self, dir: &Path) -> &[FollowerId] {
        self.dirs.get(dir).map_or(&[], |d| d.watchers.as_slice())
    }

    /// Whether any follower watches `dir`.
    pub fn is_watched(&self, dir: &Path) -> bool {
        !self.watchers(dir).is_empty()
    }

    /// Whether `dir` must be watched: a follower watches it or a glob scans it.
    pub fn is_needed(&self, dir: &Path) -> bool {
        self.dirs
            .get(dir)
            .is_some_and(|d| !d.watchers.is_empty() || !d.scanners.is_empty())
    }

    /// Glob `scan` scans `dirs` (too); returns those it did not scan before.
    pub fn scan(&mut self, scan: ScanId, dirs: &[PathBuf]) -> Vec<PathBuf> {
        let mine = self.scans.entry(scan).or_default();
        let mut new = Vec::new();
        for dir in dirs {
            if mine.insert(dir.clone()) {
                new.push(dir.clone());
                let d = self.dirs.entry(dir.clone()).or_default();
                if !d.scanners.contains(&scan) {
                    d.scanners.push(scan);
                }
            }
        }
        new
    }

    /// Glob `scan` no longer scans `dir` (it was removed).
    pub fn unscan(&mut self, scan: ScanId, dir: &Path) -> bool {
        let Some(mine) = self.scans.get_mut(&scan) else {
            return false;
        };
        if !mine.remove(dir) {
            return false;
        }
        if let Some(d) = self.dirs.get_mut(dir) {
            d.scanners.retain(|s| *s != scan);
            if d.is_empty() {
                self.dirs.remove(dir);
            }
        }
        true
    }

    /// The directories glob `scan` scans below (or at) `dir`.
    pub fn scanned_below(&self, scan: ScanId, dir: &Path) -> Vec<PathBuf> {
        self.scans
            .get(&scan)
            .map(|mine| {
                mine.iter()
                    .filter(|d| d.starts_with(dir))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Watched directories reported removed or moved since the last call.
    pub fn take_gone(&mut self) -> HashSet<PathBuf> {
        std::mem::take(&mut self.gone)
    }

    /// `id` now watches `dirs` for `paths`; what it registered before is
    /// replaced (the names its file was renamed to are kept). False if `id`
    /// is not enrolled.
    pub fn set(&mut self, id: FollowerId, dirs: &[PathBuf], paths: &[PathBuf]) -> bool {
        let Some(mut wants) = self.followers.remove(&id) else {
            return false;
        };
        for dir in wants.dirs.iter().filter(|d| !dirs.contains(d)) {
            self.unwatch_dir(id, dir);
        }
        for dir in dirs.iter().filter(|d| !wants.dirs.contains(d)) {
            self.dirs.entry(dir.clone()).or_default().watchers.push(id);
        }
        let old_paths = std::mem::replace(&mut wants.paths, paths.to_vec());
        for path in old_paths.iter().filter(|p| !wants.wants_path(p)) {
            self.unregister(id, path);
        }
        for path in paths.iter().filter(|p| !old_paths.contains(p)) {
            self.register(id, path);
        }
        wants.dirs = dirs.to_vec();
        self.followers.insert(id, wants);
        true
    }

    /// `id` takes part no more; returns the directories it watched.
    pub fn forget(&mut self, id: FollowerId) -> Vec<PathBuf> {
        let Some(wants) = self.followers.remove(&id) else {
            return Vec::new();
        };
        for dir in &wants.dirs {
            self.unwatch_dir(id, dir);
        }
        for path in wants.paths.iter().chain(&wants.renamed) {
            self.unregister(id, path);
        }
        wants.dirs
    }

    fn unwatch_dir(&mut self, id: FollowerId, dir: &Path) {
        if let Some(d) = self.dirs.get_mut(dir) {
            d.watchers.retain(|w| *w != id);
            if d.is_empty() {
                self.dirs.remove(dir);
            }
        }
    }

    fn register(&mut self, id: FollowerId, path: &Path) {
        let Some((dir, name)) = split(path) else {
            return;
        };
        let ids = self
            .dirs
            .entry(dir.to_path_buf())
            .or_default()
            .names
            .entry(name.to_os_string())
            .or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    fn unregister(&mut self, id: FollowerId, path: &Path) {
        let Some((dir, name)) = split(path) else {
            return;
        };
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        if let Some(ids) = d.names.get_mut(name) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                d.names.remove(name);
            }
        }
        if d.is_empty() {
            self.dirs.remove(dir);
        }
    }

    /// The followers `path` concerns: those watching it as a directory, and
    /// those registered for it under its parent.
    fn concerned(&self, path: &Path, out: &mut Vec<FollowerId>) {
        if let Some(d) = self.dirs.get(path) {
            out.extend(&d.watchers);
        }
        if let Some((dir, name)) = split(path)
            && let Some(ids) = self.dirs.get(dir).and_then(|d| d.names.get(name))
        {
            out.extend(ids);
        }
    }

    /// The followers `event` wakes; remembers rename targets and directories
    /// that went away.
    pub fn route(&mut self, event: &notify::Result<notify::Event>) -> Routed {
        let everyone = |table: &Table| Routed {
            wake: table.all().into_iter().map(|id| (id, true)).collect(),
            scan: table.scans.keys().map(|s| (*s, None)).collect(),
        };
        let event = match event {
            // An error may mean lost events: everyone looks.
            Err(_) => return everyone(self),
            Ok(event) => event,
        };
        if matches!(event.kind, EventKind::Access(_)) {
            return Routed::default();
        }
        // Queue overflow (`Rescan`) and anything without paths: everyone looks.
        if event.need_rescan() || event.paths.is_empty() {
            return everyone(self);
        }
        let mut scan = Vec::new();
        // An entry appeared in, left, or was renamed within a scanned
        // directory: its globs look at it. (Writes to files do not concern
        // them: a glob learns of a file once.)
        if matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        ) {
            for path in &event.paths {
                if let Some(d) = path.parent().and_then(|dir| self.dirs.get(dir)) {
                    scan.extend(d.scanners.iter().map(|s| (*s, Some(path.clone()))));
                }
                // A scanned directory itself removed or moved.
                if let Some(d) = self.dirs.get(path) {
                    scan.extend(d.scanners.iter().map(|s| (*s, Some(path.clone()))));
                }
            }
            scan.sort();
            scan.dedup();
        }
        let mut woken = Vec::new();
        if let EventKind::Modify(ModifyKind::Name(RenameMode::Both)) = event.kind
            && let [from, to] = &event.paths[..]
        {
            self.concerned(from, &mut woken);
            for id in std::mem::take(&mut woken) {
                self.renamed_to(id, to);
            }
        }
        let mut replan = Vec::new();
        // A watched directory removed (notify: `Remove`) or moved
        // (`MOVE_SELF`, reported as a rename `From`).
        if matches!(
            event.kind,
            EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Any))
        ) {
            for path in &event.paths {
                if self.is_watched(path) {
                    self.gone.insert(path.clone());
                    replan.extend(self.watchers(path));
                }
            }
        }
        for path in &event.paths {
            self.concerned(path, &mut woken);
        }
        woken.sort_unstable();
        woken.dedup();
        let wake = woken
            .into_iter()
            .map(|id| (id, replan.contains(&id)))
            .collect();
        Routed { wake, scan }
    }

    /// A path that matters to `id` was renamed to `to`: `to` matters too
    /// from now on (a writer may still write there).
    fn renamed_to(&mut self, id: FollowerId, to: &Path) {
        let Some(wants) = self.followers.get_mut(&id) else {
            return;
        };
        if wants.concerns(to) {
            return;
        }
        let dropped = if wants.renamed.len() == MAX_RENAMED {
            wants.renamed.pop_front()
        } else {
            None
        };
        wants.renamed.push_back(to.to_path_buf());
        let still = dropped.as_ref().is_some_and(|d| wants.wants_path(d));
        if let Some(dropped) = dropped.filter(|_| !still) {
            self.unregister(id, &dropped);
        }
        self.register(id, to);
    }

    #[cfg(test)]
    fn route_wake(&mut self, event: &notify::Result<notify::Event>) -> Vec<Wake> {
        self.route(event).wake
    }

    #[cfg(test)]
    fn dir_count(&self) -> usize {
        self.dirs.len()
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, DataChange, Flag, RemoveKind};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<notify::Event> {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        Ok(e)
    }

    fn data() -> EventKind {
        EventKind::Modify(ModifyKind::Data(DataChange::Any))
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A table with follower 7 on `/var/log/app.log` (and its held file,
    /// fd 7), as one follower's watcher had it.
    fn one() -> Table {
        let mut t = Table::default();
        t.enroll(7);
        t.set(
            7,
            &[p("/var/log")],
            &[p("/var/log/app.log"), p("/proc/self/fd/7")],
        );
        t
    }

    #[test]
    fn events_that_concern_the_file_wake_others_do_not() {
        let mut t = one();
        assert_eq!(
            t.route_wake(&event(data(), &["/var/log/app.log"])),
            [(7, false)]
        );
        assert!(
            t.route_wake(&event(data(), &["/var/log/syslog"]))
                .is_empty()
        );
        assert!(
            t.route_wake(&event(
                EventKind::Access(AccessKind::Any),
                &["/var/log/app.log"]
            ))
            .is_empty()
        );
        // The held file's own watch.
        assert_eq!(
            t.route_wake(&event(data(), &["/proc/self/fd/7"])),
            [(7, false)]
        );
        // Renamed away: the new name matters from now on (a writer may still write there).
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            t.route_wake(&event(both, &["/var/log/app.log", "/var/log/app.log.1"])),
            [(7, false)]
        );
        assert_eq!(
            t.route_wake(&event(data(), &["/var/log/app.log.1"])),
            [(7, false)]
        );
        assert!(
            t.route_wake(&event(data(), &["/var/log/app.log.2"]))
                .is_empty()
        );
        assert!(t.take_gone().is_empty());
        // The watched directory removed, or moved: remembered as gone, and
        // its follower re-plans.
        assert_eq!(
            t.route_wake(&event(EventKind::Remove(RemoveKind::Folder), &["/var/log"])),
            [(7, true)]
        );
        assert_eq!(t.take_gone(), HashSet::from([p("/var/log")]));
        let moved = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert_eq!(t.route_wake(&event(moved, &["/var/log"])), [(7, true)]);
        assert_eq!(t.take_gone(), HashSet::from([p("/var/log")]));
        // Queue overflow: no paths, flag Rescan; and errors.
        let rescan = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(rescan.paths.is_empty());
        assert_eq!(t.route_wake(&Ok(rescan)), [(7, true)]);
        assert_eq!(
            t.route_wake(&Err(notify::Error::generic("inotify read failed"))),
            [(7, true)]
        );
    }

    /// Many followers in one directory: an event wakes only the one whose
    /// file it names; the directory's own events wake them all.
    #[test]
    fn an_event_wakes_only_the_followers_it_concerns() {
        let mut t = Table::default();
        for id in 0..300 {
            t.enroll(id);
            let dir = format!("/logs/{}", id % 3);
            t.set(id, &[p(&dir)], &[p(&format!("{dir}/{id}.log"))]);
        }
        assert_eq!(t.dir_count(), 3, "three directories, each once");
        assert_eq!(t.watchers(Path::new("/logs/1")).len(), 100);
        assert_eq!(
            t.route_wake(&event(data(), &["/logs/1/4.log"])),
            [(4, false)]
        );
        assert!(t.route_wake(&event(data(), &["/logs/1/5.log"])).is_empty());
        let attrib = EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any));
        let woken = t.route_wake(&event(attrib, &["/logs/2"]));
        assert_eq!(woken.len(), 100);
        assert!(woken.iter().all(|(id, replan)| id % 3 == 2 && !replan));
        // A rename concerns the renamed file's follower only.
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            t.route_wake(&event(both, &["/logs/0/3.log", "/logs/0/3.log.1"])),
            [(3, false)]
        );
        assert_eq!(
            t.route_wake(&event(data(), &["/logs/0/3.log.1"])),
            [(3, false)]
        );
    }

    /// A directory shared by two followers stays registered until neither
    /// needs it; removing a follower leaves no trace of it.
    #[test]
    fn a_shared_directory_is_released_only_by_its_last_follower() {
        let mut t = Table::default();
        t.enroll(1);
        t.enroll(2);
        t.set(1, &[p("/a"), p("/b")], &[p("/a/x"), p("/b/y")]);
        t.set(2, &[p("/a")], &[p("/a/z")]);
        assert_eq!(t.watchers(Path::new("/a")), [1, 2]);
        assert_eq!(t.forget(1), [p("/a"), p("/b")]);
        assert!(t.is_watched(Path::new("/a")));
        assert!(!t.is_watched(Path::new("/b")));
        assert!(t.route_wake(&event(data(), &["/a/x"])).is_empty());
        assert_eq!(t.route_wake(&event(data(), &["/a/z"])), [(2, false)]);
        // Re-planned elsewhere: the old directory goes.
        t.set(2, &[p("/c")], &[p("/c/z")]);
        assert!(!t.is_watched(Path::new("/a")));
        assert_eq!(t.dir_count(), 1);
        assert_eq!(t.forget(2), [p("/c")]);
        assert_eq!(t.dir_count(), 0);
        assert!(!t.set(2, &[p("/c")], &[]), "not enrolled");
        assert!(t.route_wake(&event(data(), &["/c/z"])).is_empty());
    }

    /// At most [`MAX_RENAMED`] renamed-to names are kept, and dropping one
    /// unregisters it.
    #[test]
    fn renamed_names_are_bounded() {
        let mut t = one();
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        for i in 1..=MAX_RENAMED + 1 {
            let from = if i == 1 {
                "/var/log/app.log".to_string()
            } else {
                format!("/var/log/app.log.{}", i - 1)
            };
            let to = format!("/var/log/app.log.{i}");
            t.route_wake(&event(both, &[&from, &to]));
        }
        assert!(
            t.route_wake(&event(data(), &["/var/log/app.log.1"]))
                .is_empty()
        );
        assert_eq!(
            t.route_wake(&event(data(), &["/var/log/app.log.9"])),
            [(7, false)]
        );
        // The followed name itself is never dropped.
        assert_eq!(
            t.route_wake(&event(data(), &["/var/log/app.log"])),
            [(7, false)]
        );
    }
}
