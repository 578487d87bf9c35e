//! The per-stream output cap: which bytes of a child's stdout or stderr are
//! kept, and how the receiver reassembles them.
//!
//! A stream keeps at most `cap` bytes. Bytes at offsets `[0, cap)` are emitted
//! live as they arrive, in chunks that never straddle the offset `cap / 2`.
//! Once the stream grows past `cap`, later bytes only enter a ring buffer that
//! contains the last `cap / 2` bytes, and [`OutputCap::finish`] returns a
//! [`Tail`]. The receiver then keeps the first `cap / 2` bytes it received,
//! drops the rest, and appends [`cut_marker`] and the tail bytes
//! ([`apply_tail`]). Memory per stream is at most `cap / 2` bytes of ring
//! buffer, whatever the child writes.
//!
//! This module does no I/O and makes no UTF-8 assumption.

use serde::{Deserialize, Serialize};

/// Default cap per output stream, in bytes (1 MiB).
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;

/// Instruction to the receiver of a stream that grew past its cap.
///
/// The receiver keeps the first `keep` bytes already received, drops the
/// rest, then appends `cut_marker(cut)` and `bytes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// Number of leading bytes to keep, always `cap / 2`.
    pub keep: u64,
    /// Number of bytes dropped between the kept head and `bytes`.
    pub cut: u64,
    /// The last `cap / 2` bytes of the stream.
    pub bytes: Vec<u8>,
}

/// A run of bytes to emit live, at `offset` from the start of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveChunk<'a> {
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// State of one capped output stream.
#[derive(Clone, Debug)]
pub struct OutputCap {
    cap: u64,
    half: u64,
    /// Total bytes pushed so far, including dropped ones.
    written: u64,
    ring: Ring,
}

impl OutputCap {
    /// Creates the state for a stream capped at `cap` bytes.
    pub fn new(cap: usize) -> Self {
        let half = cap / 2;
        Self {
            cap: cap as u64,
            half: half as u64,
            written: 0,
            ring: Ring::new(half),
        }
    }

    /// Total bytes pushed so far, including the ones beyond the cap.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Pushes bytes read from the stream and returns the parts to emit live:
    /// at most two chunks, split at `cap / 2`, borrowing from `bytes`.
    pub fn push<'a>(&mut self, bytes: &'a [u8]) -> Vec<LiveChunk<'a>> {
        let start = self.written;
        let end = start + bytes.len() as u64;
        self.written = end;

        // Every byte at or past `cap / 2` may end up among the last `cap / 2`
        // bytes of the stream, so all of them go into the ring.
        if end > self.half {
            let skip = self.half.saturating_sub(start) as usize;
            self.ring.push(&bytes[skip..]);
        }

        let mut chunks = Vec::with_capacity(2);
        let live_end = end.min(self.cap);
        if start >= live_end {
            return chunks;
        }
        let live = &bytes[..(live_end - start) as usize];

        if start < self.half && live_end > self.half {
            let split = (self.half - start) as usize;
            chunks.push(LiveChunk {
                offset: start,
                bytes: &live[..split],
            });
            chunks.push(LiveChunk {
                offset: self.half,
                bytes: &live[split..],
            });
        } else {
            chunks.push(LiveChunk {
                offset: start,
                bytes: live,
            });
        }
        chunks
    }

    /// Ends the stream. Returns the tail to send if the stream grew past the
    /// cap, and `None` if every byte was already emitted live.
    pub fn finish(self) -> Option<Tail> {
        if self.written <= self.cap {
            return None;
        }
        let bytes = self.ring.into_ordered();
        Some(Tail {
            keep: self.half,
            cut: self.written - self.half - bytes.len() as u64,
            bytes,
        })
    }
}

/// Builds the marker stored in place of the bytes cut from a stream, such as
/// `\n[delicate: 4718592 bytes cut]\n`.
pub fn cut_marker(cut: u64) -> Vec<u8> {
    format!("\n[delicate: {cut} bytes cut]\n").into_bytes()
}

/// Applies a tail to the live bytes stored for a stream, so `stored` becomes
/// the first `keep` bytes, the cut marker and the tail bytes.
///
/// If `stored` is shorter than `keep` (some live chunks were lost), its bytes
/// are all kept.
pub fn apply_tail(stored: &mut Vec<u8>, tail: &Tail) {
    let keep = usize::try_from(tail.keep).unwrap_or(usize::MAX);
    stored.truncate(keep);
    stored.extend_from_slice(&cut_marker(tail.cut));
    stored.extend_from_slice(&tail.bytes);
}

/// Fixed-size ring buffer that contains the last `capacity` bytes pushed.
#[derive(Clone, Debug)]
struct Ring {
    capacity: usize,
    /// Allocated on first use, so streams that stay below `cap / 2` cost nothing.
    buffer: Vec<u8>,
    /// Index of the next byte to overwrite once the buffer is full.
    next: usize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Vec::new(),
            next: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        if bytes.len() >= self.capacity {
            bytes = &bytes[bytes.len() - self.capacity..];
        }

        // Fill the buffer up to its capacity before wrapping around.
        let room = self.capacity - self.buffer.len();
        let appended = room.min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..appended]);
        bytes = &bytes[appended..];

        while !bytes.is_empty() {
            let run = (self.capacity - self.next).min(bytes.len());
            self.buffer[self.next..self.next + run].copy_from_slice(&bytes[..run]);
            self.next = (self.next + run) % self.capacity;
            bytes = &bytes[run..];
        }
    }

    fn into_ordered(mut self) -> Vec<u8> {
        self.buffer.rotate_left(self.next);
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference model: the whole stream in memory, cut afterwards.
    fn expected_stored(stream: &[u8], cap: usize) -> Vec<u8> {
        if stream.len() <= cap {
            return stream.to_vec();
        }
        let half = cap / 2;
        let cut = (stream.len() - 2 * half) as u64;
        let mut stored = stream[..half].to_vec();
        stored.extend_from_slice(&cut_marker(cut));
        stored.extend_from_slice(&stream[stream.len() - half..]);
        stored
    }

    /// Deterministic bytes that differ by position, so a misplaced byte shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Pushes `stream` in chunks of the given sizes (cycled) and reassembles
    /// it the way a receiver does, checking the chunk rules on the way.
    fn run_through_cap(stream: &[u8], cap: usize, chunk_sizes: &[usize]) -> Vec<u8> {
        let half = (cap / 2) as u64;
        let mut state = OutputCap::new(cap);
        let mut stored = Vec::new();
        let mut rest = stream;
        let mut sizes = chunk_sizes.iter().cycle();

        while !rest.is_empty() {
            let size = (*sizes.next().unwrap()).min(rest.len());
            let (piece, tail) = rest.split_at(size);
            rest = tail;
            for chunk in state.push(piece) {
                let chunk_end = chunk.offset + chunk.bytes.len() as u64;
                assert_eq!(
                    chunk.offset,
                    stored.len() as u64,
                    "live chunks are contiguous"
                );
                assert!(chunk_end <= cap as u64, "live chunk ends past the cap");
                assert!(
                    chunk.offset >= half || chunk_end <= half,
                    "live chunk at {} straddles cap / 2",
                    chunk.offset
                );
                stored.extend_from_slice(chunk.bytes);
            }
        }

        let written = state.written();
        assert_eq!(written, stream.len() as u64);
        match state.finish() {
            Some(tail) => {
                assert!(stream.len() > cap, "tail for a stream within the cap");
                assert_eq!(tail.keep, half);
                assert_eq!(tail.bytes.len() as u64, half);
                apply_tail(&mut stored, &tail);
            }
            None => assert!(stream.len() <= cap, "no tail for a stream past the cap"),
        }
        stored
    }

    #[test]
    fn cap_matches_reference_model() {
        const MIB: usize = 1024 * 1024;
        let cases: &[(&str, usize, usize, &[usize])] = &[
            ("empty", 0, 16, &[1]),
            ("small", 5, 16, &[5]),
            ("below half", 7, 16, &[3]),
            ("exactly half", 8, 16, &[8]),
            ("exactly cap", 16, 16, &[16]),
            ("exactly cap in bytes", 16, 16, &[1]),
            ("cap plus one", 17, 16, &[17]),
            ("cap plus one in bytes", 17, 16, &[1]),
            ("odd cap", 40, 7, &[3, 1, 5]),
            ("cap of one", 10, 1, &[2]),
            ("cap of zero", 10, 0, &[3]),
            ("one huge write", 1000, 64, &[1000]),
            ("default cap exactly", MIB, MIB, &[65536]),
            ("default cap plus one", MIB + 1, MIB, &[65536]),
            (
                "5 MiB in odd chunks",
                5 * MIB,
                MIB,
                &[4093, 65537, 1, 131071, 7],
            ),
        ];

        for (name, len, cap, chunk_sizes) in cases {
            let stream = pattern(*len);
            let stored = run_through_cap(&stream, *cap, chunk_sizes);
            assert!(
                stored == expected_stored(&stream, *cap),
                "case {name:?}: stored output differs from the reference model"
            );
        }
    }

    #[test]
    fn cut_count_is_bytes_dropped() {
        let mut state = OutputCap::new(10);
        state.push(&pattern(25));
        let tail = state.finish().expect("stream past the cap yields a tail");
        assert_eq!(tail.keep, 5);
        assert_eq!(tail.cut, 15);
        assert_eq!(tail.bytes, pattern(25)[20..].to_vec());
    }

    #[test]
    fn cut_marker_names_count() {
        assert_eq!(
            cut_marker(4718592),
            b"\n[delicate: 4718592 bytes cut]\n".to_vec()
        );
    }

    #[test]
    fn non_utf8_bytes_pass_unchanged() {
        let stream = [0xc0, 0xff, 0x00, 0xfe];
        assert_eq!(run_through_cap(&stream, 16, &[1]), stream.to_vec());
        assert_eq!(
            run_through_cap(&stream, 2, &[3]),
            expected_stored(&stream, 2)
        );
    }

    #[test]
    fn apply_tail_keeps_short_store() {
        let mut stored = b"ab".to_vec();
        let tail = Tail {
            keep: 4,
            cut: 9,
            bytes: b"yz".to_vec(),
        };
        apply_tail(&mut stored, &tail);
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&cut_marker(9));
        expected.extend_from_slice(b"yz");
        assert_eq!(stored, expected);
    }
}
