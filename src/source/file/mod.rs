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
//! marks every follower, and the readers give each one pass (a `read`, a
//! `pread` of the bytes before the offset, a `stat` of the path — for a file
//! with nothing new, that is all it costs). notify's `PollWatcher` is not
//! used: it compares modification times in whole seconds, so a write in the
//! same second as its previous scan goes unseen — the last lines of a burst
//! would wait for the next write, possibly forever. If inotify cannot watch
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

pub mod follow;
pub mod identity;
pub mod path;
pub mod plan;
pub mod ready;
pub mod replay;
pub mod table;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::source::{Publisher, Source};

use follow::{Follower, ReadLimits};
use ready::Ready;
use replay::{FileReplay, ReplayIndex};
use watch::Watches;

/// A followed file, as the source knows it; also the `file` index its
/// lines carry. Never reused while the source runs.
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
    next_id: AtomicU32,
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
        let watches = match options.mode {
            WatchMode::Events => Some(Watches::new(Arc::clone(&ready)).map_err(|err| {
                std::io::Error::other(format!("cannot watch files (inotify): {err}"))
            })?),
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
            next_id: AtomicU32::new(0),
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
    /// clients as `name`.
    ///
    /// Returns once the file is open (positioned at its end, history filled)
    /// or known to be missing, and its watches are in place: a line appended
    /// after this returns is a live line.
    pub fn add(&self, path: PathBuf, name: String) -> FollowerId {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.out.status().add(id, name.clone());
        let follower = Follower::new(
            path.clone(),
            name,
            id,
            shared.out.clone(),
            Arc::clone(&shared.index),
            shared.options.limits,
        );
        let slot = Arc::new(Mutex::new(Slot {
            follower: Some(follower),
            path: path.clone(),
        }));
        // Held until the first look is done: a reader woken meanwhile waits
        // for it, then makes a pass of its own.
        let mut guard = lock(&slot);
        lock(&shared.followers).insert(id, Arc::clone(&slot));
        if let Some(watches) = &shared.watches {
            // The watch first, then the first look: a change in between wakes us.
            watches.enroll(id);
            watches.replan(id, &path, None);
        }
        if let Some(follower) = &mut guard.follower {
            follower.start();
            if let Some(watches) = &shared.watches {
                let replanned = watches.replan(id, &path, follower.held());
                if replanned.changed {
                    shared.ready.mark(id, false);
                }
                if !replanned.complete {
                    shared.ticker.poke();
                }
            }
        }
        id
    }

    /// Stops following `id`: nothing more is published for it once this
    /// returns, its file is closed, and what only it watched is unwatched.
    /// False if it was not followed.
    pub fn remove(&self, id: FollowerId) -> bool {
        let shared = &self.shared;
        let Some(slot) = lock(&shared.followers).remove(&id) else {
            return false;
        };
        if let Some(watches) = &shared.watches {
            watches.forget(id);
        }
        shared.ready.forget(id);
        // Waits for a pass in progress, then closes the file.
        lock(&slot).follower = None;
        shared.out.status().remove(id);
        true
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

/// A reader thread: passes over ready followers until the source stops.
fn read(shared: &Shared) {
    while let Some((id, replan)) = shared.ready.take() {
        let slot = lock(&shared.followers).get(&id).cloned();
        let more = match slot {
            Some(slot) => {
                let mut slot = lock(&slot);
                let Slot { follower, path } = &mut *slot;
                match follower {
                    Some(follower) => pass(shared, id, follower, path, replan),
                    None => false, // removed meanwhile
                }
            }
            None => false,
        };
        shared.ready.done(id, more);
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
    let pass = follower.catch_up();
    let mut more = pass.more;
    let Some(watches) = &shared.watches else {
        return more;
    };
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
        let pass = follower.catch_up();
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
                    .is_some_and(|w| !w.incomplete().is_empty());
                incomplete.then_some(FALLBACK_POLL)
            }
        };
        if !shared.ticker.sleep(period) {
            return;
        }
        match (&shared.options.mode, &shared.watches) {
            (WatchMode::Poll(_), _) | (WatchMode::Events, None) => {
                let ids: Vec<FollowerId> = lock(&shared.followers).keys().copied().collect();
                for id in ids {
                    shared.ready.mark(id, false);
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
