//! The executor node against a test scheduler: a quinn server on 127.0.0.1
//! that accepts the join and drives the node with `Run`, `Kill` and `Ack`.
//!
//! Set `DELICATE_TEST_LOG=debug` to see the node's logs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use delicate::domain::lifecycle::{Outcome, RunEnd};
use delicate::executor::node::{
    ExecutorHandle, ExecutorNode, ExecutorSettings, RESTART_REASON, SHUTDOWN_REASON, SHUTTING_DOWN,
};
use delicate::executor::outbox::{Outbox, RunRecord};
use delicate::executor::process::process_start_time;
use delicate::net::close_code;
use delicate::net::frame;
use delicate::net::link::{FrameReader, FrameWriter};
use delicate::net::messages::{
    Event, EventKind, Message, PROTOCOL_VERSION, RunRequest, Stream, Welcome,
};
use delicate::net::tls;
use tempfile::TempDir;

/// Limit on every wait for the node; generous because debug builds on a
/// loaded machine are slow, and a passing test never waits this long.
const DEADLINE: Duration = Duration::from_secs(30);

fn init_logs() {
    if std::env::var_os("DELICATE_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("DELICATE_TEST_LOG"))
            .with_test_writer()
            .try_init();
    }
}

async fn within<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// A stand-in scheduler: a QUIC server endpoint with its own certificate.
struct Peer {
    endpoint: quinn::Endpoint,
    _cert_dir: TempDir,
}

impl Peer {
    fn bind(addr: SocketAddr) -> Peer {
        let cert_dir = tempfile::tempdir().unwrap();
        let config = tls::server_config(cert_dir.path()).unwrap();
        let endpoint = quinn::Endpoint::server(config, addr).unwrap();
        Peer {
            endpoint,
            _cert_dir: cert_dir,
        }
    }

    fn start() -> Peer {
        Peer::bind("127.0.0.1:0".parse().unwrap())
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Accepts the executor's connection and stream and reads its Hello, but
    /// sends nothing.
    async fn accept_stream(&self) -> (quinn::Connection, quinn::SendStream, FrameReader, Message) {
        let incoming = within("a connection", self.endpoint.accept())
            .await
            .expect("endpoint open");
        let connection = within("the QUIC handshake", incoming).await.unwrap();
        let (send, recv) = within("the stream", connection.accept_bi()).await.unwrap();
        let mut reader = FrameReader::new(recv);
        let hello = within("Hello", reader.next()).await.unwrap().unwrap();
        (connection, send, reader, hello)
    }

    /// Accepts a join and replies `Welcome` with 100 ms heartbeats.
    async fn accept(&self) -> Conn {
        let (connection, send, reader, hello) = self.accept_stream().await;
        let mut conn = Conn {
            connection,
            writer: FrameWriter::new(send),
            reader,
            hello,
        };
        conn.send(Message::Welcome(welcome())).await;
        conn
    }
}

fn welcome() -> Welcome {
    Welcome {
        protocol_version: PROTOCOL_VERSION,
        processor_id: 11,
        machine_id: 3,
        heartbeat_interval_ms: 100,
        signature: Vec::new(),
        encrypted_token: Vec::new(),
    }
}

/// One accepted session of the stand-in scheduler.
struct Conn {
    connection: quinn::Connection,
    writer: FrameWriter,
    reader: FrameReader,
    hello: Message,
}

impl Conn {
    async fn send(&mut self, message: Message) {
        self.writer.send(&message).await.unwrap();
    }

    /// Returns the next message, heartbeats included.
    async fn next_any(&mut self) -> Message {
        within("a message", self.reader.next())
            .await
            .unwrap()
            .expect("stream open")
    }

    /// Returns the next message that is not a heartbeat.
    async fn next(&mut self) -> Message {
        loop {
            match self.next_any().await {
                Message::Heartbeat(_) => continue,
                message => return message,
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        match self.next().await {
            Message::Event(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Collects events until the `Finished` event of `instance_id`.
    async fn events_until_finished(&mut self, instance_id: u64) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            let done =
                event.instance_id == instance_id && matches!(event.kind, EventKind::Finished(_));
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Reads until `count` `RunAccepted` of `instance_id` arrived, and
    /// returns the events that came in between. A run's `Started` can come
    /// before the reply to a repeated request for it.
    async fn accepted_with_events(&mut self, instance_id: u64, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        let mut accepted = 0;
        while accepted < count {
            match self.next().await {
                Message::RunAccepted { instance_id: id } => {
                    assert_eq!(id, instance_id);
                    accepted += 1;
                }
                Message::Event(event) => events.push(event),
                other => panic!("expected RunAccepted for {instance_id}, got {other:?}"),
            }
        }
        events
    }

    async fn expect_accepted(&mut self, instance_id: u64) {
        match self.next().await {
            Message::RunAccepted { instance_id: id } => assert_eq!(id, instance_id),
            other => panic!("expected RunAccepted for {instance_id}, got {other:?}"),
        }
    }
}

fn run_request(instance_id: u64, command: &str) -> RunRequest {
    RunRequest {
        instance_id,
        task_id: 1,
        command: command.to_string(),
        env: BTreeMap::new(),
        run_as: None,
        stdin: None,
        timeout: 0,
        kill_grace_ms: 1000,
        output_cap: 0,
    }
}

async fn start_node(data_dir: &TempDir, scheduler: SocketAddr) -> ExecutorHandle {
    init_logs();
    let settings = ExecutorSettings::new(data_dir.path().to_path_buf(), scheduler, "worker-1");
    ExecutorNode::start(settings).await.unwrap()
}

fn outcome_of(event: &Event) -> &Outcome {
    match &event.kind {
        EventKind::Finished(outcome) => outcome,
        other => panic!("expected Finished, got {other:?}"),
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_sends_hello_and_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    let Message::Hello(hello) = &conn.hello else {
        panic!("expected Hello, got {:?}", conn.hello);
    };
    assert_eq!(hello.processor_name, "worker-1");
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.security_level, 0);
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(hello.nonce.is_empty());

    let mut heartbeats = 0;
    while heartbeats < 2 {
        if let Message::Heartbeat(heartbeat) = conn.next_any().await {
            assert!(heartbeat.memory_total > 0);
            assert!(heartbeat.memory_used <= heartbeat.memory_total);
            assert!((0.0..=100.0).contains(&heartbeat.cpu_usage));
            assert_eq!(heartbeat.running_instances, 0);
            heartbeats += 1;
        }
    }

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_run_reports_started_output_finished() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    conn.send(Message::Run(run_request(1, "echo hello"))).await;
    conn.expect_accepted(1).await;
    let events = conn.events_until_finished(1).await;

    assert_eq!(events.len(), 3, "events: {events:?}");
    assert!(events.iter().all(|event| event.instance_id == 1));
    assert!(matches!(events[0].kind, EventKind::Started { pid, .. } if pid > 0));
    assert_eq!(
        events[1].kind,
        EventKind::Output {
            stream: Stream::Stdout,
            offset: 0,
            bytes: b"hello\n".to_vec(),
        }
    );
    let outcome = outcome_of(&events[2]);
    assert_eq!(outcome.end, RunEnd::Exited);
    assert_eq!(outcome.exit_code, Some(0));
    assert!(seqs(&events).windows(2).all(|pair| pair[0] < pair[1]));

    for event in &events {
        conn.send(Message::Ack {
            event_seq: event.seq,
        })
        .await;
    }
    node.shutdown().await.unwrap();
    assert!(
        Outbox::open(dir.path())
            .unwrap()
            .pending()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_are_resent_after_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    conn.send(Message::Run(run_request(1, "echo hello"))).await;
    conn.expect_accepted(1).await;
    let first = conn.events_until_finished(1).await;
    let acknowledged = first[0].seq;
    conn.send(Message::Ack {
        event_seq: acknowledged,
    })
    .await;
    // The node handles the stream in order, so this RunAccepted proves that
    // the Ack above was applied.
    conn.send(Message::Run(run_request(2, "true"))).await;
    conn.expect_accepted(2).await;
    conn.connection
        .close(0u32.into(), b"test drops the session");

    let mut conn = peer.accept().await;
    let resent = conn.events_until_finished(2).await;
    let resent_seqs = seqs(&resent);
    assert!(!resent_seqs.contains(&acknowledged));
    assert_eq!(&resent_seqs[..2], &seqs(&first)[1..]);
    assert_eq!(resent[0], first[1]);
    assert_eq!(resent[1], first[2]);
    assert!(resent_seqs.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(resent[2..].iter().all(|event| event.instance_id == 2));

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;
    conn.send(Message::Run(run_request(5, "echo hello"))).await;
    conn.expect_accepted(5).await;
    let before = conn.events_until_finished(5).await;
    node.shutdown().await.unwrap();
    drop(conn);

    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;
    let after = conn.events_until_finished(5).await;
    assert_eq!(after, before);
    assert_eq!(outcome_of(after.last().unwrap()).exit_code, Some(0));

    // A run after the restart continues the seqs.
    conn.send(Message::Run(run_request(6, "true"))).await;
    conn.expect_accepted(6).await;
    let next = conn.events_until_finished(6).await;
    assert!(next[0].seq > before.last().unwrap().seq);

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_run_as_killed() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    conn.send(Message::Run(run_request(3, "sleep 600"))).await;
    conn.expect_accepted(3).await;
    let started = conn.next_event().await;
    assert!(matches!(started.kind, EventKind::Started { .. }));
    loop {
        if let Message::Heartbeat(heartbeat) = conn.next_any().await
            && heartbeat.running_instances == 1
        {
            break;
        }
    }
    conn.send(Message::Kill { instance_id: 3 }).await;
    let events = conn.events_until_finished(3).await;

    let outcome = outcome_of(events.last().unwrap());
    assert_eq!(outcome.end, RunEnd::Killed);
    assert_eq!(outcome.signal, Some(libc::SIGTERM));

    // A kill for an instance that is not running is ignored.
    conn.send(Message::Kill { instance_id: 999 }).await;
    conn.send(Message::Run(run_request(4, "true"))).await;
    conn.expect_accepted(4).await;

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_run_starts_one_child() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    conn.send(Message::Run(run_request(8, "sleep 600"))).await;
    conn.send(Message::Run(run_request(8, "sleep 600"))).await;
    let mut events = conn.accepted_with_events(8, 2).await;
    conn.send(Message::Kill { instance_id: 8 }).await;
    events.extend(conn.events_until_finished(8).await);
    let starts = events
        .iter()
        .filter(|event| matches!(event.kind, EventKind::Started { .. }))
        .count();
    assert_eq!(starts, 1);

    // The same id after the run ended is accepted without a new run.
    conn.send(Message::Run(run_request(8, "echo again"))).await;
    conn.expect_accepted(8).await;
    conn.send(Message::Run(run_request(9, "true"))).await;
    conn.expect_accepted(9).await;
    let later = conn.events_until_finished(9).await;
    assert!(later.iter().all(|event| event.instance_id == 9));

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_running_run_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    conn.send(Message::Run(run_request(12, "sleep 600"))).await;
    conn.expect_accepted(12).await;
    let started = conn.next_event().await;
    conn.send(Message::Ack {
        event_seq: started.seq,
    })
    .await;
    let shutdown = tokio::spawn(node.shutdown());

    let events = conn.events_until_finished(12).await;
    let finished = events.last().unwrap();
    let outcome = outcome_of(finished);
    assert_eq!(outcome.end, RunEnd::Interrupted);
    assert_eq!(outcome.reason.as_deref(), Some(SHUTDOWN_REASON));

    // The node still waits for acknowledgements, and takes no new runs.
    conn.send(Message::Run(run_request(13, "true"))).await;
    match conn.next().await {
        Message::RunRejected {
            instance_id,
            reason,
        } => {
            assert_eq!(instance_id, 13);
            assert_eq!(reason, SHUTTING_DOWN);
        }
        other => panic!("expected RunRejected, got {other:?}"),
    }
    for event in &events {
        conn.send(Message::Ack {
            event_seq: event.seq,
        })
        .await;
    }
    within("the shutdown", shutdown).await.unwrap().unwrap();

    let closed = within("the close", conn.connection.closed()).await;
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, close_code::NORMAL.into());
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    let outbox = Outbox::open(dir.path()).unwrap();
    assert!(outbox.pending().unwrap().is_empty());
    assert!(outbox.run_records().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_run_is_killed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut leftover = tokio::process::Command::new("sleep")
        .arg("600")
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = leftover.id().unwrap();
    let start_time = process_start_time(pid).expect("the child is running");
    {
        let outbox = Outbox::open(dir.path()).unwrap();
        let record = RunRecord {
            pgid: Some(pid),
            start_time: Some(start_time),
        };
        outbox.record_run(77, record).unwrap();
        outbox
            .record_run(
                78,
                RunRecord {
                    pgid: None,
                    start_time: None,
                },
            )
            .unwrap();
        outbox.flush().unwrap();
    }

    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let status = within("the leftover to die", leftover.wait())
        .await
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let mut conn = peer.accept().await;
    let first = conn.next_event().await;
    let second = conn.next_event().await;
    assert_eq!(first.instance_id, 77);
    assert_eq!(second.instance_id, 78);
    for event in [&first, &second] {
        let outcome = outcome_of(event);
        assert_eq!(outcome.end, RunEnd::Interrupted);
        assert_eq!(outcome.reason.as_deref(), Some(RESTART_REASON));
    }

    node.shutdown().await.unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    assert!(outbox.run_records().unwrap().is_empty());
}

/// Bytes of a frame carrying `Welcome`, the first frame of the peer.
fn welcome_frame() -> Vec<u8> {
    let payload = frame::encode_payload(&Message::Welcome(welcome())).unwrap();
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, 0, &[], &payload).unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_closes_connection_and_node_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;

    let huge_length = vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let mut bad_payload = Vec::new();
    frame::write_frame(
        &mut bad_payload,
        1,
        &[],
        &[0xfc, 0xff, 0xff, 0xff, 0xff, 0x7f],
    )
    .unwrap();
    let wrong_seq = {
        let payload = frame::encode_payload(&Message::Ack { event_seq: 1 }).unwrap();
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, 7, &[], &payload).unwrap();
        bytes
    };
    let random: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();

    for garbage in [huge_length, bad_payload, wrong_seq, random] {
        let (connection, mut send, _reader, _hello) = peer.accept_stream().await;
        send.write_all(&welcome_frame()).await.unwrap();
        send.write_all(&garbage).await.unwrap();
        let closed = within("the close", connection.closed()).await;
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, close_code::PROTOCOL_ERROR.into());
            }
            other => panic!("expected an application close, got {other:?}"),
        }
    }

    let mut conn = peer.accept().await;
    conn.send(Message::Run(run_request(21, "echo hello"))).await;
    conn.expect_accepted(21).await;
    let events = conn.events_until_finished(21).await;
    assert_eq!(outcome_of(events.last().unwrap()).exit_code, Some(0));

    node.shutdown().await.unwrap();
}

/// Returns the destination connection id of a QUIC long-header packet (RFC 9000,
/// section 17.2: flags, 4 bytes of version, DCID length, DCID).
fn destination_connection_id(datagram: &[u8]) -> Option<Vec<u8>> {
    if datagram.len() < 6 || datagram[0] & 0x80 == 0 {
        return None;
    }
    let len = usize::from(datagram[5]);
    datagram.get(6..6 + len).map(<[u8]>::to_vec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_retries_until_scheduler_starts() {
    let dir = tempfile::tempdir().unwrap();
    let placeholder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = placeholder.local_addr().unwrap();
    let node = start_node(&dir, addr).await;

    // The placeholder never responds. A datagram with a new connection id
    // proves that the node gave up its first attempt and tried again.
    let mut buffer = vec![0u8; 2048];
    let mut first_attempt = None;
    let retried = within("a second connection attempt", async {
        loop {
            let len = placeholder.recv(&mut buffer).await.unwrap();
            let Some(id) = destination_connection_id(&buffer[..len]) else {
                continue;
            };
            match &first_attempt {
                None => first_attempt = Some(id),
                Some(first) if *first != id => return true,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(retried);
    drop(placeholder);

    let peer = Peer::bind(addr);
    let mut conn = peer.accept().await;
    assert!(matches!(conn.hello, Message::Hello(_)));
    conn.send(Message::Run(run_request(31, "true"))).await;
    conn.expect_accepted(31).await;

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_join_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;

    let rejected = Message::JoinRejected {
        reason: "unknown processor worker-1".into(),
    };
    let other_version = Message::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION + 1,
        ..welcome()
    });
    let cases = [
        (rejected, close_code::NORMAL),
        (other_version, close_code::VERSION_MISMATCH),
    ];
    for (answer, expected_code) in cases {
        let (connection, send, _reader, _hello) = peer.accept_stream().await;
        let mut writer = FrameWriter::new(send);
        writer.send(&answer).await.unwrap();
        let closed = within("the close", connection.closed()).await;
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, expected_code.into());
            }
            other => panic!("expected an application close, got {other:?}"),
        }
    }

    let mut conn = peer.accept().await;
    conn.send(Message::Run(run_request(41, "true"))).await;
    conn.expect_accepted(41).await;

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_past_cap_ends_with_tail() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start();
    let node = start_node(&dir, peer.addr()).await;
    let mut conn = peer.accept().await;

    let mut request = run_request(51, "head -c 1000 /dev/zero");
    request.output_cap = 100;
    conn.send(Message::Run(request)).await;
    conn.expect_accepted(51).await;
    let events = conn.events_until_finished(51).await;

    let live: usize = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Output { bytes, .. } => Some(bytes.len()),
            _ => None,
        })
        .sum();
    assert_eq!(live, 100);
    let tails: Vec<_> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Tail {
                stream,
                keep,
                cut,
                bytes,
            } => Some((*stream, *keep, *cut, bytes.len())),
            _ => None,
        })
        .collect();
    assert_eq!(tails, vec![(Stream::Stdout, 50, 900, 50)]);
    assert_eq!(outcome_of(events.last().unwrap()).exit_code, Some(0));

    node.shutdown().await.unwrap();
}
