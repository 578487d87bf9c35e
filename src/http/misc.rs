//! Health, metrics, cron preview and the fallback route.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Api;
use super::error::{ApiError, parse_json};
use crate::domain::entities::Task;
use crate::domain::schedule;
use crate::domain::time_format;

pub async fn healthz(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "tasks": api.shared.store.count::<Task>(),
        "processors_online": api.shared.directory.online_count(),
    }))
}

pub async fn metrics(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(api.shared.metrics.render())
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "no such route: see the API section of the README",
    ))
}

/// Most fire times one preview returns.
const MAX_PREVIEW: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    expression: String,
    #[serde(default = "utc")]
    time_zone: String,
    #[serde(default, with = "time_format::option")]
    after: Option<DateTime<Utc>>,
    #[serde(default = "default_count")]
    count: usize,
}

fn utc() -> String {
    "UTC".to_string()
}

fn default_count() -> usize {
    10
}

#[derive(Serialize)]
struct PreviewResponse {
    expression: String,
    time_zone: String,
    fire_times: Vec<String>,
}

pub async fn cron_preview(body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: PreviewRequest = parse_json(&body)?;
    if request.count == 0 || request.count > MAX_PREVIEW {
        return Err(ApiError::invalid(
            "count",
            format!(
                "count {} is out of range: use 1 to {MAX_PREVIEW}",
                request.count
            ),
        ));
    }
    let after = request.after.unwrap_or_else(Utc::now);
    let times = schedule::preview(
        &request.expression,
        &request.time_zone,
        after,
        request.count,
    )
    .map_err(|e| {
        let field = if e.api_field() == "time_zone" {
            "time_zone"
        } else {
            "expression"
        };
        ApiError::invalid(field, e.to_string())
    })?;
    Ok(HttpResponse::Ok().json(PreviewResponse {
        expression: request.expression,
        time_zone: request.time_zone,
        fire_times: times
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect(),
    }))
}
