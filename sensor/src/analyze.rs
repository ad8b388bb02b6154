//! The analyzer thread: the single owner of the inventory, the baseline and the alerts.
//! It consumes observations in arrival order and writes the store in batched
//! transactions. Detections key on packet time (never the wall clock), so replays are
//! deterministic, and every decision is made so that its outcome does not depend on the
//! interleaving of workers (sets, thresholds over sliding windows, stable alert keys).
//!
//! **What counts as a device.** A device is either an internal unicast IP address
//! (inside `networks.internal`) that sent at least one packet (IP source, or ARP sender),
//! or a unicast MAC address that sent frames but never carried an internal source IP
//! (hosts seen only at layer 2 — PROFINET, GOOSE, LLDP — and routers that only forward
//! foreign addresses). A MAC that carries internal IPs is represented by those IPs.
//!
//! **Learning.** For `learning.duration` of packet time after the first observation
//! (persisted, so a restart continues), every fact — devices, conversations, command
//! keys, writers, remote-access pairs, external destinations, engineering workstations,
//! discovery sources — goes into the baseline. Afterwards a fact not in the baseline
//! raises its detection. Dangerous commands and protocol violations alert always.
//!
//! The detections and their exact rules are listed in `docs/DETECTIONS.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::advisories::DeviceMatch;
use crate::config::Policy;
use crate::detect::{self, Alert, AlertStatus, Detection};
use crate::dissect::inspect::EventSink;
use crate::dissect::Protocol;
use crate::layers::{self, Mac};
use crate::metrics::Metrics;
use crate::observe::{
    mono_ns, CommandKind, FlowRecord, IdentityField, Observation, ProtocolErrorKind, ShortText,
    Stamped,
};
use crate::oui;
use crate::output::eve::EveRecord;
use crate::output::sinks::AlertSinks;
use crate::store::{self, AlertRow, BaselineItem, DeviceKey, DeviceRow, Store};

mod control;
use control::FlowBook;
mod vulnerabilities;

/// Peers remembered per device; more are counted.
const MAX_PEERS: usize = 64;
/// Identity changes remembered per device (oldest dropped).
const MAX_IDENTITY_HISTORY: usize = 32;
/// Services (IP protocol, port) remembered per device.
const MAX_SERVED: usize = 32;
const MAX_VLANS: usize = 8;
/// Distinct alerts held; beyond it new alerts are counted (`alert_table_full`).
const MAX_ALERTS: usize = 100_000;
/// Sources whose recent flow starts are tracked for scans.
const MAX_SCAN_SOURCES: usize = 65_536;
/// A repeated alert is written to the alert sinks at most this often (packet time).
const ALERT_THROTTLE_NS: u64 = 60 * 1_000_000_000;
/// Sightings while learning (devices are re-reported at most once a minute) before a
/// device counts as communicating regularly (for
/// the quiet-device rule of `device_silent`).
const QUIET_MIN_SIGHTINGS: u32 = 2;
/// How often (packet time) devices are checked for having gone quiet.
const QUIET_CHECK_NS: u64 = 1_000_000_000;
/// (server, unit id) pairs remembered per source for Modbus unit-id sweeps.
const MAX_UNIT_SWEEP_TARGETS: usize = 4096;
/// Observations between store commits, and the longest wall time between them.
const COMMIT_EVERY: u64 = 4_096;
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);

/// TCP ports of remote-access tools (IANA and vendor documentation): SSH, Telnet,
/// pcAnywhere, Radmin, RDP, VNC HTTP, VNC displays 0-3, TeamViewer, AnyDesk.
const REMOTE_ACCESS_TCP: [u16; 13] = [
    22, 23, 5631, 4899, 3389, 5800, 5900, 5901, 5902, 5903, 5938, 7070, 6568,
];
/// UDP ports: RDP's UDP transport, TeamViewer.
const REMOTE_ACCESS_UDP: [u16; 2] = [3389, 5938];

/// A client/server role per protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    pub client: bool,
    pub server: bool,
}

/// One change of a reported identity attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityChange {
    pub field: IdentityField,
    pub old: String,
    pub new: String,
    pub ts_ns: u64,
    pub protocol: Protocol,
}

/// What the inventory knows about one device (stored as JSON in `devices.record`, and
/// read back when the analyzer starts on an existing store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    #[serde(serialize_with = "serialize_mac", deserialize_with = "deserialize_mac")]
    pub mac: Option<Mac>,
    pub ip: Option<IpAddr>,
    /// The first VLAN it was seen on; all of them in `vlans`.
    pub vlan: u16,
    pub vlans: Vec<u16>,
    /// Registered owner of the MAC's OUI (looked up again when read back).
    #[serde(skip_deserializing)]
    pub vendor: Option<&'static str>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub protocols: BTreeMap<Protocol, Roles>,
    pub peers: BTreeSet<IpAddr>,
    pub peers_not_kept: u64,
    pub identity: BTreeMap<IdentityField, String>,
    pub identity_history: VecDeque<IdentityChange>,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// (IP protocol, port) it answered on.
    pub served: BTreeSet<(u8, u16)>,
    pub programmed_others: bool,
    /// Sightings while learning (counted once per distinct packet time).
    #[serde(default)]
    pub learning_sightings: u32,
    /// The longest gap between two sightings while learning: the device's learned
    /// interval for the quiet-device rule.
    #[serde(default)]
    pub learned_gap_ns: u64,
    /// CISA advisories its identity matches (see `analyze/vulnerabilities.rs`).
    #[serde(default)]
    pub vulnerabilities: Vec<DeviceMatch>,
    #[serde(skip)]
    silent: Option<u64>,
    #[serde(skip)]
    unanswered: (u64, u64),
}

fn deserialize_mac<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.and_then(|t| match t.parse::<DeviceKey>() {
        Ok(DeviceKey::Mac(mac)) => Some(mac),
        _ => format!("mac:{t}")
            .parse::<DeviceKey>()
            .ok()
            .and_then(|k| match k {
                DeviceKey::Mac(mac) => Some(mac),
                DeviceKey::Ip(_) => None,
            }),
    }))
}

fn serialize_mac<S: serde::Serializer>(mac: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(mac) => s.serialize_str(&store::format_mac(mac)),
        None => s.serialize_none(),
    }
}

/// A device class guess and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassGuess {
    pub class: &'static str,
    pub evidence: Vec<String>,
}

impl DeviceRecord {
    fn new(mac: Option<Mac>, ip: Option<IpAddr>, vlan: u16, ts_ns: u64) -> DeviceRecord {
        DeviceRecord {
            mac,
            ip,
            vlan,
            vlans: vec![vlan],
            vendor: mac.as_ref().and_then(oui::vendor),
            first_seen_ns: ts_ns,
            last_seen_ns: ts_ns,
            protocols: BTreeMap::new(),
            peers: BTreeSet::new(),
            peers_not_kept: 0,
            identity: BTreeMap::new(),
            identity_history: VecDeque::new(),
            packets_sent: 0,
            bytes_sent: 0,
            packets_received: 0,
            bytes_received: 0,
            served: BTreeSet::new(),
            programmed_others: false,
            learning_sightings: 0,
            learned_gap_ns: 0,
            vulnerabilities: Vec::new(),
            silent: None,
            unanswered: (0, 0),
        }
    }

    fn add_peer(&mut self, peer: IpAddr) {
        if self.peers.len() < MAX_PEERS {
            self.peers.insert(peer);
        } else if !self.peers.contains(&peer) {
            self.peers_not_kept += 1;
        }
    }

    fn role(&mut self, protocol: Protocol, server: bool) {
        let roles = self.protocols.entry(protocol).or_default();
        if server {
            roles.server = true;
        } else {
            roles.client = true;
        }
    }

    /// The class guess from roles and behaviour (PLC, RTU, HMI, engineering
    /// workstation, BACnet controller, IT host).
    pub fn class(&self) -> ClassGuess {
        let mut evidence = Vec::new();
        let serves = |p: Protocol| self.protocols.get(&p).is_some_and(|r| r.server);
        let class = if self.programmed_others {
            evidence.push("sent programming commands".to_owned());
            "engineering_workstation"
        } else if serves(Protocol::Dnp3) {
            evidence.push("DNP3 outstation".to_owned());
            "rtu"
        } else if serves(Protocol::Bacnet) {
            evidence.push("answers BACnet".to_owned());
            "bacnet_controller"
        } else if let Some(p) = [Protocol::S7comm, Protocol::Modbus, Protocol::Enip]
            .into_iter()
            .find(|p| serves(*p))
        {
            evidence.push(format!("{} server", p.name()));
            "plc"
        } else if let Some((p, _)) = self.protocols.iter().find(|(_, r)| r.client) {
            evidence.push(format!("{} client", p.name()));
            "hmi"
        } else {
            evidence.push("no industrial protocol role".to_owned());
            "it_host"
        };
        if let Some(vendor) = self.vendor {
            evidence.push(format!("MAC vendor {vendor}"));
        }
        ClassGuess { class, evidence }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "class".to_owned(),
                serde_json::to_value(self.class()).unwrap_or(serde_json::Value::Null),
            );
        }
        value
    }
}

/// Analyzer counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AnalyzerCounters {
    pub observations: u64,
    pub flow_events: u64,
    pub flow_starts: u64,
    pub commands: u64,
    pub identities: u64,
    pub protocol_errors: u64,
    /// Device sightings not recorded because the inventory was at `inventory.max_devices`.
    pub devices_over_capacity: u64,
    /// Alerts not stored because the alert table was full.
    pub alerts_over_capacity: u64,
    /// Scan trackers not created because `MAX_SCAN_SOURCES` sources were tracked.
    pub scan_sources_over_capacity: u64,
    /// Alert occurrences folded into an existing alert.
    pub alert_repeats: u64,
    pub store_commits: u64,
    pub store_errors: u64,
}

/// Packet-to-alert latency: from the worker sending the triggering observation to the
/// analyzer raising the alert (wall clock, nanoseconds).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// One distinct alert raised in the run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RaisedAlert {
    pub signature: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// For alerts about a MAC-only device.
    pub src_mac: Option<String>,
    pub count: u64,
}

/// What the analyzer reports when the pipeline ends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnalyzerReport {
    pub devices: u64,
    /// Distinct alerts raised (new or repeated) in this run.
    pub alerts: u64,
    pub alerts_by_signature: BTreeMap<String, u64>,
    pub raised: Vec<RaisedAlert>,
    pub alert_latency_ns: LatencySummary,
    pub learning: bool,
    pub baseline_items: u64,
    pub counters: AnalyzerCounters,
}

struct AlertState {
    id: u64,
    status: AlertStatus,
    count: u64,
    last_ns: u64,
    last_emitted_ns: Option<u64>,
    raised_this_run: bool,
    signature: &'static str,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_mac: Option<String>,
}

/// Recent flow starts of one source, for scan detection over a sliding window.
#[derive(Default)]
struct ScanTracker {
    recent: VecDeque<(u64, IpAddr, u16)>,
    discovery: VecDeque<(u64, IpAddr)>,
    /// (time, server, Modbus unit id) of recent requests, distinct pairs only.
    units: VecDeque<(u64, IpAddr, u8)>,
}

/// The analyzer's state.
pub struct Analyzer {
    policy: Arc<Policy>,
    by_ip: HashMap<IpAddr, DeviceRecord>,
    by_mac: HashMap<Mac, DeviceRecord>,
    /// MACs seen carrying an internal IP: not devices of their own.
    macs_with_ip: HashSet<Mac>,
    /// IPv4 addresses each MAC claimed (at most two kept: two makes it a router).
    mac_ipv4: HashMap<Mac, [Option<IpAddr>; 2]>,
    conflicts: HashSet<IpAddr>,
    baseline: HashSet<BaselineItem>,
    learning_started_ns: Option<u64>,
    learning_ended: bool,
    alerts: HashMap<String, AlertState>,
    next_alert_id: u64,
    inventory_full_raised: bool,
    alert_table_full_raised: bool,
    scans: HashMap<IpAddr, ScanTracker>,
    /// Packet time of the next quiet-device check.
    next_quiet_check_ns: u64,
    store: Store,
    store_version: i64,
    pending: store::Batch,
    dirty: HashSet<DeviceKey>,
    pending_alerts: BTreeMap<String, AlertRow>,
    since_commit: u64,
    last_commit: Instant,
    eve: Option<EventSink>,
    /// Syslog/CEF, webhook and the alert metrics (EVE alerts go through `eve`, which
    /// waits rather than drops).
    sinks: AlertSinks,
    metrics: Option<Arc<Metrics>>,
    /// Flows and conversations for the API's flow summary.
    flow_book: FlowBook,
    /// The advisory catalogue and the vulnerable-device counts.
    vulnerabilities: vulnerabilities::Vulnerabilities,
    /// Latest packet time observed: "now" for the baseline's progress.
    latest_ns: u64,
    /// Set when the capture source ended (a replay); a live sensor never finishes.
    pub capture_finished: bool,
    latency: Option<hdrhistogram::Histogram<u64>>,
    /// Monotonic send time of the observation being handled.
    current_mono_ns: u64,
    pub counters: AnalyzerCounters,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("devices", &self.device_count())
            .finish()
    }
}

fn new_histogram() -> Option<hdrhistogram::Histogram<u64>> {
    // 1 ns to 1 hour, 3 significant digits: a fixed-size histogram.
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3).ok()
}

impl Analyzer {
    /// Puts a reloaded policy in force from the next observation on (see `reload`).
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
    }

    /// An analyzer over a private in-memory store.
    pub fn new(policy: Arc<Policy>, eve: Option<EventSink>) -> Analyzer {
        match Store::in_memory() {
            Ok(store) => Self::with_store(policy, eve, store),
            // An in-memory database only fails when SQLite cannot allocate.
            Err(error) => panic!("cannot create the in-memory store: {error}"),
        }
    }

    /// An analyzer that continues from what `store` holds (inventory, baseline,
    /// learning progress, alert history).
    pub fn with_store(policy: Arc<Policy>, eve: Option<EventSink>, store: Store) -> Analyzer {
        let mut analyzer = Analyzer {
            policy,
            by_ip: HashMap::new(),
            by_mac: HashMap::new(),
            macs_with_ip: HashSet::new(),
            mac_ipv4: HashMap::new(),
            conflicts: HashSet::new(),
            baseline: HashSet::new(),
            learning_started_ns: None,
            learning_ended: false,
            alerts: HashMap::new(),
            next_alert_id: 1,
            inventory_full_raised: false,
            alert_table_full_raised: false,
            scans: HashMap::new(),
            next_quiet_check_ns: 0,
            store,
            store_version: 0,
            pending: store::Batch::default(),
            dirty: HashSet::new(),
            pending_alerts: BTreeMap::new(),
            since_commit: 0,
            last_commit: Instant::now(),
            eve,
            sinks: AlertSinks::new(None),
            metrics: None,
            flow_book: FlowBook::default(),
            vulnerabilities: vulnerabilities::Vulnerabilities::default(),
            latest_ns: 0,
            capture_finished: false,
            latency: new_histogram(),
            current_mono_ns: 0,
            counters: AnalyzerCounters::default(),
        };
        if analyzer.reload().is_err() || analyzer.load_devices().is_err() {
            analyzer.counters.store_errors += 1;
        }
        analyzer.rematch_all();
        analyzer
    }

    /// Sends raised alerts to `sinks` too, and records alert latency and learning
    /// progress in `metrics`.
    pub fn set_outputs(&mut self, sinks: AlertSinks, metrics: Option<Arc<Metrics>>) {
        self.sinks = sinks;
        self.metrics = metrics;
        self.publish_vulnerable_devices();
    }

    /// Lets go of the EVE channel (the capture ended: nothing more to write), so the
    /// EVE writer can finish while the analyzer stays up to answer the API.
    pub fn close_events(&mut self) {
        self.eve = None;
    }

    /// Hands the alert sinks back (to close them and collect their reports).
    pub fn take_sinks(&mut self) -> AlertSinks {
        std::mem::replace(&mut self.sinks, AlertSinks::new(None))
    }

    /// An answered flow of an industrial protocol makes its ends client and server of
    /// it, even when no command was recognised (e.g. only reads of unknown codes).
    fn flow_roles(&mut self, record: &FlowRecord) {
        let Some(protocol) = record.app_proto else {
            return;
        };
        if record.to_client.packets == 0 {
            return;
        }
        for (ip, server) in [(record.src_ip, false), (record.dest_ip, true)] {
            if let Some(device) = self.by_ip.get_mut(&ip) {
                device.role(protocol, server);
                self.dirty.insert(DeviceKey::Ip(ip));
            }
        }
    }

    /// Reads the stored inventory back (a restart continues with it).
    fn load_devices(&mut self) -> store::Result<()> {
        for (key, record) in self.store.devices()? {
            let (Ok(key), Ok(mut record)) = (
                key.parse::<DeviceKey>(),
                serde_json::from_value::<DeviceRecord>(record),
            ) else {
                continue;
            };
            if self.entries() >= self.policy.max_devices {
                break;
            }
            record.vendor = record.mac.as_ref().and_then(oui::vendor);
            match key {
                DeviceKey::Ip(ip) => {
                    if let Some(mac) = record.mac {
                        self.macs_with_ip.insert(mac);
                    }
                    self.by_ip.insert(ip, record);
                }
                DeviceKey::Mac(mac) => {
                    self.by_mac.insert(mac, record);
                }
            }
        }
        Ok(())
    }

    /// Reads learning progress, baseline and alert states from the store.
    fn reload(&mut self) -> store::Result<()> {
        let learning = self.store.learning()?;
        self.learning_started_ns = learning.started_ns.or(self.learning_started_ns);
        if learning.started_ns.is_none() && self.pending.learning_started_ns.is_none() {
            // Learning restarted by an operator: start again at the next observation.
            self.learning_started_ns = None;
        }
        self.learning_ended = learning.ended;
        self.baseline = self.store.baseline()?.into_iter().collect();
        for (key, id, status, count, last_ns) in self.store.alert_states()? {
            self.next_alert_id = self.next_alert_id.max(id + 1);
            match self.alerts.get_mut(&key) {
                Some(state) => state.status = status,
                None => {
                    let Some((signature, src, dst, src_mac)) = parse_alert_key(&key) else {
                        continue;
                    };
                    if signature == "inventory_full" {
                        self.inventory_full_raised = true;
                    }
                    self.alerts.insert(
                        key,
                        AlertState {
                            id,
                            status,
                            count,
                            last_ns,
                            last_emitted_ns: Some(last_ns),
                            raised_this_run: false,
                            signature,
                            src,
                            dst,
                            src_mac,
                        },
                    );
                }
            }
        }
        self.store_version = self.store.data_version()?;
        // New advisories imported by `otsensor advisories import`.
        self.refresh_advisories();
        Ok(())
    }

    /// Devices by the definition in the module documentation.
    pub fn device_count(&self) -> u64 {
        let mac_only = self
            .by_mac
            .keys()
            .filter(|mac| !self.macs_with_ip.contains(*mac))
            .count();
        (self.by_ip.len() + mac_only) as u64
    }

    fn entries(&self) -> usize {
        self.by_ip.len() + self.by_mac.len()
    }

    /// True while `ts_ns` lies in the learning period.
    pub fn is_learning(&self, ts_ns: u64) -> bool {
        if self.learning_ended || self.policy.learning_duration_ns == 0 {
            return false;
        }
        let started = self.learning_started_ns.unwrap_or(ts_ns);
        ts_ns < started.saturating_add(self.policy.learning_duration_ns)
    }

    fn learn(&mut self, item: BaselineItem, ts_ns: u64) {
        if self.baseline.insert(item) {
            self.pending.baseline.push((item, ts_ns));
        }
    }

    /// Consumes one observation from a worker.
    pub fn handle(&mut self, stamped: Stamped) {
        self.current_mono_ns = stamped.mono_ns;
        self.observe(stamped.observation);
        self.since_commit += 1;
        if self.since_commit >= COMMIT_EVERY
            || (self.since_commit.is_multiple_of(64)
                && self.last_commit.elapsed() >= COMMIT_INTERVAL)
        {
            self.commit();
        }
    }

    /// Consumes one observation (no latency accounting).
    pub fn observe(&mut self, observation: Observation) {
        self.counters.observations += 1;
        let ts_ns = observation.ts_ns();
        self.latest_ns = self.latest_ns.max(ts_ns);
        if self.learning_started_ns.is_none() && self.policy.learning_duration_ns > 0 {
            self.learning_started_ns = Some(ts_ns);
            self.pending.learning_started_ns = Some(ts_ns);
        }
        match observation {
            Observation::DeviceSeen {
                ts_ns,
                mac,
                ip,
                vlan,
            } => self.device_seen(ts_ns, mac, ip, vlan),
            Observation::FlowStarted {
                ts_ns,
                flow_id,
                client,
                server,
                ip_protocol,
                app_proto,
                tcp_flags,
                ..
            } => {
                self.counters.flow_starts += 1;
                self.flow_started(FlowStart {
                    ts_ns,
                    flow_id,
                    client,
                    server,
                    ip_protocol,
                    app_proto,
                    tcp_flags,
                });
            }
            Observation::FlowEnded(record) => {
                self.counters.flow_events += 1;
                self.flow_ended(&record);
                self.flow_roles(&record);
                self.flow_book.add(&record);
                if let Some(eve) = self.eve.as_mut() {
                    eve.send(EveRecord::Flow(record));
                }
            }
            Observation::Command {
                ts_ns,
                flow_id,
                client,
                server,
                protocol,
                kind,
                code,
                unit,
            } => {
                self.counters.commands += 1;
                self.command(ts_ns, flow_id, client, server, protocol, kind, code, unit);
            }
            Observation::Identity {
                ts_ns,
                device,
                protocol,
                field,
                value,
            } => {
                self.counters.identities += 1;
                self.identity(ts_ns, device, protocol, field, value);
            }
            Observation::ProtocolError {
                ts_ns,
                flow_id,
                client,
                server,
                sender_is_server,
                protocol,
                kind,
                code,
            } => {
                self.counters.protocol_errors += 1;
                let (src, dst) = if sender_is_server {
                    (server, client)
                } else {
                    (client, server)
                };
                self.protocol_error(ts_ns, flow_id, src, dst, protocol, kind, code);
            }
            Observation::KernelConversation {
                ts_ns,
                client,
                server,
                packets_to_server,
                bytes_to_server,
                packets_to_client,
                bytes_to_client,
                ..
            } => self.kernel_conversation(
                ts_ns,
                (client, packets_to_server, bytes_to_server),
                (server, packets_to_client, bytes_to_client),
            ),
        }
        self.check_quiet(ts_ns);
    }

    /// Bulk the kernel shed: adds it to both ends' traffic and peers. Only devices the
    /// inventory already knows are updated (a shed flow's first packets reached user
    /// space, so both ends normally are); creating devices here would bypass the
    /// sightings that new-device detection and the capacity limit judge.
    fn kernel_conversation(
        &mut self,
        ts_ns: u64,
        (client, client_packets, client_bytes): (IpAddr, u64, u64),
        (server, server_packets, server_bytes): (IpAddr, u64, u64),
    ) {
        for (this, peer, sent, sent_bytes, received, received_bytes) in [
            (
                client,
                server,
                client_packets,
                client_bytes,
                server_packets,
                server_bytes,
            ),
            (
                server,
                client,
                server_packets,
                server_bytes,
                client_packets,
                client_bytes,
            ),
        ] {
            if let Some(device) = self.by_ip.get_mut(&this) {
                device.packets_sent += sent;
                device.bytes_sent += sent_bytes;
                device.packets_received += received;
                device.bytes_received += received_bytes;
                device.last_seen_ns = device.last_seen_ns.max(ts_ns);
                device.add_peer(peer);
                self.dirty.insert(DeviceKey::Ip(this));
            }
        }
    }

    fn mark_dirty(&mut self, key: DeviceKey) {
        self.dirty.insert(key);
    }

    fn device_seen(&mut self, ts_ns: u64, mac: Option<Mac>, ip: Option<IpAddr>, vlan: u16) {
        let key = match (ip, mac) {
            (Some(ip), _) => DeviceKey::Ip(ip),
            (None, Some(mac)) => DeviceKey::Mac(mac),
            (None, None) => return,
        };
        if let (Some(ip), Some(mac)) = (ip, mac) {
            self.macs_with_ip.insert(mac);
            self.check_ip_claim(ts_ns, ip, mac, vlan);
        }
        let known = match key {
            DeviceKey::Ip(ip) => self.by_ip.contains_key(&ip),
            DeviceKey::Mac(mac) => self.by_mac.contains_key(&mac),
        };
        let learning = self.is_learning(ts_ns);
        if !known && self.entries() >= self.policy.max_devices {
            self.counters.devices_over_capacity += 1;
            if !self.inventory_full_raised {
                self.inventory_full_raised = true;
                let max = self.policy.max_devices;
                self.raise(
                    "inventory_full",
                    ts_ns,
                    Subject::default(),
                    format!("inventory reached inventory.max_devices = {max}; new devices are counted, not stored"),
                    serde_json::json!({ "max_devices": max }),
                    Vec::new(),
                );
            }
            return;
        }
        let record = match key {
            DeviceKey::Ip(ip) => self
                .by_ip
                .entry(ip)
                .or_insert_with(|| DeviceRecord::new(mac, Some(ip), vlan, ts_ns)),
            DeviceKey::Mac(mac) => self
                .by_mac
                .entry(mac)
                .or_insert_with(|| DeviceRecord::new(Some(mac), None, vlan, ts_ns)),
        };
        if learning {
            // Counted once per packet time: a replay after a restart re-reads packets
            // the stored record already accounts for, and must not count them again.
            if !known {
                record.learning_sightings = 1;
            } else if ts_ns > record.last_seen_ns {
                record.learning_sightings = record.learning_sightings.saturating_add(1);
                record.learned_gap_ns = record.learned_gap_ns.max(ts_ns - record.last_seen_ns);
            }
        }
        record.first_seen_ns = record.first_seen_ns.min(ts_ns);
        record.last_seen_ns = record.last_seen_ns.max(ts_ns);
        if mac.is_some() && record.mac != mac {
            record.mac = mac;
            record.vendor = mac.as_ref().and_then(oui::vendor);
        }
        if !record.vlans.contains(&vlan) && record.vlans.len() < MAX_VLANS {
            record.vlans.push(vlan);
        }
        let back = match record.silent {
            Some(since) if ts_ns > since => {
                record.silent = None;
                record.unanswered = (0, 0);
                true
            }
            _ => false,
        };
        self.mark_dirty(key);
        if back {
            self.raise(
                "device_back",
                ts_ns,
                Subject::device(key),
                "a device reported silent is sending again".to_owned(),
                serde_json::Value::Null,
                Vec::new(),
            );
        }
        // A MAC that also carries an internal IP is represented by the IP.
        if let DeviceKey::Mac(mac) = key {
            if self.macs_with_ip.contains(&mac) {
                return;
            }
        }
        let item = BaselineItem::Device(key);
        if learning {
            self.learn(item, ts_ns);
        } else if !self.baseline.contains(&item) {
            self.raise(
                "new_device",
                ts_ns,
                Subject::device(key),
                format!("device {key} is not in the baseline"),
                serde_json::json!({ "vlan": vlan, "mac": mac.as_ref().map(store::format_mac) }),
                vec![item],
            );
        }
    }

    /// `ip_conflict`: an IPv4 address claimed by a second MAC on the same VLAN, unless
    /// one of them is a router (a MAC that claimed two or more IPv4 addresses).
    fn check_ip_claim(&mut self, ts_ns: u64, ip: IpAddr, mac: Mac, vlan: u16) {
        if !ip.is_ipv4() || !layers::is_unicast_mac(&mac) {
            return;
        }
        let claims = self.mac_ipv4.entry(mac).or_default();
        if !claims.contains(&Some(ip)) {
            if let Some(slot) = claims.iter_mut().find(|s| s.is_none()) {
                *slot = Some(ip);
            }
        }
        let is_router = |claims: Option<&[Option<IpAddr>; 2]>| {
            claims.is_some_and(|c| c.iter().all(Option::is_some))
        };
        let Some(record) = self.by_ip.get(&ip) else {
            return;
        };
        let Some(previous) = record.mac else {
            return;
        };
        if previous == mac
            || !record.vlans.contains(&vlan)
            || is_router(self.mac_ipv4.get(&mac))
            || is_router(self.mac_ipv4.get(&previous))
            || !self.conflicts.insert(ip)
        {
            return;
        }
        let (a, b) = if previous < mac {
            (previous, mac)
        } else {
            (mac, previous)
        };
        self.raise(
            "ip_conflict",
            ts_ns,
            Subject {
                src: Some(ip),
                ..Subject::default()
            },
            format!(
                "{ip} claimed by {} and {}",
                store::format_mac(&a),
                store::format_mac(&b)
            ),
            serde_json::json!({ "macs": [store::format_mac(&a), store::format_mac(&b)], "vlan": vlan }),
            Vec::new(),
        );
    }

    fn is_baseline_device(&self, ip: IpAddr) -> bool {
        self.baseline
            .contains(&BaselineItem::Device(DeviceKey::Ip(ip)))
    }

    fn flow_started(&mut self, flow: FlowStart) {
        let (client, server) = (flow.client.0, flow.server.0);
        let port = flow.server.1;
        let learning = self.is_learning(flow.ts_ns);
        let client_internal = self.policy.is_internal(client);
        let server_internal = self.policy.is_internal(server);
        if let Some(device) = self.by_ip.get_mut(&client) {
            device.add_peer(server);
        }
        if let Some(device) = self.by_ip.get_mut(&server) {
            device.add_peer(client);
        }
        let remote = is_remote_access(flow.ip_protocol, port);
        // A TCP flow joined mid-stream has no reliable initiator: judge only real starts.
        let opening = flow.ip_protocol != 6 || flow.tcp_flags & 0x12 == 0x02;
        if client_internal != server_internal {
            let (internal, external) = if client_internal {
                (client, server)
            } else {
                (server, client)
            };
            let item = BaselineItem::External { internal, external };
            if learning {
                self.learn(item, flow.ts_ns);
            } else if opening
                && !self.policy.is_external_allowed(external)
                && !self.baseline.contains(&item)
            {
                self.raise_flow(
                    "internet_connection",
                    &flow,
                    format!("{client} -> {server}:{port} leaves the internal networks"),
                    vec![item],
                );
            }
        }
        if remote {
            let item = BaselineItem::RemoteAccess {
                client,
                server,
                port,
            };
            if learning {
                self.learn(item, flow.ts_ns);
            } else if opening && !self.baseline.contains(&item) {
                self.raise_flow(
                    "remote_access",
                    &flow,
                    format!("remote-access session {client} -> {server}:{port}"),
                    vec![item],
                );
            }
        }
        if client_internal && server_internal && learning {
            self.learn(
                BaselineItem::Conversation {
                    client,
                    server,
                    ip_protocol: flow.ip_protocol,
                    port,
                },
                flow.ts_ns,
            );
        }
        if opening && !learning {
            self.track_scan(&flow);
        }
    }

    /// Port and address scans over a sliding window of the source's flow starts.
    fn track_scan(&mut self, flow: &FlowStart) {
        let source = flow.client.0;
        let (target, port) = flow.server;
        let window = self.policy.scan_window_ns;
        let port_threshold = self.policy.port_scan_ports as usize;
        let host_threshold = self.policy.address_scan_hosts as usize;
        let cap = (port_threshold + host_threshold).clamp(16, 4096);
        if !self.scans.contains_key(&source) && self.scans.len() >= MAX_SCAN_SOURCES {
            let now = flow.ts_ns;
            self.scans.retain(|_, t| {
                t.recent
                    .back()
                    .is_some_and(|(ts, _, _)| ts.saturating_add(window) >= now)
            });
            if self.scans.len() >= MAX_SCAN_SOURCES {
                self.counters.scan_sources_over_capacity += 1;
                return;
            }
        }
        let tracker = self.scans.entry(source).or_default();
        while tracker
            .recent
            .front()
            .is_some_and(|(ts, _, _)| ts.saturating_add(window) < flow.ts_ns)
        {
            tracker.recent.pop_front();
        }
        if tracker
            .recent
            .iter()
            .any(|(_, host, p)| *host == target && *p == port)
        {
            return;
        }
        if tracker.recent.len() >= cap {
            tracker.recent.pop_front();
        }
        tracker.recent.push_back((flow.ts_ns, target, port));
        let ports_on_target = tracker
            .recent
            .iter()
            .filter(|(_, host, _)| *host == target)
            .count();
        let mut hosts: Vec<IpAddr> = tracker.recent.iter().map(|(_, h, _)| *h).collect();
        hosts.sort_unstable();
        hosts.dedup();
        if ports_on_target >= port_threshold {
            self.raise_flow(
                "scan",
                flow,
                format!(
                    "{source} probed {ports_on_target} ports of {target} within the scan window"
                ),
                Vec::new(),
            );
        }
        if hosts.len() >= host_threshold {
            let count = hosts.len();
            let mut subject = Subject::flow(flow);
            subject.dst = None;
            self.raise(
                "scan",
                flow.ts_ns,
                subject,
                format!("{source} probed {count} hosts within the scan window"),
                serde_json::json!({ "kind": "address_scan", "hosts": count }),
                Vec::new(),
            );
        }
    }

    fn flow_ended(&mut self, record: &FlowRecord) {
        let (client, server) = (record.src_ip, record.dest_ip);
        if let Some(device) = self.by_ip.get_mut(&client) {
            device.packets_sent += record.to_server.packets;
            device.bytes_sent += record.to_server.bytes;
            device.packets_received += record.to_client.packets;
            device.bytes_received += record.to_client.bytes;
            self.dirty.insert(DeviceKey::Ip(client));
        }
        let tcp = record.protocol == 6;
        let handshake = record.tcp_flags_to_client & 0x12 == 0x12;
        let answered = record.to_client.packets > 0 && (!tcp || handshake);
        let service = (record.protocol, record.dest_port);
        let silent_window = self.policy.silent_window_ns;
        let threshold = u64::from(self.policy.silent_unanswered_requests);
        let mut went_silent = false;
        if let Some(device) = self.by_ip.get_mut(&server) {
            device.packets_sent += record.to_client.packets;
            device.bytes_sent += record.to_client.bytes;
            device.packets_received += record.to_server.packets;
            device.bytes_received += record.to_server.bytes;
            if answered {
                if device.served.len() < MAX_SERVED {
                    device.served.insert(service);
                }
            } else if record.to_client.packets == 0
                && device.served.contains(&service)
                && device.silent.is_none()
            {
                // Requests to a service the device used to answer, unanswered.
                let (start, count) = device.unanswered;
                let (start, count) = if record.first_ns.saturating_sub(start) > silent_window {
                    (record.first_ns, 0)
                } else {
                    (start, count)
                };
                let count = count + record.to_server.packets;
                device.unanswered = (start, count);
                if count >= threshold {
                    device.silent = Some(record.last_ns);
                    went_silent = true;
                }
            }
            self.dirty.insert(DeviceKey::Ip(server));
        }
        if went_silent {
            self.raise(
                "device_silent",
                record.last_ns,
                Subject {
                    src: Some(server),
                    proto: Some(record.protocol),
                    app_proto: record.app_proto,
                    src_port: Some(record.dest_port),
                    ..Subject::default()
                },
                format!(
                    "{server} left {threshold} or more requests on port {} unanswered",
                    record.dest_port
                ),
                serde_json::Value::Null,
                Vec::new(),
            );
        }
        // A new conversation between two known devices, judged once it was answered.
        let internal = self.policy.is_internal(client) && self.policy.is_internal(server);
        if !internal || !answered || is_remote_access(record.protocol, record.dest_port) {
            return;
        }
        let item = BaselineItem::Conversation {
            client,
            server,
            ip_protocol: record.protocol,
            port: record.dest_port,
        };
        if self.is_learning(record.first_ns) {
            self.learn(item, record.first_ns);
        } else if !self.baseline.contains(&item)
            && self.is_baseline_device(client)
            && self.is_baseline_device(server)
        {
            let subject = Subject {
                src: Some(client),
                dst: Some(server),
                dst_port: Some(record.dest_port),
                proto: Some(record.protocol),
                flow_id: Some(record.flow_id),
                app_proto: record.app_proto,
                ..Subject::default()
            };
            self.raise(
                "new_conversation",
                record.first_ns,
                subject,
                format!(
                    "{client} -> {server}:{} (IP protocol {}) is not in the baseline",
                    record.dest_port, record.protocol
                ),
                serde_json::Value::Null,
                vec![item],
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn command(
        &mut self,
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        protocol: Protocol,
        kind: CommandKind,
        code: u32,
        unit: Option<u8>,
    ) {
        let (c, s) = (client.0, server.0);
        if let Some(device) = self.by_ip.get_mut(&c) {
            device.role(protocol, false);
            device.add_peer(s);
            if matches!(kind, CommandKind::Program | CommandKind::Firmware) {
                device.programmed_others = true;
            }
            self.dirty.insert(DeviceKey::Ip(c));
        }
        if let Some(device) = self.by_ip.get_mut(&s) {
            device.role(protocol, true);
            device.add_peer(c);
            self.dirty.insert(DeviceKey::Ip(s));
        }
        let learning = self.is_learning(ts_ns);
        let subject = Subject {
            src: Some(c),
            src_port: Some(client.1),
            dst: Some(s),
            dst_port: Some(server.1),
            flow_id: Some(flow_id),
            app_proto: Some(protocol),
            ..Subject::default()
        };
        let context = serde_json::json!({ "command": code, "kind": kind });
        let command_item = BaselineItem::Command {
            client: c,
            server: s,
            protocol,
            code,
        };
        if learning {
            self.learn(command_item, ts_ns);
        }
        if let (Protocol::Modbus, Some(unit)) = (protocol, unit) {
            self.modbus_unit_sweep(ts_ns, subject.clone(), unit, learning);
        }
        match kind {
            CommandKind::Stop
            | CommandKind::Start
            | CommandKind::Restart
            | CommandKind::DisableCommunication => {
                self.raise(
                    "plc_stop",
                    ts_ns,
                    subject,
                    format!(
                        "{} {kind:?} command (code {code:#x}) from {c} to {s}",
                        protocol.name()
                    ),
                    context,
                    Vec::new(),
                );
            }
            CommandKind::Program | CommandKind::Firmware => {
                let item = BaselineItem::Workstation(c);
                if learning {
                    self.learn(item, ts_ns);
                } else if !self.baseline.contains(&item)
                    && !self.policy.is_engineering_workstation(c)
                {
                    self.raise(
                        "plc_programming",
                        ts_ns,
                        subject,
                        format!(
                            "{} programming command (code {code:#x}) from {c}, not an engineering workstation",
                            protocol.name()
                        ),
                        context,
                        vec![item],
                    );
                }
            }
            CommandKind::Write | CommandKind::Operate => {
                let item = BaselineItem::Writer {
                    client: c,
                    server: s,
                    protocol,
                };
                if learning {
                    self.learn(item, ts_ns);
                } else if !self.baseline.contains(&item) {
                    self.raise(
                        "unauthorized_write",
                        ts_ns,
                        subject,
                        format!(
                            "{c} wrote to {s} over {}, which it never did during learning",
                            protocol.name()
                        ),
                        context,
                        vec![item, command_item],
                    );
                }
            }
            CommandKind::Discovery => self.discovery(ts_ns, subject, learning),
            _ => {
                if !learning
                    && !self.baseline.contains(&command_item)
                    && self.is_baseline_device(c)
                    && self.is_baseline_device(s)
                {
                    self.raise(
                        "new_conversation",
                        ts_ns,
                        subject,
                        format!(
                            "{} command {code:#x} from {c} to {s} is not in the baseline",
                            protocol.name()
                        ),
                        context,
                        vec![command_item],
                    );
                }
            }
        }
    }

    /// Discovery requests: a broadcast one, or unicast ones to `discovery_sweep` hosts
    /// within the scan window, from a source that did not discover during learning.
    fn discovery(&mut self, ts_ns: u64, subject: Subject, learning: bool) {
        let (Some(source), Some(target)) = (subject.src, subject.dst) else {
            return;
        };
        let item = BaselineItem::Discoverer(source);
        if learning {
            self.learn(item, ts_ns);
            return;
        }
        if self.baseline.contains(&item) {
            return;
        }
        let broadcast = match target {
            IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.octets()[3] == 255,
            IpAddr::V6(v6) => v6.is_multicast(),
        };
        let window = self.policy.scan_window_ns;
        let threshold = self.policy.discovery_sweep as usize;
        let tracker = self.scans.entry(source).or_default();
        while tracker
            .discovery
            .front()
            .is_some_and(|(ts, _)| ts.saturating_add(window) < ts_ns)
        {
            tracker.discovery.pop_front();
        }
        if !tracker.discovery.iter().any(|(_, h)| *h == target) && tracker.discovery.len() < 4096 {
            tracker.discovery.push_back((ts_ns, target));
        }
        let hosts = tracker.discovery.len();
        if broadcast || hosts >= threshold {
            let mut subject = subject;
            subject.dst = None;
            let protocol = subject.app_proto.map_or("", Protocol::name);
            self.raise(
                "scan",
                ts_ns,
                subject,
                format!("{source} sent {protocol} discovery requests (ICS discovery sweep)"),
                serde_json::json!({ "kind": "discovery_sweep", "hosts": hosts, "broadcast": broadcast }),
                vec![item],
            );
        }
    }

    /// Modbus unit-id sweep: one client addressing `discovery_sweep` distinct unit ids
    /// of one server within the scan window, from a source that did not discover (or
    /// sweep) during learning. A sweep while learning makes the source a known
    /// discoverer (a gateway poller).
    fn modbus_unit_sweep(&mut self, ts_ns: u64, subject: Subject, unit: u8, learning: bool) {
        let (Some(source), Some(server)) = (subject.src, subject.dst) else {
            return;
        };
        let item = BaselineItem::Discoverer(source);
        if self.baseline.contains(&item) {
            return;
        }
        if !self.scans.contains_key(&source) && self.scans.len() >= MAX_SCAN_SOURCES {
            self.counters.scan_sources_over_capacity += 1;
            return;
        }
        let window = self.policy.scan_window_ns;
        let threshold = self.policy.discovery_sweep as usize;
        let tracker = self.scans.entry(source).or_default();
        while tracker
            .units
            .front()
            .is_some_and(|(ts, _, _)| ts.saturating_add(window) < ts_ns)
        {
            tracker.units.pop_front();
        }
        if !tracker
            .units
            .iter()
            .any(|(_, host, u)| *host == server && *u == unit)
            && tracker.units.len() < MAX_UNIT_SWEEP_TARGETS
        {
            tracker.units.push_back((ts_ns, server, unit));
        }
        let units = tracker
            .units
            .iter()
            .filter(|(_, host, _)| *host == server)
            .count();
        if units < threshold {
            return;
        }
        if learning {
            self.learn(item, ts_ns);
            return;
        }
        self.raise(
            "scan",
            ts_ns,
            subject,
            format!("{source} addressed {units} Modbus unit ids of {server} (ICS discovery sweep)"),
            serde_json::json!({ "kind": "modbus_unit_sweep", "units": units }),
            vec![item],
        );
    }

    /// The quiet-device rule of `device_silent`: a device that sent regularly while
    /// learning (`QUIET_MIN_SIGHTINGS`) and has now been quiet for longer than its
    /// longest learned gap times `quiet_factor` (never less than `quiet_floor`).
    /// Checked once per `QUIET_CHECK_NS` of packet time; the alert carries the packet
    /// time the device became overdue, so it does not depend on when the check ran.
    fn check_quiet(&mut self, now_ns: u64) {
        if now_ns < self.next_quiet_check_ns {
            return;
        }
        self.next_quiet_check_ns = now_ns.saturating_add(QUIET_CHECK_NS);
        if self.is_learning(now_ns) {
            return;
        }
        let factor = u64::from(self.policy.silent_quiet_factor);
        let floor = self.policy.silent_quiet_floor_ns;
        let overdue = |record: &mut DeviceRecord| -> Option<u64> {
            if record.silent.is_some()
                || record.learning_sightings < QUIET_MIN_SIGHTINGS
                || record.learned_gap_ns == 0
            {
                return None;
            }
            let limit = record.learned_gap_ns.saturating_mul(factor).max(floor);
            let due = record.last_seen_ns.saturating_add(limit);
            if now_ns <= due {
                return None;
            }
            record.silent = Some(due);
            Some(due)
        };
        let mut quiet: Vec<(DeviceKey, u64, u64)> = Vec::new();
        for (ip, record) in &mut self.by_ip {
            if let Some(due) = overdue(record) {
                quiet.push((DeviceKey::Ip(*ip), due, record.last_seen_ns));
            }
        }
        for (mac, record) in &mut self.by_mac {
            if self.macs_with_ip.contains(mac) {
                continue;
            }
            if let Some(due) = overdue(record) {
                quiet.push((DeviceKey::Mac(*mac), due, record.last_seen_ns));
            }
        }
        // Deterministic order: the same replay raises in the same order.
        quiet.sort_unstable_by_key(|(key, due, _)| (*due, *key));
        for (key, due, last_seen_ns) in quiet {
            self.raise(
                "device_silent",
                due,
                Subject::device(key),
                format!("{key} has been quiet for longer than its learned interval allows"),
                serde_json::json!({ "kind": "quiet", "last_seen_ns": last_seen_ns }),
                Vec::new(),
            );
        }
    }

    fn identity(
        &mut self,
        ts_ns: u64,
        device: IpAddr,
        protocol: Protocol,
        field: IdentityField,
        value: ShortText,
    ) {
        let Some(record) = self.by_ip.get_mut(&device) else {
            return;
        };
        let new = value.as_str().to_owned();
        let old = record.identity.insert(field, new.clone());
        self.dirty.insert(DeviceKey::Ip(device));
        if vulnerabilities::matters(field) && old.as_ref() != Some(&new) {
            self.rematch_device(device, ts_ns);
        }
        let Some(old) = old.filter(|old| *old != new) else {
            return;
        };
        let Some(record) = self.by_ip.get_mut(&device) else {
            return;
        };
        if record.identity_history.len() >= MAX_IDENTITY_HISTORY {
            record.identity_history.pop_front();
        }
        record.identity_history.push_back(IdentityChange {
            field,
            old: old.clone(),
            new: new.clone(),
            ts_ns,
            protocol,
        });
        if matches!(field, IdentityField::Firmware | IdentityField::Hardware) {
            self.raise(
                "firmware_change",
                ts_ns,
                Subject {
                    src: Some(device),
                    app_proto: Some(protocol),
                    ..Subject::default()
                },
                format!("{device} reports {field:?} {new:?}, inventory had {old:?}"),
                serde_json::json!({ "field": field, "old": old, "new": new }),
                Vec::new(),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn protocol_error(
        &mut self,
        ts_ns: u64,
        flow_id: u64,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        protocol: Protocol,
        kind: ProtocolErrorKind,
        code: u32,
    ) {
        /// CIP general statuses that are not failures: partial transfer (0x06) and
        /// embedded service error (0x1E) (CIP Vol 1, Appendix B).
        const CIP_BENIGN: [u32; 3] = [0x00, 0x06, 0x1E];
        let signature = match (protocol, kind) {
            (Protocol::Enip, ProtocolErrorKind::ErrorReply) => {
                if CIP_BENIGN.contains(&(code & 0xff)) {
                    return;
                }
                "cip_failure"
            }
            (Protocol::Bacnet, ProtocolErrorKind::ErrorReply | ProtocolErrorKind::Rejected) => {
                "bacnet_failure"
            }
            _ => "illegal_operation",
        };
        let subject = Subject {
            src: Some(src.0),
            src_port: Some(src.1),
            dst: Some(dst.0),
            dst_port: Some(dst.1),
            flow_id: Some(flow_id),
            app_proto: Some(protocol),
            ..Subject::default()
        };
        self.raise(
            signature,
            ts_ns,
            subject,
            format!(
                "{} {kind:?} (code {code:#x}) from {} to {}",
                protocol.name(),
                src.0,
                dst.0
            ),
            serde_json::json!({ "error": kind, "code": code }),
            Vec::new(),
        );
    }

    fn raise_flow(
        &mut self,
        signature: &'static str,
        flow: &FlowStart,
        message: String,
        learn: Vec<BaselineItem>,
    ) {
        self.raise(
            signature,
            flow.ts_ns,
            Subject::flow(flow),
            message,
            serde_json::Value::Null,
            learn,
        );
    }

    /// Raises (or repeats) an alert: de-duplicated per (signature, src, dst), written to
    /// the sinks on first occurrence and at most once per throttle interval after, and
    /// stored. Learned and muted alerts are counted but not written.
    fn raise(
        &mut self,
        signature: &'static str,
        ts_ns: u64,
        subject: Subject,
        message: String,
        context: serde_json::Value,
        learn: Vec<BaselineItem>,
    ) {
        let Some(detection) = detect::by_name(signature) else {
            return;
        };
        let key = alert_key(signature, &subject);
        let emit = match self.alerts.get_mut(&key) {
            Some(state) => {
                self.counters.alert_repeats += 1;
                state.raised_this_run = true;
                // A replay of packets already accounted (restart) adds nothing.
                if ts_ns > state.last_ns {
                    state.count += 1;
                    state.last_ns = ts_ns;
                }
                let quiet = matches!(state.status, AlertStatus::Learned | AlertStatus::Muted);
                let due = state
                    .last_emitted_ns
                    .is_none_or(|last| ts_ns >= last.saturating_add(ALERT_THROTTLE_NS));
                let write = !quiet && due;
                if write {
                    state.last_emitted_ns = Some(ts_ns);
                }
                Some(((state.id, state.count, state.status), write))
            }
            None => {
                if self.alerts.len() >= MAX_ALERTS {
                    self.counters.alerts_over_capacity += 1;
                    if !self.alert_table_full_raised && signature != "alert_table_full" {
                        self.alert_table_full_raised = true;
                        // Room is kept for this one alert.
                        self.insert_alert(detection, "alert_table_full", ts_ns, Subject::default());
                    }
                    return;
                }
                let id = self.insert_alert(detection, signature, ts_ns, subject.clone());
                Some(((id, 1, AlertStatus::New), true))
            }
        };
        let Some(((id, count, status), write)) = emit else {
            return;
        };
        let first_ns = ts_ns;
        let mut alert = Alert::of(detection);
        alert.id = id;
        alert.src_ip = subject.src;
        alert.src_port = subject.src_port;
        alert.dest_ip = subject.dst;
        alert.dest_port = subject.dst_port;
        alert.proto = subject.proto;
        alert.flow_id = subject.flow_id;
        alert.app_proto = subject.app_proto;
        alert.src_mac = subject.src_mac.clone();
        alert.message = message;
        alert.context = context;
        alert.first_ns = first_ns;
        alert.last_ns = ts_ns;
        alert.count = count;
        alert.status = status;
        self.pending_alerts
            .entry(key)
            .and_modify(|row| {
                row.alert.last_ns = row.alert.last_ns.max(ts_ns);
                row.alert.count = count;
            })
            .or_insert_with(|| AlertRow {
                alert: alert.clone(),
                learn: learn.clone(),
            });
        if write {
            if self.current_mono_ns > 0 {
                let latency = mono_ns().saturating_sub(self.current_mono_ns).max(1);
                if let Some(histogram) = self.latency.as_mut() {
                    let _ = histogram.record(latency);
                }
                if let Some(metrics) = &self.metrics {
                    metrics.alert_latency.record(Duration::from_nanos(latency));
                }
            }
            self.sinks.send(&alert);
            if let Some(eve) = self.eve.as_mut() {
                eve.send(EveRecord::Alert(Box::new(alert)));
            }
        }
    }

    fn insert_alert(
        &mut self,
        _detection: &Detection,
        signature: &'static str,
        ts_ns: u64,
        subject: Subject,
    ) -> u64 {
        let id = self.next_alert_id;
        self.next_alert_id += 1;
        let key = alert_key(signature, &subject);
        self.alerts.insert(
            key,
            AlertState {
                id,
                status: AlertStatus::New,
                count: 1,
                last_ns: ts_ns,
                last_emitted_ns: Some(ts_ns),
                raised_this_run: true,
                signature,
                src: subject.src,
                dst: subject.dst,
                src_mac: subject.src_mac,
            },
        );
        id
    }

    /// Writes pending changes in one transaction and picks up operator changes.
    pub fn commit(&mut self) {
        self.since_commit = 0;
        self.last_commit = Instant::now();
        let mut batch = std::mem::take(&mut self.pending);
        for key in std::mem::take(&mut self.dirty) {
            if let DeviceKey::Mac(mac) = key {
                if self.macs_with_ip.contains(&mac) {
                    // Represented by its IPs: not a device row of its own.
                    batch.forget_devices.push(key);
                    continue;
                }
            }
            let record = match key {
                DeviceKey::Ip(ip) => self.by_ip.get(&ip),
                DeviceKey::Mac(mac) => self.by_mac.get(&mac),
            };
            if let Some(record) = record {
                batch.devices.push(DeviceRow {
                    key,
                    first_seen_ns: record.first_seen_ns,
                    last_seen_ns: record.last_seen_ns,
                    record: record.to_json(),
                });
            }
        }
        batch.alerts = std::mem::take(&mut self.pending_alerts)
            .into_values()
            .collect();
        if !batch.is_empty() {
            match self.store.write(&batch) {
                Ok(()) => self.counters.store_commits += 1,
                Err(_) => self.counters.store_errors += 1,
            }
        }
        // Another connection (CLI, API) committed: reload what operators may change.
        match self.store.data_version() {
            Ok(version) if version != self.store_version => {
                if self.reload().is_err() {
                    self.counters.store_errors += 1;
                }
            }
            Ok(_) => {}
            Err(_) => self.counters.store_errors += 1,
        }
    }

    /// Commits and returns the run's report (end of capture or shutdown).
    pub fn finish(&mut self) -> AnalyzerReport {
        self.commit();
        let mut raised: Vec<RaisedAlert> = self
            .alerts
            .values()
            .filter(|a| a.raised_this_run)
            .map(|a| RaisedAlert {
                signature: a.signature.to_owned(),
                src: a.src,
                dst: a.dst,
                src_mac: a.src_mac.clone(),
                count: a.count,
            })
            .collect();
        raised.sort();
        let mut alerts_by_signature = BTreeMap::new();
        for alert in &raised {
            *alerts_by_signature
                .entry(alert.signature.clone())
                .or_insert(0) += 1;
        }
        let quantile = |q: f64| self.latency.as_ref().map_or(0, |h| h.value_at_quantile(q));
        let now = self.learning_started_ns.is_some()
            && !self.learning_ended
            && self.policy.learning_duration_ns > 0;
        AnalyzerReport {
            devices: self.device_count(),
            alerts: raised.len() as u64,
            alerts_by_signature,
            raised,
            alert_latency_ns: LatencySummary {
                count: self.latency.as_ref().map_or(0, |h| h.len()),
                p50: quantile(0.5),
                p99: quantile(0.99),
                max: self.latency.as_ref().map_or(0, |h| h.max()),
            },
            learning: now,
            baseline_items: self.baseline.len() as u64,
            counters: self.counters.clone(),
        }
    }

    /// The inventory as stored (JSON records), for tests and tools.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.by_ip.values().chain(self.by_mac.values())
    }
}

/// The fields of a flow start the detections use.
struct FlowStart {
    ts_ns: u64,
    flow_id: u64,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    ip_protocol: u8,
    app_proto: Option<Protocol>,
    tcp_flags: u8,
}

/// Who an alert is about, and the packet context.
#[derive(Clone, Debug, Default)]
struct Subject {
    src: Option<IpAddr>,
    src_port: Option<u16>,
    dst: Option<IpAddr>,
    dst_port: Option<u16>,
    proto: Option<u8>,
    flow_id: Option<u64>,
    app_proto: Option<Protocol>,
    src_mac: Option<String>,
}

impl Subject {
    fn device(key: DeviceKey) -> Subject {
        match key {
            DeviceKey::Ip(ip) => Subject {
                src: Some(ip),
                ..Subject::default()
            },
            DeviceKey::Mac(mac) => Subject {
                src_mac: Some(store::format_mac(&mac)),
                ..Subject::default()
            },
        }
    }

    fn flow(flow: &FlowStart) -> Subject {
        Subject {
            src: Some(flow.client.0),
            src_port: Some(flow.client.1),
            dst: Some(flow.server.0),
            dst_port: Some(flow.server.1),
            proto: Some(flow.ip_protocol),
            flow_id: Some(flow.flow_id),
            app_proto: flow.app_proto,
            src_mac: None,
        }
    }
}

fn alert_key(signature: &str, subject: &Subject) -> String {
    match (&subject.src, &subject.src_mac) {
        (None, Some(mac)) => format!("{signature}|mac:{mac}|-"),
        _ => detect::alert_key(signature, subject.src, subject.dst),
    }
}

type ParsedKey = (&'static str, Option<IpAddr>, Option<IpAddr>, Option<String>);

fn parse_alert_key(key: &str) -> Option<ParsedKey> {
    let mut parts = key.split('|');
    let signature = detect::by_name(parts.next()?)?.name;
    let src = parts.next()?;
    let dst = parts.next()?;
    let (src, src_mac) = match src.strip_prefix("mac:") {
        Some(mac) => (None, Some(mac.to_owned())),
        None => (src.parse().ok(), None),
    };
    Some((signature, src, dst.parse().ok(), src_mac))
}

fn is_remote_access(ip_protocol: u8, port: u16) -> bool {
    match ip_protocol {
        6 => REMOTE_ACCESS_TCP.contains(&port),
        17 => REMOTE_ACCESS_UDP.contains(&port),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, HumanDuration};

    const S: u64 = 1_000_000_000;

    fn analyzer(learning_s: u64) -> Analyzer {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(learning_s);
        let policy = match config.validate() {
            Ok(policy) => policy,
            Err(error) => panic!("{error}"),
        };
        Analyzer::new(Arc::new(policy), None)
    }

    fn seen(a: &mut Analyzer, ts_ns: u64, ip: [u8; 4], mac: u8) {
        a.observe(Observation::DeviceSeen {
            ts_ns,
            mac: Some([0, 1, 2, 3, 4, mac]),
            ip: Some(IpAddr::from(ip)),
            vlan: 0,
        });
    }

    fn signatures(report: &AnalyzerReport) -> Vec<(String, Option<IpAddr>)> {
        report
            .raised
            .iter()
            .map(|a| (a.signature.clone(), a.src))
            .collect()
    }

    fn analyzer_with(learning_s: u64, edit: impl FnOnce(&mut Config)) -> Analyzer {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(learning_s);
        edit(&mut config);
        let policy = match config.validate() {
            Ok(policy) => policy,
            Err(error) => panic!("{error}"),
        };
        Analyzer::new(Arc::new(policy), None)
    }

    fn modbus_command(a: &mut Analyzer, ts_ns: u64, client: u8, kind: CommandKind, unit: u8) {
        a.observe(Observation::Command {
            ts_ns,
            flow_id: 1,
            client: (IpAddr::from([10, 0, 0, client]), 40_000),
            server: (IpAddr::from([10, 0, 0, 20]), 502),
            protocol: Protocol::Modbus,
            kind,
            code: 0x2b,
            unit: Some(unit),
        });
    }

    #[test]
    fn a_modbus_unit_sweep_alerts_unless_the_source_swept_while_learning() {
        let mut a = analyzer(100);
        // 10.0.0.5 polls 12 units while learning (a gateway poller): known.
        for unit in 1..=12 {
            modbus_command(&mut a, u64::from(unit) * S, 5, CommandKind::Read, unit);
        }
        modbus_command(&mut a, 50 * S, 6, CommandKind::Read, 1);
        for unit in 1..=12 {
            let ts = 200 * S + u64::from(unit) * S;
            modbus_command(&mut a, ts, 5, CommandKind::Read, unit);
            modbus_command(&mut a, ts, 6, CommandKind::Read, unit);
        }
        // Nine units in the window stay under the default threshold of 10.
        for unit in 1..=9 {
            modbus_command(&mut a, 400 * S, 7, CommandKind::Read, unit);
        }
        let report = a.finish();
        let scans: Vec<_> = report
            .raised
            .iter()
            .filter(|r| r.signature == "scan")
            .map(|r| (r.src, r.dst))
            .collect();
        assert_eq!(
            scans,
            vec![(
                Some(IpAddr::from([10, 0, 0, 6])),
                Some(IpAddr::from([10, 0, 0, 20]))
            )]
        );
    }

    #[test]
    fn a_regular_device_that_goes_quiet_is_silent_then_back() {
        let mut a = analyzer_with(120, |c| {
            c.detection.silent_device.quiet_factor = 4;
            c.detection.silent_device.quiet_floor = HumanDuration::from_secs(100);
        });
        // Device 1 every 60 s while learning (learned gap 60 s: quiet after 240 s);
        // device 2 seen once (not regular); device 3 keeps talking.
        for t in [0, 60, 120] {
            seen(&mut a, t * S, [10, 0, 0, 1], 1);
        }
        seen(&mut a, 10 * S, [10, 0, 0, 2], 2);
        for t in (0..=350).step_by(50) {
            seen(&mut a, t * S, [10, 0, 0, 3], 3);
        }
        // Due at 120 + 240 = 360 s: not yet at 350 s.
        let quiet_at_350 = a
            .alerts
            .keys()
            .any(|k| k.starts_with("device_silent|10.0.0.1|"));
        for t in (400..=650).step_by(50) {
            seen(&mut a, t * S, [10, 0, 0, 3], 3);
        }
        seen(&mut a, 700 * S, [10, 0, 0, 1], 1);
        let report = a.finish();
        assert!(!quiet_at_350);
        let one = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(
            signatures(&report),
            vec![
                ("device_back".to_owned(), one),
                ("device_silent".to_owned(), one)
            ]
        );
    }

    #[test]
    fn configured_engineering_workstations_program_without_alerts() {
        let mut a = analyzer_with(0, |c| {
            c.detection.engineering_workstations =
                vec!["10.0.0.0/30".parse().unwrap_or_else(|e| panic!("{e}"))];
        });
        modbus_command(&mut a, S, 2, CommandKind::Program, 1);
        modbus_command(&mut a, S, 9, CommandKind::Program, 1);
        let report = a.finish();
        let programming: Vec<_> = report
            .raised
            .iter()
            .filter(|r| r.signature == "plc_programming")
            .map(|r| r.src)
            .collect();
        assert_eq!(programming, vec![Some(IpAddr::from([10, 0, 0, 9]))]);
    }

    #[test]
    fn devices_seen_after_learning_alert_once() {
        let mut a = analyzer(10);
        seen(&mut a, 0, [10, 0, 0, 1], 1);
        seen(&mut a, 5 * S, [10, 0, 0, 2], 2);
        seen(&mut a, 20 * S, [10, 0, 0, 1], 1);
        seen(&mut a, 20 * S, [10, 0, 0, 3], 3);
        seen(&mut a, 90 * S, [10, 0, 0, 3], 3);
        let report = a.finish();
        assert_eq!(
            signatures(&report),
            vec![("new_device".to_owned(), Some(IpAddr::from([10, 0, 0, 3])))]
        );
        assert_eq!(report.raised.first().map(|r| r.count), Some(2));
        assert_eq!(report.devices, 3);
    }

    #[test]
    fn a_second_mac_claiming_an_address_conflicts_unless_it_routes() {
        let mut a = analyzer(0);
        seen(&mut a, 0, [10, 0, 0, 1], 1);
        // A router's MAC carries several addresses: not a conflict.
        seen(&mut a, S, [10, 0, 0, 7], 9);
        seen(&mut a, S, [10, 0, 0, 8], 9);
        seen(&mut a, 2 * S, [10, 0, 0, 1], 9);
        assert!(a
            .finish()
            .raised
            .iter()
            .all(|r| r.signature != "ip_conflict"));

        let mut a = analyzer(0);
        seen(&mut a, 0, [10, 0, 0, 1], 1);
        seen(&mut a, S, [10, 0, 0, 1], 2);
        seen(&mut a, 2 * S, [10, 0, 0, 1], 1);
        let report = a.finish();
        let conflicts: Vec<_> = report
            .raised
            .iter()
            .filter(|r| r.signature == "ip_conflict")
            .collect();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            conflicts.first().and_then(|c| c.src),
            Some(IpAddr::from([10, 0, 0, 1]))
        );
    }
}
