//! What a glob (`/var/log/pods/*/*/*.log`) means: its fixed directory, the
//! steps below it, which directories may lead to matches, which files match,
//! and the public name of each match.
//!
//! A pattern is split into its **root** — the directories before the first
//! component with a glob character, which must be watched to see the rest
//! appear — and **steps**, one per remaining component: a literal name, a
//! one-component pattern (`*.log`, `[0-9]*`; `*` never crosses `/`), or `**`
//! (any number of directories). A path below the root is walked step by
//! step as a small NFA ([`Glob::advance`]), so the same code says whether a
//! new directory is worth watching (some step is still to come) and whether
//! a new file matches (every step is done), with no rescan of anything else.
//!
//! A match is named by its path relative to the root (`ns_pod_uid/c/0.log`),
//! under the glob's `NAME=` if one was given (`k8s/ns_pod_uid/c/0.log`), so
//! two `x.log` in different directories never collide.
//!
//! Pure but for [`Glob::walk`], which lists directories.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// Whether `text` is a glob: it holds a character globset gives a meaning.
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The most directories [`Glob::walk`] visits in one call (a `**` over a
/// whole file system stops there, with a warning).
const MAX_WALK_DIRS: usize = 100_000;

#[derive(Debug, Clone)]
enum Step {
    Literal(OsString),
    Pattern(GlobMatcher),
    AnyDepth,
}

impl Step {
    fn matches(&self, name: &OsStr) -> bool {
        match self {
            Step::Literal(lit) => lit == name,
            Step::Pattern(m) => m.is_match(name),
            Step::AnyDepth => true,
        }
    }
}

/// A set of NFA states: the indices of the steps that may match next.
pub type States = Vec<usize>;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Glob {
    /// As typed, for logs.
    pub typed: String,
    /// The fixed directories (absolute, lexically clean).
    pub root: PathBuf,
    steps: Vec<Step>,
    /// Prefix of every match's public name (`NAME/`, or empty).
    name_prefix: String,
}

/// What [`Glob::walk`] found below a directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Directories that may lead to matches (the start included), to watch.
    pub dirs: Vec<PathBuf>,
    /// Files that match.
    pub files: Vec<PathBuf>,
}

impl Glob {
    /// `pattern` made absolute (`absolute` is what the working directory
    /// does to a path, see [`super::path::absolute`]), named under `name`.
    pub fn new(typed: &str, absolute: &Path, name: &str) -> Result<Glob, String> {
        let mut root = PathBuf::new();
        let mut steps = Vec::new();
        for component in absolute.components() {
            let part = component.as_os_str();
            let text = part.to_string_lossy();
            match component {
                Component::Normal(_) if !steps.is_empty() || is_glob(&text) => {
                    let step = if text == "**" {
                        Step::AnyDepth
                    } else if is_glob(&text) {
                        let glob = GlobBuilder::new(&text)
                            .literal_separator(true)
                            .backslash_escape(true)
                            .build()
                            .map_err(|err| format!("`{typed}` is not a valid glob: {err}"))?;
                        Step::Pattern(glob.compile_matcher())
                    } else {
                        Step::Literal(part.to_os_string())
                    };
                    steps.push(step);
                }
                _ => root.push(part),
            }
        }
        if steps.is_empty() {
            return Err(format!("`{typed}` has no glob character"));
        }
        if let Some(Step::AnyDepth) = steps.last() {
            // `logs/**` means every file below `logs`.
            steps.push(Step::AnyDepth);
        }
        let name_prefix = if name.is_empty() {
            String::new()
        } else {
            format!("{name}/")
        };
        Ok(Glob {
            typed: typed.to_string(),
            root,
            steps,
            name_prefix,
        })
    }

    /// The states at the root.
    pub fn start(&self) -> States {
        self.closure(vec![0])
    }

    /// Adds the states reachable without consuming a component (past `**`).
    fn closure(&self, mut states: States) -> States {
        let mut i = 0;
        while i < states.len() {
            let s = states[i];
            if matches!(self.steps.get(s), Some(Step::AnyDepth)) && !states.contains(&(s + 1)) {
                states.push(s + 1);
            }
            i += 1;
        }
        states.sort_unstable();
        states.dedup();
        states
    }

    /// The states after one more path component `name`.
    pub fn advance(&self, states: &[usize], name: &OsStr) -> States {
        let mut next = Vec::new();
        for &s in states {
            match self.steps.get(s) {
                Some(Step::AnyDepth) => next.push(s),
                Some(step) if step.matches(name) => next.push(s + 1),
                _ => {}
            }
        }
        self.closure(next)
    }

    /// The states of directory `dir` (below the root, or the root), or
    /// `None` if it is not below the root.
    pub fn states_of(&self, dir: &Path) -> Option<States> {
        let rel = dir.strip_prefix(&self.root).ok()?;
        let mut states = self.start();
        for c in rel.components() {
            states = self.advance(&states, c.as_os_str());
            if states.is_empty() {
                break;
            }
        }
        Some(states)
    }

    /// Whether a directory in these states may hold matches, in it or
    /// further down (a step is still to come).
    pub fn leads_on(&self, states: &[usize]) -> bool {
        states.iter().any(|&s| s < self.steps.len())
    }

    /// Whether a file whose states (after its own name) are `states` matches.
    pub fn done(&self, states: &[usize]) -> bool {
        states.contains(&self.steps.len())
    }

    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &Path) -> bool {
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => self
                .states_of(dir)
                .is_some_and(|s| self.done(&self.advance(&s, name))),
            _ => false,
        }
    }

    /// Whether `dir` is worth watching: the root, or a directory below it
    /// that may lead to matches.
    pub fn wants_dir(&self, dir: &Path) -> bool {
        self.states_of(dir).is_some_and(|s| self.leads_on(&s))
    }

    /// Whether `path` (a match) resolves to a file inside the glob's root:
    /// a symlink among the matches may not lead the glob elsewhere.
    pub fn contains_target(&self, path: &Path) -> bool {
        match (
            std::fs::canonicalize(path),
            std::fs::canonicalize(&self.root),
        ) {
            (Ok(target), Ok(root)) => target.starts_with(root),
            _ => false,
        }
    }

    /// The public name of a match.
    pub fn name_of(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        format!("{}{}", self.name_prefix, rel.to_string_lossy())
    }

    /// Every directory that may lead to matches, and every matching file,
    /// from `dir` (in `states`) down. Symlinks to directories are not
    /// descended (a loop cannot trap the walk, and a link cannot lead the
    /// glob out of its tree); a symlink to a file is a match like a file,
    /// followed by name.
    pub fn walk(&self, dir: &Path, states: States) -> Found {
        let mut found = Found::default();
        let mut todo = vec![(dir.to_path_buf(), states)];
        while let Some((dir, states)) = todo.pop() {
            if found.dirs.len() >= MAX_WALK_DIRS {
                tracing::warn!(glob = %self.typed, "more than {MAX_WALK_DIRS} directories below {}: not looking further", dir.display());
                break;
            }
            if let Err(err) = std::fs::read_dir(&dir) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(glob = %self.typed, "cannot list {}: {err}", dir.display());
                }
                continue;
            }
            found.dirs.push(dir.clone());
            let below = self.list(&dir, &states);
            found.files.extend(below.files);
            todo.extend(below.subdirs);
        }
        found.files.sort();
        found
    }
}

/// What each directory held when it was last listed, so that `--poll`'s
/// rescan every interval costs a `stat` per directory, not a listing and a
/// match per entry: a directory's modification time changes whenever an
/// entry is made, removed or renamed in it.
#[derive(Debug, Default)]
pub struct WalkCache {
    dirs: std::collections::HashMap<PathBuf, Listed>,
}

#[derive(Debug)]
struct Listed {
    modified: std::time::SystemTime,
    /// When it was listed: a change in the same moment may not have moved
    /// a coarse (one-second, NFS) modification time, so a listing is
    /// trusted only once it is older than [`RACY`] past the change.
    listed: std::time::SystemTime,
    subdirs: Vec<(PathBuf, States)>,
}

/// How close a directory's change may be to its listing for the listing to
/// be distrusted (file systems with whole-second times).
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

impl Glob {
    /// As [`walk`](Self::walk) from the root, but a directory unchanged
    /// since its last listing is not listed again: its files are not
    /// returned (none can be new), its subdirectories are still visited.
    pub fn walk_changed(&self, cache: &mut WalkCache) -> Found {
        let mut found = Found::default();
        let mut visited = std::collections::HashSet::new();
        let mut todo = vec![(self.root.clone(), self.start())];
        while let Some((dir, states)) = todo.pop() {
            if found.dirs.len() >= MAX_WALK_DIRS {
                break;
            }
            let Ok(modified) = std::fs::metadata(&dir).and_then(|m| m.modified()) else {
                continue;
            };
            visited.insert(dir.clone());
            found.dirs.push(dir.clone());
            if let Some(listed) = cache.dirs.get(&dir)
                && listed.modified == modified
                && modified + RACY < listed.listed
            {
                todo.extend(listed.subdirs.iter().cloned());
                continue;
            }
            let listed_at = std::time::SystemTime::now();
            let below = self.list(&dir, &states);
            found.files.extend(below.files);
            todo.extend(below.subdirs.iter().cloned());
            cache.dirs.insert(
                dir,
                Listed {
                    modified,
                    listed: listed_at,
                    subdirs: below.subdirs,
                },
            );
        }
        cache.dirs.retain(|dir, _| visited.contains(dir));
        found.files.sort();
        found
    }

    /// One directory's matching files and the subdirectories worth a visit.
    fn list(&self, dir: &Path, states: &[usize]) -> Listing {
        let mut out = Listing::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let next = self.advance(states, &name);
            if next.is_empty() {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = dir.join(&name);
            if kind.is_dir() {
                if self.leads_on(&next) {
                    out.subdirs.push((path, next));
                }
            } else if self.done(&next) && !is_dir_link(&path, kind) {
                out.files.push(path);
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Listing {
    files: Vec<PathBuf>,
    subdirs: Vec<(PathBuf, States)>,
}

fn is_dir_link(path: &Path, kind: std::fs::FileType) -> bool {
    kind.is_symlink() && std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p, Path::new(p), "").unwrap()
    }

    #[test]
    fn splits_the_fixed_root_from_the_steps() {
        let g = glob("/var/log/pods/*/*/*.log");
        assert_eq!(g.root, Path::new("/var/log/pods"));
        assert!(g.matches(Path::new("/var/log/pods/ns_p_u/c/0.log")));
        assert!(!g.matches(Path::new("/var/log/pods/ns_p_u/0.log")));
        assert!(!g.matches(Path::new("/var/log/pods/ns_p_u/c/d/0.log")));
        assert!(!g.matches(Path::new("/var/log/pods/ns_p_u/c/0.txt")));
        assert_eq!(
            g.name_of(Path::new("/var/log/pods/ns_p_u/c/0.log")),
            "ns_p_u/c/0.log"
        );
        assert!(g.wants_dir(Path::new("/var/log/pods")));
        assert!(g.wants_dir(Path::new("/var/log/pods/a")));
        assert!(g.wants_dir(Path::new("/var/log/pods/a/b")));
        assert!(!g.wants_dir(Path::new("/var/log/pods/a/b/c")));
        assert!(!g.wants_dir(Path::new("/var/log")));
    }

    #[test]
    fn star_stays_in_one_component_and_double_star_goes_anywhere() {
        let g = glob("/l/*.log");
        assert!(g.matches(Path::new("/l/a.log")));
        assert!(!g.matches(Path::new("/l/x/a.log")));
        assert!(g.matches(Path::new("/l/app.log")) && !g.matches(Path::new("/l/app.log.1")));
        let g = glob("/l/app.log*");
        assert!(g.matches(Path::new("/l/app.log.1")));
        let g = glob("/l/**/*.log");
        for p in ["/l/a.log", "/l/x/a.log", "/l/x/y/z/a.log"] {
            assert!(g.matches(Path::new(p)), "{p}");
        }
        assert!(g.wants_dir(Path::new("/l/x/y")));
        let g = glob("/l/**");
        assert!(g.matches(Path::new("/l/x/y")) && g.matches(Path::new("/l/y")));
        let g = glob("/l/*/app/[ab].log");
        assert!(g.matches(Path::new("/l/x/app/a.log")) && !g.matches(Path::new("/l/x/app/c.log")));
        assert!(!g.wants_dir(Path::new("/l/x/other")));
    }

    #[test]
    fn a_name_prefixes_the_matches() {
        let g = Glob::new("/l/*.log", Path::new("/l/*.log"), "api").unwrap();
        assert_eq!(g.name_of(Path::new("/l/x.log")), "api/x.log");
    }

    /// `--poll`'s rescan lists only the directories that changed.
    #[test]
    fn walk_changed_lists_only_changed_directories() {
        let keep = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(keep.path()).unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("1.log"), b"").unwrap();
        }
        let pattern = root.join("*/*.log");
        let g = glob(pattern.to_str().unwrap());
        let mut cache = WalkCache::default();
        let first = g.walk_changed(&mut cache);
        assert_eq!(first.files, [root.join("a/1.log"), root.join("b/1.log")]);
        // Listed just now: too recent to trust, so listed again.
        assert_eq!(g.walk_changed(&mut cache).files.len(), 2);
        // Old listings of unchanged directories are trusted: nothing new.
        for listed in cache.dirs.values_mut() {
            listed.listed += RACY * 2;
        }
        assert!(g.walk_changed(&mut cache).files.is_empty());
        std::fs::write(root.join("b/2.log"), b"").unwrap();
        let mut touched = std::fs::metadata(root.join("b"))
            .unwrap()
            .modified()
            .unwrap();
        touched += std::time::Duration::from_secs(1);
        std::fs::File::open(root.join("b"))
            .unwrap()
            .set_modified(touched)
            .unwrap();
        let again = g.walk_changed(&mut cache);
        assert_eq!(again.files, [root.join("b/1.log"), root.join("b/2.log")]);
        assert_eq!(again.dirs.len(), 3, "every directory is still visited");
    }

    #[test]
    fn walk_finds_dirs_and_files_without_leaving_the_tree() {
        let keep = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(keep.path()).unwrap();
        for d in ["a/c", "b/c", "b/d", "x"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "a/c/1.log",
            "b/c/2.log",
            "b/c/2.txt",
            "b/d/3.log",
            "x/4.log",
            "5.log",
        ] {
            std::fs::write(root.join(f), b"").unwrap();
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("c")).unwrap();
        std::fs::write(outside.path().join("c/secret.log"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let pattern = root.join("*/c/*.log");
        let g = glob(pattern.to_str().unwrap());
        let found = g.walk(&g.root, g.start());
        assert_eq!(
            found.files,
            [root.join("a/c/1.log"), root.join("b/c/2.log")]
        );
        let mut dirs = found.dirs.clone();
        dirs.sort();
        // `x` has no `c` yet but may get one: it is watched too. The link
        // out of the tree is not descended.
        let want: Vec<PathBuf> = ["", "a", "a/c", "b", "b/c", "x"]
            .iter()
            .map(|d| {
                if d.is_empty() {
                    root.clone()
                } else {
                    root.join(d)
                }
            })
            .collect();
        assert_eq!(dirs, want);
    }
}
