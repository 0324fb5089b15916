//! Linux process facts (/proc), resource limits, signals and a tiny blocking
//! HTTP GET for `/healthz`. Only loopback addresses are ever contacted.

use std::ffi::{c_int, c_ulong};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `struct rlimit` on Linux: two `rlim_t`, which is `unsigned long`.
#[repr(C)]
struct RLimit {
    cur: c_ulong,
    max: c_ulong,
}

// The few libc calls we need; declared here so the example needs no extra
// dev-dependency (std links libc on Linux anyway).
unsafe extern "C" {
    fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
    fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn geteuid() -> u32;
}

const RLIMIT_NOFILE: c_int = 7;
pub const SIGTERM: c_int = 15;
pub const SIGKILL: c_int = 9;

/// Raises the soft RLIMIT_NOFILE to the hard limit (capped at 1 Mi).
/// Children spawned afterwards (the server) inherit it. Returns (old, new).
#[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
pub fn raise_nofile() -> Option<(u64, u64)> {
    let mut r = RLimit { cur: 0, max: 0 };
    // SAFETY: `r` is a valid, writable `struct rlimit`.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    let old = u64::from(r.cur);
    let want = u64::from(r.max).min(1 << 20);
    if want > old {
        let new = RLimit {
            cur: c_ulong::try_from(want).unwrap_or(r.max),
            max: r.max,
        };
        // SAFETY: `new` is a valid `struct rlimit`.
        if unsafe { setrlimit(RLIMIT_NOFILE, &new) } == 0 {
            return Some((old, want));
        }
    }
    Some((old, old))
}

pub fn signal(pid: u32, sig: c_int) -> bool {
    // SAFETY: plain syscall on a pid we spawned.
    unsafe { kill(pid as c_int, sig) == 0 }
}

/// Sends `sig` to a process group we started (`pgid`: its leader's pid).
pub fn signal_group(pgid: u32, sig: c_int) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: plain syscall; a negative pid names the process group.
    unsafe { kill(-(pgid as c_int), sig) == 0 }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { geteuid() == 0 }
}

/// The parent pid of a process (field 4 of /proc/PID/stat).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&s, "VmRSS:")
}

pub fn threads(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&s, "Threads:")
}

fn status_field(s: &str, key: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime of a process in seconds (USER_HZ = 100 on Linux).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

pub fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
pub fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

pub fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Finds the process listening on a TCP port (for `--server-addr` without
/// `--server-pid`): socket inode from /proc/net/tcp{,6}, then a scan of /proc/*/fd.
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(s) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in s.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // 0A = LISTEN
            }
            let lport = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if lport == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Blocking `GET path` (HTTP/1.1, Connection: close). Returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(4 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Number of connected clients according to `/healthz` (best effort: the first
/// numeric `clients` field anywhere in the JSON, or the length of a `clients` array).
pub fn healthz_clients(addr: SocketAddr) -> Option<u64> {
    let (status, body) = http_get(addr, "/healthz", Duration::from_secs(2)).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    find_clients(&v)
}

fn find_clients(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(c) = m.get("clients") {
                match c {
                    serde_json::Value::Number(n) => return n.as_u64(),
                    serde_json::Value::Array(a) => return Some(a.len() as u64),
                    other => {
                        if let Some(n) = find_clients(other) {
                            return Some(n);
                        }
                    }
                }
            }
            m.values().find_map(find_clients)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_clients),
        _ => None,
    }
}

/// Machine-wide TCP counters from /proc/net/netstat (`TcpExt:` section):
/// (ListenOverflows, ListenDrops, TCPSynRetrans).
pub fn listen_counters() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (Some(names), Some(values)) = (lines.first(), lines.get(1)) else {
        return (0, 0, 0);
    };
    let get = |key: &str| {
        names
            .split_whitespace()
            .position(|n| n == key)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get("ListenOverflows"),
        get("ListenDrops"),
        get("TCPSynRetrans"),
    )
}

/// (soft, hard) RLIMIT_NOFILE of this process.
#[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
pub fn nofile() -> Option<(u64, u64)> {
    let mut r = RLimit { cur: 0, max: 0 };
    // SAFETY: `r` is a valid, writable `struct rlimit`.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    Some((u64::from(r.cur), u64::from(r.max)))
}

/// utime + stime of the calling thread in seconds.
pub fn thread_cpu_secs() -> Option<f64> {
    cpu_secs_of("/proc/thread-self/stat")
}

/// Threads of a process: the entries of /proc/PID/task.
pub fn task_count(pid: u32) -> Option<u64> {
    let n = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .count();
    Some(n as u64)
}

/// What a process's file descriptors are (/proc/PID/fd links).
#[derive(serde::Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdCensus {
    pub total: u64,
    /// `anon_inode:inotify` descriptors (inotify instances).
    pub inotify: u64,
    /// Watches over all inotify instances (`inotify wd:` lines in /proc/PID/fdinfo).
    pub inotify_watches: u64,
    /// Regular files (links to an absolute path).
    pub files: u64,
    /// Regular files under the directory given to [`fd_census`].
    pub files_under_dir: u64,
    pub sockets: u64,
    /// Pipes, eventfd, epoll, timerfd, ...
    pub other: u64,
}

impl FdCensus {
    /// Field-wise maximum (for a series of samples).
    pub fn max(self, o: FdCensus) -> FdCensus {
        FdCensus {
            total: self.total.max(o.total),
            inotify: self.inotify.max(o.inotify),
            inotify_watches: self.inotify_watches.max(o.inotify_watches),
            files: self.files.max(o.files),
            files_under_dir: self.files_under_dir.max(o.files_under_dir),
            sockets: self.sockets.max(o.sockets),
            other: self.other.max(o.other),
        }
    }
}

/// Counts a process's descriptors by kind; `dir`: count regular files below it.
/// Costs one readlink per descriptor (about 10-30 ms for 10 000).
pub fn fd_census(pid: u32, dir: &std::path::Path) -> Option<FdCensus> {
    let mut c = FdCensus::default();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue; // closed meanwhile
        };
        c.total += 1;
        let s = link.to_string_lossy();
        if s == "anon_inode:inotify" {
            c.inotify += 1;
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            c.inotify_watches += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count() as u64;
        } else if s.starts_with('/') {
            c.files += 1;
            if link.starts_with(dir) {
                c.files_under_dir += 1;
            }
        } else if s.starts_with("socket:") {
            c.sockets += 1;
        } else {
            c.other += 1;
        }
    }
    Some(c)
}

/// CPU seconds per thread of a process, summed by thread name (`comm`).
pub fn thread_cpu_by_name(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(c) = cpu_secs_of(&format!("/proc/{pid}/task/{tid}/stat")) {
            *out.entry(comm.trim().to_string()).or_insert(0.0) += c;
        }
    }
    out
}

fn cpu_secs_of(stat_path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}
