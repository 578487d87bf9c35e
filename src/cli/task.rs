//! `delicate task create|list|show|edit|run|enable|disable|delete`.

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use super::client::{Client, Connection, Kind};
use super::instance::instance_table;
use super::output::{Table, cell, print_json, print_record, print_text};

#[derive(Args, Debug)]
pub struct TaskCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    action: TaskAction,
}

#[derive(Subcommand, Debug)]
enum TaskAction {
    /// Create a task
    Create(CreateArgs),
    /// List tasks with their next fire time and last outcome
    List,
    /// Show every field of a task
    Show(TaskRef),
    /// Change fields of a task; options left out keep their value
    Edit(EditArgs),
    /// Start an instance now, outside the schedule
    Run(TaskRef),
    /// Let the schedule fire again; a used-up count starts over
    Enable(TaskRef),
    /// Stop the schedule from firing
    Disable(TaskRef),
    /// Delete a task; its running instances go on unless --kill-running
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
struct TaskRef {
    /// Task name or id
    task: String,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// Task name or id
    task: String,
    /// Also kill the task's running instances
    #[arg(long)]
    kill_running: bool,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Unique task name
    #[arg(long)]
    name: String,
    /// Cron expression (5, 6 or 7 fields, or a macro such as @daily)
    #[arg(long = "cron", value_name = "EXPR")]
    cron_expression: String,
    /// Shell command, run as /bin/sh -c COMMAND
    #[arg(long)]
    command: String,
    /// Create the task disabled
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    fields: TaskFields,
}

#[derive(Args, Debug)]
struct EditArgs {
    /// Task name or id
    task: String,
    /// New unique task name
    #[arg(long)]
    name: Option<String>,
    /// Cron expression (5, 6 or 7 fields, or a macro such as @daily)
    #[arg(long = "cron", value_name = "EXPR")]
    cron_expression: Option<String>,
    /// Shell command, run as /bin/sh -c COMMAND
    #[arg(long)]
    command: Option<String>,
    /// Fire on every slot with no count (undoes --once and --count)
    #[arg(long, conflicts_with_all = ["once", "count"])]
    repeat: bool,
    /// Remove a variable from the task's environment (repeatable)
    #[arg(long, value_name = "KEY")]
    unset_env: Vec<String>,
    #[command(flatten)]
    fields: TaskFields,
}

/// Options shared by create and edit, one per task field.
#[derive(Args, Debug)]
struct TaskFields {
    /// Free text shown with the task
    #[arg(long)]
    description: Option<String>,
    /// IANA time zone the cron expression is read in [default on create: UTC]
    #[arg(long = "tz", value_name = "ZONE")]
    time_zone: Option<String>,
    /// Bind to route instances through, by name or id (repeatable); replaces
    /// the task's binds. Without any, a new task gets the only bind there is
    #[arg(long = "bind", value_name = "BIND")]
    binds: Vec<String>,
    /// Seconds a run may take before it is killed; 0 means no limit
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// New attempts after a run fails or times out
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Seconds between the end of a failed attempt and the next one
    #[arg(long, value_name = "SECONDS")]
    retry_interval: Option<u64>,
    /// Most instances of the task running at once, cluster-wide
    #[arg(long, value_name = "N")]
    max_parallel: Option<u32>,
    /// Dispatch mode: how a fire picks processors among the task's binds
    #[arg(long, value_enum)]
    dispatch: Option<DispatchArg>,
    /// Fire once, then disable the task
    #[arg(long, conflicts_with = "count")]
    once: bool,
    /// Fire N times, then disable the task
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Environment variable of the command (repeatable); on edit it is added
    /// to the task's environment or replaces that variable
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// User to run the command as, where the executor runs as root; an empty
    /// value clears it
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Text written to the command's standard input
    #[arg(long, value_name = "TEXT")]
    stdin: Option<String>,
    /// Address kept with the task for run notices, as crontab MAILTO
    #[arg(long, value_name = "ADDRESS")]
    mailto: Option<String>,
    /// Free text for filtering
    #[arg(long)]
    tag: Option<String>,
    /// Seconds after a missed slot within which it still fires once
    #[arg(long, value_name = "SECONDS")]
    misfire_grace: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DispatchArg {
    /// One bind per fire, by smooth weighted round-robin
    Weighted,
    /// One instance per eligible bind per fire
    Broadcast,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "invalid environment variable {text:?}: write KEY=VALUE"
        )),
    }
}

/// Fields of a task shown first by `task show`, in this order.
const SHOW_ORDER: [&str; 12] = [
    "id",
    "name",
    "status",
    "cron_expression",
    "time_zone",
    "next_fire_times",
    "command",
    "stdin",
    "env",
    "run_as",
    "binding_ids",
    "last_instance",
];

pub fn run(command: TaskCommand) -> anyhow::Result<()> {
    let client = Client::new(&command.connection.server);
    let json = command.connection.json;
    match command.action {
        TaskAction::Create(args) => create(&client, args, json),
        TaskAction::List => list(&client, json),
        TaskAction::Show(args) => show(&client.resolve(Kind::Task, &args.task)?, json),
        TaskAction::Edit(args) => edit(&client, args, json),
        TaskAction::Run(args) => run_now(&client, &args.task, json),
        TaskAction::Enable(args) => set_status(&client, &args.task, "enable", json),
        TaskAction::Disable(args) => set_status(&client, &args.task, "disable", json),
        TaskAction::Delete(args) => delete(&client, args, json),
    }
}

fn create(client: &Client, args: CreateArgs, json: bool) -> anyhow::Result<()> {
    let mut body = Map::new();
    body.insert("name".into(), json!(args.name));
    body.insert("cron_expression".into(), json!(args.cron_expression));
    body.insert("command".into(), json!(args.command));
    if args.disabled {
        body.insert("status".into(), json!("disabled"));
    }
    if !args.fields.env.is_empty() {
        let env: Map<String, Value> = args
            .fields
            .env
            .iter()
            .map(|(key, value)| (key.clone(), json!(value)))
            .collect();
        body.insert("env".into(), Value::Object(env));
    }
    insert_fields(client, &mut body, &args.fields)?;
    let task = client.post("/tasks", &Value::Object(body))?;
    show(&task, json)
}

fn edit(client: &Client, args: EditArgs, json: bool) -> anyhow::Result<()> {
    let task = client.resolve(Kind::Task, &args.task)?;
    let mut body = Map::new();
    if let Some(name) = args.name {
        body.insert("name".into(), json!(name));
    }
    if let Some(expression) = args.cron_expression {
        body.insert("cron_expression".into(), json!(expression));
    }
    if let Some(command) = args.command {
        body.insert("command".into(), json!(command));
    }
    if args.repeat {
        body.insert("frequency".into(), json!({"mode": "repeat"}));
    }
    if !args.fields.env.is_empty() || !args.unset_env.is_empty() {
        let mut env = task["env"].as_object().cloned().unwrap_or_default();
        for key in &args.unset_env {
            env.remove(key);
        }
        for (key, value) in &args.fields.env {
            env.insert(key.clone(), json!(value));
        }
        body.insert("env".into(), Value::Object(env));
    }
    insert_fields(client, &mut body, &args.fields)?;
    let id = task_id(&task)?;
    let task = client.patch(&format!("/tasks/{id}"), &Value::Object(body))?;
    show(&task, json)
}

/// Adds the fields create and edit share, except `env`, to a request body.
fn insert_fields(
    client: &Client,
    body: &mut Map<String, Value>,
    fields: &TaskFields,
) -> anyhow::Result<()> {
    let mut put = |key: &str, value: Value| {
        body.insert(key.to_string(), value);
    };

    let texts = [
        ("description", &fields.description),
        ("time_zone", &fields.time_zone),
        ("run_as", &fields.run_as),
        ("stdin", &fields.stdin),
        ("mailto", &fields.mailto),
        ("tag", &fields.tag),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            put(key, json!(value));
        }
    }

    let seconds = [
        ("timeout", fields.timeout),
        ("retry_interval", fields.retry_interval),
        ("misfire_grace", fields.misfire_grace),
    ];
    for (key, value) in seconds {
        if let Some(value) = value {
            put(key, json!(value));
        }
    }

    if let Some(retries) = fields.retries {
        put("retry_times", json!(retries));
    }
    if let Some(max) = fields.max_parallel {
        put("maximum_parallel_runnable_num", json!(max));
    }
    if let Some(dispatch) = fields.dispatch {
        let name = match dispatch {
            DispatchArg::Weighted => "weighted",
            DispatchArg::Broadcast => "broadcast",
        };
        put("dispatch", json!(name));
    }

    if fields.once {
        put("frequency", json!({"mode": "once"}));
    }
    if let Some(count) = fields.count {
        put("frequency", json!({"mode": "count_down", "count": count}));
    }

    if !fields.binds.is_empty() {
        let ids = fields
            .binds
            .iter()
            .map(|bind| client.resolve_id(Kind::Bind, bind))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        put("binding_ids", json!(ids));
    }
    Ok(())
}

fn task_id(task: &Value) -> anyhow::Result<u64> {
    task["id"]
        .as_u64()
        .with_context(|| format!("the server sent a task without an id: {task}"))
}

fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let tasks = client.get("/tasks")?;
    if json {
        return print_json(&tasks);
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "SCHEDULE",
        "ZONE",
        "STATUS",
        "NEXT FIRE",
        "LAST RUN",
    ]);
    for task in tasks.as_array().into_iter().flatten() {
        table.push(vec![
            cell(&task["id"]),
            cell(&task["name"]),
            cell(&task["cron_expression"]),
            cell(&task["time_zone"]),
            cell(&task["status"]),
            cell(&task["next_fire_times"][0]),
            cell(&task["last_instance"]["status"]),
        ]);
    }
    table.print()
}

fn show(task: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(task);
    }
    let mut shown = task.clone();
    if let Some(times) = shown["next_fire_times"].as_array() {
        let joined = times.iter().map(cell).collect::<Vec<_>>().join("\n");
        shown["next_fire_times"] = json!(joined);
    }
    if let Some(env) = shown["env"].as_object() {
        let lines: Vec<String> = env
            .iter()
            .map(|(key, value)| format!("{key}={}", cell(value)))
            .collect();
        shown["env"] = if lines.is_empty() {
            Value::Null
        } else {
            json!(lines.join("\n"))
        };
    }
    print_record(&shown, &SHOW_ORDER)
}

fn run_now(client: &Client, text: &str, json: bool) -> anyhow::Result<()> {
    let task = client.resolve(Kind::Task, text)?;
    let reply = client.call(
        "POST",
        &format!("/tasks/{}/run", task_id(&task)?),
        &[],
        None,
    )?;
    if json {
        return print_json(&reply);
    }
    let instances = reply["instances"].as_array().cloned().unwrap_or_default();
    instance_table(&instances).print()
}

fn set_status(client: &Client, text: &str, verb: &str, json: bool) -> anyhow::Result<()> {
    let task = client.resolve(Kind::Task, text)?;
    let id = task_id(&task)?;
    let task = client.call("POST", &format!("/tasks/{id}/{verb}"), &[], None)?;
    if json {
        return print_json(&task);
    }
    print_text(&format!(
        "task {} (id {id}) is {}\n",
        cell(&task["name"]),
        cell(&task["status"])
    ))
}

fn delete(client: &Client, args: DeleteArgs, json: bool) -> anyhow::Result<()> {
    let task = client.resolve(Kind::Task, &args.task)?;
    let id = task_id(&task)?;
    let query = [("kill_running", args.kill_running.to_string())];
    client.call("DELETE", &format!("/tasks/{id}"), &query, None)?;
    if json {
        return print_json(&json!({"id": id, "deleted": true}));
    }
    print_text(&format!("task {} (id {id}) deleted\n", cell(&task["name"])))
}
