//! The scheduler node: store, actors, QUIC listener and HTTP API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use super::listener;
use crate::actors::instance::InstanceActor;
use crate::actors::scheduler::SchedulerActor;
use crate::actors::{Directory, SchedulerSettings, Shared};
use crate::domain::entities::{Bind, Group, Processor, Task};
use crate::domain::snowflake::SnowflakeGenerator;
use crate::metrics::Metrics;
use crate::net::{close_code, tls};
use crate::node::listener::JoinPolicy;
use crate::security::keys::{self, KeyPair, KeySettings};
use crate::security::rate_limit::{DEFAULT_JOIN_BURST, DEFAULT_JOIN_RATE, JoinLimiter};
use crate::security::{LEVEL_AUTHENTICATED, LEVEL_OPEN};
use crate::storage::{DEFAULT_CACHE_BYTES, Store};
use rsa::PublicKey;

/// Everything a scheduler node is started with.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub quic: SocketAddr,
    pub security_level: u8,
    pub http_workers: usize,
    pub cache_bytes: u64,
    pub settings: SchedulerSettings,
    /// The scheduler's key pair at security level 1.
    pub keys: KeySettings,
    /// The scheduler's public key file. When set, it must belong to the
    /// private key.
    pub public_key: Option<PathBuf>,
    /// Join attempts allowed at once from one address.
    pub join_burst: u32,
    /// Join attempts an address regains per second.
    pub join_rate: f64,
}

impl SchedulerConfig {
    pub fn new(
        data_dir: PathBuf,
        http: SocketAddr,
        quic: SocketAddr,
        security_level: u8,
    ) -> SchedulerConfig {
        SchedulerConfig {
            data_dir,
            http,
            quic,
            security_level,
            http_workers: 2,
            cache_bytes: DEFAULT_CACHE_BYTES,
            settings: SchedulerSettings::default(),
            keys: KeySettings::default(),
            public_key: None,
            join_burst: DEFAULT_JOIN_BURST,
            join_rate: DEFAULT_JOIN_RATE,
        }
    }
}

/// How often instances older than the retention period are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// A running scheduler node.
pub struct SchedulerNode {
    pub http_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// The scheduler's public key: `Some` at security level 1.
    pub public_key: Option<PublicKey>,
    shutdown: watch::Sender<bool>,
    http: actix_web::dev::ServerHandle,
    endpoint: quinn::Endpoint,
}

impl SchedulerNode {
    pub async fn start(config: SchedulerConfig) -> anyhow::Result<SchedulerNode> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "failed to create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let store_dir = config.data_dir.join("store");
        let store = Store::open(&store_dir, config.cache_bytes)
            .with_context(|| format!("failed to open the store in {}", store_dir.display()))?;
        store
            .clear_sessions()
            .context("failed to clear the sessions of the previous run")?;
        let keys = load_keys(&config).await?;
        let public_key = keys.as_ref().map(|keys| keys.public_key().clone());
        let shared = Arc::new(Shared {
            ids: Mutex::new(SnowflakeGenerator::resume_after(
                store.newest_instance_id()?,
            )),
            store,
            metrics: Arc::new(Metrics::default()),
            settings: config.settings.clone(),
            directory: Directory::default(),
            scheduler: OnceLock::new(),
            instances: RwLock::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        });
        load_directory(&shared)?;
        let scheduler = SchedulerActor::start(shared.clone())?;
        let _ = shared.scheduler.set(scheduler);
        recover_running(&shared).await?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let server_config = tls::server_config(&config.data_dir)?;
        let endpoint = quinn::Endpoint::server(server_config, config.quic)
            .with_context(|| format!("failed to bind the QUIC address {}", config.quic))?;
        let quic_addr = endpoint.local_addr()?;
        let policy = Arc::new(JoinPolicy {
            security_level: config.security_level,
            keys,
            limiter: JoinLimiter::new(config.join_burst, config.join_rate),
        });
        tokio::spawn(listener::serve(
            endpoint.clone(),
            shared.clone(),
            policy,
            shutdown_rx.clone(),
        ));

        let (server, http_addr) =
            crate::http::bind(config.http, shared.clone(), config.http_workers)
                .with_context(|| format!("failed to bind the HTTP address {}", config.http))?;
        let http = server.handle();
        tokio::spawn(server);
        tokio::spawn(purge_loop(shared.clone(), shutdown_rx));

        tracing::info!(
            http.addr = %http_addr,
            quic.addr = %quic_addr,
            data_dir = %config.data_dir.display(),
            security_level = config.security_level,
            "scheduler.started"
        );
        if config.security_level == 0 {
            tracing::warn!(
                quic.addr = %quic_addr,
                "security level 0: any node that reaches the QUIC address can join as an executor and receive commands"
            );
        }
        Ok(SchedulerNode {
            http_addr,
            quic_addr,
            shared,
            public_key,
            shutdown,
            http,
            endpoint,
        })
    }

    /// Stops accepting work, closes executor connections, flushes the store.
    /// Stops the scheduler actor, so no slot fires any more.
    pub async fn stop_firing(&self) {
        let scheduler = self.shared.scheduler();
        if scheduler.stop_gracefully().await.is_ok() {
            scheduler.wait_for_shutdown().await;
        }
    }

    pub async fn shutdown(self) {
        tracing::info!("scheduler.stopping");
        self.stop_firing().await;
        let _ = self.shutdown.send(true);
        self.http.stop(true).await;
        self.endpoint
            .close(close_code::NORMAL.into(), b"scheduler shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        if let Err(error) = self.shared.store.flush_now() {
            tracing::error!(%error, "final store flush failed");
        }
        tracing::info!("scheduler.stopped");
    }
}

/// Loads or generates the scheduler's key pair at security level 1.
async fn load_keys(config: &SchedulerConfig) -> anyhow::Result<Option<KeyPair>> {
    match config.security_level {
        LEVEL_OPEN => return Ok(None),
        LEVEL_AUTHENTICATED => {}
        other => anyhow::bail!("security level {other} is invalid: use 0 or 1"),
    }
    let data_dir = config.data_dir.clone();
    let settings = config.keys.clone();
    // Generating a key takes seconds, so it runs off the async workers.
    let keys = tokio::task::spawn_blocking(move || keys::load_or_generate(&data_dir, &settings))
        .await
        .context("the key loading task failed")??;
    if let Some(public) = &config.public_key {
        let private = config
            .keys
            .private_key
            .clone()
            .unwrap_or_else(|| config.data_dir.join(keys::PRIVATE_KEY_FILE));
        keys::check_public_matches(public, &keys, &private)?;
    }
    Ok(Some(keys))
}

/// Fills the directory and spawns the actors of every group and processor.
fn load_directory(shared: &Arc<Shared>) -> anyhow::Result<()> {
    for processor in shared.store.list::<Processor>()? {
        shared.register_processor(processor);
    }
    for group in shared.store.list::<Group>()? {
        shared.register_group(group.id);
    }
    for bind in shared.store.list::<Bind>()? {
        shared.directory.put_bind(bind);
    }
    Ok(())
}

/// Gives every instance still Running after a restart an actor again.
async fn recover_running(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let running = shared.store.running_instances()?;
    if !running.is_empty() {
        tracing::info!(
            count = running.len(),
            "scheduler.recovering_running_instances"
        );
    }
    for instance in running {
        let Some(task) = shared.store.get::<Task>(instance.task_id)? else {
            continue;
        };
        InstanceActor::recover(shared.clone(), instance, Arc::new(task)).await;
    }
    Ok(())
}

async fn purge_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let retention = chrono::Duration::from_std(shared.settings.retention)
            .unwrap_or(chrono::Duration::days(14));
        let cutoff = chrono::Utc::now() - retention;
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.purge_instances_before(cutoff)).await {
            Ok(Ok(purged)) if purged > 0 => tracing::info!(purged, "store.purged_old_instances"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "purging old instances failed"),
            Err(error) => tracing::error!(%error, "the purge task panicked"),
        }
    }
}
