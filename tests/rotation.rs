//! Following a file by name (issue 3): rotation, truncation, deletion, symlink swaps,
//! permission changes and over-long lines, as a matrix run for both watchers — inotify,
//! and `--poll --poll-interval 50`.
//!
//! Every case runs the same way ([`matrix`]):
//! - the server starts, then two live clients connect (`?backlog=0`; one text, one
//!   `format=json`) before a single line is written;
//! - a writer thread appends numbered lines (`line 000123`) continuously through an
//!   O_APPEND handle, in small bursts (thousands of lines a second), and performs the
//!   case's rotation between two bursts, once the client has received some lines;
//! - at the end, the text client must have received every line exactly once and in order,
//!   and so must the JSON client, with consecutive `seq`s, exact `offset`s, and the
//!   `rotated` / `truncated` events exactly where the old content ends and the new begins.
//!
//! Nothing is synchronised by sleeping: the writer waits on conditions with deadlines (the
//! client has received line N; `/healthz` says the tailer has read to the end of the file;
//! the server logged something). The writer's only sleep paces its bursts.
//!
//! The writer is a plain thread (`spawn_blocking`); it asks the server through the
//! harness's async [`Server`] methods, run with the runtime's [`Handle::block_on`].

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Handle;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{
    LogFile, PROMPT, Server, Sig, WsClient, fixed_line, fixed_line_number, join_lines, poll,
    poll_async, wait_until,
};

/// How long one step of a case may take (a line arriving, the tailer catching up).
const STEP: Duration = Duration::from_secs(30);
/// Pause between two bursts of the writer: pacing only, never synchronisation.
const PACE: Duration = Duration::from_micros(250);
/// Lines the client must have received before the case rotates anything.
const WARM: u64 = 300;
/// Lines written after the rotation.
const AFTER: u64 = 1500;
/// `--max-line-bytes` for the long-line case.
const MAX_LINE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Inotify,
    Poll,
}

impl Watch {
    fn args(self) -> &'static [&'static str] {
        match self {
            Watch::Inotify => &[],
            Watch::Poll => &["--poll", "--poll-interval", "50"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    RenameCreate,
    RenameCreateLateReopen,
    CopyTruncate,
    Truncate,
    TruncateRewriteLarger,
    DeleteRecreate,
    SymlinkSwap,
    TwoRotations,
    LateFile,
    LongLine,
    PermissionAtStart,
    PermissionAfterRotation,
    /// Issue 9: every path spelling through one file's life.
    Lifecycle(Spelling),
    DeletedKeepsWriting,
    MovedAway,
    DirRecreate,
    DanglingLink,
    LinkToMissing,
    RenameOver,
    ReplacedManyTimes,
    DirLinkSwap,
    DirAtStart,
    DirOverPath,
}

/// How the followed path is typed on the command line; the server runs in the temp dir,
/// as a user's shell would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// `/tmp/…/app.log`.
    Absolute,
    /// `app.log`.
    Bare,
    /// `./app.log`.
    DotSlash,
    /// `logs/app.log`.
    Subdir,
    /// `logs/../app.log`, `logs` never existing (the kernel could not open it).
    DotDot,
    /// `current.log`, a symlink with the relative target `logs/app.log`.
    RelativeLink,
    /// `logs/app.log`, `logs` missing until the writer makes it.
    MissingDir,
    /// `current/app.log`, `current` a symlink to `releases/1` (as deploy tools do).
    LinkedDir,
}

impl Spelling {
    /// Where the file is, under the temp dir.
    fn file(self) -> &'static str {
        match self {
            Spelling::Absolute | Spelling::Bare | Spelling::DotSlash | Spelling::DotDot => {
                "app.log"
            }
            Spelling::Subdir | Spelling::RelativeLink | Spelling::MissingDir => "logs/app.log",
            Spelling::LinkedDir => "releases/1/app.log",
        }
    }

    /// What `--file` gets; `None`: the absolute path.
    fn arg(self) -> Option<&'static str> {
        match self {
            Spelling::Absolute => None,
            Spelling::Bare => Some("app.log"),
            Spelling::DotSlash => Some("./app.log"),
            Spelling::Subdir | Spelling::MissingDir => Some("logs/app.log"),
            Spelling::DotDot => Some("logs/../app.log"),
            Spelling::RelativeLink => Some("current.log"),
            Spelling::LinkedDir => Some("current/app.log"),
        }
    }
}

impl Case {
    fn spelling(self) -> Spelling {
        match self {
            Case::Lifecycle(spelling) => spelling,
            Case::DirRecreate => Spelling::Subdir,
            Case::DanglingLink | Case::LinkToMissing => Spelling::RelativeLink,
            Case::DirLinkSwap => Spelling::LinkedDir,
            Case::DeletedKeepsWriting
            | Case::MovedAway
            | Case::RenameOver
            | Case::ReplacedManyTimes
            | Case::DirAtStart
            | Case::DirOverPath => Spelling::Bare,
            _ => Spelling::Absolute,
        }
    }

    /// The file is missing (or unreadable) when the server starts.
    fn starts_waiting(self) -> bool {
        matches!(
            self,
            Case::LateFile
                | Case::PermissionAtStart
                | Case::DanglingLink
                | Case::DirAtStart
                | Case::Lifecycle(Spelling::MissingDir)
        )
    }
}

/// A module per case with a test per watcher; `case => Case::X, attr(...);` puts
/// `#[attr(...)]` on both tests.
macro_rules! matrix_tests {
    ($($(#[$doc:meta])* $name:ident => $case:expr $(, $attr:meta)*;)*) => {$(
        $(#[$doc])*
        mod $name {
            use super::*;

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inotify() {
                matrix($case, Watch::Inotify).await;
            }

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn poll() {
                matrix($case, Watch::Poll).await;
            }
        }
    )*};
}

matrix_tests! {
    /// logrotate `create`: `mv app.log app.log.1; touch app.log`, then the writer reopens
    /// at once (a logger on SIGHUP). Its last write to the old file is a partial line,
    /// which must be flushed as a line before the new file's lines.
    rename_create => Case::RenameCreate;
    /// logrotate `create`, but the writer goes on writing 300 lines to the old fd after the
    /// rename before it reopens: those lines arrive before the new file's.
    rename_create_late_reopen => Case::RenameCreateLateReopen;
    /// logrotate `copytruncate`. Lines written between the copy and the truncate are lost
    /// by logrotate itself (they are in neither file): that window is inherent, so the
    /// writer pauses across copy + truncate, and then nothing may be lost.
    copytruncate => Case::CopyTruncate;
    /// Plain truncation to 0 (same inode) with the writer going on: restart at offset 0.
    truncate => Case::Truncate;
    /// Truncate, then rewrite MORE bytes than our offset in one write before the tailer
    /// looks (the server is SIGSTOPped across both): only the comparison of the bytes
    /// before our offset can see it.
    truncate_rewrite_larger => Case::TruncateRewriteLarger;
    /// `rm app.log` while the writer keeps writing to its fd, the path missing until the
    /// server has noticed; then the writer re-creates it.
    delete_recreate => Case::DeleteRecreate;
    /// The path is a symlink (Kubernetes style) re-pointed atomically to a new target
    /// in another directory; the writer follows a little later.
    symlink_swap => Case::SymlinkSwap;
    /// Two `create` rotations in quick succession: the second one as soon as the client
    /// has the first line of the intermediate file.
    two_rotations => Case::TwoRotations;
    /// The file does not exist when the server starts: `waiting` logged, then read from
    /// its first byte, with a `following` event before line 1.
    late_file => Case::LateFile;
    /// `--max-line-bytes 1000` and 3500-byte lines (one cut across two writes, one in a
    /// single write): pieces of 1000, 1000, 1000, 500, nothing dropped, stream goes on.
    long_line => Case::LongLine;
    /// Mode 000 at start (the server runs without CAP_DAC_OVERRIDE when we are root):
    /// logged, retried, and read from offset 0 once a chmod makes it readable.
    permission_at_start => Case::PermissionAtStart, needs::tools(setpriv);
    /// After a rotation the new file is mode 000: old file finished, `waiting`, then the
    /// new file read from offset 0 once it is made readable.
    permission_after_rotation => Case::PermissionAfterRotation, needs::tools(setpriv);

    /// Issue 9, the quick start's spellings: each relative form of the path (the server's
    /// working directory is the temp dir) through one file's whole life under a continuous
    /// writer — existing and appended (or missing, then created), logrotate `create`,
    /// `copytruncate`, deleted while the writer goes on, then re-created.
    lifecycle_bare => Case::Lifecycle(Spelling::Bare);
    lifecycle_dot_slash => Case::Lifecycle(Spelling::DotSlash);
    lifecycle_subdir => Case::Lifecycle(Spelling::Subdir);
    lifecycle_dot_dot => Case::Lifecycle(Spelling::DotDot);
    lifecycle_relative_symlink => Case::Lifecycle(Spelling::RelativeLink);
    lifecycle_missing_dir => Case::Lifecycle(Spelling::MissingDir);
    /// `rm app.log` while the writer goes on and never reopens for a while: its lines must
    /// arrive at once (a watch on the held file), not at the next directory event.
    deleted_keeps_writing => Case::DeletedKeepsWriting;
    /// `mv app.log archive/app.log.1` — out of every watched directory — while the writer
    /// goes on: its lines arrive at once; then the writer re-creates the file.
    moved_away => Case::MovedAway;
    /// coreutils `inotify-dir-recreate`: `rm -r logs; mkdir logs`, then the file written
    /// again — once at once, once after the server noticed.
    dir_recreate => Case::DirRecreate;
    /// coreutils `symlink`, first case: the path is a dangling symlink at start (its
    /// target's directory missing too); the target is created later.
    dangling_link => Case::DanglingLink;
    /// coreutils `symlink`, second case: a followed symlink is re-pointed to a target that
    /// does not exist yet, in a directory that does not exist yet either; the old target's
    /// writer goes on for a while (its lines arrive), then the new target appears.
    link_to_missing => Case::LinkToMissing;
    /// coreutils `inotify-rotate`, `inotify-race2`: a file that already holds lines is
    /// renamed over the path (`mv x app.log`): read from its first byte.
    rename_over => Case::RenameOver;
    /// A directory on the way is a symlink re-pointed (`ln -sfn releases/2 current`, a
    /// deploy): the new release's file is followed from its first byte, the old one's last
    /// lines first.
    dir_link_swap => Case::DirLinkSwap;
    /// coreutils `inotify-hash-abuse2`: `touch g; mv g app.log` 200 times while the old
    /// writer goes on (empty files never end the old one), then the writer reopens.
    replaced_many_times => Case::ReplacedManyTimes;
    /// coreutils `retry`: the path is a directory at start (refused, waited on), then
    /// `rmdir` and a file is created there.
    dir_at_start => Case::DirAtStart;
    /// `mv app.log app.log.1; mkdir app.log` while the writer goes on: a directory is not a
    /// new file, so the old file is read on (nothing lost), until a file replaces it.
    dir_over_path => Case::DirOverPath;
}

// ---------------------------------------------------------------------------------------
// The server, frozen.
// ---------------------------------------------------------------------------------------

/// Stops the server with SIGSTOP until dropped (SIGCONT), so a file change is surely made
/// "before the tailer looked". Waits until every thread of it is stopped.
struct Frozen(Arc<Server>);

impl Frozen {
    fn new(server: Arc<Server>) -> Frozen {
        server.signal(Sig::Stop);
        let pid = server.pid();
        let frozen = Frozen(server);
        wait_until(STEP, &format!("server {pid} is stopped"), || {
            all_threads_stopped(pid)
        });
        frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.0.signal(Sig::Cont);
    }
}

/// Every task of `pid` is in state `T` (stopped).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // "pid (comm) S ...": the state follows the last ')'.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    })
}

// ---------------------------------------------------------------------------------------
// The clients' side.
// ---------------------------------------------------------------------------------------

/// What one client received, shared between its collector task and the writer thread.
#[derive(Default)]
struct Received {
    frames: Mutex<Vec<String>>,
    /// The highest `line NNNNNN` number received so far.
    last: AtomicU64,
    /// Why the stream ended, if it did.
    ended: Mutex<Option<String>>,
}

impl Received {
    fn push(&self, frame: String, json: bool) {
        let text = if json {
            serde_json::from_str::<Value>(&frame)
                .ok()
                .and_then(|v| v["line"].as_str().map(str::to_owned))
        } else {
            Some(frame.clone())
        };
        if let Some(n) = text.as_deref().and_then(fixed_line_number) {
            self.last.fetch_max(n, Ordering::AcqRel);
        }
        self.frames.lock().unwrap().push(frame);
    }

    fn frames(&self) -> Vec<String> {
        self.frames.lock().unwrap().clone()
    }

    fn describe(&self) -> String {
        let frames = self.frames.lock().unwrap();
        format!(
            "{} frames, highest line {}, last frames {:?}, ended: {:?}",
            frames.len(),
            self.last.load(Ordering::Acquire),
            &frames[frames.len().saturating_sub(3)..],
            self.ended.lock().unwrap()
        )
    }
}

/// Reads `ws` until it ends, recording every Text message.
async fn collect(mut ws: WsClient, into: Arc<Received>, json: bool) {
    loop {
        match ws.next_message(Duration::from_secs(600)).await {
            Ok(Message::Text(t)) => into.push(t.as_str().to_owned(), json),
            Ok(Message::Close(frame)) => {
                *into.ended.lock().unwrap() = Some(format!("Close {frame:?}"));
                return;
            }
            Ok(_) => {}
            Err(why) => {
                *into.ended.lock().unwrap() = Some(format!("{why:?}"));
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The writer.
// ---------------------------------------------------------------------------------------

/// Where the old content ends and the new begins: `first` is the first line of the new
/// content, and `kind` the event the JSON client must get just before it.
#[derive(Debug, Clone)]
struct Boundary {
    kind: &'static str,
    first: String,
}

/// The writer thread's state: a logger appending numbered lines, and what it expects the
/// clients to receive.
struct Ctx {
    log: Arc<LogFile>,
    srv: Arc<Server>,
    /// The test's runtime, to wait on the server's async methods from this thread.
    rt: Handle,
    /// The text client's reception (the writer waits on it).
    client: Arc<Received>,
    file: File,
    /// The next line number to write.
    next: u64,
    /// Every line the clients must receive, in order.
    expected: Vec<String>,
    boundaries: Vec<Boundary>,
    /// Long lines written so far (to number them).
    longs: u64,
}

/// Opens `path` for append, creating it — and its directory, as a logger making its log
/// directory would.
fn open_append(path: &Path, mode: u32) -> File {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", dir.display()));
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()))
}

/// Burst sizes: 1 to 8 lines, varied.
fn burst_len(n: u64) -> u64 {
    1 + (n.wrapping_mul(2_654_435_761) >> 7) % 8
}

impl Ctx {
    /// One write(2) of `count` numbered lines; the last without its `\n` if `partial`.
    fn burst(&mut self, count: u64, partial: bool) {
        let mut buf = Vec::with_capacity(count as usize * 12);
        for _ in 0..count {
            let l = fixed_line(self.next);
            self.next += 1;
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
            self.expected.push(l);
        }
        if partial {
            buf.pop();
        }
        self.write_raw(&buf);
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        let n = self.file.write(bytes).expect("write log file");
        assert_eq!(n, bytes.len(), "short write to the log file");
    }

    /// `count` lines in paced bursts; the very last one partial if asked.
    fn write_lines(&mut self, count: u64, partial_last: bool) {
        let mut left = count;
        while left > 0 {
            let b = burst_len(self.next).min(left);
            left -= b;
            self.burst(b, partial_last && left == 0);
            std::thread::sleep(PACE);
        }
    }

    fn write(&mut self, count: u64) {
        self.write_lines(count, false);
    }

    /// Writes `count` lines, the last of them without its newline: the tailer holds it as
    /// a partial line, and must flush it as a line when the file is rotated or truncated.
    fn write_ending_partial(&mut self, count: u64) {
        self.write_lines(count, true);
    }

    /// Keeps writing until the client has received line `n`.
    fn write_until_received(&mut self, n: u64) {
        let deadline = Instant::now() + STEP;
        while self.client.last.load(Ordering::Acquire) < n {
            assert!(
                Instant::now() < deadline,
                "the client did not receive line {n} within {STEP:?} while lines were \
                 written (up to {}): {}",
                self.next - 1,
                self.client.describe()
            );
            let b = burst_len(self.next);
            self.burst(b, false);
            std::thread::sleep(PACE);
        }
    }

    /// Waits (not writing) until the client has received line `n`.
    fn wait_received(&self, n: u64) {
        let received = || {
            (self.client.last.load(Ordering::Acquire) >= n)
                .then_some(())
                .ok_or(())
        };
        poll(STEP, received).unwrap_or_else(|()| {
            panic!(
                "the client did not receive line {n} within {STEP:?}: {}",
                self.client.describe()
            )
        });
    }

    /// Waits until `/healthz` satisfies `ok`; panics naming `what` after [`STEP`].
    fn wait_health(&self, what: &str, ok: impl Fn(&Value) -> bool) {
        if let Err(health) = self.rt.block_on(self.srv.wait_health(STEP, ok)) {
            panic!("{what} within {STEP:?}: {health}");
        }
    }

    /// Waits until the server's stderr contains `needle`.
    fn wait_log(&self, needle: &str) {
        self.rt.block_on(self.srv.wait_for_log(needle, STEP));
    }

    /// Waits until `/healthz` says the tailer has read our file to its end (its partial
    /// last line included, which no client can see yet).
    fn wait_read_to_end(&self) {
        let len = self.file.metadata().expect("fstat log file").len();
        self.wait_health(
            &format!("the tailer did not read the file to its end ({len} bytes)"),
            |h| h["files"][0]["offset"].as_u64() == Some(len),
        );
    }

    /// Waits until `/healthz` says the file's state is `state` (`waiting`, `following`).
    fn wait_state(&self, state: &str) {
        self.wait_health(&format!("the file's state did not become {state:?}"), |h| {
            h["files"][0]["state"].as_str() == Some(state)
        });
    }

    /// Waits (not writing, nothing else changing) until the client has every complete line
    /// written so far: the last one written ends partial.
    fn wait_all_but_partial(&self) {
        self.wait_received(self.next - 2);
    }

    /// Opens the path again, as a logger does on SIGHUP (creating it if missing).
    fn reopen(&mut self) {
        self.reopen_with_mode(0o644);
    }

    fn reopen_with_mode(&mut self, mode: u32) {
        self.file = open_append(self.log.path(), mode);
    }

    /// The next line written starts new content, announced by event `kind`.
    fn mark(&mut self, kind: &'static str) {
        self.boundaries.push(Boundary {
            kind,
            first: fixed_line(self.next),
        });
    }

    /// A line of `len` bytes, in one write or cut in two writes at `cut`; the clients
    /// must receive it in pieces of at most [`MAX_LINE`] bytes.
    fn write_long(&mut self, len: usize, cut: Option<usize>) {
        self.longs += 1;
        let mut text = format!("long {:06} ", self.longs).into_bytes();
        let mut i = 0u8;
        while text.len() < len {
            text.push(b'a' + i % 26);
            i = i.wrapping_add(1);
        }
        for piece in text.chunks(MAX_LINE) {
            self.expected
                .push(String::from_utf8(piece.to_vec()).expect("ascii"));
        }
        let mut bytes = text;
        bytes.push(b'\n');
        match cut {
            Some(at) => {
                self.write_raw(&bytes[..at]);
                std::thread::sleep(PACE);
                self.write_raw(&bytes[at..]);
            }
            None => self.write_raw(&bytes),
        }
        std::thread::sleep(PACE);
    }

    /// Waits for the last line, then writes `end`: anything the tailer sent in between
    /// (a duplicate, a spurious re-read) would show before it.
    fn end(&mut self) {
        self.wait_received(self.next - 1);
        self.write_raw(b"end\n");
        self.expected.push("end".into());
    }
}

/// What each case does, on the writer thread, while the clients listen.
fn plan(case: Case, c: &mut Ctx) {
    match case {
        Case::RenameCreate => {
            c.write_until_received(WARM);
            c.write_ending_partial(200);
            c.log.rename_create("app.log.1");
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::RenameCreateLateReopen => {
            c.write_until_received(WARM);
            c.write(200);
            c.log.rename_create("app.log.1");
            // The logger has not reopened yet: 300 more lines go to the old file.
            c.write_ending_partial(300);
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::CopyTruncate | Case::Truncate => {
            c.write_until_received(WARM);
            c.write_ending_partial(200);
            let last = c.next - 1;
            // The writer pauses across copy + truncate: what it would write in between
            // is lost by copytruncate itself (the copy is already made, the truncate
            // destroys it), whatever the tailer does.
            c.wait_read_to_end();
            if case == Case::CopyTruncate {
                let copy = c.log.copytruncate("app.log.1");
                let mut want = join_lines((1..=last).map(fixed_line));
                want.pop();
                assert!(
                    fs::read(copy).unwrap() == want,
                    "the copy holds lines 1..={last}"
                );
            } else {
                c.log.truncate();
            }
            c.mark("truncated");
            c.write(AFTER);
        }
        Case::TruncateRewriteLarger => {
            c.write_until_received(WARM);
            c.write_ending_partial(200);
            c.wait_read_to_end();
            let old_len = c.file.metadata().unwrap().len();
            {
                // The tailer cannot look between the truncate and the rewrite.
                let _frozen = Frozen::new(Arc::clone(&c.srv));
                c.log.truncate();
                c.mark("truncated");
                let lines = old_len / 12 + 100;
                c.burst(lines, false);
                assert!(c.file.metadata().unwrap().len() > old_len);
            }
            c.write(AFTER);
        }
        Case::DeleteRecreate => {
            c.write_until_received(WARM);
            c.write(200);
            c.log.delete();
            // The writer goes on with its fd on the deleted file.
            c.write_ending_partial(200);
            // Those lines arrive with nothing else happening in the directory.
            c.wait_all_but_partial();
            // The path stays missing until the server has noticed.
            c.wait_log("was removed or renamed");
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::SymlinkSwap => {
            c.write_until_received(WARM);
            c.write(200);
            let target = c.log.sibling("pods/1.log");
            fs::write(&target, b"").unwrap();
            c.log.symlink_swap("pods/1.log");
            // The old container flushes a little more to the old target.
            c.write_ending_partial(100);
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::TwoRotations => {
            c.write_until_received(WARM);
            c.write_ending_partial(100);
            c.log.rename_create("app.log.1");
            c.reopen();
            c.mark("rotated");
            let first = c.next;
            c.write_until_received(first);
            c.write_ending_partial(20);
            fs::rename(c.log.sibling("app.log.1"), c.log.sibling("app.log.2")).unwrap();
            c.log.rename_create("app.log.1");
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::LateFile => {
            // The writer's open created the file: its first line is the first line read.
            c.mark("following");
            c.write(AFTER);
        }
        Case::LongLine => {
            c.write_until_received(WARM);
            c.write(100);
            c.write_long(3500, Some(2200));
            c.write(100);
            c.write_long(3500, None);
            c.write(AFTER);
        }
        Case::PermissionAtStart => {
            // The file is mode 000 and the server was refused; lines pile up unread.
            c.mark("following");
            c.write(WARM);
            c.log.chmod(0o644);
            c.write(AFTER);
        }
        Case::PermissionAfterRotation => {
            c.write_until_received(WARM);
            c.write(100);
            c.log.rename_to("app.log.1");
            c.write_ending_partial(100);
            // The logger re-creates the file, mode 000.
            c.reopen_with_mode(0o000);
            c.mark("rotated");
            c.write(WARM);
            c.wait_log("Permission denied");
            c.log.chmod(0o644);
            c.write(AFTER);
        }
        Case::Lifecycle(spelling) => {
            if spelling == Spelling::MissingDir {
                // The writer's open made the directory and the file.
                c.mark("following");
            }
            c.write_until_received(WARM);
            // logrotate `create`.
            c.write_ending_partial(100);
            c.log.rename_create("app.log.1");
            c.reopen();
            c.mark("rotated");
            c.write_until_received(c.next + 100);
            // logrotate `copytruncate`, the writer pausing across it (see `copytruncate`).
            c.write_ending_partial(100);
            c.wait_read_to_end();
            c.log.copytruncate("app.log.2");
            c.mark("truncated");
            c.write_until_received(c.next + 100);
            // Deleted; the writer goes on, its lines arriving at once; then re-created.
            c.write(100);
            c.log.delete();
            c.write_ending_partial(100);
            c.wait_all_but_partial();
            c.wait_state("waiting");
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::DeletedKeepsWriting => {
            c.write_until_received(WARM);
            c.write(100);
            c.log.delete();
            c.wait_state("waiting");
            // Nothing but these writes happens from here until they have all arrived.
            c.write_ending_partial(300);
            c.wait_all_but_partial();
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::MovedAway => {
            c.write_until_received(WARM);
            c.write(100);
            let archive = c.log.sibling("archive");
            fs::create_dir(&archive).unwrap();
            fs::rename(c.log.path(), archive.join("app.log.1")).unwrap();
            c.wait_state("waiting");
            c.write_ending_partial(300);
            c.wait_all_but_partial();
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::DirRecreate => {
            let dir = c.log.path().parent().unwrap().to_path_buf();
            c.write_until_received(WARM);
            // At once: removed and made again before the server can have looked.
            c.write_ending_partial(100);
            fs::remove_dir_all(&dir).unwrap();
            c.reopen();
            c.mark("rotated");
            c.write_until_received(c.next + 100);
            // Slowly: the server notices the directory is gone first.
            c.write_ending_partial(100);
            fs::remove_dir_all(&dir).unwrap();
            c.wait_state("waiting");
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::DanglingLink => {
            // The writer's open made the link's target (and its directory).
            c.mark("following");
            c.write(AFTER);
        }
        Case::LinkToMissing => {
            c.write_until_received(WARM);
            c.write(100);
            let link = c.log.sibling("current.log");
            let tmp = c.log.sibling(".current.log.tmp");
            std::os::unix::fs::symlink("next/app.log", &tmp).unwrap();
            fs::rename(&tmp, &link).unwrap();
            c.wait_state("waiting");
            // The old target's writer goes on for a while.
            c.write_ending_partial(300);
            c.wait_all_but_partial();
            // The new container makes its directory and its file.
            c.file = open_append(&c.log.sibling("next/app.log"), 0o644);
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::RenameOver => {
            c.write_until_received(WARM);
            c.write_ending_partial(100);
            // The new file is written before it is moved over the path.
            let staged = c.log.sibling("app.log.new");
            let old = std::mem::replace(&mut c.file, open_append(&staged, 0o644));
            c.mark("rotated");
            c.write(100);
            fs::rename(&staged, c.log.path()).unwrap();
            drop(old);
            c.write(AFTER);
        }
        Case::DirLinkSwap => {
            c.write_until_received(WARM);
            c.write_ending_partial(100);
            // The new release starts writing before the link is re-pointed.
            let old = std::mem::replace(
                &mut c.file,
                open_append(&c.log.sibling("releases/2/app.log"), 0o644),
            );
            c.mark("rotated");
            c.write(50);
            let tmp = c.log.sibling(".current.tmp");
            std::os::unix::fs::symlink("releases/2", &tmp).unwrap();
            fs::rename(&tmp, c.log.sibling("current")).unwrap();
            drop(old);
            c.write(AFTER);
        }
        Case::ReplacedManyTimes => {
            c.write_until_received(WARM);
            let g = c.log.sibling("g");
            for _ in 0..200 {
                File::create(&g).unwrap();
                fs::rename(&g, c.log.path()).unwrap();
                let b = burst_len(c.next);
                c.burst(b, false);
            }
            c.write_ending_partial(50);
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
        Case::DirAtStart => {
            fs::remove_dir(c.log.path()).unwrap();
            c.reopen();
            c.mark("following");
            c.write(AFTER);
        }
        Case::DirOverPath => {
            c.write_until_received(WARM);
            c.write(100);
            c.log.rename_to("app.log.1");
            fs::create_dir(c.log.path()).unwrap();
            c.wait_state("waiting");
            c.write_ending_partial(200);
            c.wait_all_but_partial();
            fs::remove_dir(c.log.path()).unwrap();
            c.reopen();
            c.mark("rotated");
            c.write(AFTER);
        }
    }
    c.end();
}

// ---------------------------------------------------------------------------------------
// The matrix.
// ---------------------------------------------------------------------------------------

async fn matrix(case: Case, watch: Watch) {
    let spelling = case.spelling();
    let log = match case {
        Case::LateFile => LogFile::missing(),
        Case::SymlinkSwap => {
            // DIR/app.log -> DIR/pods/0.log, as /var/log/containers -> /var/log/pods.
            let log = LogFile::missing();
            fs::create_dir(log.sibling("pods")).unwrap();
            fs::write(log.sibling("pods/0.log"), b"").unwrap();
            log.symlink_swap("pods/0.log");
            log
        }
        _ => {
            let log = LogFile::at(spelling.file());
            if spelling == Spelling::RelativeLink {
                std::os::unix::fs::symlink(spelling.file(), log.sibling("current.log")).unwrap();
            }
            if spelling == Spelling::LinkedDir {
                fs::create_dir_all(log.sibling("releases/1")).unwrap();
                std::os::unix::fs::symlink("releases/1", log.sibling("current")).unwrap();
            }
            if case == Case::DirAtStart {
                fs::create_dir(log.path()).unwrap();
            } else if !case.starts_waiting() {
                fs::create_dir_all(log.path().parent().unwrap()).unwrap();
                log.create_empty();
            }
            log
        }
    };
    let log = Arc::new(log);
    // The writer's first handle, opened before a chmod 000 could refuse it (not root).
    let file = (!case.starts_waiting() || case == Case::PermissionAtStart)
        .then(|| open_append(log.path(), 0o644));
    if case == Case::PermissionAtStart {
        log.chmod(0o000);
    }

    // The name clients see: what was typed.
    let name = match spelling.arg() {
        Some(arg) => arg.to_owned(),
        None => log.path().display().to_string(),
    };
    let mut builder = Server::builder()
        .cwd(log.dir())
        .file(&name)
        .args(watch.args());
    if case == Case::LongLine {
        builder = builder.args(&["--max-line-bytes", &MAX_LINE.to_string()]);
    }
    if matches!(
        case,
        Case::PermissionAtStart | Case::PermissionAfterRotation
    ) {
        builder = builder.without_dac_override();
    }
    let srv = Arc::new(builder.start().await);
    let logged = match case {
        Case::PermissionAtStart => Some("Permission denied"),
        Case::DirAtStart => Some("it is a directory, not a regular file"),
        _ if case.starts_waiting() => Some("waiting for"),
        _ => None,
    };
    if let Some(needle) = logged {
        srv.wait_for_log(needle, STEP).await;
    }

    let text = Arc::new(Received::default());
    let json = Arc::new(Received::default());
    let text_ws = WsClient::connect(&srv.ws_url("/ws?backlog=0")).await;
    let json_ws = WsClient::connect(&srv.ws_url("/ws?backlog=0&format=json")).await;
    srv.wait_clients(2, STEP).await;
    let collectors = [
        tokio::spawn(collect(text_ws, Arc::clone(&text), false)),
        tokio::spawn(collect(json_ws, Arc::clone(&json), true)),
    ];

    // A missing file is created by the writer's open, now that the clients listen.
    let file = file.unwrap_or_else(|| match case {
        // The path is a directory: the writer has no file until the case removes it.
        Case::DirAtStart => OpenOptions::new()
            .append(true)
            .open("/dev/null")
            .expect("open /dev/null"),
        _ => open_append(log.path(), 0o644),
    });
    let ctx = Ctx {
        log: Arc::clone(&log),
        srv: Arc::clone(&srv),
        rt: Handle::current(),
        client: Arc::clone(&text),
        file,
        next: 1,
        expected: Vec::new(),
        boundaries: Vec::new(),
        longs: 0,
    };
    let c = match tokio::task::spawn_blocking(move || {
        let mut c = ctx;
        plan(case, &mut c);
        c
    })
    .await
    {
        Ok(c) => c,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };

    let text_frames = wait_frames(&text, c.expected.len(), |_| true).await;
    if let Some(diff) = diff(&text_frames, &c.expected) {
        panic!("{case:?}/{watch:?}, text client: {diff}");
    }
    let json_frames = wait_frames(&json, c.expected.len(), |f| f.contains("\"line\"")).await;
    // Frames carry the public name: the file name, never the path typed.
    let public = std::path::Path::new(&name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_json(case, &public, &json_frames, &c.expected, &c.boundaries);

    let logs = srv.stderr();
    // Delivered by events, not by the once-a-second fallback a failed watch falls back to.
    assert!(
        !logs.contains("looking every second instead"),
        "{case:?}/{watch:?}: a watch failed:\n{logs}"
    );
    if case == Case::TruncateRewriteLarger {
        assert!(
            logs.contains("rewritten"),
            "the tailer did not report a rewrite past its offset:\n{logs}"
        );
    }
    for handle in collectors {
        handle.abort();
    }
}

/// Waits until `rx` holds `n` frames that `counts`, or its stream ended, or a deadline;
/// returns all frames.
async fn wait_frames(rx: &Received, n: usize, counts: impl Fn(&str) -> bool) -> Vec<String> {
    let enough = || {
        let frames = rx.frames();
        let done =
            frames.iter().filter(|f| counts(f)).count() >= n || rx.ended.lock().unwrap().is_some();
        std::future::ready(if done { Ok(frames) } else { Err(frames) })
    };
    poll_async(STEP, enough)
        .await
        .unwrap_or_else(|frames| frames)
}

/// `None` if `got == want`; otherwise a readable account of the difference.
fn diff(got: &[String], want: &[String]) -> Option<String> {
    if got == want {
        return None;
    }
    let i = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let mut seen = std::collections::HashMap::new();
    for g in got {
        *seen.entry(g.as_str()).or_insert(0u32) += 1;
    }
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| !seen.contains_key(w.as_str()))
        .collect();
    let dups: Vec<&&str> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, _)| l)
        .collect();
    Some(format!(
        "received {} lines, expected {}; first difference at #{i}: got {:?}, expected {:?}; \
         context got {:?} / expected {:?}; {} missing (first: {:?}); {} duplicated (some: {:?})",
        got.len(),
        want.len(),
        got.get(i),
        want.get(i),
        &got[i.saturating_sub(3)..(i + 3).min(got.len())],
        &want[i.saturating_sub(3)..(i + 3).min(want.len())],
        missing.len(),
        &missing[..missing.len().min(10)],
        dups.len(),
        &dups[..dups.len().min(10)],
    ))
}

/// The JSON client: `hello` first; the same lines as the text client with consecutive
/// `seq`s and exact `offset`s; every event placed after the line it names by `seq`;
/// `rotated` / `truncated` exactly at the boundaries (the first line after one has offset
/// 0), and nowhere else; `waiting` and `following` alternating.
fn check_json(
    case: Case,
    name: &str,
    frames: &[String],
    expected: &[String],
    boundaries: &[Boundary],
) {
    let values: Vec<Value> = frames
        .iter()
        .map(|f| serde_json::from_str(f).unwrap_or_else(|e| panic!("bad JSON frame {f:?}: {e}")))
        .collect();
    let ctx = |i: usize| frames[i.saturating_sub(4)..(i + 3).min(frames.len())].join("\n  ");
    assert_eq!(
        values[0]["event"], "hello",
        "first JSON frame: {}",
        frames[0]
    );
    assert!(
        values[0]["epoch"].is_string(),
        "hello without epoch: {}",
        frames[0]
    );

    let lines: Vec<String> = values
        .iter()
        .filter_map(|v| v["line"].as_str().map(str::to_owned))
        .collect();
    if let Some(diff) = diff(&lines, expected) {
        panic!("{case:?}, JSON client: {diff}");
    }

    let mut last_seq = values[0]["seq"].as_u64().expect("hello seq");
    // (length, offset) of the previous line, to check the next one's offset.
    let mut prev: Option<(usize, u64)> = None;
    let mut pending_events: Vec<&str> = Vec::new();
    let mut next_boundary = boundaries.iter().peekable();
    let mut state_events = Vec::new();
    let mut content_events = 0;
    for (i, v) in values.iter().enumerate().skip(1) {
        if let Some(text) = v["line"].as_str() {
            let seq = v["seq"].as_u64().expect("line seq");
            let offset = v["offset"].as_u64().expect("line offset");
            assert_eq!(
                seq,
                last_seq + 1,
                "seq not consecutive at frame #{i}:\n  {}",
                ctx(i)
            );
            last_seq = seq;
            assert_eq!(v["file"].as_str(), Some(name), "file name in frame #{i}");
            if next_boundary.peek().is_some_and(|b| b.first == text) {
                let b = next_boundary.next().unwrap();
                assert!(
                    pending_events.contains(&b.kind),
                    "{case:?}: no `{}` event just before {text:?} (events there: \
                     {pending_events:?}), frame #{i}:\n  {}",
                    b.kind,
                    ctx(i)
                );
                assert_eq!(
                    offset,
                    0,
                    "first line of new content not at offset 0:\n  {}",
                    ctx(i)
                );
            } else {
                assert!(
                    !pending_events
                        .iter()
                        .any(|e| *e == "rotated" || *e == "truncated"),
                    "{case:?}: event {pending_events:?} before {text:?}, not at a boundary, \
                     frame #{i}:\n  {}",
                    ctx(i)
                );
                if let Some((len, at)) = prev {
                    // A piece of a long line has no newline after it.
                    let piece = case == Case::LongLine && len == MAX_LINE;
                    let want = at + len as u64 + u64::from(!piece);
                    assert_eq!(offset, want, "offset of frame #{i}:\n  {}", ctx(i));
                }
            }
            prev = Some((text.len(), offset));
            pending_events.clear();
        } else {
            let event = v["event"]
                .as_str()
                .unwrap_or_else(|| panic!("frame #{i}: {v}"));
            assert_eq!(
                v["seq"].as_u64(),
                Some(last_seq),
                "event {event} does not name the line before it:\n  {}",
                ctx(i)
            );
            match event {
                "rotated" | "truncated" => content_events += 1,
                "waiting" | "following" => state_events.push(event),
                other => panic!("unexpected event {other:?} at frame #{i}:\n  {}", ctx(i)),
            }
            pending_events.push(event);
        }
    }
    let left: Vec<_> = next_boundary.collect();
    assert!(left.is_empty(), "{case:?}: boundaries never seen: {left:?}");
    let want_content = boundaries
        .iter()
        .filter(|b| b.kind == "rotated" || b.kind == "truncated")
        .count();
    assert_eq!(
        content_events, want_content,
        "{case:?}: rotated/truncated events"
    );

    // waiting/following alternate; files that started unreadable start with `following`.
    let starts_waiting = case.starts_waiting();
    for (k, e) in state_events.iter().enumerate() {
        let want = if (k % 2 == 0) != starts_waiting {
            "waiting"
        } else {
            "following"
        };
        assert_eq!(
            *e, want,
            "{case:?}: waiting/following events {state_events:?}"
        );
    }
    let ends_following = (state_events.len() % 2 == 0) != starts_waiting;
    assert!(ends_following, "{case:?}: ends waiting: {state_events:?}");
    if matches!(
        case,
        Case::DeleteRecreate
            | Case::PermissionAfterRotation
            | Case::Lifecycle(_)
            | Case::DeletedKeepsWriting
            | Case::MovedAway
            | Case::DirRecreate
            | Case::LinkToMissing
            | Case::DirOverPath
    ) {
        assert!(
            state_events.contains(&"waiting"),
            "{case:?}: no `waiting` event: {state_events:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Focused JSON test: the exact frames around a rotation and a truncation.
// ---------------------------------------------------------------------------------------

async fn json_events_exact(watch: Watch) {
    let log = LogFile::new();
    let server = Server::start(log.path(), watch.args()).await;
    let mut ws = WsClient::connect(&server.ws_url("/ws?backlog=0&format=json")).await;
    let hello: Value = serde_json::from_str(&ws.next_text(PROMPT).await).unwrap();
    assert_eq!(hello["event"], "hello");
    let seq0 = hello["seq"].as_u64().unwrap();
    server.wait_clients(1, PROMPT).await;
    let next = |frames: Vec<String>| -> Vec<Value> {
        frames
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect()
    };

    // Old content: two lines and a partial one.
    log.append(b"a1\na2\na3-partial");
    let got = next(ws.recv_lines(2, PROMPT).await);
    assert_eq!(got[0]["line"], "a1");
    assert_eq!(got[1]["offset"], 3);
    // Atomic replacement (the path never goes missing): hard-link the old file as
    // app.log.1, then rename a new file over app.log.
    fs::hard_link(log.path(), log.sibling("app.log.1")).unwrap();
    let new = log.write_sibling("app.log.new", b"b1\nb2\n");
    fs::rename(new, log.path()).unwrap();
    let got = next(ws.recv_lines(4, PROMPT).await);
    let want = [
        serde_json::json!({"seq": seq0 + 3, "offset": 6, "file": log.path().file_name().unwrap().to_string_lossy(), "line": "a3-partial"}),
        serde_json::json!({"event": "rotated", "file": log.path().file_name().unwrap().to_string_lossy(), "seq": seq0 + 3}),
        serde_json::json!({"seq": seq0 + 4, "offset": 0, "file": log.path().file_name().unwrap().to_string_lossy(), "line": "b1"}),
        serde_json::json!({"seq": seq0 + 5, "offset": 3, "file": log.path().file_name().unwrap().to_string_lossy(), "line": "b2"}),
    ];
    assert_eq!(got, want);

    // Truncation: the partial line is flushed, then `truncated`, then the new content.
    log.append(b"b3-partial");
    wait_offset(&server, 16).await;
    log.truncate();
    log.append(b"c1\n");
    let got = next(ws.recv_lines(3, PROMPT).await);
    let want = [
        serde_json::json!({"seq": seq0 + 6, "offset": 6, "file": log.path().file_name().unwrap().to_string_lossy(), "line": "b3-partial"}),
        serde_json::json!({"event": "truncated", "file": log.path().file_name().unwrap().to_string_lossy(), "seq": seq0 + 6}),
        serde_json::json!({"seq": seq0 + 7, "offset": 0, "file": log.path().file_name().unwrap().to_string_lossy(), "line": "c1"}),
    ];
    assert_eq!(got, want);
    log.append(b"c2\n");
    let got = next(ws.recv_lines(1, PROMPT).await);
    assert_eq!(got[0]["line"], "c2");
    assert_eq!(got[0]["offset"], 3);
}

/// Waits until `/healthz` says file 0 has been read up to `offset`.
async fn wait_offset(server: &Server, offset: u64) {
    let read_to = |h: &Value| h["files"][0]["offset"].as_u64() == Some(offset);
    if let Err(health) = server.wait_health(STEP, read_to).await {
        panic!("offset never {offset}: {health}");
    }
}

/// JSON clients get `rotated` right after the old file's last line (its partial line
/// flushed) and before the new file's first, at offset 0; the same for `truncated`.
#[tokio::test]
async fn json_events_mark_where_content_changes_inotify() {
    json_events_exact(Watch::Inotify).await;
}

#[tokio::test]
async fn json_events_mark_where_content_changes_poll() {
    json_events_exact(Watch::Poll).await;
}

// ---------------------------------------------------------------------------------------
// What the matrix cannot show: resources and file types.
// ---------------------------------------------------------------------------------------

/// The inotify watches the server holds now: `inotify wd:` lines in its fdinfo.
fn inotify_watches(pid: u32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| fs::read_to_string(fd.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// coreutils `inotify-rotate-resources`: twenty symlink swaps into new directories, each
/// followed by a `create` rotation and a deletion, leave exactly the watches the path
/// needs now (the link's directory and its target's), none behind.
#[tokio::test]
async fn rotations_and_swaps_leave_no_watch_behind() {
    let log = LogFile::at("pods/0/0.log");
    fs::create_dir_all(log.sibling("pods/0")).unwrap();
    log.create_empty();
    std::os::unix::fs::symlink("pods/0/0.log", log.sibling("app.log")).unwrap();
    let server = Server::builder()
        .cwd(log.dir())
        .file("app.log")
        .start()
        .await;
    let mut ws = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    server.wait_clients(1, PROMPT).await;
    for i in 1..=20 {
        // Re-pointed to a new directory whose file already holds a line.
        fs::create_dir(log.sibling(&format!("pods/{i}"))).unwrap();
        fs::write(
            log.sibling(&format!("pods/{i}/0.log")),
            format!("pod {i}\n"),
        )
        .unwrap();
        let tmp = log.sibling(".app.log.tmp");
        std::os::unix::fs::symlink(format!("pods/{i}/0.log"), &tmp).unwrap();
        fs::rename(&tmp, log.sibling("app.log")).unwrap();
        ws.expect_lines(&[&format!("pod {i}")]).await;
        // logrotate `create` in that directory, then the file deleted and re-created.
        let target = log.sibling(&format!("pods/{i}/0.log"));
        fs::rename(&target, log.sibling(&format!("pods/{i}/0.log.1"))).unwrap();
        fs::write(&target, format!("rotated {i}\n")).unwrap();
        ws.expect_lines(&[&format!("rotated {i}")]).await;
        fs::remove_file(&target).unwrap();
        fs::write(&target, format!("recreated {i}\n")).unwrap();
        ws.expect_lines(&[&format!("recreated {i}")]).await;
    }
    // The last re-watch follows the last line's pass: wait for it. A leak would never
    // come down to two.
    let pid = server.pid();
    crate::harness::wait_until(
        PROMPT,
        "exactly the link's and the target's directory are watched",
        || inotify_watches(pid) == 2,
    );
}

/// The path is a FIFO at start: `open(2)` would block until a writer came, before the
/// server ever listened. It is refused (logged, waited on) instead, and a regular file that
/// replaces it is followed from its first byte.
#[tokio::test]
async fn a_fifo_is_refused_without_blocking_start_up_inotify() {
    fifo_refused(Watch::Inotify).await;
}

#[tokio::test]
async fn a_fifo_is_refused_without_blocking_start_up_poll() {
    fifo_refused(Watch::Poll).await;
}

async fn fifo_refused(watch: Watch) {
    let log = LogFile::missing();
    let path = CString::new(log.path().as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let made = unsafe { libc::mkfifo(path.as_ptr(), 0o644) };
    assert_eq!(made, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let server = Server::builder()
        .cwd(log.dir())
        .file("app.log")
        .args(watch.args())
        .start()
        .await;
    server
        .wait_for_log("it is a FIFO, not a regular file", PROMPT)
        .await;
    assert_eq!(server.healthz().await["files"][0]["state"], "waiting");
    let mut ws = WsClient::connect(&server.ws_url("/ws?backlog=0")).await;
    server.wait_clients(1, PROMPT).await;
    fs::remove_file(log.path()).unwrap();
    log.append(b"a regular file now\n");
    ws.expect_lines(&["a regular file now"]).await;
}
