//! Time to encode and to decode one frame (length prefix, header, bincode
//! payload, no MAC) for a small and a typical message. `encode` builds the
//! payload and the frame in new vectors, and `append` encodes in place into
//! a reused buffer, as `FrameWriter` does.
//!
//! Run with `cargo bench --bench frame`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use delicate::net::frame;
use delicate::net::messages::{Message, RunRequest};

fn messages() -> [(&'static str, Message); 2] {
    let run = RunRequest {
        instance_id: 1 << 40,
        task_id: 42,
        command: "/usr/local/bin/backup --incremental /var/lib/data".into(),
        env: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
        run_as: None,
        stdin: None,
        timeout: 3600,
        kill_grace_ms: 5000,
        output_cap: 1 << 20,
    };
    [
        ("ack", Message::Ack { event_seq: 123_456 }),
        ("run", Message::Run(run)),
    ]
}

fn encode(message: &Message) -> Vec<u8> {
    let payload = frame::encode_payload(message).expect("the message encodes");
    let mut out = Vec::with_capacity(payload.len() + 16);
    frame::write_frame(&mut out, 7, &[], &payload).expect("the frame fits");
    out
}

/// Appends one frame to `out`, cleared first so it is reused across calls.
fn append(out: &mut Vec<u8>, message: &Message) -> usize {
    out.clear();
    frame::append_frame(out, 7, 0, message).expect("the frame fits");
    out.len()
}

fn decode(bytes: &[u8]) -> Message {
    let len = frame::check_len(u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")))
        .expect("a valid length");
    let parts = frame::split_frame(&bytes[4..4 + len]).expect("a valid frame");
    frame::decode_payload(parts.payload).expect("a valid payload")
}

fn frames(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("frame");
    for (name, message) in messages() {
        group.bench_function(format!("encode {name}"), |bencher| {
            bencher.iter(|| encode(black_box(&message)))
        });
        let mut buffer = Vec::new();
        group.bench_function(format!("append {name}"), |bencher| {
            bencher.iter(|| append(&mut buffer, black_box(&message)))
        });
        let bytes = encode(&message);
        group.bench_function(format!("decode {name}"), |bencher| {
            bencher.iter(|| decode(black_box(&bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
