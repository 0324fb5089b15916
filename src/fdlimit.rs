//! File descriptors: the limit, the clients it leaves room for, and a fast
//! refusal when they run out anyway.
//!
//! Every client is one socket, so the soft `RLIMIT_NOFILE` (often 1024)
//! caps the number of clients long before memory does. At start-up
//! [`raise_nofile`] lifts the soft limit to the hard one, as Go's runtime and
//! nginx (`worker_rlimit_nofile`) do; the hard limit is the administrator's
//! (`ulimit -Hn`, systemd's `LimitNOFILE=`) and is left alone. The program
//! starts no child processes, and uses epoll, not `select`, so a limit
//! above 1024 harms nothing.
//!
//! Descriptors can still run out: more clients than the limit allows, or
//! `ENFILE` when the whole system is out. `accept` then fails with `EMFILE`
//! and the connection stays in the kernel's accept queue (4096 deep) until a
//! descriptor frees: its client hangs. [`Spare`] keeps one descriptor
//! (`/dev/null`) in reserve for that moment; the accept loop
//! ([`crate::server::serve`]) lets it go, accepts the waiting connection,
//! answers it with [`REFUSAL`] (a short 503, or only a close under TLS),
//! closes it and takes the spare back. Each pending connection costs one
//! such round (a few system calls), so a full queue drains at once, and an
//! empty one costs nothing: the loop never spins.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use rlimit::Resource;
use tokio::net::TcpStream;

/// Descriptors kept out of the client capacity for everything that is not
/// a client. Measured at start-up: stdio (3), the listener, the spare, the
/// runtime's epoll and waker, the signal pipe pair, the followed file, the
/// watcher's inotify, epoll and eventfd — about 15. While a rotation is
/// followed the old file stays open until drained and the directory is
/// read to find it; each client resuming from disk holds one file while
/// it replays. 64 covers all that with room for a few dozen concurrent
/// replays and descriptors inherited from the parent.
pub const RESERVED_FDS: u64 = 64;

/// The top descriptors no client connection may take: a connection whose
/// descriptor number is this close to the soft limit is refused at once
/// (descriptors are numbered lowest first, so the number tells how many are
/// open). They stay for what must not fail for want of a descriptor: a
/// file that appears or rotates, the old file held while it drains, a
/// replay from disk. Part of [`RESERVED_FDS`], which also covers what is
/// open before any client (about 15).
pub const KEPT_FOR_FILES: u64 = 32;

/// The lowest descriptor number a client connection may not have.
pub fn client_ceiling(soft: u64) -> u64 {
    soft.saturating_sub(KEPT_FOR_FILES).max(1)
}

/// What a connection accepted with the spare descriptor is told.
pub const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 24\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
out of file descriptors\n";

/// The `RLIMIT_NOFILE` this process runs with.
#[derive(Debug, Clone)]
pub struct NofileLimit {
    /// The soft limit found at start-up.
    pub before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    pub hard: u64,
    /// Why the soft limit could not be raised to the hard one.
    pub raise_error: Option<String>,
}

impl NofileLimit {
    /// About how many clients fit: see [`client_capacity`].
    pub fn client_capacity(&self) -> u64 {
        client_capacity(self.soft)
    }
}

/// About how many clients `soft` descriptors leave room for.
pub fn client_capacity(soft: u64) -> u64 {
    soft.saturating_sub(RESERVED_FDS)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Failing to raise it is
/// not an error (the server runs with what it has, see
/// [`NofileLimit::raise_error`]); failing to read it is.
pub fn raise_nofile() -> io::Result<NofileLimit> {
    let (before, hard) = Resource::NOFILE.get()?;
    let (soft, raise_error) = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => (soft, None),
        Err(err) => (before, Some(err.to_string())),
    };
    Ok(NofileLimit {
        before,
        soft,
        hard,
        raise_error,
    })
}

/// How many descriptors this process has open now (`None` without `/proc`).
pub fn open_descriptors() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// After the files are open: how many clients the descriptors left allow,
/// logged when following many files (each holds one); warned about when
/// fewer than `max_clients`.
pub fn log_capacity_after_files(files: usize, max_clients: usize) {
    let Some(in_use) = open_descriptors() else {
        return;
    };
    let room = client_ceiling(current_soft()).saturating_sub(in_use);
    if room < max_clients as u64 {
        tracing::warn!(
            "{files} files followed, {in_use} file descriptors in use: room for about {room} clients, fewer than --max-clients {max_clients}; raise the limit (ulimit -n, LimitNOFILE=)"
        );
    } else if files > 1 {
        tracing::info!(
            "{files} files followed, {in_use} file descriptors in use: room for about {room} clients"
        );
    }
}

/// The current soft limit, for messages (0 when it cannot be read).
pub fn current_soft() -> u64 {
    Resource::NOFILE.get().map_or(0, |(soft, _)| soft)
}

/// Logs the limit and the client capacity it gives; warns when
/// `max_clients` is more than that.
pub fn log_capacity(limit: &NofileLimit, max_clients: usize) {
    let capacity = limit.client_capacity();
    let reserve = format!("{RESERVED_FDS} kept for files, the listener, inotify and the runtime");
    match &limit.raise_error {
        Some(err) => tracing::warn!(
            "cannot raise the file descriptor limit from {} to the hard limit {}: {err}; \
             room for about {capacity} clients ({reserve})",
            limit.before,
            limit.hard
        ),
        None if limit.soft > limit.before => tracing::info!(
            "file descriptor limit raised from {} to {} (the hard limit): \
             room for about {capacity} clients ({reserve})",
            limit.before,
            limit.soft
        ),
        None => tracing::info!(
            "file descriptor limit {} (hard limit {}): room for about {capacity} clients ({reserve})",
            limit.soft,
            limit.hard
        ),
    }
    if max_clients as u64 > capacity {
        tracing::warn!(
            "--max-clients {max_clients} is more than the {} file descriptors allow \
             (about {capacity} clients): past that, new connections get 503 \
             \"out of file descriptors\"; raise the hard limit (ulimit -Hn, systemd \
             LimitNOFILE=) or lower --max-clients",
            limit.soft
        );
    }
}

/// Whether an `accept` error means the process (`EMFILE`) or the system
/// (`ENFILE`) is out of descriptors.
pub fn is_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One descriptor held in reserve, so that a connection can still be
/// accepted (and refused) when all the others are in use.
#[derive(Debug)]
pub struct Spare(Option<File>);

impl Spare {
    /// Takes the spare; logs a warning when even that fails.
    pub fn new() -> Spare {
        let mut spare = Spare(None);
        if let Err(err) = spare.take() {
            tracing::warn!(
                "cannot open /dev/null as the spare file descriptor: {err}; when descriptors \
                 run out, new connections wait in the accept queue instead of getting 503"
            );
        }
        spare
    }

    /// Whether the spare is held.
    pub fn held(&self) -> bool {
        self.0.is_some()
    }

    /// Takes the spare (back) unless it is already held: one `open` only
    /// after [`release`](Self::release).
    pub fn take(&mut self) -> io::Result<()> {
        if self.0.is_none() {
            self.0 = Some(File::open("/dev/null")?);
        }
        Ok(())
    }

    /// Closes the spare, freeing one descriptor; false if it was not held.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }
}

impl Default for Spare {
    fn default() -> Self {
        Spare::new()
    }
}

/// Answers a connection accepted with the spare and closes it, without
/// waiting for anything: the 503 fits in the empty send buffer, so one
/// non-blocking write sends it whole. What the client already sent is read
/// first, because closing a socket with unread data sends a reset instead of
/// the 503 and a clean end. Under TLS a plain-text answer would only be a
/// handshake error, so the connection is just closed.
pub fn refuse(tcp: TcpStream, plain_http: bool) {
    let mut buf = [0u8; 4096];
    for _ in 0..4 {
        match tcp.try_read(&mut buf) {
            Ok(n) if n == buf.len() => continue,
            _ => break,
        }
    }
    if plain_http {
        let _ = tcp.try_write(REFUSAL);
    }
}

/// A warning logged at most once per `every`, counting what it left out.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    count: u64,
}

impl RateLimited {
    pub fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: None,
            count: 0,
        }
    }

    /// Counts one event; returns how many happened since the last time it
    /// returned `Some` (this one included) when it is time to log again.
    pub fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_keeps_the_reserve() {
        assert_eq!(client_capacity(1024), 1024 - RESERVED_FDS);
        assert_eq!(client_capacity(10), 0);
        assert_eq!(client_capacity(u64::MAX), u64::MAX - RESERVED_FDS);
    }

    #[test]
    fn refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
    }

    #[test]
    fn exhaustion_errors() {
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn rate_limited_counts_what_it_held_back() {
        let mut warn = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(warn.hit(), Some(1));
        assert_eq!(warn.hit(), None);
        assert_eq!(warn.hit(), None);
        warn.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(warn.hit(), Some(3));
    }

    #[test]
    fn spare_is_released_and_taken_back() {
        let mut spare = Spare::new();
        assert!(spare.held());
        assert!(spare.release());
        assert!(!spare.release());
        spare.take().unwrap();
        assert!(spare.held());
    }
}
