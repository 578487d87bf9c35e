//! A wrapper that keeps secret values out of `Debug` output.

use std::fmt;

use zeroize::Zeroizing;

/// Length of a session token in bytes (256 bits).
pub const TOKEN_LEN: usize = 32;

/// A secret value: `Debug` prints a redaction and there is no `Display` or
/// `Serialize`, so the value reaches logs, errors and API responses only
/// through an explicit [`Secret::expose`].
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// Returns the secret value. Callers must not log or send it in clear.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The 256-bit session token of one connection: the HMAC key of its frames.
/// Its bytes are zeroed when it is dropped.
pub type SessionToken = Secret<Zeroizing<[u8; TOKEN_LEN]>>;

impl SessionToken {
    /// Draws a new token from the operating system's random generator.
    pub fn generate() -> Result<SessionToken, getrandom::Error> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_LEN]);
        getrandom::fill(bytes.as_mut())?;
        Ok(Secret::new(bytes))
    }

    /// Wraps token bytes, or returns `None` if `bytes` is not [`TOKEN_LEN`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<SessionToken> {
        let array: [u8; TOKEN_LEN] = bytes.try_into().ok()?;
        Some(Secret::new(Zeroizing::new(array)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted() {
        let token = SessionToken::from_slice(&[0xab; TOKEN_LEN]).unwrap();
        let text = format!("{token:?}");
        assert_eq!(text, "Secret([redacted])");
        assert!(!text.to_lowercase().contains("ab"));
    }

    #[test]
    fn generated_tokens_differ() {
        let first = SessionToken::generate().unwrap();
        let second = SessionToken::generate().unwrap();
        assert_ne!(first.expose().as_ref(), second.expose().as_ref());
    }
}
