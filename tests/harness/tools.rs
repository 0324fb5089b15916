//! Third-party programs the tests drive (websocat, curl, a shell): finding them, and
//! making sure each one started is ended by its own PID.

use std::path::PathBuf;
use std::process::Child;

/// Finds `name` on PATH (or in ~/.cargo/bin, where `cargo install` puts websocat).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// `find_program(name)`, or: under CI a panic (CI must install it), elsewhere `None`
/// after a note naming the test that is skipped and why.
pub fn require_program(name: &str, install: &str, test: &str) -> Option<PathBuf> {
    if let Some(path) = find_program(name) {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed; CI must install it ({install})");
    }
    eprintln!("note: {name} not on PATH ({install}); skipping {test}");
    None
}

/// Kills a child process (by its own PID) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
