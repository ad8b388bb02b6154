//! The SQLite store (WAL): devices, baseline, learning progress and alert history.
//!
//! **Written only by the analyzer**, in batched transactions, so the file is consistent
//! at the last commit whatever kills the process. Other processes (the CLI, the HTTP
//! API) open their own connection: they read freely, and the few operator actions
//! (acknowledge, learn, mute, end or restart learning) are single small transactions
//! the running analyzer notices through `PRAGMA data_version` and reloads.
//!
//! Schema (version [`SCHEMA_VERSION`]):
//!
//! - `meta(key TEXT PRIMARY KEY, value TEXT)`: `schema_version`, `learning_started_ns`
//!   (packet time of the first observation of the learning period), `learning_ended`
//!   (`1` when an operator ended learning early).
//! - `devices(key TEXT PRIMARY KEY, first_seen_ns, last_seen_ns, record TEXT)`: `key` is
//!   `ip:ADDR` or `mac:aa:bb:..`; `record` is the device as JSON (see `analyze::DeviceRecord`).
//! - `baseline(kind TEXT, key TEXT, learned_ns INTEGER, PRIMARY KEY(kind, key))`: kinds
//!   and key formats in [`BaselineItem`].
//! - `alerts(id INTEGER PRIMARY KEY, key TEXT UNIQUE, signature, signature_id,
//!   severity, src_ip, dest_ip, first_ns, last_ns, count, status, learn TEXT, record
//!   TEXT)`: `key` is `signature|src|dst`; `learn` the JSON list of baseline items that
//!   "learn this" adds; `record` the last occurrence as JSON (`detect::Alert`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension};

use otsensor_wire::layers::Mac;
use otsensor_wire::Protocol;

use crate::detect::{Alert, AlertStatus};

pub const SCHEMA_VERSION: i64 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this otsensor ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("no alert with id {0}")]
    NoSuchAlert(u64),
    #[error("database directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A device's identity in the inventory: by internal IP, or by MAC for layer-2-only hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKey {
    Ip(IpAddr),
    Mac(Mac),
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceKey::Ip(ip) => write!(f, "ip:{ip}"),
            DeviceKey::Mac(mac) => write!(f, "mac:{}", format_mac(mac)),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, g] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
}

pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl FromStr for DeviceKey {
    type Err = ();
    fn from_str(text: &str) -> std::result::Result<DeviceKey, ()> {
        if let Some(ip) = text.strip_prefix("ip:") {
            return ip.parse().map(DeviceKey::Ip).map_err(|_| ());
        }
        text.strip_prefix("mac:")
            .and_then(parse_mac)
            .map(DeviceKey::Mac)
            .ok_or(())
    }
}

/// One fact of the baseline. Stored as (`kind`, `key`) text; the key's fields are
/// separated by `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BaselineItem {
    /// `device`: `ip:ADDR` or `mac:MAC`.
    Device(DeviceKey),
    /// `conversation`: `client|server|ip_protocol|server_port`.
    Conversation {
        client: IpAddr,
        server: IpAddr,
        ip_protocol: u8,
        port: u16,
    },
    /// `command`: `client|server|protocol|code`.
    Command {
        client: IpAddr,
        server: IpAddr,
        protocol: Protocol,
        code: u32,
    },
    /// `writer`: `client|server|protocol` — the client wrote to the server.
    Writer {
        client: IpAddr,
        server: IpAddr,
        protocol: Protocol,
    },
    /// `remote_access`: `client|server|port`.
    RemoteAccess {
        client: IpAddr,
        server: IpAddr,
        port: u16,
    },
    /// `external`: `internal|external`.
    External { internal: IpAddr, external: IpAddr },
    /// `workstation`: an engineering workstation (programmed during learning).
    Workstation(IpAddr),
    /// `discoverer`: a host that sent discovery requests during learning.
    Discoverer(IpAddr),
}

fn protocol_by_name(name: &str) -> Option<Protocol> {
    Protocol::ALL.iter().copied().find(|p| p.name() == name)
}

impl BaselineItem {
    pub fn kind(&self) -> &'static str {
        match self {
            BaselineItem::Device(_) => "device",
            BaselineItem::Conversation { .. } => "conversation",
            BaselineItem::Command { .. } => "command",
            BaselineItem::Writer { .. } => "writer",
            BaselineItem::RemoteAccess { .. } => "remote_access",
            BaselineItem::External { .. } => "external",
            BaselineItem::Workstation(_) => "workstation",
            BaselineItem::Discoverer(_) => "discoverer",
        }
    }

    pub fn key(&self) -> String {
        match self {
            BaselineItem::Device(device) => device.to_string(),
            BaselineItem::Conversation {
                client,
                server,
                ip_protocol,
                port,
            } => format!("{client}|{server}|{ip_protocol}|{port}"),
            BaselineItem::Command {
                client,
                server,
                protocol,
                code,
            } => format!("{client}|{server}|{}|{code}", protocol.name()),
            BaselineItem::Writer {
                client,
                server,
                protocol,
            } => format!("{client}|{server}|{}", protocol.name()),
            BaselineItem::RemoteAccess {
                client,
                server,
                port,
            } => format!("{client}|{server}|{port}"),
            BaselineItem::External { internal, external } => format!("{internal}|{external}"),
            BaselineItem::Workstation(ip) | BaselineItem::Discoverer(ip) => ip.to_string(),
        }
    }

    /// The inverse of (`kind`, `key`); `None` for rows this version does not know.
    pub fn parse(kind: &str, key: &str) -> Option<BaselineItem> {
        let parts: Vec<&str> = key.split('|').collect();
        let ip = |i: usize| parts.get(i).and_then(|s| s.parse::<IpAddr>().ok());
        Some(match (kind, parts.len()) {
            ("device", _) => BaselineItem::Device(key.parse().ok()?),
            ("conversation", 4) => BaselineItem::Conversation {
                client: ip(0)?,
                server: ip(1)?,
                ip_protocol: parts.get(2)?.parse().ok()?,
                port: parts.get(3)?.parse().ok()?,
            },
            ("command", 4) => BaselineItem::Command {
                client: ip(0)?,
                server: ip(1)?,
                protocol: protocol_by_name(parts.get(2)?)?,
                code: parts.get(3)?.parse().ok()?,
            },
            ("writer", 3) => BaselineItem::Writer {
                client: ip(0)?,
                server: ip(1)?,
                protocol: protocol_by_name(parts.get(2)?)?,
            },
            ("remote_access", 3) => BaselineItem::RemoteAccess {
                client: ip(0)?,
                server: ip(1)?,
                port: parts.get(2)?.parse().ok()?,
            },
            ("external", 2) => BaselineItem::External {
                internal: ip(0)?,
                external: ip(1)?,
            },
            ("workstation", 1) => BaselineItem::Workstation(ip(0)?),
            ("discoverer", 1) => BaselineItem::Discoverer(ip(0)?),
            _ => return None,
        })
    }
}

/// Learning progress as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LearningState {
    /// Packet time learning started; `None` until the first observation.
    pub started_ns: Option<u64>,
    /// An operator ended learning early.
    pub ended: bool,
}

/// One device row to upsert.
#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub key: DeviceKey,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// The device record as JSON text.
    pub record: String,
}

/// One alert row to upsert, with the baseline items "learn this" adds. The record is
/// the one the sinks got when it was written (shared, not copied); a later repeat that
/// only counts updates the row's own copy (`Arc::make_mut`).
#[derive(Clone, Debug)]
pub struct AlertRow {
    pub alert: std::sync::Arc<Alert>,
    pub learn: Vec<BaselineItem>,
}

/// What the analyzer writes in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub devices: Vec<DeviceRow>,
    /// Device rows to delete (a MAC found to carry IPs is represented by them).
    pub forget_devices: Vec<DeviceKey>,
    pub baseline: Vec<(BaselineItem, u64)>,
    pub alerts: Vec<AlertRow>,
    pub learning_started_ns: Option<u64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.forget_devices.is_empty()
            && self.baseline.is_empty()
            && self.alerts.is_empty()
            && self.learning_started_ns.is_none()
    }
}

/// A stored alert as listed (status as stored, not as last raised).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoredAlert {
    pub id: u64,
    pub key: String,
    pub status: AlertStatus,
    pub count: u64,
    pub alert: Alert,
}

/// What the analyzer needs of a stored alert to de-duplicate against history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertHistory {
    pub id: u64,
    pub status: AlertStatus,
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// A connection to the database.
pub struct Store {
    conn: Connection,
    /// The file, when there is one (readers open their own connections to it).
    path: Option<PathBuf>,
    /// A private directory removed when this connection closes ([`Store::temporary`]).
    temporary: Option<PathBuf>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(dir) = self.temporary.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Which alerts to list: every filter given must hold (they run in SQL, before the
/// limit, so newer noise never hides an older match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub status: Option<AlertStatus>,
    /// Most severe level to include (1 high, 2 medium, 3 low).
    pub max_severity: Option<u8>,
    pub signature: Option<String>,
    /// Source or destination.
    pub device: Option<IpAddr>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store {
    /// Opens (creating or migrating) the database at `path` in WAL mode.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| Error::Open {
            path: path.display().to_string(),
            source,
        })?;
        // WAL: readers never block the analyzer; NORMAL sync is durable at each
        // checkpoint and consistent at every commit (a crash loses at most the last
        // commits, never corrupts).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Self::init(conn)?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// A private in-memory database (replays without `--db`).
    pub fn in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    /// A private database in a new directory only this user can enter, removed when the
    /// store is dropped: a run without `--db` that serves the API, whose readers need a
    /// file to open.
    pub fn temporary() -> Result<Store> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("otsensor-{}-{nanos:x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| Error::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        let mut store = match Store::open(&dir.join("otsensor.db")) {
            Ok(store) => store,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        store.temporary = Some(dir);
        Ok(store)
    }

    /// A read-only connection to an existing database file (the HTTP API's readers):
    /// it can neither write nor create, and waits at most `busy` for a lock.
    pub fn open_read_only(path: &Path, busy: std::time::Duration) -> Result<Store> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| Error::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(busy)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(Store {
            conn,
            path: Some(path.to_path_buf()),
            temporary: None,
        })
    }

    /// The database file; none for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS devices (
                 key TEXT PRIMARY KEY,
                 first_seen_ns INTEGER NOT NULL,
                 last_seen_ns INTEGER NOT NULL,
                 record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS baseline (
                 kind TEXT NOT NULL,
                 key TEXT NOT NULL,
                 learned_ns INTEGER NOT NULL,
                 PRIMARY KEY (kind, key));
             CREATE TABLE IF NOT EXISTS alerts (
                 id INTEGER PRIMARY KEY,
                 key TEXT NOT NULL UNIQUE,
                 signature TEXT NOT NULL,
                 signature_id INTEGER NOT NULL,
                 severity INTEGER NOT NULL,
                 src_ip TEXT,
                 dest_ip TEXT,
                 first_ns INTEGER NOT NULL,
                 last_ns INTEGER NOT NULL,
                 count INTEGER NOT NULL,
                 status TEXT NOT NULL,
                 learn TEXT NOT NULL,
                 record TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (last_ns DESC, id DESC);",
        )?;
        let store = Store {
            conn,
            path: None,
            temporary: None,
        };
        match store.meta("schema_version")? {
            Some(found) => {
                let found: i64 = found.parse().unwrap_or(0);
                if found > SCHEMA_VERSION {
                    return Err(Error::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            None => store.set_meta("schema_version", &SCHEMA_VERSION.to_string())?,
        }
        Ok(store)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Changes when another connection commits (SQLite's `data_version`).
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))?)
    }

    pub fn learning(&self) -> Result<LearningState> {
        Ok(LearningState {
            started_ns: self
                .meta("learning_started_ns")?
                .and_then(|v| v.parse().ok()),
            ended: self.meta("learning_ended")?.as_deref() == Some("1"),
        })
    }

    /// Ends learning now: baseline deviations alert from the next observation.
    pub fn end_learning(&self) -> Result<()> {
        self.set_meta("learning_ended", "1")
    }

    /// Forgets the baseline and starts learning again at the next observation.
    pub fn restart_learning(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM baseline", [])?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('learning_started_ns', 'learning_ended')",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every baseline fact this version understands.
    pub fn baseline(&self) -> Result<Vec<BaselineItem>> {
        let mut statement = self.conn.prepare("SELECT kind, key FROM baseline")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut items = Vec::new();
        for row in rows {
            let (kind, key) = row?;
            if let Some(item) = BaselineItem::parse(&kind, &key) {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Baseline facts per kind.
    pub fn baseline_counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut statement = self
            .conn
            .prepare("SELECT kind, COUNT(*) FROM baseline GROUP BY kind")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, to_u64(row.get::<_, i64>(1)?)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes one analyzer batch in one transaction.
    pub fn write(&mut self, batch: &Batch) -> Result<()> {
        let tx = self.conn.transaction()?;
        if let Some(started) = batch.learning_started_ns {
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('learning_started_ns', ?1)",
                [started.to_string()],
            )?;
        }
        {
            let mut device = tx.prepare_cached(
                "INSERT INTO devices (key, first_seen_ns, last_seen_ns, record)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET
                     first_seen_ns = MIN(first_seen_ns, excluded.first_seen_ns),
                     last_seen_ns = MAX(last_seen_ns, excluded.last_seen_ns),
                     record = excluded.record",
            )?;
            for row in &batch.devices {
                device.execute(params![
                    row.key.to_string(),
                    to_i64(row.first_seen_ns),
                    to_i64(row.last_seen_ns),
                    row.record
                ])?;
            }
            let mut forget = tx.prepare_cached("DELETE FROM devices WHERE key = ?1")?;
            for key in &batch.forget_devices {
                forget.execute([key.to_string()])?;
            }
            let mut baseline = tx.prepare_cached(
                "INSERT OR IGNORE INTO baseline (kind, key, learned_ns) VALUES (?1, ?2, ?3)",
            )?;
            for (item, at) in &batch.baseline {
                baseline.execute(params![item.kind(), item.key(), to_i64(*at)])?;
            }
            // The status is the operator's: an occurrence never overwrites it.
            let mut alert = tx.prepare_cached(
                "INSERT INTO alerts (key, signature, signature_id, severity, src_ip, dest_ip,
                     first_ns, last_ns, count, status, learn, record, id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'new', ?10, ?11, ?12)
                 ON CONFLICT(key) DO UPDATE SET
                     first_ns = MIN(first_ns, excluded.first_ns),
                     last_ns = MAX(last_ns, excluded.last_ns),
                     count = MAX(count, excluded.count),
                     record = excluded.record",
            )?;
            for row in &batch.alerts {
                let a: &Alert = &row.alert;
                let learn: Vec<(&str, String)> =
                    row.learn.iter().map(|i| (i.kind(), i.key())).collect();
                alert.execute(params![
                    a.key(),
                    a.signature,
                    a.signature_id,
                    a.severity.0,
                    a.src_ip.map(|ip| ip.to_string()),
                    a.dest_ip.map(|ip| ip.to_string()),
                    to_i64(a.first_ns),
                    to_i64(a.last_ns),
                    to_i64(a.count),
                    serde_json::to_string(&learn).unwrap_or_else(|_| "[]".to_owned()),
                    serde_json::to_string(a).unwrap_or_else(|_| "{}".to_owned()),
                    to_i64(a.id),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stored alerts, newest first, optionally only those with `status`.
    pub fn alerts(&self, status: Option<AlertStatus>, limit: usize) -> Result<Vec<StoredAlert>> {
        self.select_alerts(
            "WHERE ?1 IS NULL OR status = ?1 ORDER BY last_ns DESC, id DESC LIMIT ?2",
            params![status.map(AlertStatus::as_str), to_i64(limit as u64)],
        )
    }

    /// Stored alerts matching `query`, newest first, at most `limit`.
    pub fn alerts_where(&self, query: &AlertQuery, limit: usize) -> Result<Vec<StoredAlert>> {
        self.select_alerts(
            "WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR severity <= ?2)
               AND (?3 IS NULL OR signature = ?3)
               AND (?4 IS NULL OR src_ip = ?4 OR dest_ip = ?4)
             ORDER BY last_ns DESC, id DESC LIMIT ?5",
            params![
                query.status.map(AlertStatus::as_str),
                query.max_severity,
                query.signature,
                query.device.map(|ip| ip.to_string()),
                to_i64(limit as u64)
            ],
        )
    }

    /// One stored alert by id.
    pub fn alert(&self, id: u64) -> Result<Option<StoredAlert>> {
        Ok(self
            .select_alerts("WHERE id = ?1", params![to_i64(id)])?
            .into_iter()
            .next())
    }

    fn select_alerts(
        &self,
        filter: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredAlert>> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT id, key, status, count, record FROM alerts {filter}"
        ))?;
        let rows = statement.query_map(values, |row| {
            Ok((
                to_u64(row.get::<_, i64>(0)?),
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                to_u64(row.get::<_, i64>(3)?),
                row.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, key, status, count, record) = row?;
            let Ok(mut alert) = serde_json::from_str::<Alert>(&record) else {
                continue;
            };
            let status = AlertStatus::parse(&status).unwrap_or(AlertStatus::New);
            alert.id = id;
            alert.status = status;
            alert.count = count;
            out.push(StoredAlert {
                id,
                key,
                status,
                count,
                alert,
            });
        }
        Ok(out)
    }

    /// The key and history of every alert: what the analyzer needs to de-duplicate
    /// against history. Most important first (open before closed, then
    /// by severity, newest first), so an analyzer that holds fewer keeps those.
    pub fn alert_states(&self) -> Result<Vec<(String, AlertHistory)>> {
        let mut statement = self.conn.prepare(
            "SELECT key, id, status, count, first_ns, last_ns FROM alerts
             ORDER BY status = 'new' DESC, severity ASC, id DESC",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                AlertHistory {
                    id: to_u64(row.get::<_, i64>(1)?),
                    status: AlertStatus::parse(&row.get::<_, String>(2)?)
                        .unwrap_or(AlertStatus::New),
                    count: to_u64(row.get::<_, i64>(3)?),
                    first_ns: to_u64(row.get::<_, i64>(4)?),
                    last_ns: to_u64(row.get::<_, i64>(5)?),
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The history of the alert stored under `key`.
    pub fn alert_state(&self, key: &str) -> Result<Option<AlertHistory>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, status, count, first_ns, last_ns FROM alerts WHERE key = ?1",
            )?
            .query_row([key], |row| {
                Ok(AlertHistory {
                    id: to_u64(row.get::<_, i64>(0)?),
                    status: AlertStatus::parse(&row.get::<_, String>(1)?)
                        .unwrap_or(AlertStatus::New),
                    count: to_u64(row.get::<_, i64>(2)?),
                    first_ns: to_u64(row.get::<_, i64>(3)?),
                    last_ns: to_u64(row.get::<_, i64>(4)?),
                })
            })
            .optional()?)
    }

    /// Deletes alert rows beyond `keep`, least important first: closed (acknowledged,
    /// learned, muted) before open, then low before high severity, oldest first. The
    /// number of rows deleted.
    pub fn prune_alerts(&mut self, keep: usize) -> Result<u64> {
        let rows: i64 = self
            .conn
            .query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))?;
        let excess = rows - i64::try_from(keep).unwrap_or(i64::MAX);
        if excess <= 0 {
            return Ok(0);
        }
        let deleted = self.conn.execute(
            "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts
                 ORDER BY status = 'new' ASC, severity DESC, last_ns ASC, id ASC LIMIT ?1)",
            [excess],
        )?;
        Ok(deleted as u64)
    }

    /// Sets an alert's status (`acknowledged`, `muted`, or back to `new`).
    pub fn set_alert_status(&self, id: u64, status: AlertStatus) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE alerts SET status = ?1 WHERE id = ?2",
            params![status.as_str(), to_i64(id)],
        )?;
        if changed == 0 {
            return Err(Error::NoSuchAlert(id));
        }
        Ok(())
    }

    /// "Learn this": adds the alert's baseline facts and marks it `learned`.
    pub fn learn_alert(&mut self, id: u64) -> Result<()> {
        let tx = self.conn.transaction()?;
        let learn: Option<(String, i64)> = tx
            .query_row(
                "SELECT learn, last_ns FROM alerts WHERE id = ?1",
                [to_i64(id)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((learn, at)) = learn else {
            return Err(Error::NoSuchAlert(id));
        };
        let items: Vec<(String, String)> = serde_json::from_str(&learn).unwrap_or_default();
        for (kind, key) in items {
            tx.execute(
                "INSERT OR IGNORE INTO baseline (kind, key, learned_ns) VALUES (?1, ?2, ?3)",
                params![kind, key, at],
            )?;
        }
        tx.execute(
            "UPDATE alerts SET status = 'learned' WHERE id = ?1",
            [to_i64(id)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every device record (JSON as the analyzer wrote it), by key.
    pub fn devices(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let mut statement = self
            .conn
            .prepare("SELECT key, record FROM devices ORDER BY key")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, record) = row?;
            out.push((
                key,
                serde_json::from_str(&record).unwrap_or(serde_json::Value::Null),
            ));
        }
        Ok(out)
    }

    pub fn device_count(&self) -> Result<u64> {
        Ok(to_u64(self.conn.query_row(
            "SELECT COUNT(*) FROM devices",
            [],
            |row| row.get(0),
        )?))
    }
}

/// Advisories imported by `otsensor advisories import` (see `crate::advisories`):
/// `advisories(id TEXT PRIMARY KEY, revised TEXT, record TEXT)`, `record` being the
/// advisory in the table's text form; the `advisories_revision` meta key counts imports
/// so the analyzer knows when to reload. The table is created on first use.
impl Store {
    fn advisories_table(&self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS advisories (
                 id TEXT PRIMARY KEY,
                 revised TEXT NOT NULL,
                 record TEXT NOT NULL);",
        )?;
        Ok(())
    }

    /// Adds or replaces advisories (`(id, revised date, record)`) in one transaction.
    pub fn import_advisories(&mut self, rows: &[(String, String, String)]) -> Result<()> {
        self.advisories_table()?;
        let revision = self.advisories_revision()? + 1;
        let tx = self.conn.transaction()?;
        for (id, revised, record) in rows {
            tx.execute(
                "INSERT INTO advisories (id, revised, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET revised = excluded.revised, record = excluded.record",
                params![id, revised, record],
            )?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('advisories_revision', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [revision.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every imported advisory's record, by id.
    pub fn imported_advisories(&self) -> Result<Vec<String>> {
        if self.advisories_revision()? == 0 {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare("SELECT record FROM advisories ORDER BY id")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// How many imports the store has seen (0: none).
    pub fn advisories_revision(&self) -> Result<i64> {
        Ok(self
            .meta("advisories_revision")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_items_round_trip_through_text() {
        let items = [
            BaselineItem::Device(DeviceKey::Mac([0, 1, 2, 3, 4, 0xab])),
            BaselineItem::Device(DeviceKey::Ip(
                "10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4])),
            )),
            BaselineItem::Command {
                client: IpAddr::from([10, 0, 0, 1]),
                server: IpAddr::from([10, 0, 0, 2]),
                protocol: Protocol::Modbus,
                code: 0x5a41,
            },
            BaselineItem::Conversation {
                client: IpAddr::from([10, 0, 0, 1]),
                server: "fd00::1".parse().unwrap_or(IpAddr::from([0; 4])),
                ip_protocol: 6,
                port: 502,
            },
        ];
        for item in items {
            assert_eq!(BaselineItem::parse(item.kind(), &item.key()), Some(item));
        }
    }

    #[test]
    fn learn_alert_adds_its_baseline_items() -> Result<()> {
        let mut store = Store::in_memory()?;
        let mut alert =
            Alert::of(crate::detect::by_name("new_device").ok_or(Error::NoSuchAlert(0))?);
        alert.src_ip = Some(IpAddr::from([10, 0, 0, 9]));
        alert.count = 1;
        let learn = vec![BaselineItem::Device(DeviceKey::Ip(IpAddr::from([
            10, 0, 0, 9,
        ])))];
        store.write(&Batch {
            alerts: vec![AlertRow {
                alert: std::sync::Arc::new(alert),
                learn: learn.clone(),
            }],
            ..Batch::default()
        })?;
        let listed = store.alerts(None, 10)?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, AlertStatus::New);
        store.learn_alert(listed[0].id)?;
        assert_eq!(store.baseline()?, learn);
        assert_eq!(store.alerts(Some(AlertStatus::Learned), 10)?.len(), 1);
        assert!(store.set_alert_status(999, AlertStatus::Muted).is_err());
        Ok(())
    }
}
