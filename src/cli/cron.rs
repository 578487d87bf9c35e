//! `delicate cron preview`: prints the next fire times of a cron expression.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde::Serialize;

use crate::domain::schedule;

/// The largest `--count` accepted, which keeps the output readable.
const MAX_COUNT: u64 = 1_000;

/// Arguments of `delicate cron preview`.
#[derive(Debug, Clone, Args)]
pub struct CronPreviewArgs {
    /// Cron expression: 5 fields (minute hour day-of-month month day-of-week),
    /// 6 (second first), 7 (second first, year last), or a macro such as
    /// @daily or "@every 90s"
    pub expression: String,

    /// IANA time zone the expression is read in, such as Europe/Berlin
    #[arg(long = "tz", value_name = "ZONE", default_value = "UTC")]
    pub time_zone: String,

    /// Instant to preview from, in RFC 3339 (such as 2026-03-08T00:00:00Z);
    /// defaults to now. "@every" intervals count from it
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub after: Option<DateTime<Utc>>,

    /// Number of fire times to print, 1-1000
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_COUNT)
    )]
    pub count: usize,

    /// Print one JSON object instead of one instant per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct PreviewOutput<'a> {
    expression: &'a str,
    time_zone: &'a str,
    fire_times: Vec<String>,
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|error| format!("invalid RFC 3339 instant \"{text}\": {error}"))
}

/// Prints the next fire times of `args.expression` to standard output.
///
/// Returns exit status 1 with the error on standard error when the
/// expression or the zone is invalid or the output cannot be written.
pub fn run_preview(args: &CronPreviewArgs) -> ExitCode {
    let after = args.after.unwrap_or_else(Utc::now);
    let fire_times = match schedule::preview(&args.expression, &args.time_zone, after, args.count) {
        Ok(fire_times) => fire_times,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };

    let formatted: Vec<String> = fire_times
        .iter()
        .map(|instant| instant.to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect();

    let output = if args.json {
        let document = PreviewOutput {
            expression: &args.expression,
            time_zone: &args.time_zone,
            fire_times: formatted,
        };
        match serde_json::to_string(&document) {
            Ok(text) => text + "\n",
            Err(error) => {
                eprintln!("error: failed to encode the preview as JSON: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        formatted.iter().map(|line| format!("{line}\n")).collect()
    };

    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("error: failed to write the preview: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
