//! Test harness: `delicate` nodes as child processes on loopback with port
//! 0, an HTTP client for their API, and deadline polling.
//!
//! Nodes run at the default security level 1. [`Node::executor`] sets up
//! the keys as an operator would: it writes the executor's key pair with
//! `delicate keygen`, puts the public key on the processor record and hands
//! the executor the public key of the scheduler at that address.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_delicate");
/// The executor-only binary.
pub const EXECUTOR_BINARY: &str = env!("CARGO_BIN_EXE_delicate-executor");
/// File names of a node's key pair in its data directory.
pub const PRIVATE_KEY_FILE: &str = "node-key.pem";
pub const PUBLIC_KEY_FILE: &str = "node-key.pub.pem";
/// Key size of keys the harness generates: the smallest allowed, for speed.
const TEST_KEY_BITS: &str = "2048";

/// Schedulers this process started: QUIC address, data directory, HTTP address.
static SCHEDULERS: Mutex<Vec<(SocketAddr, PathBuf, SocketAddr)>> = Mutex::new(Vec::new());

fn scheduler_at_quic(quic: SocketAddr) -> Option<(PathBuf, SocketAddr)> {
    let schedulers = SCHEDULERS.lock().unwrap();
    schedulers
        .iter()
        .rev()
        .find(|(address, _, _)| *address == quic)
        .map(|(_, dir, http)| (dir.clone(), *http))
}

/// Writes a key pair into `dir` with `delicate keygen` unless one is there,
/// and returns the public key PEM.
pub fn keygen(dir: &Path) -> String {
    let public = dir.join(PUBLIC_KEY_FILE);
    if !public.exists() {
        let output = Command::new(BINARY)
            .args([
                "keygen",
                "--out",
                dir.to_str().unwrap(),
                "--bits",
                TEST_KEY_BITS,
            ])
            .env_remove("DELICATE_SECURITY_KEY_BITS")
            .output()
            .expect("running delicate keygen");
        assert!(
            output.status.success(),
            "delicate keygen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::read_to_string(public).unwrap()
}

/// Sets the public key of processor `name`, if it exists, through the API.
pub fn register_key(api: &Api, name: &str, public_key_pem: &str) {
    let (status, processors) = api.get("/api/v1/processors");
    assert_eq!(status, 200, "{processors}");
    let found = processors
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_u64());
    if let Some(id) = found {
        let (status, body) = api.patch(
            &format!("/api/v1/processors/{id}"),
            json!({"public_key": public_key_pem}),
        );
        assert_eq!(
            status, 200,
            "setting the public key of processor {name}: {body}"
        );
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `delicate` process whose stderr log is collected.
pub struct Node {
    child: Child,
    log: Arc<Mutex<String>>,
    pub data_dir: PathBuf,
    pub http: Option<SocketAddr>,
    pub quic: Option<SocketAddr>,
}

fn field(log: &str, name: &str) -> Option<SocketAddr> {
    let marker = format!("{name}=");
    log.lines().rev().find_map(|line| {
        let start = line.find(&marker)? + marker.len();
        let rest = &line[start..];
        let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

/// The flags an executor node takes, after `executor` for `delicate`.
fn executor_args(data_dir: &Path, scheduler: SocketAddr, name: &str) -> [String; 6] {
    [
        "--data-dir".to_string(),
        data_dir.to_str().unwrap().to_string(),
        "--scheduler".to_string(),
        scheduler.to_string(),
        "--name".to_string(),
        name.to_string(),
    ]
}

impl Node {
    fn spawn(args: &[&str], data_dir: &Path, envs: &[(&str, &str)]) -> Node {
        Self::spawn_binary(BINARY, args, data_dir, envs)
    }

    fn spawn_binary(binary: &str, args: &[&str], data_dir: &Path, envs: &[(&str, &str)]) -> Node {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env("DELICATE_LOG", "info,delicate=debug")
            .env_remove("DELICATE_SECURITY_LEVEL")
            .env_remove("DELICATE_SECURITY_PRIVATE_KEY")
            .env_remove("DELICATE_SECURITY_PUBLIC_KEY")
            .env_remove("DELICATE_SECURITY_KEY_BITS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawning the node binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let echo = std::env::var_os("DELICATE_TEST_LOG").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[node] {line}");
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Node {
            child,
            log,
            data_dir: data_dir.to_path_buf(),
            http: None,
            quic: None,
        }
    }

    fn wait_for_addresses(mut self) -> Node {
        let log = self.log.clone();
        let (http, quic) = wait_for(
            "the node to log its addresses",
            Duration::from_secs(60),
            || {
                let text = log.lock().unwrap();
                Some((field(&text, "http.addr")?, field(&text, "quic.addr")?))
            },
        );
        self.http = Some(http);
        self.quic = Some(quic);
        self
    }

    /// `delicate standalone` on free ports.
    pub fn standalone(data_dir: &Path) -> Node {
        Self::standalone_with(data_dir, &[])
    }

    pub fn standalone_with(data_dir: &Path, envs: &[(&str, &str)]) -> Node {
        let dir = data_dir.to_str().unwrap();
        let node = Self::spawn(
            &[
                "standalone",
                "--data-dir",
                dir,
                "--http",
                "127.0.0.1:0",
                "--quic",
                "127.0.0.1:0",
            ],
            data_dir,
            envs,
        )
        .wait_for_addresses();
        // The default group, processor and bind exist once this is logged.
        let log = node.log.clone();
        wait_for("standalone to be ready", Duration::from_secs(60), || {
            log.lock()
                .unwrap()
                .contains("standalone.ready")
                .then_some(())
        });
        node
    }

    /// `delicate scheduler` on free ports.
    pub fn scheduler(data_dir: &Path) -> Node {
        Self::scheduler_at(data_dir, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// `delicate scheduler` on given addresses, for restarts on the same ports.
    pub fn scheduler_at(data_dir: &Path, http: &str, quic: &str) -> Node {
        Self::scheduler_with(data_dir, http, quic, &[])
    }

    /// `delicate scheduler` with extra environment variables.
    pub fn scheduler_with(data_dir: &Path, http: &str, quic: &str, envs: &[(&str, &str)]) -> Node {
        let dir = data_dir.to_str().unwrap();
        let node = Self::spawn(
            &[
                "scheduler",
                "--data-dir",
                dir,
                "--http",
                http,
                "--quic",
                quic,
            ],
            data_dir,
            envs,
        )
        .wait_for_addresses();
        let entry = (
            node.quic.unwrap(),
            data_dir.to_path_buf(),
            node.http.unwrap(),
        );
        SCHEDULERS.lock().unwrap().push(entry);
        node
    }

    /// `delicate executor` joining the scheduler at `scheduler` as processor
    /// `name`, with its key registered on the processor record if that
    /// exists. The scheduler must have been started by this harness.
    pub fn executor(data_dir: &Path, scheduler: SocketAddr, name: &str) -> Node {
        let (scheduler_dir, http) =
            scheduler_at_quic(scheduler).expect("the scheduler was started by this harness");
        let public_key = keygen(data_dir);
        register_key(&Api::new(http), name, &public_key);
        let scheduler_key = scheduler_dir.join(PUBLIC_KEY_FILE);
        Self::executor_with(
            data_dir,
            scheduler,
            name,
            &[(
                "DELICATE_SECURITY_PUBLIC_KEY",
                scheduler_key.to_str().unwrap(),
            )],
        )
    }

    /// `delicate executor` with only the given environment variables set up.
    pub fn executor_with(
        data_dir: &Path,
        scheduler: SocketAddr,
        name: &str,
        envs: &[(&str, &str)],
    ) -> Node {
        let mut args = vec!["executor".to_string()];
        args.extend(executor_args(data_dir, scheduler, name));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn(&args, data_dir, envs)
    }

    /// `delicate-executor`, the executor-only binary, with only the given
    /// environment variables set up.
    pub fn dedicated_executor_with(
        data_dir: &Path,
        scheduler: SocketAddr,
        name: &str,
        envs: &[(&str, &str)],
    ) -> Node {
        let args = executor_args(data_dir, scheduler, name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn_binary(EXECUTOR_BINARY, &args, data_dir, envs)
    }

    /// Waits until the process exits and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_for("the node to exit", timeout, || child.try_wait().unwrap())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn log_contains(&self, text: &str) -> bool {
        self.log.lock().unwrap().contains(text)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn api(&self) -> Api {
        Api::new(self.http.expect("node has an HTTP address"))
    }
}

impl Drop for Node {
    /// Stops the node with SIGTERM so it ends its runs, then SIGKILL if it
    /// is still there after 10 s.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let start = lines.len().saturating_sub(150);
            let path = std::env::temp_dir().join(format!("delicate-node-{}.log", self.child.id()));
            let _ = std::fs::write(&path, &log);
            eprintln!(
                "--- last lines of node {} (whole log in {}) ---\n{}",
                self.child.id(),
                path.display(),
                lines[start..].join("\n")
            );
        }
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sleep` duration unique to this test process, so its processes can be
/// told apart from those of other runs.
pub fn unique_sleep(seconds: u32) -> String {
    format!("{seconds}.{:06}", std::process::id())
}

/// A JSON client of one node's API.
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Api {
            base: format!("http://{addr}"),
            agent,
        }
    }

    fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        Self::read(
            self.agent
                .get(format!("{}{path}", self.base))
                .call()
                .expect("GET request"),
        )
    }

    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .expect("GET request");
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap();
        (status, bytes)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        Self::read(
            self.agent
                .post(format!("{}{path}", self.base))
                .send_json(body)
                .expect("POST request"),
        )
    }

    pub fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        Self::read(
            self.agent
                .patch(format!("{}{path}", self.base))
                .send_json(body)
                .expect("PATCH request"),
        )
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        Self::read(
            self.agent
                .delete(format!("{}{path}", self.base))
                .call()
                .expect("DELETE request"),
        )
    }

    /// POSTs and asserts a 201, returning the body.
    pub fn create(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.post(path, body.clone());
        assert_eq!(status, 201, "POST {path} {body} answered {value}");
        value
    }

    /// Every instance of a task, oldest first.
    pub fn instances_of(&self, task_id: u64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/instances?task_id={task_id}&limit=1000&cursor={c}"),
                None => format!("/api/v1/instances?task_id={task_id}&limit=1000"),
            };
            let (status, page) = self.get(&path);
            assert_eq!(status, 200, "{page}");
            all.extend(page["instances"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        all.reverse();
        all
    }

    /// Waits until the processor is online.
    pub fn wait_online(&self, processor_id: u64, timeout: Duration) {
        wait_for(
            &format!("processor {processor_id} to be online"),
            timeout,
            || {
                let (_, processor) = self.get(&format!("/api/v1/processors/{processor_id}"));
                (processor["online"] == true).then_some(())
            },
        );
    }
}

/// Processes whose command line contains `marker`, as pids.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if text.contains(marker) && !zombie {
            found.push(pid);
        }
    }
    found
}
