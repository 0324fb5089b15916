//! The ready set: which followers have something to look at, drained by the
//! reader pool.
//!
//! Wake-ups carry which follower to read. They coalesce — a follower marked
//! ten thousand times before a reader takes it is read once — and none is
//! lost: a follower marked while a reader is in its pass is queued again
//! when that pass ends, so a write made during a pass is always read by a
//! later one. A follower is never in two passes at once. Order is first
//! come, first served, and a pass that stopped at its read budget goes to
//! the back, so a busy file cannot keep the readers from quiet ones.
//!
//! Readers sleep on a condition variable while the set is empty: idle files
//! cost no CPU.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::FollowerId;

#[derive(Debug, Default)]
struct Flags {
    queued: bool,
    running: bool,
    /// Marked while running: another pass after this one.
    again: bool,
    /// Its watches must be planned again.
    replan: bool,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<FollowerId>,
    flags: HashMap<FollowerId, Flags>,
    stopping: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Ready {
    state: Mutex<State>,
    cond: Condvar,
}

impl Ready {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Flags only: a panicking reader leaves them consistent enough.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `id` has something to look at (and, if `replan`, its watches too).
    pub fn mark(&self, id: FollowerId, replan: bool) {
        let mut state = self.lock();
        let flags = state.flags.entry(id).or_default();
        flags.replan |= replan;
        if flags.running {
            flags.again = true;
        } else if !flags.queued {
            flags.queued = true;
            state.queue.push_back(id);
            self.cond.notify_one();
        }
    }

    /// The next follower to read and whether to re-plan its watches;
    /// blocks while there is none. `None` once stopping.
    pub fn take(&self) -> Option<(FollowerId, bool)> {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return None;
            }
            if let Some(id) = state.queue.pop_front() {
                let flags = state.flags.entry(id).or_default();
                flags.queued = false;
                flags.running = true;
                let replan = std::mem::take(&mut flags.replan);
                return Some((id, replan));
            }
            state = self.cond.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The pass over `id` is over; `more`: it stopped before reading all.
    pub fn done(&self, id: FollowerId, more: bool) {
        let mut state = self.lock();
        let Some(flags) = state.flags.get_mut(&id) else {
            return; // forgotten meanwhile
        };
        flags.running = false;
        if std::mem::take(&mut flags.again) || more || flags.replan {
            flags.queued = true;
            state.queue.push_back(id);
            self.cond.notify_one();
        } else {
            state.flags.remove(&id);
        }
    }

    /// `id` is no longer followed: drop what is pending for it.
    pub fn forget(&self, id: FollowerId) {
        let mut state = self.lock();
        if state.flags.remove(&id).is_some_and(|f| f.queued) {
            state.queue.retain(|q| *q != id);
        }
    }

    /// Wakes every reader for good: [`take`](Self::take) returns `None`.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.cond.notify_all();
    }

    /// As [`take`](Self::take), waiting at most `wait`.
    #[cfg(test)]
    pub fn take_within(&self, wait: std::time::Duration) -> Option<(FollowerId, bool)> {
        let deadline = std::time::Instant::now() + wait;
        let mut state = self.lock();
        loop {
            if let Some(id) = state.queue.pop_front() {
                let flags = state.flags.entry(id).or_default();
                flags.queued = false;
                flags.running = true;
                return Some((id, std::mem::take(&mut flags.replan)));
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            state = self
                .cond
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Followers waiting for a reader (not counting those being read).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_coalesce_and_none_is_lost() {
        let ready = Ready::default();
        for _ in 0..1000 {
            ready.mark(1, false);
        }
        ready.mark(2, true);
        assert_eq!(ready.queued(), 2);
        assert_eq!(ready.take(), Some((1, false)));
        // Marked during its pass: read again after it, not twice at once.
        ready.mark(1, false);
        assert_eq!(ready.queued(), 1);
        assert_eq!(ready.take(), Some((2, true)));
        ready.done(1, false);
        assert_eq!(ready.queued(), 1);
        assert_eq!(ready.take(), Some((1, false)));
        ready.done(1, false);
        ready.done(2, false);
        assert_eq!(ready.queued(), 0);
        // A pass cut short goes to the back.
        ready.mark(3, false);
        ready.mark(4, false);
        assert_eq!(ready.take(), Some((3, false)));
        ready.done(3, true);
        assert_eq!(ready.take(), Some((4, false)));
        assert_eq!(ready.take(), Some((3, false)));
        // Forgotten: nothing pending is handed out.
        ready.mark(5, false);
        ready.forget(5);
        ready.done(3, false);
        ready.done(4, false);
        assert_eq!(ready.queued(), 0);
        ready.stop();
        assert_eq!(ready.take(), None);
    }

    #[test]
    fn a_reader_waits_until_marked() {
        let ready = std::sync::Arc::new(Ready::default());
        let reader = {
            let ready = std::sync::Arc::clone(&ready);
            std::thread::spawn(move || ready.take())
        };
        ready.mark(9, false);
        assert_eq!(reader.join().unwrap(), Some((9, false)));
    }
}
