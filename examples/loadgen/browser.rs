//! A headless Chromium for the viewer phase, and a small Chrome DevTools
//! Protocol (CDP) client over tokio-tungstenite.
//!
//! Chromium runs in its own process group with a throwaway profile
//! (`--user-data-dir` in a temp dir) and `--remote-debugging-port=0`; the
//! port it picked is the first line of `<profile>/DevToolsActivePort` (the
//! second is the browser target's path). The page target is found with
//! `Target.getTargets` on the browser connection, then driven on its own
//! WebSocket (`/devtools/page/ID`). Only 127.0.0.1 is contacted. Dropping
//! [`Chromium`] sends SIGTERM to its process group (and SIGKILL after 5 s).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::sys;

/// Chromium's start-up (until `DevToolsActivePort` names a port).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// One CDP command's answer.
const CDP_TIMEOUT: Duration = Duration::from_secs(60);

/// `chromium` (Debian) or `chromium-browser` (Ubuntu) on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

pub struct Chromium {
    child: Child,
    /// `profile/` (user data dir) and `chromium.log` (its stdout and stderr).
    dir: tempfile::TempDir,
    pub port: u16,
    /// `/devtools/browser/ID` from `DevToolsActivePort`.
    browser_path: String,
    /// The command-line flags it was started with.
    pub flags: Vec<String>,
}

impl Chromium {
    /// Starts `exe` headless with a `width`×`height` window on `about:blank`.
    pub async fn launch(exe: &Path, width: u32, height: u32) -> Result<Chromium, String> {
        let dir = tempfile::Builder::new()
            .prefix("loadgen-chromium-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let profile = dir.path().join("profile");
        let log = File::create(dir.path().join("chromium.log"))
            .map_err(|e| format!("chromium.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut flags: Vec<String> = [
            "--headless=new",
            "--remote-debugging-port=0",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-crash-reporter",
            "--disable-dev-shm-usage",
            // A foreground tab as a reader has it: no timer or renderer backgrounding.
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if sys::is_root() {
            flags.push("--no-sandbox".into());
        }
        flags.push(format!("--window-size={width},{height}"));
        let mut cmd = Command::new(exe);
        cmd.args(&flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group, so that drop ends Chromium and all its children.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut c = Chromium {
            child,
            dir,
            port: 0,
            browser_path: String::new(),
            flags,
        };
        let file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        loop {
            // "PORT\n/devtools/browser/ID": once the second line is there, the port is whole.
            if let Some((port, path)) = fs::read_to_string(&file).ok().and_then(|s| {
                let (p, rest) = s.split_once('\n')?;
                let port = p.trim().parse::<u16>().ok().filter(|&p| p != 0)?;
                let path = rest.trim();
                (!path.is_empty()).then(|| (port, path.to_string()))
            }) {
                c.port = port;
                c.browser_path = path;
                return Ok(c);
            }
            if let Ok(Some(st)) = c.child.try_wait() {
                return Err(format!(
                    "chromium exited ({st}) before writing DevToolsActivePort:\n{}",
                    c.log_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chromium wrote no DevToolsActivePort within {LAUNCH_TIMEOUT:?}:\n{}",
                    c.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The last 40 lines Chromium wrote.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A CDP connection to the browser target.
    pub async fn browser(&self) -> Result<Cdp, String> {
        Cdp::connect(self.port, &self.browser_path).await
    }

    /// A CDP connection to the first page target (the `about:blank` tab), and its target id.
    pub async fn page(&self, browser: &Cdp) -> Result<(Cdp, String), String> {
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        loop {
            let t = browser.call("Target.getTargets", json!({})).await?;
            let id = t["targetInfos"].as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["targetId"].as_str())
            });
            if let Some(id) = id {
                let page = Cdp::connect(self.port, &format!("/devtools/page/{id}")).await?;
                return Ok((page, id.to_string()));
            }
            if Instant::now() >= deadline {
                return Err(format!("no page target within {LAUNCH_TIMEOUT:?}: {t}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Chromium's processes (the launched one and its descendants) with their
    /// kind: `browser`, or the `--type=` of a child (`renderer`, `gpu-process`,
    /// `utility`, `zygote`, ...).
    pub fn processes(&self) -> Vec<(u32, String)> {
        let root = self.child.id();
        let mut parent: HashMap<u32, u32> = HashMap::new();
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(pp) = sys::parent_pid(pid) {
                    parent.insert(pid, pp);
                }
            }
        }
        let mut out = Vec::new();
        for (&pid, _) in parent.iter() {
            let mut p = pid;
            let mut hops = 0;
            while p != root && p > 1 && hops < 64 {
                p = parent.get(&p).copied().unwrap_or(0);
                hops += 1;
            }
            if p == root {
                out.push((pid, process_kind(pid, pid == root)));
            }
        }
        out.sort();
        out
    }

    /// CPU seconds (utime + stime) of each Chromium process now, by pid, with its kind.
    pub fn cpu_by_process(&self) -> BTreeMap<u32, (String, f64)> {
        self.processes()
            .into_iter()
            .filter_map(|(pid, kind)| sys::cpu_secs(pid).map(|c| (pid, (kind, c))))
            .collect()
    }

    fn signal_group(&self, sig: i32) {
        sys::signal_group(self.child.id(), sig);
    }
}

fn process_kind(pid: u32, is_root: bool) -> String {
    if is_root {
        return "browser".into();
    }
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // Chromium's children rewrite their command line (one string, spaces between
    // the arguments), so split on both.
    for arg in cmd.split(|&b| b == 0 || b == b' ') {
        if let Some(t) = arg.strip_prefix(b"--type=") {
            return String::from_utf8_lossy(t).into_owned();
        }
    }
    "other".into()
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal_group(sys::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Children of the group that outlive the browser process.
                self.signal_group(sys::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal_group(sys::SIGKILL);
        let _ = self.child.wait();
    }
}

type Ws = WebSocketStream<TcpStream>;
type Waiters = Arc<Mutex<Vec<(String, oneshot::Sender<Value>)>>>;

/// What the page reported on its own (CDP events), counted.
#[derive(Default, Clone, Debug, serde::Serialize)]
pub struct CdpEvents {
    pub exceptions: u64,
    pub console_errors: u64,
    pub log_errors: u64,
    /// The first few, verbatim (shortened).
    pub sample: Vec<String>,
}

/// One CDP connection: commands from any task, answers matched by id by a
/// reader task; events are counted in [`CdpEvents`].
pub struct Cdp {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: AtomicU64,
    pub events: Arc<Mutex<CdpEvents>>,
    waiters: Waiters,
    reader: tokio::task::JoinHandle<()>,
}

impl Cdp {
    async fn connect(port: u16, path: &str) -> Result<Cdp, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| "CDP connect timed out".to_string())?
            .map_err(|e| format!("CDP connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        // logtail.lines() of 100 000 lines is a message of tens of MB.
        let config = WebSocketConfig::default()
            .max_message_size(Some(1 << 30))
            .max_frame_size(Some(1 << 30));
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            client_async_with_config(url.as_str(), tcp, Some(config)),
        )
        .await
        .map_err(|_| format!("CDP handshake {url} timed out"))?
        .map_err(|e| format!("CDP handshake {url}: {e}"))?;
        let (sink, stream) = ws.split();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<CdpEvents>> = Arc::default();
        let waiters: Waiters = Arc::default();
        let reader = tokio::spawn(read_loop(
            stream,
            pending.clone(),
            events.clone(),
            waiters.clone(),
        ));
        Ok(Cdp {
            sink: tokio::sync::Mutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
            events,
            waiters,
            reader,
        })
    }

    /// Sends a command; its `result`, or the CDP error as text.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.sink
            .lock()
            .await
            .send(Message::text(msg))
            .await
            .map_err(|e| format!("CDP send {method}: {e}"))?;
        let v = match tokio::time::timeout(CDP_TIMEOUT, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => return Err(format!("CDP {method}: the connection closed")),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                return Err(format!("CDP {method}: no answer within {CDP_TIMEOUT:?}"));
            }
        };
        if let Some(err) = v.get("error") {
            return Err(format!("CDP {method}: {err}"));
        }
        Ok(v["result"].clone())
    }

    /// The `params` of the next event named `method` (register before causing it).
    pub fn next_event(&self, method: &str) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().push((method.to_string(), tx));
        rx
    }

    /// Reads a CDP stream (`IO.read` until eof) into a string, and closes it.
    pub async fn read_stream(&self, handle: &str) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let r = self
                .call("IO.read", json!({ "handle": handle, "size": 4 << 20 }))
                .await?;
            let data = r["data"].as_str().unwrap_or("");
            if r["base64Encoded"].as_bool() == Some(true) {
                return Err("IO.read: base64 data (a compressed trace?) is not handled".into());
            }
            out.push_str(data);
            if r["eof"].as_bool() != Some(false) {
                break;
            }
            if out.len() > 2 << 30 {
                return Err("the stream is over 2 GiB".into());
            }
        }
        let _ = self.call("IO.close", json!({ "handle": handle })).await;
        Ok(out)
    }

    /// Evaluates `expr` in the page (promises awaited); its value, or the exception.
    pub async fn eval(&self, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        match r.get("exceptionDetails") {
            Some(ex) => Err(format!(
                "JS exception: {}",
                ex["exception"]["description"]
                    .as_str()
                    .map_or_else(|| ex.to_string(), str::to_string)
            )),
            None => Ok(r["result"]["value"].clone()),
        }
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<CdpEvents>>,
    waiters: Waiters,
) {
    while let Some(Ok(m)) = stream.next().await {
        let Message::Text(text) = m else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if let Some(id) = v["id"].as_u64() {
            if let Some(tx) = pending.lock().unwrap().remove(&id) {
                let _ = tx.send(v);
            }
            continue;
        }
        let method = v["method"].as_str().unwrap_or("");
        let p = &v["params"];
        {
            let mut w = waiters.lock().unwrap();
            if let Some(i) = w.iter().position(|(m, _)| m == method) {
                let (_, tx) = w.remove(i);
                let _ = tx.send(p.clone());
            }
        }
        let mut ev = events.lock().unwrap();
        let what = match method {
            "Runtime.exceptionThrown" => {
                ev.exceptions += 1;
                let d = &p["exceptionDetails"];
                Some(format!(
                    "exception: {}",
                    d["exception"]["description"]
                        .as_str()
                        .or(d["text"].as_str())
                        .unwrap_or("?")
                ))
            }
            "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "warning" => {
                ev.console_errors += 1;
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x["value"]
                                    .as_str()
                                    .map_or_else(|| x["description"].to_string(), str::to_string)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(format!("console.{}: {}", p["type"], args.join(" ")))
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                ev.log_errors += 1;
                Some(format!(
                    "log: {}",
                    p["entry"]["text"].as_str().unwrap_or("?")
                ))
            }
            _ => None,
        };
        if let Some(w) = what
            && ev.sample.len() < 10
        {
            ev.sample.push(w.chars().take(300).collect());
        }
    }
    // The connection ended: fail whatever waits.
    pending.lock().unwrap().clear();
}
