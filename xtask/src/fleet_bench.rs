//! `cargo xtask fleet-bench`: how fast the hub moves fleet messages into PostgreSQL,
//! and how long an alert takes from being emitted to its committed row.
//!
//! On a loopback 3-node JetStream cluster (stream R3) and PostgreSQL (fsync off:
//! this measures the hub, not the disk):
//! 1. baseline: `--messages` signed alert messages are published to the stream with
//!    the hub stopped (JetStream's acknowledged publish rate, same run);
//! 2. ingest: the hub starts and drains them; rate = messages / (last - first applied),
//!    read from the hub's `otsensor_hub_messages_total`;
//! 3. latency: `--alerts` alerts are published at `--rate` per second with the hub
//!    running, each stamped with the wall clock when emitted; p50/p99 of
//!    `alert_events.stored - emitted` (PostgreSQL's commit-time clock, same machine).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use otsensor::detect::{Alert, AlertStatus, Engine, Severity};
use otsensor::fleet::{Body, Envelope, SensorKey, SIGNATURE_HEADER, VERSION};

use crate::fleet_lab::{self, NatsCluster, Postgres, SensorSpec};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub messages: u64,
    pub alerts: u64,
    pub rate: u64,
}

fn alert(id: u64) -> Alert {
    Alert {
        id,
        signature: "plc_stop".into(),
        signature_id: 1008,
        category: "Operational".into(),
        severity: Severity::HIGH,
        engine: Engine::Operational,
        mitre: "T0881".into(),
        src_ip: Some("10.10.0.5".parse().expect("ip")),
        src_port: Some(50000),
        dest_ip: Some("10.10.0.20".parse().expect("ip")),
        dest_port: Some(502),
        src_mac: None,
        proto: Some(6),
        flow_id: Some(id),
        app_proto: None,
        message: "PLC STOP".into(),
        context: Default::default(),
        first_ns: 1_700_000_000_000_000_000,
        last_ns: 1_700_000_000_000_000_000,
        count: 1,
        status: AlertStatus::New,
        evidence: None,
    }
}

/// Publishes alert messages of `sensor` with ids `ids`, pipelined 256 at a time.
async fn publish(
    js: &async_nats::jetstream::Context,
    sensor: &SensorSpec,
    key: &SensorKey,
    ids: std::ops::Range<u64>,
    pace: Option<Duration>,
) -> Result<()> {
    let mut pending = Vec::new();
    let mut next = Instant::now();
    for id in ids {
        if let Some(pace) = pace {
            next += pace;
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
        }
        let envelope = Envelope {
            v: VERSION,
            sensor_id: sensor.id.clone(),
            site: sensor.site.clone(),
            seq: id,
            emitted_ns: otsensor::fleet::now_ns(),
            body: Body::Alert(Box::new(alert(id))),
        };
        let payload = serde_json::to_vec(&envelope)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            envelope.msg_id().as_str(),
        );
        headers.insert(SIGNATURE_HEADER, key.sign(&payload).as_str());
        let ack = js
            .publish_with_headers(envelope.subject("otsensor"), headers, payload.into())
            .await?;
        pending.push(ack);
        if pending.len() >= 256 || pace.is_some() {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

fn hub_applied(port: u16) -> f64 {
    fleet_lab::http("GET", port, "/metrics", None)
        .ok()
        .map(|(_, body)| fleet_lab::metric_sum(&body, "otsensor_hub_messages_total", ""))
        .unwrap_or(0.0)
}

pub fn run(options: &BenchOptions) -> Result<()> {
    std::fs::create_dir_all(&options.dir)?;
    let sensors = vec![
        SensorSpec {
            id: "bench1".into(),
            site: "bench".into(),
            scenario: String::new(),
        },
        SensorSpec {
            id: "latency".into(),
            site: "bench".into(),
            scenario: String::new(),
        },
    ];
    let postgres = Postgres::start(&options.dir)?.context("PostgreSQL is not installed")?;
    let cluster = NatsCluster::start(&options.dir, 3, &fleet_lab::lab_users(&sensors))?
        .context("nats-server is not installed")?;
    let hub_config = fleet_lab::write_hub_config(&options.dir, &sensors, 3, 30_000)?;
    let port = fleet_lab::free_port()?;
    let urls = cluster.urls();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The JetStream context spawns its acker on the current runtime.
    let _entered = runtime.enter();
    let client = runtime.block_on(
        async_nats::ConnectOptions::new()
            .user_and_password("hub".into(), fleet_lab::nats_password("hub"))
            .connect(urls.clone()),
    )?;
    let js = async_nats::jetstream::new(client);

    // The hub creates the stream and its durable consumer, then stops.
    let mut hub = fleet_lab::start_hub(&options.binary, &hub_config, &urls, &postgres.url(), port)?;
    fleet_lab::wait_until("the stream", Duration::from_secs(60), || {
        runtime
            .block_on(
                js.get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                    "otsensor-hub",
                    "OTSENSOR",
                ),
            )
            .ok()
    })?;
    hub.terminate(Duration::from_secs(10));

    let key = SensorKey::new(fleet_lab::sensor_secret("bench1").as_bytes());
    let started = Instant::now();
    runtime.block_on(publish(
        &js,
        &sensors[0],
        &key,
        1..options.messages + 1,
        None,
    ))?;
    let publish_s = started.elapsed().as_secs_f64();
    let publish_rate = options.messages as f64 / publish_s;

    let _hub = fleet_lab::start_hub(&options.binary, &hub_config, &urls, &postgres.url(), port)?;
    let first = fleet_lab::wait_until(
        "the first applied message",
        Duration::from_secs(120),
        || (hub_applied(port) > 0.0).then(Instant::now),
    )?;
    let done = fleet_lab::wait_until("the backlog applied", Duration::from_secs(600), || {
        (hub_applied(port) >= options.messages as f64).then(Instant::now)
    })?;
    let ingest_s = done.duration_since(first).as_secs_f64().max(1e-3);
    let ingest_rate = options.messages as f64 / ingest_s;

    let key = SensorKey::new(fleet_lab::sensor_secret("latency").as_bytes());
    let pace = Duration::from_secs_f64(1.0 / options.rate.max(1) as f64);
    runtime.block_on(publish(
        &js,
        &sensors[1],
        &key,
        1..options.alerts + 1,
        Some(pace),
    ))?;
    let url = postgres.url();
    let (p50, p99, n) = runtime.block_on(async {
        let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = db
                .query_one(
                    "SELECT count(*),
                        coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY
                            extract(epoch FROM stored) * 1e9 - emitted_ns), 0)::float8,
                        coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY
                            extract(epoch FROM stored) * 1e9 - emitted_ns), 0)::float8
                     FROM alert_events WHERE sensor_id = 'latency'",
                    &[],
                )
                .await?;
            let n: i64 = row.get(0);
            if n as u64 >= options.alerts || Instant::now() > deadline {
                return anyhow::Ok((row.get::<_, f64>(1), row.get::<_, f64>(2), n));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    println!("fleet-bench (3-node JetStream R3, PostgreSQL 15 fsync=off, loopback)");
    println!(
        "  baseline: JetStream publish, acknowledged  {publish_rate:>10.0} msg/s ({} in {publish_s:.2} s)",
        options.messages
    );
    println!(
        "  hub ingest into PostgreSQL                 {ingest_rate:>10.0} msg/s ({} in {ingest_s:.2} s), {:.2}x the publish rate",
        options.messages,
        ingest_rate / publish_rate
    );
    println!(
        "  alert emitted -> row committed ({n} alerts at {}/s): p50 {:.2} ms, p99 {:.2} ms",
        options.rate,
        p50 / 1e6,
        p99 / 1e6
    );
    drop(cluster);
    Ok(())
}
