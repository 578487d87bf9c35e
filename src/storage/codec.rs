//! Stored value encoding: one schema version byte, then bincode.

use serde::{Serialize, de::DeserializeOwned};

use super::{SCHEMA_VERSION, StoreError};

/// Largest stored value: output chunks and tasks stay far below it.
const MAX_VALUE_LEN: usize = 8 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_VALUE_LEN>()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION];
    // Encoding into a Vec fails only for types serde cannot represent,
    // and every stored type is a plain struct or enum.
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .expect("stored types always encode");
    out
}

pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        tree,
        key: key_text(key),
        message,
    };
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, body)) => bincode::serde::decode_from_slice(body, config())
            .map(|(value, _)| value)
            .map_err(|e| corrupt(e.to_string())),
        Some((version, _)) => Err(corrupt(format!("unknown schema version {version}"))),
        None => Err(corrupt("empty value".to_string())),
    }
}

fn key_text(key: &[u8]) -> String {
    if key.len() == 8 {
        u64::from_be_bytes(key.try_into().expect("8 bytes")).to_string()
    } else {
        format!("{key:02x?}")
    }
}

pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn pair_key(first: u64, second: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&first.to_be_bytes());
    key[8..].copy_from_slice(&second.to_be_bytes());
    key
}

pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}
