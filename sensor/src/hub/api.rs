//! The hub's HTTP surface: the sensor's dashboard and `/api` (same paths and JSON
//! shapes as a sensor's, see `docs/API.md`) over the fleet's PostgreSQL, with a sensor
//! and site dimension: list entries carry `sensor_id` and `site`, `?sensor=` and
//! `?site=` filter, `/api/sensors` lists the fleet with its health. Alert ids are the
//! hub's own (`sensor_alert_id` is the sensor's), so the dashboard works unchanged.
//!
//! **Alert actions need `Authorization: Bearer <token>`** (the hub's `api_token_file`)
//! and go to the owning sensor as a signed NATS request; the sensor's state change
//! comes back through the stream like every other change.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_postgres::types::ToSql;

use super::Hub;
use crate::clock::rfc3339_micros;
use crate::control::MAX_LIST;
use crate::detect::AlertStatus;
use crate::fleet::{self, Action, Command, CommandReply, SIGNATURE_HEADER, VERSION};
use crate::http::{dashboard, ApiError};

/// How long an operator action waits for the sensor.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/app.js", get(dashboard::script))
        .route("/assets/app.css", get(dashboard::style))
        .route("/metrics", get(metrics))
        .route("/api/health", get(health))
        .route("/api/sensors", get(sensors))
        .route("/api/devices", get(list_devices))
        .route("/api/devices/{id}", get(device))
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}", get(alert))
        .route("/api/alerts/{id}/{action}", post(change_alert))
        .route("/api/baseline", get(baseline))
        .route("/api/flows", get(flows))
        .fallback(not_found)
        .with_state(hub)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(error.to_string())
}

/// A query connection (one per request: the API is for operators, not a hot path).
async fn client(hub: &Hub) -> Result<tokio_postgres::Client, ApiError> {
    super::db::connect(&hub.postgres)
        .await
        .map_err(|_| ApiError::Unavailable)
}

async fn query(
    hub: &Hub,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    let client = client(hub).await?;
    client.query(sql, params).await.map_err(internal)
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Result<Response, ApiError> {
    if let Ok(rows) = query(&hub, "SELECT count(*) FROM sensors", &[]).await {
        if let Some(row) = rows.first() {
            hub.metrics.sensors.set(row.get::<_, i64>(0));
        }
    }
    let text = hub.metrics.render().map_err(internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `?sensor=` and `?site=`, shared by the lists.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Scope {
    sensor: Option<String>,
    site: Option<String>,
}

async fn health(State(hub): State<Arc<Hub>>) -> Result<Json<Value>, ApiError> {
    let rows = query(
        &hub,
        "SELECT (SELECT count(*) FROM sensors), (SELECT count(*) FROM devices),
                (SELECT count(*) FROM alerts), (SELECT count(*) FROM alerts WHERE status = 'new'),
                (SELECT coalesce(sum((health->>'packets')::bigint), 0)::bigint FROM sensors),
                (SELECT coalesce(sum((health->>'bytes')::bigint), 0)::bigint FROM sensors),
                (SELECT coalesce(bool_or((baseline->>'learning')::boolean), false) FROM sensors)",
        &[],
    )
    .await?;
    let row = rows.first().ok_or(ApiError::Unavailable)?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": hub.started.elapsed().as_secs_f64(),
        "sensors": row.get::<_, i64>(0),
        "packets": row.get::<_, i64>(4),
        "bytes": row.get::<_, i64>(5),
        "analyzer": {
            "devices": row.get::<_, i64>(1),
            "alerts": row.get::<_, i64>(2),
            "alerts_new": row.get::<_, i64>(3),
            "observations": 0,
            "learning": row.get::<_, bool>(6),
            "capture_finished": false,
        },
    })))
}

async fn sensors(
    State(hub): State<Arc<Hub>>,
    Query(scope): Query<Scope>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let rows = query(
        &hub,
        "SELECT s.sensor_id, s.site, s.version, s.health, s.baseline,
                to_char(s.last_heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                extract(epoch FROM now() - s.last_heartbeat)::float8,
                (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.sensor_id),
                (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.sensor_id AND a.status = 'new'),
                (SELECT count(*) FROM device_sightings d WHERE d.sensor_id = s.sensor_id)
         FROM sensors s
         WHERE ($1::text IS NULL OR s.sensor_id = $1) AND ($2::text IS NULL OR s.site = $2)
         ORDER BY s.site, s.sensor_id",
        &[&scope.sensor, &scope.site],
    )
    .await?;
    Ok(Json(
        rows.iter()
            .map(|row| {
                json!({
                    "sensor_id": row.get::<_, String>(0),
                    "site": row.get::<_, String>(1),
                    "version": row.get::<_, Option<String>>(2),
                    "heartbeat": row.get::<_, Option<Value>>(3),
                    "baseline": row.get::<_, Option<Value>>(4),
                    "last_heartbeat": row.get::<_, Option<String>>(5),
                    "heartbeat_age_seconds": row.get::<_, Option<f64>>(6),
                    "alerts": row.get::<_, i64>(7),
                    "alerts_new": row.get::<_, i64>(8),
                    "devices": row.get::<_, i64>(9),
                })
            })
            .collect(),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeviceQuery {
    sensor: Option<String>,
    site: Option<String>,
    q: Option<String>,
    protocol: Option<String>,
    class: Option<String>,
}

/// A fleet device in the sensor's `DeviceSummary` shape, plus site and sensors.
fn device_json(site: &str, data: &Value, sensors: &[String], last_sensor: &str) -> Value {
    let mut out = Map::new();
    let get = |k: &str| data.get(k).cloned().unwrap_or(Value::Null);
    let device_id = data.get("id").and_then(Value::as_str).unwrap_or_default();
    out.insert("id".into(), json!(format!("{site}/{device_id}")));
    out.insert("device_id".into(), json!(device_id));
    for key in [
        "ip",
        "mac",
        "vlan",
        "class",
        "vendor",
        "model",
        "firmware",
        "protocols",
        "packets",
        "bytes",
    ] {
        out.insert(key.into(), get(key));
    }
    let ns = |k: &str| data.get(k).and_then(Value::as_u64).unwrap_or(0);
    out.insert(
        "first_seen".into(),
        json!(rfc3339_micros(ns("first_seen_ns"))),
    );
    out.insert(
        "last_seen".into(),
        json!(rfc3339_micros(ns("last_seen_ns"))),
    );
    out.insert("site".into(), json!(site));
    out.insert("sensor_id".into(), json!(last_sensor));
    out.insert("sensors".into(), json!(sensors));
    Value::Object(out)
}

fn contains_ci(haystack: Option<&str>, needle: &str) -> bool {
    haystack.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

const DEVICES_SQL: &str = "SELECT d.site, d.data,
        array_agg(s.sensor_id ORDER BY s.sensor_id),
        (array_agg(s.sensor_id ORDER BY s.last_seen_ns DESC))[1]
     FROM devices d JOIN device_sightings s USING (site, device_id)
     WHERE ($1::text IS NULL OR d.site = $1)
       AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM device_sightings x
            WHERE x.site = d.site AND x.device_id = d.device_id AND x.sensor_id = $2))
       AND ($3::text IS NULL OR d.device_id = $3)
     GROUP BY d.site, d.device_id, d.data
     ORDER BY d.site, d.device_id
     LIMIT 100000";

async fn list_devices(
    State(hub): State<Arc<Hub>>,
    Query(filter): Query<DeviceQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let none: Option<String> = None;
    let rows = query(&hub, DEVICES_SQL, &[&filter.site, &filter.sensor, &none]).await?;
    let mut out = Vec::new();
    for row in rows {
        let site: String = row.get(0);
        let data: Value = row.get(1);
        let sensors: Vec<String> = row.get(2);
        let last: String = row.get(3);
        let device = device_json(&site, &data, &sensors, &last);
        let text = |k: &str| device.get(k).and_then(Value::as_str);
        if let Some(q) = &filter.q {
            let hit = ["id", "mac", "vendor", "model", "ip"]
                .iter()
                .any(|k| contains_ci(text(k), q));
            if !hit {
                continue;
            }
        }
        if let Some(class) = &filter.class {
            if text("class") != Some(class.as_str()) {
                continue;
            }
        }
        if let Some(protocol) = &filter.protocol {
            let speaks = device
                .get("protocols")
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|p| p.as_str() == Some(protocol.as_str())));
            if !speaks {
                continue;
            }
        }
        out.push(device);
        if out.len() >= MAX_LIST {
            break;
        }
    }
    Ok(Json(out))
}

async fn device(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    // `SITE/DEVICE` (the hub's id), or a bare sensor device id with `?site=`.
    let (site, device_id) = match id.split_once('/') {
        Some((site, device)) => (Some(site.to_owned()), device.to_owned()),
        None => (scope.site.clone(), id.clone()),
    };
    let rows = query(&hub, DEVICES_SQL, &[&site, &scope.sensor, &Some(device_id)]).await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    let site: String = row.get(0);
    let data: Value = row.get(1);
    let mut device = device_json(
        &site,
        &data,
        &row.get::<_, Vec<String>>(2),
        &row.get::<_, String>(3),
    );
    if let Some(map) = device.as_object_mut() {
        map.insert(
            "identity".into(),
            data.get("identity").cloned().unwrap_or(json!({})),
        );
        map.insert(
            "identity_history".into(),
            data.get("identity_history").cloned().unwrap_or(json!([])),
        );
        map.insert("peers".into(), json!([]));
    }
    Ok(Json(device))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AlertQuery {
    sensor: Option<String>,
    site: Option<String>,
    status: Option<AlertStatus>,
    severity: Option<i16>,
    signature: Option<String>,
    device: Option<String>,
}

const ALERTS_SQL: &str = "SELECT id, sensor_id, site, data, status, count, first_ns, last_ns
     FROM alerts
     WHERE ($1::text IS NULL OR sensor_id = $1) AND ($2::text IS NULL OR site = $2)
       AND ($3::text IS NULL OR status = $3) AND ($4::smallint IS NULL OR severity <= $4)
       AND ($5::text IS NULL OR signature = $5)
       AND ($6::text IS NULL OR src_ip = $6 OR dest_ip = $6)
       AND ($7::bigint IS NULL OR id = $7)
     ORDER BY last_ns DESC, id DESC
     LIMIT 10000";

fn alert_json(row: &tokio_postgres::Row) -> Value {
    let mut data: Value = row.get(3);
    if let Some(map) = data.as_object_mut() {
        let sensor_alert_id = map.get("id").cloned().unwrap_or(Value::Null);
        map.insert("sensor_alert_id".into(), sensor_alert_id);
        map.insert("id".into(), json!(row.get::<_, i64>(0)));
        map.insert("sensor_id".into(), json!(row.get::<_, String>(1)));
        map.insert("site".into(), json!(row.get::<_, String>(2)));
        map.insert("status".into(), json!(row.get::<_, String>(4)));
        map.insert("count".into(), json!(row.get::<_, i64>(5)));
        map.insert("first_ns".into(), json!(row.get::<_, i64>(6)));
        map.insert("last_ns".into(), json!(row.get::<_, i64>(7)));
    }
    data
}

async fn alerts_where(
    hub: &Hub,
    filter: &AlertQuery,
    id: Option<i64>,
) -> Result<Vec<Value>, ApiError> {
    let status = filter.status.map(|s| s.as_str().to_owned());
    let rows = query(
        hub,
        ALERTS_SQL,
        &[
            &filter.sensor,
            &filter.site,
            &status,
            &filter.severity,
            &filter.signature,
            &filter.device,
            &id,
        ],
    )
    .await?;
    Ok(rows.iter().map(alert_json).collect())
}

async fn list_alerts(
    State(hub): State<Arc<Hub>>,
    Query(filter): Query<AlertQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(alerts_where(&hub, &filter, None).await?))
}

async fn alert(State(hub): State<Arc<Hub>>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    alerts_where(&hub, &AlertQuery::default(), Some(id))
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))
}

fn authorize(hub: &Hub, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match (&hub.token, presented) {
        (Some(token), Some(presented)) if token.matches(presented.trim()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

fn nonce() -> Result<String, ApiError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(internal)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Sends an operator action to the alert's sensor and returns the sensor's answer.
async fn change_alert(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Json<Value>, ApiError> {
    authorize(&hub, &headers)?;
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
    let rows = query(
        &hub,
        "SELECT sensor_id, alert_id, site FROM alerts WHERE id = $1",
        &[&id],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let sensor_id: String = row.get(0);
    let alert_id: i64 = row.get(1);
    let site: String = row.get(2);
    let key = hub
        .keys
        .get(&sensor_id)
        .ok_or_else(|| ApiError::Conflict(format!("no key for sensor {sensor_id}")))?;
    let command = Command {
        v: VERSION,
        sensor_id: sensor_id.clone(),
        issued_ns: fleet::now_ns(),
        nonce: nonce()?,
        action: Action::SetAlertStatus {
            alert_id: u64::try_from(alert_id).unwrap_or(0),
            status,
        },
    };
    let payload = serde_json::to_vec(&command).map_err(internal)?;
    let mut request_headers = async_nats::HeaderMap::new();
    request_headers.insert(SIGNATURE_HEADER, key.sign(&payload).as_str());
    let subject = fleet::command_subject(&hub.config.nats.subject_prefix, &sensor_id);
    let answer = tokio::time::timeout(
        COMMAND_TIMEOUT,
        hub.nats
            .request_with_headers(subject, request_headers, payload.into()),
    )
    .await;
    let reply = match answer {
        Ok(Ok(reply)) => reply,
        _ => {
            hub.metrics
                .commands
                .with_label_values(&["unreachable"])
                .inc();
            return Err(ApiError::Unavailable);
        }
    };
    let signature = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(SIGNATURE_HEADER))
        .map(|v| v.as_str().to_owned());
    if key.verify(&reply.payload, signature.as_deref()).is_err() {
        hub.metrics.commands.with_label_values(&["bad_reply"]).inc();
        return Err(ApiError::Internal(
            "the sensor's reply is not signed with its key".into(),
        ));
    }
    let answer: CommandReply = serde_json::from_slice(&reply.payload).map_err(internal)?;
    match (answer.ok, answer.alert) {
        (true, Some(alert)) => {
            hub.metrics.commands.with_label_values(&["applied"]).inc();
            let mut value = serde_json::to_value(&*alert).map_err(internal)?;
            if let Some(map) = value.as_object_mut() {
                map.insert("sensor_alert_id".into(), json!(alert.id));
                map.insert("id".into(), json!(id));
                map.insert("sensor_id".into(), json!(sensor_id));
                map.insert("site".into(), json!(site));
            }
            Ok(Json(value))
        }
        _ => {
            hub.metrics.commands.with_label_values(&["refused"]).inc();
            Err(ApiError::Conflict(
                answer
                    .error
                    .unwrap_or_else(|| "refused by the sensor".into()),
            ))
        }
    }
}

async fn baseline(
    State(hub): State<Arc<Hub>>,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    let rows = query(
        &hub,
        "SELECT sensor_id, site, baseline FROM sensors
         WHERE ($1::text IS NULL OR sensor_id = $1) AND ($2::text IS NULL OR site = $2)
         ORDER BY sensor_id",
        &[&scope.sensor, &scope.site],
    )
    .await?;
    let mut learning = false;
    let mut progress: f64 = 1.0;
    let mut entries = 0u64;
    let mut per_sensor = Vec::new();
    for row in &rows {
        let view: Option<Value> = row.get(2);
        if let Some(view) = &view {
            learning |= view
                .get("learning")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            progress = progress.min(view.get("progress").and_then(Value::as_f64).unwrap_or(1.0));
            entries += view.get("entries").and_then(Value::as_u64).unwrap_or(0);
        }
        per_sensor.push(json!({
            "sensor_id": row.get::<_, String>(0),
            "site": row.get::<_, String>(1),
            "baseline": view,
        }));
    }
    Ok(Json(json!({
        "learning": learning,
        "progress": progress,
        "started": null,
        "ends": null,
        "entries": entries,
        "sensors": per_sensor,
    })))
}

/// Flows stay on the sensors; the hub answers the dashboard with an empty summary.
async fn flows() -> Json<Value> {
    Json(json!({
        "flows_ended": 0, "packets": 0, "bytes": 0,
        "by_protocol": {}, "bytes_by_protocol": {}, "conversations": [],
    }))
}
