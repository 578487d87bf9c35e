//! Node authentication at security level 1: RSA key pairs, per-frame MACs,
//! the join rate limit and a wrapper that keeps secrets out of logs.
//!
//! The message flow of the join handshake lives in `net::join`; this module
//! holds the primitives it uses and does no network I/O.

pub mod keys;
pub mod mac;
pub mod rate_limit;
pub mod secret;

pub use secret::{Secret, SessionToken, TOKEN_LEN};

/// Security level 0: nodes join without authentication.
pub const LEVEL_OPEN: u8 = 0;
/// Security level 1: signed joins and per-frame MACs.
pub const LEVEL_AUTHENTICATED: u8 = 1;
/// Level a node runs at when none is configured.
pub const DEFAULT_LEVEL: u8 = LEVEL_AUTHENTICATED;
