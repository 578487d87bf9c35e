//! Create, read, update and delete for groups, processors, binds and tasks,
//! with unique names (and machine ids, and one bind per group and processor)
//! kept in one index tree.
//!
//! Every write of a record takes the store's entity lock, so the unique
//! index and the id counters change one caller at a time. A create makes
//! plain writes in place of a sled transaction, because each transaction
//! costs two synced log writes and creates come in bulk. The index entries
//! go first and the record last. sled recovers a prefix of its log, so a
//! crash can leave an index entry without its record (treated as free) but
//! never a record without its entries.

use serde::{Serialize, de::DeserializeOwned};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::codec::{decode, encode, id_key, read_u64};
use super::{Store, StoreError, TaskState};
use crate::domain::entities::{Bind, Group, Id, Processor, Task};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    Group,
    Processor,
    Bind,
    Task,
}

impl EntityKind {
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Group => "group",
            EntityKind::Processor => "processor",
            EntityKind::Bind => "bind",
            EntityKind::Task => "task",
        }
    }
}

/// A unique value of a record: its index key, field name and text for errors.
pub struct UniqueKey {
    key: Vec<u8>,
    field: &'static str,
    value: String,
}

fn unique(prefix: u8, kind_scope: &[u8], field: &'static str, value: String) -> UniqueKey {
    let mut key = vec![prefix];
    key.extend_from_slice(kind_scope);
    UniqueKey { key, field, value }
}

/// A record kept in its own tree with a store-assigned id.
pub trait Entity: Serialize + DeserializeOwned + Clone + Send + 'static {
    const KIND: EntityKind;
    fn id(&self) -> Id;
    fn set_id(&mut self, id: Id);
    fn unique_keys(&self) -> Vec<UniqueKey>;
    fn tree(store: &Store) -> &sled::Tree;
}

impl Entity for Group {
    const KIND: EntityKind = EntityKind::Group;
    fn id(&self) -> Id {
        self.id
    }
    fn set_id(&mut self, id: Id) {
        self.id = id;
    }
    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![unique(
            b'g',
            self.name.as_bytes(),
            "name",
            self.name.clone(),
        )]
    }
    fn tree(store: &Store) -> &sled::Tree {
        &store.trees.groups
    }
}

impl Entity for Processor {
    const KIND: EntityKind = EntityKind::Processor;
    fn id(&self) -> Id {
        self.id
    }
    fn set_id(&mut self, id: Id) {
        self.id = id;
    }
    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![
            unique(b'p', self.name.as_bytes(), "name", self.name.clone()),
            unique(
                b'm',
                &self.machine_id.to_be_bytes(),
                "machine_id",
                self.machine_id.to_string(),
            ),
        ]
    }
    fn tree(store: &Store) -> &sled::Tree {
        &store.trees.processors
    }
}

impl Entity for Bind {
    const KIND: EntityKind = EntityKind::Bind;
    fn id(&self) -> Id {
        self.id
    }
    fn set_id(&mut self, id: Id) {
        self.id = id;
    }
    fn unique_keys(&self) -> Vec<UniqueKey> {
        let mut pair = self.group_id.to_be_bytes().to_vec();
        pair.extend_from_slice(&self.executor_id.to_be_bytes());
        vec![
            unique(b'b', self.name.as_bytes(), "name", self.name.clone()),
            unique(
                b'r',
                &pair,
                "executor_id",
                format!("group {} and processor {}", self.group_id, self.executor_id),
            ),
        ]
    }
    fn tree(store: &Store) -> &sled::Tree {
        &store.trees.binds
    }
}

impl Entity for Task {
    const KIND: EntityKind = EntityKind::Task;
    fn id(&self) -> Id {
        self.id
    }
    fn set_id(&mut self, id: Id) {
        self.id = id;
    }
    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![unique(
            b't',
            self.name.as_bytes(),
            "name",
            self.name.clone(),
        )]
    }
    fn tree(store: &Store) -> &sled::Tree {
        &store.trees.tasks
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(error: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}

fn unwrap_tx<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::Io(error),
    })
}

fn conflict(kind: EntityKind, key: &UniqueKey) -> StoreError {
    let message = if key.field == "executor_id" {
        format!("a bind between {} already exists", key.value)
    } else {
        format!(
            "a {} with {} {:?} already exists",
            kind.name(),
            key.field,
            key.value
        )
    };
    StoreError::Conflict {
        field: key.field.to_string(),
        message,
    }
}

/// Claims the unique keys of `record` for `id`, failing on a key held by
/// another record of `records`.
fn claim_keys(
    records: &TransactionalTree,
    unique: &TransactionalTree,
    keys: &[UniqueKey],
    id: Id,
    kind: EntityKind,
) -> TxResult<()> {
    for key in keys {
        if let Some(owner) = unique.get(&key.key)?.and_then(|bytes| read_u64(&bytes))
            && owner != id
            && records.get(id_key(owner))?.is_some()
        {
            return abort(conflict(kind, key));
        }
        unique.insert(key.key.as_slice(), &id_key(id))?;
    }
    Ok(())
}

impl Store {
    /// Stores a new record under the next id of its kind and returns it.
    pub fn create<E: Entity>(&self, mut record: E) -> Result<E, StoreError> {
        let _writing = self.lock_entities();
        let records = E::tree(self);
        let keys = record.unique_keys();
        for key in &keys {
            if let Some(owner) = self.trees.unique.get(&key.key)?.and_then(|b| read_u64(&b))
                && records.get(id_key(owner))?.is_some()
            {
                return Err(conflict(E::KIND, key));
            }
        }
        let counter = format!("next_id/{}", E::KIND.name());
        let id = self
            .trees
            .meta
            .get(counter.as_bytes())?
            .and_then(|bytes| read_u64(&bytes))
            .unwrap_or(1);
        self.trees
            .meta
            .insert(counter.as_bytes(), &id_key(id + 1))?;
        record.set_id(id);
        for key in &keys {
            self.trees.unique.insert(key.key.as_slice(), &id_key(id))?;
        }
        records.insert(id_key(id), encode(&record))?;
        Ok(record)
    }

    /// Stores new records under consecutive ids in one transaction and
    /// returns them; for bulk loads. Nothing is stored when one of them
    /// clashes with a unique key.
    pub fn create_many<E: Entity>(&self, records: &[E]) -> Result<Vec<E>, StoreError> {
        let _writing = self.lock_entities();
        let tree = E::tree(self);
        let counter = format!("next_id/{}", E::KIND.name());
        let result = (tree, &self.trees.unique, &self.trees.meta).transaction(
            |(stored_records, unique, meta)| {
                let first = meta
                    .get(counter.as_bytes())?
                    .and_then(|bytes| read_u64(&bytes))
                    .unwrap_or(1);
                let mut stored = Vec::with_capacity(records.len());
                for (offset, record) in records.iter().enumerate() {
                    let id = first + offset as u64;
                    let mut record = record.clone();
                    record.set_id(id);
                    claim_keys(stored_records, unique, &record.unique_keys(), id, E::KIND)?;
                    stored_records.insert(&id_key(id), encode(&record))?;
                    stored.push(record);
                }
                meta.insert(counter.as_bytes(), &id_key(first + records.len() as u64))?;
                Ok(stored)
            },
        );
        unwrap_tx(result)
    }

    pub fn get<E: Entity>(&self, id: Id) -> Result<Option<E>, StoreError> {
        match E::tree(self).get(id_key(id))? {
            Some(bytes) => Ok(Some(decode(tree_name::<E>(), &id_key(id), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Reads a record or fails with `NotFound`.
    pub fn require<E: Entity>(&self, id: Id) -> Result<E, StoreError> {
        self.get(id)?.ok_or_else(|| StoreError::NotFound {
            kind: E::KIND.name(),
            id: id.to_string(),
        })
    }

    /// Finds a record by its unique name.
    pub fn find_by_name<E: Entity>(&self, name: &str) -> Result<Option<E>, StoreError> {
        let prefix = match E::KIND {
            EntityKind::Group => b'g',
            EntityKind::Processor => b'p',
            EntityKind::Bind => b'b',
            EntityKind::Task => b't',
        };
        let mut key = vec![prefix];
        key.extend_from_slice(name.as_bytes());
        match self
            .trees
            .unique
            .get(key)?
            .and_then(|bytes| read_u64(&bytes))
        {
            // None also for an index entry that a crash left without its record.
            Some(id) => self.get(id),
            None => Ok(None),
        }
    }

    pub(super) fn lock_entities(&self) -> std::sync::MutexGuard<'_, ()> {
        self.entity_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every record of a kind, in id order.
    pub fn list<E: Entity>(&self) -> Result<Vec<E>, StoreError> {
        E::tree(self)
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                decode(tree_name::<E>(), &key, &bytes)
            })
            .collect()
    }

    /// Replaces a record, moving its unique keys.
    pub fn update<E: Entity>(&self, record: &E) -> Result<(), StoreError> {
        let _writing = self.lock_entities();
        let id = record.id();
        let result = (E::tree(self), &self.trees.unique).transaction(|(records, unique)| {
            let Some(bytes) = records.get(id_key(id))? else {
                return abort(StoreError::NotFound {
                    kind: E::KIND.name(),
                    id: id.to_string(),
                });
            };
            let old: E = decode(tree_name::<E>(), &id_key(id), &bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            for key in old.unique_keys() {
                unique.remove(key.key)?;
            }
            claim_keys(records, unique, &record.unique_keys(), id, E::KIND)?;
            records.insert(&id_key(id), encode(record))?;
            Ok(())
        });
        unwrap_tx(result)
    }

    /// Deletes a record and frees its unique keys; returns the deleted record.
    pub fn delete<E: Entity>(&self, id: Id) -> Result<E, StoreError> {
        let _writing = self.lock_entities();
        let result = (E::tree(self), &self.trees.unique).transaction(|(records, unique)| {
            let Some(bytes) = records.remove(&id_key(id))? else {
                return abort(StoreError::NotFound {
                    kind: E::KIND.name(),
                    id: id.to_string(),
                });
            };
            let old: E = decode(tree_name::<E>(), &id_key(id), &bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            for key in old.unique_keys() {
                unique.remove(key.key)?;
            }
            Ok(old)
        });
        unwrap_tx(result)
    }

    /// Number of records of a kind.
    pub fn count<E: Entity>(&self) -> usize {
        E::tree(self).len()
    }
}

/// Every stored task with its fire state, in id order; see
/// [`Store::tasks_with_state`].
pub struct TaskScan {
    tasks: sled::Iter,
    states: std::iter::Peekable<sled::Iter>,
}

impl Iterator for TaskScan {
    type Item = Result<(Task, TaskState), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, bytes) = match self.tasks.next()? {
            Ok(entry) => entry,
            Err(error) => return Some(Err(error.into())),
        };
        Some(self.decode_with_state(&key, &bytes))
    }
}

impl TaskScan {
    fn decode_with_state(
        &mut self,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<(Task, TaskState), StoreError> {
        let task: Task = decode("tasks", key, bytes)?;
        // Both trees are keyed by the big-endian task id, so they sort alike:
        // skip the states of deleted tasks until reaching this key.
        loop {
            match self.states.peek() {
                Some(Ok((state_key, _))) if state_key.as_ref() < key => {
                    self.states.next();
                }
                Some(Err(_)) => {
                    if let Some(Err(error)) = self.states.next() {
                        return Err(error.into());
                    }
                }
                _ => break,
            }
        }
        let state = match self.states.peek() {
            Some(Ok((state_key, state_bytes))) if state_key.as_ref() == key => {
                let state = decode("task_state", key, state_bytes)?;
                self.states.next();
                state
            }
            _ => TaskState::default(),
        };
        Ok((task, state))
    }
}

impl Store {
    /// Scans every task with its fire state in one pass over the two trees,
    /// in place of one state lookup per task. A task without a stored state
    /// gets the default one.
    pub fn tasks_with_state(&self) -> TaskScan {
        TaskScan {
            tasks: self.trees.tasks.iter(),
            states: self.trees.task_state.iter().peekable(),
        }
    }
}

fn tree_name<E: Entity>() -> &'static str {
    match E::KIND {
        EntityKind::Group => "groups",
        EntityKind::Processor => "processors",
        EntityKind::Bind => "binds",
        EntityKind::Task => "tasks",
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::storage::DEFAULT_CACHE_BYTES;

    fn task(name: &str) -> Task {
        Task::enabled(
            name.into(),
            "true",
            "0 0 * * * *".into(),
            "UTC",
            vec![1],
            Utc::now(),
        )
    }

    #[test]
    fn create_rejects_taken_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let first = store.create(task("nightly")).unwrap();
        let error = store.create(task("nightly")).unwrap_err();
        assert!(
            matches!(&error, StoreError::Conflict { field, .. } if field == "name"),
            "{error}"
        );
        assert_eq!(store.count::<Task>(), 1);
        assert_eq!(first.id, 1);
    }

    #[test]
    fn create_takes_name_left_without_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let first = store.create(task("nightly")).unwrap();
        // What a crash between the index entry and the record leaves.
        store.trees.tasks.remove(id_key(first.id)).unwrap();

        let second = store.create(task("nightly")).unwrap();
        assert_eq!(second.id, 2);
        let found = store.find_by_name::<Task>("nightly").unwrap().unwrap();
        assert_eq!(found.id, 2);
        let mut renamed = second.clone();
        renamed.name = "hourly".into();
        store.update(&renamed).unwrap();
        assert!(store.find_by_name::<Task>("nightly").unwrap().is_none());
    }
}
