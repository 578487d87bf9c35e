//! Frame layout and codec.
//!
//! ```text
//! +-----------+-----------+-----------+-------------+-----------------+
//! | len: u32  | seq: u64  | mac_len:u8| mac (0..32) | payload (bincode)|
//! +-----------+-----------+-----------+-------------+-----------------+
//! ```
//!
//! All integers are big-endian. `len` counts every byte after itself and is
//! at most [`MAX_FRAME_LEN`]. `seq` numbers the frames of one direction of a
//! connection from 0 and must grow by exactly one. `mac` is empty at security
//! level 0; at level 1 it holds an HMAC-SHA256 over the direction, `seq` and
//! the payload, so the header needs no change between levels.

use serde::{Serialize, de::DeserializeOwned};

/// Largest frame accepted, header included: room for an output tail of
/// 512 KiB with ample margin.
pub const MAX_FRAME_LEN: usize = 2 * 1024 * 1024;
/// Largest MAC a frame can carry (HMAC-SHA256).
pub const MAX_MAC_LEN: usize = 32;
const HEADER_LEN: usize = 8 + 1;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN} bytes")]
    TooLarge { len: usize },
    #[error("frame of {len} bytes is shorter than its header")]
    Truncated { len: usize },
    #[error("frame MAC length {len} is invalid: the maximum is {MAX_MAC_LEN}")]
    BadMacLength { len: usize },
    #[error("frame payload could not be decoded: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("frame payload could not be encoded: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// bincode settings for frames: a limit keeps hostile length fields from
/// allocating more than one frame can hold.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a message payload.
pub fn encode_payload<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    Ok(bincode::serde::encode_to_vec(message, config())?)
}

/// Decodes a message payload, rejecting trailing bytes.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (message, used) = bincode::serde::decode_from_slice(payload, config())?;
    if used != payload.len() {
        return Err(FrameError::Decode(
            bincode::error::DecodeError::OtherString(format!(
                "{} trailing bytes after the message",
                payload.len() - used
            )),
        ));
    }
    Ok(message)
}

/// Appends one whole frame (length prefix included) to `out`.
pub fn write_frame(
    out: &mut Vec<u8>,
    seq: u64,
    mac: &[u8],
    payload: &[u8],
) -> Result<(), FrameError> {
    if mac.len() > MAX_MAC_LEN {
        return Err(FrameError::BadMacLength { len: mac.len() });
    }
    let len = HEADER_LEN + mac.len() + payload.len();
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(mac.len() as u8);
    out.extend_from_slice(mac);
    out.extend_from_slice(payload);
    Ok(())
}

/// Checks a length prefix before the body is read.
pub fn check_len(len: u32) -> Result<usize, FrameError> {
    let len = len as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    if len < HEADER_LEN {
        return Err(FrameError::Truncated { len });
    }
    Ok(len)
}

/// A frame body split into its parts; borrows the body.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameParts<'a> {
    pub seq: u64,
    pub mac: &'a [u8],
    pub payload: &'a [u8],
}

/// Splits a frame body (the bytes after the length prefix).
pub fn split_frame(body: &[u8]) -> Result<FrameParts<'_>, FrameError> {
    if body.len() < HEADER_LEN {
        return Err(FrameError::Truncated { len: body.len() });
    }
    let seq = u64::from_be_bytes(body[..8].try_into().expect("slice of 8 bytes"));
    let mac_len = body[8] as usize;
    if mac_len > MAX_MAC_LEN || HEADER_LEN + mac_len > body.len() {
        return Err(FrameError::BadMacLength { len: mac_len });
    }
    Ok(FrameParts {
        seq,
        mac: &body[HEADER_LEN..HEADER_LEN + mac_len],
        payload: &body[HEADER_LEN + mac_len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let mut out = Vec::new();
        write_frame(&mut out, 7, &[1, 2, 3], b"payload").unwrap();
        let len = check_len(u32::from_be_bytes(out[..4].try_into().unwrap())).unwrap();
        assert_eq!(len, out.len() - 4);
        let parts = split_frame(&out[4..]).unwrap();
        assert_eq!(
            parts,
            FrameParts {
                seq: 7,
                mac: &[1, 2, 3],
                payload: b"payload"
            }
        );
    }

    #[test]
    fn oversized_length_is_rejected_before_reading() {
        assert!(matches!(
            check_len(u32::MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(check_len(3), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn bad_mac_length_is_rejected() {
        let mut body = vec![0u8; 8];
        body.push(200);
        body.extend_from_slice(&[0; 10]);
        assert!(matches!(
            split_frame(&body),
            Err(FrameError::BadMacLength { .. })
        ));
    }

    #[test]
    fn hostile_payload_does_not_allocate() {
        let hostile = [0xffu8; 16];
        assert!(decode_payload::<Vec<u8>>(&hostile).is_err());
        assert!(
            decode_payload::<String>(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .is_err()
        );
    }
}
