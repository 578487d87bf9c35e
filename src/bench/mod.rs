//! `delicate bench`: scenarios that start their own scheduler and executors
//! as processes of this binary on loopback, measure them, print a table and
//! write the figures as JSON.
//!
//! Every scenario prints a progress line per second on stderr while it runs.
//! Figures are noisy on a shared machine, so each scenario that has a
//! baseline measures it in the same run and reports the ratio.

mod api;
mod dispatch;
mod fire;
mod frames;
mod idle;
pub mod process;
mod report;
mod scale;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use report::{Figure, Report};

/// A measurement `delicate bench` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N tasks firing every second: fire rate, lateness, missed fires.
    Fire,
    /// As many instances as the cluster runs: rate and scheduler CPU per instance.
    Dispatch,
    /// N enabled tasks loaded into the store: memory, start-up, disk use.
    Scale,
    /// Task creations and instance reads over HTTP: rate and latency.
    Api,
    /// A scheduler and an executor with nothing to do: memory and CPU.
    Idle,
    /// Frames over one QUIC stream, against a bare quinn stream.
    Frames,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Number of tasks (defaults: fire 1000, dispatch 4000, scale 1000000;
    /// api: the maximum number of creations, 100000).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Length of the measured window, such as `60s` or `2m` (fire: 60 s,
    /// dispatch and api and idle: 30 s, frames: 10 s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Number of executor processes (fire and dispatch).
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// HTTP connections of the api scenario, one thread each.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// File to write the figures to, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the nodes' data in this directory instead of a temporary one
    /// that is removed at the end.
    #[arg(long)]
    pub keep_data: Option<PathBuf>,
}

impl BenchArgs {
    fn tasks_or(&self, default: usize) -> usize {
        self.tasks.unwrap_or(default)
    }

    fn duration_or(&self, default_seconds: u64) -> Duration {
        self.duration
            .unwrap_or(Duration::from_secs(default_seconds))
    }
}

/// Parses `90`, `90s`, `1500ms`, `2m` or `1h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit, such as 60s")
    })?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(value),
        "ms" => Duration::from_millis(value),
        "m" => Duration::from_secs(value * 60),
        "h" => Duration::from_secs(value * 3600),
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    if duration.is_zero() {
        return Err("the duration must be above 0".to_string());
    }
    Ok(duration)
}

/// Runs one scenario, prints its table and writes its JSON.
pub fn run(args: BenchArgs) -> ExitCode {
    let result = match args.scenario {
        Scenario::Fire => fire::run(&args),
        Scenario::Dispatch => dispatch::run(&args),
        Scenario::Scale => scale::run(&args),
        Scenario::Api => api::run(&args),
        Scenario::Idle => idle::run(&args),
        Scenario::Frames => frames::run(&args),
    };
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: bench {:?} failed: {error:#}", args.scenario);
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    if let Some(path) = &args.json
        && let Err(error) = report.write_json(path)
    {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Prints one progress line on stderr.
fn progress(scenario: &str, elapsed: Duration, text: &str) {
    eprintln!("[{scenario} {:>5.1}s] {text}", elapsed.as_secs_f64());
}
