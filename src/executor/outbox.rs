//! The executor's own sled store: the outbox of instance events waiting for
//! the scheduler's acknowledgement, and a record of every run in progress.
//!
//! Trees:
//! - `outbox`: event seq (u64 big-endian) to a schema version byte and the
//!   bincode of a [`net::messages::Event`](crate::net::messages::Event).
//! - `runs`: instance id (u64 big-endian) to a version byte and a [`RunRecord`].
//! - `meta`: `next_event_seq` to a u64 big-endian, so seqs keep increasing
//!   across restarts even when the outbox is empty. It is written once per
//!   block of [`SEQ_BLOCK`] seqs, before their use, and the seqs in between
//!   are handed out from memory. A restart starts at the next block, so a
//!   crash leaves a gap in the seqs but never reuses one.
//!
//! Calls block on sled but touch only memory. Nothing here is on disk until
//! [`Outbox::flush`] or a flush of the node's group flusher.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tracing::error;

use crate::domain::lifecycle::Outcome;
use crate::net::frame::MAX_FRAME_LEN;
use crate::net::messages::{Event, EventKind};

/// Version of the stored value layout, the first byte of every value.
pub const SCHEMA_VERSION: u8 = 1;
/// Largest stored value: an event must fit in one frame anyway.
const MAX_VALUE_LEN: usize = MAX_FRAME_LEN;
/// sled page cache. The outbox holds only unacknowledged events, and each
/// instance's output is capped, so a small cache is enough.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
const NEXT_SEQ_KEY: &[u8] = b"next_event_seq";
const FIRST_SEQ: u64 = 1;
/// Seqs reserved by one write of `next_event_seq`.
pub const SEQ_BLOCK: u64 = 1024;

/// The process of a run in progress, kept so that a restarted executor can
/// kill what its previous life left running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Process group id, which is the pid of the run's main process. `None`
    /// while the run is accepted but its child has not started yet.
    pub pgid: Option<u32>,
    /// Start time of the main process in clock ticks since boot, which
    /// distinguishes it from a later process that reuses the pid.
    pub start_time: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("executor store failed: {0}")]
    Io(#[from] sled::Error),
    #[error("stored {tree} entry {key} is unreadable: {message}")]
    Corrupt {
        tree: &'static str,
        key: u64,
        message: String,
    },
    #[error("failed to encode the {tree} entry {key}: {source}")]
    Encode {
        tree: &'static str,
        key: u64,
        source: bincode::error::EncodeError,
    },
    #[error("failed to create the executor data directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
}

/// Handle to the executor's store; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    db: sled::Db,
    events: sled::Tree,
    runs: sled::Tree,
    meta: sled::Tree,
    seqs: Arc<Mutex<SeqAllocator>>,
}

/// Hands out event seqs. `next` is the next seq to use; seqs below
/// `reserved` are covered by the stored `next_event_seq`.
struct SeqAllocator {
    next: u64,
    reserved: u64,
}

impl Outbox {
    /// Opens (or creates) the store in `data_dir`. sled locks the directory,
    /// so a second open fails until every clone of the first handle is dropped.
    pub fn open(data_dir: &Path) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OutboxError::CreateDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let db = sled::Config::new()
            .path(data_dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()?;
        let events = db.open_tree("outbox")?;
        let meta = db.open_tree("meta")?;
        let stored = match meta.get(NEXT_SEQ_KEY)? {
            Some(bytes) => read_u64(&bytes).ok_or_else(|| OutboxError::Corrupt {
                tree: "meta",
                key: 0,
                message: format!("next_event_seq is {} bytes, not 8", bytes.len()),
            })?,
            None => FIRST_SEQ,
        };
        let after_last = match events.last()? {
            Some((key, _)) => read_u64(&key).unwrap_or(0) + 1,
            None => FIRST_SEQ,
        };
        let next = stored.max(after_last);
        Ok(Outbox {
            events,
            runs: db.open_tree("runs")?,
            meta,
            seqs: Arc::new(Mutex::new(SeqAllocator {
                next,
                reserved: next,
            })),
            db,
        })
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Flushes every write so far to disk, blocking the calling thread.
    pub fn flush(&self) -> Result<(), OutboxError> {
        self.db.flush()?;
        Ok(())
    }

    /// Stores an event under the next seq and returns it. A `Finished` event
    /// also removes the instance's run record, after the event is stored. No
    /// sled transaction is used, because each one costs two synced log
    /// writes, and sled recovers a prefix of its log.
    pub fn append(&self, instance_id: u64, kind: EventKind) -> Result<Event, OutboxError> {
        let mut seqs = self
            .seqs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = seqs.next;
        if seq >= seqs.reserved {
            // Stored before the event that uses it, so the reservation is on
            // disk whenever the event is.
            let reserved = seq + SEQ_BLOCK;
            self.meta.insert(NEXT_SEQ_KEY, &reserved.to_be_bytes())?;
            seqs.reserved = reserved;
        }
        let event = Event {
            seq,
            instance_id,
            kind,
        };
        let value = encode("outbox", seq, &event)?;
        self.events.insert(seq.to_be_bytes(), value)?;
        if matches!(event.kind, EventKind::Finished(_)) {
            // After the event, so a crash between the two leaves a record
            // whose end is stored, which `open_and_settle` drops.
            self.runs.remove(instance_id.to_be_bytes())?;
        }
        seqs.next = seq + 1;
        Ok(event)
    }

    /// Stores a `Finished` event for `outcome`; see [`Outbox::append`].
    pub fn append_finished(
        &self,
        instance_id: u64,
        outcome: Outcome,
    ) -> Result<Event, OutboxError> {
        self.append(instance_id, EventKind::Finished(outcome))
    }

    /// Removes an acknowledged event. Returns false if no event had that seq.
    pub fn acknowledge(&self, seq: u64) -> Result<bool, OutboxError> {
        Ok(self.events.remove(seq.to_be_bytes())?.is_some())
    }

    /// Returns every stored event in seq order.
    pub fn pending(&self) -> Result<Vec<Event>, OutboxError> {
        self.events_between(0, u64::MAX, usize::MAX)
    }

    /// Returns up to `limit` events with `after < seq <= up_to`, in seq order.
    /// An entry that cannot be decoded is logged and removed, because it can
    /// never be sent.
    pub(crate) fn events_between(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<Event>, OutboxError> {
        let mut events = Vec::new();
        let Some(start) = after.checked_add(1) else {
            return Ok(events);
        };
        if start > up_to {
            return Ok(events);
        }
        for entry in self.events.range(start.to_be_bytes()..=up_to.to_be_bytes()) {
            if events.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let seq = read_u64(&key).unwrap_or(0);
            match decode::<Event>("outbox", seq, &value) {
                Ok(event) => events.push(event),
                Err(error) => {
                    error!(%error, seq, "removing an unreadable outbox entry");
                    self.events.remove(&key)?;
                }
            }
        }
        Ok(events)
    }

    /// Returns the seq of the newest stored event, or 0 if the outbox is empty.
    pub fn last_seq(&self) -> Result<u64, OutboxError> {
        match self.events.last()? {
            Some((key, _)) => Ok(read_u64(&key).unwrap_or(0)),
            None => Ok(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Returns the instances with a stored `Finished` event.
    pub fn finished_instances(&self) -> Result<std::collections::HashSet<u64>, OutboxError> {
        Ok(self
            .pending()?
            .into_iter()
            .filter(|event| matches!(event.kind, EventKind::Finished(_)))
            .map(|event| event.instance_id)
            .collect())
    }

    /// Removes the run record of an instance.
    pub fn remove_run(&self, instance_id: u64) -> Result<(), OutboxError> {
        self.runs.remove(instance_id.to_be_bytes())?;
        Ok(())
    }

    /// Records (or replaces) the process of a run in progress.
    pub fn record_run(&self, instance_id: u64, record: RunRecord) -> Result<(), OutboxError> {
        let value = encode("runs", instance_id, &record)?;
        self.runs.insert(instance_id.to_be_bytes(), value)?;
        Ok(())
    }

    /// Returns every run record, in instance id order. An unreadable record
    /// is returned with no process, so its run is still reported as ended.
    pub fn run_records(&self) -> Result<Vec<(u64, RunRecord)>, OutboxError> {
        let mut records = Vec::new();
        for entry in self.runs.iter() {
            let (key, value) = entry?;
            let instance_id = read_u64(&key).unwrap_or(0);
            let record = decode("runs", instance_id, &value).unwrap_or_else(|error| {
                error!(%error, instance.id = instance_id, "unreadable run record");
                RunRecord {
                    pgid: None,
                    start_time: None,
                }
            });
            records.push((instance_id, record));
        }
        Ok(records)
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_VALUE_LEN>()
}

fn encode<T: Serialize>(tree: &'static str, key: u64, value: &T) -> Result<Vec<u8>, OutboxError> {
    let mut out = vec![SCHEMA_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|source| OutboxError::Encode { tree, key, source })?;
    Ok(out)
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: u64,
    bytes: &[u8],
) -> Result<T, OutboxError> {
    let corrupt = |message: String| OutboxError::Corrupt { tree, key, message };
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, body)) => bincode::serde::decode_from_slice(body, config())
            .map(|(value, _)| value)
            .map_err(|error| corrupt(error.to_string())),
        Some((version, _)) => Err(corrupt(format!("unknown schema version {version}"))),
        None => Err(corrupt("empty value".to_string())),
    }
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Runs `open` until it stops failing on sled's file lock, which the I/O
/// threads of a database dropped a moment ago can still hold. Panics on any
/// other error, or when the lock stays taken for 10 s.
#[cfg(test)]
pub(crate) fn open_when_unlocked<T, E: std::fmt::Debug>(
    mut open: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(error)
                if format!("{error:?}").contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("failed to reopen the outbox: {error:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::lifecycle::RunEnd;

    fn finished() -> Outcome {
        Outcome {
            end: RunEnd::Exited,
            exit_code: Some(0),
            signal: None,
            reason: None,
            finished_at: Utc::now(),
        }
    }

    fn started() -> EventKind {
        EventKind::Started {
            pid: 42,
            at: Utc::now(),
        }
    }

    #[test]
    fn seqs_increase_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let first = outbox.append(7, started()).unwrap();
        let second = outbox.append(7, started()).unwrap();
        assert_eq!(first.seq, FIRST_SEQ);
        assert_eq!(second.seq, FIRST_SEQ + 1);
        assert!(outbox.acknowledge(first.seq).unwrap());
        assert!(outbox.acknowledge(second.seq).unwrap());
        outbox.flush().unwrap();
        drop(outbox);

        let reopened = open_when_unlocked(|| Outbox::open(dir.path()));
        assert!(reopened.is_empty());
        let third = reopened.append(8, started()).unwrap();
        assert!(third.seq > second.seq, "{} after {}", third.seq, second.seq);
    }

    #[test]
    fn seqs_stay_above_unacknowledged_events_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut last = 0;
        for _ in 0..SEQ_BLOCK + 3 {
            last = outbox.append(7, started()).unwrap().seq;
        }
        outbox.flush().unwrap();
        drop(outbox);

        let reopened = open_when_unlocked(|| Outbox::open(dir.path()));
        assert_eq!(reopened.last_seq().unwrap(), last);
        let next = reopened.append(8, started()).unwrap();
        assert!(next.seq > last, "{} after {last}", next.seq);
    }

    #[test]
    fn finished_event_removes_run_record() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let record = RunRecord {
            pgid: Some(100),
            start_time: Some(5),
        };
        outbox.record_run(7, record).unwrap();
        outbox.record_run(8, record).unwrap();
        outbox.append_finished(7, finished()).unwrap();
        assert_eq!(outbox.run_records().unwrap(), vec![(8, record)]);
    }

    #[test]
    fn events_between_respects_bounds_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        for _ in 0..5 {
            outbox.append(1, started()).unwrap();
        }
        let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(outbox.events_between(1, 4, 10).unwrap()),
            vec![2, 3, 4]
        );
        assert_eq!(seqs(outbox.events_between(0, 5, 2).unwrap()), vec![1, 2]);
        assert_eq!(
            seqs(outbox.events_between(5, 5, 2).unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(outbox.last_seq().unwrap(), 5);
    }

    #[test]
    fn unreadable_entry_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.append(1, started()).unwrap();
        outbox
            .events
            .insert(2u64.to_be_bytes(), &[SCHEMA_VERSION, 0xff, 0xff, 0xff])
            .unwrap();
        outbox.events.insert(3u64.to_be_bytes(), &[9u8]).unwrap();
        let events = outbox.pending().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(outbox.last_seq().unwrap(), 1);
    }
}
