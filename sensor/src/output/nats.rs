//! `outputs.nats`: the sensor's side of the fleet (see `docs/FLEET.md`).
//!
//! One thread with a single-threaded tokio runtime. It takes the analyzer's
//! [`StateChange`]s and a periodic heartbeat, numbers them (per-sensor `seq`), signs
//! them, appends them to the [`Spool`] and publishes from the spool's head to
//! JetStream, removing what the stream acknowledged. So messages leave in order; when
//! the bus is down they wait on disk (bounded, alerts dropped last) and drain when it
//! returns. **The analyzer and the workers never wait for the bus**: the analyzer's
//! only contact is a `try_send` on the change channel.
//!
//! The same thread answers the hub's commands (`{prefix}.cmd.{sensor_id}` requests):
//! **only requests signed with this sensor's key, issued within a minute, with a
//! nonce not seen before, are applied**; the result goes back signed, and the state
//! change the analyzer emits travels the normal stream.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use futures_util::StreamExt;

use crate::changes::{Change, StateChange};
use crate::control::{reply_channel, ControlRequest, OutputLoss};
use crate::fleet::{
    self, Action, Body, Command, CommandReply, Envelope, Heartbeat, SensorKey, SpoolHealth,
    SIGNATURE_HEADER, VERSION,
};
use crate::metrics::{FleetMetrics, Metrics};
use crate::output::spool::{Spool, Spooled};

/// Messages published before their acknowledgements are awaited.
const PUBLISH_WINDOW: usize = 256;
/// How long one acknowledgement may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `stop` keeps trying to empty the spool.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Nonces remembered against replayed commands.
const NONCES: usize = 4096;
/// How long the thread sleeps when there is nothing to do.
const IDLE: Duration = Duration::from_millis(5);
/// How often at most a growing loss is reported to the analyzer (`output_loss`).
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Validated `outputs.nats`.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsSettings {
    pub urls: Vec<String>,
    pub sensor_id: String,
    pub site: String,
    pub stream: String,
    pub subject_prefix: String,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub key_file: PathBuf,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub heartbeat_interval: Duration,
}

/// Why the output could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("outputs.nats.key_file: {0}")]
    Key(#[from] fleet::Error),
    #[error("outputs.nats.password_file {path}: {source}")]
    Password {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("outputs.nats.spool_dir {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("NATS thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The running output.
pub struct NatsOutput {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NatsOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsOutput")
    }
}

struct Service {
    settings: NatsSettings,
    key: SensorKey,
    password: Option<String>,
    spool: Spool,
    changes: Receiver<StateChange>,
    changes_dropped: Arc<AtomicU64>,
    control: Sender<ControlRequest>,
    metrics: Option<Arc<Metrics>>,
    fleet_metrics: Option<FleetMetrics>,
    seq: u64,
    started: Instant,
    stop: Arc<AtomicBool>,
    reported_drops: [u64; 3],
    /// The loss last reported to the analyzer (`output_loss`), and when.
    reported_loss: (u64, Option<Instant>),
}

impl NatsOutput {
    /// Opens the spool and key now (so a bad file fails the start) and starts the thread.
    pub fn start(
        settings: NatsSettings,
        changes: Receiver<StateChange>,
        changes_dropped: Arc<AtomicU64>,
        control: Sender<ControlRequest>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<NatsOutput, Error> {
        let key = SensorKey::load(&settings.key_file)?;
        let password = match &settings.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| Error::Password {
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let spool =
            Spool::open(&settings.spool_dir, settings.spool_max_bytes).map_err(|source| {
                Error::Spool {
                    path: settings.spool_dir.display().to_string(),
                    source,
                }
            })?;
        // Strictly increasing across restarts without a counter file: the wall clock in
        // microseconds, or past what the spool still holds.
        let now_us = fleet::now_ns() / 1_000;
        let seq = now_us.max(spool.max_seq().map_or(0, |s| s + 1));
        let fleet_metrics = match &metrics {
            Some(m) => m.fleet().ok(),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let service = Service {
            settings,
            key,
            password,
            spool,
            changes,
            changes_dropped,
            control,
            metrics,
            fleet_metrics,
            seq,
            started: Instant::now(),
            stop: Arc::clone(&stop),
            reported_drops: [0; 3],
            reported_loss: (0, None),
        };
        let thread = thread::Builder::new()
            .name("otsensor-nats".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(service.run());
            })
            .map_err(Error::Thread)?;
        Ok(NatsOutput {
            stop,
            thread: Some(thread),
        })
    }

    /// Queues what the analyzer still sent, tries for [`STOP_GRACE`] to empty the spool
    /// (what is left stays on disk for the next start) and stops.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for NatsOutput {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Asks the owner of the analyzer state, waiting at most `timeout`.
fn ask<T>(
    control: &Sender<ControlRequest>,
    request: impl FnOnce(Sender<T>) -> ControlRequest,
    timeout: Duration,
) -> Option<T> {
    let (tx, rx) = reply_channel();
    control.send_timeout(request(tx), timeout).ok()?;
    rx.recv_timeout(timeout).ok()
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(5)).min(1_000))
}

impl Service {
    async fn run(mut self) {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("otsensor-{}", self.settings.sensor_id))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(ACK_TIMEOUT))
            .reconnect_delay_callback(backoff);
        if let (Some(user), Some(password)) = (&self.settings.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.settings.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = match options.connect(self.settings.urls.clone()).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("otsensor: outputs.nats: {error}");
                return;
            }
        };
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(ACK_TIMEOUT);

        // Commands from the hub.
        let commands = tokio::spawn(serve_commands(
            client.clone(),
            self.settings.clone(),
            self.key.clone(),
            self.control.clone(),
            self.fleet_metrics.clone(),
        ));
        // Heartbeats are assembled off this task (asking the analyzer may wait).
        let (beat_tx, mut beat_rx) = tokio::sync::mpsc::channel::<Heartbeat>(4);
        let beats = tokio::spawn(heartbeats(
            self.settings.heartbeat_interval,
            self.control.clone(),
            self.metrics.clone(),
            self.started,
            beat_tx,
        ));

        let mut failures = 0usize;
        let mut stopping_since: Option<Instant> = None;
        loop {
            let mut busy = self.take_changes();
            while let Ok(beat) = beat_rx.try_recv() {
                self.enqueue(Body::Heartbeat(Box::new(beat)), fleet::now_ns());
                busy = true;
            }
            self.update_gauges();
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            if let Some(m) = &self.fleet_metrics {
                m.connected.set(i64::from(connected));
            }
            if connected && !self.spool.is_empty() {
                match self.publish_batch(&jetstream).await {
                    Ok(()) => failures = 0,
                    Err(()) => {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
                busy = true;
            }
            if self.stop.load(Ordering::Acquire) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if self.spool.is_empty() || since.elapsed() > STOP_GRACE {
                    break;
                }
            }
            if !busy || !connected {
                tokio::time::sleep(IDLE).await;
            }
        }
        self.take_changes();
        self.update_gauges();
        commands.abort();
        beats.abort();
        let _ = client.flush().await;
    }

    /// Moves what the analyzer sent into the spool; true if there was anything.
    fn take_changes(&mut self) -> bool {
        let mut any = false;
        for _ in 0..4096 {
            let Ok(change) = self.changes.try_recv() else {
                break;
            };
            any = true;
            let body = match change.what {
                Change::Alert(alert) => Body::Alert(alert),
                Change::Device(device) => Body::Device(device),
                Change::Baseline(view) => Body::Baseline(view),
            };
            self.enqueue(body, change.emitted_ns);
        }
        any
    }

    fn spool_health(&self) -> SpoolHealth {
        let dropped = self.spool.dropped();
        SpoolHealth {
            messages: self.spool.len(),
            bytes: self.spool.bytes(),
            dropped_heartbeats: dropped.heartbeats,
            dropped_state: dropped.state,
            dropped_alerts: dropped.alerts,
            changes_dropped: self.changes_dropped.load(Ordering::Relaxed),
        }
    }

    fn enqueue(&mut self, mut body: Body, emitted_ns: u64) {
        if let Body::Heartbeat(beat) = &mut body {
            beat.spool = self.spool_health();
        }
        let envelope = Envelope {
            v: VERSION,
            sensor_id: self.settings.sensor_id.clone(),
            site: self.settings.site.clone(),
            seq: self.seq,
            emitted_ns,
            body,
        };
        self.seq += 1;
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        let message = Spooled {
            seq: envelope.seq,
            kind: envelope.body.kind(),
            subject: envelope.subject(&self.settings.subject_prefix),
            signature: self.key.sign(&payload),
            payload,
        };
        if self.spool.push(&message).is_err() {
            if let Some(m) = &self.fleet_metrics {
                m.spool_errors.inc();
            }
        }
    }

    fn update_gauges(&mut self) {
        self.report_loss();
        let Some(m) = &self.fleet_metrics else {
            return;
        };
        m.spool_messages.set(self.spool.len() as i64);
        m.spool_bytes.set(self.spool.bytes() as i64);
        let dropped = self.spool.dropped();
        let now = [dropped.heartbeats, dropped.state, dropped.alerts];
        for (i, label) in ["heartbeat", "state", "alert"].into_iter().enumerate() {
            let delta = now[i].saturating_sub(self.reported_drops[i]);
            if delta > 0 {
                m.spool_dropped.with_label_values(&[label]).inc_by(delta);
            }
        }
        self.reported_drops = now;
        let changes = self.changes_dropped.load(Ordering::Relaxed);
        let reported = m.changes_dropped.get();
        if changes > reported {
            m.changes_dropped.inc_by(changes - reported);
        }
    }

    /// Tells the analyzer (an `output_loss` alert) when the drop totals grew, at most
    /// once per [`LOSS_REPORT_INTERVAL`]; never waits for it.
    fn report_loss(&mut self) {
        let dropped = self.spool.dropped();
        let loss = OutputLoss {
            output: "nats",
            heartbeats: dropped.heartbeats,
            state: dropped.state,
            alerts: dropped.alerts,
            changes: self.changes_dropped.load(Ordering::Relaxed),
            bound_bytes: self.settings.spool_max_bytes,
        };
        let (reported, at) = self.reported_loss;
        if loss.total() <= reported || at.is_some_and(|at| at.elapsed() < LOSS_REPORT_INTERVAL) {
            return;
        }
        let total = loss.total();
        if self
            .control
            .try_send(ControlRequest::OutputLoss(loss))
            .is_ok()
        {
            self.reported_loss = (total, Some(Instant::now()));
        }
    }

    /// Publishes up to [`PUBLISH_WINDOW`] messages from the spool's head and removes the
    /// acknowledged prefix. Err when anything failed (the rest is retried).
    async fn publish_batch(
        &mut self,
        jetstream: &async_nats::jetstream::Context,
    ) -> Result<(), ()> {
        let batch = match self.spool.peek(PUBLISH_WINDOW) {
            Ok(batch) => batch,
            Err(_) => {
                if let Some(m) = &self.fleet_metrics {
                    m.spool_errors.inc();
                }
                return Err(());
            }
        };
        let mut pending = Vec::with_capacity(batch.len());
        for message in &batch {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}:{}", self.settings.sensor_id, message.seq).as_str(),
            );
            headers.insert(SIGNATURE_HEADER, message.signature.as_str());
            match jetstream
                .publish_with_headers(
                    message.subject.clone(),
                    headers,
                    bytes::Bytes::from(message.payload.clone()),
                )
                .await
            {
                Ok(ack) => pending.push((message.kind, ack)),
                Err(_) => break,
            }
        }
        let mut acked = 0;
        for (kind, ack) in pending {
            match tokio::time::timeout(ACK_TIMEOUT, ack).await {
                Ok(Ok(ack)) => {
                    acked += 1;
                    if let Some(m) = &self.fleet_metrics {
                        m.published.with_label_values(&[kind.name()]).inc();
                        if ack.duplicate {
                            m.duplicates.inc();
                        }
                    }
                }
                _ => break,
            }
        }
        if self.spool.pop(acked).is_err() {
            if let Some(m) = &self.fleet_metrics {
                m.spool_errors.inc();
            }
        }
        if acked < batch.len() {
            if let Some(m) = &self.fleet_metrics {
                m.publish_failures.inc();
            }
            return Err(());
        }
        Ok(())
    }
}

async fn heartbeats(
    interval: Duration,
    control: Sender<ControlRequest>,
    metrics: Option<Arc<Metrics>>,
    started: Instant,
    out: tokio::sync::mpsc::Sender<Heartbeat>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let control = control.clone();
        let asked = tokio::task::spawn_blocking(move || {
            let wait = Duration::from_secs(1);
            (
                ask(&control, ControlRequest::Health, wait),
                ask(&control, ControlRequest::Baseline, wait),
            )
        })
        .await;
        let (health, baseline) = asked.unwrap_or((None, None));
        let beat = Heartbeat {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: started.elapsed().as_secs_f64(),
            packets: metrics.as_ref().map_or(0, |m| m.reader_packets.get()),
            bytes: metrics.as_ref().map_or(0, |m| m.reader_bytes.get()),
            health,
            baseline,
            spool: SpoolHealth::default(),
        };
        if out.send(beat).await.is_err() {
            return;
        }
    }
}

/// Refuses a command that is not this sensor's, not fresh, or replayed.
fn check_command(
    command: &Command,
    sensor_id: &str,
    nonces: &mut (HashSet<String>, VecDeque<String>),
) -> Result<(), &'static str> {
    if command.v != VERSION {
        return Err("version");
    }
    if command.sensor_id != sensor_id {
        return Err("wrong_sensor");
    }
    if fleet::now_ns().abs_diff(command.issued_ns) > fleet::COMMAND_MAX_SKEW_NS {
        return Err("stale");
    }
    if command.nonce.len() < 16 || command.nonce.len() > 64 || nonces.0.contains(&command.nonce) {
        return Err("replayed");
    }
    nonces.0.insert(command.nonce.clone());
    nonces.1.push_back(command.nonce.clone());
    if nonces.1.len() > NONCES {
        if let Some(old) = nonces.1.pop_front() {
            nonces.0.remove(&old);
        }
    }
    Ok(())
}

async fn serve_commands(
    client: async_nats::Client,
    settings: NatsSettings,
    key: SensorKey,
    control: Sender<ControlRequest>,
    metrics: Option<FleetMetrics>,
) {
    let subject = fleet::command_subject(&settings.subject_prefix, &settings.sensor_id);
    let Ok(mut requests) = client.subscribe(subject).await else {
        return;
    };
    let mut nonces = (HashSet::new(), VecDeque::new());
    while let Some(request) = requests.next().await {
        let Some(reply_to) = request.reply.clone() else {
            continue;
        };
        let signature = request
            .headers
            .as_ref()
            .and_then(|h| h.get(SIGNATURE_HEADER))
            .map(|v| v.as_str().to_owned());
        let verdict = if request.payload.len() > fleet::MAX_PAYLOAD {
            Err("too_large")
        } else if key.verify(&request.payload, signature.as_deref()).is_err() {
            Err("bad_signature")
        } else {
            match serde_json::from_slice::<Command>(&request.payload) {
                Ok(command) => {
                    check_command(&command, &settings.sensor_id, &mut nonces).map(|()| command)
                }
                Err(_) => Err("malformed"),
            }
        };
        let reply = match verdict {
            Ok(command) => {
                let control = control.clone();
                let result = tokio::task::spawn_blocking(move || match command.action {
                    Action::SetAlertStatus { alert_id, status } => ask(
                        &control,
                        |tx| ControlRequest::SetAlertStatus(alert_id, status, tx),
                        Duration::from_secs(5),
                    ),
                })
                .await
                .ok()
                .flatten();
                match result {
                    Some(Ok(alert)) => {
                        count(&metrics, "applied");
                        CommandReply {
                            ok: true,
                            error: None,
                            alert: Some(Box::new(alert)),
                        }
                    }
                    Some(Err(error)) => {
                        count(&metrics, "failed");
                        CommandReply {
                            ok: false,
                            error: Some(error.to_string()),
                            alert: None,
                        }
                    }
                    None => {
                        count(&metrics, "failed");
                        CommandReply {
                            ok: false,
                            error: Some("the analyzer did not answer".into()),
                            alert: None,
                        }
                    }
                }
            }
            Err(reason) => {
                count(&metrics, reason);
                CommandReply {
                    ok: false,
                    error: Some(format!("refused: {reason}")),
                    alert: None,
                }
            }
        };
        let Ok(payload) = serde_json::to_vec(&reply) else {
            continue;
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, key.sign(&payload).as_str());
        let _ = client
            .publish_with_headers(reply_to, headers, payload.into())
            .await;
    }
}

fn count(metrics: &Option<FleetMetrics>, result: &str) {
    if let Some(m) = metrics {
        m.commands.with_label_values(&[result]).inc();
    }
}
