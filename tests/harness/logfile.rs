//! The followed log file, in its own temp dir, with the writes and rotations a real
//! logger and logrotate do.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Writes `bytes` with exactly one write(2) on `file`; panics on a short write.
fn write_once(file: &mut File, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let n = file.write(bytes).expect("write log file");
    assert_eq!(n, bytes.len(), "short write to log file");
}

/// `lines` joined as `line\n` each.
pub fn join_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Vec<u8> {
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_ref().as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// A log file `app.log` inside a fresh temp dir (removed on drop).
#[derive(Debug)]
pub struct LogFile {
    dir: TempDir,
    path: PathBuf,
}

impl LogFile {
    /// A temp dir with an empty `app.log`.
    pub fn new() -> LogFile {
        let f = LogFile::missing();
        f.create_empty();
        f
    }

    /// A temp dir where `app.log` does not exist yet.
    pub fn missing() -> LogFile {
        let dir = tempfile::Builder::new()
            .prefix("logtail-ws-test-")
            .tempdir()
            .expect("create temp dir");
        let path = dir.path().join("app.log");
        LogFile { dir, path }
    }

    /// A temp dir where the followed file is `DIR/rel` (e.g. `logs/app.log`); neither it
    /// nor its directory exists yet.
    pub fn at(rel: &str) -> LogFile {
        let mut f = LogFile::missing();
        f.path = f.dir.path().join(rel);
        f
    }

    /// A temp dir with `app.log` holding `bytes`.
    pub fn with_content(bytes: &[u8]) -> LogFile {
        let f = LogFile::missing();
        fs::write(&f.path, bytes).expect("write log file");
        f
    }

    /// A temp dir with `app.log` holding `lines`, each followed by `\n`.
    pub fn with_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> LogFile {
        LogFile::with_content(&join_lines(lines))
    }

    /// The followed path (`DIR/app.log`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/name`.
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Opens the path with O_APPEND (creating it), writes `bytes` in one write(2), closes.
    pub fn append(&self, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .expect("open log file for append");
        write_once(&mut f, bytes);
    }

    /// Appends `line\n` for each line, all in one write(2).
    pub fn append_lines<S: AsRef<str>>(&self, lines: impl IntoIterator<Item = S>) {
        self.append(&join_lines(lines));
    }

    /// A handle kept open with O_APPEND (creating the file), like a real logger. It keeps
    /// writing to the same inode after the path is renamed or deleted.
    pub fn writer(&self) -> Writer {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .expect("open log file for append");
        Writer { file }
    }

    /// Creates (or empties) the file at the path.
    pub fn create_empty(&self) {
        File::create(&self.path).expect("create log file");
    }

    /// Truncates the file in place to 0 bytes (same inode).
    pub fn truncate(&self) {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open log file")
            .set_len(0)
            .expect("truncate log file");
    }

    /// `name` in the followed file's own directory (`DIR/app.log.1`, or
    /// `DIR/logs/app.log.1` for [`LogFile::at`]`("logs/app.log")`).
    pub fn beside(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// Renames the path to `name` beside it (logrotate `create` step 1); returns the new path.
    pub fn rename_to(&self, name: &str) -> PathBuf {
        let dest = self.beside(name);
        fs::rename(&self.path, &dest).expect("rename log file");
        dest
    }

    /// logrotate `create`: rename to `DIR/name`, then create a new empty file at the path.
    pub fn rename_create(&self, name: &str) -> PathBuf {
        let dest = self.rename_to(name);
        self.create_empty();
        dest
    }

    /// logrotate `copytruncate`: copy the file to `dest` beside it, then truncate it in place.
    pub fn copytruncate(&self, dest: &str) -> PathBuf {
        let dest = self.beside(dest);
        fs::copy(&self.path, &dest).expect("copy log file");
        self.truncate();
        dest
    }

    /// Removes the file at the path.
    pub fn delete(&self) {
        fs::remove_file(&self.path).expect("delete log file");
    }

    /// Makes the path a symlink to `DIR/target` (atomically replacing whatever was there,
    /// by renaming a fresh symlink over it). The target need not exist.
    pub fn symlink_swap(&self, target: &str) {
        let tmp = self.sibling(".app.log.symlink-tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(self.sibling(target), &tmp).expect("create symlink");
        fs::rename(&tmp, &self.path).expect("rename symlink over log path");
    }

    /// Writes `bytes` to `DIR/name` (creating or replacing it), in one write(2).
    pub fn write_sibling(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.sibling(name);
        let mut f = File::create(&p).expect("create sibling");
        write_once(&mut f, bytes);
        p
    }

    /// Sets the file's permission bits (e.g. `0o000`, `0o644`).
    pub fn chmod(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// The current size of the file at the path.
    pub fn len(&self) -> u64 {
        fs::metadata(&self.path).expect("stat log file").len()
    }

    /// The current contents of the file at the path.
    pub fn read(&self) -> Vec<u8> {
        fs::read(&self.path).expect("read log file")
    }
}

/// An O_APPEND handle that stays open, as a logger keeps it.
#[derive(Debug)]
pub struct Writer {
    file: File,
}

impl Writer {
    /// Writes `bytes` in one write(2).
    pub fn write(&mut self, bytes: &[u8]) {
        write_once(&mut self.file, bytes);
    }

    /// Writes `line\n` for each line in one write(2).
    pub fn write_lines<S: AsRef<str>>(&mut self, lines: impl IntoIterator<Item = S>) {
        write_once(&mut self.file, &join_lines(lines));
    }

    /// A thread that writes `line(1..=total)` in bursts of `burst` lines, pausing
    /// `pause` between bursts (pacing, not synchronisation), like a busy logger.
    pub fn spawn_paced(
        mut self,
        total: u64,
        burst: u64,
        pause: std::time::Duration,
        line: fn(u64) -> String,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut next = 1;
            while next <= total {
                let end = (next + burst - 1).min(total);
                self.write_lines((next..=end).map(line));
                next = end + 1;
                std::thread::sleep(pause);
            }
        })
    }

    /// The underlying file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }
}
