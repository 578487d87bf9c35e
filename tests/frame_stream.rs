//! `FrameReader` and `FrameWriter` over a real QUIC stream on 127.0.0.1:
//! frames that span reads, frames larger than the read buffer, MACs, and a
//! stream that ends inside a frame.

use std::net::SocketAddr;
use std::time::Duration;

use delicate::net::frame;
use delicate::net::link::{AuthFailure, FrameReader, FrameWriter, LinkError};
use delicate::net::messages::Message;
use delicate::net::tls;
use delicate::security::SessionToken;
use delicate::security::mac::{Direction, FrameMac, MAC_LEN};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Both endpoints and the client's connection, which must outlive the
/// stream, and the server's accept of that stream.
struct Pair {
    _server: quinn::Endpoint,
    _client: quinn::Endpoint,
    _connection: quinn::Connection,
    send: quinn::SendStream,
    /// The server learns of the stream only from its first byte, so this
    /// completes once the client has written something.
    accept: tokio::task::JoinHandle<(quinn::Connection, quinn::RecvStream)>,
}

/// Opens one stream from a client endpoint to a server endpoint.
async fn stream_pair(dir: &std::path::Path) -> Pair {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = quinn::Endpoint::server(tls::server_config(dir).unwrap(), loopback).unwrap();
    let mut client = quinn::Endpoint::client(loopback).unwrap();
    client.set_default_client_config(tls::client_config().unwrap());
    let listening = server.clone();
    let accept = tokio::spawn(async move {
        let connection = listening.accept().await.unwrap().await.unwrap();
        let (_send, recv) = connection.accept_bi().await.unwrap();
        (connection, recv)
    });
    let connection = client
        .connect(server.local_addr().unwrap(), tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (send, _recv) = connection.open_bi().await.unwrap();
    Pair {
        _server: server,
        _client: client,
        _connection: connection,
        send,
        accept,
    }
}

/// Writes `first` and returns the server's receive half of the stream.
async fn accept_after(pair: &mut Pair, first: &[u8]) -> (quinn::Connection, quinn::RecvStream) {
    pair.send.write_all(first).await.unwrap();
    (&mut pair.accept).await.unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Small and large messages: the large ones exceed the reader's 16 KiB
/// buffer, and the small ones make frames straddle its end.
fn mixed_messages() -> Vec<Message> {
    let mut messages = Vec::new();
    for index in 0..3000u64 {
        messages.push(Message::Ack { event_seq: index });
        if index % 1000 == 500 {
            let reason = "x".repeat(100_000 + index as usize);
            messages.push(Message::JoinRejected { reason });
        }
    }
    messages
}

async fn read_all(reader: &mut FrameReader) -> Vec<Message> {
    let mut received = Vec::new();
    while let Some(message) = tokio::time::timeout(TIMEOUT, reader.next())
        .await
        .expect("a frame or the end of the stream")
        .unwrap()
    {
        received.push(message);
    }
    received
}

fn assert_same(received: &[Message], sent: &[Message]) {
    assert_eq!(received.len(), sent.len(), "number of messages");
    for (index, (got, expected)) in received.iter().zip(sent).enumerate() {
        assert_eq!(
            format!("{got:?}"),
            format!("{expected:?}"),
            "message {index}"
        );
    }
}

/// Encodes `messages` as frames from sequence number 0, unsigned.
fn encode(messages: &[Message]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (seq, message) in messages.iter().enumerate() {
        frame::append_frame(&mut bytes, seq as u64, 0, message).unwrap();
    }
    bytes
}

#[test]
fn frames_in_odd_pieces_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sent = mixed_messages();
    let bytes = encode(&sent);
    let received = runtime().block_on(async {
        let mut pair = stream_pair(dir.path()).await;
        let (_connection, recv) = accept_after(&mut pair, &bytes[..1]).await;
        let mut send = pair.send;
        let rest = bytes[1..].to_vec();
        let writing = tokio::spawn(async move {
            // Pieces of 7 bytes, then of 4,099 bytes, cut frames anywhere.
            let (head, tail) = rest.split_at(7 * 500);
            for piece in head.chunks(7).chain(tail.chunks(4099)) {
                send.write_all(piece).await.unwrap();
            }
            send.finish().unwrap();
            send
        });
        let mut reader = FrameReader::new(recv);
        let received = read_all(&mut reader).await;
        let _send = writing.await.unwrap();
        received
    });
    assert_same(&received, &sent);
}

#[test]
fn signed_frames_round_trip_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let token = SessionToken::generate().unwrap();
    let sent = mixed_messages();
    let (received, tampered) = runtime().block_on(async {
        let pair = stream_pair(dir.path()).await;
        let mut writer = FrameWriter::new(pair.send);
        writer.enable_mac(FrameMac::new(&token, Direction::SchedulerToExecutor));
        let messages = sent.clone();
        let writing = tokio::spawn(async move {
            for (index, message) in messages.iter().enumerate() {
                writer.queue(message).unwrap();
                if index % 64 == 0 {
                    writer.flush().await.unwrap();
                }
            }
            writer.into_parts().await.unwrap()
        });
        let (_connection, recv) = pair.accept.await.unwrap();
        let mut reader = FrameReader::new(recv);
        reader.enable_mac(FrameMac::new(&token, Direction::SchedulerToExecutor));
        let mut received = Vec::new();
        for _ in 0..sent.len() {
            let message = tokio::time::timeout(TIMEOUT, reader.next())
                .await
                .expect("a frame")
                .unwrap()
                .expect("a message before the end");
            received.push(message);
        }

        // One more frame, signed for the next seq and then changed in its
        // payload.
        let (mut send, next_seq) = writing.await.unwrap();
        let mac = FrameMac::new(&token, Direction::SchedulerToExecutor);
        let mut bytes = Vec::new();
        let appended = frame::append_frame(
            &mut bytes,
            next_seq,
            MAC_LEN,
            &Message::Ack { event_seq: 1 },
        )
        .unwrap();
        let signed = mac.sign(next_seq, &bytes[appended.payload.clone()]);
        bytes[appended.mac].copy_from_slice(&signed);
        *bytes.last_mut().unwrap() ^= 1;
        send.write_all(&bytes).await.unwrap();
        let tampered = tokio::time::timeout(TIMEOUT, reader.next())
            .await
            .expect("the tampered frame");
        (received, tampered)
    });
    assert_same(&received, &sent);
    assert!(
        matches!(
            tampered,
            Err(LinkError::Authentication(AuthFailure::BadMac { .. }))
        ),
        "{tampered:?}"
    );
}

#[test]
fn stream_ending_inside_frame_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&[Message::Ack { event_seq: 1 }, Message::Ack { event_seq: 2 }]);
    let (first, second) = runtime().block_on(async {
        let cut = bytes.len() - 3;
        let mut pair = stream_pair(dir.path()).await;
        let (_connection, recv) = accept_after(&mut pair, &bytes[..cut]).await;
        pair.send.finish().unwrap();
        let mut reader = FrameReader::new(recv);
        let first = tokio::time::timeout(TIMEOUT, reader.next()).await.unwrap();
        let second = tokio::time::timeout(TIMEOUT, reader.next()).await.unwrap();
        (first, second)
    });
    assert!(
        matches!(first, Ok(Some(Message::Ack { event_seq: 1 }))),
        "{first:?}"
    );
    assert!(matches!(second, Err(LinkError::Truncated)), "{second:?}");
}

#[test]
fn oversized_length_prefix_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let result = runtime().block_on(async {
        let mut pair = stream_pair(dir.path()).await;
        let (_connection, recv) = accept_after(&mut pair, &u32::MAX.to_be_bytes()).await;
        let mut reader = FrameReader::new(recv);
        tokio::time::timeout(TIMEOUT, reader.next()).await.unwrap()
    });
    assert!(
        matches!(
            result,
            Err(LinkError::Frame(frame::FrameError::TooLarge { .. }))
        ),
        "{result:?}"
    );
}

#[test]
fn cancelled_read_keeps_partial_frame() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&[Message::JoinRejected {
        reason: "y".repeat(40_000),
    }]);
    let received = runtime().block_on(async {
        let half = bytes.len() / 2;
        let mut pair = stream_pair(dir.path()).await;
        let (_connection, recv) = accept_after(&mut pair, &bytes[..half]).await;
        let mut reader = FrameReader::new(recv);
        // Half a frame cannot complete, so this read is always cancelled,
        // whether or not the half has arrived yet.
        let cancelled = tokio::time::timeout(Duration::from_millis(100), reader.next()).await;
        assert!(cancelled.is_err(), "half a frame must not decode");
        pair.send.write_all(&bytes[half..]).await.unwrap();
        pair.send.finish().unwrap();
        read_all(&mut reader).await
    });
    assert_eq!(received.len(), 1, "number of messages");
    let Message::JoinRejected { reason } = &received[0] else {
        panic!("expected JoinRejected, got {:?}", received[0]);
    };
    assert_eq!(reason.len(), 40_000);
}
