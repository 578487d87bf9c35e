//! Helpers the scenarios share: node processes of this binary, figures read
//! from `/proc`, an HTTP client of a node's API and data directories.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Processes in flight in the spawn-only baselines; 16 gave the best spawn
/// rate on a 2-core machine, about 3,270/s.
pub const BASELINE_CONCURRENCY: usize = 16;

/// Log lines kept per node, shown when a node fails to start.
const LOG_TAIL_LINES: usize = 50;

/// A `delicate` node started as a child process of the bench command.
pub struct NodeProcess {
    child: Child,
    label: String,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    addresses: Arc<Mutex<(Option<SocketAddr>, Option<SocketAddr>)>>,
    pub started: Instant,
}

impl NodeProcess {
    /// Starts `delicate scheduler` on free loopback ports and waits for its
    /// addresses.
    ///
    /// NOTE: the security level is passed as 0 explicitly because the bench
    /// measures the scheduling path; level 1 adds a MAC to every frame.
    pub fn scheduler(data_dir: &Path) -> anyhow::Result<NodeProcess> {
        let dir = path_text(data_dir)?;
        let args = [
            "scheduler",
            "--data-dir",
            dir,
            "--http",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
        ];
        let mut node = NodeProcess::spawn("scheduler", &args)?;
        node.wait_for_addresses(Duration::from_secs(600))?;
        Ok(node)
    }

    /// Starts an executor joining `scheduler` as processor `name`, and
    /// prints which binary runs it.
    pub fn executor(
        data_dir: &Path,
        scheduler: SocketAddr,
        name: &str,
    ) -> anyhow::Result<NodeProcess> {
        let dir = path_text(data_dir)?;
        let address = scheduler.to_string();
        let args = ["--data-dir", dir, "--scheduler", &address, "--name", name];
        // The executor-only binary, as deployed, when it was built beside
        // this one; otherwise the `executor` subcommand of this binary.
        let own = own_binary()?;
        let dedicated = own.with_file_name("delicate-executor");
        if dedicated.is_file() {
            eprintln!("[bench] executor {name}: {}", dedicated.display());
            NodeProcess::spawn_binary(name, &dedicated, &args)
        } else {
            eprintln!("[bench] executor {name}: {} executor", own.display());
            NodeProcess::spawn_binary(name, &own, &[&["executor"][..], &args].concat())
        }
    }

    fn spawn(label: &str, args: &[&str]) -> anyhow::Result<NodeProcess> {
        NodeProcess::spawn_binary(label, &own_binary()?, args)
    }

    fn spawn_binary(label: &str, binary: &Path, args: &[&str]) -> anyhow::Result<NodeProcess> {
        let mut child = Command::new(binary)
            .args(args)
            .args(["--security-level", "0"])
            .env_remove("DELICATE_SECURITY_LEVEL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {} {}", binary.display(), args.join(" ")))?;
        let stderr = child
            .stderr
            .take()
            .context("the node's stderr is not piped")?;
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        let addresses = Arc::new(Mutex::new((None, None)));
        let (tail, found) = (log_tail.clone(), addresses.clone());
        std::thread::spawn(move || drain_log(stderr, &tail, &found));
        Ok(NodeProcess {
            child,
            label: label.to_string(),
            log_tail,
            addresses,
            started: Instant::now(),
        })
    }

    fn wait_for_addresses(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let addresses = self.addresses.clone();
        let result = wait_until(
            &format!("{} to log its addresses", self.label),
            timeout,
            || {
                let (http, quic) = *addresses.lock().unwrap_or_else(|e| e.into_inner());
                Some((http?, quic?))
            },
        );
        if result.is_err() || self.has_exited() {
            bail!(
                "{} did not start; its last log lines:\n{}",
                self.label,
                self.log_tail()
            );
        }
        Ok(())
    }

    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    pub fn http(&self) -> SocketAddr {
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .expect("addresses are known after start")
    }

    pub fn quic(&self) -> SocketAddr {
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .expect("addresses are known after start")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let tail = self.log_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// CPU time (user and system) the process has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        process_cpu_time(self.pid())
    }

    /// Resident memory of the process, in bytes.
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmRSS").map(|kib| kib * 1024)
    }

    /// Peak resident memory of the process, in bytes.
    pub fn peak_resident_bytes(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmHWM").map(|kib| kib * 1024)
    }

    /// Stops the node with SIGTERM and waits up to 30 s, then kills it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.has_exited() {
            return Ok(());
        }
        // SAFETY: kill(2) on the pid of a child this struct owns and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("warning: {} exited with {status}", self.label);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!(
            "{} did not exit within 30 s of SIGTERM and was killed",
            self.label
        )
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.has_exited() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_log(
    stderr: std::process::ChildStderr,
    tail: &Mutex<VecDeque<String>>,
    addresses: &Mutex<(Option<SocketAddr>, Option<SocketAddr>)>,
) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("http.addr=") || line.contains("quic.addr=") {
            let mut found = addresses.lock().unwrap_or_else(|e| e.into_inner());
            found.0 = found.0.or(log_field(&line, "http.addr"));
            found.1 = found.1.or(log_field(&line, "quic.addr"));
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == LOG_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

fn log_field(line: &str, name: &str) -> Option<SocketAddr> {
    let marker = format!("{name}=");
    let start = line.find(&marker)? + marker.len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("the path {} is not UTF-8", path.display()))
}

/// CPU time (utime + stime of `/proc/PID/stat`) of a process.
pub fn process_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("failed to read /proc/{pid}/stat"))?;
    // The command name in brackets may contain spaces, so fields are
    // counted after its closing bracket: utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        let text = fields
            .get(index)
            .with_context(|| format!("/proc/{pid}/stat has too few fields"))?;
        Ok(text.parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(total * 1_000_000_000 / per_second))
}

/// Returns the CPU time, in µs, this process spends per sled insert of a
/// `value_len`-byte value under an increasing key, without a flush, in a
/// fresh database in `dir` with the store's settings. It counts sled's own
/// threads too, so it is the raw cost of one stored record.
pub fn raw_insert_cpu(dir: &Path, window: Duration, value_len: usize) -> anyhow::Result<f64> {
    let db = open_raw_sled(dir)?;
    let value = vec![0x5a_u8; value_len];
    let cpu_before = own_cpu_time()?;
    let began = Instant::now();
    let mut inserts = 0u64;
    while began.elapsed() < window {
        db.insert(inserts.to_be_bytes(), value.as_slice())?;
        inserts += 1;
    }
    db.flush()?;
    let cpu = own_cpu_time()? - cpu_before;
    Ok(cpu.as_secs_f64() * 1e6 / inserts.max(1) as f64)
}

/// Opens a fresh sled database in `dir` with the store's settings, for the
/// raw baselines that the store's own figures are compared with.
pub fn open_raw_sled(dir: &Path) -> anyhow::Result<sled::Db> {
    Ok(sled::Config::new()
        .path(dir)
        .cache_capacity(crate::storage::DEFAULT_CACHE_BYTES)
        .flush_every_ms(Some(crate::storage::FLUSH_EVERY_MS))
        .open()?)
}

/// CPU time this process has used, from `/proc/self/stat`.
pub fn own_cpu_time() -> anyhow::Result<Duration> {
    process_cpu_time(std::process::id())
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("failed to read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field) && line[field.len()..].starts_with(':'))
        .with_context(|| format!("/proc/{pid}/status has no {field} line"))?;
    let value = line[field.len() + 1..].trim().trim_end_matches("kB").trim();
    Ok(value.parse()?)
}

/// Sum of the sizes of the files under `path`.
pub fn dir_size(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in
        std::fs::read_dir(path).with_context(|| format!("failed to list {}", path.display()))?
    {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Polls `check` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The directory a run keeps its nodes' data in: a fresh directory under
/// the system's temporary directory, removed on drop, or one the caller
/// names, which is kept.
pub struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    pub fn new(keep: Option<&Path>, scenario: &str) -> anyhow::Result<DataDir> {
        let (path, keep) = match keep {
            Some(path) => (path.to_path_buf(), true),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos();
                let name = format!("delicate-bench-{scenario}-{}-{nanos}", std::process::id());
                (std::env::temp_dir().join(name), false)
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("failed to create {}", path.display()))?;
        Ok(DataDir { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.keep
            && let Err(error) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!("warning: failed to remove {}: {error}", self.path.display());
        }
    }
}

fn own_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("failed to find the path of this binary")
}

/// A JSON client of one node's API, with keep-alive.
#[derive(Clone)]
pub struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Http {
            base: format!("http://{addr}"),
            agent,
        }
    }

    fn read(
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut response = response.with_context(|| format!("request to {path} failed"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("failed to read the response of {path}"))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    pub fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        Self::read(path, self.agent.get(format!("{}{path}", self.base)).call())
    }

    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .with_context(|| format!("request to {path} failed"))?;
        Ok(response.body_mut().read_to_string()?)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        Self::read(
            path,
            self.agent
                .post(format!("{}{path}", self.base))
                .send_json(body),
        )
    }

    /// POSTs and expects 201 Created; returns the created record's id.
    pub fn create(&self, path: &str, body: &Value) -> anyhow::Result<u64> {
        let (status, value) = self.post(path, body)?;
        if status != 201 {
            bail!("POST {path} returned {status}: {value}");
        }
        value["id"]
            .as_u64()
            .with_context(|| format!("POST {path} returned no id: {value}"))
    }

    /// Reads one counter or gauge from `/metrics`, summing its labelled series.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.get_text("/metrics")?;
        Ok(metric_value(&text, name))
    }
}

/// Sums the samples of metric `name` in Prometheus text format.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A scheduler and executors as processes, with group `bench`, one
/// processor and bind per executor, and every executor online.
pub struct Cluster {
    pub scheduler: NodeProcess,
    pub executors: Vec<NodeProcess>,
    pub http: Http,
    pub bind_ids: Vec<u64>,
}

impl Cluster {
    pub fn start(data: &DataDir, executors: usize) -> anyhow::Result<Cluster> {
        let scheduler = NodeProcess::scheduler(&data.join("scheduler"))?;
        let http = Http::new(scheduler.http());
        let group = http.create("/api/v1/groups", &json!({"name": "bench"}))?;
        let mut bind_ids = Vec::new();
        let mut nodes = Vec::new();
        for index in 1..=executors {
            let name = format!("executor-{index}");
            let body = json!({"name": name, "host": "127.0.0.1", "machine_id": index});
            let processor = http.create("/api/v1/processors", &body)?;
            let bind = json!({"name": format!("bench-{index}"), "group_id": group, "executor_id": processor, "weight": 1});
            bind_ids.push(http.create("/api/v1/binds", &bind)?);
            nodes.push(NodeProcess::executor(
                &data.join(&name),
                scheduler.quic(),
                &name,
            )?);
        }
        let online = wait_until(
            "every executor to be online",
            Duration::from_secs(60),
            || {
                let (_, health) = http.get("/healthz").ok()?;
                (health["processors_online"].as_u64()? as usize >= executors).then_some(())
            },
        );
        if let Err(error) = online {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("{}:\n{}", n.label, n.log_tail()))
                .collect();
            bail!("{error:#}\n{}", logs.join("\n"));
        }
        Ok(Cluster {
            scheduler,
            executors: nodes,
            http,
            bind_ids,
        })
    }

    /// Creates `count` tasks with `threads` connections; returns their ids.
    pub fn create_tasks(
        &self,
        count: usize,
        threads: usize,
        body: impl Fn(usize) -> Value + Sync,
    ) -> anyhow::Result<Vec<u64>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let ids = Mutex::new(Vec::with_capacity(count));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        let http = Http::new(self.scheduler.http());
                        loop {
                            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if index >= count {
                                return Ok(());
                            }
                            let id = http.create("/api/v1/tasks", &body(index))?;
                            ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                        }
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| bail!("a task creation thread panicked"))
            })
        })?;
        Ok(ids.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the executors, then the scheduler.
    pub fn stop(mut self) -> anyhow::Result<()> {
        for executor in &mut self.executors {
            executor.stop()?;
        }
        self.scheduler.stop()
    }
}

/// Returns the value at quantile `q` (0 to 1) of `sorted`, by nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
