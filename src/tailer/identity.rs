//! A file's identity: what stays the same across renames and changes when a
//! file (or directory) is created anew under the same name.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of what `path` names now, through symlinks; `None` if
    /// it names nothing.
    pub fn of_path(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId::of(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_keeps_it_and_a_re_creation_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let before = FileId::of_path(&a).unwrap();
        let b = dir.path().join("b");
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(FileId::of_path(&b), Some(before));
        assert_eq!(FileId::of_path(&a), None);
        // Keep `b` alive so its inode cannot be reused for the new `a`.
        std::fs::write(&a, b"y").unwrap();
        assert_ne!(FileId::of_path(&a), Some(before));
    }
}
