//! A file's identity — what stays the same across renames and changes when
//! a file (or directory) is created anew under the same name — and what a
//! followed path names now, compared with the file held open.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Device and inode number, and the birth time where the file system keeps
/// one: an inode number freed by a deleted file is soon given to a new one
/// (logrotate deletes its oldest file at every rotation), and only the birth
/// time tells the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Nanoseconds since the Unix epoch (`statx`'s `btime`); 0 where unknown.
    pub born: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            born,
        }
    }

    /// One number for the file instance, stable across restarts of the
    /// server (the lines' [`origin`](crate::hub::Line::origin)): FNV-1a over
    /// device, inode and birth time. Never 0, which means "none".
    pub fn origin(self) -> u64 {
        let h = crate::hash::fnv1a(
            self.dev
                .to_le_bytes()
                .into_iter()
                .chain(self.ino.to_le_bytes())
                .chain(self.born.to_le_bytes()),
        );
        h.max(1)
    }

    /// The identity of what `path` names now, through symlinks; `None` if
    /// it names nothing.
    pub fn of_path(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId::of(&m))
    }
}

/// What a followed path names now, compared with the file we hold.
#[derive(Debug)]
pub enum PathNow {
    /// The file we hold.
    Same,
    /// Something that is not a regular file (a directory, a FIFO…): nothing
    /// to follow for now.
    NotAFile(&'static str),
    /// Another regular file, still empty: its writer has not moved to it yet.
    NewEmpty,
    /// Another regular file, with data: the one we hold was rotated.
    Replaced,
    /// Nothing.
    Gone,
    /// Cannot tell (`stat` failed for another reason than "not found").
    Unknown(io::Error),
}

/// Looks at `path` (one `stat`, through symlinks) and says what it names
/// compared with `held`.
pub fn path_now(path: &Path, held: FileId) -> PathNow {
    match std::fs::metadata(path) {
        Ok(meta) if FileId::of(&meta) == held => PathNow::Same,
        Ok(meta) if !meta.is_file() => PathNow::NotAFile(kind_of(&meta)),
        Ok(meta) if meta.len() == 0 => PathNow::NewEmpty,
        Ok(_) => PathNow::Replaced,
        Err(err) if err.kind() == io::ErrorKind::NotFound => PathNow::Gone,
        Err(err) => PathNow::Unknown(err),
    }
}

/// What a non-regular file is, for logs.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_now_tells_same_new_empty_replaced_gone_and_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"x\n").unwrap();
        let held = FileId::of_path(&path).unwrap();
        assert!(matches!(path_now(&path, held), PathNow::Same));
        let old = dir.path().join("app.log.1");
        std::fs::rename(&path, &old).unwrap();
        assert!(matches!(path_now(&path, held), PathNow::Gone));
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(path_now(&path, held), PathNow::NewEmpty));
        std::fs::write(&path, b"y\n").unwrap();
        assert!(matches!(path_now(&path, held), PathNow::Replaced));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(
            path_now(&path, held),
            PathNow::NotAFile("a directory")
        ));
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(&old, &path).unwrap();
        assert!(matches!(path_now(&path, held), PathNow::Same));
    }

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
