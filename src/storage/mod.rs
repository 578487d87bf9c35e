//! The scheduler's store: sled trees for every entity, instance indexes and
//! output, values encoded with bincode behind a schema version byte.
//!
//! sled calls block. Single reads and writes are in-memory and short, so the
//! actors call them directly; the one slow call, the flush to disk, runs on
//! the [`flusher`] thread, which batches the flushes of concurrent callers.

mod codec;
mod entities;
pub(crate) mod flusher;
mod instances;
mod locks;
mod sessions;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use entities::{Entity, EntityKind, TaskScan};
pub use instances::{FireRecord, FiresFailed, InstanceFilter, InstancePage, TaskState};
pub use sessions::SessionRecord;

use crate::domain::entities::Task;
use crate::domain::validation::FieldError;

/// Version of the stored value layout, the first byte of every value.
pub const SCHEMA_VERSION: u8 = 1;
/// Default sled page cache; sled's own default of 1 GiB is far more than a
/// scheduler needs for its working set.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Interval of sled's own background flush, which bounds what a crash can
/// lose of writes that no caller waited on with [`Store::durable`].
pub const FLUSH_EVERY_MS: u64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Io(#[from] sled::Error),
    #[error("stored {tree} record {key} is unreadable: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error("{message}")]
    InUse { message: String },
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(
        "the data directory holds schema version {found}, this build reads version {SCHEMA_VERSION}"
    )]
    SchemaMismatch { found: u8 },
    #[error("storage flush failed: {0}")]
    Flush(String),
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Trees,
    flusher: flusher::Flusher,
    /// Locks that serialize the read, change and write of one instance.
    instance_locks: Arc<locks::LockStripes>,
    /// Lock that serializes the writes of groups, processors, binds and tasks.
    entity_writes: Arc<Mutex<()>>,
    /// Lock that serializes [`Store::record_fires`], so two fires never
    /// both find a slot free.
    fire_writes: Arc<Mutex<()>>,
    /// The flusher's thread, taken by [`Store::close`].
    flusher_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

#[derive(Clone)]
struct Trees {
    groups: sled::Tree,
    processors: sled::Tree,
    binds: sled::Tree,
    tasks: sled::Tree,
    /// Unique keys: kind byte + value, to the owning id.
    unique: sled::Tree,
    /// Counters and flags: `next_id/<kind>`, `schema_version`, `bootstrapped`.
    meta: sled::Tree,
    task_state: sled::Tree,
    instances: sled::Tree,
    /// task id + instance id, for listing a task's instances newest first.
    instances_by_task: sled::Tree,
    /// task id + slot milliseconds + processor id, to the instance id:
    /// the at-most-once guard of cron slots.
    slots: sled::Tree,
    /// task id + instance id of every Running instance.
    running: sled::Tree,
    /// instance id + stream + offset, to a chunk of output bytes.
    output: sled::Tree,
    /// processor id, to the session record (with its token) of its newest
    /// level-1 join.
    sessions: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()?;
        let tree = |name: &str| db.open_tree(name);
        let trees = Trees {
            groups: tree("groups")?,
            processors: tree("processors")?,
            binds: tree("binds")?,
            tasks: tree("tasks")?,
            unique: tree("unique")?,
            meta: tree("meta")?,
            task_state: tree("task_state")?,
            instances: tree("instances")?,
            instances_by_task: tree("instances_by_task")?,
            slots: tree("slots")?,
            running: tree("running")?,
            output: tree("output")?,
            sessions: tree("sessions")?,
        };
        check_schema(&trees.meta)?;
        let (flusher, thread) = flusher::Flusher::start_joinable(db.clone(), Duration::ZERO);
        let flusher_thread = Arc::new(Mutex::new(Some(thread)));
        Ok(Store {
            db,
            trees,
            flusher,
            instance_locks: Arc::new(locks::LockStripes::new()),
            entity_writes: Arc::new(Mutex::new(())),
            fire_writes: Arc::new(Mutex::new(())),
            flusher_thread,
        })
    }

    /// Flushes and closes the store, so the directory can be opened again in
    /// this process. Returns `false`, closing nothing, while other clones of
    /// this handle exist, because the flusher thread keeps the files open
    /// until the last clone is dropped.
    pub fn close(self) -> Result<bool, StoreError> {
        self.db.flush()?;
        if Arc::strong_count(&self.flusher_thread) > 1 {
            return Ok(false);
        }
        let thread = self
            .flusher_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(self);
        if let Some(thread) = thread {
            thread
                .join()
                .map_err(|_| StoreError::Flush("the flusher thread panicked".into()))?;
        }
        Ok(true)
    }

    /// Waits until every write made before the call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.flusher.flush().await
    }

    /// Flushes synchronously; for shutdown.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Reads a flag from the meta tree.
    pub fn flag(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.trees.meta.get(name)?.is_some())
    }

    pub fn set_flag(&self, name: &str) -> Result<(), StoreError> {
        self.trees.meta.insert(name, &[1u8])?;
        Ok(())
    }
}

/// A task in its stored encoding, for holders of many tasks that decode one
/// only when they use it, because the encoding is far smaller than a
/// decoded `Task` with its strings.
pub struct EncodedTask(Box<[u8]>);

impl EncodedTask {
    pub fn new(task: &Task) -> EncodedTask {
        EncodedTask(codec::encode(task).into_boxed_slice())
    }

    /// Decodes the task; `id` names it in the error.
    pub fn decode(&self, id: crate::domain::entities::Id) -> Result<Task, StoreError> {
        codec::decode("tasks", &codec::id_key(id), &self.0)
    }
}

fn check_schema(meta: &sled::Tree) -> Result<(), StoreError> {
    match meta.get("schema_version")? {
        None => {
            meta.insert("schema_version", &[SCHEMA_VERSION])?;
            Ok(())
        }
        Some(found) if found.as_ref() == [SCHEMA_VERSION] => Ok(()),
        Some(found) => Err(StoreError::SchemaMismatch {
            found: found.first().copied().unwrap_or(0),
        }),
    }
}
