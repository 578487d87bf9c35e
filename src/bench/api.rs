//! `bench api`: task creations, then instance reads, over HTTP with
//! keep-alive, one thread and connection each. The API sends the response
//! to a creation only after the store has flushed it, so the creation rate
//! is a durable rate. The baseline is the raw sled flush rate of one thread
//! on the same disk, measured just before the scheduler starts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::process::{DataDir, Http, NodeProcess, open_raw_sled, own_cpu_time, quantile};
use super::report::Bound;
use super::{BenchArgs, Report, progress};

/// Instances created before the read phase, so listings return full pages.
const SEED_INSTANCES: usize = 200;
/// Length of the raw sled flush baseline.
const BASELINE_WINDOW: Duration = Duration::from_secs(5);
/// Bytes per baseline insert: about a stored task with its unique-name key.
const BASELINE_VALUE_LEN: usize = 400;

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let max_creates = args.tasks_or(100_000);
    let window = args.duration_or(30);
    let connections = args.connections.max(1);
    let data = DataDir::new(args.keep_data.as_deref(), "api")?;
    let mut report = Report::new(
        "api",
        json!({"max_creates": max_creates, "duration_s": window.as_secs_f64(), "connections": connections}),
    );

    let baseline = raw_flush_rate(&data.join("baseline"), BASELINE_WINDOW)?;
    eprintln!("[api] baseline: {baseline:.0} sled insert-and-flush calls per second, one thread");

    let mut scheduler = NodeProcess::scheduler(&data.join("scheduler"))?;
    let http = Http::new(scheduler.http());
    let group = http.create("/api/v1/groups", &json!({"name": "api"}))?;
    let processor = http.create(
        "/api/v1/processors",
        &json!({"name": "api", "host": "127.0.0.1", "machine_id": 1}),
    )?;
    http.create(
        "/api/v1/binds",
        &json!({"name": "api", "group_id": group, "executor_id": processor, "weight": 1}),
    )?;
    seed_instances(&http)?;

    let phase = window / 2;
    let client_cpu_before = own_cpu_time()?;
    let server_cpu_before = scheduler.cpu_time()?;
    let creates = run_phase(
        "create",
        &scheduler,
        connections,
        phase,
        max_creates,
        |client, index| {
            let body = format!(
                r#"{{"name":"api-{index}","cron_expression":"0 0 0 1 1 *","command":"true"}}"#
            );
            let status = client.request("POST", "/api/v1/tasks", body.as_bytes())?;
            if status != 201 {
                bail!(
                    "POST /api/v1/tasks returned {status}: {}",
                    String::from_utf8_lossy(client.body())
                );
            }
            Ok(())
        },
    )?;
    let reads = run_phase(
        "read",
        &scheduler,
        connections,
        phase,
        usize::MAX,
        |client, _| {
            let status = client.request("GET", "/api/v1/instances?limit=20", b"")?;
            if status != 200 {
                bail!(
                    "GET /api/v1/instances returned {status}: {}",
                    String::from_utf8_lossy(client.body())
                );
            }
            Ok(())
        },
    )?;
    let client_cpu = (own_cpu_time()? - client_cpu_before).as_secs_f64();
    let server_cpu = (scheduler.cpu_time()? - server_cpu_before).as_secs_f64();
    scheduler.stop()?;

    report
        .add_target(
            "creates_per_second",
            creates.rate(),
            "1/s",
            Bound::AtLeast(10_000.0),
        )
        .baseline(baseline);
    report.add("creates", creates.latencies.len() as f64, "count");
    report.add(
        "create_latency_p50",
        quantile(&creates.latencies, 0.5),
        "ms",
    );
    report.add_target(
        "create_latency_p99",
        quantile(&creates.latencies, 0.99),
        "ms",
        Bound::AtMost(20.0),
    );
    report.add(
        "create_latency_max",
        quantile(&creates.latencies, 1.0),
        "ms",
    );
    report.add("reads_per_second", reads.rate(), "1/s");
    report.add("read_latency_p50", quantile(&reads.latencies, 0.5), "ms");
    report.add("read_latency_p99", quantile(&reads.latencies, 0.99), "ms");
    report.add(
        "scheduler_cpu_share",
        server_cpu / (2.0 * phase.as_secs_f64()),
        "cores",
    );
    report.add(
        "client_cpu_share",
        client_cpu / (2.0 * phase.as_secs_f64()),
        "cores",
    );
    Ok(report)
}

/// Returns how many times per second one thread can insert a value and
/// flush sled, with the store's sled settings, in a fresh database in `dir`.
fn raw_flush_rate(dir: &Path, window: Duration) -> anyhow::Result<f64> {
    let db = open_raw_sled(dir)?;
    let value = vec![0x5a_u8; BASELINE_VALUE_LEN];
    let began = Instant::now();
    let mut flushes = 0u64;
    while began.elapsed() < window {
        db.insert(flushes.to_be_bytes(), value.as_slice())?;
        db.flush()?;
        flushes += 1;
    }
    Ok(flushes as f64 / began.elapsed().as_secs_f64())
}

fn seed_instances(http: &Http) -> anyhow::Result<()> {
    let body = json!({"name": "api-seed", "cron_expression": "0 0 0 1 1 *", "command": "true"});
    let task = http.create("/api/v1/tasks", &body)?;
    for _ in 0..SEED_INSTANCES {
        let (status, value) = http.post(&format!("/api/v1/tasks/{task}/run"), &json!({}))?;
        if !(200..300).contains(&status) {
            bail!("POST /api/v1/tasks/{task}/run returned {status}: {value}");
        }
    }
    Ok(())
}

struct Phase {
    /// Sorted, in milliseconds.
    latencies: Vec<f64>,
    elapsed: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Calls `request` from `connections` threads until `window` passes or
/// `limit` requests were made.
fn run_phase(
    name: &str,
    scheduler: &NodeProcess,
    connections: usize,
    window: Duration,
    limit: usize,
    request: impl Fn(&mut RawClient, usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Phase> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let began = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut client = RawClient::connect(scheduler.http())?;
                    let mut own = Vec::new();
                    while began.elapsed() < window {
                        let index = next.fetch_add(1, Relaxed);
                        if index >= limit {
                            break;
                        }
                        let sent = Instant::now();
                        request(&mut client, index)?;
                        own.push(sent.elapsed().as_secs_f64() * 1000.0);
                        done.fetch_add(1, Relaxed);
                    }
                    latencies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(own);
                    Ok(())
                })
            })
            .collect();
        let mut last = 0;
        while !workers.iter().all(|worker| worker.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            if began.elapsed().as_secs() > last {
                last = began.elapsed().as_secs();
                progress(
                    "api",
                    began.elapsed(),
                    &format!("{name}: {} requests", done.load(Relaxed)),
                );
            }
        }
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| bail!("a request thread panicked"))
        })
    })?;
    let elapsed = began.elapsed();
    let mut latencies = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
    latencies.sort_by(f64::total_cmp);
    Ok(Phase { latencies, elapsed })
}

/// A keep-alive HTTP/1.1 client on one connection that writes requests by
/// hand and reads responses by their `Content-Length`. It costs the shared
/// cores far less per request than a general client, so more of them are
/// left to the server being measured.
struct RawClient {
    stream: TcpStream,
    /// Received bytes: the current response and any bytes after it.
    buffer: Vec<u8>,
    /// Range of the current response's body in `buffer`.
    body: std::ops::Range<usize>,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr)
            .with_context(|| format!("failed to connect to the scheduler's HTTP API at {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(RawClient {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
            body: 0..0,
        })
    }

    /// Sends one request and reads its response; returns the status code.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("content-type: application/json\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream
            .write_all(&bytes)
            .with_context(|| format!("failed to send {method} {path}"))?;
        self.read_response()
            .with_context(|| format!("failed to read the response to {method} {path}"))
    }

    /// Returns the body of the last response.
    fn body(&self) -> &[u8] {
        &self.buffer[self.body.clone()]
    }

    fn read_response(&mut self) -> anyhow::Result<u16> {
        // Drop the previous response. The server sends nothing unasked, so
        // nothing after it is lost.
        self.buffer.drain(..self.body.end.min(self.buffer.len()));
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])
            .context("the response head is not UTF-8")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("invalid status line in {head:?}"))?;
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .with_context(|| format!("no content-length in {head:?}"))?;
        while self.buffer.len() < head_end + length {
            self.fill()?;
        }
        self.body = head_end..head_end + length;
        Ok(status)
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk)?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}
