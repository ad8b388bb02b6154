//! The hub's PostgreSQL: migrations, applying batches of fleet messages, and the
//! queries behind the API.
//!
//! **Applying is idempotent and order-tolerant.** Every row remembers the `seq` of the
//! message that last wrote it and a message only changes a row it is newer than, so a
//! redelivery (the hub crashed between commit and acknowledgement), a re-send (the
//! sensor's outbox after an outage) or a message overtaken by a later one changes
//! nothing. Alert state changes are also kept as `alert_events`, keyed by
//! `(sensor_id, seq)`: the alert history, and the proof that nothing was applied twice.

use tokio_postgres::{Client, NoTls, Statement};

use crate::fleet::{Body, Envelope};

/// Schema versions, applied in order inside one transaction each.
const MIGRATIONS: &[&str] = &[
    // 1: the fleet.
    "CREATE TABLE sites (
        site text PRIMARY KEY,
        first_seen timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE sensors (
        sensor_id text PRIMARY KEY,
        site text NOT NULL REFERENCES sites(site),
        first_seen timestamptz NOT NULL DEFAULT now(),
        last_message timestamptz NOT NULL DEFAULT now(),
        last_heartbeat timestamptz,
        version text,
        health jsonb,
        heartbeat_seq bigint NOT NULL DEFAULT 0,
        baseline jsonb,
        baseline_seq bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE devices (
        site text NOT NULL REFERENCES sites(site),
        device_id text NOT NULL,
        data jsonb NOT NULL,
        first_seen_ns bigint NOT NULL,
        last_seen_ns bigint NOT NULL,
        updated timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (site, device_id)
    );
    CREATE TABLE device_sightings (
        site text NOT NULL,
        device_id text NOT NULL,
        sensor_id text NOT NULL REFERENCES sensors(sensor_id),
        data jsonb NOT NULL,
        first_seen_ns bigint NOT NULL,
        last_seen_ns bigint NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (site, device_id, sensor_id),
        FOREIGN KEY (site, device_id) REFERENCES devices(site, device_id)
    );
    CREATE INDEX device_sightings_sensor ON device_sightings(sensor_id);
    CREATE TABLE alerts (
        id bigserial UNIQUE,
        sensor_id text NOT NULL REFERENCES sensors(sensor_id),
        alert_id bigint NOT NULL,
        site text NOT NULL,
        signature text NOT NULL,
        severity smallint NOT NULL,
        status text NOT NULL,
        count bigint NOT NULL,
        src_ip text,
        dest_ip text,
        first_ns bigint NOT NULL,
        last_ns bigint NOT NULL,
        data jsonb NOT NULL,
        seq bigint NOT NULL,
        updated timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (sensor_id, alert_id)
    );
    CREATE INDEX alerts_site ON alerts(site);
    CREATE INDEX alerts_last ON alerts(last_ns DESC);
    CREATE TABLE alert_events (
        sensor_id text NOT NULL,
        seq bigint NOT NULL,
        alert_id bigint NOT NULL,
        status text NOT NULL,
        count bigint NOT NULL,
        emitted_ns bigint NOT NULL,
        stored timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (sensor_id, seq)
    );",
];

/// A PostgreSQL error, with what the hub was doing.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL ({what}): {source}")]
pub struct DbError {
    pub what: &'static str,
    #[source]
    pub source: tokio_postgres::Error,
}

fn at(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    move |source| DbError { what, source }
}

/// Connects, with the connection driven by a spawned task.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(at("connect"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Brings the schema to the newest version (several hubs may race: the advisory lock
/// serialises them).
pub async fn migrate(client: &mut Client) -> Result<u32, DbError> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(715517);
             CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,
                 applied timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .map_err(at("migrate"))?;
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(at("migrate"))?;
    let current: i32 = row.get(0);
    let mut version = u32::try_from(current).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = index as i32 + 1;
        let tx = client.transaction().await.map_err(at("migrate"))?;
        tx.batch_execute(sql).await.map_err(at("migrate"))?;
        tx.execute(
            "INSERT INTO schema_migrations(version) VALUES ($1)",
            &[&next],
        )
        .await
        .map_err(at("migrate"))?;
        tx.commit().await.map_err(at("migrate"))?;
        version = next as u32;
    }
    client
        .batch_execute("SELECT pg_advisory_unlock(715517)")
        .await
        .map_err(at("migrate"))?;
    Ok(version)
}

/// The ingest connection and its prepared statements.
pub struct Writer {
    client: Client,
    prepared: Prepared,
}

struct Prepared {
    site: Statement,
    sensor: Statement,
    alert_event: Statement,
    alert: Statement,
    device: Statement,
    sighting: Statement,
    heartbeat: Statement,
    baseline: Statement,
    unsight: Statement,
    orphan: Statement,
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    /// Messages that changed nothing (already applied, or older than the row).
    pub duplicates: u64,
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Writer {
    pub async fn new(client: Client) -> Result<Writer, DbError> {
        let p = |sql: &'static str| {
            let client = &client;
            async move { client.prepare(sql).await.map_err(at("prepare")) }
        };
        let prepared = Prepared {
            site: p("INSERT INTO sites(site) VALUES ($1) ON CONFLICT DO NOTHING").await?,
            sensor: p("INSERT INTO sensors(sensor_id, site) VALUES ($1, $2)
                       ON CONFLICT (sensor_id) DO UPDATE SET site = EXCLUDED.site,
                       last_message = now()")
            .await?,
            alert_event: p("INSERT INTO alert_events(sensor_id, seq, alert_id, status, count,
                            emitted_ns) VALUES ($1, $2, $3, $4, $5, $6)
                            ON CONFLICT DO NOTHING")
            .await?,
            alert: p("INSERT INTO alerts(sensor_id, alert_id, site, signature, severity, status,
                      count, src_ip, dest_ip, first_ns, last_ns, data, seq)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                      ON CONFLICT (sensor_id, alert_id) DO UPDATE SET
                        site = EXCLUDED.site, status = EXCLUDED.status,
                        count = greatest(alerts.count, EXCLUDED.count),
                        first_ns = least(alerts.first_ns, EXCLUDED.first_ns),
                        last_ns = greatest(alerts.last_ns, EXCLUDED.last_ns),
                        data = EXCLUDED.data, seq = EXCLUDED.seq, updated = now()
                      WHERE alerts.seq < EXCLUDED.seq")
            .await?,
            device: p("INSERT INTO devices(site, device_id, data, first_seen_ns, last_seen_ns)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (site, device_id) DO UPDATE SET
                         data = CASE WHEN EXCLUDED.last_seen_ns >= devices.last_seen_ns
                                THEN EXCLUDED.data ELSE devices.data END,
                         first_seen_ns = least(devices.first_seen_ns, EXCLUDED.first_seen_ns),
                         last_seen_ns = greatest(devices.last_seen_ns, EXCLUDED.last_seen_ns),
                         updated = now()")
            .await?,
            sighting: p("INSERT INTO device_sightings(site, device_id, sensor_id, data,
                         first_seen_ns, last_seen_ns, seq) VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (site, device_id, sensor_id) DO UPDATE SET
                           data = EXCLUDED.data,
                           first_seen_ns = least(device_sightings.first_seen_ns, EXCLUDED.first_seen_ns),
                           last_seen_ns = greatest(device_sightings.last_seen_ns, EXCLUDED.last_seen_ns),
                           seq = EXCLUDED.seq
                         WHERE device_sightings.seq < EXCLUDED.seq")
            .await?,
            heartbeat: p("UPDATE sensors SET health = $3, version = $4, last_heartbeat = now(),
                          heartbeat_seq = $2,
                          baseline = coalesce($5, baseline),
                          baseline_seq = CASE WHEN $5::jsonb IS NULL THEN baseline_seq ELSE $2 END
                          WHERE sensor_id = $1 AND heartbeat_seq < $2")
            .await?,
            baseline: p("UPDATE sensors SET baseline = $3, baseline_seq = $2
                         WHERE sensor_id = $1 AND baseline_seq < $2")
            .await?,
            unsight: p("DELETE FROM device_sightings
                        WHERE site = $1 AND device_id = $2 AND sensor_id = $3 AND seq < $4")
            .await?,
            orphan: p("DELETE FROM devices d WHERE site = $1 AND device_id = $2
                       AND NOT EXISTS (SELECT 1 FROM device_sightings s
                                       WHERE s.site = d.site AND s.device_id = d.device_id)")
            .await?,
        };
        Ok(Writer { client, prepared })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Applies a batch in one transaction, statements pipelined in message order.
    pub async fn apply(&mut self, batch: &[Envelope]) -> Result<Applied, DbError> {
        let tx = self.client.transaction().await.map_err(at("begin"))?;
        // Sites and sensors first (the rows below reference them), once per batch.
        let mut seen = std::collections::BTreeMap::new();
        for envelope in batch {
            seen.insert(envelope.sensor_id.as_str(), envelope.site.as_str());
        }
        let prepared = &self.prepared;
        for (sensor, site) in &seen {
            tx.execute(&prepared.site, &[site])
                .await
                .map_err(at("site"))?;
            tx.execute(&prepared.sensor, &[sensor, site])
                .await
                .map_err(at("sensor"))?;
        }
        let mut pending = Vec::with_capacity(batch.len());
        for envelope in batch {
            pending.push(statements(prepared, &tx, envelope));
        }
        let results = futures_util::future::join_all(pending).await;
        let mut applied = Applied::default();
        for result in results {
            if result? {
                applied.applied += 1;
            } else {
                applied.duplicates += 1;
            }
        }
        tx.commit().await.map_err(at("commit"))?;
        Ok(applied)
    }
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The statements of one message; true when it changed something.
async fn statements(
    this: &Prepared,
    tx: &tokio_postgres::Transaction<'_>,
    e: &Envelope,
) -> Result<bool, DbError> {
    let seq = i64_of(e.seq);
    match &e.body {
        Body::Alert(alert) => {
            let status = alert.status.as_str();
            let alert_id = i64_of(alert.id);
            let count = i64_of(alert.count);
            let data = serde_json::to_value(alert).unwrap_or(serde_json::Value::Null);
            let severity = i16::from(alert.severity.0);
            let src = alert.src_ip.map(|ip| ip.to_string());
            let dst = alert.dest_ip.map(|ip| ip.to_string());
            let first = i64_of(alert.first_ns);
            let last = i64_of(alert.last_ns);
            let emitted = i64_of(e.emitted_ns);
            let event_params: [Param; 6] =
                [&e.sensor_id, &seq, &alert_id, &status, &count, &emitted];
            let event = tx.execute(&this.alert_event, &event_params);
            let row_params: [Param; 13] = [
                &e.sensor_id,
                &alert_id,
                &e.site,
                &alert.signature,
                &severity,
                &status,
                &count,
                &src,
                &dst,
                &first,
                &last,
                &data,
                &seq,
            ];
            let row = tx.execute(&this.alert, &row_params);
            let (event, _row) = futures_util::future::join(event, row).await;
            Ok(event.map_err(at("alert"))? > 0)
        }
        Body::Device(device) if device.removed => {
            let gone_params: [Param; 4] = [&e.site, &device.id, &e.sensor_id, &seq];
            let orphan_params: [Param; 2] = [&e.site, &device.id];
            let gone = tx.execute(&this.unsight, &gone_params);
            let orphan = tx.execute(&this.orphan, &orphan_params);
            let (gone, orphan) = futures_util::future::join(gone, orphan).await;
            orphan.map_err(at("device"))?;
            Ok(gone.map_err(at("device"))? > 0)
        }
        Body::Device(device) => {
            let data = serde_json::to_value(device).unwrap_or(serde_json::Value::Null);
            let first = i64_of(device.first_seen_ns);
            let last = i64_of(device.last_seen_ns);
            let merged_params: [Param; 5] = [&e.site, &device.id, &data, &first, &last];
            let sighting_params: [Param; 7] = [
                &e.site,
                &device.id,
                &e.sensor_id,
                &data,
                &first,
                &last,
                &seq,
            ];
            let merged = tx.execute(&this.device, &merged_params);
            let sighting = tx.execute(&this.sighting, &sighting_params);
            let (merged, sighting) = futures_util::future::join(merged, sighting).await;
            merged.map_err(at("device"))?;
            Ok(sighting.map_err(at("device"))? > 0)
        }
        Body::Heartbeat(beat) => {
            let health = serde_json::to_value(beat).unwrap_or(serde_json::Value::Null);
            let baseline = beat
                .baseline
                .as_ref()
                .and_then(|b| serde_json::to_value(b).ok());
            let changed = tx
                .execute(
                    &this.heartbeat,
                    &[&e.sensor_id, &seq, &health, &beat.version, &baseline],
                )
                .await
                .map_err(at("heartbeat"))?;
            Ok(changed > 0)
        }
        Body::Baseline(view) => {
            let data = serde_json::to_value(view).unwrap_or(serde_json::Value::Null);
            let changed = tx
                .execute(&this.baseline, &[&e.sensor_id, &seq, &data])
                .await
                .map_err(at("baseline"))?;
            Ok(changed > 0)
        }
    }
}
