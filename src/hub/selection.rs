//! Which files a client reads (`file=`): a predicate over public names,
//! decided once per file index and remembered.
//!
//! The hub knows files only by index and name; what a selection means
//! (names, globs over names) is the transport's, handed in as a predicate.
//! Files registered after the client subscribed (a glob match that
//! appeared) are judged by name the first time one of their lines or
//! events passes, so `file=app/*` also selects the matches added later.

use std::sync::{Mutex, MutexGuard};

use super::Hub;

/// The predicate: whether the file with this public name is selected.
pub type NamePredicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// See the module docs.
pub struct Selection {
    wants: NamePredicate,
    /// By file index: 0 not judged yet, 1 selected, 2 not.
    judged: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection").finish_non_exhaustive()
    }
}

impl Selection {
    pub fn new(wants: NamePredicate) -> Selection {
        Selection {
            wants,
            judged: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.judged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether file `file` (of `hub`) is selected.
    pub fn contains(&self, file: u32, hub: &Hub) -> bool {
        let index = file as usize;
        let mut judged = self.lock();
        if let Some(&j) = judged.get(index)
            && j != 0
        {
            return j == 1;
        }
        let name = hub.file_name(file);
        let yes = !name.is_empty() && (self.wants)(&name);
        if judged.len() <= index {
            judged.resize(index + 1, 0);
        }
        judged[index] = if yes { 1 } else { 2 };
        yes
    }
}
