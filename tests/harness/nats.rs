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

/// Waits (up to [`READY`]) until `port` accepts connections, or until it no longer does.
fn wait_port(port: u16, accepting: bool, what: &str) {
    let deadline = Instant::now() + READY;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() != accepting {
        assert!(Instant::now() < deadline, "{what} within {READY:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
        wait_port(self.port, false, "nats-server stops accepting once killed");
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
        wait_port(self.port, true, "nats-server accepts");
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

/// Three `nats-server`s routed into one JetStream cluster on loopback (server names
/// `n1`…`n3`, cluster `LT`), each with its own store and monitoring port; any of them can
/// be killed and started again.
pub struct NatsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    name: String,
    port: u16,
    monitor: u16,
    process: Option<KillOnDrop>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, &(port, route, monitor)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats-route://127.0.0.1:{}", p.1))
                .collect();
            let conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{ name: LT, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n",
                store = dir.path().join(&name).display(),
                routes = routes.join(", "),
            );
            std::fs::write(dir.path().join(format!("{name}.conf")), conf).expect("a node's config");
            nodes.push(ClusterNode {
                name,
                port,
                monitor,
                process: None,
            });
        }
        let mut cluster = NatsCluster { dir, nodes };
        for i in 0..3 {
            cluster.start_node(i);
        }
        cluster
    }

    /// `nats://127.0.0.1:PORT` of node `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Node `i`'s monitoring address (`/jsz`, `/healthz`).
    pub fn monitor(&self, i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.nodes[i].monitor))
    }

    /// The index of the node named `name` (`n1`…).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Starts node `i` (again) and waits until it accepts clients.
    pub fn start_node(&mut self, i: usize) {
        let program = needs::program!(nats_server);
        let name = self.nodes[i].name.clone();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("a node's log");
        let child = Command::new(program)
            .arg("-c")
            .arg(self.dir.path().join(format!("{name}.conf")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.nodes[i].process = Some(KillOnDrop(child));
        wait_port(self.nodes[i].port, true, &format!("{name} accepts"));
    }

    /// Kills node `i` (SIGKILL) and waits until its port is closed.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].process = None;
        wait_port(self.nodes[i].port, false, "a killed node stops accepting");
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", n.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {} ---\n{}",
                    n.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
