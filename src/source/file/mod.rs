//! The file source: followed files, turning file changes into published
//! lines. One thread per followed file.
//!
//! Why a thread and not a tokio task: all of its work is blocking file I/O
//! (`read`, `fstat`, `pread`), and publishing is synchronous, so a
//! plain thread avoids a `spawn_blocking` hop per call and never occupies a
//! runtime worker that clients need. It sleeps in `recv` on a one-slot wake-up
//! channel fed by [`watch`] (inotify): no timer, no polling, no CPU while
//! nothing is written.
//!
//! With `--poll` there are no events: the thread makes a pass every poll
//! interval instead (an `fstat`, a `read`, a `stat` of the path: cheaper than
//! a directory scan). notify's `PollWatcher` is not used: it compares
//! modification times in whole seconds, so a write in the same second as its
//! previous scan goes unseen — the last lines of a burst would wait for the
//! next write, possibly forever. If inotify cannot watch a directory (watch
//! limit reached, say), the thread falls back to a pass every second.
//!
//! - [`path`]: what a typed path means (absolute, decided at start-up).
//! - [`identity`]: a file's (device, inode).
//! - [`follow`]: the `tail -F` state machine for one path.
//! - [`watch`]: inotify on the relevant directories (and the held file) → wake-ups.
//! - [`replay`]: the index from `seq` to file offsets, and the hub's
//!   [`Replay`](crate::hub::Replay) that reads old lines back with it.

pub mod follow;
pub mod identity;
pub mod path;
pub mod replay;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use crate::source::Publisher;

use follow::{Follower, ReadLimits};
use replay::ReplayIndex;
use watch::DirWatcher;

/// How to watch a file.
#[derive(Debug, Clone, Copy)]
pub enum WatchMode {
    /// inotify, through notify's recommended watcher.
    Events,
    /// A pass every interval, no events (for NFS and other file systems
    /// that deliver none).
    Poll(Duration),
}

/// How often to look when inotify could not watch everything it should.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// A running tailer. With inotify its thread lives as long as the process
/// (the watcher it owns keeps its wake-up channel open); with `--poll` it
/// ends when the `Tailer` is dropped.
pub struct Tailer {
    /// Held, never used: while it lives, the thread's channel stays open.
    _wake: SyncSender<()>,
}

impl Tailer {
    /// Starts following `path` — absolute, as [`path::absolute`] makes it —
    /// shown as `display`, publishing into `out` as file `index` and
    /// indexing its lines for replay in `replay`.
    ///
    /// Returns once the file is open (positioned at its end, history filled)
    /// or known to be missing, and the watch is in place: a line appended
    /// after this returns is a live line.
    pub fn start(
        path: PathBuf,
        display: String,
        index: u32,
        out: Publisher,
        replay: Arc<ReplayIndex>,
        limits: ReadLimits,
        mode: WatchMode,
    ) -> std::io::Result<Tailer> {
        let (wake, woken) = sync_channel::<()>(1);
        let (mut watcher, every) = match mode {
            WatchMode::Events => {
                let watcher = DirWatcher::new(wake.clone()).map_err(|err| {
                    std::io::Error::other(format!("cannot watch {}: {err}", path.display()))
                })?;
                (Some(watcher), None)
            }
            WatchMode::Poll(interval) => (None, Some(interval)),
        };
        let mut follower = Follower::new(path.clone(), display, index, out, replay, limits);
        // The watch first, then the first look: a change in between wakes us.
        if let Some(watcher) = &mut watcher {
            watcher.watch_for(&path, None);
        }
        follower.start();
        if let Some(watcher) = &mut watcher
            && watcher.watch_for(&path, follower.held())
        {
            // The watches changed after the first look (a parent directory
            // appeared meanwhile): the thread's first pass looks again.
            let _ = wake.try_send(());
        }
        std::thread::Builder::new()
            .name(format!("tailer-{index}"))
            .spawn(move || {
                // The last pass stopped before the end: go on without waiting.
                let mut more = false;
                loop {
                    let every = every.or_else(|| {
                        watcher
                            .as_ref()
                            .filter(|w| !w.complete())
                            .map(|_| FALLBACK_POLL)
                    });
                    let go_on = more
                        || match every {
                            Some(every) => !matches!(
                                woken.recv_timeout(every),
                                Err(RecvTimeoutError::Disconnected)
                            ),
                            None => woken.recv().is_ok(),
                        };
                    if !go_on {
                        break;
                    }
                    let pass = follower.catch_up();
                    more = pass.more;
                    // Until the path names the file we read, the watches can
                    // change under us (a missing parent directory appears,
                    // then its child; a link is re-pointed; a directory is
                    // made anew): re-watch and look again until they hold
                    // still, since a change made before its watch was added
                    // reports nothing.
                    let mut dirty = pass.rewatch;
                    if let Some(watcher) = &mut watcher {
                        // Bounded: each round is a look and a re-watch, and the
                        // watches change only as fast as someone changes
                        // directories and links under us; 32 rounds is far
                        // more than any real sequence needs before things
                        // hold still (the next wake-up carries on).
                        for _ in 0..32 {
                            // A watch that failed is retried at each pass
                            // (every second while incomplete).
                            if !dirty
                                && follower.is_settled()
                                && watcher.complete()
                                && !watcher.stale()
                            {
                                break;
                            }
                            if !(watcher.watch_for(&path, follower.held()) || dirty) {
                                break;
                            }
                            // A change between the look and the new watch
                            // would be unseen: look once more.
                            let pass = follower.catch_up();
                            more |= pass.more;
                            dirty = pass.rewatch;
                        }
                    }
                }
            })?;
        Ok(Tailer { _wake: wake })
    }
}
