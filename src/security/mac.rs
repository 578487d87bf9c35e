//! HMAC-SHA256 of frames at security level 1.
//!
//! The MAC of a frame covers one direction byte, the frame's sequence number
//! (8 bytes, big-endian) and its payload, under the connection's session
//! token. The direction byte keeps a frame from being reflected back to its
//! sender, and the sequence number keeps it from being replayed or dropped.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::SessionToken;

/// Length of a frame MAC in bytes.
pub const MAC_LEN: usize = 32;

/// Which way a frame travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SchedulerToExecutor,
    ExecutorToScheduler,
}

impl Direction {
    /// The byte that starts the MAC input.
    pub fn byte(self) -> u8 {
        match self {
            Direction::SchedulerToExecutor => 0x53,
            Direction::ExecutorToScheduler => 0x45,
        }
    }
}

/// MAC state of one direction of a connection: HMAC-SHA256 keyed with the
/// session token. `Debug` prints the direction only.
#[derive(Clone)]
pub struct FrameMac {
    keyed: Hmac<Sha256>,
    direction: Direction,
}

impl fmt::Debug for FrameMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameMac")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl FrameMac {
    pub fn new(token: &SessionToken, direction: Direction) -> FrameMac {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = Hmac::<Sha256>::new_from_slice(token.expose().as_ref())
            .expect("HMAC takes keys of any length");
        FrameMac { keyed, direction }
    }

    fn start(&self, seq: u64, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(&[self.direction.byte()]);
        mac.update(&seq.to_be_bytes());
        mac.update(payload);
        mac
    }

    /// Computes the MAC of the frame with sequence number `seq`.
    pub fn sign(&self, seq: u64, payload: &[u8]) -> [u8; MAC_LEN] {
        self.start(seq, payload).finalize().into_bytes().into()
    }

    /// Checks a received MAC in constant time.
    pub fn verify(&self, seq: u64, payload: &[u8], mac: &[u8]) -> bool {
        self.start(seq, payload).verify_slice(mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(byte: u8) -> SessionToken {
        SessionToken::from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn mac_covers_direction_seq_payload_and_key() {
        let mac = FrameMac::new(&token(1), Direction::ExecutorToScheduler);
        let signed = mac.sign(5, b"payload");
        assert!(mac.verify(5, b"payload", &signed));
        assert!(!mac.verify(6, b"payload", &signed), "another seq");
        assert!(!mac.verify(5, b"payloaD", &signed), "another payload");
        assert!(!mac.verify(5, b"payload", &signed[..31]), "a short MAC");

        let reflected = FrameMac::new(&token(1), Direction::SchedulerToExecutor);
        assert!(
            !reflected.verify(5, b"payload", &signed),
            "the other direction"
        );
        let other_key = FrameMac::new(&token(2), Direction::ExecutorToScheduler);
        assert!(!other_key.verify(5, b"payload", &signed), "another token");
    }
}
