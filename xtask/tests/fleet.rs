//! The fleet end to end on loopback, with the Debian `nats-server` and PostgreSQL
//! started by the test (`xtask::fleet_lab`): three sensors replay three generated
//! plants into a 3-node JetStream cluster while one node is killed and restarted, the
//! hub is SIGKILLed and restarted, and the whole bus is stopped and restarted; the
//! hub's PostgreSQL must end with exactly each sensor's ground-truth alerts and its own
//! inventory, nothing twice. Then operator actions travel hub → sensor → hub, and
//! forged or malformed messages are refused and counted. A second test keeps a sensor
//! away from any bus so that its outbox hits its bound.
//!
//! The bus stays down for 30 s, starting while the replays still raise alerts: the
//! sensors' outboxes fill with heartbeats every 100 ms, devices and alerts, and drain
//! when the cluster is back. The bound of the outbox under a longer outage (and the
//! `output_loss` alert it raises) is the second test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xtask::fleet_lab::{
    self, free_port, http, lab_users, metric, metric_sum, start_hub, start_sensor, wait_until,
    write_hub_config, write_sensor_config, NatsCluster, Postgres, SensorProc, SensorSpec,
    API_TOKEN,
};
use xtask::gen::scenario::{self, ExpectedAlert, ScenarioTruth};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("otsensor-fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn otsensor_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = dir.join("otsensor");
    assert!(
        binary.exists(),
        "{} missing: build the workspace first",
        binary.display()
    );
    binary
}

/// A PostgreSQL client for the checks.
struct Db {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    fn connect(url: &str) -> Db {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test's PostgreSQL");
            tokio::spawn(connection);
            client
        });
        Db { runtime, client }
    }

    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.runtime
            .block_on(self.client.query(sql, params))
            .unwrap_or_default()
    }

    /// (signature, src, dst) of a sensor's alerts, with the row count.
    fn alerts(&self, sensor: &str) -> (BTreeSet<ExpectedAlert>, usize) {
        let rows = self.rows(
            "SELECT signature, src_ip, dest_ip FROM alerts WHERE sensor_id = $1",
            &[&sensor],
        );
        let set = rows
            .iter()
            .map(|r| ExpectedAlert {
                signature: r.get(0),
                src: r.get::<_, Option<String>>(1).and_then(|s| s.parse().ok()),
                dst: r.get::<_, Option<String>>(2).and_then(|s| s.parse().ok()),
                src_mac: None,
            })
            .collect();
        (set, rows.len())
    }

    fn devices(&self, sensor: &str) -> BTreeSet<String> {
        self.rows(
            "SELECT device_id FROM device_sightings WHERE sensor_id = $1",
            &[&sensor],
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    }
}

fn sensor_devices(sensor: &SensorProc) -> Option<BTreeSet<String>> {
    let (status, body) = http("GET", sensor.http_port, "/api/devices", None).ok()?;
    if status != 200 {
        return None;
    }
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
    Some(
        list.iter()
            .filter_map(|d| d.get("id").and_then(|v| v.as_str()).map(str::to_owned))
            .collect(),
    )
}

fn sensor_metrics(sensor: &SensorProc) -> String {
    http("GET", sensor.http_port, "/metrics", None)
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn capture_finished(sensor: &SensorProc) -> bool {
    http("GET", sensor.http_port, "/api/health", None)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|h| {
            h.pointer("/analyzer/capture_finished")
                .and_then(|v| v.as_bool())
        })
        .unwrap_or(false)
}

fn expected(truth: &ScenarioTruth) -> BTreeSet<ExpectedAlert> {
    truth.alerts.iter().cloned().collect()
}

/// Sleeps, sampling every sensor's outbox depth; returns the deepest seen.
fn sample_spools(sensors: &[SensorProc], duration: Duration) -> f64 {
    let end = Instant::now() + duration;
    let mut deepest: f64 = 0.0;
    while Instant::now() < end {
        for sensor in sensors {
            let text = sensor_metrics(sensor);
            deepest = deepest.max(metric(&text, "otsensor_fleet_spool_messages").unwrap_or(0.0));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    deepest
}

#[test]
fn the_hub_converges_to_every_sensors_truth_through_node_hub_and_bus_failures() {
    let dir = TempDir::new("converge");
    let binary = otsensor_binary();
    let sensors = fleet_lab::default_sensors();
    let Some(postgres) = Postgres::start(&dir.0).expect("PostgreSQL") else {
        return;
    };
    let Some(mut cluster) = NatsCluster::start(&dir.0, 3, &lab_users(&sensors)).expect("NATS")
    else {
        return;
    };
    let urls = cluster.urls();
    let hub_config = write_hub_config(&dir.0, &sensors, 3, 2_000).expect("hub config");
    let hub_port = free_port().expect("port");
    let mut hub = start_hub(&binary, &hub_config, &urls, &postgres.url(), hub_port).expect("hub");

    let mut truths = BTreeMap::new();
    let mut running = Vec::new();
    for spec in &sensors {
        let capture = dir.0.join(format!("{}.pcap", spec.scenario));
        let truth = scenario::generate(&spec.scenario, &capture).expect("scenario");
        let config = write_sensor_config(
            &dir.0,
            spec,
            &urls,
            truth.learning_duration_s,
            16 * 1024 * 1024,
            "100ms",
        )
        .expect("sensor config");
        let db = dir.0.join(format!("{}.db", spec.id));
        // 200 s of capture at 10x: the failures below happen while alerts are raised.
        running.push(start_sensor(&binary, spec, &config, &capture, &db, 10.0).expect("sensor"));
        truths.insert(spec.id.clone(), truth);
    }

    // One node dies (SIGKILL) and comes back: the R3 stream keeps a quorum.
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill_node(2);
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_node(2).expect("restart node");
    // The hub dies mid-stream and restarts on its durable consumer.
    std::thread::sleep(Duration::from_secs(1));
    hub.kill();
    std::thread::sleep(Duration::from_secs(2));
    let hub = start_hub(&binary, &hub_config, &urls, &postgres.url(), hub_port).expect("hub again");
    // The whole bus stops: sensors keep working and spool.
    std::thread::sleep(Duration::from_secs(1));
    cluster.stop_all();
    let deepest = sample_spools(&running, Duration::from_secs(30));
    cluster.start_all().expect("restart the cluster");
    assert!(deepest > 0.0, "no sensor spooled while the bus was down");

    for sensor in &running {
        wait_until(
            &format!("{} replay to finish", sensor.spec.id),
            Duration::from_secs(120),
            || capture_finished(sensor).then_some(()),
        )
        .expect("replays finish");
    }
    let db = Db::connect(&postgres.url());
    let converged = wait_until(
        "the hub's PostgreSQL to converge",
        Duration::from_secs(120),
        || {
            for sensor in &running {
                let truth = &truths[&sensor.spec.id];
                let (alerts, rows) = db.alerts(&sensor.spec.id);
                if alerts != expected(truth) || rows != alerts.len() {
                    return None;
                }
                let theirs = sensor_devices(sensor)?;
                if db.devices(&sensor.spec.id) != theirs || theirs.is_empty() {
                    return None;
                }
                let spool = metric(&sensor_metrics(sensor), "otsensor_fleet_spool_messages");
                if spool != Some(0.0) {
                    return None;
                }
            }
            Some(())
        },
    );
    if converged.is_err() {
        for sensor in &running {
            let truth = &truths[&sensor.spec.id];
            eprintln!(
                "{}: hub alerts {:?}\n truth {:?}\n hub devices {:?}\n sensor devices {:?}\n{}",
                sensor.spec.id,
                db.alerts(&sensor.spec.id),
                expected(truth),
                db.devices(&sensor.spec.id),
                sensor_devices(sensor),
                sensor.proc.log_tail()
            );
        }
        eprintln!("hub:\n{}", hub.log_tail());
        panic!("the hub did not converge to the sensors' truth");
    }
    // Nothing applied twice: one event per (sensor, seq), and as many alert rows as
    // distinct alerts (checked above); the two plant-a sensors share their devices.
    let twice = db.rows(
        "SELECT count(*) - count(DISTINCT (sensor_id, seq)) FROM alert_events",
        &[],
    );
    assert_eq!(twice[0].get::<_, i64>(0), 0);
    let shared = db.rows(
        "SELECT count(*) FROM devices d WHERE site = 'plant-a' AND
         (SELECT count(*) FROM device_sightings s WHERE s.site = d.site AND s.device_id = d.device_id) = 2",
        &[],
    );
    assert!(
        shared[0].get::<_, i64>(0) > 0,
        "s1 and s2 watch the same plant"
    );

    // The latency the sensors saw, end to end (analyzer → outbox → JetStream → hub →
    // commit), outages included.
    let latency = db.rows(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored) * 1e9 - emitted_ns)::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored) * 1e9 - emitted_ns)::float8,
                count(*) FROM alert_events",
        &[],
    );
    eprintln!(
        "alert -> PostgreSQL over the failures: p50 {:.1} ms, p99 {:.1} ms ({} events)",
        latency[0].get::<_, f64>(0) / 1e6,
        latency[0].get::<_, f64>(1) / 1e6,
        latency[0].get::<_, i64>(2)
    );

    // /api/sensors lists the fleet with its health; lists carry the sensor dimension.
    let (status, body) = http("GET", hub_port, "/api/sensors", None).expect("sensors");
    assert_eq!(status, 200);
    let fleet: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(fleet.len(), 3, "{body}");
    assert!(fleet
        .iter()
        .all(|s| s.get("heartbeat").is_some_and(|h| !h.is_null())));
    let (_, body) = http("GET", hub_port, "/api/alerts?sensor=s3", None).expect("alerts");
    let s3: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(s3.len(), expected(&truths["s3"]).len());
    assert!(s3
        .iter()
        .all(|a| a["sensor_id"] == "s3" && a["site"] == "plant-b"));
    let (_, body) = http("GET", hub_port, "/api/devices?site=plant-b", None).expect("devices");
    let b: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(b.len(), db.devices("s3").len());

    // An acknowledge on the hub reaches s1 (its own API shows it) and comes back.
    let (_, body) = http("GET", hub_port, "/api/alerts?sensor=s1", None).expect("alerts");
    let s1: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let target = &s1[0];
    let hub_id = target["id"].as_i64().expect("id");
    let sensor_id = target["sensor_alert_id"].as_u64().expect("sensor id");
    let path = format!("/api/alerts/{hub_id}/acknowledge");
    let (status, _) = http("POST", hub_port, &path, None).expect("post");
    assert_eq!(status, 401, "an action without the token is refused");
    let (status, _) = http("POST", hub_port, &path, Some("wrong-token-0123456789")).expect("post");
    assert_eq!(status, 401);
    let (status, body) = http("POST", hub_port, &path, Some(API_TOKEN)).expect("post");
    assert_eq!(status, 200, "{body}");
    let (_, body) = http(
        "GET",
        running[0].http_port,
        &format!("/api/alerts/{sensor_id}"),
        None,
    )
    .expect("sensor alert");
    let on_sensor: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(on_sensor["status"], "acknowledged");
    wait_until(
        "the acknowledgement back in PostgreSQL",
        Duration::from_secs(30),
        || {
            let rows = db.rows("SELECT status FROM alerts WHERE id = $1", &[&hub_id]);
            (rows.first()?.get::<_, String>(0) == "acknowledged").then_some(())
        },
    )
    .expect("state change comes back");

    // Forged and malformed messages on the bus are refused and counted, never applied.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .user_and_password("hub".into(), fleet_lab::nats_password("hub"))
            .connect(urls.clone())
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(client.clone());
        let mut forged: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&target).expect("json")).expect("json");
        forged["id"] = serde_json::json!(987_654);
        let envelope = serde_json::json!({
            "v": 1, "sensor_id": "s1", "site": "plant-a", "seq": u64::MAX / 2,
            "emitted_ns": 1, "kind": "alert", "data": forged,
        });
        let payload = serde_json::to_vec(&envelope).expect("json");
        let wrong = otsensor::fleet::SensorKey::new(b"not-the-key-of-s1-0123456789abcdef");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Otsensor-Signature", wrong.sign(&payload).as_str());
        js.publish_with_headers(
            "otsensor.fleet.plant-a.s1.alert",
            headers,
            payload.clone().into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        // Signed with s1's real key, but not a message.
        let right = otsensor::fleet::SensorKey::new(fleet_lab::sensor_secret("s1").as_bytes());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Otsensor-Signature", right.sign(b"{not json").as_str());
        js.publish_with_headers(
            "otsensor.fleet.plant-a.s1.alert",
            headers,
            "{not json".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        // A command not signed with s1's key is refused by the sensor.
        let command = serde_json::json!({
            "v": 1, "sensor_id": "s1", "issued_ns": otsensor::fleet::now_ns(),
            "nonce": "00112233445566778899aabbccddeeff", "action": "set_alert_status",
            "alert_id": sensor_id, "status": "muted",
        });
        let payload = serde_json::to_vec(&command).expect("json");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Otsensor-Signature", wrong.sign(&payload).as_str());
        let reply = client
            .request_with_headers("otsensor.cmd.s1", headers, payload.into())
            .await
            .expect("reply");
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json");
        assert_eq!(reply["ok"], false, "{reply}");
    });
    wait_until(
        "the forged messages counted",
        Duration::from_secs(30),
        || {
            let (_, text) = http("GET", hub_port, "/metrics", None).ok()?;
            let bad = metric_sum(&text, "otsensor_hub_rejected_total", "bad_signature");
            let malformed = metric_sum(&text, "otsensor_hub_rejected_total", "malformed");
            (bad >= 1.0 && malformed >= 1.0).then_some(())
        },
    )
    .expect("rejections counted");
    let forged = db.rows("SELECT count(*) FROM alerts WHERE alert_id = 987654", &[]);
    assert_eq!(forged[0].get::<_, i64>(0), 0, "a forged alert was applied");
    let text = sensor_metrics(&running[0]);
    assert!(metric_sum(&text, "otsensor_fleet_commands_total", "bad_signature") >= 1.0);
    assert!(metric_sum(&text, "otsensor_fleet_commands_total", "applied") >= 1.0);
    let (_, body) = http(
        "GET",
        running[0].http_port,
        &format!("/api/alerts/{sensor_id}"),
        None,
    )
    .expect("sensor alert");
    assert!(
        body.contains("\"acknowledged\""),
        "the forged mute changed the alert: {body}"
    );
    drop(hub);
    drop(running);
}

#[test]
fn the_outbox_keeps_its_bound_dropping_heartbeats_first_and_drains_in_order() {
    let dir = TempDir::new("spool");
    let binary = otsensor_binary();
    let spec = SensorSpec {
        id: "s9".into(),
        site: "plant-z".into(),
        scenario: "combined".into(),
    };
    let capture = dir.0.join("combined.pcap");
    let truth = scenario::generate("combined", &capture).expect("scenario");
    // The bus is not there yet: nothing listens on these ports.
    let Some(probe) = fleet_lab::find_program("nats-server", &[]).expect("nats") else {
        return;
    };
    drop(probe);
    let sensors = vec![spec.clone()];
    let bound: u64 = 128 * 1024;
    let placeholder = vec![format!("nats://127.0.0.1:{}", free_port().expect("port"))];
    let config = write_sensor_config(
        &dir.0,
        &spec,
        &placeholder,
        truth.learning_duration_s,
        bound,
        "100ms",
    )
    .expect("config");
    let db_path = dir.0.join("s9.db");
    // 200 s of capture at 20x: alerts and devices queue behind ~100 heartbeats.
    let sensor = start_sensor(&binary, &spec, &config, &capture, &db_path, 20.0).expect("sensor");
    let mut max_bytes: f64 = 0.0;
    let mut finished = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = sensor_metrics(&sensor);
        max_bytes = max_bytes.max(metric(&text, "otsensor_fleet_spool_bytes").unwrap_or(0.0));
        let dropped = metric_sum(&text, "otsensor_fleet_spool_dropped_total", "heartbeat");
        if finished && dropped > 0.0 {
            break;
        }
        finished = finished || capture_finished(&sensor);
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = sensor_metrics(&sensor);
    assert!(
        max_bytes > 0.0 && max_bytes <= bound as f64,
        "outbox {max_bytes} bytes, bound {bound}"
    );
    assert!(
        metric_sum(&text, "otsensor_fleet_spool_dropped_total", "heartbeat") > 0.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "otsensor_fleet_spool_dropped_total",
            "class=\"alert\""
        ),
        0.0
    );
    // The loss is alerted on the sensor itself, with the totals the metrics count.
    let loss = wait_until(
        "an output_loss alert on the sensor",
        Duration::from_secs(20),
        || {
            let (_, body) = http("GET", sensor.http_port, "/api/alerts", None).ok()?;
            let list: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
            list.into_iter()
                .find(|alert| alert["signature"] == "output_loss")
        },
    )
    .expect("output_loss alert");
    assert_eq!(loss["context"]["output"], "nats", "{loss}");
    assert_eq!(
        loss["context"]["bound_bytes"].as_u64(),
        Some(bound),
        "{loss}"
    );
    assert!(
        loss["context"]["dropped_heartbeats"].as_u64().unwrap_or(0) > 0,
        "{loss}"
    );
    drop(sensor);

    // The bus comes (on other ports: the sensor is restarted with them, continuing its
    // outbox and database): everything spooled drains, and the hub holds the truth.
    let Some(postgres) = Postgres::start(&dir.0).expect("PostgreSQL") else {
        return;
    };
    let Some(cluster) = NatsCluster::start(&dir.0, 1, &lab_users(&sensors)).expect("NATS") else {
        return;
    };
    let hub_config = write_hub_config(&dir.0, &sensors, 1, 2_000).expect("hub config");
    let hub_port = free_port().expect("port");
    let hub = start_hub(
        &binary,
        &hub_config,
        &cluster.urls(),
        &postgres.url(),
        hub_port,
    )
    .expect("hub");
    let config = write_sensor_config(
        &dir.0,
        &spec,
        &cluster.urls(),
        truth.learning_duration_s,
        bound,
        "100ms",
    )
    .expect("config");
    // An empty capture file: the restarted sensor only drains its outbox.
    let empty = dir.0.join("empty.pcap");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&65535u32.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&empty, bytes).expect("empty pcap");
    let sensor = start_sensor(&binary, &spec, &config, &empty, &db_path, 1.0).expect("sensor");
    let db = Db::connect(&postgres.url());
    // The truth, and the sensor's own alert about the loss: it waited in the outbox
    // (heartbeats are shed before it) and reaches the hub like any alert.
    let mut wanted = expected(&truth);
    wanted.insert(ExpectedAlert {
        signature: "output_loss".into(),
        src: None,
        dst: None,
        src_mac: None,
    });
    let result = wait_until(
        "the outbox drained into the hub",
        Duration::from_secs(60),
        || {
            let (alerts, rows) = db.alerts("s9");
            (alerts == wanted && rows == alerts.len()).then_some(())
        },
    );
    if result.is_err() {
        eprintln!(
            "hub alerts {:?}\nwanted {:?}\n{}\n{}",
            db.alerts("s9"),
            wanted,
            sensor.proc.log_tail(),
            hub.log_tail()
        );
        panic!("the outbox did not drain");
    }
    // In order: the alert events' sequence numbers rise with their alert ids' first
    // appearance (the outbox never reorders).
    let rows = db.rows(
        "SELECT alert_id FROM alert_events WHERE sensor_id = 's9' ORDER BY seq",
        &[],
    );
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut first_seen = Vec::new();
    for id in ids {
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    let mut sorted = first_seen.clone();
    sorted.sort_unstable();
    assert_eq!(first_seen, sorted, "alerts were applied out of order");
    drop(sensor);
    drop(hub);
}
