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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

// foldhash (seeded per process, like std's RandomState) instead of SipHash: the
// analyzer's maps are keyed by addresses and looked up several times per observation.
use foldhash::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use otsensor_wire::layers::{self, Mac};
use otsensor_wire::Protocol;

use crate::config::Policy;
use crate::detect::{self, Alert, AlertStatus, Detail, Detection, ScanDetail};
use crate::observe::{
    mono_ns, CommandKind, FlowRecord, IdentityField, Observation, ProtocolErrorKind, ShortText,
    Stamped,
};
use crate::oui;
use crate::store::{self, AlertHistory, AlertRow, BaselineItem, DeviceKey, Store};

/// Alert keys, de-duplication, throttling, the sinks and the store.
mod alerts;
/// Learning: the baseline of facts.
mod baseline;
/// A map with a hard cap and O(1) eviction, for state keyed by the wire.
mod bounded;
/// Alert context: the devices and the learned fact an alert deviates from.
mod context;
/// The analyzer as the API's handler.
mod control;
/// The stateful detections, one module per family.
mod detections;
/// Device records, sightings, identities, address claims.
mod inventory;
/// Where flow records and alerts go: interfaces the output layer implements.
mod outlets;
#[cfg(test)]
mod tests;
/// Known vulnerabilities: advisory matches of the inventory.
mod vulnerabilities;
/// The store writer thread: commits off the analyzer thread.
mod writer;

use alerts::{AlertState, Subject};
use control::FlowBook;
use detections::flood::FloodState;
use detections::flows::FlowStart;
use detections::scan::{ObjectSweep, ScanTracker};
pub use inventory::{ClassGuess, DeviceRecord, IdentityChange, Roles};
pub use outlets::{AlertOutlet, EventOutlet, NoAlertOutlet};

/// Peers remembered per device; more are counted.
const MAX_PEERS: usize = 64;
/// Identity changes remembered per device (oldest dropped).
const MAX_IDENTITY_HISTORY: usize = 32;
/// Services (IP protocol, port) remembered per device.
const MAX_SERVED: usize = 32;
const MAX_VLANS: usize = 8;
/// Distinct alerts held in memory for de-duplication; beyond it the least important
/// is evicted (see `alerts::eviction_class`, counted, `alert_table_full`).
const MAX_ALERTS: usize = 100_000;
/// Alert rows kept in the store; beyond it the least important rows are deleted.
const MAX_STORED_ALERTS: usize = 200_000;
/// Baseline facts; beyond it nothing more is learned (counted, `state_capped`).
const MAX_BASELINE_ITEMS: usize = 1_000_000;
/// MACs remembered as carrying an IP, and MACs whose IPv4 claims are remembered
/// (ARP with random sender MACs); beyond it new MACs are counted, not remembered.
const MAX_ARP_MACS: usize = 262_144;
/// Sources whose recent flow starts are tracked for scans (oldest one-shot source
/// evicted beyond it).
const MAX_SCAN_SOURCES: usize = 65_536;
/// Servers remembered as using secured channels (oldest forgotten beyond it).
const MAX_SECURED_SERVERS: usize = 65_536;
/// GOOSE control blocks whose publishers are remembered (oldest forgotten beyond it).
const MAX_GOOSE_CONTROL_BLOCKS: usize = 16_384;
/// A repeated alert is written to the alert sinks at most this often (packet time).
const ALERT_THROTTLE_NS: u64 = 60 * 1_000_000_000;
/// Sightings while learning (devices are re-reported at most once a minute) before a
/// device counts as communicating regularly (for
/// the quiet-device rule of `device_silent`).
const QUIET_MIN_SIGHTINGS: u32 = 2;
/// How often (packet time) devices are checked for having gone quiet.
const QUIET_CHECK_NS: u64 = 1_000_000_000;
/// Live, how far behind the wall clock [`Analyzer::tick`] puts "now" for the quiet
/// check: observations still in the workers' batches or the queue (a backlog) are not
/// taken for silence. Quiet limits are minutes, so the delay costs nothing.
const LIVE_CLOCK_SLACK_NS: u64 = 10_000_000_000;
/// (server, unit id) pairs remembered per source for Modbus unit-id sweeps.
const MAX_UNIT_SWEEP_TARGETS: usize = 4096;
/// Observations between store commits, and the longest wall time between them. The
/// count only bounds a batch: every commit rewrites each device seen since the last
/// (hundreds of rows of JSON), so at high rates the wall time should decide.
const COMMIT_EVERY: u64 = 65_536;
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);

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
    /// Alerts evicted from the in-memory alert table (`MAX_ALERTS`) to make room for a
    /// new one; never a new alert dropped.
    pub alerts_over_capacity: u64,
    /// Alert rows deleted from the store beyond `MAX_STORED_ALERTS`.
    pub stored_alerts_pruned: u64,
    /// Baseline facts not learned because `MAX_BASELINE_ITEMS` were.
    pub baseline_over_capacity: u64,
    /// ARP/address sightings whose MAC was not remembered (`MAX_ARP_MACS`).
    pub arp_macs_over_capacity: u64,
    /// Scan trackers evicted because `MAX_SCAN_SOURCES` sources were tracked.
    pub scan_sources_over_capacity: u64,
    /// Flood targets evicted because `MAX_FLOOD_TARGETS` were tracked.
    pub flood_targets_over_capacity: u64,
    /// (client, server) pairs evicted from object-sweep tracking at capacity.
    pub object_sweeps_over_capacity: u64,
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

/// What the analyzer shows the metrics, read between observations (the metrics
/// compute their deltas; the analyzer never names them).
#[derive(Clone, Copy, Debug)]
pub struct AnalyzerStats<'a> {
    pub counters: &'a AnalyzerCounters,
    /// Devices in the inventory.
    pub devices: u64,
    /// The baseline is learning, and the fraction of the learning period elapsed.
    pub learning: bool,
    pub learning_progress: f64,
    /// Vulnerable devices by the severity of their worst match, every severity listed.
    pub vulnerable_devices: [(&'static str, i64); crate::advisories::view::SEVERITIES.len()],
    /// Packet-to-alert latency (ns) of every alert written in this run.
    pub alert_latency_ns: Option<&'a hdrhistogram::Histogram<u64>>,
    /// The capture source ended: nothing more will be recorded.
    pub capture_finished: bool,
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
    /// Where an occurrence's alert key is written for the table lookups (reused).
    alert_key_buffer: String,
    next_alert_id: u64,
    inventory_full_raised: bool,
    alert_table_full_raised: bool,
    /// Alert keys in eviction order: (class, id), least important first.
    alert_order: BTreeMap<(u8, u64), String>,
    /// Some stored alert is not in `alerts` (evicted, or not loaded): a new key is
    /// looked up in the store before it gets a new id.
    alerts_partial: bool,
    /// The in-memory alert table's cap (`MAX_ALERTS`; smaller in tests).
    max_alerts: usize,
    /// `MAX_BASELINE_ITEMS` (smaller in tests).
    max_baseline: usize,
    /// `MAX_ARP_MACS` (smaller in tests).
    max_arp_macs: usize,
    /// New alert rows written since the store's alert rows were last pruned.
    alert_rows_since_prune: usize,
    /// Caps hit in this run (`state_capped`).
    caps_hit: BTreeSet<&'static str>,
    scans: bounded::BoundedMap<IpAddr, ScanTracker>,
    /// Connection attempts per (device, port), for floods.
    floods: bounded::BoundedMap<(IpAddr, u16), FloodState>,
    /// Objects each (client, server, protocol) addressed in the current scan window.
    object_sweeps: bounded::BoundedMap<(IpAddr, IpAddr, Protocol), ObjectSweep>,
    /// Servers a client reached over a secured channel (OPC UA policy other than
    /// None), for `security_downgrade`.
    secured_servers: bounded::BoundedMap<(IpAddr, Protocol), ()>,
    /// The publishers (MACs) of each GOOSE control block, for `goose_anomaly`.
    goose_publishers: bounded::BoundedMap<crate::observe::ShortText, Vec<Mac>>,
    /// Packet time of the next quiet-device check.
    next_quiet_check_ns: u64,
    /// Packet time is the wall clock (live capture): [`Analyzer::tick`] advances it
    /// for time-driven detections when no traffic comes. Off in a replay, whose only
    /// clock is its packets (deterministic).
    wall_clock: bool,
    store: writer::SharedStore,
    store_version: i64,
    pending: store::Batch,
    dirty: HashSet<DeviceKey>,
    pending_alerts: BTreeMap<String, AlertRow>,
    since_commit: u64,
    last_commit: Instant,
    eve: Option<Box<dyn EventOutlet>>,
    /// Syslog/CEF, webhook and the alert metrics (EVE alerts go through `eve`, which
    /// waits rather than drops).
    sinks: Box<dyn AlertOutlet>,
    /// Alerts, devices and baseline changes for the fleet (`outputs.nats`).
    changes: crate::changes::ChangeSender,
    /// Asks for new alerts' packets (`evidence`); none when no evidence is kept.
    evidence: Option<crate::evidence::Requests>,
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
    pub fn new(policy: Arc<Policy>, eve: Option<Box<dyn EventOutlet>>) -> Analyzer {
        match Store::in_memory() {
            Ok(store) => Self::with_store(policy, eve, store),
            // An in-memory database only fails when SQLite cannot allocate.
            Err(error) => panic!("cannot create the in-memory store: {error}"),
        }
    }

    /// An analyzer that continues from what `store` holds (inventory, baseline,
    /// learning progress, alert history).
    pub fn with_store(
        policy: Arc<Policy>,
        eve: Option<Box<dyn EventOutlet>>,
        store: Store,
    ) -> Analyzer {
        let mut analyzer = Analyzer {
            policy,
            by_ip: HashMap::default(),
            by_mac: HashMap::default(),
            macs_with_ip: HashSet::default(),
            mac_ipv4: HashMap::default(),
            conflicts: HashSet::default(),
            baseline: HashSet::default(),
            learning_started_ns: None,
            learning_ended: false,
            alerts: HashMap::default(),
            alert_key_buffer: String::new(),
            next_alert_id: 1,
            inventory_full_raised: false,
            alert_table_full_raised: false,
            alert_order: BTreeMap::new(),
            alerts_partial: false,
            max_alerts: MAX_ALERTS,
            max_baseline: MAX_BASELINE_ITEMS,
            max_arp_macs: MAX_ARP_MACS,
            alert_rows_since_prune: 0,
            caps_hit: BTreeSet::new(),
            scans: bounded::BoundedMap::default(),
            floods: bounded::BoundedMap::default(),
            object_sweeps: bounded::BoundedMap::default(),
            secured_servers: bounded::BoundedMap::default(),
            goose_publishers: bounded::BoundedMap::default(),
            next_quiet_check_ns: 0,
            wall_clock: false,
            store: writer::SharedStore::new(store),
            store_version: 0,
            pending: store::Batch::default(),
            dirty: HashSet::default(),
            pending_alerts: BTreeMap::new(),
            since_commit: 0,
            last_commit: Instant::now(),
            eve,
            sinks: Box::new(NoAlertOutlet),
            changes: crate::changes::ChangeSender::default(),
            evidence: None,
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

    /// Sends raised alerts to `sinks` too, and state changes to `changes` (the fleet).
    pub fn set_outputs(
        &mut self,
        sinks: Box<dyn AlertOutlet>,
        changes: Option<crate::changes::ChangeSender>,
    ) {
        if let Some(changes) = changes {
            self.changes = changes;
        }
        self.sinks = sinks;
    }

    /// Lets go of the EVE channel (the capture ended: nothing more to write), so the
    /// EVE writer can finish while the analyzer stays up to answer the API.
    pub fn close_events(&mut self) {
        self.eve = None;
        self.evidence = None;
    }

    /// Asks `requests` for the packets of every new alert (see `crate::evidence`).
    pub fn set_evidence(&mut self, requests: crate::evidence::Requests) {
        self.evidence = Some(requests);
    }

    /// Hands the alert sinks back (to close them and collect their reports).
    pub fn take_alert_outlet(&mut self) -> Box<dyn AlertOutlet> {
        std::mem::replace(&mut self.sinks, Box::new(NoAlertOutlet))
    }

    /// Reads learning progress, baseline and alert states from the store.
    fn reload(&mut self) -> store::Result<()> {
        let learning = self.store().learning()?;
        self.learning_started_ns = learning.started_ns.or(self.learning_started_ns);
        if learning.started_ns.is_none() && self.pending.learning_started_ns.is_none() {
            // Learning restarted by an operator: start again at the next observation.
            self.learning_started_ns = None;
        }
        self.learning_ended = learning.ended;
        let baseline = self.store().baseline()?;
        self.baseline = baseline.into_iter().collect();
        // Most important first (`Store::alert_states`): what does not fit stays in the
        // store only, and is looked up there when it is raised again.
        let states = self.store().alert_states()?;
        for (key, history) in states {
            self.next_alert_id = self.next_alert_id.max(history.id + 1);
            match self.alerts.get(&key) {
                Some(state) => {
                    if state.status != history.status {
                        self.set_alert_status(&key, history.status);
                    }
                }
                None => {
                    if self.alerts.len() >= self.max_alerts {
                        self.alerts_partial = true;
                        continue;
                    }
                    let Some(state) = AlertState::restored(&key, history) else {
                        continue;
                    };
                    if state.signature == "inventory_full" {
                        self.inventory_full_raised = true;
                    }
                    self.insert_alert_state(key, state);
                }
            }
        }
        let version = self.store().data_version()?;
        self.store_version = version;
        // New advisories imported by `otsensor advisories import`.
        self.refresh_advisories();
        Ok(())
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

    /// Observations handled since the last store commit (zero right after one), so a
    /// benchmark can tell a commit's work from the observation that triggered it.
    pub fn observations_since_commit(&self) -> u64 {
        self.since_commit
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
                    eve.flow(record);
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
                macs,
            } => {
                self.counters.commands += 1;
                // A frame without IP (PROFINET DCP): its ends are the devices the
                // inventory knows by their MACs.
                let (client, server) = match macs {
                    Some((client_mac, server_mac)) => (
                        self.endpoint_by_mac(client, client_mac),
                        self.endpoint_by_mac(server, server_mac),
                    ),
                    None => (client, server),
                };
                self.command(ts_ns, flow_id, client, server, protocol, kind, code, unit);
            }
            Observation::Identity {
                ts_ns,
                device,
                mac,
                protocol,
                field,
                value,
            } => {
                self.counters.identities += 1;
                self.identity(ts_ns, device, mac, protocol, field, value);
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
            Observation::ObjectAccess {
                ts_ns,
                flow_id,
                client,
                server,
                protocol,
                object,
            } => {
                self.object_sweep(ts_ns, flow_id, client, server, protocol, object);
            }
            Observation::ChannelSecurity {
                ts_ns,
                flow_id,
                client,
                server,
                protocol,
                secured,
            } => self.channel_security(ts_ns, flow_id, client, server, protocol, secured),
            Observation::Goose {
                ts_ns,
                publisher,
                vlan,
                gocb_ref,
                change,
            } => self.goose(ts_ns, publisher, vlan, gocb_ref, change),
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

    /// Live capture: packet time is the wall clock, so [`Analyzer::tick`] may move
    /// time-driven detections (quiet devices) forward when no traffic comes. Not for
    /// replays: there the packets are the only clock.
    pub fn set_wall_clock(&mut self, wall_clock: bool) {
        self.wall_clock = wall_clock;
    }

    /// Time-driven work, called by the analyzer loop at least every `COMMIT_INTERVAL`
    /// whether or not traffic arrives. Live (`set_wall_clock`), checks for quiet
    /// devices at the wall clock (less [`LIVE_CLOCK_SLACK_NS`]) once this run has seen
    /// traffic, so a device is reported silent on a network that went completely
    /// quiet. Commits what is pending once `COMMIT_INTERVAL` has passed since the last
    /// commit, so an alert on a quiet network is stored within that time.
    pub fn tick(&mut self) {
        if self.wall_clock && self.latest_ns > 0 {
            let now_ns = crate::observe::realtime_ns().saturating_sub(LIVE_CLOCK_SLACK_NS);
            self.tick_at(now_ns);
        }
        if self.last_commit.elapsed() >= COMMIT_INTERVAL && self.has_pending() {
            self.commit();
        }
    }

    /// The time-driven detections at packet time `now_ns` without an observation:
    /// nothing when `now_ns` is not past the latest packet time.
    fn tick_at(&mut self, now_ns: u64) {
        if now_ns <= self.latest_ns {
            return;
        }
        // No triggering observation: no packet-to-alert latency to record.
        self.current_mono_ns = 0;
        self.check_quiet(now_ns);
    }

    /// The longest the analyzer loop may wait without calling [`Analyzer::tick`].
    pub const TICK: Duration = COMMIT_INTERVAL;

    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.dirty.is_empty() || !self.pending_alerts.is_empty()
    }

    /// Writes pending changes in one transaction and picks up operator changes.
    pub fn commit(&mut self) {
        self.since_commit = 0;
        self.last_commit = Instant::now();
        let mut batch = std::mem::take(&mut self.pending);
        let mut devices = Vec::with_capacity(self.dirty.len());
        // Drained, not replaced: the set keeps its table, so marking devices dirty
        // after a commit does not grow a new one.
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain() {
            if let DeviceKey::Mac(mac) = key {
                if self.macs_with_ip.contains(&mac) {
                    // Represented by its IPs: not a device row of its own.
                    self.changes.device_removed(&mac);
                    batch.forget_devices.push(key);
                    continue;
                }
            }
            let record = match key {
                DeviceKey::Ip(ip) => self.by_ip.get(&ip),
                DeviceKey::Mac(mac) => self.by_mac.get(&mac),
            };
            if let Some(record) = record {
                self.changes.device(record);
                // Serialised by the writer: a clone costs a fraction of the JSON.
                devices.push(writer::PendingDevice {
                    key,
                    record: record.clone(),
                });
            }
        }
        self.dirty = dirty;
        batch.alerts = std::mem::take(&mut self.pending_alerts)
            .into_values()
            .collect();
        let written_version = self.write_batch(batch, devices);
        if self.alert_rows_since_prune >= MAX_STORED_ALERTS / 16 {
            self.alert_rows_since_prune = 0;
            let pruned = self.store().prune_alerts(MAX_STORED_ALERTS);
            match pruned {
                Ok(0) => {}
                Ok(pruned) => {
                    self.counters.stored_alerts_pruned += pruned;
                    self.alerts_partial = true;
                }
                Err(_) => self.counters.store_errors += 1,
            }
        }
        // Another connection (CLI, API) committed: reload what operators may change.
        // With a writer thread, the version it read after its latest write (an
        // operator's change is picked up one commit later, not waited for here).
        let version = match written_version {
            Some(version) => Ok(version),
            None => self.store().data_version(),
        };
        match version {
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
        self.settle_writer();
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
}
