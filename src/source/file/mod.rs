//! The file source: any number of files followed by name (`tail -F`),
//! turning their changes into published lines.
//!
//! One [`FileSource`] serves every followed file with a fixed set of threads:
//!
//! - **one watcher** ([`watch`]): a single notify watcher, so a single
//!   inotify instance and its one thread, holding the watches of every
//!   follower — each directory once, however many files live in it;
//! - **a routing table** ([`table`]): directory → names → followers, so an
//!   event wakes only the followers it concerns, in two hash lookups;
//! - **a ready set** ([`ready`]): wake-ups carry which follower to read,
//!   coalesce, and are never lost;
//! - **a pool of readers** (`min(available_parallelism, 4)` threads) that
//!   drain the ready set, one pass over one follower at a time, at most
//!   [`follow::PASS_BYTES`] per pass so a busy file cannot starve quiet
//!   ones;
//! - **a ticker** thread for what has no events: `--poll`, and the
//!   followers whose watches could not all be added.
//!
//! No thread per file, and idle files cost no CPU: readers sleep on the
//! ready set, the ticker sleeps until a follower needs it. Why threads and
//! not tokio tasks: all of the work is blocking file I/O (`read`, `fstat`,
//! `pread`) and publishing is synchronous, so plain threads never occupy a
//! runtime worker that clients need.
//!
//! With `--poll` there is no watcher at all: every interval, the ticker
//! looks at every follower — an `fstat` of the file held and a `stat` of
//! the path ([`Follower::looks_unchanged`]) — and marks for the readers only
//! those that changed (size, modification or change time, or what the path
//! names), which then get a full pass; a glob lists again only the
//! directories whose modification time moved. notify's `PollWatcher` is not
//! used: it compares modification times in whole seconds, so a write in the
//! same second as its previous scan goes unseen — the last lines of a burst
//! would wait for the next write, possibly forever. (Our stamps compare
//! nanoseconds, size too, and a file read to its end only counts as
//! unchanged if its size is still our offset.) If inotify cannot watch
//! a directory (watch limit reached, say), that follower is looked at every
//! second instead.
//!
//! Followers can be added and removed while the source runs ([`FileSource::add`],
//! [`FileSource::remove`]); removal unwatches what only that follower needed.
//!
//! # Descriptor budget
//!
//! - one open descriptor per followed file that exists (two for a moment
//!   while a rotated file is drained);
//! - one inotify instance for the whole source (with notify's epoll and
//!   waker: three descriptors), and in it one watch per distinct directory
//!   that matters plus one per held file whose name no longer names it —
//!   whatever the number of files;
//! - one per client replaying old lines from disk, while it replays.
//!
//! # Modules
//!
//! - [`path`]: what a typed path means (absolute, decided at start-up).
//! - [`identity`]: a file's (device, inode), and what a path names now.
//! - [`follow`]: the `tail -F` state machine for one path.
//! - [`plan`]: which directories (and entries in them) matter for one path.
//! - [`table`]: directory → names → followers: which followers an event concerns.
//! - [`watch`]: the one notify watcher, shared by every follower.
//! - [`ready`]: the set of followers with something to read.
//! - [`replay`]: the index from `seq` to file offsets, and the hub's
//!   [`Replay`](crate::hub::Replay) that reads old lines back with it.

pub mod claims;
pub mod follow;
pub mod glob;
pub mod identity;
pub mod path;
pub mod plan;
pub mod ready;
pub mod replay;
pub mod table;
pub mod watch;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::source::{Publisher, Source};

use claims::Claims;
use follow::{Follower, ReadLimits};
use glob::Glob;
use ready::Ready;
use replay::{FileReplay, ReplayIndex};
use table::ScanId;
use watch::Watches;

/// A followed file, as the source knows it; also the `file` index its
/// lines carry (the hub's index for its name: a file removed and found
/// again under the same name gets it back).
pub type FollowerId = u32;

/// How to watch files.
#[derive(Debug, Clone, Copy)]
pub enum WatchMode {
    /// inotify, through notify's recommended watcher.
    Events,
    /// A pass every interval, no events (for NFS and other file systems
    /// that deliver none).
    Poll(Duration),
}

/// How a file source works.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    pub mode: WatchMode,
    pub limits: ReadLimits,
    /// Reader threads.
    pub readers: usize,
}

impl FileOptions {
    /// `mode` and `limits`, with the default number of readers.
    pub fn new(mode: WatchMode, limits: ReadLimits) -> FileOptions {
        FileOptions {
            mode,
            limits,
            readers: default_readers(),
        }
    }
}

/// `min(available_parallelism, 4)`: reading is mostly copying from the page
/// cache, so more threads than cores only queue; four keep a slow disk or a
/// stalled NFS read from holding up every other file.
pub fn default_readers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// How often to look when inotify could not watch everything it should.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// Rounds of "look, then re-plan the watches" in one pass at most. Until the
/// path names the file read, the watches can change under us (a missing
/// parent directory appears, then its child; a link is re-pointed; a
/// directory is made anew), and a change made before its watch was added
/// reports nothing, so we look again after every change of plan. Each round
/// settles one level of a symlink chain or one missing directory; 32 covers
/// any real chain (Linux follows 40 links) with the depth of a path, and what
/// a tree still changing faster than that leaves is picked up at its next
/// event.
const MAX_REPLANS: usize = 32;

/// One follower and what it is driven with.
struct Slot {
    /// `None` once removed (its file is closed then).
    follower: Option<Follower>,
    path: PathBuf,
    /// The glob it matched (it is dropped when finished), if any.
    glob: Option<ScanId>,
    /// The file it read at the end of its last pass, and up to where.
    reading: Option<(identity::FileId, u64)>,
}

/// Globs and the entries of their directories waiting to be looked at.
#[derive(Default)]
struct Discovery {
    state: Mutex<DiscoveryState>,
    cond: Condvar,
}

#[derive(Default)]
struct DiscoveryState {
    /// (glob, entry); `None`: the whole glob, from its root.
    queue: VecDeque<(ScanId, Option<PathBuf>)>,
    /// What `queue` holds, so an entry seen many times is looked at once.
    queued: HashSet<(ScanId, Option<PathBuf>)>,
    stopping: bool,
}

impl Discovery {
    /// Called on the notify thread: never blocks but for this short lock.
    fn push(&self, scan: ScanId, path: Option<PathBuf>) {
        let mut state = lock(&self.state);
        if state.queued.insert((scan, path.clone())) {
            state.queue.push_back((scan, path));
            self.cond.notify_one();
        }
    }

    /// The next entry to look at; blocks while there is none. `None` once stopping.
    fn take(&self) -> Option<(ScanId, Option<PathBuf>)> {
        let mut state = lock(&self.state);
        loop {
            if state.stopping {
                return None;
            }
            if let Some(next) = state.queue.pop_front() {
                state.queued.remove(&next);
                return Some(next);
            }
            state = self.cond.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stop(&self) {
        lock(&self.state).stopping = true;
        self.cond.notify_all();
    }
}

/// What the readers, the ticker and the source's methods share.
struct Shared {
    out: Publisher,
    index: Arc<ReplayIndex>,
    options: FileOptions,
    followers: Mutex<HashMap<FollowerId, Arc<Mutex<Slot>>>>,
    ready: Arc<Ready>,
    /// `None` with `--poll`.
    watches: Option<Watches>,
    ticker: Ticker,
    claims: Arc<Claims>,
    /// Every glob followed, by scan id.
    globs: Mutex<Vec<Arc<Glob>>>,
    discovery: Arc<Discovery>,
    /// A glob's watches could not all be added: rescan it every second.
    scans_incomplete: Mutex<HashSet<ScanId>>,
    /// Held from "is this match followed yet?" to "it is": the start-up
    /// walk and the discovery thread may find one file at once.
    considering: Mutex<()>,
    /// With `--poll`: what each glob's directories held when last listed.
    poll_walks: Mutex<HashMap<ScanId, glob::WalkCache>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a pass leaves a follower that the next pass re-examines.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// See the module docs.
pub struct FileSource {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl FileSource {
    /// Starts the source's watcher (unless `--poll`), readers and ticker,
    /// with no file yet; old lines are replayed for the hub from now on.
    pub fn start(out: Publisher, options: FileOptions) -> std::io::Result<FileSource> {
        let index = ReplayIndex::new(options.limits.max_line_bytes);
        let ready = Arc::new(Ready::default());
        let discovery = Arc::new(Discovery::default());
        let on_scan: watch::OnScan = {
            let discovery = Arc::clone(&discovery);
            Box::new(move |scan, path| discovery.push(scan, path))
        };
        let watches = match options.mode {
            WatchMode::Events => {
                Some(Watches::new(Arc::clone(&ready), on_scan).map_err(|err| {
                    std::io::Error::other(format!("cannot watch files (inotify): {err}"))
                })?)
            }
            WatchMode::Poll(_) => None,
        };
        out.serve_replay(Arc::new(FileReplay::new(Arc::clone(&index))));
        let shared = Arc::new(Shared {
            out,
            index,
            options,
            followers: Mutex::new(HashMap::new()),
            ready,
            watches,
            ticker: Ticker::default(),
            claims: Arc::new(Claims::default()),
            globs: Mutex::new(Vec::new()),
            discovery,
            scans_incomplete: Mutex::new(HashSet::new()),
            considering: Mutex::new(()),
            poll_walks: Mutex::new(HashMap::new()),
        });
        let mut threads = Vec::new();
        let spawned = (|| {
            for n in 0..options.readers.max(1) {
                let shared = Arc::clone(&shared);
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("file-reader-{n}"))
                        .spawn(move || read(&shared))?,
                );
            }
            let ticking = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("file-ticker".into())
                    .spawn(move || tick(&ticking))?,
            );
            let discovering = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("file-discovery".into())
                    .spawn(move || discover(&discovering))?,
            );
            Ok::<_, std::io::Error>(())
        })();
        let source = FileSource {
            shared,
            threads: Mutex::new(threads),
        };
        spawned?;
        Ok(source)
    }

    /// Follows `path` — absolute, as [`path::absolute`] makes it — shown to
    /// clients as `name`, from its end (history filled from its last lines).
    ///
    /// Returns once the file is open (positioned at its end, history filled)
    /// or known to be missing, and its watches are in place: a line appended
    /// after this returns is a live line.
    pub fn add(&self, path: PathBuf, name: String) -> FollowerId {
        let backlog = self.shared.options.limits.backlog_bytes;
        self.shared.add(path, name, From::End(backlog), None)
    }

    /// Follows `path` from its first byte, telling clients it was added
    /// (`added`): for a file that appeared while the server runs.
    pub fn add_new(&self, path: PathBuf, name: String) -> FollowerId {
        self.shared.add(path, name, From::Start, None)
    }

    /// Follows every file matching `glob`, now and later: those there now
    /// from their end (each with its share of `backlog_bytes` of history),
    /// those that appear later from their first byte. Returns once the
    /// matches there now are followed and the glob's directories watched.
    pub fn add_glob(&self, glob: Glob, backlog_bytes: u64) -> usize {
        let shared = &self.shared;
        let glob = Arc::new(glob);
        let scan = {
            let mut globs = lock(&shared.globs);
            globs.push(Arc::clone(&glob));
            (globs.len() - 1) as ScanId
        };
        let found = shared.scan_from_root(scan, &glob);
        let share = backlog_bytes / found.files.len().max(1) as u64;
        let mut added = 0;
        for path in found.files {
            if shared.consider(scan, &glob, &path, From::End(share)) {
                added += 1;
            }
        }
        added
    }

    /// Stops following `id`: nothing more is published for it once this
    /// returns, its file is closed, and what only it watched is unwatched.
    /// False if it was not followed.
    pub fn remove(&self, id: FollowerId) -> bool {
        self.shared.remove(id)
    }

    /// How many files are followed.
    pub fn len(&self) -> usize {
        lock(&self.shared.followers).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        match self.len() {
            1 => "1 file".into(),
            n => format!("{n} files"),
        }
    }

    fn stop(&self) {
        self.shared.ready.stop();
        self.shared.ticker.stop();
        self.shared.discovery.stop();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            // A reader that panicked has nothing left to publish either.
            let _ = thread.join();
        }
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a new follower starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// At the end of the file, with the history filled from its last
    /// lines (up to this many bytes).
    End(u64),
    /// At its first byte, announced to clients as `added`.
    Start,
}

impl Shared {
    fn add(&self, path: PathBuf, name: String, from: From, glob: Option<ScanId>) -> FollowerId {
        let id = self.out.add_input(&name, path.display().to_string());
        if from == From::Start {
            self.out.announce_added(id);
        }
        let mut limits = self.options.limits;
        if let From::End(backlog) = from {
            limits.backlog_bytes = backlog;
        }
        let mut follower = Follower::new(
            path.clone(),
            name,
            id,
            self.out.clone(),
            Arc::clone(&self.index),
            limits,
        );
        if glob.is_some() {
            follower.set_claims(Arc::clone(&self.claims));
        }
        let slot = Arc::new(Mutex::new(Slot {
            follower: Some(follower),
            path: path.clone(),
            glob,
            reading: None,
        }));
        // Held until the first look is done: a reader woken meanwhile waits
        // for it, then makes a pass of its own.
        let mut guard = lock(&slot);
        lock(&self.followers).insert(id, Arc::clone(&slot));
        if let Some(watches) = &self.watches {
            // The watch first, then the first look: a change in between wakes us.
            watches.enroll(id);
            watches.replan(id, &path, None);
        }
        let Slot {
            follower, reading, ..
        } = &mut *guard;
        match (follower, from) {
            (Some(follower), From::End(_)) => {
                follower.start();
                *reading = follower.reading();
                self.claims.record(id, reading.map(|(f, _)| f), 0);
                if let Some(watches) = &self.watches {
                    let replanned = watches.replan(id, &path, follower.held());
                    if replanned.changed {
                        self.ready.mark(id, false);
                    }
                    if !replanned.complete {
                        self.ticker.poke();
                    }
                }
            }
            // Read from its first byte by a reader, like a file that appeared.
            (Some(_), From::Start) => self.ready.mark(id, true),
            (None, _) => {}
        }
        id
    }

    fn remove(&self, id: FollowerId) -> bool {
        let Some(slot) = lock(&self.followers).remove(&id) else {
            return false;
        };
        if let Some(watches) = &self.watches {
            watches.forget(id);
        }
        self.ready.forget(id);
        // Waits for a pass in progress, then closes the file.
        lock(&slot).follower = None;
        self.claims.forget(id);
        self.out.remove_input(id);
        true
    }

    /// Watches `glob`'s directories from its root down and returns what is
    /// there. A missing root is waited for in its nearest existing ancestor.
    fn scan_from_root(&self, scan: ScanId, glob: &Glob) -> glob::Found {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut ancestor = glob.root.as_path();
        while !ancestor.is_dir() {
            match ancestor.parent() {
                Some(parent) => ancestor = parent,
                None => break,
            }
        }
        if ancestor != glob.root {
            dirs.push(ancestor.to_path_buf());
        }
        self.walk_and_watch(scan, glob, &glob.root, glob.start(), dirs)
    }

    /// Walks `glob` from `from` (in `states`) down, watches every directory
    /// found (and `dirs`), and walks again until nothing new appears: an
    /// entry made before its directory's watch reports nothing. Returns the
    /// last walk.
    fn walk_and_watch(
        &self,
        scan: ScanId,
        glob: &Glob,
        from: &Path,
        states: glob::States,
        mut dirs: Vec<PathBuf>,
    ) -> glob::Found {
        let mut seen: HashSet<PathBuf> = dirs.iter().cloned().collect();
        let mut found = glob::Found::default();
        for _ in 0..MAX_REPLANS {
            found = glob.walk(from, states.clone());
            let before = dirs.len();
            for dir in &found.dirs {
                if seen.insert(dir.clone()) {
                    dirs.push(dir.clone());
                }
            }
            self.watch_scan(scan, &dirs);
            if dirs.len() == before {
                break;
            }
        }
        found
    }

    fn watch_scan(&self, scan: ScanId, dirs: &[PathBuf]) {
        let Some(watches) = &self.watches else {
            return; // --poll: the ticker rescans every interval
        };
        let complete = watches.scan(scan, dirs);
        let mut incomplete = lock(&self.scans_incomplete);
        if complete {
            incomplete.remove(&scan);
        } else if incomplete.insert(scan) {
            tracing::warn!(
                "not every directory of a glob could be watched; looking every second instead"
            );
            self.ticker.poke();
        }
    }

    /// An entry of one of `glob`'s directories was created, moved or removed.
    fn look_at(&self, scan: ScanId, glob: &Glob, path: &Path) {
        if glob.root.starts_with(path) {
            // The root (or a directory above it) came or went.
            self.rescan(scan, glob);
            return;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let Some(states) = glob.states_of(dir) else {
            return;
        };
        let next = glob.advance(&states, name);
        if next.is_empty() {
            return;
        }
        match std::fs::symlink_metadata(path) {
            Err(_) => {
                // Gone: its directories are no longer scanned. A followed
                // match is dropped by its follower once it is finished.
                if let Some(watches) = &self.watches {
                    watches.unscan_below(scan, path);
                }
            }
            Ok(meta) if meta.is_dir() => {
                if !glob.leads_on(&next) {
                    return;
                }
                let found = self.walk_and_watch(scan, glob, path, next, Vec::new());
                for file in found.files {
                    self.consider(scan, glob, &file, From::Start);
                }
            }
            Ok(_) if glob.done(&next) => {
                self.consider(scan, glob, path, From::Start);
            }
            Ok(_) => {}
        }
    }

    /// Looks at the whole glob again (at start, after lost events, with
    /// `--poll` every interval): follows every match not followed yet.
    fn rescan(&self, scan: ScanId, glob: &Glob) {
        let found = match self.options.mode {
            // No watches to place: only directories that changed are listed.
            WatchMode::Poll(_) => {
                let mut caches = lock(&self.poll_walks);
                glob.walk_changed(caches.entry(scan).or_default())
            }
            WatchMode::Events => self.scan_from_root(scan, glob),
        };
        for file in found.files {
            self.consider(scan, glob, &file, From::Start);
        }
    }

    /// Follows `path`, a match of `glob`, unless it is followed already,
    /// its name is taken, it leads out of the glob's directory, or it is a
    /// file another follower reads (a rotated copy). Returns whether it did.
    fn consider(&self, scan: ScanId, glob: &Glob, path: &Path, from: From) -> bool {
        let _one_at_a_time = lock(&self.considering);
        let name = glob.name_of(path);
        if let Some(existing) = self.out.followed_path(&name) {
            if Path::new(&existing) != path {
                tracing::warn!(glob = %glob.typed, "{} matches, but its name `{name}` is taken by {existing}: not followed", path.display());
            }
            return false;
        }
        let Ok(meta) = std::fs::metadata(path) else {
            return false; // gone meanwhile, or a dangling link
        };
        if !meta.is_file() {
            return false;
        }
        if !glob.contains_target(path) {
            tracing::warn!(glob = %glob.typed, "{} leads out of {}: not followed", path.display(), glob.root.display());
            return false;
        }
        let id = identity::FileId::of(&meta);
        let known = self.out.file_index(&name);
        if let Some(owner) =
            self.claims
                .owner_other_than(known.unwrap_or(FollowerId::MAX), id, meta.len())
        {
            tracing::debug!(glob = %glob.typed, owner, "{} is a file already read under another name: not read again", path.display());
            return false;
        }
        self.add(path.to_path_buf(), name, from, Some(scan));
        true
    }
}

/// The discovery thread: looks at what the watcher says appeared in (or
/// left) a glob's directories, until the source stops.
fn discover(shared: &Shared) {
    while let Some((scan, path)) = shared.discovery.take() {
        let Some(glob) = lock(&shared.globs).get(scan as usize).cloned() else {
            continue;
        };
        match path {
            Some(path) => shared.look_at(scan, &glob, &path),
            None => shared.rescan(scan, &glob),
        }
    }
}

/// A reader thread: passes over ready followers until the source stops.
fn read(shared: &Shared) {
    while let Some((id, replan)) = shared.ready.take() {
        let slot = lock(&shared.followers).get(&id).cloned();
        let mut finished = None;
        let more = match slot {
            Some(slot) => {
                let mut slot = lock(&slot);
                let Slot {
                    follower,
                    path,
                    glob,
                    reading,
                } = &mut *slot;
                match follower {
                    Some(follower) => {
                        let more = pass(shared, id, follower, path, replan);
                        let now = follower.reading();
                        if now.map(|(f, _)| f) != reading.map(|(f, _)| f) {
                            let before = reading.map_or(0, |(_, offset)| offset);
                            shared.claims.record(id, now.map(|(f, _)| f), before);
                        }
                        *reading = now;
                        if !more && glob.is_some() && follower.finished() {
                            finished = glob.map(|g| (g, path.clone()));
                        }
                        more
                    }
                    None => false, // removed meanwhile
                }
            }
            None => false,
        };
        shared.ready.done(id, more);
        if let Some((scan, path)) = finished {
            // A glob match gone for good: dropped after its last line. If
            // a file appeared under its name meanwhile, its glob finds it.
            tracing::info!("{} is gone; no longer following it", path.display());
            shared.remove(id);
            shared.discovery.push(scan, Some(path));
        }
    }
}

/// One pass over one follower, and the watches it needs after it. Returns
/// whether it left something to read.
fn pass(
    shared: &Shared,
    id: FollowerId,
    follower: &mut Follower,
    path: &Path,
    replan: bool,
) -> bool {
    let Some(watches) = &shared.watches else {
        return follower.catch_up().more;
    };
    let mut opened = || {
        watches.replan(id, path, None);
    };
    let pass = follower.catch_up_watching(&mut opened);
    let mut more = pass.more;
    let mut dirty = pass.rewatch || replan;
    for _ in 0..MAX_REPLANS {
        if !dirty && follower.is_settled() {
            break;
        }
        let replanned = watches.replan(id, path, follower.held());
        if !replanned.complete {
            shared.ticker.poke();
        }
        if !(replanned.changed || dirty) {
            break;
        }
        // A change between the look and the new watch would be unseen:
        // look once more.
        let pass = follower.catch_up_watching(&mut opened);
        more |= pass.more;
        dirty = pass.rewatch;
    }
    more
}

/// The ticker thread: with `--poll`, every follower each interval; with
/// inotify, those whose watches are incomplete, every second, for as long
/// as there are any.
fn tick(shared: &Shared) {
    loop {
        let period = match shared.options.mode {
            WatchMode::Poll(interval) => Some(interval),
            WatchMode::Events => {
                let incomplete = shared
                    .watches
                    .as_ref()
                    .is_some_and(|w| !w.incomplete().is_empty())
                    || !lock(&shared.scans_incomplete).is_empty();
                incomplete.then_some(FALLBACK_POLL)
            }
        };
        if !shared.ticker.sleep(period) {
            return;
        }
        let globs = lock(&shared.globs).len() as ScanId;
        let rescan: Vec<ScanId> = match shared.options.mode {
            WatchMode::Poll(_) => (0..globs).collect(),
            WatchMode::Events => lock(&shared.scans_incomplete).iter().copied().collect(),
        };
        for scan in rescan {
            shared.discovery.push(scan, None);
        }
        match (&shared.options.mode, &shared.watches) {
            (WatchMode::Poll(_), _) | (WatchMode::Events, None) => {
                // A follower with nothing new is told by two `stat`s here,
                // without waking a reader; one busy in a pass is marked
                // (it is read again after it).
                let slots: Vec<(FollowerId, Arc<Mutex<Slot>>)> = lock(&shared.followers)
                    .iter()
                    .map(|(id, slot)| (*id, Arc::clone(slot)))
                    .collect();
                for (id, slot) in slots {
                    let unchanged = slot.try_lock().is_ok_and(|slot| {
                        slot.follower
                            .as_ref()
                            .is_some_and(Follower::looks_unchanged)
                    });
                    if !unchanged {
                        shared.ready.mark(id, false);
                    }
                }
            }
            (WatchMode::Events, Some(watches)) => {
                for id in watches.incomplete() {
                    shared.ready.mark(id, true);
                }
            }
        }
    }
}

/// The ticker's sleep: for a period, or until poked; either way until stopped.
#[derive(Default)]
struct Ticker {
    state: Mutex<TickState>,
    cond: Condvar,
}

#[derive(Default)]
struct TickState {
    stopping: bool,
    poked: bool,
}

impl Ticker {
    /// Sleeps `period` (`None`: until poked). False once stopping.
    fn sleep(&self, period: Option<Duration>) -> bool {
        let mut state = lock(&self.state);
        match period {
            Some(period) => {
                let due = Instant::now() + period;
                while !state.stopping {
                    let Some(left) = due.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    if left.is_zero() {
                        break;
                    }
                    state = self
                        .cond
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            None => {
                while !state.stopping && !state.poked {
                    state = self.cond.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        state.poked = false;
        !state.stopping
    }

    /// A follower's watches became incomplete: start ticking.
    fn poke(&self) {
        lock(&self.state).poked = true;
        self.cond.notify_all();
    }

    fn stop(&self) {
        lock(&self.state).stopping = true;
        self.cond.notify_all();
    }
}

/// Tests that count this process's threads or inotify instances take this
/// lock, so that other tests' watchers and readers are not counted.
#[cfg(test)]
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::hub::{Cursor, Delivery, Hub, HubLimits, Start};
    use crate::source::Status;

    const PROMPT: Duration = Duration::from_secs(20);

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hub naming `n` files, a live client of it, and a source feeding it.
    fn start(n: usize, mode: WatchMode) -> (Arc<Hub>, Cursor, Status, FileSource) {
        let hub = Hub::new(
            (0..n).map(|i| format!("f{i}.log")).collect(),
            HubLimits {
                history_bytes: 1 << 20,
                client_queue: 1 << 20,
                lag_grace: Duration::from_secs(5),
                max_line_bytes: 1 << 20,
            },
            Default::default(),
        );
        let cursor = hub.subscribe(Start::Backlog(0), None);
        let status = Status::default();
        let limits = ReadLimits {
            max_line_bytes: 1 << 20,
            backlog_bytes: 0,
        };
        let source = FileSource::start(
            Publisher::new(Arc::clone(&hub), status.clone()),
            FileOptions::new(mode, limits),
        )
        .unwrap();
        (hub, cursor, status, source)
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// Lines the client gets within [`PROMPT`], until `until` holds: (file
    /// index, text) each. (The tests are plain threads holding [`SERIAL`];
    /// the client's wait runs on a runtime of its own.)
    fn receive(
        cursor: &mut Cursor,
        until: impl Fn(&[(u32, String)]) -> bool,
    ) -> Vec<(u32, String)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + PROMPT;
        while !until(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            let delivery = runtime
                .block_on(async { tokio::time::timeout(left, cursor.next()).await })
                .unwrap_or_else(|_| panic!("timed out with {} lines: {got:?}", got.len()))
                .unwrap();
            if let Delivery::Notice(_) = delivery {
                continue;
            }
            got.extend(
                delivery
                    .lines()
                    .iter()
                    .map(|l| (l.file, l.text.as_str().to_string())),
            );
        }
        got
    }

    /// This process's inotify instances: for each, the inode numbers it watches.
    fn inotify_instances() -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let is_inotify =
                std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify");
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ));
            if let (true, Ok(info)) = (is_inotify, info) {
                let inodes = info
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .filter_map(|l| {
                        let hex = l.split_whitespace().find_map(|w| w.strip_prefix("ino:"))?;
                        u64::from_str_radix(hex, 16).ok()
                    })
                    .collect();
                out.push(inodes);
            }
        }
        out
    }

    /// The inotify instances that watch any of `dirs`, as (watches of
    /// `dirs`, all watches) each.
    fn instances_watching(dirs: &[PathBuf]) -> Vec<(usize, usize)> {
        let ours: HashSet<u64> = dirs
            .iter()
            .map(|d| std::fs::metadata(d).unwrap().ino())
            .collect();
        inotify_instances()
            .into_iter()
            .map(|inodes| {
                (
                    inodes.iter().filter(|i| ours.contains(i)).count(),
                    inodes.len(),
                )
            })
            .filter(|(mine, _)| *mine > 0)
            .collect()
    }

    /// This process's threads by name, with their CPU time in clock ticks.
    fn threads() -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let (Ok(comm), Ok(stat)) = (
                std::fs::read_to_string(task.path().join("comm")),
                std::fs::read_to_string(task.path().join("stat")),
            ) else {
                continue;
            };
            // "pid (comm) S ppid …": utime and stime are fields 14 and 15.
            let ticks = stat.rsplit_once(')').map_or(0, |(_, rest)| {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
                field(11).unwrap_or(0) + field(12).unwrap_or(0)
            });
            out.push((comm.trim().to_string(), ticks));
        }
        out
    }

    /// The source's threads now: readers, tickers, notify loops, and the
    /// CPU ticks they have used.
    fn source_threads() -> (usize, usize, usize, u64) {
        let all = threads();
        let count = |p: &str| all.iter().filter(|(n, _)| n.starts_with(p)).count();
        let ticks = all
            .iter()
            .filter(|(n, _)| n.starts_with("file-") || n.starts_with("notify-rs"))
            .map(|(_, t)| t)
            .sum();
        (
            count("file-reader"),
            count("file-ticker"),
            count("notify-rs"),
            ticks,
        )
    }

    fn wait_until(what: &str, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + PROMPT;
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// By file index: how many times each line arrived.
    fn counted(got: &[(u32, String)]) -> BTreeMap<(u32, String), usize> {
        let mut seen = BTreeMap::new();
        for line in got {
            *seen.entry(line.clone()).or_default() += 1;
        }
        seen
    }

    /// Three hundred files in four directories, one line appended to each:
    /// every line is published exactly once, under its own file index, by a
    /// source with one inotify instance (one watch per directory), a few
    /// threads, and no CPU while idle. Then followers are removed and added
    /// while it runs, and the watches follow.
    #[test]
    fn three_hundred_files_one_inotify_instance_each_line_once() {
        let _serial = serial();
        let keep = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(keep.path()).unwrap();
        let dirs: Vec<PathBuf> = (0..4).map(|d| root.join(format!("d{d}"))).collect();
        for dir in &dirs {
            std::fs::create_dir(dir).unwrap();
        }
        let n = 300;
        let path = |i: usize| dirs[i % 4].join(format!("f{i}.log"));
        for i in 0..n {
            std::fs::write(path(i), b"").unwrap();
        }
        let (_hub, mut cursor, status, source) = start(n + 1, WatchMode::Events);
        for i in 0..n {
            assert_eq!(source.add(path(i), format!("f{i}.log")), i as u32);
        }
        assert_eq!(source.describe(), "300 files");
        assert_eq!(status.files().len(), n);

        for i in 0..n {
            append(&path(i), &format!("line {i}\n"));
        }
        let got = receive(&mut cursor, |got| got.len() >= n);
        let seen = counted(&got);
        let want: BTreeMap<(u32, String), usize> = (0..n)
            .map(|i| ((i as u32, format!("line {i}")), 1))
            .collect();
        assert_eq!(seen, want, "each line once, under its file's index");

        let instances = instances_watching(&dirs);
        assert_eq!(
            instances,
            [(4, 4)],
            "one inotify instance, watching each directory once and nothing else"
        );
        let readers = default_readers();
        wait_until("the source's threads", || {
            let (r, t, w, _) = source_threads();
            (r, t, w) == (readers, 1, 1)
        });
        let (_, _, _, busy) = source_threads();
        std::thread::sleep(Duration::from_millis(500));
        let (_, _, _, idle) = source_threads();
        eprintln!(
            "300 files: {} inotify instance, {} watches, {} threads ({readers} readers, 1 ticker, 1 notify); {} CPU ticks in 500 ms idle",
            instances.len(),
            instances[0].1,
            readers + 2,
            idle - busy
        );
        assert!(
            idle - busy <= 1,
            "idle files cost CPU: {} ticks",
            idle - busy
        );

        // Removed while running: d0's followers all, half of the others.
        for i in (0..n).filter(|i| i % 4 == 0 || i % 2 == 1) {
            assert!(source.remove(i as u32));
        }
        assert!(!source.remove(0), "already removed");
        assert_eq!(source.len(), 75);
        assert_eq!(status.files().len(), 75);
        assert_eq!(
            instances_watching(&dirs),
            [(1, 1)],
            "d0 and d1, d3 are needed by no one now; d2 still is"
        );
        // A removed file publishes nothing; a follower added while running
        // is followed at once, in a new directory.
        let late = root.join("late");
        std::fs::create_dir(&late).unwrap();
        let id = source.add(late.join("new.log"), format!("f{n}.log"));
        assert_eq!(id, n as u32);
        let mut all = dirs.clone();
        all.push(late.clone());
        assert_eq!(instances_watching(&all), [(2, 2)]);
        for i in 0..n {
            append(&path(i), &format!("again {i}\n"));
        }
        append(&late.join("new.log"), "late line\n");
        let got = receive(&mut cursor, |got| got.len() >= 76);
        let mut want: BTreeMap<(u32, String), usize> = (0..n)
            .filter(|i| i % 4 == 2)
            .map(|i| ((i as u32, format!("again {i}")), 1))
            .collect();
        want.insert((id, "late line".into()), 1);
        assert_eq!(counted(&got), want);

        source.stop();
        wait_until("threads ended", || {
            let (r, t, _, _) = source_threads();
            (r, t) == (0, 0)
        });
    }

    /// A file added while running that does not exist yet is waited for;
    /// removing it unwatches its missing parent's ancestor as well.
    #[test]
    fn a_missing_file_added_while_running_is_waited_for_then_removed() {
        let _serial = serial();
        let keep = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(keep.path()).unwrap();
        let (_hub, mut cursor, status, source) = start(2, WatchMode::Events);
        let a = source.add(root.join("a.log"), "a.log".into());
        let b = source.add(root.join("sub/b.log"), "b.log".into());
        assert_eq!(
            status.files().iter().map(|f| f.state).collect::<Vec<_>>(),
            [crate::source::FileState::Waiting; 2]
        );
        assert_eq!(instances_watching(std::slice::from_ref(&root)), [(1, 1)]);
        std::fs::create_dir(root.join("sub")).unwrap();
        append(&root.join("sub/b.log"), "b1\n");
        append(&root.join("a.log"), "a1\n");
        let got = receive(&mut cursor, |got| got.len() >= 2);
        assert_eq!(
            counted(&got),
            BTreeMap::from([((a, "a1".into()), 1), ((b, "b1".into()), 1)])
        );
        let sub = root.join("sub");
        // b's watches move to `sub` once its pass is over (just after b1 is out).
        wait_until("root and sub watched", || {
            instances_watching(&[root.clone(), sub.clone()]) == [(2, 2)]
        });
        assert!(source.remove(b));
        assert_eq!(instances_watching(&[root.clone(), sub.clone()]), [(1, 1)]);
        assert!(source.remove(a));
        assert!(instances_watching(&[root, sub]).is_empty());
        assert!(status.files().is_empty());
    }

    /// `--poll`: no inotify at all; every follower gets a pass each interval.
    #[test]
    fn poll_mode_reads_every_file_without_inotify() {
        let _serial = serial();
        let keep = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(keep.path()).unwrap();
        let n = 50;
        let (_hub, mut cursor, _status, source) =
            start(n, WatchMode::Poll(Duration::from_millis(20)));
        for i in 0..n {
            source.add(root.join(format!("f{i}.log")), format!("f{i}.log"));
        }
        for i in 0..n {
            append(&root.join(format!("f{i}.log")), &format!("line {i}\n"));
        }
        let got = receive(&mut cursor, |got| got.len() >= n);
        let want: BTreeMap<(u32, String), usize> = (0..n)
            .map(|i| ((i as u32, format!("line {i}")), 1))
            .collect();
        assert_eq!(counted(&got), want);
        assert!(instances_watching(&[root]).is_empty());
        let (readers, tickers, _, _) = source_threads();
        assert_eq!((readers, tickers), (default_readers(), 1));
    }
}
