//! Instances: filtered listing with cursor pagination, one instance, its
//! output, and kill.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Api;
use super::error::ApiError;
use super::resources::path_id;
use crate::actors::instance::KillInstance;
use crate::domain::entities::{Instance, InstanceStatus};
use crate::net::messages::Stream;
use crate::storage::InstanceFilter;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/instances", web::get().to(list_instances))
        .route("/instances/{id}", web::get().to(get_instance))
        .route("/instances/{id}/output", web::get().to(get_output))
        .route("/instances/{id}/kill", web::post().to(kill_instance));
}

/// Default page size of an instance listing.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// An instance with its numeric status code.
#[derive(Serialize)]
pub struct InstanceView {
    #[serde(flatten)]
    instance: Instance,
    status_code: u8,
}

impl From<Instance> for InstanceView {
    fn from(instance: Instance) -> InstanceView {
        let status_code = instance.status.code();
        InstanceView {
            instance,
            status_code,
        }
    }
}

fn instance_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request("id", format!("invalid instance id {text:?}")))
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_request(
                field,
                format!("invalid {field} {text:?}: {e}; use RFC 3339 such as 2026-01-31T12:00:00Z"),
            )
        })
}

/// Reads the listing filters from the query string.
fn parse_filter(request: &HttpRequest) -> Result<InstanceFilter, ApiError> {
    let query = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request("query", format!("invalid query string: {e}")))?;
    let mut filter = InstanceFilter {
        limit: DEFAULT_LIMIT,
        ..InstanceFilter::default()
    };
    for (key, value) in query.into_inner() {
        match key.as_str() {
            "task_id" => filter.task_id = Some(path_id(&value).map_err(|_| ApiError::bad_request("task_id", format!("invalid task_id {value:?}")))?),
            "processor_id" => filter.processor_id = Some(path_id(&value).map_err(|_| ApiError::bad_request("processor_id", format!("invalid processor_id {value:?}")))?),
            "status" => {
                filter.status = Some(InstanceStatus::parse(&value).ok_or_else(|| {
                    ApiError::bad_request("status", format!("invalid status {value:?}: use running, finished, abnormal_ending, timeout_ending, manual_cancellation, unknown or a status code"))
                })?)
            }
            "since" => filter.since = Some(parse_time("since", &value)?),
            "until" => filter.until = Some(parse_time("until", &value)?),
            "cursor" => filter.before = Some(instance_id(&value).map_err(|_| ApiError::bad_request("cursor", format!("invalid cursor {value:?}")))?),
            "limit" => {
                let limit: usize = value.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::bad_request("limit", format!("invalid limit {value:?}: use 1 to {MAX_LIMIT}"))
                })?;
                filter.limit = limit;
            }
            other => return Err(ApiError::bad_request(other, format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(filter)
}

async fn list_instances(
    api: web::Data<Api>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = parse_filter(&request)?;
    let page = api.shared.store.list_instances(&filter)?;
    let views: Vec<InstanceView> = page.instances.into_iter().map(InstanceView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "instances": views,
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

fn require_instance(api: &Api, id: &str) -> Result<Instance, ApiError> {
    let id = instance_id(id)?;
    api.shared
        .store
        .instance(id)?
        .ok_or_else(|| ApiError::not_found(format!("instance {id} not found")))
}

async fn get_instance(
    api: web::Data<Api>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(InstanceView::from(require_instance(&api, &id)?)))
}

/// The stored bytes of one stream (`?stream=stdout|stderr`, from
/// `?offset=N`), as they are. The instance's status rides in a header so a
/// client following the output knows when to stop.
async fn get_output(
    api: web::Data<Api>,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let instance = require_instance(&api, &id)?;
    let query = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request("query", format!("invalid query string: {e}")))?;
    let mut stream = Stream::Stdout;
    let mut offset = 0u64;
    for (key, value) in query.into_inner() {
        match key.as_str() {
            "stream" => {
                stream = match value.as_str() {
                    "stdout" => Stream::Stdout,
                    "stderr" => Stream::Stderr,
                    _ => {
                        return Err(ApiError::bad_request(
                            "stream",
                            format!("invalid stream {value:?}: use stdout or stderr"),
                        ));
                    }
                }
            }
            "offset" => {
                offset = value.parse().map_err(|_| {
                    ApiError::bad_request("offset", format!("invalid offset {value:?}"))
                })?
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    let bytes = api.shared.store.read_output(instance.id, stream, offset)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("X-Delicate-Instance-Status", instance.status.name()))
        .body(bytes))
}

async fn kill_instance(
    api: web::Data<Api>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let instance = require_instance(&api, &id)?;
    let not_running = || {
        ApiError::conflict(format!(
            "instance {} is not running (status {})",
            instance.id,
            instance.status.name()
        ))
    };
    if instance.status != InstanceStatus::Running {
        return Err(not_running());
    }
    let Some(actor) = api.shared.instance_actor(instance.id) else {
        return Err(not_running());
    };
    actor
        .ask(KillInstance)
        .await
        .map_err(|e| ApiError::conflict(format!("kill of instance {} failed: {e}", instance.id)))?;
    tracing::info!(instance.id = instance.id, "instance.kill_requested");
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({ "id": instance.id.to_string(), "kill": "requested" })))
}
