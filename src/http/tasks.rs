//! Tasks: create, read, update, delete, run now, enable, disable.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Api;
use super::error::{ApiError, parse_json};
use super::instances::InstanceView;
use super::resources::path_id;
use crate::actors::instance::KillInstance;
use crate::actors::scheduler::{PutTask, RemoveTask, RunNow};
use crate::domain::entities::{Bind, Dispatch, Frequency, Id, InstanceStatus, Task, TaskStatus};
use crate::domain::schedule::Schedule;
use crate::domain::time_format;
use crate::domain::validation::{self, FieldError};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/tasks", web::get().to(list_tasks))
        .route("/tasks", web::post().to(create_task))
        .route("/tasks/{id}", web::get().to(get_task))
        .route("/tasks/{id}", web::patch().to(update_task))
        .route("/tasks/{id}", web::delete().to(delete_task))
        .route("/tasks/{id}/run", web::post().to(run_task))
        .route("/tasks/{id}/enable", web::post().to(enable_task))
        .route("/tasks/{id}/disable", web::post().to(disable_task));
}

/// Fire times shown with a task.
const NEXT_FIRE_TIMES: usize = 5;

/// Fields of a task create or edit; every one optional on edit.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub command: Option<String>,
    pub frequency: Option<Frequency>,
    pub cron_expression: Option<String>,
    pub time_zone: Option<String>,
    pub timeout: Option<u64>,
    pub retry_times: Option<u32>,
    pub retry_interval: Option<u64>,
    pub tag: Option<String>,
    pub binding_ids: Option<Vec<Id>>,
    pub maximum_parallel_runnable_num: Option<u32>,
    pub dispatch: Option<Dispatch>,
    pub misfire_grace: Option<u64>,
    pub env: Option<BTreeMap<String, String>>,
    pub run_as: Option<String>,
    pub stdin: Option<String>,
    pub mailto: Option<String>,
    pub status: Option<TaskStatus>,
}

/// A task with its next fire times and fire counters.
#[derive(Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    task: Task,
    next_fire_times: Vec<String>,
    missed_fires: u64,
    skipped_fires: u64,
    last_instance: Option<LastInstance>,
}

#[derive(Serialize)]
struct LastInstance {
    id: String,
    status: InstanceStatus,
    status_code: u8,
    #[serde(with = "time_format::option")]
    finished_time: Option<DateTime<Utc>>,
}

/// The next fire times of an enabled task, as the scheduler computes them.
pub fn next_fire_times(task: &Task, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    if task.status != TaskStatus::Enabled {
        return Vec::new();
    }
    match Schedule::parse(&task.cron_expression, &task.time_zone, task.schedule_anchor) {
        Ok(schedule) => schedule.iter_after(after).take(count).collect(),
        Err(_) => Vec::new(),
    }
}

fn task_view(api: &Api, task: Task) -> Result<TaskView, ApiError> {
    let state = api.shared.store.task_state(task.id)?;
    let last_instance = match api.shared.store.task_instance_ids(task.id, 1)?.first() {
        Some(id) => api
            .shared
            .store
            .instance(*id)?
            .map(|instance| LastInstance {
                id: instance.id.to_string(),
                status: instance.status,
                status_code: instance.status.code(),
                finished_time: instance.finished_time,
            }),
        None => None,
    };
    let times = next_fire_times(&task, Utc::now(), NEXT_FIRE_TIMES);
    Ok(TaskView {
        next_fire_times: times.iter().map(time_format::rfc3339).collect(),
        missed_fires: state.missed,
        skipped_fires: state.skipped,
        last_instance,
        task,
    })
}

/// Builds the view of a task just created: it has no fire counters and no
/// instance yet, so nothing is read back from the store.
fn new_task_view(task: Task) -> TaskView {
    let times = next_fire_times(&task, Utc::now(), NEXT_FIRE_TIMES);
    TaskView {
        next_fire_times: times.iter().map(time_format::rfc3339).collect(),
        missed_fires: 0,
        skipped_fires: 0,
        last_instance: None,
        task,
    }
}

async fn list_tasks(api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    let views = api
        .shared
        .store
        .list::<Task>()?
        .into_iter()
        .map(|task| task_view(&api, task))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(views))
}

async fn get_task(api: web::Data<Api>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task = api.shared.store.require::<Task>(path_id(&id)?)?;
    Ok(HttpResponse::Ok().json(task_view(&api, task)?))
}

/// A new task with the defaults of every field the input leaves out.
pub fn new_task(input: TaskInput, now: DateTime<Utc>) -> Result<Task, FieldError> {
    let required = |value: Option<String>, field: &str| {
        value.ok_or_else(|| FieldError::new(field, format!("{field} is required")))
    };
    let frequency = input.frequency.unwrap_or(Frequency::Repeat);
    Ok(Task {
        id: 0,
        name: required(input.name, "name")?,
        description: input.description.unwrap_or_default(),
        command: required(input.command, "command")?,
        frequency,
        cron_expression: required(input.cron_expression, "cron_expression")?,
        time_zone: input.time_zone.unwrap_or_else(|| "UTC".to_string()),
        timeout: input.timeout.unwrap_or(0),
        retry_times: input.retry_times.unwrap_or(0),
        retry_interval: input.retry_interval.unwrap_or(0),
        tag: input.tag.unwrap_or_default(),
        binding_ids: input.binding_ids.unwrap_or_default(),
        maximum_parallel_runnable_num: input.maximum_parallel_runnable_num.unwrap_or(1),
        dispatch: input.dispatch.unwrap_or_default(),
        misfire_grace: input.misfire_grace.unwrap_or(60),
        env: input.env.unwrap_or_default(),
        run_as: input.run_as.filter(|user| !user.is_empty()),
        stdin: input.stdin,
        mailto: input.mailto.filter(|mail| !mail.is_empty()),
        status: input.status.unwrap_or_default(),
        remaining_count: frequency.initial_count(),
        schedule_anchor: now,
        created_time: now,
        updated_time: now,
    })
}

/// Applies an edit. A new frequency restarts the count; a new schedule or
/// zone restarts `@every` intervals from now.
fn apply_edit(task: &mut Task, input: TaskInput, now: DateTime<Utc>) {
    if let Some(frequency) = input.frequency
        && frequency != task.frequency
    {
        task.frequency = frequency;
        task.remaining_count = frequency.initial_count();
    }
    let schedule_changed = input
        .cron_expression
        .as_ref()
        .is_some_and(|e| *e != task.cron_expression)
        || input
            .time_zone
            .as_ref()
            .is_some_and(|z| *z != task.time_zone);
    if schedule_changed {
        task.schedule_anchor = now;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(value) = input.$field { task.$field = value; } )* };
    }
    set!(
        name,
        description,
        command,
        cron_expression,
        time_zone,
        timeout,
        retry_times,
        retry_interval,
        tag,
        binding_ids,
        maximum_parallel_runnable_num,
        dispatch,
        misfire_grace,
        env,
        status
    );
    if let Some(user) = input.run_as {
        task.run_as = Some(user).filter(|u| !u.is_empty());
    }
    if let Some(stdin) = input.stdin {
        task.stdin = Some(stdin).filter(|s| !s.is_empty());
    }
    if let Some(mailto) = input.mailto {
        task.mailto = Some(mailto).filter(|m| !m.is_empty());
    }
    task.updated_time = now;
}

/// Checks fields and binds; fills in the only bind when none is given.
pub fn prepare_task(api: &Api, task: &mut Task) -> Result<(), ApiError> {
    if task.binding_ids.is_empty() {
        let binds = api.shared.store.list::<Bind>()?;
        match binds.as_slice() {
            [only] => task.binding_ids = vec![only.id],
            [] => {
                return Err(ApiError::invalid(
                    "binding_ids",
                    "binding_ids is empty and no bind exists: create a group, a processor and a bind first",
                ));
            }
            _ => {
                return Err(ApiError::invalid(
                    "binding_ids",
                    format!(
                        "binding_ids is empty: name one or more of the {} binds (GET /api/v1/binds)",
                        binds.len()
                    ),
                ));
            }
        }
    }
    let mut seen = Vec::new();
    for id in &task.binding_ids {
        if seen.contains(id) {
            return Err(ApiError::invalid(
                "binding_ids",
                format!("bind {id} is listed twice"),
            ));
        }
        seen.push(*id);
        if api.shared.store.get::<Bind>(*id)?.is_none() {
            return Err(ApiError::invalid(
                "binding_ids",
                format!("bind {id} not found"),
            ));
        }
    }
    validation::check_task(task)?;
    Ok(())
}

/// Stores a new task and hands it to the scheduler; shared with crontab import.
pub async fn store_new_task(api: &Api, mut task: Task) -> Result<Task, ApiError> {
    prepare_task(api, &mut task)?;
    let task = api.shared.store.create(task)?;
    api.shared.store.durable().await?;
    let _ = api.shared.scheduler().tell(PutTask(task.clone())).await;
    tracing::info!(task.id = task.id, task.name = %task.name, "task.created");
    Ok(task)
}

async fn create_task(api: web::Data<Api>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: TaskInput = parse_json(&body)?;
    let task = new_task(input, Utc::now())?;
    let task = store_new_task(&api, task).await?;
    Ok(HttpResponse::Created().json(new_task_view(task)))
}

/// Stores an edited task and reschedules it.
pub async fn store_edit(api: &Api, mut task: Task) -> Result<Task, ApiError> {
    if task.status == TaskStatus::Enabled && task.remaining_count == Some(0) {
        // Enabling a used-up task, by PATCH or by /enable, arms its count again.
        task.remaining_count = task.frequency.initial_count();
    }
    prepare_task(api, &mut task)?;
    api.shared.store.update(&task)?;
    api.shared.store.durable().await?;
    let _ = api.shared.scheduler().tell(PutTask(task.clone())).await;
    Ok(task)
}

async fn update_task(
    api: web::Data<Api>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: TaskInput = parse_json(&body)?;
    let mut task = api.shared.store.require::<Task>(path_id(&id)?)?;
    apply_edit(&mut task, input, Utc::now());
    let task = store_edit(&api, task).await?;
    Ok(HttpResponse::Ok().json(task_view(&api, task)?))
}

async fn set_status(api: &Api, id: &str, status: TaskStatus) -> Result<HttpResponse, ApiError> {
    let mut task = api.shared.store.require::<Task>(path_id(id)?)?;
    task.status = status;
    task.updated_time = Utc::now();
    let task = store_edit(api, task).await?;
    Ok(HttpResponse::Ok().json(task_view(api, task)?))
}

async fn enable_task(api: web::Data<Api>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_status(&api, &id, TaskStatus::Enabled).await
}

async fn disable_task(
    api: web::Data<Api>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&api, &id, TaskStatus::Disabled).await
}

async fn run_task(api: web::Data<Api>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task_id = path_id(&id)?;
    let instances = api
        .shared
        .scheduler()
        .ask(RunNow { task_id })
        .await
        .map_err(|e| match e {
            kameo::error::SendError::HandlerError(error) => ApiError::from(error),
            other => ApiError::internal(format!("the scheduler did not respond: {other}")),
        })?;
    let views: Vec<InstanceView> = instances.into_iter().map(InstanceView::from).collect();
    Ok(HttpResponse::Created().json(serde_json::json!({ "instances": views })))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    kill_running: bool,
}

async fn delete_task(
    api: web::Data<Api>,
    id: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id)?;
    api.shared.store.require::<Task>(id)?;
    let _ = api.shared.scheduler().tell(RemoveTask(id)).await;
    api.shared.store.delete::<Task>(id)?;
    api.shared.store.delete_task_state(id)?;
    api.shared.store.durable().await?;
    if query.kill_running {
        for instance in api
            .shared
            .store
            .running_instances()?
            .into_iter()
            .filter(|i| i.task_id == id)
        {
            if let Some(actor) = api.shared.instance_actor(instance.id) {
                let _ = actor.ask(KillInstance).await;
            }
        }
    }
    tracing::info!(task.id = id, "task.deleted");
    Ok(HttpResponse::NoContent().finish())
}
