//! Session records of level-1 connections, one per processor: the session
//! token of its newest join. Only the QUIC listener writes them; the HTTP
//! API never reads this tree.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode, id_key};
use super::{Store, StoreError};
use crate::domain::entities::Id;
use crate::security::{SessionToken, TOKEN_LEN};

/// A session as stored. `Debug` leaves the token out.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: u64,
    pub processor_id: Id,
    /// Peer address of the connection, as text.
    pub peer: String,
    pub started: DateTime<Utc>,
    token: [u8; TOKEN_LEN],
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("session_id", &self.session_id)
            .field("processor_id", &self.processor_id)
            .field("peer", &self.peer)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl SessionRecord {
    pub fn new(
        session_id: u64,
        processor_id: Id,
        peer: String,
        token: &SessionToken,
    ) -> SessionRecord {
        SessionRecord {
            session_id,
            processor_id,
            peer,
            started: Utc::now(),
            token: **token.expose(),
        }
    }

    pub fn token(&self) -> SessionToken {
        SessionToken::from_slice(&self.token).expect("the stored token has TOKEN_LEN bytes")
    }
}

impl Drop for SessionRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

impl Store {
    /// Stores the newest session of a processor, replacing the one before.
    pub fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut value = encode(record);
        let result = self
            .trees
            .sessions
            .insert(id_key(record.processor_id), value.as_slice());
        zeroize::Zeroize::zeroize(&mut value);
        result?;
        Ok(())
    }

    /// The newest session of a processor, if it joined since the store opened.
    pub fn session(&self, processor_id: Id) -> Result<Option<SessionRecord>, StoreError> {
        let key = id_key(processor_id);
        match self.trees.sessions.get(key)? {
            Some(bytes) => Ok(Some(decode("sessions", &key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Removes every session record. Connections end with the process, so
    /// records of an earlier run are dead.
    pub fn clear_sessions(&self) -> Result<(), StoreError> {
        self.trees.sessions.clear()?;
        Ok(())
    }
}
