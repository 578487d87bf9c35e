//! Time of one snowflake instance id, with a fixed clock reading and with
//! the clock read per id as the scheduler does.
//!
//! Run with `cargo bench --bench snowflake`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use delicate::domain::snowflake::SnowflakeGenerator;

fn next_id(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("snowflake next_id");
    let mut generator = SnowflakeGenerator::default();
    let now = chrono::Utc::now().timestamp_millis();
    group.bench_function("fixed clock", |bencher| {
        bencher.iter(|| generator.next_id(black_box(7), black_box(now)))
    });
    let mut generator = SnowflakeGenerator::default();
    group.bench_function("clock per id", |bencher| {
        bencher.iter(|| generator.next_id(black_box(7), chrono::Utc::now().timestamp_millis()))
    });
    group.finish();
}

criterion_group!(benches, next_id);
criterion_main!(benches);
