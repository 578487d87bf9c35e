//! Time of one `next_after` call for typical expressions, with the cron
//! crate (0.17) on equivalent 6-field expressions as the baseline.
//!
//! Run with `cargo bench --bench schedule`.

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use delicate::domain::schedule::Schedule;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 11, 7, 13)
        .single()
        .expect("a valid instant")
}

fn delicate_next_after(criterion: &mut Criterion) {
    let cases = [
        ("*/5 * * * *", "UTC"),
        ("*/5 * * * *", "Europe/Berlin"),
        ("0 30 9 * * mon-fri", "UTC"),
        ("0 30 9 * * mon-fri", "Europe/Berlin"),
        ("0 0 12 L * ?", "UTC"),
        ("0 0 12 L * ?", "Europe/Berlin"),
        ("@every 90s", "UTC"),
    ];
    let mut group = criterion.benchmark_group("delicate next_after");
    for (expression, zone) in cases {
        let schedule = Schedule::parse(expression, zone, start()).expect("a valid expression");
        group.bench_function(format!("{expression} {zone}"), |bencher| {
            bencher.iter(|| schedule.next_after(black_box(start())))
        });
    }
    group.finish();
}

fn cron_crate_next(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("cron 0.17 after().next()");
    for expression in ["0 */5 * * * *", "0 30 9 * * Mon-Fri"] {
        let schedule = cron::Schedule::from_str(expression).expect("a valid expression");
        let after_utc = start();
        group.bench_function(format!("{expression} UTC"), |bencher| {
            bencher.iter(|| schedule.after(black_box(&after_utc)).next())
        });
        let after_berlin = start().with_timezone(&chrono_tz::Europe::Berlin);
        group.bench_function(format!("{expression} Europe/Berlin"), |bencher| {
            bencher.iter(|| schedule.after(black_box(&after_berlin)).next())
        });
    }
    group.finish();
}

fn short_runs() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = short_runs();
    targets = delicate_next_after, cron_crate_next
}
criterion_main!(benches);
