//! Bad input gets 400, 409 or 422 naming the field, and hostile network
//! input leaves the scheduler serving.

mod common;

use std::time::Duration;

use common::{Api, Node, wait_for};
use delicate::net::{frame, messages, tls};
use serde_json::{Value, json};

fn assert_error(response: (u16, Value), status: u16, field: &str, words: &str) {
    let (code, body) = response;
    assert_eq!(code, status, "body: {body}");
    assert_eq!(body["error"]["field"], field, "body: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(words),
        "message {message:?} should contain {words:?}"
    );
}

fn setup(api: &Api) {
    api.create("/api/v1/groups", json!({"name": "g"}));
    api.create(
        "/api/v1/processors",
        json!({"name": "p1", "host": "10.0.0.1", "machine_id": 1}),
    );
    api.create(
        "/api/v1/binds",
        json!({"name": "b1", "group_id": 1, "executor_id": 1, "weight": 1}),
    );
}

#[test]
fn invalid_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::scheduler(dir.path());
    let api = node.api();
    setup(&api);

    let task = |cron: &str, zone: &str| json!({"name": "t", "command": "true", "cron_expression": cron, "time_zone": zone, "binding_ids": [1]});
    assert_error(
        api.post("/api/v1/tasks", task("61 * * * *", "UTC")),
        422,
        "cron_expression",
        "61",
    );
    assert_error(
        api.post("/api/v1/tasks", task("0 0 31 2 *", "UTC")),
        422,
        "cron_expression",
        "never",
    );
    assert_error(
        api.post("/api/v1/tasks", task("* * * * *", "Mars/Base")),
        422,
        "time_zone",
        "Mars/Base",
    );
    assert_error(
        api.post(
            "/api/v1/processors",
            json!({"name": "p2", "host": "10.0.0.2", "machine_id": 1024}),
        ),
        422,
        "machine_id",
        "1024",
    );
    assert_error(
        api.post(
            "/api/v1/processors",
            json!({"name": "p2", "host": "10.0.0.2 x", "machine_id": 2}),
        ),
        422,
        "host",
        "white space",
    );
    assert_error(
        api.post("/api/v1/groups", json!({"name": "g"})),
        409,
        "name",
        "already exists",
    );
    assert_error(
        api.post(
            "/api/v1/processors",
            json!({"name": "p9", "host": "h", "machine_id": 1}),
        ),
        409,
        "machine_id",
        "already exists",
    );
    assert_error(
        api.post(
            "/api/v1/binds",
            json!({"name": "b2", "group_id": 1, "executor_id": 1, "weight": 101}),
        ),
        422,
        "weight",
        "101",
    );
    assert_error(
        api.post(
            "/api/v1/binds",
            json!({"name": "b3", "group_id": 1, "executor_id": 99, "weight": 1}),
        ),
        422,
        "executor_id",
        "processor 99 not found",
    );
    assert_error(
        api.post("/api/v1/tasks", json!({"name": "t", "command": "true", "cron_expression": "* * * * *", "timeout": "soon"})),
        400, "timeout", "invalid",
    );
    assert_error(
        api.post(
            "/api/v1/tasks",
            json!({"name": "t", "cron_expression": "* * * * *"}),
        ),
        422,
        "command",
        "required",
    );

    let (status, body) = api.delete("/api/v1/processors/1");
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"b1\""), "names the bind: {message}");

    let (_, processors) = api.get("/api/v1/processors");
    assert_eq!(
        processors.as_array().unwrap().len(),
        1,
        "nothing half-created: {processors}"
    );
}

fn quic_client() -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config().unwrap());
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_leave_scheduler_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::scheduler(dir.path());
    let quic = node.quic.unwrap();
    let http = node.http.unwrap();

    // A length prefix far above the maximum.
    let endpoint = quic_client();
    let connection = endpoint
        .connect(quic, tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref close) if close.error_code == 1u32.into()),
        "{closed:?}"
    );

    // A well-sized frame of random bytes.
    let connection = endpoint
        .connect(quic, tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let mut garbage = Vec::new();
    let noise: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    frame::write_frame(&mut garbage, 0, &[], &noise).unwrap();
    send.write_all(&garbage).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );

    // Raw UDP noise at the QUIC port.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for size in [1usize, 20, 1200, 1500] {
        socket.send_to(&vec![0xA5; size], quic).unwrap();
    }

    // A valid frame with an oversized declared message.
    let connection = endpoint
        .connect(quic, tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let hello = messages::Message::Hello(messages::Hello {
        protocol_version: messages::PROTOCOL_VERSION,
        processor_name: "x".repeat(3 * 1024 * 1024),
        security_level: 0,
        agent_version: String::new(),
        nonce: Vec::new(),
    });
    let oversized = frame::encode_payload(&hello).unwrap();
    assert!(
        frame::write_frame(&mut Vec::new(), 0, &[], &oversized).is_err(),
        "the writer refuses frames over the maximum"
    );
    let payload = frame::encode_payload(&messages::Message::Ack { event_seq: 1 }).unwrap();
    let mut wrong_first = Vec::new();
    frame::write_frame(&mut wrong_first, 0, &[], &payload).unwrap();
    send.write_all(&wrong_first).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );

    let api = Api::new(http);
    let health = tokio::task::spawn_blocking(move || {
        wait_for("healthz", Duration::from_secs(10), || {
            let (status, body) = api.get("/healthz");
            (status == 200).then_some(body)
        })
    })
    .await
    .unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = tokio::task::spawn_blocking(move || {
        let (_, body) = Api::new(http).get("/metrics");
        body.as_str().unwrap_or_default().to_string()
    })
    .await
    .unwrap();
    assert!(
        metrics.contains("delicate_frames_rejected_total 3"),
        "{metrics}"
    );
}
