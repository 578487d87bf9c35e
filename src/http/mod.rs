//! The HTTP API (actix-web): JSON resources under `/api/v1`, `/healthz`
//! and `/metrics`.
//!
//! Handlers run on actix worker threads. They read and write the store
//! directly, wait for the flush before responding to a change, and reach the
//! actors through their references.

mod crontab;
mod error;
mod instances;
mod misc;
mod resources;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};

use crate::actors::Shared;

pub use error::ApiError;

/// State every handler receives.
pub struct Api {
    pub shared: Arc<Shared>,
}

/// Largest request body accepted: a task with a long command and env fits.
const MAX_BODY: usize = 1024 * 1024;

/// Binds the API on `addr` (port 0 picks a free port) and returns the
/// server to run and the bound address.
pub fn bind(
    addr: SocketAddr,
    shared: Arc<Shared>,
    workers: usize,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let api = web::Data::new(Api { shared });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(api.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .configure(routes)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    Ok((server.run(), bound))
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(misc::healthz))
        .route("/metrics", web::get().to(misc::metrics))
        .service(
            web::scope("/api/v1")
                .configure(resources::routes)
                .configure(tasks::routes)
                .configure(instances::routes)
                .configure(crontab::routes)
                .route("/cron/preview", web::post().to(misc::cron_preview)),
        )
        .default_service(web::to(misc::not_found));
}
