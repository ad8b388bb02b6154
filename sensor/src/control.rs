//! The control seam between the HTTP server and the analyzer thread.
//!
//! **The analyzer thread is the single owner of inventory, alerts and baseline.** The
//! HTTP server never touches that state: it sends a [`ControlRequest`] carrying a
//! reply [`Sender`] over a bounded channel, and the thread that owns the state answers
//! it between observations through its [`ControlHandler`]. A slow or vanished HTTP
//! client costs the owner one failed `send` on a one-slot reply channel, nothing more.
//!
//! The analyzer implements [`ControlHandler`] (`analyze/control.rs`); after a replay
//! ends, a control thread keeps answering from the analyzer's final state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use otsensor_wire::layers::Mac;
use otsensor_wire::Protocol;

use crate::advisories::view::{VulnerabilitiesView, VulnerabilityView};
use crate::advisories::Catalogue;
use crate::detect::{Alert, AlertStatus};
use crate::observe::IdentityField;

/// Capacity of the HTTP → owner request channel.
pub const CONTROL_QUEUE: usize = 256;
/// Most items a list answer carries.
pub const MAX_LIST: usize = 10_000;

/// A reply slot: the asker keeps the receiving end.
pub type Reply<T> = Sender<T>;

/// Makes a one-slot reply channel.
pub fn reply_channel<T>() -> (Sender<T>, Receiver<T>) {
    bounded(1)
}

/// Why a state change was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ControlError {
    #[error("no such alert: {id}")]
    NoSuchAlert { id: u64 },
    #[error("the database refused the change: {reason}")]
    Store { reason: String },
}

/// Filters of the device list (all optional, combined with AND).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceFilter {
    /// Substring of the address, MAC, vendor, model or name (case-insensitive).
    pub q: Option<String>,
    /// Devices that spoke this protocol.
    pub protocol: Option<String>,
    /// Device class (`plc`, `hmi`, `engineering_workstation`, `host`, ...).
    pub class: Option<String>,
}

impl DeviceFilter {
    /// True when `device` passes every filter given.
    pub fn matches(&self, device: &DeviceSummary) -> bool {
        let contains_ci =
            |haystack: &str, needle: &str| haystack.to_lowercase().contains(&needle.to_lowercase());
        self.class.as_deref().is_none_or(|c| device.class == c)
            && self
                .protocol
                .as_deref()
                .is_none_or(|p| device.protocols.iter().any(|dp| dp.name() == p))
            && self.q.as_deref().is_none_or(|q| {
                [
                    Some(device.id.as_str()),
                    device.mac.as_deref(),
                    device.vendor.as_deref(),
                    device.model.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|field| contains_ci(field, q))
            })
    }
}

/// Filters of the alert list (all optional, combined with AND).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    /// Most severe level to include (1 high, 2 medium, 3 low).
    pub severity: Option<u8>,
    pub signature: Option<String>,
    /// Alerts whose source or destination is this address.
    pub device: Option<IpAddr>,
}

impl AlertFilter {
    /// The filter as a database query.
    pub fn query(&self) -> crate::store::AlertQuery {
        crate::store::AlertQuery {
            status: self.status,
            max_severity: self.severity,
            signature: self.signature.clone(),
            device: self.device,
        }
    }
}

/// One identity attribute as reported at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentityChange {
    pub timestamp: String,
    pub protocol: Protocol,
    pub field: IdentityField,
    /// The value before the change (none for a first report).
    pub previous: Option<String>,
    pub value: String,
}

/// A device in a list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceSummary {
    /// The IP address, or the MAC for layer-2-only devices: the key of `/api/devices/{id}`.
    pub id: String,
    pub ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub vlan: u16,
    pub class: String,
    /// The name it reports: its configured name, else host name, else system name.
    pub name: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub protocols: Vec<Protocol>,
    pub first_seen: String,
    pub last_seen: String,
    pub packets: u64,
    pub bytes: u64,
    /// CISA advisories the device matches, best first (`crate::advisories`).
    pub vulnerabilities: Vec<VulnerabilityView>,
}

/// A peer of a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerView {
    pub ip: IpAddr,
    /// Application protocol names, or transport and server port (`tcp/443`).
    pub protocols: Vec<String>,
    pub flows: u64,
}

/// A device with its identity history and peers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub summary: DeviceSummary,
    pub identity: BTreeMap<IdentityField, String>,
    /// The protocol each identity value came from.
    pub identity_sources: BTreeMap<IdentityField, Protocol>,
    pub identity_history: Vec<IdentityChange>,
    pub peers: Vec<PeerView>,
}

/// Learning state of the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineView {
    pub learning: bool,
    /// 0 to 1.
    pub progress: f64,
    pub started: Option<String>,
    pub ends: Option<String>,
    /// Entries (device, peer, protocol, command) the baseline holds.
    pub entries: u64,
}

/// What to do with the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineAction {
    EndLearning,
    RestartLearning,
}

/// One conversation between two devices on one application protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conversation {
    pub client: IpAddr,
    pub server: IpAddr,
    /// Application protocol name, or the transport and server port (`tcp/443`).
    pub protocol: String,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Flows seen so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowsSummary {
    pub flows_ended: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Flows per protocol name.
    pub by_protocol: BTreeMap<String, u64>,
    /// Bytes per protocol name.
    pub bytes_by_protocol: BTreeMap<String, u64>,
    pub conversations: Vec<Conversation>,
}

/// The owner's view of its health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    pub devices: u64,
    pub alerts: u64,
    pub alerts_new: u64,
    pub observations: u64,
    pub learning: bool,
    /// True once the capture source ended (replay); a live sensor never finishes.
    pub capture_finished: bool,
}

/// What the read endpoints answer from, published by the owner of the state so that
/// reading never waits for (or costs) the analyzer thread: devices (with detail), flows,
/// baseline and health. Alerts are read from the database instead (`store`), where
/// filters run in SQL.
#[derive(Clone, Debug, Default)]
pub struct ApiSnapshot {
    /// Every device, sorted by address then id.
    pub devices: Vec<DeviceDetail>,
    pub flows: FlowsSummary,
    pub baseline: Option<BaselineView>,
    pub health: Option<HealthView>,
    /// The devices matching advisories; `source`, `advisories` and `products` are left
    /// empty: the reader describes [`ApiSnapshot::catalogue`] (building the embedded
    /// catalogue is the reader's cost, never the analyzer's).
    pub vulnerabilities: Option<VulnerabilitiesView>,
    /// The advisory catalogue in force when it includes imported advisories; `None`:
    /// the embedded one ([`crate::advisories::embedded`]).
    pub catalogue: Option<Arc<Catalogue>>,
    /// Counts publications (0: nothing published yet).
    pub generation: u64,
}

impl ApiSnapshot {
    /// The device `id` names: an IP address, or the MAC of a layer-2-only device.
    pub fn device(&self, id: &str) -> Option<&DeviceDetail> {
        if let Ok(ip) = id.parse::<IpAddr>() {
            return self.devices.iter().find(|d| d.summary.ip == Some(ip));
        }
        let mac = id.to_lowercase();
        self.devices
            .iter()
            .find(|d| d.summary.ip.is_none() && d.summary.mac.as_deref() == Some(mac.as_str()))
    }
}

/// The latest [`ApiSnapshot`]: the owner swaps in a whole new one, readers clone the
/// `Arc` (the lock is held for a pointer copy, never while building or serialising).
#[derive(Debug, Default)]
pub struct SnapshotCell {
    current: RwLock<Arc<ApiSnapshot>>,
}

impl SnapshotCell {
    pub fn new() -> Arc<SnapshotCell> {
        Arc::new(SnapshotCell::default())
    }

    pub fn load(&self) -> Arc<ApiSnapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn store(&self, snapshot: ApiSnapshot) {
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

/// Shortest time between two periodic publications.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(500);
/// A periodic publication may use at most 1/this of the owner's time: after a build
/// that took `t`, the next periodic one waits at least `t * SNAPSHOT_DUTY` (at 100,000
/// devices a build takes tens of milliseconds; the analyzer must keep up with traffic).
const SNAPSHOT_DUTY: u32 = 10;

/// Publishes the owner's snapshots: periodically when something changed (bounded in
/// the owner's time, however many clients read), at once after an operator's change
/// (so the client that made it reads it back).
#[derive(Debug)]
pub struct SnapshotPublisher {
    cell: Arc<SnapshotCell>,
    generation: u64,
    /// What the last publication saw (the owner's change counter).
    seen: Option<u64>,
    not_before: Instant,
}

impl SnapshotPublisher {
    pub fn new(cell: Arc<SnapshotCell>) -> SnapshotPublisher {
        SnapshotPublisher {
            cell,
            generation: 0,
            seen: None,
            not_before: Instant::now(),
        }
    }

    /// Builds and publishes now.
    pub fn publish<H: ControlHandler + ?Sized>(&mut self, owner: &mut H) {
        let started = Instant::now();
        let mut snapshot = owner.snapshot();
        self.generation += 1;
        snapshot.generation = self.generation;
        self.seen = Some(owner.change_count());
        self.cell.store(snapshot);
        let took = started.elapsed();
        self.not_before = Instant::now() + (took * SNAPSHOT_DUTY).max(SNAPSHOT_INTERVAL);
    }

    /// The periodic publication: only when the owner changed and its time budget allows.
    pub fn tick<H: ControlHandler + ?Sized>(&mut self, owner: &mut H) {
        if Instant::now() < self.not_before || self.seen == Some(owner.change_count()) {
            return;
        }
        self.publish(owner);
    }

    /// Answers `request`; a state change is published before its reply is sent.
    pub fn answer<H: ControlHandler + ?Sized>(&mut self, owner: &mut H, request: ControlRequest) {
        match request {
            ControlRequest::SetAlertStatus(id, status, reply) => {
                let result = owner.set_alert_status(id, status);
                self.publish(owner);
                let _ = reply.try_send(result);
            }
            ControlRequest::ChangeBaseline(action, reply) => {
                let result = owner.change_baseline(action);
                self.publish(owner);
                let _ = reply.try_send(result);
            }
            other => owner.answer(other),
        }
    }
}

/// A request to the owner of inventory, alerts and baseline.
#[derive(Debug)]
pub enum ControlRequest {
    ListDevices(DeviceFilter, Reply<Vec<DeviceSummary>>),
    Device(String, Reply<Option<DeviceDetail>>),
    ListAlerts(AlertFilter, Reply<Vec<Alert>>),
    Alert(u64, Reply<Option<Alert>>),
    SetAlertStatus(u64, AlertStatus, Reply<Result<Alert, ControlError>>),
    Baseline(Reply<BaselineView>),
    ChangeBaseline(BaselineAction, Reply<Result<BaselineView, ControlError>>),
    Flows(Reply<FlowsSummary>),
    Health(Reply<HealthView>),
    /// An output dropped records it could not deliver (no reply: the output never waits).
    OutputLoss(OutputLoss),
}

/// What an output has dropped since the sensor started, by class of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLoss {
    /// The output's configuration name (`nats`).
    pub output: &'static str,
    pub heartbeats: u64,
    /// Device and baseline changes.
    pub state: u64,
    pub alerts: u64,
    /// State changes the output's inbound channel was too full to take.
    pub changes: u64,
    /// The bound that was reached, in bytes.
    pub bound_bytes: u64,
}

impl OutputLoss {
    pub fn total(&self) -> u64 {
        self.heartbeats + self.state + self.alerts + self.changes
    }
}

/// Answers control requests; implemented by whoever owns the state.
pub trait ControlHandler {
    fn list_devices(&mut self, filter: &DeviceFilter) -> Vec<DeviceSummary>;
    fn device(&mut self, id: &str) -> Option<DeviceDetail>;
    fn list_alerts(&mut self, filter: &AlertFilter) -> Vec<Alert>;
    fn alert(&mut self, id: u64) -> Option<Alert>;
    fn set_alert_status(&mut self, id: u64, status: AlertStatus) -> Result<Alert, ControlError>;
    fn baseline(&mut self) -> BaselineView;
    fn change_baseline(&mut self, action: BaselineAction) -> Result<BaselineView, ControlError>;
    fn flows(&mut self) -> FlowsSummary;
    fn health(&mut self) -> HealthView;
    /// An output reported a loss: raised as an `output_loss` alert.
    fn output_loss(&mut self, loss: OutputLoss);
    /// Everything the read endpoints serve, built in one go.
    fn snapshot(&mut self) -> ApiSnapshot;
    /// Grows whenever what [`ControlHandler::snapshot`] returns may have changed.
    fn change_count(&self) -> u64;

    /// Answers one request. A reply nobody waits for any more is dropped silently.
    fn answer(&mut self, request: ControlRequest) {
        match request {
            ControlRequest::ListDevices(filter, reply) => {
                let _ = reply.try_send(self.list_devices(&filter));
            }
            ControlRequest::Device(id, reply) => {
                let _ = reply.try_send(self.device(&id));
            }
            ControlRequest::ListAlerts(filter, reply) => {
                let _ = reply.try_send(self.list_alerts(&filter));
            }
            ControlRequest::Alert(id, reply) => {
                let _ = reply.try_send(self.alert(id));
            }
            ControlRequest::SetAlertStatus(id, status, reply) => {
                let _ = reply.try_send(self.set_alert_status(id, status));
            }
            ControlRequest::Baseline(reply) => {
                let _ = reply.try_send(self.baseline());
            }
            ControlRequest::ChangeBaseline(action, reply) => {
                let _ = reply.try_send(self.change_baseline(action));
            }
            ControlRequest::Flows(reply) => {
                let _ = reply.try_send(self.flows());
            }
            ControlRequest::Health(reply) => {
                let _ = reply.try_send(self.health());
            }
            ControlRequest::OutputLoss(loss) => self.output_loss(loss),
        }
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Fixtures shared by the tests of the control and output modules.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::detect::{Engine, Severity};

    pub(crate) fn sample_alert() -> Alert {
        Alert {
            src_mac: None,
            id: 0,
            signature: "plc_stop".into(),
            signature_id: 1001,
            category: "Operational".into(),
            severity: Severity::HIGH,
            engine: Engine::Operational,
            mitre: "T0881".into(),
            src_ip: Some("10.0.0.5".parse().expect("ip")),
            src_port: Some(50000),
            dest_ip: Some("10.0.0.10".parse().expect("ip")),
            dest_port: Some(102),
            proto: Some(6),
            flow_id: Some(7),
            app_proto: Some(Protocol::S7comm),
            message: "PLC STOP".into(),
            context: Default::default(),
            first_ns: 1_700_000_000_000_000_000,
            last_ns: 1_700_000_000_000_000_000,
            count: 1,
            status: AlertStatus::New,
            evidence: None,
        }
    }
}
