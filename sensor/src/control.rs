//! The control seam between the HTTP server and the analyzer thread.
//!
//! **The analyzer thread is the single owner of inventory, alerts and baseline.** The
//! HTTP server never touches that state: it sends a [`ControlRequest`] carrying a
//! reply [`Sender`] over a bounded channel, and the thread that owns the state answers
//! it between observations through its [`ControlHandler`]. A slow or vanished HTTP
//! client costs the owner one failed `send` on a one-slot reply channel, nothing more.
//!
//! [`InventoryView`] is the handler the pipeline uses until the analyzer answers for
//! itself: it keeps a light copy of devices, conversations and alerts from the
//! observations and alerts it is shown. To replace it, implement [`ControlHandler`] for
//! the analyzer and call [`ControlHandler::answer`] for each request received.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::detect::{Alert, AlertStatus};
use crate::dissect::Protocol;
use crate::layers::Mac;
use crate::observe::{IdentityField, Observation};
use crate::output::eve::rfc3339_micros;

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
    #[error("not supported: {what}")]
    Unsupported { what: String },
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

/// One identity attribute as reported at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentityChange {
    pub timestamp: String,
    pub protocol: Protocol,
    pub field: IdentityField,
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
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub protocols: Vec<Protocol>,
    pub first_seen: String,
    pub last_seen: String,
    pub packets: u64,
    pub bytes: u64,
}

/// A peer of a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerView {
    pub ip: IpAddr,
    pub protocols: Vec<Protocol>,
    pub flows: u64,
}

/// A device with its identity history and peers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub summary: DeviceSummary,
    pub identity: BTreeMap<IdentityField, String>,
    pub identity_history: Vec<IdentityChange>,
    pub peers: Vec<PeerView>,
}

/// Learning state of the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthView {
    pub devices: u64,
    pub alerts: u64,
    pub alerts_new: u64,
    pub observations: u64,
    pub learning: bool,
    /// True once the capture source ended (replay); a live sensor never finishes.
    pub capture_finished: bool,
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
        }
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[derive(Clone, Debug, Default)]
struct DeviceState {
    ip: Option<IpAddr>,
    mac: Option<Mac>,
    vlan: u16,
    first_ns: u64,
    last_ns: u64,
    packets: u64,
    bytes: u64,
    protocols: BTreeSet<Protocol>,
    /// Server ports this device answered on with a known protocol (for its class).
    served: BTreeSet<Protocol>,
    /// Commands it sent as a client (engineering stations program, HMIs read/write).
    programmed: bool,
    client_of: BTreeSet<Protocol>,
    identity: BTreeMap<IdentityField, String>,
    history: Vec<IdentityChange>,
    peers: BTreeMap<IpAddr, (BTreeSet<Protocol>, u64)>,
}

/// Identity changes kept per device.
const MAX_HISTORY: usize = 64;
/// Conversations and devices kept by the view (bounded memory under floods).
const MAX_CONVERSATIONS: usize = 50_000;
const MAX_DEVICES: usize = 100_000;

/// The interim control handler: a bounded shadow of the inventory, conversations and
/// alerts, fed by [`InventoryView::observe`] and [`InventoryView::alert`].
#[derive(Debug, Default)]
pub struct InventoryView {
    devices: HashMap<String, DeviceState>,
    conversations: HashMap<(IpAddr, IpAddr, String), Conversation>,
    flows: FlowsSummary,
    alerts: Vec<Alert>,
    observations: u64,
    capture_finished: bool,
}

impl InventoryView {
    pub fn new() -> InventoryView {
        InventoryView::default()
    }

    fn device_mut(&mut self, id: String) -> Option<&mut DeviceState> {
        if self.devices.len() >= MAX_DEVICES && !self.devices.contains_key(&id) {
            return None;
        }
        Some(self.devices.entry(id).or_default())
    }

    /// Folds one observation in (the analyzer loop calls this beside `Analyzer::handle`).
    pub fn observe(&mut self, observation: &Observation) {
        self.observations += 1;
        match observation {
            Observation::DeviceSeen {
                ts_ns,
                mac,
                ip,
                vlan,
            } => {
                let id = match (ip, mac) {
                    (Some(ip), _) => ip.to_string(),
                    (None, Some(mac)) => mac_text(mac),
                    (None, None) => return,
                };
                // A MAC that carries an IP is represented by the IP.
                if let (Some(_), Some(mac)) = (ip, mac) {
                    self.devices.remove(&mac_text(mac));
                }
                let Some(device) = self.device_mut(id) else {
                    return;
                };
                if device.first_ns == 0 || *ts_ns < device.first_ns {
                    device.first_ns = *ts_ns;
                }
                device.last_ns = device.last_ns.max(*ts_ns);
                device.ip = device.ip.or(*ip);
                device.mac = mac.or(device.mac);
                device.vlan = *vlan;
            }
            // Flow starts feed the analyzer's detections; the view counts flows at end.
            Observation::FlowStarted { .. } => {}
            Observation::FlowEnded(record) => {
                let protocol = match record.app_proto {
                    Some(p) => p.name().to_owned(),
                    None => format!(
                        "{}/{}",
                        crate::output::eve::proto_name(record.protocol).to_lowercase(),
                        record.dest_port
                    ),
                };
                let packets = record.to_server.packets + record.to_client.packets;
                let bytes = record.to_server.bytes + record.to_client.bytes;
                self.flows.flows_ended += 1;
                self.flows.packets += packets;
                self.flows.bytes += bytes;
                *self.flows.by_protocol.entry(protocol.clone()).or_default() += 1;
                *self
                    .flows
                    .bytes_by_protocol
                    .entry(protocol.clone())
                    .or_default() += bytes;
                for (me, peer, is_client) in [
                    (record.src_ip, record.dest_ip, true),
                    (record.dest_ip, record.src_ip, false),
                ] {
                    if let Some(device) = self.devices.get_mut(&me.to_string()) {
                        device.packets += if is_client {
                            record.to_server.packets
                        } else {
                            record.to_client.packets
                        };
                        device.bytes += if is_client {
                            record.to_server.bytes
                        } else {
                            record.to_client.bytes
                        };
                        let peer_entry = device.peers.entry(peer).or_default();
                        peer_entry.1 += 1;
                        if let Some(app) = record.app_proto {
                            device.protocols.insert(app);
                            peer_entry.0.insert(app);
                            if is_client {
                                device.client_of.insert(app);
                            } else {
                                device.served.insert(app);
                            }
                        }
                    }
                }
                let key = (record.src_ip, record.dest_ip, protocol.clone());
                if self.conversations.len() < MAX_CONVERSATIONS
                    || self.conversations.contains_key(&key)
                {
                    let conversation =
                        self.conversations
                            .entry(key)
                            .or_insert_with(|| Conversation {
                                client: record.src_ip,
                                server: record.dest_ip,
                                protocol,
                                flows: 0,
                                packets: 0,
                                bytes: 0,
                            });
                    conversation.flows += 1;
                    conversation.packets += packets;
                    conversation.bytes += bytes;
                }
            }
            Observation::Identity {
                ts_ns,
                device,
                protocol,
                field,
                value,
            } => {
                let Some(state) = self.device_mut(device.to_string()) else {
                    return;
                };
                state.ip = Some(*device);
                state.protocols.insert(*protocol);
                let value = value.as_str().to_owned();
                if state.identity.get(field) != Some(&value) {
                    if state.history.len() >= MAX_HISTORY {
                        state.history.remove(0);
                    }
                    state.history.push(IdentityChange {
                        timestamp: rfc3339_micros(*ts_ns),
                        protocol: *protocol,
                        field: *field,
                        value: value.clone(),
                    });
                    state.identity.insert(*field, value);
                }
            }
            Observation::Command { client, kind, .. } => {
                use crate::observe::CommandKind;
                if matches!(
                    kind,
                    CommandKind::Program
                        | CommandKind::Firmware
                        | CommandKind::Stop
                        | CommandKind::Start
                ) {
                    if let Some(device) = self.devices.get_mut(&client.0.to_string()) {
                        device.programmed = true;
                    }
                }
            }
            Observation::ProtocolError { .. } => {}
            // Kernel-shed bulk: the senders' packet and byte counts grow, as the
            // inventory's do (flows are counted at their end from user space's view).
            Observation::KernelConversation {
                client,
                server,
                packets_to_server,
                bytes_to_server,
                packets_to_client,
                bytes_to_client,
                ..
            } => {
                for (me, packets, bytes) in [
                    (client, packets_to_server, bytes_to_server),
                    (server, packets_to_client, bytes_to_client),
                ] {
                    if let Some(device) = self.devices.get_mut(&me.to_string()) {
                        device.packets += *packets;
                        device.bytes += *bytes;
                    }
                }
            }
        }
    }

    /// Records an alert (as the sinks receive it); assigns an id when it has none.
    pub fn alert(&mut self, mut alert: Alert) -> Alert {
        if alert.id == 0 {
            alert.id = self.alerts.len() as u64 + 1;
        }
        if self.alerts.len() < MAX_LIST {
            self.alerts.push(alert.clone());
        }
        alert
    }

    /// The capture source ended.
    pub fn capture_finished(&mut self) {
        self.capture_finished = true;
    }

    fn class_of(device: &DeviceState) -> &'static str {
        if device.programmed {
            "engineering_workstation"
        } else if !device.served.is_empty() {
            "plc"
        } else if !device.client_of.is_empty() {
            "hmi"
        } else if device.ip.is_none() {
            "l2_device"
        } else {
            "host"
        }
    }

    fn summary(id: &str, device: &DeviceState) -> DeviceSummary {
        let identity = |field| device.identity.get(&field).cloned();
        DeviceSummary {
            id: id.to_owned(),
            ip: device.ip,
            mac: device.mac.as_ref().map(mac_text),
            vlan: device.vlan,
            class: Self::class_of(device).to_owned(),
            vendor: identity(IdentityField::Vendor),
            model: identity(IdentityField::Model).or_else(|| identity(IdentityField::Product)),
            firmware: identity(IdentityField::Firmware),
            protocols: device.protocols.iter().copied().collect(),
            first_seen: rfc3339_micros(device.first_ns),
            last_seen: rfc3339_micros(device.last_ns),
            packets: device.packets,
            bytes: device.bytes,
        }
    }
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

impl ControlHandler for InventoryView {
    fn list_devices(&mut self, filter: &DeviceFilter) -> Vec<DeviceSummary> {
        let mut out: Vec<DeviceSummary> = self
            .devices
            .iter()
            .map(|(id, device)| Self::summary(id, device))
            .filter(|d| {
                filter.class.as_deref().is_none_or(|class| d.class == class)
                    && filter
                        .protocol
                        .as_deref()
                        .is_none_or(|p| d.protocols.iter().any(|dp| dp.name() == p))
                    && filter.q.as_deref().is_none_or(|q| {
                        [
                            Some(d.id.as_str()),
                            d.mac.as_deref(),
                            d.vendor.as_deref(),
                            d.model.as_deref(),
                        ]
                        .into_iter()
                        .flatten()
                        .any(|field| contains_ci(field, q))
                    })
            })
            .collect();
        out.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.id.cmp(&b.id)));
        out.truncate(MAX_LIST);
        out
    }

    fn device(&mut self, id: &str) -> Option<DeviceDetail> {
        let device = self.devices.get(id)?;
        Some(DeviceDetail {
            summary: Self::summary(id, device),
            identity: device.identity.clone(),
            identity_history: device.history.clone(),
            peers: device
                .peers
                .iter()
                .map(|(ip, (protocols, flows))| PeerView {
                    ip: *ip,
                    protocols: protocols.iter().copied().collect(),
                    flows: *flows,
                })
                .collect(),
        })
    }

    fn list_alerts(&mut self, filter: &AlertFilter) -> Vec<Alert> {
        self.alerts
            .iter()
            .rev()
            .filter(|a| {
                filter.status.is_none_or(|s| a.status == s)
                    && filter.severity.is_none_or(|s| a.severity.0 <= s)
                    && filter.signature.as_deref().is_none_or(|s| a.signature == s)
                    && filter
                        .device
                        .is_none_or(|ip| a.src_ip == Some(ip) || a.dest_ip == Some(ip))
            })
            .cloned()
            .collect()
    }

    fn alert(&mut self, id: u64) -> Option<Alert> {
        self.alerts.iter().find(|a| a.id == id).cloned()
    }

    fn set_alert_status(&mut self, id: u64, status: AlertStatus) -> Result<Alert, ControlError> {
        let alert = self
            .alerts
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or(ControlError::NoSuchAlert { id })?;
        alert.status = status;
        Ok(alert.clone())
    }

    fn baseline(&mut self) -> BaselineView {
        BaselineView {
            learning: false,
            progress: 1.0,
            started: None,
            ends: None,
            entries: 0,
        }
    }

    fn change_baseline(&mut self, action: BaselineAction) -> Result<BaselineView, ControlError> {
        Err(ControlError::Unsupported {
            what: format!("{action:?}: the baseline is not built in this run"),
        })
    }

    fn flows(&mut self) -> FlowsSummary {
        let mut summary = self.flows.clone();
        let mut conversations: Vec<Conversation> = self.conversations.values().cloned().collect();
        conversations.sort_by_key(|c| std::cmp::Reverse(c.bytes));
        conversations.truncate(MAX_LIST);
        summary.conversations = conversations;
        summary
    }

    fn health(&mut self) -> HealthView {
        HealthView {
            devices: self.devices.len() as u64,
            alerts: self.alerts.len() as u64,
            alerts_new: self
                .alerts
                .iter()
                .filter(|a| a.status == AlertStatus::New)
                .count() as u64,
            observations: self.observations,
            learning: false,
            capture_finished: self.capture_finished,
        }
    }
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
            context: serde_json::Value::Null,
            first_ns: 1_700_000_000_000_000_000,
            last_ns: 1_700_000_000_000_000_000,
            count: 1,
            status: AlertStatus::New,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample_alert;
    use super::*;

    #[test]
    fn requests_are_answered_through_their_reply_channel() {
        let mut view = InventoryView::new();
        view.observe(&Observation::DeviceSeen {
            ts_ns: 5,
            mac: Some([2, 0, 0, 0, 0, 1]),
            ip: Some("10.0.0.5".parse().expect("ip")),
            vlan: 0,
        });
        let id = view.alert(sample_alert()).id;
        assert_eq!(id, 1);

        let (tx, rx) = reply_channel();
        view.answer(ControlRequest::ListDevices(DeviceFilter::default(), tx));
        let devices = rx.recv().expect("reply");
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].id, "10.0.0.5");
        assert_eq!(devices[0].mac.as_deref(), Some("02:00:00:00:00:01"));

        let (tx, rx) = reply_channel();
        view.answer(ControlRequest::SetAlertStatus(
            1,
            AlertStatus::Acknowledged,
            tx,
        ));
        assert_eq!(
            rx.recv().expect("reply").map(|a| a.status),
            Ok(AlertStatus::Acknowledged)
        );

        let (tx, rx) = reply_channel();
        view.answer(ControlRequest::SetAlertStatus(9, AlertStatus::Muted, tx));
        assert_eq!(
            rx.recv().expect("reply"),
            Err(ControlError::NoSuchAlert { id: 9 })
        );

        let (tx, rx) = reply_channel();
        view.answer(ControlRequest::ListAlerts(
            AlertFilter {
                status: Some(AlertStatus::New),
                ..Default::default()
            },
            tx,
        ));
        assert!(rx.recv().expect("reply").is_empty());
    }
}
