//! The wire protocol between scheduler and executors: QUIC (quinn, TLS 1.3)
//! carrying length-prefixed bincode frames on one bidirectional stream per
//! connection.

pub mod frame;
pub mod join;
pub mod link;
pub mod messages;
pub mod tls;

/// Application error codes a node closes a QUIC connection with.
pub mod close_code {
    /// Orderly shutdown of either side.
    pub const NORMAL: u32 = 0;
    /// An oversized, truncated or undecodable frame, or a message out of place.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The peer speaks another protocol version.
    pub const VERSION_MISMATCH: u32 = 2;
    /// The scheduler does not accept this executor (unknown name, bad key, mixed levels).
    pub const JOIN_REJECTED: u32 = 3;
    /// A frame failed its MAC or sequence check.
    pub const AUTHENTICATION_FAILED: u32 = 4;
    /// A newer connection of the same processor took over.
    pub const SESSION_REPLACED: u32 = 5;
    /// No heartbeat arrived within the offline limit.
    pub const HEARTBEAT_TIMEOUT: u32 = 6;
    /// The peer's address used up its join attempts; it may retry later.
    pub const TOO_MANY_JOINS: u32 = 7;
}
