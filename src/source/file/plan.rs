//! What to watch for one followed path, as it is now: the directory of
//! every name that matters, and the entry in it that leads there.
//!
//! We watch directories, not the file by name: a watch on a file follows its
//! inode, so it goes quiet when the file is renamed away or deleted, and
//! never reports the new file created under the old name (notify's "Known
//! Problems"; coreutils `tail` watches the parent for the same reason). So we
//! watch the directory of every name that matters — the followed path and,
//! when it is a symlink, each name in the chain of links down to the file it
//! points to, since that is where the writes happen (Kubernetes'
//! `/var/log/containers/*.log`) — or, while such a directory does not exist
//! yet, its nearest existing ancestor. A dangling link is therefore waited
//! for like a missing file: the watch sits where its target will appear.
//! A directory on the way that is itself a symlink (`current/log/app.log`
//! with `current -> releases/2`, as deploy tools do) is watched in its own
//! parent, so re-pointing it wakes us.
//!
//! Pure but for `stat`/`readlink`: the plan is made with no lock held, then
//! handed to [`super::watch`]. Every path here is absolute and lexically
//! clean ([`super::path`]), as notify reports them.

use std::path::{Component, Path, PathBuf};

use super::identity::FileId;
use super::path::clean;

/// Symlinks followed in a chain at most (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

/// What to watch for one followed path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Directories to watch, each once (by identity, whatever its spelling).
    pub dirs: Vec<PathBuf>,
    /// Paths under them whose events matter, spelled under `dirs` as notify
    /// reports them.
    pub paths: Vec<PathBuf>,
}

/// For every name in `path`'s symlink chain, and every symlinked directory
/// on the way to it: the directory to watch and the path under it that
/// matters.
pub fn watch_plan(path: &Path) -> Plan {
    let mut plan = Plan::default();
    let mut ids: Vec<Option<FileId>> = Vec::new();
    let mut wanted = Vec::new();
    for name in link_chain(path) {
        for link in symlinked_ancestors(&name) {
            if let (Some(dir), Some(entry)) = (link.parent(), link.file_name()) {
                wanted.push((dir.to_path_buf(), entry.to_os_string()));
            }
        }
        wanted.extend(nearest_watchable(&name));
    }
    for (dir, entry) in wanted {
        let id = FileId::of_path(&dir);
        // One directory under two spellings (`/var/run` and `/run`) is one
        // inotify watch, reported under one spelling: use the first.
        let known = plan
            .dirs
            .iter()
            .zip(&ids)
            .find(|(d, i)| **d == dir || (id.is_some() && **i == id))
            .map(|(d, _)| d.clone());
        let dir = match known {
            Some(known) => known,
            None => {
                plan.dirs.push(dir.clone());
                ids.push(id);
                dir
            }
        };
        let under = dir.join(entry);
        if !plan.paths.contains(&under) {
            plan.paths.push(under);
        }
    }
    plan
}

/// `path`, then the path each symlink in the chain points to, for as long
/// as the last one is a symlink (dangling or not).
fn link_chain(path: &Path) -> Vec<PathBuf> {
    let mut chain = vec![path.to_path_buf()];
    while chain.len() <= MAX_LINKS {
        let last = &chain[chain.len() - 1];
        let Ok(target) = std::fs::read_link(last) else {
            break;
        };
        // A relative target is relative to the directory the link is in —
        // the real one: `..` leaves it as the kernel's lookup does, even when
        // the link was reached through a symlinked directory.
        let parent = last.parent().unwrap_or(Path::new("/"));
        let base = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        let next = clean(&base.join(target));
        if chain.contains(&next) {
            break; // a loop: every name in it is already watched
        }
        chain.push(next);
    }
    chain
}

/// The directories on the way to `name` (not `name` itself) that are
/// symlinks, nearest the root first.
fn symlinked_ancestors(name: &Path) -> Vec<PathBuf> {
    let mut links: Vec<PathBuf> = name
        .ancestors()
        .skip(1)
        .take_while(|a| a.parent().is_some())
        .filter(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .map(Path::to_path_buf)
        .collect();
    links.reverse();
    links
}

/// The directory to watch for `name` — its parent, or while that does not
/// exist its nearest existing ancestor — and the entry in it that leads to
/// `name`. `None` for the root itself.
fn nearest_watchable(name: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    let mut dir = name.parent()?;
    loop {
        if dir.is_dir() {
            break;
        }
        dir = dir.parent()?;
    }
    let rest = name.strip_prefix(dir).ok()?;
    match rest.components().next()? {
        Component::Normal(entry) => Some((dir.to_path_buf(), entry.to_os_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn watches_parent_and_symlink_target_dir() {
        let (_keep, root) = root();
        let logs = root.join("logs");
        let pods = root.join("pods");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::write(pods.join("0.log"), b"").unwrap();
        let link = logs.join("app.log");
        // A relative target, as `ln -s ../pods/0.log logs/app.log` makes.
        std::os::unix::fs::symlink("../pods/0.log", &link).unwrap();
        let plan = watch_plan(&link);
        assert_eq!(plan.dirs, [logs.clone(), pods.clone()]);
        assert_eq!(plan.paths, [link, pods.join("0.log")]);
    }

    #[test]
    fn a_dangling_link_is_waited_for_where_its_target_will_appear() {
        let (_keep, root) = root();
        let link = root.join("app.log");
        std::os::unix::fs::symlink("pods/1.log", &link).unwrap();
        // `pods` does not exist yet: its parent (the root) is watched for it.
        let plan = watch_plan(&link);
        assert_eq!(plan.dirs, std::slice::from_ref(&root));
        assert_eq!(plan.paths, [link.clone(), root.join("pods")]);
        std::fs::create_dir(root.join("pods")).unwrap();
        let plan = watch_plan(&link);
        assert_eq!(plan.dirs, [root.clone(), root.join("pods")]);
        assert_eq!(plan.paths, [link, root.join("pods/1.log")]);
    }

    #[test]
    fn a_chain_of_links_is_followed_and_a_loop_ends() {
        let (_keep, root) = root();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::create_dir(root.join("b")).unwrap();
        std::os::unix::fs::symlink(root.join("a/x"), root.join("app.log")).unwrap();
        std::os::unix::fs::symlink("../b/y", root.join("a/x")).unwrap();
        let plan = watch_plan(&root.join("app.log"));
        assert_eq!(plan.dirs, [root.clone(), root.join("a"), root.join("b")]);
        assert_eq!(
            plan.paths,
            [root.join("app.log"), root.join("a/x"), root.join("b/y")]
        );
        std::os::unix::fs::symlink("../a/x", root.join("b/y")).unwrap();
        assert_eq!(link_chain(&root.join("app.log")).len(), 3);
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_watched_where_it_can_be_re_pointed() {
        let (_keep, root) = root();
        std::fs::create_dir_all(root.join("releases/2/log")).unwrap();
        std::os::unix::fs::symlink("releases/2", root.join("current")).unwrap();
        let path = root.join("current/log/app.log");
        let plan = watch_plan(&path);
        assert_eq!(plan.dirs, [root.clone(), root.join("current/log")]);
        assert_eq!(plan.paths, [root.join("current"), path]);
    }

    #[test]
    fn a_relative_target_is_taken_from_the_real_directory_of_its_link() {
        let (_keep, root) = root();
        // logs -> deep/logs; deep/logs/app.log -> ../pods/0.log, which the
        // kernel finds in deep/pods, not in pods.
        std::fs::create_dir_all(root.join("deep/logs")).unwrap();
        std::fs::create_dir_all(root.join("deep/pods")).unwrap();
        std::os::unix::fs::symlink("deep/logs", root.join("logs")).unwrap();
        std::os::unix::fs::symlink("../pods/0.log", root.join("deep/logs/app.log")).unwrap();
        let chain = link_chain(&root.join("logs/app.log"));
        assert_eq!(chain[1], root.join("deep/pods/0.log"));
    }

    #[test]
    fn one_directory_under_two_spellings_is_watched_once() {
        let (_keep, root) = root();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("alias")).unwrap();
        std::fs::write(root.join("real/0.log"), b"").unwrap();
        let link = root.join("real/app.log");
        std::os::unix::fs::symlink(root.join("alias/0.log"), &link).unwrap();
        let plan = watch_plan(&link);
        // `real` once, whichever way it is spelled; the root too, where the
        // `alias` link could be re-pointed.
        assert_eq!(plan.dirs, [root.join("real"), root.clone()]);
        assert_eq!(
            plan.paths,
            [link, root.join("alias"), root.join("real/0.log")]
        );
    }

    #[test]
    fn plan_names_the_component_under_a_missing_parent() {
        let (_keep, root) = root();
        let path = root.join("not/yet/app.log");
        let plan = watch_plan(&path);
        assert_eq!(plan.dirs, std::slice::from_ref(&root));
        assert_eq!(plan.paths, [root.join("not")]);
    }
}
