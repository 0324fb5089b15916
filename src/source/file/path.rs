//! What a followed path means, decided once at start-up.
//!
//! The user types `app.log`, `./app.log`, `logs/app.log` or `logs/../app.log`;
//! the file source follows one absolute, lexically clean path from then on: the
//! working directory at start-up joined with what was typed, with `.`
//! components dropped and each `..` removing the component before it (as
//! `realpath --no-symlinks` does). Nothing is resolved through the file
//! system here — symlinks, in particular, are followed at every look, since a
//! followed link may be re-pointed or dangle for a while.
//!
//! Why lexical `..`: the kernel would resolve `logs/../app.log` only while
//! `logs` exists, so a path that names `./app.log` on paper would follow
//! nothing until an unrelated directory appeared. A user means `app.log`.
//! (Where `logs` is a symlink to another directory, the kernel's `..` would
//! leave through the link's target; we do not: the path is what was typed.)
//!
//! Why absolute: inotify reports events with the path of the watched
//! directory, which notify makes absolute; the watcher compares those with
//! the paths it cares about, so both must be spelled the same way. And the
//! working directory of the process is then never consulted again.

use std::io;
use std::path::{Component, Path, PathBuf};

/// `given` as an absolute, lexically clean path, relative paths taken from
/// the current working directory.
pub fn absolute(given: &Path) -> io::Result<PathBuf> {
    if given.is_absolute() {
        return Ok(clean(given));
    }
    let cwd = std::env::current_dir().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "cannot resolve {}: the working directory is unreadable: {err}",
                given.display()
            ),
        )
    })?;
    Ok(clean(&cwd.join(given)))
}

/// Drops `.` components and applies `..` to the component before it; a `..`
/// at the root stays at the root (as the kernel's does).
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                // `pop` on a bare root or an empty path does nothing.
                if !out.pop() && !path.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_drops_dots_and_applies_dotdot() {
        assert_eq!(clean(Path::new("/w/./app.log")), Path::new("/w/app.log"));
        assert_eq!(
            clean(Path::new("/w/logs/../app.log")),
            Path::new("/w/app.log")
        );
        assert_eq!(
            clean(Path::new("/w/a/b/../../c/./d.log")),
            Path::new("/w/c/d.log")
        );
        assert_eq!(clean(Path::new("/../app.log")), Path::new("/app.log"));
        assert_eq!(clean(Path::new("/w//x.log")), Path::new("/w/x.log"));
        assert_eq!(clean(Path::new("a/../../b")), Path::new("../b"));
    }

    #[test]
    fn relative_paths_are_taken_from_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("app.log")).unwrap(), cwd.join("app.log"));
        assert_eq!(
            absolute(Path::new("./app.log")).unwrap(),
            cwd.join("app.log")
        );
        assert_eq!(
            absolute(Path::new("logs/../app.log")).unwrap(),
            cwd.join("app.log")
        );
        assert_eq!(
            absolute(Path::new("logs/app.log")).unwrap(),
            cwd.join("logs/app.log")
        );
        assert_eq!(
            absolute(Path::new("/var/log/./syslog")).unwrap(),
            Path::new("/var/log/syslog")
        );
    }
}
