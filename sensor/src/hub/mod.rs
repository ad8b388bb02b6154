//! `otsensor hub`: one view of a fleet of sensors (see `docs/FLEET.md`).
//!
//! A durable JetStream pull consumer reads what the sensors publish, checks each
//! message (signature under the sending sensor's key, size, version, subject; see
//! [`crate::fleet`]), applies accepted ones to PostgreSQL in batches ([`db`]) and only
//! then acknowledges them. **A message is acknowledged only after its batch
//! committed**, so a hub killed at any point loses nothing: the consumer redelivers
//! what was not acknowledged and the idempotent writes ignore what was already
//! applied. Refused messages are counted by reason and terminated, never applied.
//!
//! The same process serves the dashboard and `/api` with a sensor/site dimension
//! ([`api`]), and sends operator actions to the owning sensor as signed NATS requests.

/// The HTTP API and dashboard over PostgreSQL.
pub mod api;
/// PostgreSQL: migrations, idempotent batch writes.
pub mod db;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;

use crate::config::ApiToken;
use crate::fleet::{self, Envelope, SensorKey, SIGNATURE_HEADER};
use crate::metrics::HubMetrics;

/// Most messages one batch applies.
const BATCH: usize = 1000;
/// How long a fetch waits for a batch to fill.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// `otsensor hub --config FILE`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    pub nats: HubNatsConfig,
    /// `postgres://USER@HOST:PORT/DB` (`--postgres` overrides it).
    pub postgres: Option<String>,
    /// Address of the dashboard, `/api` and `/metrics` (`--serve` overrides it).
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token operators present to change alerts.
    pub api_token_file: Option<PathBuf>,
    /// Sensor id → its key file (the same key the sensor signs with).
    pub sensors: BTreeMap<String, HubSensorConfig>,
}

/// `nats:` of the hub's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubNatsConfig {
    pub url: Vec<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub stream: String,
    pub subject_prefix: String,
    /// Durable consumer name.
    pub consumer: String,
    /// Stream replicas (3 on a 3-node cluster).
    pub replicas: usize,
    /// Redelivery wait for unacknowledged messages, milliseconds.
    pub ack_wait_ms: u64,
    /// Stream size limit in bytes (0: none).
    pub max_bytes: i64,
    /// Messages older than this leave the stream, hours.
    pub max_age_hours: u64,
}

impl Default for HubNatsConfig {
    fn default() -> Self {
        HubNatsConfig {
            url: Vec::new(),
            user: None,
            password_file: None,
            ca_file: None,
            stream: "OTSENSOR".into(),
            subject_prefix: "otsensor".into(),
            consumer: "otsensor-hub".into(),
            replicas: 1,
            ack_wait_ms: 30_000,
            max_bytes: 0,
            max_age_hours: 72,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSensorConfig {
    pub key_file: PathBuf,
}

/// Why the hub stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::Error),
}

impl HubConfig {
    pub fn load(path: &Path) -> Result<HubConfig, Error> {
        let fail = |reason: String| Error::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        serde_saphyr::from_str(&text).map_err(|e| fail(e.to_string()))
    }
}

/// What the hub shares between ingest, API and commands.
pub struct Hub {
    pub config: HubConfig,
    pub keys: BTreeMap<String, SensorKey>,
    pub token: Option<ApiToken>,
    pub metrics: Arc<HubMetrics>,
    pub nats: async_nats::Client,
    pub postgres: String,
    pub started: Instant,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn read_secret(path: &Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| Error::Invalid(format!("{what} {}: {e}", path.display())))
}

/// Runs the hub until SIGINT/SIGTERM (or `stop` is raised).
pub fn run(mut config: HubConfig, stop: Arc<AtomicBool>) -> Result<(), Error> {
    let postgres = config
        .postgres
        .clone()
        .ok_or_else(|| Error::Invalid("no PostgreSQL: pass --postgres URL".into()))?;
    if config.nats.url.is_empty() {
        return Err(Error::Invalid("no NATS: pass --nats URL[,URL...]".into()));
    }
    for name in [
        &config.nats.stream,
        &config.nats.subject_prefix,
        &config.nats.consumer,
    ] {
        if !fleet::valid_name(name) {
            return Err(Error::Invalid(format!(
                "nats: {name:?} is not a valid name"
            )));
        }
    }
    let mut keys = BTreeMap::new();
    for (sensor, entry) in &config.sensors {
        if !fleet::valid_name(sensor) {
            return Err(Error::Invalid(format!(
                "sensors: {sensor:?} is not a valid id"
            )));
        }
        let key = SensorKey::load(&entry.key_file)
            .map_err(|e| Error::Invalid(format!("sensors.{sensor}.key_file: {e}")))?;
        keys.insert(sensor.clone(), key);
    }
    if keys.is_empty() {
        eprintln!("otsensor hub: warning: no sensors configured; every message will be refused");
    }
    let token = match &config.api_token_file {
        Some(path) => Some(ApiToken::new(read_secret(path, "api_token_file")?)),
        None => None,
    };
    if config.nats.replicas == 0 {
        config.nats.replicas = 1;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("otsensor-hub")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let metrics = HubMetrics::new()?;
        let mut options = async_nats::ConnectOptions::new()
            .name("otsensor-hub")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(5)));
        if let (Some(user), Some(path)) = (&config.nats.user, &config.nats.password_file) {
            options =
                options.user_and_password(user.clone(), read_secret(path, "nats.password_file")?);
        }
        if let Some(ca) = &config.nats.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let nats = options
            .connect(config.nats.url.clone())
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        let hub = Arc::new(Hub {
            config,
            keys,
            token,
            metrics,
            nats,
            postgres,
            started: Instant::now(),
        });
        // The schema first: nothing is consumed before the database is ready.
        let mut client = connect_retrying(&hub.postgres, &stop).await?;
        db::migrate(&mut client).await?;
        drop(client);
        let server = match hub.config.listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address).await?;
                eprintln!("otsensor hub: serving http://{}/", listener.local_addr()?);
                let app = api::router(Arc::clone(&hub));
                let stop = Arc::clone(&stop);
                Some(tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(wait_for(stop))
                        .await;
                }))
            }
            None => None,
        };
        let ingest = ingest(Arc::clone(&hub), Arc::clone(&stop)).await;
        stop.store(true, Ordering::Release);
        if let Some(server) = server {
            let _ = server.await;
        }
        ingest
    })
}

async fn wait_for(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect_retrying(url: &str, stop: &AtomicBool) -> Result<tokio_postgres::Client, Error> {
    let mut wait = Duration::from_millis(100);
    loop {
        match db::connect(url).await {
            Ok(client) => return Ok(client),
            Err(error) if stop.load(Ordering::Acquire) => return Err(error.into()),
            Err(error) => {
                eprintln!("otsensor hub: {error}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The stream the sensors publish to (created or updated here).
async fn ensure_stream(
    jetstream: &async_nats::jetstream::Context,
    config: &HubNatsConfig,
) -> Result<async_nats::jetstream::stream::Stream, Error> {
    use async_nats::jetstream::stream;
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.fleet.>", config.subject_prefix)],
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(600),
        max_age: Duration::from_secs(config.max_age_hours.max(1) * 3600),
        max_bytes: if config.max_bytes > 0 {
            config.max_bytes
        } else {
            -1
        },
        max_message_size: i32::try_from(fleet::MAX_PAYLOAD * 2).unwrap_or(i32::MAX),
        ..Default::default()
    };
    jetstream
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| Error::Nats(format!("stream {}: {e}", config.stream)))
}

async fn ingest(hub: Arc<Hub>, stop: Arc<AtomicBool>) -> Result<(), Error> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let jetstream = async_nats::jetstream::new(hub.nats.clone());
    let mut wait = Duration::from_millis(100);
    // The stream and consumer: retried until the cluster answers (it may be starting).
    let consumer = loop {
        let attempt = async {
            let stream = ensure_stream(&jetstream, &hub.config.nats).await?;
            stream
                .get_or_create_consumer::<pull::Config>(
                    &hub.config.nats.consumer,
                    pull::Config {
                        durable_name: Some(hub.config.nats.consumer.clone()),
                        ack_policy: AckPolicy::Explicit,
                        deliver_policy: DeliverPolicy::All,
                        ack_wait: Duration::from_millis(hub.config.nats.ack_wait_ms.max(1000)),
                        max_ack_pending: 20_000,
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| Error::Nats(format!("consumer: {e}")))
        };
        match attempt.await {
            Ok(consumer) => break consumer,
            Err(error) => {
                if stop.load(Ordering::Acquire) {
                    return Err(error);
                }
                eprintln!("otsensor hub: {error}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    };
    let mut writer: Option<db::Writer> = None;
    while !stop.load(Ordering::Acquire) {
        let fetched = consumer
            .fetch()
            .max_messages(BATCH)
            .expires(FETCH_WAIT)
            .messages()
            .await;
        let Ok(mut batch) = fetched else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            if let Ok(message) = message {
                messages.push(message);
            }
        }
        if messages.is_empty() {
            continue;
        }
        let mut accepted = Vec::with_capacity(messages.len());
        let mut verdicts = Vec::with_capacity(messages.len());
        for message in &messages {
            match check(&hub, message) {
                Ok(envelope) => {
                    accepted.push(envelope);
                    verdicts.push(true);
                }
                Err(error) => {
                    hub.metrics
                        .rejected
                        .with_label_values(&[error.label()])
                        .inc();
                    verdicts.push(false);
                }
            }
        }
        // Apply until it works: nothing is acknowledged before the commit.
        let mut retry = Duration::from_millis(100);
        loop {
            if writer.as_ref().is_none_or(db::Writer::is_closed) {
                writer = match connect_retrying(&hub.postgres, &stop).await {
                    Ok(client) => match db::Writer::new(client).await {
                        Ok(w) => Some(w),
                        Err(error) => {
                            eprintln!("otsensor hub: {error}");
                            None
                        }
                    },
                    Err(error) => return Err(error),
                };
            }
            let Some(w) = writer.as_mut() else {
                hub.metrics.db_errors.inc();
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(2));
                continue;
            };
            match w.apply(&accepted).await {
                Ok(applied) => {
                    hub.metrics.batches.inc();
                    hub.metrics.duplicates.inc_by(applied.duplicates);
                    let now = fleet::now_ns();
                    for envelope in &accepted {
                        hub.metrics
                            .messages
                            .with_label_values(&[envelope.body.kind().name()])
                            .inc();
                        if matches!(envelope.body, fleet::Body::Alert(_)) {
                            let seconds = now.saturating_sub(envelope.emitted_ns) as f64 / 1e9;
                            hub.metrics.alert_latency.observe(seconds);
                        }
                    }
                    break;
                }
                Err(error) => {
                    hub.metrics.db_errors.inc();
                    eprintln!("otsensor hub: {error}; retrying the batch");
                    writer = None;
                    if stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(2));
                }
            }
        }
        let acks = messages
            .iter()
            .zip(&verdicts)
            .map(|(message, ok)| async move {
                if *ok {
                    message.ack().await
                } else {
                    message.ack_with(async_nats::jetstream::AckKind::Term).await
                }
            });
        for result in futures_util::future::join_all(acks).await {
            if result.is_err() {
                // Not acknowledged: it comes back and is recognised as applied.
                hub.metrics.db_errors.inc_by(0);
            }
        }
    }
    Ok(())
}

/// Verifies one message from the bus.
fn check(hub: &Hub, message: &async_nats::jetstream::Message) -> Result<Envelope, fleet::Error> {
    let subject = message.subject.as_str();
    if message.payload.len() > fleet::MAX_PAYLOAD {
        return Err(fleet::Error::TooLarge(message.payload.len()));
    }
    let sensor = Envelope::sensor_of_subject(subject)
        .ok_or_else(|| fleet::Error::Malformed("subject".into()))?;
    let key = hub
        .keys
        .get(sensor)
        .ok_or_else(|| fleet::Error::UnknownSensor(sensor.to_owned()))?;
    let signature = message
        .headers
        .as_ref()
        .and_then(|h| h.get(SIGNATURE_HEADER))
        .map(|v| v.as_str());
    key.verify(&message.payload, signature)?;
    Envelope::parse(subject, &message.payload)
}
