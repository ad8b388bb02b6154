//! The HTTP surface (axum on its own tokio runtime, never on a worker): `/metrics`,
//! the JSON API under `/api` (documented in `docs/API.md`), and the dashboard (assets
//! embedded in the binary; nothing is loaded from elsewhere).
//!
//! **The server owns no sensor state, and reading costs its owner nothing.** Devices,
//! flows, baseline and health are served from the [`ApiSnapshot`] the analyzer
//! publishes (at most every [`crate::control::SNAPSHOT_INTERVAL`], and within a
//! tenth of its time); alerts come from read-only connections to the database, filters
//! in SQL. However many clients loop on GETs, the analyzer's work does not grow. Only
//! changes go to the state's owner as [`ControlRequest`]s; the answer comes back on a
//! one-slot channel. Waiting happens on tokio's (bounded) blocking pool.
//!
//! **Every resource a client can hold is bounded** (`server`): connections, header and
//! idle time, request time, body size; `Host`/`Origin` must name the sensor.
//!
//! **Every state-changing endpoint needs `Authorization: Bearer <http.api_token>`**;
//! without a configured token they are refused (401) as well. The comparison is
//! constant-time ([`ApiToken::matches`]).

use std::net::SocketAddr;
use std::path::{Path as FilePath, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::Sender;
use serde::Serialize;

use crate::advisories;
use crate::config::ApiToken;
use crate::control::{
    reply_channel, AlertFilter, ApiSnapshot, BaselineAction, ControlError, ControlRequest,
    DeviceFilter, HealthView, SnapshotCell, MAX_LIST,
};
use crate::detect::{Alert, AlertStatus};
use crate::metrics::Metrics;
use crate::reload::{self, ReloadError, ReloadOutcome, ReloadRequest};
use crate::store::{self, Store};

mod server;
pub mod token;

pub use server::{HostGuard, HttpLimits};

/// Read-only database connections kept open for the alert endpoints.
const ALERT_READERS: usize = 4;
/// How long a read waits for a database lock (the analyzer's commits are short).
const READ_BUSY: Duration = Duration::from_secs(2);

/// How long the API waits for the state's owner before answering 503.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("http.listen {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The one error type of every endpoint: a status and a JSON body `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Unauthorized,
    /// `Host` or `Origin` does not name this sensor.
    Forbidden(String),
    /// The request body is over the limit (bytes).
    TooLarge(usize),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    /// A well-formed request the sensor refuses (an invalid configuration on reload).
    Unprocessable(String),
    /// The owner of the state did not answer in time (or is gone).
    Unavailable,
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs Authorization: Bearer <http.api_token>".to_owned(),
            ),
            ApiError::Forbidden(what) => (StatusCode::FORBIDDEN, "forbidden", what),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request bodies are limited to {limit} bytes"),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", what),
            ApiError::BadRequest(what) => (StatusCode::BAD_REQUEST, "bad_request", what),
            ApiError::Conflict(what) => (StatusCode::CONFLICT, "conflict", what),
            ApiError::Unprocessable(what) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", what)
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the sensor did not answer in time".to_owned(),
            ),
            ApiError::Internal(what) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", what),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: code,
                message,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            if let Ok(value) = header::HeaderValue::from_str("Bearer realm=\"otsensor\"") {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::NoSuchAlert { id } => ApiError::NotFound(format!("no alert {id}")),
            ControlError::Store { reason } => ApiError::Internal(reason),
        }
    }
}

/// Read-only connections to the database, for the alert endpoints (never the
/// analyzer's connection): at most [`ALERT_READERS`] reads at once.
pub struct AlertReaders {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
    permits: tokio::sync::Semaphore,
}

impl AlertReaders {
    pub fn new(path: &FilePath) -> AlertReaders {
        AlertReaders {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(ALERT_READERS),
        }
    }

    /// Runs `read` on a pooled connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(OWNER_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| ApiError::Unavailable)?
            .map_err(|_| ApiError::Unavailable)?;
        let readers = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let pooled = readers.idle.lock().ok().and_then(|mut idle| idle.pop());
            let connection = match pooled {
                Some(connection) => connection,
                None => Store::open_read_only(&readers.path, READ_BUSY)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            };
            let result = read(&connection).map_err(|e| ApiError::Internal(e.to_string()));
            if let Ok(mut idle) = readers.idle.lock() {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        drop(permit);
        result
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    control: Sender<ControlRequest>,
    snapshot: Arc<SnapshotCell>,
    /// None: alerts are asked of the owner (an in-memory database has no file to open).
    alerts: Option<Arc<AlertReaders>>,
    metrics: Arc<Metrics>,
    token: Option<ApiToken>,
    started: Instant,
    /// Where `POST /api/config/reload` goes; none when there is nothing to reload.
    reload: Option<Sender<ReloadRequest>>,
    /// Where alert evidence files are (`GET /api/alerts/{id}/pcap`).
    evidence: Option<Arc<std::path::PathBuf>>,
}

impl AppState {
    /// `snapshot` is what the owner publishes (the pipeline's `ReplayOptions::snapshot`).
    pub fn new(
        control: Sender<ControlRequest>,
        snapshot: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        token: Option<ApiToken>,
    ) -> AppState {
        AppState {
            control,
            snapshot,
            alerts: None,
            metrics,
            token,
            started: Instant::now(),
            reload: None,
            evidence: None,
        }
    }

    /// Serves alert evidence files from `dir`.
    pub fn with_evidence_dir(mut self, dir: &FilePath) -> AppState {
        self.evidence = Some(Arc::new(dir.to_path_buf()));
        self
    }

    /// Names the evidence file of each alert that has one.
    fn mark_evidence(&self, alerts: &mut [Alert]) {
        let Some(dir) = &self.evidence else {
            return;
        };
        for alert in alerts {
            let path = crate::evidence::file_of(dir, alert.id);
            if path.is_file() {
                alert.evidence = Some(crate::detect::EvidenceRef {
                    path: path.display().to_string(),
                    sha256: None,
                });
            }
        }
    }

    /// Reads alerts from this database file instead of asking the owner.
    pub fn with_alert_database(mut self, path: &FilePath) -> AppState {
        self.alerts = Some(Arc::new(AlertReaders::new(path)));
        self
    }

    /// Enables `POST /api/config/reload` (the reload thread's request channel).
    pub fn with_reload(mut self, requests: Sender<ReloadRequest>) -> AppState {
        self.reload = Some(requests);
        self
    }

    /// The owner's latest snapshot. Right after start (the server is up before the
    /// pipeline) waits for the first one, then answers 503.
    async fn snapshot(&self) -> Result<Arc<ApiSnapshot>, ApiError> {
        let deadline = Instant::now() + OWNER_TIMEOUT;
        loop {
            let snapshot = self.snapshot.load();
            if snapshot.generation > 0 {
                return Ok(snapshot);
            }
            if Instant::now() >= deadline {
                return Err(ApiError::Unavailable);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a request built around a reply slot and waits (off the async threads).
    async fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce(Sender<T>) -> ControlRequest + Send + 'static,
    ) -> Result<T, ApiError> {
        let control = self.control.clone();
        tokio::task::spawn_blocking(move || {
            let (tx, rx) = reply_channel();
            control
                .send_timeout(request(tx), OWNER_TIMEOUT)
                .map_err(|_| ApiError::Unavailable)?;
            rx.recv_timeout(OWNER_TIMEOUT)
                .map_err(|_| ApiError::Unavailable)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match (&self.token, presented) {
            (Some(token), Some(presented)) if token.matches(presented.trim()) => Ok(()),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// The routes, behind the guard (`server::guard`: Host/Origin, limits, headers).
pub fn router(state: AppState, hosts: HostGuard, limits: HttpLimits) -> Router {
    let guard = server::Guard {
        hosts,
        limits,
        metrics: Arc::clone(&state.metrics),
    };
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/app.js", get(dashboard::script))
        .route("/assets/app.css", get(dashboard::style))
        .route("/metrics", get(metrics))
        .route("/api/health", get(health))
        .route("/api/devices", get(list_devices))
        .route("/api/devices/{id}", get(device))
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}", get(alert))
        .route(
            "/api/alerts/{id}/{action}",
            get(alert_pcap).post(change_alert),
        )
        .route("/api/baseline", get(baseline))
        .route("/api/baseline/{action}", post(change_baseline))
        .route("/api/flows", get(flows))
        .route("/api/vulnerabilities", get(vulnerabilities))
        .route("/api/config/reload", post(reload_config))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard, server::guard))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: f64,
    packets: u64,
    bytes: u64,
    analyzer: HealthView,
}

async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let snapshot = state.snapshot().await?;
    let analyzer = snapshot.health.clone().ok_or(ApiError::Unavailable)?;
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        packets: state.metrics.reader_packets.get(),
        bytes: state.metrics.reader_bytes.get(),
        analyzer,
    }))
}

async fn list_devices(
    State(state): State<AppState>,
    Query(filter): Query<DeviceFilter>,
) -> Result<Response, ApiError> {
    let snapshot = state.snapshot().await?;
    let devices: Vec<_> = snapshot
        .devices
        .iter()
        .map(|device| &device.summary)
        .filter(|summary| filter.matches(summary))
        .take(MAX_LIST)
        .collect();
    Ok(Json(devices).into_response())
}

async fn device(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.snapshot().await?;
    match snapshot.device(&id) {
        Some(device) => Ok(Json(device).into_response()),
        None => Err(ApiError::NotFound(format!("no device {id}"))),
    }
}

async fn list_alerts(
    State(state): State<AppState>,
    Query(filter): Query<AlertFilter>,
) -> Result<Response, ApiError> {
    let mut alerts: Vec<Alert> = match &state.alerts {
        Some(readers) => {
            let query = filter.query();
            readers
                .read(move |db| db.alerts_where(&query, MAX_LIST))
                .await?
                .into_iter()
                .map(|stored| stored.alert)
                .collect()
        }
        None => {
            state
                .ask(move |tx| ControlRequest::ListAlerts(filter, tx))
                .await?
        }
    };
    state.mark_evidence(&mut alerts);
    Ok(Json(alerts).into_response())
}

/// `GET /api/alerts/{id}/pcap`: the alert's evidence file (pcapng), as written.
async fn alert_pcap(
    State(state): State<AppState>,
    Path((id, action)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    if action != "pcap" {
        return Err(ApiError::NotFound("no such endpoint".to_owned()));
    }
    let Some(dir) = state.evidence.clone() else {
        return Err(ApiError::NotFound("no evidence is kept".to_owned()));
    };
    let path = crate::evidence::file_of(&dir, id);
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|_| ApiError::NotFound(format!("no evidence for alert {id}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pcapng".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"otsensor-alert-{id}.pcapng\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn alert(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Response, ApiError> {
    let found = match &state.alerts {
        Some(readers) => readers
            .read(move |db| db.alert(id))
            .await?
            .map(|stored| stored.alert),
        None => state.ask(move |tx| ControlRequest::Alert(id, tx)).await?,
    };
    match found {
        Some(mut alert) => {
            state.mark_evidence(std::slice::from_mut(&mut alert));
            Ok(Json(alert).into_response())
        }
        None => Err(ApiError::NotFound(format!("no alert {id}"))),
    }
}

async fn change_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let status = match action.as_str() {
        "acknowledge" => AlertStatus::Acknowledged,
        "learn" => AlertStatus::Learned,
        "mute" => AlertStatus::Muted,
        "reopen" => AlertStatus::New,
        other => {
            return Err(ApiError::NotFound(format!(
                "no alert action {other:?} (acknowledge, learn, mute, reopen)"
            )))
        }
    };
    let alert = state
        .ask(move |tx| ControlRequest::SetAlertStatus(id, status, tx))
        .await??;
    Ok(Json(alert).into_response())
}

async fn baseline(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.snapshot().await?;
    let view = snapshot.baseline.as_ref().ok_or(ApiError::Unavailable)?;
    Ok(Json(view).into_response())
}

async fn change_baseline(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(action): Path<String>,
) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let action = match action.as_str() {
        "end-learning" => BaselineAction::EndLearning,
        "restart-learning" => BaselineAction::RestartLearning,
        other => {
            return Err(ApiError::NotFound(format!(
                "no baseline action {other:?} (end-learning, restart-learning)"
            )))
        }
    };
    let view = state
        .ask(move |tx| ControlRequest::ChangeBaseline(action, tx))
        .await??;
    Ok(Json(view).into_response())
}

async fn flows(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(&state.snapshot().await?.flows).into_response())
}

async fn vulnerabilities(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.snapshot().await?;
    let mut view = snapshot
        .vulnerabilities
        .clone()
        .ok_or(ApiError::Unavailable)?;
    let catalogue = match &snapshot.catalogue {
        Some(catalogue) => Arc::clone(catalogue),
        // The embedded catalogue is built once per process, on first use.
        None => tokio::task::spawn_blocking(advisories::embedded)
            .await
            .map_err(|_| ApiError::Unavailable)?,
    };
    view.describe(&catalogue);
    Ok(Json(view).into_response())
}

/// Re-reads the configuration file: 200 with what changed and what needs a restart,
/// 422 with the reason when the file is refused (the running configuration stays).
async fn reload_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ReloadOutcome>, ApiError> {
    state.authorize(&headers)?;
    let Some(requests) = state.reload.clone() else {
        return Err(ApiError::Conflict(
            "this run has no configuration to reload (only `otsensor run` reloads)".to_owned(),
        ));
    };
    let result = tokio::task::spawn_blocking(move || reload::request_reload(&requests))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(outcome) => Ok(Json(outcome)),
        Err(ReloadError::Unavailable) => Err(ApiError::Unavailable),
        Err(error @ ReloadError::Kernel(_)) => Err(ApiError::Internal(error.to_string())),
        Err(error) => Err(ApiError::Unprocessable(error.to_string())),
    }
}

/// A running server: its address, and how to stop it.
pub struct HttpServer {
    address: SocketAddr,
    /// Removed when the server stops (a generated token's private directory).
    remove_on_stop: Option<PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("address", &self.address)
            .finish()
    }
}

impl HttpServer {
    /// Binds `address` now (so a taken port fails here) and serves on a thread of its
    /// own with a two-thread tokio runtime and at most `limits.blocking_threads`
    /// blocking threads.
    pub fn start(
        address: SocketAddr,
        state: AppState,
        limits: HttpLimits,
    ) -> Result<HttpServer, Error> {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|source| Error::Bind { address, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { address, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { address, source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(limits.blocking_threads.max(1))
            .thread_name("otsensor-http")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let hosts = HostGuard::new(local, &limits.allowed_hosts);
        let metrics = Arc::clone(&state.metrics);
        let app = router(state, hosts, limits.clone());
        let thread = thread::Builder::new()
            .name("otsensor-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    server::serve(listener, app, limits, metrics, async {
                        let _ = shutdown_rx.await;
                    })
                    .await;
                });
            })
            .map_err(Error::Runtime)?;
        Ok(HttpServer {
            address: local,
            remove_on_stop: None,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Removes `dir` (and what it holds) when the server stops.
    pub fn remove_on_stop(&mut self, dir: PathBuf) {
        self.remove_on_stop = Some(dir);
    }

    /// Stops accepting, finishes requests in flight, and joins the server thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(dir) = self.remove_on_stop.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The embedded dashboard.
pub(crate) mod dashboard {
    use axum::http::header;
    use axum::response::IntoResponse;

    const INDEX: &str = include_str!("dashboard/index.html");
    const SCRIPT: &str = include_str!("dashboard/app.js");
    const STYLE: &str = include_str!("dashboard/app.css");

    pub async fn index() -> impl IntoResponse {
        (
            // Everything is served from here; nothing may load from elsewhere (the
            // Content-Security-Policy of every answer is set by `server::guard`).
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            INDEX,
        )
    }

    pub async fn script() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            SCRIPT,
        )
    }

    pub async fn style() -> impl IntoResponse {
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::Analyzer;
    use crate::config::Config;
    use crate::control::SnapshotPublisher;

    fn get(agent: &ureq::Agent, url: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let mut response = agent.get(url).call().expect("GET");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("body");
        (status, body, started.elapsed())
    }

    /// The analyzer never answers a control request here (as when it is busy with
    /// traffic): every read endpoint still answers at once, from the snapshot and the
    /// database, and alert filters run before the limit.
    #[test]
    fn reads_never_wait_for_the_analyzer() {
        let policy = Arc::new(Config::default().validate().expect("policy"));
        let mut db = Store::temporary().expect("store");
        let path = db.path().expect("file").to_path_buf();
        let mut batch = store::Batch::default();
        let mut alert = crate::control::tests_support::sample_alert();
        alert.id = 1;
        alert.count = 1;
        batch.alerts.push(store::AlertRow {
            alert: Arc::new(alert),
            learn: Vec::new(),
        });
        db.write(&batch).expect("write");
        let mut analyzer = Analyzer::with_store(Arc::clone(&policy), None, db);
        let cell = SnapshotCell::new();
        SnapshotPublisher::new(Arc::clone(&cell)).publish(&mut analyzer);

        // Nobody reads this channel.
        let (control, _unanswered) = crossbeam_channel::bounded(1);
        let metrics = Metrics::new().expect("metrics");
        let state = AppState::new(control, cell, metrics, None).with_alert_database(&path);
        let server = HttpServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            state,
            HttpLimits::default(),
        )
        .expect("server");
        let base = format!("http://{}", server.local_addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        for path in [
            "/api/health",
            "/api/devices",
            "/api/baseline",
            "/api/flows",
            "/api/vulnerabilities",
            "/api/alerts",
            "/api/alerts?severity=1&signature=plc_stop&device=10.0.0.10",
            "/api/alerts/1",
        ] {
            let (status, body, took) = get(&agent, &format!("{base}{path}"));
            assert_eq!(status, 200, "{path}: {body}");
            assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        }
        let (_, alerts, _) = get(&agent, &format!("{base}/api/alerts?severity=1"));
        assert!(alerts.contains("plc_stop"), "{alerts}");
        let (_, none, _) = get(&agent, &format!("{base}/api/alerts?severity=1&signature=x"));
        assert_eq!(none, "[]");
        server.stop();
        drop(analyzer);
    }

    /// `GET /api/alerts/{id}/pcap` serves the evidence file as written, the alert
    /// names it, a missing one is 404, and the Host rule applies as to every read.
    #[test]
    fn an_alerts_evidence_is_served_as_written() {
        let policy = Arc::new(Config::default().validate().expect("policy"));
        let mut db = Store::temporary().expect("store");
        let path = db.path().expect("file").to_path_buf();
        let mut batch = store::Batch::default();
        for id in [1, 2] {
            let mut alert = crate::control::tests_support::sample_alert();
            alert.id = id;
            alert.dest_ip = Some(std::net::IpAddr::from([10, 0, 0, 10 + id as u8]));
            batch.alerts.push(store::AlertRow {
                alert: Arc::new(alert),
                learn: Vec::new(),
            });
        }
        db.write(&batch).expect("write");
        let evidence =
            std::env::temp_dir().join(format!("otsensor-http-evidence-{}", std::process::id()));
        std::fs::create_dir_all(&evidence).expect("dir");
        let file: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        std::fs::write(crate::evidence::file_of(&evidence, 1), &file).expect("evidence");
        let mut analyzer = Analyzer::with_store(Arc::clone(&policy), None, db);
        let cell = SnapshotCell::new();
        SnapshotPublisher::new(Arc::clone(&cell)).publish(&mut analyzer);
        let (control, _unanswered) = crossbeam_channel::bounded(1);
        let metrics = Metrics::new().expect("metrics");
        let state = AppState::new(control, cell, metrics, None)
            .with_alert_database(&path)
            .with_evidence_dir(&evidence);
        let server = HttpServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            state,
            HttpLimits::default(),
        )
        .expect("server");
        let base = format!("http://{}", server.local_addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(format!("{base}/api/alerts/1/pcap"))
            .call()
            .expect("GET");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-pcapng")
        );
        let body = response.body_mut().read_to_vec().expect("body");
        assert_eq!(body, file);
        let (status, _, _) = get(&agent, &format!("{base}/api/alerts/2/pcap"));
        assert_eq!(status, 404);
        let (status, _, _) = get(&agent, &format!("{base}/api/alerts/1/other"));
        assert_eq!(status, 404);
        let (_, list, _) = get(&agent, &format!("{base}/api/alerts"));
        let list: Vec<serde_json::Value> = serde_json::from_str(&list).expect("json");
        let with: Vec<u64> = list
            .iter()
            .filter(|a| a["evidence"]["path"].is_string())
            .filter_map(|a| a["id"].as_u64())
            .collect();
        assert_eq!(with, vec![1]);
        let (_, one, _) = get(&agent, &format!("{base}/api/alerts/1"));
        assert!(one.contains("alert-1.pcapng"), "{one}");
        // A foreign Host is refused here as on every endpoint (DNS rebinding).
        let refused = agent
            .get(format!("{base}/api/alerts/1/pcap"))
            .header("Host", "attacker.example")
            .call()
            .expect("GET");
        assert_ne!(refused.status().as_u16(), 200);
        server.stop();
        drop(analyzer);
        let _ = std::fs::remove_dir_all(&evidence);
    }
}
