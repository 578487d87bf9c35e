//! Instances, their indexes, per-task fire state and captured output.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode, id_key, pair_key, read_u64};
use super::{Store, StoreError};
use crate::domain::entities::{Id, Instance, InstanceStatus, Task};
use crate::domain::lifecycle::Applied;
use crate::domain::snowflake;
use crate::domain::time_format;
use crate::net::messages::Stream;

/// What the scheduler remembers about a task's fires across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The newest slot that fired or was skipped; slots up to it are done.
    #[serde(with = "time_format::option")]
    pub last_slot: Option<DateTime<Utc>>,
    /// Slots that passed without an instance because they were too old.
    pub missed: u64,
    /// Fires skipped because the task had its maximum of running instances.
    pub skipped: u64,
}

/// One fire to record: its instances, the slot they claim, the task's new
/// fire state and, when the fire used up a count, the task.
pub struct FireRecord<'a> {
    pub task_id: Id,
    /// The cron slot, for the at-most-once index; `None` for manual runs and retries.
    pub slot: Option<DateTime<Utc>>,
    /// Broadcast fires claim the slot once per processor, weighted fires once.
    pub per_processor: bool,
    pub instances: &'a [Instance],
    pub state: Option<&'a TaskState>,
    pub task: Option<&'a Task>,
}

impl FireRecord<'_> {
    /// Returns the processor part of an instance's slot key: its processor
    /// for broadcast fires, 0 for weighted fires, which claim the slot once.
    fn slot_processor(&self, instance: &Instance) -> Id {
        if self.per_processor {
            instance.executor_processor_id.unwrap_or(0)
        } else {
            0
        }
    }
}

/// Filters of an instance listing; all optional.
#[derive(Clone, Debug, Default)]
pub struct InstanceFilter {
    pub task_id: Option<Id>,
    pub status: Option<InstanceStatus>,
    pub processor_id: Option<Id>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Return instances with ids below this one (the previous page's cursor).
    pub before: Option<u64>,
    pub limit: usize,
}

/// A page of instances, newest first.
pub struct InstancePage {
    pub instances: Vec<Instance>,
    /// Cursor for the next page, if there may be one.
    pub next_cursor: Option<u64>,
}

/// Records examined per listing request, so filters that match rarely
/// cannot scan the whole history in one request.
const MAX_SCAN: usize = 100_000;

fn slot_key(task_id: Id, slot: DateTime<Utc>, processor_id: Id) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&task_id.to_be_bytes());
    key[8..16].copy_from_slice(&(slot.timestamp_millis() as u64).to_be_bytes());
    key[16..].copy_from_slice(&processor_id.to_be_bytes());
    key
}

fn output_key(instance_id: u64, stream: Stream, offset: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..8].copy_from_slice(&instance_id.to_be_bytes());
    key[8] = stream_byte(stream);
    key[9..].copy_from_slice(&offset.to_be_bytes());
    key
}

fn stream_byte(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    }
}

fn output_prefix(instance_id: u64, stream: Stream) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&instance_id.to_be_bytes());
    key[8] = stream_byte(stream);
    key
}

/// A batch of fires stopped by a failed write. The failing fire's writes
/// were undone as far as the store allowed, and later fires were not tried.
#[derive(Debug)]
pub struct FiresFailed {
    /// Whether each fire before the failing one was stored.
    pub stored: Vec<bool>,
    pub error: StoreError,
}

/// A slot index key and the instance that claims it.
type SlotClaim = ([u8; 24], u64);

/// An instance after a change, whether the change altered it, and the
/// value the change passed back.
pub type Updated<R> = (Instance, Applied, R);

impl Store {
    /// Stores one fire as [`Store::record_fires`] does. Returns false,
    /// storing nothing, when the slot already has an instance for one of the
    /// processors.
    pub fn record_fire(&self, fire: &FireRecord<'_>) -> Result<bool, StoreError> {
        let stored = self
            .record_fires(std::slice::from_ref(fire))
            .map_err(|failed| failed.error)?;
        Ok(stored.first().copied().unwrap_or(false))
    }

    /// Stores the fires of one tick, so the tick costs one later flush. A
    /// fire whose slot already has an instance for one of its processors
    /// stores nothing, and its entry in the returned vector is false. The
    /// other fires are stored.
    ///
    /// No sled transaction is used, because each one seals and writes the
    /// log twice. Fires are stored by one writer at a time, under the fire
    /// lock, and each fire writes its slot claims, then its index entries,
    /// then its instances, then its fire state and task. sled recovers a
    /// prefix of its log, so a crash leaves at worst claims and index
    /// entries of an instance that is missing: readers skip such entries,
    /// and the next fire of that slot takes such a claim over. The instances
    /// of a fire are sent only after the flush, so none of them has run.
    ///
    /// A failed write stops the batch: the failing fire's writes are undone
    /// as far as the store allows, later fires are not tried, and the error
    /// reports which earlier fires were stored.
    pub fn record_fires(&self, fires: &[FireRecord<'_>]) -> Result<Vec<bool>, FiresFailed> {
        let _firing = self.fire_writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = Vec::with_capacity(fires.len());
        for fire in fires {
            match self.record_one_fire(fire) {
                Ok(done) => stored.push(done),
                Err(error) => return Err(FiresFailed { stored, error }),
            }
        }
        Ok(stored)
    }

    /// Stores one fire of [`Store::record_fires`], or returns false when its
    /// slot is taken. A failed write undoes the fire's writes.
    fn record_one_fire(&self, fire: &FireRecord<'_>) -> Result<bool, StoreError> {
        let Some(claims) = self.free_slot_claims(fire)? else {
            return Ok(false);
        };
        if let Err(error) = self.write_fire(fire, &claims) {
            self.undo_fire(fire, &claims);
            return Err(error);
        }
        Ok(true)
    }

    fn write_fire(&self, fire: &FireRecord<'_>, claims: &[SlotClaim]) -> Result<(), StoreError> {
        let trees = &self.trees;
        for (key, instance_id) in claims {
            trees.slots.insert(key, &id_key(*instance_id))?;
        }
        for instance in fire.instances {
            let pair = pair_key(instance.task_id, instance.id);
            trees.instances_by_task.insert(pair, &[])?;
            if instance.status == InstanceStatus::Running {
                trees.running.insert(pair, &[])?;
            }
        }
        for instance in fire.instances {
            trees
                .instances
                .insert(id_key(instance.id), encode(instance))?;
        }
        if let Some(state) = fire.state {
            trees
                .task_state
                .insert(id_key(fire.task_id), encode(state))?;
        }
        if let Some(task) = fire.task {
            let _writing = self.lock_entities();
            trees.tasks.insert(id_key(task.id), encode(task))?;
        }
        Ok(())
    }

    /// Removes what [`Store::write_fire`] may have written of a fire's
    /// instances, in the reverse order, so no Running instance that was
    /// never sent stays behind. A fire state or task already written stays.
    fn undo_fire(&self, fire: &FireRecord<'_>, claims: &[SlotClaim]) {
        let trees = &self.trees;
        let undo = || -> Result<(), StoreError> {
            for instance in fire.instances {
                trees.instances.remove(id_key(instance.id))?;
            }
            for instance in fire.instances {
                let pair = pair_key(instance.task_id, instance.id);
                trees.running.remove(pair)?;
                trees.instances_by_task.remove(pair)?;
            }
            for (key, instance_id) in claims {
                if trees.slots.get(key)?.and_then(|id| read_u64(&id)) == Some(*instance_id) {
                    trees.slots.remove(key)?;
                }
            }
            Ok(())
        };
        if let Err(error) = undo() {
            tracing::error!(
                task.id = fire.task_id,
                %error,
                "storage: failed to undo a fire after a failed write; its instances may stay Running until the scheduler restarts"
            );
        }
    }

    /// Returns the slot keys a fire claims, with the instance of each, or
    /// `None` when one of them already belongs to a stored instance. A claim
    /// whose instance is missing, which a crash can leave, is free.
    fn free_slot_claims(
        &self,
        fire: &FireRecord<'_>,
    ) -> Result<Option<Vec<SlotClaim>>, StoreError> {
        let Some(slot) = fire.slot else {
            return Ok(Some(Vec::new()));
        };
        let mut claims = Vec::with_capacity(fire.instances.len());
        for instance in fire.instances {
            let key = slot_key(fire.task_id, slot, fire.slot_processor(instance));
            if let Some(owner) = self.trees.slots.get(key)?.and_then(|id| read_u64(&id))
                && self.trees.instances.contains_key(id_key(owner))?
            {
                return Ok(None);
            }
            claims.push((key, instance.id));
        }
        Ok(Some(claims))
    }

    pub fn task_state(&self, task_id: Id) -> Result<TaskState, StoreError> {
        match self.trees.task_state.get(id_key(task_id))? {
            Some(bytes) => decode("task_state", &id_key(task_id), &bytes),
            None => Ok(TaskState::default()),
        }
    }

    pub fn set_task_state(&self, task_id: Id, state: &TaskState) -> Result<(), StoreError> {
        self.trees
            .task_state
            .insert(id_key(task_id), encode(state))?;
        Ok(())
    }

    /// Removes a task and its fire state; its instances stay for history.
    pub fn delete_task_state(&self, task_id: Id) -> Result<(), StoreError> {
        self.trees.task_state.remove(id_key(task_id))?;
        Ok(())
    }

    pub fn instance(&self, id: u64) -> Result<Option<Instance>, StoreError> {
        match self.trees.instances.get(id_key(id))? {
            Some(bytes) => Ok(Some(decode("instances", &id_key(id), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Applies `change` to a stored instance atomically with the running
    /// index. Returns the instance after the change, or `None` if it does
    /// not exist.
    pub fn update_instance(
        &self,
        id: u64,
        change: impl Fn(&mut Instance) -> Applied,
    ) -> Result<Option<(Instance, Applied)>, StoreError> {
        let mut results = self.update_instances(&[id], |_, instance| (change(instance), ()))?;
        Ok(results
            .pop()
            .flatten()
            .map(|(instance, applied, ())| (instance, applied)))
    }

    /// Applies `change` to each of the stored instances `ids`. `change`
    /// gets the position of the id in `ids`, and returns whether it changed
    /// the instance and a value passed back with it. Returns, per id, the
    /// instance after the change, or `None` if it does not exist.
    ///
    /// Each instance is read, changed and written under its lock stripe, so
    /// two updates of one instance never interleave. No sled transaction is
    /// used, because each one costs two synced log writes. The instance is
    /// written before its running index entry, and sled recovers a prefix of
    /// its log. A crash can therefore leave an index entry of an instance
    /// that already ended, which [`Store::running_instances`] skips, but
    /// never a Running instance missing from the index.
    pub fn update_instances<R>(
        &self,
        ids: &[u64],
        change: impl Fn(usize, &mut Instance) -> (Applied, R),
    ) -> Result<Vec<Option<Updated<R>>>, StoreError> {
        let _locked = self.instance_locks.lock_all(ids);
        let mut results = Vec::with_capacity(ids.len());
        for (index, &id) in ids.iter().enumerate() {
            let Some(bytes) = self.trees.instances.get(id_key(id))? else {
                results.push(None);
                continue;
            };
            let mut instance: Instance = decode("instances", &id_key(id), &bytes)?;
            let (applied, value) = change(index, &mut instance);
            if applied == Applied::Changed {
                self.trees.instances.insert(id_key(id), encode(&instance))?;
                let key = pair_key(instance.task_id, id);
                if instance.status == InstanceStatus::Running {
                    self.trees.running.insert(key, &[])?;
                } else {
                    self.trees.running.remove(key)?;
                }
            }
            results.push(Some((instance, applied, value)));
        }
        Ok(results)
    }

    /// Every Running instance.
    pub fn running_instances(&self) -> Result<Vec<Instance>, StoreError> {
        let mut found = Vec::new();
        for entry in self.trees.running.iter() {
            let (key, _) = entry?;
            let id = read_u64(&key[8..]).unwrap_or_default();
            match self.instance(id)? {
                Some(instance) if instance.status == InstanceStatus::Running => {
                    found.push(instance);
                }
                // An entry left by a crash between an end and its index update.
                Some(_) | None => {
                    self.trees.running.remove(&key)?;
                }
            }
        }
        Ok(found)
    }

    /// The largest instance id ever stored, to resume the id generator.
    pub fn newest_instance_id(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .trees
            .instances
            .last()?
            .and_then(|(key, _)| read_u64(&key)))
    }

    /// Number of instances stored.
    pub fn instance_count(&self) -> usize {
        self.trees.instances.len()
    }

    /// Lists instances newest first.
    pub fn list_instances(&self, filter: &InstanceFilter) -> Result<InstancePage, StoreError> {
        let limit = filter.limit.clamp(1, 1000);
        let low = filter
            .since
            .map(|at| snowflake::first_id_at(at.timestamp_millis()))
            .unwrap_or(0);
        let mut high = filter
            .until
            .map(|at| snowflake::first_id_at(at.timestamp_millis() + 1))
            .unwrap_or(u64::MAX);
        if let Some(before) = filter.before {
            high = high.min(before);
        }

        let ids: Box<dyn Iterator<Item = Result<u64, StoreError>>> = match filter.task_id {
            Some(task_id) => Box::new(
                self.trees
                    .instances_by_task
                    .range(pair_key(task_id, low)..pair_key(task_id, high))
                    .rev()
                    .map(|entry| Ok(read_u64(&entry?.0[8..]).unwrap_or_default())),
            ),
            None => Box::new(
                self.trees
                    .instances
                    .range(id_key(low)..id_key(high))
                    .rev()
                    .map(|entry| Ok(read_u64(&entry?.0).unwrap_or_default())),
            ),
        };

        let mut instances = Vec::new();
        for (scanned, id) in ids.enumerate() {
            let id = id?;
            if scanned >= MAX_SCAN {
                return Ok(InstancePage {
                    instances,
                    next_cursor: Some(id),
                });
            }
            let Some(instance) = self.instance(id)? else {
                continue;
            };
            if filter
                .status
                .is_some_and(|status| instance.status != status)
                || filter
                    .processor_id
                    .is_some_and(|p| instance.executor_processor_id != Some(p))
            {
                continue;
            }
            instances.push(instance);
            if instances.len() == limit {
                return Ok(InstancePage {
                    instances,
                    next_cursor: Some(id),
                });
            }
        }
        Ok(InstancePage {
            instances,
            next_cursor: None,
        })
    }

    /// Ids of a task's instances, newest first, at most `limit`.
    pub fn task_instance_ids(&self, task_id: Id, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.trees
            .instances_by_task
            .scan_prefix(id_key(task_id))
            .rev()
            .take(limit)
            .map(|entry| Ok(read_u64(&entry?.0[8..]).unwrap_or_default()))
            .collect()
    }

    /// Stores a chunk of live output at `offset`, cut at `cap`. Storing the
    /// same chunk again changes nothing.
    pub fn append_output(
        &self,
        instance_id: u64,
        stream: Stream,
        offset: u64,
        bytes: &[u8],
        cap: u64,
    ) -> Result<(), StoreError> {
        if offset >= cap || bytes.is_empty() {
            return Ok(());
        }
        let room = (cap - offset) as usize;
        let bytes = &bytes[..bytes.len().min(room)];
        self.trees
            .output
            .insert(output_key(instance_id, stream, offset), bytes)?;
        Ok(())
    }

    /// Ends a stream that exceeded its cap: drops stored bytes past `keep`,
    /// then stores the cut marker and the tail.
    pub fn apply_output_tail(
        &self,
        instance_id: u64,
        stream: Stream,
        keep: u64,
        marker: &[u8],
        tail: &[u8],
    ) -> Result<(), StoreError> {
        let prefix = output_prefix(instance_id, stream);
        let mut batch = sled::Batch::default();
        for entry in self.trees.output.scan_prefix(prefix) {
            let (key, bytes) = entry?;
            let offset = read_u64(&key[9..]).unwrap_or_default();
            let end = offset + bytes.len() as u64;
            if offset >= keep {
                batch.remove(key);
            } else if end > keep {
                batch.insert(key, &bytes[..(keep - offset) as usize]);
            }
        }
        let mut ending = marker.to_vec();
        ending.extend_from_slice(tail);
        batch.insert(&output_key(instance_id, stream, keep), ending);
        self.trees.output.apply_batch(batch)?;
        Ok(())
    }

    /// The stored output of one stream, from byte `from` on.
    pub fn read_output(
        &self,
        instance_id: u64,
        stream: Stream,
        from: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .trees
            .output
            .scan_prefix(output_prefix(instance_id, stream))
        {
            let (key, bytes) = entry?;
            let offset = read_u64(&key[9..]).unwrap_or_default();
            let end = offset + bytes.len() as u64;
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(offset) as usize;
            out.extend_from_slice(&bytes[skip..]);
        }
        Ok(out)
    }

    /// Deletes instances created before `cutoff`, with their indexes and
    /// output. Returns how many were deleted.
    pub fn purge_instances_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let high = snowflake::first_id_at(cutoff.timestamp_millis());
        let mut purged = 0;
        for entry in self.trees.instances.range(..id_key(high)).keys() {
            let key = entry?;
            let id = read_u64(&key).unwrap_or_default();
            // Read again under the lock, so an update cannot bring back an
            // instance removed here.
            let _locked = self.instance_locks.lock_all(&[id]);
            let Some(bytes) = self.trees.instances.get(&key)? else {
                continue;
            };
            let instance: Instance = decode("instances", &key, &bytes)?;
            if instance.status == InstanceStatus::Running {
                continue;
            }
            self.trees.instances.remove(&key)?;
            self.trees
                .instances_by_task
                .remove(pair_key(instance.task_id, instance.id))?;
            let processor = instance.executor_processor_id.unwrap_or(0);
            for claimed in [0, processor] {
                let key = slot_key(instance.task_id, instance.scheduled_time, claimed);
                if self.trees.slots.get(key)?.and_then(|id| read_u64(&id)) == Some(instance.id) {
                    self.trees.slots.remove(key)?;
                }
            }
            for stream in [Stream::Stdout, Stream::Stderr] {
                for chunk in self
                    .trees
                    .output
                    .scan_prefix(output_prefix(instance.id, stream))
                    .keys()
                {
                    self.trees.output.remove(chunk?)?;
                }
            }
            purged += 1;
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::entities::{Frequency, Trigger};
    use crate::storage::DEFAULT_CACHE_BYTES;

    fn slot() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
    }

    fn instance(id: u64, task_id: Id, processor_id: Id) -> Instance {
        Instance {
            id,
            task_id,
            name: format!("task-{task_id}"),
            description: String::new(),
            command: "true".into(),
            frequency: Frequency::Repeat,
            cron_expression: "* * * * * *".into(),
            maximum_parallel_runnable_num: 1,
            tag: String::new(),
            status: InstanceStatus::Running,
            created_time: slot(),
            updated_time: slot(),
            executor_processor_id: Some(processor_id),
            executor_processor_name: format!("p{processor_id}"),
            executor_processor_host: "127.0.0.1".into(),
            bind_id: Some(processor_id),
            scheduled_time: slot(),
            trigger: Trigger::Cron,
            attempt: 1,
            started_time: None,
            finished_time: None,
            exit_code: None,
            signal: None,
            reason: None,
        }
    }

    fn running_ids(store: &Store) -> Vec<u64> {
        store
            .running_instances()
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect()
    }

    fn state(skipped: u64) -> TaskState {
        TaskState {
            last_slot: Some(slot()),
            missed: 0,
            skipped,
        }
    }

    fn fire<'a>(
        task_id: Id,
        instances: &'a [Instance],
        state: &'a TaskState,
        per_processor: bool,
    ) -> FireRecord<'a> {
        FireRecord {
            task_id,
            slot: Some(slot()),
            per_processor,
            instances,
            state: Some(state),
            task: None,
        }
    }

    #[test]
    fn record_fires_skips_taken_slot_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let first = [instance(10, 1, 1)];
        let first_state = state(0);
        let stored = store
            .record_fires(&[fire(1, &first, &first_state, false)])
            .unwrap();
        assert_eq!(stored, [true]);

        let again = [instance(11, 1, 2)];
        let other = [instance(12, 2, 1)];
        let later_state = state(5);
        let stored = store
            .record_fires(&[
                fire(1, &again, &later_state, false),
                fire(2, &other, &later_state, false),
            ])
            .unwrap();
        assert_eq!(stored, [false, true]);
        assert!(store.instance(10).unwrap().is_some());
        assert!(store.instance(11).unwrap().is_none());
        assert!(store.instance(12).unwrap().is_some());
        assert_eq!(store.task_state(1).unwrap(), first_state);
        assert_eq!(store.task_state(2).unwrap(), later_state);
        let running = running_ids(&store);
        assert_eq!(running, [10, 12]);
    }

    #[test]
    fn slot_claim_without_instance_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        // What a crash between a fire's slot claim and its instance leaves:
        // the claim and the index entries, and no instance 20.
        store
            .trees
            .slots
            .insert(slot_key(2, slot(), 0), &id_key(20))
            .unwrap();
        store.trees.running.insert(pair_key(2, 20), &[]).unwrap();

        let retried = [instance(21, 2, 1)];
        let fire_state = state(0);
        let stored = store
            .record_fires(&[fire(2, &retried, &fire_state, false)])
            .unwrap();
        assert_eq!(stored, [true]);
        assert!(store.instance(21).unwrap().is_some());
        let owner = store.trees.slots.get(slot_key(2, slot(), 0)).unwrap();
        assert_eq!(owner.and_then(|id| read_u64(&id)), Some(21));
        let running = running_ids(&store);
        assert_eq!(running, [21]);
    }

    #[test]
    fn undone_fire_leaves_no_instance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let instances = [instance(50, 5, 1), instance(51, 5, 2)];
        let fire_state = state(0);
        let record = fire(5, &instances, &fire_state, true);
        let claims = store.free_slot_claims(&record).unwrap().unwrap();
        store.write_fire(&record, &claims).unwrap();

        store.undo_fire(&record, &claims);
        for id in [50, 51] {
            assert!(store.instance(id).unwrap().is_none(), "instance {id}");
            assert!(!store.trees.running.contains_key(pair_key(5, id)).unwrap());
            assert!(
                !store
                    .trees
                    .instances_by_task
                    .contains_key(pair_key(5, id))
                    .unwrap()
            );
        }
        for (key, _) in &claims {
            assert!(!store.trees.slots.contains_key(key).unwrap());
        }
        let again = store.record_fire(&record).unwrap();
        assert!(again, "the slot is free again after the undo");
    }

    #[test]
    fn running_index_of_ended_instance_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let fires = [instance(30, 3, 1), instance(31, 3, 1)];
        let fire_state = state(0);
        store
            .record_fires(&[fire(3, &fires, &fire_state, true)])
            .unwrap();
        // What a crash between an instance's end and its index update leaves.
        let mut ended = instance(30, 3, 1);
        ended.status = InstanceStatus::AbnormalEnding;
        store
            .trees
            .instances
            .insert(id_key(30), encode(&ended))
            .unwrap();

        let running = running_ids(&store);
        assert_eq!(running, [31]);
        assert!(!store.trees.running.contains_key(pair_key(3, 30)).unwrap());
    }

    #[test]
    fn update_instances_applies_each_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let fires = [instance(40, 4, 1), instance(41, 4, 1)];
        let fire_state = state(0);
        store
            .record_fires(&[fire(4, &fires, &fire_state, true)])
            .unwrap();

        let results = store
            .update_instances(&[41, 99, 40], |index, instance| {
                if index == 0 {
                    instance.status = InstanceStatus::Finished;
                    (Applied::Changed, index)
                } else {
                    (Applied::Ignored, index)
                }
            })
            .unwrap();
        assert!(results[1].is_none());
        let (first, applied, index) = results[0].as_ref().unwrap();
        assert_eq!((first.id, *applied, *index), (41, Applied::Changed, 0));
        let (last, applied, index) = results[2].as_ref().unwrap();
        assert_eq!((last.id, *applied, *index), (40, Applied::Ignored, 2));
        assert_eq!(
            store.instance(41).unwrap().unwrap().status,
            InstanceStatus::Finished
        );
        let running = running_ids(&store);
        assert_eq!(running, [40]);
    }

    #[test]
    fn record_fires_broadcast_claims_per_processor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let first = [instance(20, 1, 1), instance(21, 1, 2)];
        let no_change = state(0);
        let stored = store
            .record_fires(&[fire(1, &first, &no_change, true)])
            .unwrap();
        assert_eq!(stored, [true]);

        // Processor 3 is new, processor 2 already has the slot: the whole
        // fire is rejected, including the instance for processor 3.
        let overlapping = [instance(22, 1, 3), instance(23, 1, 2)];
        let stored = store
            .record_fires(&[fire(1, &overlapping, &no_change, true)])
            .unwrap();
        assert_eq!(stored, [false]);
        assert!(store.instance(22).unwrap().is_none());
        assert!(store.instance(23).unwrap().is_none());

        let fresh = [instance(24, 1, 3)];
        let stored = store
            .record_fires(&[fire(1, &fresh, &no_change, true)])
            .unwrap();
        assert_eq!(stored, [true]);
        assert!(store.instance(24).unwrap().is_some());
    }

    #[test]
    fn record_fires_stores_state_without_instances() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let skipped = state(3);
        let record = FireRecord {
            task_id: 7,
            slot: None,
            per_processor: false,
            instances: &[],
            state: Some(&skipped),
            task: None,
        };
        assert_eq!(store.record_fires(&[record]).unwrap(), [true]);
        assert_eq!(store.task_state(7).unwrap(), skipped);
        assert_eq!(store.instance_count(), 0);
    }
}
