//! A real NATS server with JetStream (Debian's `nats-server`) for the broker tests: on a
//! free loopback port, its store in a temporary directory, ended by its PID when dropped.
//! [`Nats::stop`] and [`Nats::start_again`] take it away and bring it back on the same
//! port with the same store, as an outage does.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::KillOnDrop;

/// How long the server may take to accept connections.
const READY: Duration = Duration::from_secs(20);

pub struct Nats {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Option<KillOnDrop>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Nats {
    /// Starts `nats-server -js` and waits until it accepts connections.
    pub fn start() -> Nats {
        let dir = tempfile::tempdir().expect("a directory for the JetStream store");
        let mut nats = Nats {
            port: free_port(),
            dir,
            process: None,
        };
        nats.start_again();
        nats
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// Ends the server (SIGKILL, by its PID): an outage.
    pub fn stop(&mut self) {
        self.process = None;
        let deadline = Instant::now() + READY;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "nats-server still accepts after being killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (Re)starts it on the same port with the same store; waits until it accepts.
    pub fn start_again(&mut self) {
        let program = needs::program!(nats_server);
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats.log");
        let child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.process = Some(KillOnDrop(child));
        let deadline = Instant::now() + READY;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not accept within {READY:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}
