//! The tailer: one thread per followed file, turning file changes into
//! published lines.
//!
//! Why a thread and not a tokio task: all of its work is blocking file I/O
//! (`read`, `fstat`, `pread`), and [`Hub::publish_lines`] is synchronous, so a
//! plain thread avoids a `spawn_blocking` hop per call and never occupies a
//! runtime worker that clients need. It sleeps in `recv` on a one-slot wake-up
//! channel fed by [`watch`]: no timer, no polling, no CPU while nothing is
//! written.
//!
//! - [`lines`]: bytes → lines (pure).
//! - [`follow`]: the `tail -F` state machine for one path.
//! - [`watch`]: notify (inotify or polling) → wake-ups.

pub mod follow;
pub mod lines;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use crate::hub::Hub;

use follow::Follower;
use watch::DirWatcher;

/// How to watch a file.
#[derive(Debug, Clone, Copy)]
pub enum WatchMode {
    /// inotify, through notify's recommended watcher.
    Events,
    /// notify's `PollWatcher`, looking every interval (for NFS and other
    /// file systems that deliver no events).
    Poll(Duration),
}

/// A running tailer. Its thread lives as long as the process: the watcher
/// it owns keeps its wake-up channel open.
pub struct Tailer {
    wake: SyncSender<()>,
}

impl Tailer {
    /// Starts following `path`, publishing into `hub` as file `index`.
    ///
    /// Returns once the file is open (positioned at its end, history filled)
    /// or known to be missing, and the watch is in place: a line appended
    /// after this returns is a live line.
    pub fn start(
        path: PathBuf,
        index: u32,
        hub: Arc<Hub>,
        mode: WatchMode,
    ) -> std::io::Result<Tailer> {
        let (wake, woken) = sync_channel::<()>(1);
        let poll = match mode {
            WatchMode::Events => None,
            WatchMode::Poll(interval) => Some(interval),
        };
        let mut watcher = DirWatcher::new(poll, wake.clone()).map_err(|err| {
            std::io::Error::other(format!("cannot watch {}: {err}", path.display()))
        })?;
        let mut follower = Follower::new(path.clone(), index, hub);
        // The watch first, then the first look: a change in between wakes us.
        watcher.watch_for(&path);
        follower.start();
        watcher.watch_for(&path);
        follower.watch_dirty = false;
        std::thread::Builder::new()
            .name(format!("tailer-{index}"))
            .spawn(move || {
                while woken.recv().is_ok() {
                    follower.poll();
                    if follower.watch_dirty {
                        follower.watch_dirty = false;
                        watcher.watch_for(&path);
                        // A change between the look and the new watch would be
                        // unseen: look once more.
                        follower.poll();
                    }
                }
            })?;
        Ok(Tailer { wake })
    }

    /// Asks for a pass now (used after start-up races and in tests).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}
