//! Which follower reads which file, by identity, so that one file is read
//! once however many names lead to it.
//!
//! A glob that matches rotated names as well (`app.log*` matches
//! `app.log.1`) sees the file `app.log`'s follower is reading appear under
//! another name at every rotation. Recognised by its identity (device,
//! inode) it is not read again as new: a file held by a follower, or
//! finished by one (read to its end before a rotation), belongs to that
//! follower. A finished file is remembered with the size it had; if its
//! inode shows up again smaller than that, it is another file that reuses
//! the number (the inode-reuse bugs of Fluent Bit and Filebeat), and is
//! read as new.
//!
//! Every follower's file is recorded here (the readers do it after each
//! pass); only glob matches ask before they open one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::FollowerId;
use super::identity::FileId;

/// Finished files remembered at most (the oldest are forgotten first).
const MAX_FINISHED: usize = 65_536;

#[derive(Debug, Default)]
struct Inner {
    /// Files open now, and who reads them.
    held: HashMap<FileId, FollowerId>,
    /// What each follower holds now.
    of: HashMap<FollowerId, FileId>,
    /// Files read to their end and let go of: by whom, and their size then.
    finished: HashMap<FileId, (FollowerId, u64)>,
    order: VecDeque<FileId>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Claims {
    inner: Mutex<Inner>,
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follower `id` now holds `now` (or nothing); what it held before, if
    /// another file, was finished at `size`.
    pub fn record(&self, id: FollowerId, now: Option<FileId>, before_size: u64) {
        let mut inner = self.lock();
        let old = inner.of.get(&id).copied();
        if old == now {
            return;
        }
        if let Some(old) = old {
            inner.of.remove(&id);
            if inner.held.get(&old) == Some(&id) {
                inner.held.remove(&old);
                inner.finished.insert(old, (id, before_size));
                inner.order.push_back(old);
                while inner.order.len() > MAX_FINISHED {
                    if let Some(gone) = inner.order.pop_front() {
                        inner.finished.remove(&gone);
                    }
                }
            }
        }
        if let Some(now) = now {
            inner.of.insert(id, now);
            inner.held.insert(now, id);
            inner.finished.remove(&now);
        }
    }

    /// Follower `id` is gone: its file is let go of (not finished: another
    /// name may read it on).
    pub fn forget(&self, id: FollowerId) {
        let mut inner = self.lock();
        if let Some(old) = inner.of.remove(&id)
            && inner.held.get(&old) == Some(&id)
        {
            inner.held.remove(&old);
        }
    }

    /// Who else reads, or has read, the file `file` (now `size` bytes
    /// long), if anyone does: then `id` must not read it as new.
    pub fn owner_other_than(&self, id: FollowerId, file: FileId, size: u64) -> Option<FollowerId> {
        let inner = self.lock();
        if let Some(&owner) = inner.held.get(&file) {
            return (owner != id).then_some(owner);
        }
        match inner.finished.get(&file) {
            Some(&(owner, at)) if owner != id && size >= at => Some(owner),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ino: u64) -> FileId {
        FileId {
            dev: 1,
            ino,
            born: 0,
        }
    }

    #[test]
    fn a_rotated_file_belongs_to_its_reader_until_its_inode_is_reused() {
        let claims = Claims::default();
        claims.record(1, Some(f(10)), 0);
        assert_eq!(claims.owner_other_than(2, f(10), 5), Some(1), "held");
        assert_eq!(claims.owner_other_than(1, f(10), 5), None, "its own");
        // Rotated: 1 finished f10 at 100 bytes and reads f11.
        claims.record(1, Some(f(11)), 100);
        assert_eq!(claims.owner_other_than(2, f(10), 100), Some(1), "finished");
        assert_eq!(
            claims.owner_other_than(2, f(10), 3),
            None,
            "smaller: a reused inode"
        );
        assert_eq!(claims.owner_other_than(2, f(11), 0), Some(1));
        claims.forget(1);
        assert_eq!(claims.owner_other_than(2, f(11), 0), None, "let go of");
    }
}
