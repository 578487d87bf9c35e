//! Time of one smooth weighted round-robin pick over 10 and 1,000 binds.
//!
//! Run with `cargo bench --bench routing`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use delicate::domain::routing::{Candidate, SmoothWeightedRoundRobin};

fn candidates(count: u64) -> Vec<Candidate> {
    (1..=count)
        .map(|bind_id| Candidate {
            bind_id,
            weight: (bind_id % 100) as u32 + 1,
        })
        .collect()
}

fn pick(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("routing pick");
    for count in [10, 1000] {
        let set = candidates(count);
        let mut round_robin = SmoothWeightedRoundRobin::default();
        group.bench_function(format!("{count} binds"), |bencher| {
            bencher.iter(|| round_robin.pick(black_box(&set)))
        });
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
