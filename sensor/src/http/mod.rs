//! The HTTP surface (axum on its own tokio runtime, never on a worker): `/metrics`,
//! the JSON API under `/api` (documented in `docs/API.md`), and the dashboard (assets
//! embedded in the binary; nothing is loaded from elsewhere).
//!
//! **The server owns no sensor state.** Reads and changes go to the state's owner as
//! [`ControlRequest`]s; the answer comes back on a one-slot channel. Waiting happens on
//! tokio's blocking pool so the async threads stay free.
//!
//! **Every state-changing endpoint needs `Authorization: Bearer <http.api_token>`**;
//! without a configured token they are refused (401) as well. The comparison is
//! constant-time ([`ApiToken::matches`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::Sender;
use serde::Serialize;

use crate::config::ApiToken;
use crate::control::{
    reply_channel, AlertFilter, BaselineAction, ControlError, ControlRequest, DeviceFilter,
    HealthView,
};
use crate::detect::AlertStatus;
use crate::metrics::Metrics;
use crate::reload::{self, ReloadError, ReloadOutcome, ReloadRequest};

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
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", what),
            ApiError::BadRequest(what) => (StatusCode::BAD_REQUEST, "bad_request", what),
            ApiError::Conflict(what) => (StatusCode::CONFLICT, "conflict", what),
            ApiError::Unprocessable(what) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", what)
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the analyzer did not answer in time".to_owned(),
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

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    control: Sender<ControlRequest>,
    metrics: Arc<Metrics>,
    token: Option<ApiToken>,
    started: Instant,
    /// Where `POST /api/config/reload` goes; none when there is nothing to reload.
    reload: Option<Sender<ReloadRequest>>,
}

impl AppState {
    pub fn new(
        control: Sender<ControlRequest>,
        metrics: Arc<Metrics>,
        token: Option<ApiToken>,
    ) -> AppState {
        AppState {
            control,
            metrics,
            token,
            started: Instant::now(),
            reload: None,
        }
    }

    /// Enables `POST /api/config/reload` (the reload thread's request channel).
    pub fn with_reload(mut self, requests: Sender<ReloadRequest>) -> AppState {
        self.reload = Some(requests);
        self
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

/// The routes.
pub fn router(state: AppState) -> Router {
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
        .route("/api/alerts/{id}/{action}", post(change_alert))
        .route("/api/baseline", get(baseline))
        .route("/api/baseline/{action}", post(change_baseline))
        .route("/api/flows", get(flows))
        .route("/api/vulnerabilities", get(vulnerabilities))
        .route("/api/config/reload", post(reload_config))
        .fallback(not_found)
        .with_state(state)
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
    let analyzer = state.ask(ControlRequest::Health).await?;
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
    Ok(Json(
        state
            .ask(move |tx| ControlRequest::ListDevices(filter, tx))
            .await?,
    )
    .into_response())
}

async fn device(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let wanted = id.clone();
    match state
        .ask(move |tx| ControlRequest::Device(wanted, tx))
        .await?
    {
        Some(device) => Ok(Json(device).into_response()),
        None => Err(ApiError::NotFound(format!("no device {id}"))),
    }
}

async fn list_alerts(
    State(state): State<AppState>,
    Query(filter): Query<AlertFilter>,
) -> Result<Response, ApiError> {
    Ok(Json(
        state
            .ask(move |tx| ControlRequest::ListAlerts(filter, tx))
            .await?,
    )
    .into_response())
}

async fn alert(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Response, ApiError> {
    match state.ask(move |tx| ControlRequest::Alert(id, tx)).await? {
        Some(alert) => Ok(Json(alert).into_response()),
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
    Ok(Json(state.ask(ControlRequest::Baseline).await?).into_response())
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
    Ok(Json(state.ask(ControlRequest::Flows).await?).into_response())
}

async fn vulnerabilities(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.ask(ControlRequest::Vulnerabilities).await?).into_response())
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
    /// own with a two-thread tokio runtime.
    pub fn start(address: SocketAddr, state: AppState) -> Result<HttpServer, Error> {
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
            .thread_name("otsensor-http")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state);
        let thread = thread::Builder::new()
            .name("otsensor-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                });
            })
            .map_err(Error::Runtime)?;
        Ok(HttpServer {
            address: local,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
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
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The embedded dashboard.
mod dashboard {
    use axum::http::header;
    use axum::response::IntoResponse;

    const INDEX: &str = include_str!("dashboard/index.html");
    const SCRIPT: &str = include_str!("dashboard/app.js");
    const STYLE: &str = include_str!("dashboard/app.css");

    pub async fn index() -> impl IntoResponse {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // Everything is served from here; nothing may load from elsewhere.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'",
                ),
            ],
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
