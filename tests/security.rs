//! Security levels end to end: real schedulers and executors on loopback,
//! and a test peer that joins with the library's own handshake code and then
//! misbehaves, replays a handshake or relays one through a QUIC proxy.
//!
//! Set `DELICATE_TEST_LOG=1` to see the nodes' logs.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Api, Node, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, keygen, wait_for};
use delicate::net::close_code;
use delicate::net::frame;
use delicate::net::join::{self, ExecutorCredentials, Role, Transcript};
use delicate::net::link::{FrameReader, FrameWriter};
use delicate::net::messages::{Heartbeat, Hello, Message, PROTOCOL_VERSION, Proof};
use delicate::net::tls;
use delicate::security::keys::{self, KeyPair};
use delicate::security::mac::{Direction, FrameMac};
use delicate::storage::Store;
use rsa::PublicKey;
use serde_json::{Value, json};

/// Limit on every wait; generous for debug builds on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client_endpoint() -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config().unwrap());
    endpoint
}

async fn within<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Waits until the connection closes and returns the application close code.
async fn close_code_of(connection: &quinn::Connection) -> u32 {
    match within("the connection to close", connection.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner() as u32,
        other => panic!("expected an application close, got {other:?}"),
    }
}

fn hello(name: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        processor_name: name.to_string(),
        security_level: 1,
        agent_version: "test-peer".into(),
        nonce: Vec::new(),
    }
}

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat {
        cpu_usage: 0.0,
        memory_used: 0,
        memory_total: 0,
        running_instances: 0,
    })
}

/// Group `g`, then one processor (machine id `n`) and its bind per entry.
fn setup(api: &Api, processors: &[(&str, Option<&str>)]) {
    api.create("/api/v1/groups", json!({"name": "g"}));
    for (index, (name, key)) in processors.iter().enumerate() {
        let n = index + 1;
        let mut body = json!({"name": name, "host": "127.0.0.1", "machine_id": n});
        if let Some(key) = key {
            body["public_key"] = json!(key);
        }
        api.create("/api/v1/processors", body);
        api.create(
            "/api/v1/binds",
            json!({"name": format!("b{n}"), "group_id": 1, "executor_id": n, "weight": 1}),
        );
    }
}

/// Creates a task on bind `bind_id`, runs it once and returns the finished instance.
fn run_echo(api: &Api, name: &str, bind_id: u64) -> Value {
    let task = api.create(
        "/api/v1/tasks",
        json!({"name": name, "cron_expression": "0 0 1 1 *", "command": format!("echo {name}"), "binding_ids": [bind_id]}),
    );
    let (status, body) = api.post(&format!("/api/v1/tasks/{}/run", task["id"]), json!({}));
    assert_eq!(status, 201, "{body}");
    let id = body["instances"][0]["id"].as_str().unwrap().to_string();
    wait_for(&format!("instance {id} to finish"), DEADLINE, || {
        let (_, found) = api.get(&format!("/api/v1/instances/{id}"));
        (found["status"] == "finished").then_some(found)
    })
}

fn metrics(api: &Api) -> String {
    let (_, body) = api.get("/metrics");
    body.as_str().unwrap_or_default().to_string()
}

fn wait_log(node: &Node, text: &str) {
    wait_for(&format!("the log line {text:?}"), DEADLINE, || {
        node.log_contains(text).then_some(())
    });
}

fn scheduler_key(scheduler: &Node) -> std::path::PathBuf {
    scheduler.data_dir.join(PUBLIC_KEY_FILE)
}

/// Lines of the base64 body of a PEM file that are long enough to be unique.
fn pem_body_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 40)
        .map(str::to_owned)
        .collect()
}

/// Renderings of a token a careless log line could contain.
fn token_renderings(token: &[u8]) -> Vec<String> {
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let debug_prefix = format!("{token:?}");
    vec![
        hex.clone(),
        hex.to_uppercase(),
        debug_prefix[..debug_prefix.len() - 1].to_string(),
    ]
}

#[test]
fn standalone_level_one_runs_task_without_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone(dir.path());
    let api = node.api();
    api.wait_online(1, DEADLINE);

    let finished = run_echo(&api, "standalone", 1);
    assert_eq!(finished["executor_processor_name"], "local");
    assert!(
        node.log_contains("security_level=1"),
        "the node runs at level 1 by default"
    );
    assert!(dir.path().join("scheduler").join(PRIVATE_KEY_FILE).exists());
    assert!(dir.path().join("executor").join(PRIVATE_KEY_FILE).exists());

    let (_, processor) = api.get("/api/v1/processors/1");
    let executor_pem =
        std::fs::read_to_string(dir.path().join("executor").join(PUBLIC_KEY_FILE)).unwrap();
    let expected = keys::fingerprint(&keys::parse_public_pem(&executor_pem).unwrap());
    assert_eq!(
        processor["public_key_fingerprint"],
        json!(expected),
        "{processor}"
    );
    assert!(processor.get("public_key").is_none(), "{processor}");
}

#[test]
fn dedicated_executor_binary_joins_with_keys() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let executor_pem = keygen(executor_dir.path());
    setup(&api, &[("e1", Some(executor_pem.as_str()))]);
    let key_env = scheduler_key(&scheduler);
    let mut executor = Node::dedicated_executor_with(
        executor_dir.path(),
        scheduler.quic.unwrap(),
        "e1",
        &[("DELICATE_SECURITY_PUBLIC_KEY", key_env.to_str().unwrap())],
    );
    api.wait_online(1, DEADLINE);

    let finished = run_echo(&api, "dedicated", 1);
    assert_eq!(finished["executor_processor_name"], "e1");
    assert!(
        executor.log_contains("security_level=1"),
        "{}",
        executor.log()
    );
    let status = executor.terminate();
    assert!(status.success(), "{status:?}: {}", executor.log());
}

#[test]
fn executor_with_right_keys_joins_and_secrets_stay_hidden() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let mut scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let executor_pem = keygen(executor_dir.path());
    setup(&api, &[("e1", Some(executor_pem.as_str()))]);
    let key_env = scheduler_key(&scheduler);
    let mut executor = Node::executor_with(
        executor_dir.path(),
        scheduler.quic.unwrap(),
        "e1",
        &[("DELICATE_SECURITY_PUBLIC_KEY", key_env.to_str().unwrap())],
    );
    api.wait_online(1, DEADLINE);

    let finished = run_echo(&api, "keyed", 1);
    assert_eq!(finished["executor_processor_name"], "e1");
    assert!(
        scheduler.log_contains("security.key_generated"),
        "the scheduler generated its key"
    );

    let mut responses = Vec::new();
    for path in [
        "/api/v1/processors",
        "/api/v1/processors/1",
        "/api/v1/instances?limit=100",
        "/api/v1/tasks",
        "/metrics",
        "/healthz",
    ] {
        responses.push(api.get(path).1.to_string());
    }
    let fingerprint = keys::fingerprint(&keys::parse_public_pem(&executor_pem).unwrap());
    assert!(responses[1].contains(&fingerprint), "{}", responses[1]);
    for response in &responses {
        assert!(
            !response.contains("BEGIN PUBLIC KEY"),
            "the API shows no PEM: {response}"
        );
    }

    executor.terminate();
    scheduler.terminate();
    let store = Store::open(&scheduler_dir.path().join("store"), 8 * 1024 * 1024).unwrap();
    let session = store
        .session(1)
        .unwrap()
        .expect("the scheduler stored the session");
    let token = session.token();
    assert!(!format!("{session:?}").contains(&token_renderings(token.expose().as_ref())[0]));

    let logs = [scheduler.log(), executor.log()];
    let mut secrets = token_renderings(token.expose().as_ref());
    secrets.extend(pem_body_lines(&scheduler_dir.path().join(PRIVATE_KEY_FILE)));
    secrets.extend(pem_body_lines(&executor_dir.path().join(PRIVATE_KEY_FILE)));
    for secret in &secrets {
        for (index, log) in logs.iter().enumerate() {
            assert!(!log.contains(secret), "log {index} contains a secret");
        }
        for response in &responses {
            assert!(
                !response.contains(secret),
                "an API response contains a secret"
            );
        }
    }
}

#[test]
fn executor_rejects_scheduler_with_other_key() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    setup(&api, &[("e1", Some(keygen(executor_dir.path()).as_str()))]);
    keygen(other_dir.path());
    let wrong_key = other_dir.path().join(PUBLIC_KEY_FILE);
    let executor = Node::executor_with(
        executor_dir.path(),
        scheduler.quic.unwrap(),
        "e1",
        &[("DELICATE_SECURITY_PUBLIC_KEY", wrong_key.to_str().unwrap())],
    );

    wait_log(
        &executor,
        "the scheduler's signature does not verify with the configured scheduler public key",
    );
    let wrong_fingerprint = keys::fingerprint(&keys::read_public(&wrong_key).unwrap());
    assert!(
        executor.log_contains(&wrong_fingerprint),
        "the message names the configured key"
    );
    assert!(executor.log_contains("not joining: the scheduler failed authentication"));
}

#[test]
fn scheduler_rejects_executor_key_not_on_record() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let recorded_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let recorded_pem = keygen(recorded_dir.path());
    setup(&api, &[("e1", Some(recorded_pem.as_str()))]);
    let presented_pem = keygen(executor_dir.path());
    let key_env = scheduler_key(&scheduler);
    let executor = Node::executor_with(
        executor_dir.path(),
        scheduler.quic.unwrap(),
        "e1",
        &[("DELICATE_SECURITY_PUBLIC_KEY", key_env.to_str().unwrap())],
    );

    let presented = keys::fingerprint(&keys::parse_public_pem(&presented_pem).unwrap());
    let recorded = keys::fingerprint(&keys::parse_public_pem(&recorded_pem).unwrap());
    let expected = format!(
        "processor \"e1\" presented public key {presented}, but its record holds {recorded}"
    );
    wait_log(&scheduler, &expected);
    wait_log(&executor, "join rejected");
    assert!(executor.log_contains(&presented));
    let (_, processor) = api.get("/api/v1/processors/1");
    assert_eq!(processor["online"], false, "{processor}");
    assert!(!metrics(&api).contains("delicate_joins_rejected_total 0"));
}

/// A joined test peer that writes raw frames after the handshake.
struct PeerSession {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    _reader: FrameReader,
    send: quinn::SendStream,
    next_seq: u64,
    mac: FrameMac,
}

impl PeerSession {
    async fn join(
        quic: SocketAddr,
        name: &str,
        keys: &Arc<KeyPair>,
        scheduler_key: &PublicKey,
    ) -> PeerSession {
        let endpoint = client_endpoint();
        let connection = within(
            "the QUIC handshake",
            endpoint.connect(quic, tls::SERVER_NAME).unwrap(),
        )
        .await
        .unwrap();
        let (send, recv) = connection.open_bi().await.unwrap();
        let mut reader = FrameReader::new(recv);
        let mut writer = FrameWriter::new(send);
        let credentials = ExecutorCredentials {
            keys: keys.clone(),
            scheduler_key: scheduler_key.clone(),
        };
        let joined = join::join_scheduler(
            &connection,
            &mut reader,
            &mut writer,
            hello(name),
            Some(&credentials),
            DEADLINE,
        )
        .await
        .expect("the test peer joins");
        let token = joined.token.expect("a level-1 join has a token");
        let (send, next_seq) = writer.into_parts().await.unwrap();
        PeerSession {
            _endpoint: endpoint,
            connection,
            _reader: reader,
            send,
            next_seq,
            mac: FrameMac::new(&token, Direction::ExecutorToScheduler),
        }
    }

    fn frame(&self, seq: u64, signed: bool) -> Vec<u8> {
        let payload = frame::encode_payload(&heartbeat()).unwrap();
        let mac = if signed {
            self.mac.sign(seq, &payload).to_vec()
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        frame::write_frame(&mut out, seq, &mac, &payload).unwrap();
        out
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }
}

#[test]
fn tampered_replayed_and_skipped_frames_disconnect_peer() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let peer_keys = Arc::new(KeyPair::generate(keys::MIN_KEY_BITS).unwrap());
    let peer_pem = keys::public_pem(peer_keys.public_key());
    setup(&api, &[("e1", None), ("peer", Some(peer_pem.as_str()))]);
    let quic = scheduler.quic.unwrap();
    let _executor = Node::executor(executor_dir.path(), quic, "e1");
    api.wait_online(1, DEADLINE);
    let scheduler_key = keys::read_public(&scheduler_key(&scheduler)).unwrap();

    let runtime = runtime();
    let codes = runtime.block_on(async {
        let mut codes = Vec::new();

        // A flipped payload byte after one good frame.
        let mut peer = PeerSession::join(quic, "peer", &peer_keys, &scheduler_key).await;
        let good = peer.frame(peer.next_seq, true);
        let mut flipped = peer.frame(peer.next_seq + 1, true);
        *flipped.last_mut().unwrap() ^= 0x01;
        peer.write(&good).await;
        peer.write(&flipped).await;
        codes.push(("flipped byte", close_code_of(&peer.connection).await));

        // A good frame sent twice.
        let mut peer = PeerSession::join(quic, "peer", &peer_keys, &scheduler_key).await;
        let good = peer.frame(peer.next_seq, true);
        peer.write(&good).await;
        peer.write(&good).await;
        codes.push(("replayed frame", close_code_of(&peer.connection).await));

        // A validly signed frame one past the expected sequence number.
        let mut peer = PeerSession::join(quic, "peer", &peer_keys, &scheduler_key).await;
        let skipped = peer.frame(peer.next_seq + 1, true);
        peer.write(&skipped).await;
        codes.push(("skipped sequence", close_code_of(&peer.connection).await));

        // A frame without a MAC.
        let mut peer = PeerSession::join(quic, "peer", &peer_keys, &scheduler_key).await;
        let unsigned = peer.frame(peer.next_seq, false);
        peer.write(&unsigned).await;
        codes.push(("unsigned frame", close_code_of(&peer.connection).await));
        codes
    });
    for (case, code) in codes {
        assert_eq!(code, close_code::AUTHENTICATION_FAILED, "{case}");
    }

    let text = metrics(&api);
    assert!(
        text.contains("delicate_frames_auth_failed_total{reason=\"bad_mac\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("delicate_frames_auth_failed_total{reason=\"sequence\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("delicate_frames_auth_failed_total{reason=\"unsigned\"} 1"),
        "{text}"
    );
    assert!(scheduler.log_contains("frame failed authentication; closing the connection"));
    assert!(scheduler.log_contains("peer.addr=127.0.0.1:"));

    let (_, e1) = api.get("/api/v1/processors/1");
    assert_eq!(e1["online"], true, "the other executor stays joined: {e1}");
    let finished = run_echo(&api, "after-attacks", 1);
    assert_eq!(finished["executor_processor_name"], "e1");
}

#[test]
fn handshake_replayed_on_another_connection_fails() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let peer_keys = KeyPair::generate(keys::MIN_KEY_BITS).unwrap();
    setup(
        &api,
        &[(
            "peer",
            Some(keys::public_pem(peer_keys.public_key()).as_str()),
        )],
    );
    let quic = scheduler.quic.unwrap();
    let scheduler_key = keys::read_public(&scheduler_key(&scheduler)).unwrap();

    let runtime = runtime();
    let (welcome_verified, answer, code) = runtime.block_on(async {
        let endpoint = client_endpoint();

        // Connection A: a valid join, signed step by step, recording Hello and Proof.
        let first = endpoint
            .connect(quic, tls::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (send, recv) = first.open_bi().await.unwrap();
        let (mut writer, mut reader) = (FrameWriter::new(send), FrameReader::new(recv));
        let mut recorded_hello = hello("peer");
        recorded_hello.nonce = join::fresh_nonce().unwrap();
        writer
            .send(&Message::Hello(recorded_hello.clone()))
            .await
            .unwrap();
        let Some(Message::Challenge(challenge)) = within("Challenge", reader.next()).await.unwrap()
        else {
            panic!("expected Challenge");
        };
        let exporter = join::exporter_secret(&first).unwrap();
        let transcript = Transcript {
            protocol_version: PROTOCOL_VERSION,
            processor_name: "peer",
            executor_nonce: &recorded_hello.nonce,
            scheduler_nonce: &challenge.nonce,
            exporter: &exporter,
        };
        let recorded_proof = Proof {
            public_key: keys::public_der(peer_keys.public_key()),
            signature: peer_keys.sign(&transcript.bytes(Role::Executor)).unwrap(),
        };
        writer
            .send(&Message::Proof(recorded_proof.clone()))
            .await
            .unwrap();
        let Some(Message::Welcome(welcome)) = within("Welcome", reader.next()).await.unwrap()
        else {
            panic!("expected Welcome on the original connection");
        };
        let welcome_verified = keys::verify(
            &scheduler_key,
            &transcript.bytes(Role::Scheduler),
            &welcome.signature,
        )
        .is_ok();

        // Connection B: the recorded Hello and Proof again.
        let second = endpoint
            .connect(quic, tls::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (send, recv) = second.open_bi().await.unwrap();
        let (mut writer, mut reader) = (FrameWriter::new(send), FrameReader::new(recv));
        writer.send(&Message::Hello(recorded_hello)).await.unwrap();
        let Some(Message::Challenge(_)) = within("Challenge", reader.next()).await.unwrap() else {
            panic!("expected Challenge");
        };
        writer.send(&Message::Proof(recorded_proof)).await.unwrap();
        let answer = within("the answer to the replayed Proof", reader.next())
            .await
            .unwrap();
        (welcome_verified, answer, close_code_of(&second).await)
    });

    assert!(welcome_verified, "the original join is valid");
    let Some(Message::JoinRejected { reason }) = answer else {
        panic!("expected JoinRejected, got {answer:?}")
    };
    assert!(reason.contains("does not verify"), "{reason}");
    assert_eq!(code, close_code::AUTHENTICATION_FAILED);
}

/// Relays every connection to `listener` to `target` over a new QUIC
/// connection, copying the bytes of the first stream both ways.
async fn relay(listener: quinn::Endpoint, target: SocketAddr) {
    let client = client_endpoint();
    while let Some(incoming) = listener.accept().await {
        let Ok(inbound) = incoming.await else {
            continue;
        };
        let Ok(outbound) = client.connect(target, tls::SERVER_NAME).unwrap().await else {
            continue;
        };
        tokio::spawn(async move {
            let Ok((mut in_send, mut in_recv)) = inbound.accept_bi().await else {
                return;
            };
            let Ok((mut out_send, mut out_recv)) = outbound.open_bi().await else {
                return;
            };
            let upstream = tokio::io::copy(&mut in_recv, &mut out_send);
            let downstream = tokio::io::copy(&mut out_recv, &mut in_send);
            let _ = tokio::join!(upstream, downstream);
            drop((inbound, outbound));
        });
    }
}

#[test]
fn join_relayed_through_quic_proxy_fails() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let proxy_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    setup(&api, &[("e1", Some(keygen(executor_dir.path()).as_str()))]);

    let runtime = runtime();
    let proxy_addr = runtime.block_on(async {
        let config = tls::server_config(proxy_dir.path()).unwrap();
        let listener = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(relay(listener, scheduler.quic.unwrap()));
        addr
    });
    let key_env = scheduler_key(&scheduler);
    let executor = Node::executor_with(
        executor_dir.path(),
        proxy_addr,
        "e1",
        &[("DELICATE_SECURITY_PUBLIC_KEY", key_env.to_str().unwrap())],
    );

    wait_log(
        &scheduler,
        "the join signature of processor \"e1\" does not verify",
    );
    wait_log(&executor, "join rejected");
    assert!(
        !scheduler.log_contains("executor joined"),
        "no join completed through the proxy"
    );
    let (_, processor) = api.get("/api/v1/processors/1");
    assert_eq!(processor["online"], false, "{processor}");
}

#[test]
fn join_attempts_are_rate_limited_per_address() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let quic = scheduler.quic.unwrap();

    let runtime = runtime();
    let codes = runtime.block_on(async {
        let endpoint = client_endpoint();
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..60 {
            let endpoint = endpoint.clone();
            attempts.spawn(async move {
                let connection = endpoint
                    .connect(quic, tls::SERVER_NAME)
                    .unwrap()
                    .await
                    .unwrap();
                // A rate-limited connection may close before the stream opens.
                if let Ok((send, _recv)) = connection.open_bi().await {
                    let mut writer = FrameWriter::new(send);
                    let mut attempt = hello("nobody");
                    attempt.nonce = join::fresh_nonce().unwrap();
                    let _ = writer.send(&Message::Hello(attempt)).await;
                }
                close_code_of(&connection).await
            });
        }
        attempts.join_all().await
    });

    let limited = codes
        .iter()
        .filter(|code| **code == close_code::TOO_MANY_JOINS)
        .count();
    assert!(
        limited > 0,
        "some of 60 concurrent attempts exceed the burst: {codes:?}"
    );
    assert!(
        codes.contains(&close_code::JOIN_REJECTED),
        "attempts within the burst reach the join checks"
    );
    let text = metrics(&api);
    assert!(
        !text.contains("delicate_joins_rate_limited_total 0"),
        "{text}"
    );
    wait_log(&scheduler, "join rate limit exceeded");
}

#[test]
fn level_zero_joins_without_keys_and_warns() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let level_zero = [("DELICATE_SECURITY_LEVEL", "0")];
    let scheduler = Node::scheduler_with(
        scheduler_dir.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &level_zero,
    );
    let api = scheduler.api();
    setup(&api, &[("e1", None)]);
    let _executor = Node::executor_with(
        executor_dir.path(),
        scheduler.quic.unwrap(),
        "e1",
        &level_zero,
    );
    api.wait_online(1, DEADLINE);

    assert!(
        scheduler.log_contains("security level 0: any node that reaches the QUIC address can join")
    );
    assert_eq!(run_echo(&api, "open", 1)["executor_processor_name"], "e1");
    assert!(
        !scheduler_dir.path().join(PRIVATE_KEY_FILE).exists(),
        "level 0 generates no key"
    );
    assert!(
        !executor_dir.path().join(PRIVATE_KEY_FILE).exists(),
        "level 0 generates no key"
    );
}

#[test]
fn level_zero_executor_against_level_one_fails() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    setup(&api, &[("e1", None)]);
    let executor = Node::executor_with(
        executor_dir.path(),
        scheduler.quic.unwrap(),
        "e1",
        &[("DELICATE_SECURITY_LEVEL", "0")],
    );

    let message = "executor runs at security level 0, this scheduler at security level 1";
    wait_log(&scheduler, message);
    wait_log(&executor, message);
    let (_, processor) = api.get("/api/v1/processors/1");
    assert_eq!(processor["online"], false, "{processor}");
}

#[test]
fn level_one_executor_without_scheduler_key_refuses_to_start() {
    let executor_dir = tempfile::tempdir().unwrap();
    let mut executor = Node::executor_with(
        executor_dir.path(),
        "127.0.0.1:9".parse().unwrap(),
        "e1",
        &[],
    );
    let status = executor.wait_exit(DEADLINE);
    assert!(!status.success());
    assert!(
        executor.log_contains("security level 1 needs the scheduler's public key"),
        "{}",
        executor.log()
    );
    assert!(executor.log_contains("DELICATE_SECURITY_PUBLIC_KEY"));
}

#[test]
fn processor_public_key_must_be_pem() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let (status, body) = api.post(
        "/api/v1/processors",
        json!({"name": "p1", "host": "127.0.0.1", "machine_id": 1, "public_key": "not a key"}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("public_key"), "{body}");
}
