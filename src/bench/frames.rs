//! `bench frames`: frames per second one way on one QUIC stream between two
//! endpoints in this process, written with `FrameWriter` and read with
//! `FrameReader`, without MACs and with HMAC-SHA256 (security level 1). The
//! baseline of each sends the same bytes on a bare quinn stream and only
//! counts them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::process::DataDir;
use super::report::Bound;
use super::{BenchArgs, Report};
use crate::net::frame;
use crate::net::link::{FrameReader, FrameWriter};
use crate::net::messages::Message;
use crate::net::tls;
use crate::security::SessionToken;
use crate::security::mac::{Direction, FrameMac, MAC_LEN};

/// Frames queued before each flush, as a busy connection's outgoing pump
/// batches what is waiting.
const BATCH: usize = 64;
/// Any name: the client's verifier accepts the node's self-signed certificate.
const SERVER_NAME: &str = "delicate";

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let window = args.duration_or(10);
    let data = DataDir::new(args.keep_data.as_deref(), "frames")?;
    let mut report = Report::new(
        "frames",
        json!({"duration_s": window.as_secs_f64(), "batch": BATCH, "message": "Ack"}),
    );
    let token = SessionToken::generate().context("failed to draw a session token")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let rates = runtime.block_on(async {
        let pair = Endpoints::start(data.path())?;
        let phase = window / 4;
        let mut rates = Vec::new();
        for mac in [None, Some(&token)] {
            let label = if mac.is_some() {
                "HMAC-SHA256"
            } else {
                "no MAC"
            };
            let framed = framed_rate(&pair, phase, mac).await?;
            eprintln!("[frames] FrameWriter/FrameReader, {label}: {framed:.0} frames/s");
            let bare = bare_rate(&pair, phase, mac).await?;
            eprintln!("[frames] bare quinn stream, same bytes as {label}: {bare:.0} frames/s");
            rates.push((framed, bare));
        }
        pair.close().await;
        anyhow::Ok(rates)
    })?;
    let [(plain, plain_bare), (signed, signed_bare)] = rates[..] else {
        unreachable!("one pair of rates per MAC setting")
    };
    report
        .add_target(
            "mac_frames_per_second",
            signed,
            "1/s",
            Bound::AtLeast(1_000_000.0),
        )
        .baseline(signed_bare);
    report
        .add("frames_per_second", plain, "1/s")
        .baseline(plain_bare);
    report.add("bare_stream_mac_frames_per_second", signed_bare, "1/s");
    report.add("bare_stream_frames_per_second", plain_bare, "1/s");
    report.add("mac_frame_bytes", frame_len(Some(&token)) as f64, "B");
    report.add("frame_bytes", frame_len(None) as f64, "B");
    Ok(report)
}

fn message(seq: u64) -> Message {
    Message::Ack { event_seq: seq }
}

/// Creates the MAC state of the benchmark's direction, keyed with `token`.
fn frame_mac(token: &SessionToken) -> FrameMac {
    FrameMac::new(token, Direction::ExecutorToScheduler)
}

/// Length of one encoded frame of the benchmark, length prefix included.
fn frame_len(mac: Option<&SessionToken>) -> usize {
    encoded_batch(mac).len() / BATCH
}

/// `BATCH` frames as `FrameWriter` encodes them, signed when `mac` is set.
fn encoded_batch(mac: Option<&SessionToken>) -> Vec<u8> {
    let mac = mac.map(frame_mac);
    let mac_len = if mac.is_some() { MAC_LEN } else { 0 };
    let mut out = Vec::new();
    for seq in 0..BATCH as u64 {
        let appended = frame::append_frame(&mut out, seq, mac_len, &message(u64::MAX - seq))
            .expect("a small frame fits");
        if let Some(mac) = &mac {
            let signed = mac.sign(seq, &out[appended.payload]);
            out[appended.mac].copy_from_slice(&signed);
        }
    }
    out
}

struct Stream {
    send: quinn::SendStream,
    _connection: quinn::Connection,
}

struct Accepted {
    recv: quinn::RecvStream,
    _connection: quinn::Connection,
}

struct Endpoints {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    addr: SocketAddr,
}

impl Endpoints {
    fn start(dir: &std::path::Path) -> anyhow::Result<Endpoints> {
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
        let server = quinn::Endpoint::server(tls::server_config(dir)?, loopback)?;
        let mut client = quinn::Endpoint::client(loopback)?;
        client.set_default_client_config(tls::client_config()?);
        let addr = server.local_addr()?;
        Ok(Endpoints {
            server,
            client,
            addr,
        })
    }

    /// Opens a connection and one stream: the client's send half and the
    /// server's receive half. The server learns of the stream only when the
    /// first bytes arrive, so the accept runs beside the caller's writes.
    /// Both connection handles are returned because quinn closes a
    /// connection when its last handle is dropped.
    async fn stream(
        &self,
    ) -> anyhow::Result<(Stream, tokio::task::JoinHandle<anyhow::Result<Accepted>>)> {
        let server = self.server.clone();
        let accept = tokio::spawn(async move {
            let incoming = server
                .accept()
                .await
                .context("the server endpoint closed")?;
            let connection = incoming.await?;
            let (_send, recv) = connection.accept_bi().await?;
            Ok(Accepted {
                recv,
                _connection: connection,
            })
        });
        let connection = self.client.connect(self.addr, SERVER_NAME)?.await?;
        // The node's transport settings allow bidirectional streams only.
        let (send, _recv) = connection.open_bi().await?;
        Ok((
            Stream {
                send,
                _connection: connection,
            },
            accept,
        ))
    }

    async fn close(self) {
        self.client.close(0u32.into(), b"bench done");
        self.server.close(0u32.into(), b"bench done");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.wait_idle()).await;
    }
}

async fn framed_rate(
    pair: &Endpoints,
    window: Duration,
    mac: Option<&SessionToken>,
) -> anyhow::Result<f64> {
    let (stream, accept) = pair.stream().await?;
    let mut writer = FrameWriter::new(stream.send);
    if let Some(token) = mac {
        writer.enable_mac(frame_mac(token));
    }
    let began = Instant::now();
    let sender = tokio::spawn(async move {
        let mut seq = 0u64;
        while began.elapsed() < window {
            for _ in 0..BATCH {
                writer.queue(&message(seq))?;
                seq += 1;
            }
            writer.flush().await?;
        }
        writer.finish();
        anyhow::Ok(stream._connection)
    });
    let accepted = accept.await??;
    let mut reader = FrameReader::new(accepted.recv);
    if let Some(token) = mac {
        reader.enable_mac(frame_mac(token));
    }
    let mut frames = 0u64;
    while reader.next().await?.is_some() {
        frames += 1;
    }
    let elapsed = began.elapsed().as_secs_f64();
    sender.await??;
    Ok(frames as f64 / elapsed)
}

async fn bare_rate(
    pair: &Endpoints,
    window: Duration,
    mac: Option<&SessionToken>,
) -> anyhow::Result<f64> {
    let batch = bytes::Bytes::from(encoded_batch(mac));
    let (mut stream, accept) = pair.stream().await?;
    let began = Instant::now();
    let sender = tokio::spawn(async move {
        while began.elapsed() < window {
            stream.send.write_all(&batch).await?;
        }
        let _ = stream.send.finish();
        anyhow::Ok(stream._connection)
    });
    let mut recv = accept.await??.recv;
    let mut bytes = 0usize;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        bytes += chunk.bytes.len();
    }
    let elapsed = began.elapsed().as_secs_f64();
    sender.await??;
    Ok((bytes / frame_len(mac)) as f64 / elapsed)
}
