//! `delicate crontab import`: sends crontab files to the scheduler, which
//! turns their lines into tasks.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Connection, Kind};
use super::output::{Table, cell, print_json, print_text};

#[derive(Args, Debug)]
pub struct CrontabCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    action: CrontabAction,
}

#[derive(Subcommand, Debug)]
enum CrontabAction {
    /// Create or update one task per crontab line. Task names are
    /// crontab-FILE-LINE (FILE is the base name), so importing a file again
    /// updates its tasks. With any invalid line nothing is imported
    Import(ImportArgs),
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// Crontab files, in crontab(5) format
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Read system crontabs (/etc/crontab, /etc/cron.d/*): the field after
    /// the schedule is the user to run as
    #[arg(long)]
    system: bool,
    /// Bind of every imported task, by name or id (repeatable); without it,
    /// new tasks get the only bind there is and existing tasks keep theirs
    #[arg(long = "bind", value_name = "BIND")]
    binds: Vec<String>,
    /// IANA zone of the lines before any CRON_TZ or TZ line
    #[arg(long = "tz", value_name = "ZONE", default_value = "UTC")]
    time_zone: String,
    /// Report what the import would do and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Import the valid lines even when some lines are invalid
    #[arg(long)]
    skip_invalid: bool,
}

pub fn run(command: CrontabCommand) -> anyhow::Result<()> {
    let client = Client::new(&command.connection.server);
    match command.action {
        CrontabAction::Import(args) => import(&client, args, command.connection.json),
    }
}

fn import(client: &Client, args: ImportArgs, json: bool) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for path in &args.files {
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read the crontab file {}", path.display()))?;
        let content = String::from_utf8(bytes)
            .with_context(|| format!("the crontab file {} is not valid UTF-8", path.display()))?;
        files.push(json!({"name": path.to_string_lossy(), "content": content}));
    }
    let mut body = json!({
        "files": files,
        "system": args.system,
        "time_zone": args.time_zone,
        "dry_run": args.dry_run,
        "skip_invalid": args.skip_invalid,
    });
    if !args.binds.is_empty() {
        let ids = args
            .binds
            .iter()
            .map(|bind| client.resolve_id(Kind::Bind, bind))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        body["binding_ids"] = json!(ids);
    }

    let reply = client.send("POST", "/crontab/import", &[], Some(&body))?;
    if reply.status == 422 && reply.body["bad_lines"].is_array() {
        report_bad_lines(&reply.body["bad_lines"], "error");
        bail!(
            "nothing was imported: fix the lines above or pass --skip-invalid to import the others"
        );
    }
    let result = reply.into_body()?;
    if json {
        return print_json(&result);
    }
    report_bad_lines(&result["bad_lines"], "skipped");
    print_summary(&result)
}

/// Prints each bad line as `FILE:LINE: REASON` on stderr.
fn report_bad_lines(bad_lines: &Value, label: &str) {
    for bad in bad_lines.as_array().into_iter().flatten() {
        eprintln!(
            "{label}: {}:{}: {}",
            cell(&bad["file"]),
            cell(&bad["line"]),
            cell(&bad["reason"])
        );
    }
}

fn print_summary(result: &Value) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "ACTION",
        "NAME",
        "SCHEDULE",
        "ZONE",
        "RUN AS",
        "NEXT FIRE",
        "ENV",
        "COMMAND",
    ]);
    for task in result["tasks"].as_array().into_iter().flatten() {
        table.push(vec![
            cell(&task["action"]),
            cell(&task["name"]),
            cell(&task["cron_expression"]),
            cell(&task["time_zone"]),
            cell(&task["run_as"]),
            cell(&task["next_fire_time"]),
            cell(&task["env"]),
            cell(&task["command"]),
        ]);
    }
    table.print()?;
    let dry_run = if result["dry_run"] == true {
        " (dry run: nothing was written)"
    } else {
        ""
    };
    print_text(&format!(
        "{} created, {} updated, {} unchanged{dry_run}\n",
        cell(&result["created"]),
        cell(&result["updated"]),
        cell(&result["unchanged"]),
    ))
}
