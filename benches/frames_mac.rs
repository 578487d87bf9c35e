//! Cost of security level 1, measured against level 0 in the same run:
//!
//! - `join`: one executor join against an in-process scheduler over QUIC on
//!   127.0.0.1, from the connect to the `Welcome`, at level 0 and at level 1
//!   (3072-bit RSA keys, the default).
//! - `frames`: heartbeat frames written by a `FrameWriter` and read by a
//!   `FrameReader` over one QUIC stream on 127.0.0.1, 10,000 per iteration,
//!   without and with HMAC-SHA256.
//!
//! Run with `cargo bench --bench frames_mac`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use delicate::domain::entities::Processor;
use delicate::net::join::{self, ExecutorCredentials};
use delicate::net::link::{FrameReader, FrameWriter};
use delicate::net::messages::{Heartbeat, Hello, Message, PROTOCOL_VERSION};
use delicate::net::tls;
use delicate::node::scheduler::{SchedulerConfig, SchedulerNode};
use delicate::security::SessionToken;
use delicate::security::keys::{self, DEFAULT_KEY_BITS, KeyPair};
use delicate::security::mac::{Direction, FrameMac};

const FRAMES_PER_ITERATION: u64 = 10_000;
const TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn client_endpoint() -> quinn::Endpoint {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("a client endpoint");
    endpoint.set_default_client_config(tls::client_config().expect("client TLS settings"));
    endpoint
}

/// Starts a scheduler at `level` with processor `bench` holding `executor_key`.
async fn scheduler(level: u8, dir: &std::path::Path, executor_key: &KeyPair) -> SchedulerNode {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = SchedulerConfig::new(dir.to_path_buf(), any, any, level);
    config.http_workers = 1;
    // The benchmark joins far faster than any operator would.
    config.join_burst = u32::MAX;
    config.join_rate = 1e9;
    let node = SchedulerNode::start(config)
        .await
        .expect("the scheduler starts");
    let now = Utc::now();
    let processor = node
        .shared
        .store
        .create(Processor {
            id: 0,
            name: "bench".into(),
            description: String::new(),
            tag: String::new(),
            host: "127.0.0.1".into(),
            machine_id: 1,
            public_key: Some(keys::public_pem(executor_key.public_key())),
            created_time: now,
            updated_time: now,
        })
        .expect("the processor is stored");
    node.shared.register_processor(processor);
    node
}

async fn join_once(
    endpoint: &quinn::Endpoint,
    quic: SocketAddr,
    level: u8,
    credentials: &ExecutorCredentials,
) {
    let connection = endpoint
        .connect(quic, tls::SERVER_NAME)
        .unwrap()
        .await
        .expect("the QUIC handshake");
    let (send, recv) = connection.open_bi().await.unwrap();
    let (mut writer, mut reader) = (FrameWriter::new(send), FrameReader::new(recv));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        processor_name: "bench".into(),
        security_level: level,
        agent_version: "bench".into(),
        nonce: Vec::new(),
    };
    join::join_scheduler(
        &connection,
        &mut reader,
        &mut writer,
        hello,
        Some(credentials),
        TIMEOUT,
    )
    .await
    .expect("the join succeeds");
    connection.close(0u32.into(), b"");
}

fn join_cost(criterion: &mut Criterion) {
    let runtime = runtime();
    let executor_keys = Arc::new(KeyPair::generate(DEFAULT_KEY_BITS).unwrap());
    let mut group = criterion.benchmark_group("join");
    group.sample_size(20);
    for level in [0u8, 1] {
        let dir = tempfile::tempdir().unwrap();
        let node = runtime.block_on(scheduler(level, dir.path(), &executor_keys));
        let scheduler_key = match &node.public_key {
            Some(key) => key.clone(),
            None => executor_keys.public_key().clone(),
        };
        let credentials = ExecutorCredentials {
            keys: executor_keys.clone(),
            scheduler_key,
        };
        let endpoint = runtime.block_on(async { client_endpoint() });
        group.bench_function(format!("level {level}"), |bencher| {
            bencher.iter(|| {
                runtime.block_on(join_once(&endpoint, node.quic_addr, level, &credentials))
            })
        });
        runtime.block_on(node.shutdown());
    }
    group.finish();
}

/// Endpoints and connections that must outlive the stream of a benchmark.
type Keep = (
    quinn::Endpoint,
    quinn::Endpoint,
    quinn::Connection,
    quinn::Connection,
);

/// Opens one QUIC stream on loopback: the writer on the client side, the reader
/// on the server side.
async fn stream_pair() -> (Keep, FrameWriter, FrameReader) {
    let cert_dir = tempfile::tempdir().unwrap();
    let config = tls::server_config(cert_dir.path()).unwrap();
    let server = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let client = client_endpoint();
    let connecting = client
        .connect(server.local_addr().unwrap(), tls::SERVER_NAME)
        .unwrap();
    // The server must accept the `Incoming` for the client's handshake to end.
    let accepting = async { server.accept().await.unwrap().await.unwrap() };
    let (accepted, connection) = tokio::join!(accepting, connecting);
    let connection = connection.unwrap();
    let (send, _client_recv) = connection.open_bi().await.unwrap();
    let mut writer = FrameWriter::new(send);
    // The stream becomes visible to the server with its first bytes.
    writer.send(&heartbeat()).await.unwrap();
    let (_server_send, recv) = accepted.accept_bi().await.unwrap();
    let mut reader = FrameReader::new(recv);
    reader.next().await.unwrap();
    ((server, client, connection, accepted), writer, reader)
}

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat {
        cpu_usage: 12.5,
        memory_used: 1 << 30,
        memory_total: 4 << 30,
        running_instances: 3,
    })
}

async fn send_and_read(writer: &mut FrameWriter, reader: &mut FrameReader) {
    let message = heartbeat();
    let reading = async {
        for _ in 0..FRAMES_PER_ITERATION {
            reader.next().await.unwrap().expect("a frame");
        }
    };
    let writing = async {
        for index in 0..FRAMES_PER_ITERATION {
            writer.queue(&message).unwrap();
            if index % 64 == 63 {
                writer.flush().await.unwrap();
            }
        }
        writer.flush().await.unwrap();
    };
    tokio::join!(reading, writing);
}

fn frame_throughput(criterion: &mut Criterion) {
    let runtime = runtime();
    let mut group = criterion.benchmark_group("frames");
    group.sample_size(20);
    group.throughput(Throughput::Elements(FRAMES_PER_ITERATION));
    for with_mac in [false, true] {
        let (_keep, mut writer, mut reader) = runtime.block_on(stream_pair());
        if with_mac {
            let token = SessionToken::generate().unwrap();
            writer.enable_mac(FrameMac::new(&token, Direction::ExecutorToScheduler));
            reader.enable_mac(FrameMac::new(&token, Direction::ExecutorToScheduler));
        }
        let name = if with_mac { "hmac-sha256" } else { "no mac" };
        group.bench_function(name, |bencher| {
            bencher.iter(|| runtime.block_on(send_and_read(&mut writer, &mut reader)))
        });
    }
    group.finish();
}

criterion_group!(benches, join_cost, frame_throughput);
criterion_main!(benches);
