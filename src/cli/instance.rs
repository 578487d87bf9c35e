//! `delicate instance list|show|output|kill`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Connection, Kind};
use super::output::{Table, cell, duration, instant, print_json, print_record, print_text};

/// Pause between two reads of `instance output --follow`.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// Largest page the API returns; longer listings follow the cursor.
const MAX_PAGE: usize = 1000;

#[derive(Args, Debug)]
pub struct InstanceCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    action: InstanceAction,
}

#[derive(Subcommand, Debug)]
enum InstanceAction {
    /// List instances, newest first
    List(ListArgs),
    /// Show every field of an instance
    Show(InstanceRef),
    /// Write an instance's captured output to stdout, byte for byte
    Output(OutputArgs),
    /// Kill a running instance's process group
    Kill(InstanceRef),
}

#[derive(Args, Debug)]
struct InstanceRef {
    /// Instance id
    id: String,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Only instances of this task, by name or id
    #[arg(long)]
    task: Option<String>,
    /// Only instances in this status: running, finished, abnormal_ending,
    /// timeout_ending, manual_cancellation, unknown or a status code
    #[arg(long)]
    status: Option<String>,
    /// Only instances created since this RFC 3339 instant, or this long ago
    /// (such as 90s, 30m, 2h or 1d)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Maximum number of instances to list
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    limit: usize,
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// Instance id
    id: String,
    /// Read standard error in place of standard output
    #[arg(long)]
    stderr: bool,
    /// Keep reading new output until the instance ends
    #[arg(long, short = 'f')]
    follow: bool,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let invalid = || {
        format!(
            "invalid time {text:?}: use RFC 3339 such as 2026-01-31T12:00:00Z or a duration such as 30m"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let ago = number
        .checked_mul(seconds_per_unit)
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(invalid)?;
    Ok(Utc::now() - ago)
}

pub fn run(command: InstanceCommand) -> anyhow::Result<()> {
    let client = Client::new(&command.connection.server);
    let json = command.connection.json;
    match command.action {
        InstanceAction::List(args) => list(&client, args, json),
        InstanceAction::Show(args) => {
            let instance = client.get(&format!("/instances/{}", args.id))?;
            if json {
                return print_json(&instance);
            }
            print_record(
                &instance,
                &[
                    "id",
                    "name",
                    "task_id",
                    "status",
                    "status_code",
                    "trigger",
                    "attempt",
                ],
            )
        }
        InstanceAction::Output(args) => {
            if json {
                anyhow::bail!(
                    "--json does not apply to `instance output`, which prints the output's raw \
                     bytes: run it without --json"
                );
            }
            output(&client, args)
        }
        InstanceAction::Kill(args) => {
            let reply = client.call("POST", &format!("/instances/{}/kill", args.id), &[], None)?;
            if json {
                return print_json(&reply);
            }
            print_text(&format!("kill requested for instance {}\n", args.id))
        }
    }
}

fn list(client: &Client, args: ListArgs, json: bool) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(task) = &args.task {
        query.push(("task_id", client.resolve_id(Kind::Task, task)?.to_string()));
    }
    if let Some(status) = args.status {
        query.push(("status", status));
    }
    if let Some(since) = args.since {
        query.push(("since", since.to_rfc3339_opts(SecondsFormat::Millis, true)));
    }

    let mut instances = Vec::new();
    let mut cursor: Option<String> = None;
    while instances.len() < args.limit {
        let mut page_query = query.clone();
        page_query.push((
            "limit",
            (args.limit - instances.len()).min(MAX_PAGE).to_string(),
        ));
        if let Some(cursor) = &cursor {
            page_query.push(("cursor", cursor.clone()));
        }
        let page = client.call("GET", "/instances", &page_query, None)?;
        instances.extend(page["instances"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    if json {
        return print_json(&json!(instances));
    }
    instance_table(&instances).print()
}

/// Builds the table of instances that `instance list` and `task run` print.
pub fn instance_table(instances: &[Value]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "TASK",
        "PROCESSOR",
        "STATUS",
        "TRIGGER",
        "ATTEMPT",
        "START",
        "DURATION",
        "EXIT",
    ]);
    for instance in instances {
        let took = match (
            instant(&instance["started_time"]),
            instant(&instance["finished_time"]),
        ) {
            (Some(start), Some(end)) => duration((end - start).num_milliseconds()),
            _ => "-".to_string(),
        };
        let exit = match (&instance["exit_code"], &instance["signal"]) {
            (Value::Null, Value::Number(signal)) => format!("signal {signal}"),
            (code, _) => cell(code),
        };
        let processor = match instance["executor_processor_name"].as_str() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => "-".to_string(),
        };
        table.push(vec![
            cell(&instance["id"]),
            cell(&instance["name"]),
            processor,
            cell(&instance["status"]),
            cell(&instance["trigger"]),
            cell(&instance["attempt"]),
            cell(&instance["started_time"]),
            took,
            exit,
        ]);
    }
    table
}

/// Copies the stream to stdout as bytes. With `--follow`, reads from the
/// last offset until the instance has ended, then once more for the bytes
/// that arrived with its end.
fn output(client: &Client, args: OutputArgs) -> anyhow::Result<()> {
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let mut stdout = std::io::stdout().lock();
    let mut offset = 0u64;
    let mut ended_seen = false;
    loop {
        let chunk = client.output(&args.id, stream, offset)?;
        stdout
            .write_all(&chunk.bytes)
            .context("failed to write the output")?;
        stdout.flush().context("failed to write the output")?;
        offset += chunk.bytes.len() as u64;
        if !args.follow || ended_seen {
            return Ok(());
        }
        if chunk.instance_status != "running" {
            ended_seen = true;
            continue;
        }
        if chunk.bytes.is_empty() {
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    }
}
