//! The analyzer thread: the single owner of the inventory (and, later, baseline and
//! alerts). It consumes observations in arrival order; everything it reports at the end
//! is independent of that order, so replays give the same result with any worker count.
//!
//! **What counts as a device.** A device is either an internal unicast IP address
//! (inside `networks.internal`) that sent at least one packet (IP source, or ARP sender),
//! or a unicast MAC address that sent frames but never carried an internal source IP
//! (hosts seen only at layer 2 — PROFINET, GOOSE, LLDP — and routers that only forward
//! foreign addresses). A MAC that carries internal IPs is represented by those IPs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Policy;
use crate::dissect::inspect::EventSink;
use crate::layers::Mac;
use crate::observe::Observation;
use crate::output::eve::EveRecord;

/// What the inventory knows about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub mac: Option<Mac>,
    pub ip: Option<IpAddr>,
    pub vlan: u16,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// Analyzer counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AnalyzerCounters {
    pub observations: u64,
    pub flow_events: u64,
    pub commands: u64,
    pub identities: u64,
    pub protocol_errors: u64,
    /// Device sightings not recorded because the inventory was at `inventory.max_devices`.
    pub devices_over_capacity: u64,
}

/// The analyzer's state.
pub struct Analyzer {
    policy: Arc<Policy>,
    by_ip: HashMap<IpAddr, DeviceRecord>,
    by_mac: HashMap<Mac, DeviceRecord>,
    /// MACs seen carrying an internal IP: not devices of their own.
    macs_with_ip: HashSet<Mac>,
    eve: Option<EventSink>,
    pub counters: AnalyzerCounters,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("devices", &self.device_count())
            .finish()
    }
}

/// What the analyzer reports when the pipeline ends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnalyzerReport {
    pub devices: u64,
    pub alerts: u64,
    pub counters: AnalyzerCounters,
}

impl Analyzer {
    pub fn new(policy: Arc<Policy>, eve: Option<EventSink>) -> Analyzer {
        Analyzer {
            policy,
            by_ip: HashMap::new(),
            by_mac: HashMap::new(),
            macs_with_ip: HashSet::new(),
            eve,
            counters: AnalyzerCounters::default(),
        }
    }

    fn entries(&self) -> usize {
        self.by_ip.len() + self.by_mac.len()
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

    pub fn handle(&mut self, observation: Observation) {
        self.counters.observations += 1;
        match observation {
            Observation::DeviceSeen {
                ts_ns,
                mac,
                ip,
                vlan,
            } => self.device_seen(ts_ns, mac, ip, vlan),
            Observation::FlowEnded(record) => {
                self.counters.flow_events += 1;
                if let Some(eve) = self.eve.as_mut() {
                    eve.send(EveRecord::Flow(record));
                }
            }
            // Consumed by the detections (inventory identity, baseline, alerts).
            Observation::Command { .. } => self.counters.commands += 1,
            Observation::Identity { .. } => self.counters.identities += 1,
            Observation::ProtocolError { .. } => self.counters.protocol_errors += 1,
        }
    }

    fn device_seen(&mut self, ts_ns: u64, mac: Option<Mac>, ip: Option<IpAddr>, vlan: u16) {
        let full = self.entries() >= self.policy.max_devices;
        let fresh = DeviceRecord {
            mac,
            ip,
            vlan,
            first_seen_ns: ts_ns,
            last_seen_ns: ts_ns,
        };
        let record = match (ip, mac) {
            (Some(ip), _) => {
                if let Some(mac) = mac {
                    self.macs_with_ip.insert(mac);
                }
                if full && !self.by_ip.contains_key(&ip) {
                    self.counters.devices_over_capacity += 1;
                    return;
                }
                self.by_ip.entry(ip).or_insert(fresh)
            }
            (None, Some(mac)) => {
                if full && !self.by_mac.contains_key(&mac) {
                    self.counters.devices_over_capacity += 1;
                    return;
                }
                self.by_mac.entry(mac).or_insert(fresh)
            }
            (None, None) => return,
        };
        record.first_seen_ns = record.first_seen_ns.min(ts_ns);
        record.last_seen_ns = record.last_seen_ns.max(ts_ns);
        if mac.is_some() {
            record.mac = mac;
        }
    }

    pub fn finish(self) -> AnalyzerReport {
        AnalyzerReport {
            devices: self.device_count(),
            alerts: 0,
            counters: self.counters.clone(),
        }
    }
}
