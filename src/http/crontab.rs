//! Crontab import: turns crontab(5) files into tasks, all or nothing.
//!
//! Each job line becomes the task named by [`crontab::task_name`], so a
//! second import of the same file finds its tasks by name and updates them.
//! An import sets only the fields a crontab line defines (command, schedule,
//! zone, env, stdin, mailto, run_as, and the binds when the request names
//! them). The fields an operator may have changed since, such as the timeout,
//! retries or status, are kept.

use std::collections::{BTreeMap, HashSet};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Api;
use super::error::{ApiError, parse_json};
use super::tasks::{TaskInput, new_task, next_fire_times, prepare_task};
use crate::actors::scheduler::PutTask;
use crate::domain::crontab::{self, CrontabEntry, ParseOptions};
use crate::domain::entities::{Id, Task};
use crate::domain::time_format;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/crontab/import", web::post().to(import_crontab));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    files: Vec<CrontabFile>,
    /// True for /etc/crontab and /etc/cron.d files, whose lines name a user.
    #[serde(default)]
    system: bool,
    /// Binds of every imported task; when absent, new tasks get the only
    /// bind, as with task creation, and existing tasks keep theirs.
    binding_ids: Option<Vec<Id>>,
    /// Zone of the lines before any `CRON_TZ` or `TZ` line.
    #[serde(default = "utc")]
    time_zone: String,
    #[serde(default)]
    dry_run: bool,
    /// Import the good lines when some are bad, in place of importing nothing.
    #[serde(default)]
    skip_invalid: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrontabFile {
    name: String,
    content: String,
}

fn utc() -> String {
    "UTC".to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Created,
    Updated,
    Unchanged,
}

/// A task as the import would leave it, before anything is written.
struct Planned {
    action: Action,
    file: String,
    line: usize,
    task: Task,
}

#[derive(Serialize)]
struct BadLineView {
    file: String,
    line: usize,
    reason: String,
}

#[derive(Serialize)]
struct ImportedTask {
    action: Action,
    /// `None` for a task a dry run would create.
    id: Option<Id>,
    name: String,
    file: String,
    line: usize,
    cron_expression: String,
    time_zone: String,
    command: String,
    stdin: Option<String>,
    env: BTreeMap<String, String>,
    run_as: Option<String>,
    mailto: Option<String>,
    binding_ids: Vec<Id>,
    #[serde(with = "time_format::option")]
    next_fire_time: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct ImportResponse {
    dry_run: bool,
    created: usize,
    updated: usize,
    unchanged: usize,
    tasks: Vec<ImportedTask>,
    bad_lines: Vec<BadLineView>,
}

async fn import_crontab(api: web::Data<Api>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: ImportRequest = parse_json(&body)?;
    check_request(&request)?;
    let now = Utc::now();

    let mut planned = Vec::new();
    let mut bad_lines = Vec::new();
    for file in &request.files {
        let options = ParseOptions {
            system: request.system,
            default_zone: request.time_zone.clone(),
        };
        let parsed = crontab::parse(&file.content, &options);
        bad_lines.extend(parsed.bad_lines.into_iter().map(|bad| BadLineView {
            file: file.name.clone(),
            line: bad.line,
            reason: bad.reason,
        }));
        for entry in parsed.entries {
            match plan_task(&api, &request, &file.name, entry, now)? {
                Ok(plan) => planned.push(plan),
                Err(bad) => bad_lines.push(bad),
            }
        }
    }
    bad_lines.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));

    if !bad_lines.is_empty() && !request.skip_invalid {
        return Ok(reject_bad_lines(&bad_lines));
    }
    if !request.dry_run {
        write_tasks(&api, &mut planned).await?;
    }
    Ok(HttpResponse::Ok().json(response(&request, planned, bad_lines, now)))
}

/// Checks the request as a whole: files, names and the default zone.
fn check_request(request: &ImportRequest) -> Result<(), ApiError> {
    if request.files.is_empty() {
        return Err(ApiError::invalid(
            "files",
            "files is empty: send at least one crontab file",
        ));
    }
    if request.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::invalid(
            "time_zone",
            format!(
                "unknown time zone {:?}: use an IANA name such as Europe/Berlin",
                request.time_zone
            ),
        ));
    }
    let mut base_names = HashSet::new();
    for file in &request.files {
        let base = crontab::base_name(&file.name);
        if base.is_empty() {
            return Err(ApiError::invalid(
                "files",
                format!(
                    "file name {:?} has no base name: task names are made from it",
                    file.name
                ),
            ));
        }
        if !base_names.insert(base) {
            return Err(ApiError::invalid(
                "files",
                format!(
                    "two files are named {base:?}: task names are made from the base name, \
                     so import them separately or rename one"
                ),
            ));
        }
    }
    Ok(())
}

/// Builds the task an entry becomes and checks it. Returns the inner `Err`
/// for a line whose task is invalid, and the outer `Err` for a request-wide
/// fault such as a missing bind.
fn plan_task(
    api: &Api,
    request: &ImportRequest,
    file: &str,
    entry: CrontabEntry,
    now: DateTime<Utc>,
) -> Result<Result<Planned, BadLineView>, ApiError> {
    let line = entry.line;
    let name = crontab::task_name(file, line);
    let (action, mut task) = match api.shared.store.find_by_name::<Task>(&name)? {
        Some(existing) => edit_existing(existing, entry, request.binding_ids.as_ref(), now),
        None => (
            Action::Created,
            new_entry_task(&name, file, entry, request, now)?,
        ),
    };
    match prepare_task(api, &mut task) {
        Ok(()) => Ok(Ok(Planned {
            action,
            file: file.to_string(),
            line,
            task,
        })),
        Err(error) if error.field.as_deref() == Some("binding_ids") => Err(error),
        Err(error) => Ok(Err(BadLineView {
            file: file.to_string(),
            line,
            reason: error.message,
        })),
    }
}

fn new_entry_task(
    name: &str,
    file: &str,
    entry: CrontabEntry,
    request: &ImportRequest,
    now: DateTime<Utc>,
) -> Result<Task, ApiError> {
    let input = TaskInput {
        name: Some(name.to_string()),
        description: Some(format!(
            "Imported from crontab file {file}, line {}",
            entry.line
        )),
        command: Some(entry.command),
        cron_expression: Some(entry.cron_expression),
        time_zone: Some(entry.time_zone),
        binding_ids: request.binding_ids.clone(),
        env: Some(entry.env),
        run_as: entry.run_as,
        stdin: entry.stdin,
        mailto: entry.mailto,
        tag: Some("crontab".to_string()),
        ..TaskInput::default()
    };
    Ok(new_task(input, now)?)
}

/// Applies an entry to the task a previous import made. The task is
/// unchanged when every field the entry sets already has that value.
fn edit_existing(
    existing: Task,
    entry: CrontabEntry,
    binding_ids: Option<&Vec<Id>>,
    now: DateTime<Utc>,
) -> (Action, Task) {
    let mut task = existing.clone();
    if task.cron_expression != entry.cron_expression || task.time_zone != entry.time_zone {
        // As with an edit through the API, a new schedule counts from now.
        task.schedule_anchor = now;
    }
    task.cron_expression = entry.cron_expression;
    task.time_zone = entry.time_zone;
    task.command = entry.command;
    task.stdin = entry.stdin;
    task.env = entry.env;
    task.mailto = entry.mailto;
    task.run_as = entry.run_as;
    if let Some(binding_ids) = binding_ids {
        task.binding_ids = binding_ids.clone();
    }
    if task == existing {
        return (Action::Unchanged, existing);
    }
    task.updated_time = now;
    (Action::Updated, task)
}

fn reject_bad_lines(bad_lines: &[BadLineView]) -> HttpResponse {
    let listed: Vec<String> = bad_lines
        .iter()
        .map(|bad| format!("{} line {}: {}", bad.file, bad.line, bad.reason))
        .collect();
    let message = format!(
        "nothing was imported because {} line(s) are invalid (send skip_invalid to import the \
         others): {}",
        bad_lines.len(),
        listed.join("; ")
    );
    HttpResponse::UnprocessableEntity().json(serde_json::json!({
        "error": { "code": "invalid_crontab", "message": message, "field": "files" },
        "bad_lines": bad_lines,
    }))
}

/// Writes the created and updated tasks, waits for one flush, then hands
/// them to the scheduler.
async fn write_tasks(api: &Api, planned: &mut [Planned]) -> Result<(), ApiError> {
    // NOTE: every task was checked before this loop, but a concurrent request
    // that takes one of the names, or a storage failure, can still stop it
    // after some tasks were written.
    for plan in planned.iter_mut() {
        match plan.action {
            Action::Created => plan.task = api.shared.store.create(plan.task.clone())?,
            Action::Updated => api.shared.store.update(&plan.task)?,
            Action::Unchanged => {}
        }
    }
    api.shared.store.durable().await?;
    for plan in planned
        .iter()
        .filter(|plan| plan.action != Action::Unchanged)
    {
        let _ = api
            .shared
            .scheduler()
            .tell(PutTask(plan.task.clone()))
            .await;
        tracing::info!(
            task.id = plan.task.id,
            task.name = %plan.task.name,
            action = ?plan.action,
            "crontab.imported"
        );
    }
    Ok(())
}

fn response(
    request: &ImportRequest,
    planned: Vec<Planned>,
    bad_lines: Vec<BadLineView>,
    now: DateTime<Utc>,
) -> ImportResponse {
    let count = |action| planned.iter().filter(|plan| plan.action == action).count();
    let (created, updated, unchanged) = (
        count(Action::Created),
        count(Action::Updated),
        count(Action::Unchanged),
    );
    let tasks = planned
        .into_iter()
        .map(|plan| {
            let next_fire_time = next_fire_times(&plan.task, now, 1).first().copied();
            let task = plan.task;
            ImportedTask {
                action: plan.action,
                id: (task.id != 0).then_some(task.id),
                name: task.name,
                file: plan.file,
                line: plan.line,
                cron_expression: task.cron_expression,
                time_zone: task.time_zone,
                command: task.command,
                stdin: task.stdin,
                env: task.env,
                run_as: task.run_as,
                mailto: task.mailto,
                binding_ids: task.binding_ids,
                next_fire_time,
            }
        })
        .collect();
    ImportResponse {
        dry_run: request.dry_run,
        created,
        updated,
        unchanged,
        tasks,
        bad_lines,
    }
}
