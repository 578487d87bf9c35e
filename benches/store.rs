//! Time to store one cron fire (slot claim, indexes, instance and task
//! state), without a flush and then with a flush through the group-commit
//! flusher. Time to store one status change of an instance (read, decode,
//! encode, write). The baseline is one raw sled insert of an encoded
//! instance's size, without and with a flush, in the same run.
//!
//! Run with `cargo bench --bench store`. The flushed figures are bound by
//! the disk's sync rate of the machine they run on.

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use delicate::domain::entities::{Frequency, Instance, InstanceStatus, Trigger};
use delicate::domain::lifecycle::Applied;
use delicate::storage::{DEFAULT_CACHE_BYTES, FireRecord, Store, TaskState};

fn instance(id: u64, slot: DateTime<Utc>) -> Instance {
    Instance {
        id,
        task_id: 1,
        name: "nightly-backup".into(),
        description: String::new(),
        command: "true".into(),
        frequency: Frequency::Repeat,
        cron_expression: "* * * * * *".into(),
        maximum_parallel_runnable_num: 1,
        tag: String::new(),
        status: InstanceStatus::Running,
        created_time: slot,
        updated_time: slot,
        executor_processor_id: Some(1),
        executor_processor_name: "executor-1".into(),
        executor_processor_host: "127.0.0.1".into(),
        bind_id: Some(1),
        scheduled_time: slot,
        trigger: Trigger::Cron,
        attempt: 1,
        started_time: None,
        finished_time: None,
        exit_code: None,
        signal: None,
        reason: None,
    }
}

/// Stores the fire of slot number `n`; each slot is claimed once.
fn record(store: &Store, start: DateTime<Utc>, n: u64) {
    let slot = start + Duration::seconds(n as i64);
    let instances = [instance(n + 1, slot)];
    let state = TaskState {
        last_slot: Some(slot),
        missed: 0,
        skipped: 0,
    };
    let fire = FireRecord {
        task_id: 1,
        slot: Some(slot),
        per_processor: false,
        instances: &instances,
        state: Some(&state),
        task: None,
    };
    assert!(
        store
            .record_fire(black_box(&fire))
            .expect("the fire is stored")
    );
}

/// Bytes of the raw insert baseline: about one encoded instance.
const RAW_VALUE_LEN: usize = 300;

fn raw_insert(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(DEFAULT_CACHE_BYTES)
        .open()
        .expect("sled opens");
    let value = vec![0x5a_u8; RAW_VALUE_LEN];
    let mut n = 0u64;
    let mut group = criterion.benchmark_group("sled raw insert");
    group.bench_function("no flush", |bencher| {
        bencher.iter(|| {
            n += 1;
            db.insert(black_box(n.to_be_bytes()), value.as_slice())
                .expect("the insert succeeds");
        })
    });
    group.bench_function("then flush", |bencher| {
        bencher.iter(|| {
            n += 1;
            db.insert(black_box(n.to_be_bytes()), value.as_slice())
                .expect("the insert succeeds");
            db.flush().expect("the flush succeeds");
        })
    });
    group.finish();
}

fn record_fire(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).expect("the store opens");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let start = Utc::now();
    let mut n = 0;
    let mut group = criterion.benchmark_group("store record_fire");
    group.bench_function("no flush", |bencher| {
        bencher.iter(|| {
            n += 1;
            record(&store, start, n);
        })
    });
    group.bench_function("then durable", |bencher| {
        bencher.iter(|| {
            n += 1;
            record(&store, start, n);
            runtime
                .block_on(store.durable())
                .expect("the flush succeeds");
        })
    });
    group.finish();
}

/// Measures one status change of a stored instance, the write each executor event
/// costs the scheduler.
fn update_instance(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).expect("the store opens");
    let start = Utc::now();
    for n in 0..1000 {
        record(&store, start, n);
    }
    let mut n = 0u64;
    criterion.bench_function("store update_instance", |bencher| {
        bencher.iter(|| {
            n += 1;
            let id = n % 1000 + 1;
            let updated = store
                .update_instance(black_box(id), |instance| {
                    instance.attempt += 1;
                    Applied::Changed
                })
                .expect("the instance is updated");
            assert!(updated.is_some());
        })
    });
}

criterion_group!(benches, raw_insert, record_fire, update_instance);
criterion_main!(benches);
