//! Appends numbered, timestamped lines to the followed file.
//!
//! Line format (total length `line_bytes` including `\n`):
//! `seq=<N> t=<16-digit nanoseconds since the shared Instant> xxxx…\n`.
//! The timestamp is patched into already formatted lines just before write(2).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

const T_DIGITS: usize = 16;

pub fn append(path: &Path, data: &[u8]) -> io::Result<()> {
    OpenOptions::new().append(true).open(path)?.write_all(data)
}

#[derive(Serialize, Clone, Default)]
pub struct WriteReport {
    pub lines: u64,
    pub bytes: u64,
    pub writes: u64,
    pub secs: f64,
    pub lines_per_s: f64,
    /// Longest single write(2) call.
    pub max_write_us: f64,
    /// Paced: the most lines that were due but not yet written at a tick.
    pub max_behind_lines: u64,
    /// Flood: time spent waiting for the slowest client to catch up (window).
    pub window_wait_secs: f64,
    pub aborted: Option<String>,
}

struct Batch {
    buf: Vec<u8>,
    t_slots: Vec<usize>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            buf: Vec::new(),
            t_slots: Vec::new(),
        }
    }

    fn push(&mut self, seq: u64, line_bytes: usize) {
        let start = self.buf.len();
        write!(self.buf, "seq={seq} t=").unwrap();
        self.t_slots.push(self.buf.len());
        self.buf.extend_from_slice(&[b'0'; T_DIGITS]);
        self.buf.push(b' ');
        let used = self.buf.len() - start + 1;
        if line_bytes > used {
            self.buf.resize(start + line_bytes - 1, b'x');
        }
        self.buf.push(b'\n');
    }

    /// Stamps `t` into every line and writes the batch in one write(2) call
    /// (`write_all` may loop on a short write).
    fn stamp_and_write(&mut self, f: &mut File, t0: Instant) -> io::Result<(u64, Duration)> {
        let t = t0.elapsed().as_nanos() as u64;
        let digits = format!("{t:0width$}", width = T_DIGITS);
        for &s in &self.t_slots {
            self.buf[s..s + T_DIGITS].copy_from_slice(digits.as_bytes());
        }
        let w = Instant::now();
        f.write_all(&self.buf)?;
        let took = w.elapsed();
        let n = self.buf.len() as u64;
        self.buf.clear();
        self.t_slots.clear();
        Ok((n, took))
    }
}

/// The writers' clock: an absolute schedule of `rate` lines/s, in ticks of at
/// least 1 ms, so a late tick writes everything due (burst catch-up).
pub struct Pacer {
    start: Instant,
    tick: Duration,
    hard: Duration,
    rate: f64,
    total: u64,
    k: u32,
}

/// What [`Pacer::next`] says.
pub enum Due {
    /// Write lines up to this number (from 1), inclusive.
    Upto(u64),
    /// Nothing due at this tick.
    Nothing,
    /// The time bound (`hard`) is reached: stop.
    Overtime,
}

impl Pacer {
    /// `total` lines at `rate` lines/s, starting now, at most `hard` long.
    pub fn new(rate: f64, total: u64, hard: Duration) -> Pacer {
        Pacer {
            start: Instant::now(),
            tick: Duration::from_secs_f64((1.0 / rate).max(0.001)),
            hard,
            rate,
            total,
            k: 0,
        }
    }

    /// Sleeps to the next tick; then how many lines should be written by
    /// now, given that `done` are.
    pub fn next(&mut self, done: u64) -> Due {
        self.k += 1;
        let deadline = self.start + self.tick * self.k;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        let elapsed = self.start.elapsed();
        if elapsed > self.hard {
            return Due::Overtime;
        }
        let due = ((elapsed.as_secs_f64() * self.rate).floor() as u64).clamp(1, self.total);
        if due <= done {
            Due::Nothing
        } else {
            Due::Upto(due)
        }
    }

    /// Seconds since the schedule started.
    pub fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Writes `rate` lines/s for `duration`, in small batches on an absolute
/// schedule (a late tick writes everything due: burst catch-up). Lines are
/// numbered from 1. Bounded by the line count and by `duration * 2 + 10 s`.
pub fn paced(
    path: &Path,
    t0: Instant,
    rate: f64,
    duration: Duration,
    line_bytes: usize,
) -> io::Result<WriteReport> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let mut pacer = Pacer::new(rate, total, duration * 2 + Duration::from_secs(10));
    let mut rep = WriteReport::default();
    let mut batch = Batch::new();
    let mut max_write = Duration::ZERO;
    while rep.lines < total {
        let due = match pacer.next(rep.lines) {
            Due::Upto(due) => due,
            Due::Nothing => continue,
            Due::Overtime => {
                rep.aborted = Some("writer time bound reached".into());
                break;
            }
        };
        rep.max_behind_lines = rep.max_behind_lines.max(due - rep.lines);
        for seq in rep.lines + 1..=due {
            batch.push(seq, line_bytes);
        }
        let (n, took) = batch.stamp_and_write(&mut f, t0)?;
        max_write = max_write.max(took);
        rep.bytes += n;
        rep.writes += 1;
        rep.lines = due;
    }
    rep.secs = pacer.secs();
    rep.lines_per_s = rep.lines as f64 / rep.secs.max(1e-9);
    rep.max_write_us = max_write.as_secs_f64() * 1e6;
    Ok(rep)
}

/// Writes `total` lines as fast as possible in writes of about `chunk_bytes`.
/// With `window_lines > 0` it never runs more than that many lines ahead of the
/// slowest open client (`min_seq`), so the figure is a sustainable rate rather
/// than a burst that overflows the server's per-client queue.
pub struct Flood {
    pub total: u64,
    pub line_bytes: usize,
    pub chunk_bytes: usize,
    pub window_lines: u64,
    pub hard: Duration,
}

pub fn flood(
    path: &Path,
    t0: Instant,
    spec: Flood,
    min_seq: impl Fn() -> Option<u64>,
) -> io::Result<WriteReport> {
    let Flood {
        total,
        line_bytes,
        chunk_bytes,
        window_lines,
        hard,
    } = spec;
    let mut f = OpenOptions::new().append(true).open(path)?;
    let chunk_lines = (chunk_bytes / line_bytes.max(1)).max(1) as u64;
    let mut rep = WriteReport::default();
    let mut batch = Batch::new();
    let start = Instant::now();
    let mut max_write = Duration::ZERO;
    let mut waited = Duration::ZERO;
    while rep.lines < total {
        let mut n = chunk_lines.min(total - rep.lines);
        if window_lines > 0 {
            let w = Instant::now();
            loop {
                let ahead = rep.lines - min_seq().unwrap_or(rep.lines).min(rep.lines);
                let room = window_lines.saturating_sub(ahead);
                if room >= n.min(window_lines / 4).max(1) {
                    n = n.min(room);
                    break;
                }
                if start.elapsed() > hard {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            waited += w.elapsed();
        }
        if start.elapsed() > hard {
            rep.aborted = Some("writer time bound reached".into());
            break;
        }
        for seq in rep.lines + 1..=rep.lines + n {
            batch.push(seq, line_bytes);
        }
        let (b, took) = batch.stamp_and_write(&mut f, t0)?;
        max_write = max_write.max(took);
        rep.bytes += b;
        rep.writes += 1;
        rep.lines += n;
    }
    rep.secs = start.elapsed().as_secs_f64();
    rep.lines_per_s = rep.lines as f64 / rep.secs.max(1e-9);
    rep.max_write_us = max_write.as_secs_f64() * 1e6;
    rep.window_wait_secs = waited.as_secs_f64();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_has_requested_size_and_parses() {
        let mut b = super::Batch::new();
        b.push(42, 100);
        b.push(43, 10);
        let t0 = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let mut f = std::fs::File::create(&p).unwrap();
        b.stamp_and_write(&mut f, t0).unwrap();
        let s = std::fs::read(&p).unwrap();
        let lines: Vec<&[u8]> = s.split(|&c| c == b'\n').collect();
        assert_eq!(lines[0].len(), 99);
        assert_eq!(crate::clients::parse_line(lines[0]).unwrap().0, 42);
        assert_eq!(crate::clients::parse_line(lines[1]).unwrap().0, 43);
    }
}
