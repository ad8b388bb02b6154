//! State changes the analyzer emits for the fleet: alerts (raised, repeated, status
//! changed), devices (added or changed) and baseline learning state.
//!
//! **One narrow hook, never blocking.** The analyzer holds a [`ChangeSender`] (a no-op
//! unless `outputs.nats` is configured) and calls it at three places: where an alert
//! is written to the sinks, where an operator changes an alert or the baseline, and at
//! each store commit for the devices it wrote. Sending is `try_send` on a bounded
//! channel; a full channel is counted ([`ChangeSender::dropped`]) and the heartbeat
//! reports it. Devices are rate-limited here, on the analyzer thread: a device is sent
//! when what an operator sees of it changed (class, identity, protocols, ...) and
//! otherwise at most once per [`DEVICE_REFRESH_NS`] of packet time (its counters and
//! last-seen time), so the message rate follows network change, not traffic.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::analyze::DeviceRecord;
use crate::control::{mac_text, BaselineView};
use crate::detect::Alert;
use crate::fleet::{FleetDevice, IdentityEntry, DEVICE_HISTORY};
use crate::observe::IdentityField;

/// Capacity of the analyzer → fleet publisher channel.
pub const CHANGE_QUEUE: usize = 65_536;
/// A device whose visible fields did not change is re-sent at most this often
/// (packet time): 5 minutes (see the sizing in `docs/FLEET.md`).
pub const DEVICE_REFRESH_NS: u64 = 300_000_000_000;

/// One change, stamped with the wall clock when the analyzer emitted it.
#[derive(Clone, Debug)]
pub struct StateChange {
    pub emitted_ns: u64,
    pub what: Change,
}

#[derive(Clone, Debug)]
pub enum Change {
    Alert(Box<Alert>),
    Device(Box<FleetDevice>),
    Baseline(BaselineView),
}

/// The analyzer's end of the channel.
#[derive(Default)]
pub struct ChangeSender {
    tx: Option<Sender<StateChange>>,
    dropped: Arc<AtomicU64>,
    /// Per device id: fingerprint of the visible fields, packet time last sent.
    sent: HashMap<String, (u64, u64)>,
}

impl std::fmt::Debug for ChangeSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSender")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl ChangeSender {
    /// A connected pair: the analyzer's sender, the publisher's receiver, and the
    /// shared drop counter.
    pub fn channel(capacity: usize) -> (ChangeSender, Receiver<StateChange>, Arc<AtomicU64>) {
        let (tx, rx) = bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            ChangeSender {
                tx: Some(tx),
                dropped: Arc::clone(&dropped),
                sent: HashMap::new(),
            },
            rx,
            dropped,
        )
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Changes that did not fit the channel.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, what: Change) {
        let Some(tx) = &self.tx else {
            return;
        };
        let change = StateChange {
            emitted_ns: crate::fleet::now_ns(),
            what,
        };
        if tx.try_send(change).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An alert was written to the sinks, or its status changed.
    pub fn alert(&self, alert: &Alert) {
        if self.tx.is_some() {
            self.send(Change::Alert(Box::new(alert.clone())));
        }
    }

    /// The baseline's learning state changed.
    pub fn baseline(&self, view: &BaselineView) {
        if self.tx.is_some() {
            self.send(Change::Baseline(view.clone()));
        }
    }

    /// A device was written to the store; sent if visibly changed or due.
    pub fn device(&mut self, record: &DeviceRecord) {
        if self.tx.is_none() {
            return;
        }
        let device = fleet_device(record);
        let fingerprint = visible_fingerprint(&device);
        let due = match self.sent.get(&device.id) {
            Some(&(last_fingerprint, last_ns)) => {
                last_fingerprint != fingerprint
                    || device.last_seen_ns >= last_ns.saturating_add(DEVICE_REFRESH_NS)
            }
            None => true,
        };
        if due {
            self.sent
                .insert(device.id.clone(), (fingerprint, device.last_seen_ns));
            self.send(Change::Device(Box::new(device)));
        }
    }
}

fn visible_fingerprint(device: &FleetDevice) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        &device.class,
        &device.vendor,
        &device.model,
        &device.firmware,
        &device.protocols,
        &device.identity,
        device.identity_history.len(),
        &device.mac,
        device.vlan,
    )
        .hash(&mut hasher);
    hasher.finish()
}

impl ChangeSender {
    /// A MAC-only device turned out to be an IP device's interface: no device of its
    /// own any more (sent only if it was sent before).
    pub fn device_removed(&mut self, mac: &otsensor_wire::layers::Mac) {
        if self.tx.is_none() {
            return;
        }
        let id = mac_text(mac);
        if self.sent.remove(&id).is_some() {
            let device = FleetDevice {
                id,
                ip: None,
                mac: Some(mac_text(mac)),
                vlan: 0,
                class: String::new(),
                vendor: None,
                model: None,
                firmware: None,
                protocols: Vec::new(),
                first_seen_ns: 0,
                last_seen_ns: 0,
                packets: 0,
                bytes: 0,
                identity: Default::default(),
                identity_history: Vec::new(),
                removed: true,
            };
            self.send(Change::Device(Box::new(device)));
        }
    }
}

/// The fleet's view of an inventory record.
pub fn fleet_device(record: &DeviceRecord) -> FleetDevice {
    let identity = |field| record.identity.get(&field).cloned();
    let id = match (record.ip, record.mac.as_ref()) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(mac)) => mac_text(mac),
        (None, None) => String::new(),
    };
    let skip = record.identity_history.len().saturating_sub(DEVICE_HISTORY);
    FleetDevice {
        id,
        ip: record.ip,
        mac: record.mac.as_ref().map(mac_text),
        vlan: record.vlan,
        class: record.class().class.to_owned(),
        vendor: identity(IdentityField::Vendor).or_else(|| record.vendor.map(str::to_owned)),
        model: identity(IdentityField::Model).or_else(|| identity(IdentityField::Product)),
        firmware: identity(IdentityField::Firmware),
        protocols: record
            .protocols
            .keys()
            .map(|p| p.name().to_owned())
            .collect(),
        first_seen_ns: record.first_seen_ns,
        last_seen_ns: record.last_seen_ns,
        packets: record.packets_sent + record.packets_received,
        bytes: record.bytes_sent + record.bytes_received,
        identity: record.identity.clone(),
        identity_history: record
            .identity_history
            .iter()
            .skip(skip)
            .map(|c| IdentityEntry {
                field: c.field,
                old: c.old.clone(),
                new: c.new.clone(),
                ts_ns: c.ts_ns,
            })
            .collect(),
        removed: false,
    }
}
