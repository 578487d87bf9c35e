//! Groups, processors and binds.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::Api;
use super::error::{ApiError, parse_json};
use crate::actors::directory::ProcessorLive;
use crate::domain::entities::{Bind, Group, Id, Processor, Task};
use crate::domain::time_format;
use crate::domain::validation::{self, FieldError};
use crate::security::keys;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/groups", web::get().to(list_groups))
        .route("/groups", web::post().to(create_group))
        .route("/groups/{id}", web::get().to(get_group))
        .route("/groups/{id}", web::patch().to(update_group))
        .route("/groups/{id}", web::delete().to(delete_group))
        .route("/processors", web::get().to(list_processors))
        .route("/processors", web::post().to(create_processor))
        .route("/processors/{id}", web::get().to(get_processor))
        .route("/processors/{id}", web::patch().to(update_processor))
        .route("/processors/{id}", web::delete().to(delete_processor))
        .route("/binds", web::get().to(list_binds))
        .route("/binds", web::post().to(create_bind))
        .route("/binds/{id}", web::get().to(get_bind))
        .route("/binds/{id}", web::patch().to(update_bind))
        .route("/binds/{id}", web::delete().to(delete_bind));
}

/// Parses an `{id}` path segment.
pub fn path_id(text: &str) -> Result<Id, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "id",
            format!("invalid id {text:?}: ids are positive integers"),
        )
    })
}

async fn durable(api: &Api) -> Result<(), ApiError> {
    api.shared.store.durable().await.map_err(ApiError::from)
}

// Groups.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupInput {
    name: Option<String>,
    description: Option<String>,
    tag: Option<String>,
}

async fn list_groups(api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api.shared.store.list::<Group>()?))
}

async fn get_group(api: web::Data<Api>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api.shared.store.require::<Group>(path_id(&id)?)?))
}

async fn create_group(api: web::Data<Api>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: GroupInput = parse_json(&body)?;
    let now = Utc::now();
    let group = Group {
        id: 0,
        name: input.name.ok_or_else(|| missing("name"))?,
        description: input.description.unwrap_or_default(),
        tag: input.tag.unwrap_or_default(),
        created_time: now,
        updated_time: now,
    };
    validation::check_group(&group)?;
    let group = api.shared.store.create(group)?;
    durable(&api).await?;
    api.shared.register_group(group.id);
    tracing::info!(group.id = group.id, group.name = %group.name, "group.created");
    Ok(HttpResponse::Created().json(group))
}

async fn update_group(
    api: web::Data<Api>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: GroupInput = parse_json(&body)?;
    let mut group = api.shared.store.require::<Group>(path_id(&id)?)?;
    if let Some(name) = input.name {
        group.name = name;
    }
    if let Some(description) = input.description {
        group.description = description;
    }
    if let Some(tag) = input.tag {
        group.tag = tag;
    }
    group.updated_time = Utc::now();
    validation::check_group(&group)?;
    api.shared.store.update(&group)?;
    durable(&api).await?;
    Ok(HttpResponse::Ok().json(group))
}

async fn delete_group(
    api: web::Data<Api>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id)?;
    let group = api.shared.store.require::<Group>(id)?;
    if let Some(bind) = api
        .shared
        .store
        .list::<Bind>()?
        .into_iter()
        .find(|b| b.group_id == id)
    {
        return Err(in_use(format!(
            "group {:?} is used by bind {:?} (id {}): delete the bind first",
            group.name, bind.name, bind.id
        )));
    }
    api.shared.store.delete::<Group>(id)?;
    durable(&api).await?;
    if let Some(actor) = api.shared.directory.remove_group(id) {
        actor.kill();
    }
    Ok(HttpResponse::NoContent().finish())
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid(field, format!("{field} is required"))
}

fn in_use(message: String) -> ApiError {
    ApiError::new(actix_web::http::StatusCode::CONFLICT, "in_use", message)
}

// Processors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessorInput {
    name: Option<String>,
    description: Option<String>,
    tag: Option<String>,
    host: Option<String>,
    machine_id: Option<i64>,
    public_key: Option<String>,
}

/// A processor as the API shows it: its public key only as a fingerprint,
/// with its live figures.
#[derive(Serialize)]
pub struct ProcessorView {
    id: Id,
    name: String,
    description: String,
    tag: String,
    host: String,
    machine_id: u16,
    public_key_fingerprint: Option<String>,
    #[serde(flatten)]
    live: ProcessorLive,
    #[serde(with = "time_format")]
    created_time: chrono::DateTime<Utc>,
    #[serde(with = "time_format")]
    updated_time: chrono::DateTime<Utc>,
}

/// Fingerprint of a stored PEM public key: `SHA256:` and the lowercase hex
/// SHA-256 of its DER (SubjectPublicKeyInfo), or `None` for a record whose
/// key does not parse.
pub fn fingerprint(pem: &str) -> Option<String> {
    keys::parse_public_pem(pem)
        .ok()
        .map(|key| keys::fingerprint(&key))
}

/// Checks a `public_key` input and returns it as stored: the key's
/// canonical PEM, or `None` for an empty string, which removes the key.
fn parse_public_key(input: &str) -> Result<Option<String>, ApiError> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    match keys::parse_public_pem(input) {
        Ok(key) => Ok(Some(keys::public_pem(&key))),
        Err(error) => Err(ApiError::invalid(
            "public_key",
            format!("public_key must be an RSA public key in PEM (\"BEGIN PUBLIC KEY\"): {error}"),
        )),
    }
}

fn processor_view(api: &Api, processor: Processor) -> ProcessorView {
    let live = api
        .shared
        .directory
        .processor(processor.id)
        .map(|(_, live)| live)
        .unwrap_or_default();
    ProcessorView {
        id: processor.id,
        name: processor.name,
        description: processor.description,
        tag: processor.tag,
        host: processor.host,
        machine_id: processor.machine_id,
        public_key_fingerprint: processor.public_key.as_deref().and_then(fingerprint),
        live,
        created_time: processor.created_time,
        updated_time: processor.updated_time,
    }
}

async fn list_processors(api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    let views: Vec<ProcessorView> = api
        .shared
        .store
        .list::<Processor>()?
        .into_iter()
        .map(|p| processor_view(&api, p))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

async fn get_processor(
    api: web::Data<Api>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let processor = api.shared.store.require::<Processor>(path_id(&id)?)?;
    Ok(HttpResponse::Ok().json(processor_view(&api, processor)))
}

async fn create_processor(api: web::Data<Api>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: ProcessorInput = parse_json(&body)?;
    let now = Utc::now();
    let processor = Processor {
        id: 0,
        name: input.name.ok_or_else(|| missing("name"))?,
        description: input.description.unwrap_or_default(),
        tag: input.tag.unwrap_or_default(),
        host: input.host.ok_or_else(|| missing("host"))?,
        machine_id: validation::check_machine_id(
            input.machine_id.ok_or_else(|| missing("machine_id"))?,
        )?,
        public_key: match input.public_key.as_deref() {
            Some(text) => parse_public_key(text)?,
            None => None,
        },
        created_time: now,
        updated_time: now,
    };
    validation::check_processor(&processor)?;
    let processor = api.shared.store.create(processor)?;
    durable(&api).await?;
    api.shared.register_processor(processor.clone());
    tracing::info!(processor.id = processor.id, processor.name = %processor.name, "processor.created");
    Ok(HttpResponse::Created().json(processor_view(&api, processor)))
}

async fn update_processor(
    api: web::Data<Api>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: ProcessorInput = parse_json(&body)?;
    let mut processor = api.shared.store.require::<Processor>(path_id(&id)?)?;
    if let Some(name) = input.name {
        processor.name = name;
    }
    if let Some(description) = input.description {
        processor.description = description;
    }
    if let Some(tag) = input.tag {
        processor.tag = tag;
    }
    if let Some(host) = input.host {
        processor.host = host;
    }
    if let Some(machine_id) = input.machine_id {
        processor.machine_id = validation::check_machine_id(machine_id)?;
    }
    if let Some(text) = input.public_key.as_deref() {
        processor.public_key = parse_public_key(text)?;
    }
    processor.updated_time = Utc::now();
    validation::check_processor(&processor)?;
    api.shared.store.update(&processor)?;
    durable(&api).await?;
    api.shared.register_processor(processor.clone());
    Ok(HttpResponse::Ok().json(processor_view(&api, processor)))
}

async fn delete_processor(
    api: web::Data<Api>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id)?;
    let processor = api.shared.store.require::<Processor>(id)?;
    if let Some(bind) = api
        .shared
        .store
        .list::<Bind>()?
        .into_iter()
        .find(|b| b.executor_id == id)
    {
        return Err(in_use(format!(
            "processor {:?} is used by bind {:?} (id {}): delete the bind or move it to another processor first",
            processor.name, bind.name, bind.id
        )));
    }
    api.shared.store.delete::<Processor>(id)?;
    durable(&api).await?;
    if let Some(actor) = api.shared.directory.remove_processor(id) {
        let _ = actor.stop_gracefully().await;
    }
    Ok(HttpResponse::NoContent().finish())
}

// Binds.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindInput {
    group_id: Option<Id>,
    executor_id: Option<Id>,
    name: Option<String>,
    weight: Option<i64>,
}

async fn list_binds(api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api.shared.store.list::<Bind>()?))
}

async fn get_bind(api: web::Data<Api>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api.shared.store.require::<Bind>(path_id(&id)?)?))
}

/// Checks that a bind's group and processor exist.
fn check_bind_targets(api: &Api, bind: &Bind) -> Result<(), ApiError> {
    if api.shared.store.get::<Group>(bind.group_id)?.is_none() {
        return Err(
            FieldError::new("group_id", format!("group {} not found", bind.group_id)).into(),
        );
    }
    if api
        .shared
        .store
        .get::<Processor>(bind.executor_id)?
        .is_none()
    {
        return Err(FieldError::new(
            "executor_id",
            format!("processor {} not found", bind.executor_id),
        )
        .into());
    }
    Ok(())
}

async fn create_bind(api: web::Data<Api>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: BindInput = parse_json(&body)?;
    let now = Utc::now();
    let bind = Bind {
        id: 0,
        group_id: input.group_id.ok_or_else(|| missing("group_id"))?,
        executor_id: input.executor_id.ok_or_else(|| missing("executor_id"))?,
        name: input.name.ok_or_else(|| missing("name"))?,
        weight: validation::check_weight(input.weight.unwrap_or(1))?,
        created_time: now,
        updated_time: now,
    };
    validation::check_bind(&bind)?;
    check_bind_targets(&api, &bind)?;
    let bind = api.shared.store.create(bind)?;
    durable(&api).await?;
    api.shared.register_group(bind.group_id);
    api.shared.directory.put_bind(bind.clone());
    tracing::info!(bind.id = bind.id, bind.name = %bind.name, "bind.created");
    Ok(HttpResponse::Created().json(bind))
}

async fn update_bind(
    api: web::Data<Api>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: BindInput = parse_json(&body)?;
    let mut bind = api.shared.store.require::<Bind>(path_id(&id)?)?;
    if let Some(group_id) = input.group_id {
        bind.group_id = group_id;
    }
    if let Some(executor_id) = input.executor_id {
        bind.executor_id = executor_id;
    }
    if let Some(name) = input.name {
        bind.name = name;
    }
    if let Some(weight) = input.weight {
        bind.weight = validation::check_weight(weight)?;
    }
    bind.updated_time = Utc::now();
    validation::check_bind(&bind)?;
    check_bind_targets(&api, &bind)?;
    api.shared.store.update(&bind)?;
    durable(&api).await?;
    api.shared.register_group(bind.group_id);
    api.shared.directory.put_bind(bind.clone());
    tracing::info!(
        bind.id = bind.id,
        processor.id = bind.executor_id,
        weight = bind.weight,
        "bind.updated"
    );
    Ok(HttpResponse::Ok().json(bind))
}

async fn delete_bind(api: web::Data<Api>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id)?;
    let bind = api.shared.store.require::<Bind>(id)?;
    let user = api
        .shared
        .store
        .list::<Task>()?
        .into_iter()
        .find(|t| t.binding_ids.contains(&id));
    if let Some(task) = user {
        return Err(in_use(format!(
            "bind {:?} is used by task {:?} (id {}): remove it from the task's binding_ids first",
            bind.name, task.name, task.id
        )));
    }
    api.shared.store.delete::<Bind>(id)?;
    durable(&api).await?;
    api.shared.directory.remove_bind(id);
    Ok(HttpResponse::NoContent().finish())
}
