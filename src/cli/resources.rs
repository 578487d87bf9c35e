//! `delicate group|processor|bind create|list|show|edit|delete`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::{Client, Connection, Kind};
use super::output::{Table, cell, print_json, print_record, print_text};

/// Fields shown first by `show`, for every kind.
const SHOW_FIRST: [&str; 2] = ["id", "name"];

#[derive(Args, Debug)]
pub struct GroupCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    action: Action<GroupFields, GroupFields>,
}

#[derive(Args, Debug)]
pub struct ProcessorCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    action: Action<ProcessorCreate, ProcessorFields>,
}

#[derive(Args, Debug)]
pub struct BindCommand {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    action: Action<BindCreate, BindFields>,
}

#[derive(Subcommand, Debug)]
enum Action<C: Args, E: Args> {
    /// Create a record
    Create(C),
    /// List the records
    List,
    /// Show every field of a record
    Show(RecordRef),
    /// Change fields of a record; options left out keep their value
    Edit(EditArgs<E>),
    /// Delete a record that nothing uses
    Delete(RecordRef),
}

#[derive(Args, Debug)]
struct RecordRef {
    /// Name or id
    record: String,
}

#[derive(Args, Debug)]
struct EditArgs<E: Args> {
    /// Name or id
    record: String,
    #[command(flatten)]
    fields: E,
}

#[derive(Args, Debug)]
struct GroupFields {
    /// Unique group name
    #[arg(long)]
    name: Option<String>,
    /// Free text shown with the group
    #[arg(long)]
    description: Option<String>,
    /// Free text for filtering
    #[arg(long)]
    tag: Option<String>,
}

#[derive(Args, Debug)]
struct ProcessorCreate {
    /// Unique processor name; the executor joins with it (--name)
    #[arg(long)]
    name: String,
    /// Address the executor advertises, without white space
    #[arg(long)]
    host: String,
    /// 0-1023, unique: the worker bits of the ids of instances it runs
    #[arg(long)]
    machine_id: i64,
    #[command(flatten)]
    common: ProcessorCommon,
}

#[derive(Args, Debug)]
struct ProcessorFields {
    /// Unique processor name
    #[arg(long)]
    name: Option<String>,
    /// Address the executor advertises, without white space
    #[arg(long)]
    host: Option<String>,
    /// 0-1023, unique: the worker bits of the ids of instances it runs
    #[arg(long)]
    machine_id: Option<i64>,
    #[command(flatten)]
    common: ProcessorCommon,
}

#[derive(Args, Debug)]
struct ProcessorCommon {
    /// Free text shown with the processor
    #[arg(long)]
    description: Option<String>,
    /// Free text for filtering
    #[arg(long)]
    tag: Option<String>,
    /// File with the executor's PEM public key, needed at security level 1
    #[arg(long, visible_alias = "public-key", value_name = "PATH")]
    public_key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BindCreate {
    /// Unique bind name
    #[arg(long)]
    name: String,
    /// Group, by name or id
    #[arg(long)]
    group: String,
    /// Processor, by name or id
    #[arg(long)]
    processor: String,
    /// 0-100; 0 drains the bind so it gets no new instances [default: 1]
    #[arg(long)]
    weight: Option<i64>,
}

#[derive(Args, Debug)]
struct BindFields {
    /// Unique bind name
    #[arg(long)]
    name: Option<String>,
    /// Group, by name or id
    #[arg(long)]
    group: Option<String>,
    /// Processor, by name or id; tasks using the bind move to it
    #[arg(long)]
    processor: Option<String>,
    /// 0-100; 0 drains the bind so it gets no new instances
    #[arg(long)]
    weight: Option<i64>,
}

/// Request bodies built from one kind's options.
trait Body {
    fn body(&self, client: &Client) -> anyhow::Result<Map<String, Value>>;
}

fn put_text(body: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        body.insert(key.to_string(), json!(value));
    }
}

impl Body for GroupFields {
    fn body(&self, _: &Client) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        put_text(&mut body, "name", &self.name);
        put_text(&mut body, "description", &self.description);
        put_text(&mut body, "tag", &self.tag);
        Ok(body)
    }
}

impl ProcessorCommon {
    fn insert(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        put_text(body, "description", &self.description);
        put_text(body, "tag", &self.tag);
        if let Some(path) = &self.public_key_file {
            let key = std::fs::read_to_string(path).with_context(|| {
                format!("failed to read the public key file {}", path.display())
            })?;
            body.insert("public_key".into(), json!(key));
        }
        Ok(())
    }
}

impl Body for ProcessorCreate {
    fn body(&self, _: &Client) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        body.insert("host".into(), json!(self.host));
        body.insert("machine_id".into(), json!(self.machine_id));
        self.common.insert(&mut body)?;
        Ok(body)
    }
}

impl Body for ProcessorFields {
    fn body(&self, _: &Client) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        put_text(&mut body, "name", &self.name);
        put_text(&mut body, "host", &self.host);
        if let Some(machine_id) = self.machine_id {
            body.insert("machine_id".into(), json!(machine_id));
        }
        self.common.insert(&mut body)?;
        Ok(body)
    }
}

impl Body for BindCreate {
    fn body(&self, client: &Client) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        body.insert(
            "group_id".into(),
            json!(client.resolve_id(Kind::Group, &self.group)?),
        );
        body.insert(
            "executor_id".into(),
            json!(client.resolve_id(Kind::Processor, &self.processor)?),
        );
        if let Some(weight) = self.weight {
            body.insert("weight".into(), json!(weight));
        }
        Ok(body)
    }
}

impl Body for BindFields {
    fn body(&self, client: &Client) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        put_text(&mut body, "name", &self.name);
        if let Some(group) = &self.group {
            body.insert(
                "group_id".into(),
                json!(client.resolve_id(Kind::Group, group)?),
            );
        }
        if let Some(processor) = &self.processor {
            body.insert(
                "executor_id".into(),
                json!(client.resolve_id(Kind::Processor, processor)?),
            );
        }
        if let Some(weight) = self.weight {
            body.insert("weight".into(), json!(weight));
        }
        Ok(body)
    }
}

pub fn run_group(command: GroupCommand) -> anyhow::Result<()> {
    run(Kind::Group, &command.connection, command.action)
}

pub fn run_processor(command: ProcessorCommand) -> anyhow::Result<()> {
    run(Kind::Processor, &command.connection, command.action)
}

pub fn run_bind(command: BindCommand) -> anyhow::Result<()> {
    run(Kind::Bind, &command.connection, command.action)
}

fn run<C: Args + Body, E: Args + Body>(
    kind: Kind,
    connection: &Connection,
    action: Action<C, E>,
) -> anyhow::Result<()> {
    let client = Client::new(&connection.server);
    let json = connection.json;
    let collection = format!("/{}", kind.path());
    match action {
        Action::Create(fields) => {
            let record = client.post(&collection, &Value::Object(fields.body(&client)?))?;
            show(&record, json)
        }
        Action::List => {
            let records = client.get(&collection)?;
            if json {
                return print_json(&records);
            }
            list_table(&client, kind, &records)?.print()
        }
        Action::Show(args) => show(&client.resolve(kind, &args.record)?, json),
        Action::Edit(args) => {
            let id = client.resolve_id(kind, &args.record)?;
            let body = Value::Object(args.fields.body(&client)?);
            let record = client.patch(&format!("{collection}/{id}"), &body)?;
            show(&record, json)
        }
        Action::Delete(args) => {
            let record = client.resolve(kind, &args.record)?;
            let id = cell(&record["id"]);
            client.call("DELETE", &format!("{collection}/{id}"), &[], None)?;
            if json {
                return print_json(&json!({"id": record["id"], "deleted": true}));
            }
            print_text(&format!(
                "{} {} (id {id}) deleted\n",
                kind.noun(),
                cell(&record["name"])
            ))
        }
    }
}

fn show(record: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(record);
    }
    print_record(record, &SHOW_FIRST)
}

fn list_table(client: &Client, kind: Kind, records: &Value) -> anyhow::Result<Table> {
    let records = records.as_array().cloned().unwrap_or_default();
    let table = match kind {
        Kind::Group => {
            let mut table = Table::new(&["ID", "NAME", "TAG", "DESCRIPTION"]);
            for group in &records {
                table.push(
                    ["id", "name", "tag", "description"]
                        .map(|key| cell(&group[key]))
                        .to_vec(),
                );
            }
            table
        }
        Kind::Processor => {
            let mut table = Table::new(&[
                "ID",
                "NAME",
                "HOST",
                "MACHINE ID",
                "ONLINE",
                "RUNNING",
                "VERSION",
            ]);
            for processor in &records {
                let keys = [
                    "id",
                    "name",
                    "host",
                    "machine_id",
                    "online",
                    "running_instances",
                    "version",
                ];
                table.push(keys.map(|key| cell(&processor[key])).to_vec());
            }
            table
        }
        Kind::Bind => {
            let groups = names_by_id(client, Kind::Group)?;
            let processors = names_by_id(client, Kind::Processor)?;
            let mut table = Table::new(&["ID", "NAME", "GROUP", "PROCESSOR", "WEIGHT"]);
            for bind in &records {
                let name_of = |names: &HashMap<u64, String>, key: &str| {
                    let id = bind[key].as_u64().unwrap_or_default();
                    names.get(&id).cloned().unwrap_or_else(|| id.to_string())
                };
                table.push(vec![
                    cell(&bind["id"]),
                    cell(&bind["name"]),
                    name_of(&groups, "group_id"),
                    name_of(&processors, "executor_id"),
                    cell(&bind["weight"]),
                ]);
            }
            table
        }
        Kind::Task => unreachable!("tasks are listed by the task module"),
    };
    Ok(table)
}

fn names_by_id(client: &Client, kind: Kind) -> anyhow::Result<HashMap<u64, String>> {
    let records = client.get(&format!("/{}", kind.path()))?;
    Ok(records
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|record| Some((record["id"].as_u64()?, record["name"].as_str()?.to_string())))
        .collect())
}
