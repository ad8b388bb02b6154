//! The inventory: what counts as a device (see the module documentation of `analyze`),
//! device records, sightings, identities, address claims and kernel-accounted traffic.

use super::*;
use crate::advisories::DeviceMatch;

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
    /// The protocol each identity value came from.
    #[serde(default)]
    pub identity_sources: BTreeMap<IdentityField, Protocol>,
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
    /// CISA advisories its identity matches (see `analyze/vulnerabilities.rs`),
    /// shared with the devices of the same identity.
    #[serde(
        default = "vulnerabilities::no_matches",
        serialize_with = "serialize_matches",
        deserialize_with = "deserialize_matches"
    )]
    pub vulnerabilities: vulnerabilities::Matches,
    #[serde(skip)]
    pub(in crate::analyze) silent: Option<u64>,
    #[serde(skip)]
    pub(in crate::analyze) unanswered: (u64, u64),
    /// Packet time of the last command an engineering workstation sent it: a mode
    /// change within [`ENGINEERING_SESSION_NS`] of it is the engineer's doing.
    #[serde(skip)]
    pub(in crate::analyze) engineering_contact_ns: Option<u64>,
}

/// What `Analyzer::record_identity` did with a reported value.
enum Recorded {
    /// Kept the value an industrial protocol reported.
    Refused,
    /// The value was already stored.
    Same,
    /// Stored it; the value it replaced.
    Changed(Option<String>),
}

/// How long after an engineering workstation's last command to a controller a change
/// of the controller's mode counts as part of that engineering session.
pub(in crate::analyze) const ENGINEERING_SESSION_NS: u64 = 10 * 60 * 1_000_000_000;

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

fn serialize_matches<S: serde::Serializer>(
    matches: &vulnerabilities::Matches,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(matches.iter())
}

fn deserialize_matches<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<vulnerabilities::Matches, D::Error> {
    Vec::<DeviceMatch>::deserialize(d).map(vulnerabilities::Matches::from)
}

fn serialize_mac<S: serde::Serializer>(mac: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(mac) => s.serialize_str(&store::format_mac(mac)),
        None => s.serialize_none(),
    }
}

/// Why a device got its class (the first item of [`ClassGuess::evidence`]).
enum Why {
    Programmed,
    Said(&'static str),
    Server(Protocol),
    Client(Protocol),
}

/// A device class guess and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassGuess {
    pub class: &'static str,
    pub evidence: Vec<String>,
}

impl DeviceRecord {
    pub(in crate::analyze) fn new(
        mac: Option<Mac>,
        ip: Option<IpAddr>,
        vlan: u16,
        ts_ns: u64,
    ) -> DeviceRecord {
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
            identity_sources: BTreeMap::new(),
            identity_history: VecDeque::new(),
            packets_sent: 0,
            bytes_sent: 0,
            packets_received: 0,
            bytes_received: 0,
            served: BTreeSet::new(),
            programmed_others: false,
            learning_sightings: 0,
            learned_gap_ns: 0,
            vulnerabilities: vulnerabilities::no_matches(),
            silent: None,
            unanswered: (0, 0),
            engineering_contact_ns: None,
        }
    }

    pub(in crate::analyze) fn add_peer(&mut self, peer: IpAddr) {
        if self.peers.len() < MAX_PEERS {
            self.peers.insert(peer);
        } else if !self.peers.contains(&peer) {
            self.peers_not_kept += 1;
        }
    }

    pub(in crate::analyze) fn role(&mut self, protocol: Protocol, server: bool) {
        let roles = self.protocols.entry(protocol).or_default();
        if server {
            roles.server = true;
        } else {
            roles.client = true;
        }
    }

    /// The class guess from roles and behaviour (PLC, RTU, IED, HMI, engineering
    /// workstation, BACnet controller, IT host).
    pub fn class(&self) -> ClassGuess {
        let (class, why) = self.classify();
        let mut evidence = vec![match why {
            Why::Programmed => "sent programming commands".to_owned(),
            Why::Said(text) => text.to_owned(),
            Why::Server(p) => format!("{} server", p.name()),
            Why::Client(p) => format!("{} client", p.name()),
        }];
        if let Some(vendor) = self.vendor {
            evidence.push(format!("MAC vendor {vendor}"));
        }
        ClassGuess { class, evidence }
    }

    /// The class alone (alert contexts): [`DeviceRecord::class`] without its evidence
    /// text.
    pub(in crate::analyze) fn class_name(&self) -> &'static str {
        self.classify().0
    }

    fn classify(&self) -> (&'static str, Why) {
        let serves = |p: Protocol| self.protocols.get(&p).is_some_and(|r| r.server);
        if self.programmed_others {
            ("engineering_workstation", Why::Programmed)
        } else if serves(Protocol::Dnp3) {
            ("rtu", Why::Said("DNP3 outstation"))
        } else if serves(Protocol::Iec104) {
            ("rtu", Why::Said("IEC 104 controlled station"))
        } else if serves(Protocol::Bacnet) {
            ("bacnet_controller", Why::Said("answers BACnet"))
        } else if serves(Protocol::Mms) {
            // Port 102 carries S7comm too: a device that answers MMS is an IEC 61850
            // server (protection relay, bay controller), not a Siemens PLC.
            ("ied", Why::Said("MMS server (IEC 61850)"))
        } else if let Some(p) = [
            Protocol::S7comm,
            Protocol::S7commPlus,
            Protocol::Modbus,
            Protocol::Enip,
        ]
        .into_iter()
        .find(|p| serves(*p))
        {
            ("plc", Why::Server(p))
        } else if let Some((p, _)) = self.protocols.iter().find(|(_, r)| r.client) {
            ("hmi", Why::Client(*p))
        } else {
            ("it_host", Why::Said("no industrial protocol role"))
        }
    }

    /// The stored row: the record and its class guess, serialised once, straight from
    /// the typed record (no intermediate `serde_json::Value`).
    pub(in crate::analyze) fn to_json_text(&self) -> String {
        #[derive(Serialize)]
        struct Row<'a> {
            #[serde(flatten)]
            record: &'a DeviceRecord,
            class: ClassGuess,
        }
        serde_json::to_string(&Row {
            record: self,
            class: self.class(),
        })
        .unwrap_or_else(|_| "null".to_owned())
    }
}

impl Analyzer {
    /// An answered flow of an industrial protocol makes its ends client and server of
    /// it, even when no command was recognised (e.g. only reads of unknown codes).
    pub(in crate::analyze) fn flow_roles(&mut self, record: &FlowRecord) {
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
    pub(in crate::analyze) fn load_devices(&mut self) -> store::Result<()> {
        let devices = self.store().devices()?;
        for (key, record) in devices {
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

    /// Devices by the definition in the module documentation.
    pub fn device_count(&self) -> u64 {
        let mac_only = self
            .by_mac
            .keys()
            .filter(|mac| !self.macs_with_ip.contains(*mac))
            .count();
        (self.by_ip.len() + mac_only) as u64
    }

    pub(in crate::analyze) fn entries(&self) -> usize {
        self.by_ip.len() + self.by_mac.len()
    }

    /// Bulk the kernel shed: adds it to both ends' traffic and peers. Only devices the
    /// inventory already knows are updated (a shed flow's first packets reached user
    /// space, so both ends normally are); creating devices here would bypass the
    /// sightings that new-device detection and the capacity limit judge.
    pub(in crate::analyze) fn kernel_conversation(
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

    pub(in crate::analyze) fn mark_dirty(&mut self, key: DeviceKey) {
        self.dirty.insert(key);
    }

    pub(in crate::analyze) fn device_seen(
        &mut self,
        ts_ns: u64,
        mac: Option<Mac>,
        ip: Option<IpAddr>,
        vlan: u16,
    ) {
        let key = match (ip, mac) {
            (Some(ip), _) => DeviceKey::Ip(ip),
            (None, Some(mac)) => DeviceKey::Mac(mac),
            (None, None) => return,
        };
        if let (Some(ip), Some(mac)) = (ip, mac) {
            // ARP with random sender MACs must not grow these maps without bound: at
            // `max_arp_macs` a new MAC is not remembered (it may then count as a
            // MAC-only device, bounded by the inventory, or raise ip_conflict).
            let fits =
                self.macs_with_ip.contains(&mac) || self.macs_with_ip.len() < self.max_arp_macs;
            if fits {
                self.macs_with_ip.insert(mac);
            } else {
                self.counters.arp_macs_over_capacity += 1;
                let cap = self.max_arp_macs;
                self.state_capped("arp_macs", ts_ns, cap);
            }
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
                    Detail::InventoryFull { max_devices: max },
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
        // What the device said about itself before it had an address (a DHCP client,
        // LLDP from its port) follows it to its IP record.
        if let (DeviceKey::Ip(ip), Some(mac)) = (key, mac) {
            if let (Some(record), Some(layer2)) = (self.by_ip.get_mut(&ip), self.by_mac.get(&mac)) {
                for (field, value) in &layer2.identity {
                    if !record.identity.contains_key(field) {
                        record.identity.insert(*field, value.clone());
                        if let Some(source) = layer2.identity_sources.get(field) {
                            record.identity_sources.insert(*field, *source);
                        }
                    }
                }
            }
        }
        self.mark_dirty(key);
        if back {
            self.raise(
                "device_back",
                ts_ns,
                Subject::device(key),
                "a device reported silent is sending again".to_owned(),
                Detail::None,
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
            self.raise_with(
                "new_device",
                ts_ns,
                Subject::device(key),
                || {
                    (
                        format!("device {key} is not in the baseline"),
                        Detail::NewDevice {
                            vlan,
                            mac: mac.as_ref().map(store::format_mac),
                        },
                    )
                },
                vec![item],
            );
        }
    }

    /// `ip_conflict`: an IPv4 address claimed by a second MAC on the same VLAN, unless
    /// one of them is a router (a MAC that claimed two or more IPv4 addresses).
    pub(in crate::analyze) fn check_ip_claim(
        &mut self,
        ts_ns: u64,
        ip: IpAddr,
        mac: Mac,
        vlan: u16,
    ) {
        if !ip.is_ipv4() || !layers::is_unicast_mac(&mac) {
            return;
        }
        if let Some(claims) = self.mac_ipv4.get_mut(&mac) {
            if !claims.contains(&Some(ip)) {
                if let Some(slot) = claims.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(ip);
                }
            }
        } else if self.mac_ipv4.len() < self.max_arp_macs {
            // (Beyond the cap a new MAC's claim is not remembered; counted above.)
            self.mac_ipv4.insert(mac, [Some(ip), None]);
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
            Detail::IpConflict {
                macs: [store::format_mac(&a), store::format_mac(&b)],
                vlan,
            },
            Vec::new(),
        );
    }

    /// The device an identity observation is about: by its address when the
    /// inventory knows it; else by MAC, on the IP record of the one address that MAC
    /// claims (not a router's), or on the MAC-only record.
    fn identity_target(&self, device: IpAddr, mac: Option<Mac>) -> Option<DeviceKey> {
        if self.by_ip.contains_key(&device) {
            return Some(DeviceKey::Ip(device));
        }
        let mac = mac?;
        if let Some(ip) = self.ip_of_mac(mac) {
            return Some(DeviceKey::Ip(ip));
        }
        self.by_mac
            .contains_key(&mac)
            .then_some(DeviceKey::Mac(mac))
    }

    /// The inventoried address of the one IPv4 address `mac` claims (not a router's,
    /// which claims two or more): the ARP/IP claims map, bounded by `max_arp_macs`.
    pub(in crate::analyze) fn ip_of_mac(&self, mac: Mac) -> Option<IpAddr> {
        match self.mac_ipv4.get(&mac) {
            Some([Some(ip), None]) if self.by_ip.contains_key(ip) => Some(*ip),
            _ => None,
        }
    }

    /// A command's endpoint from a frame without IP: the address of the device the
    /// inventory knows by `mac`, else the endpoint as it came (unspecified).
    pub(in crate::analyze) fn endpoint_by_mac(
        &self,
        endpoint: (IpAddr, u16),
        mac: Mac,
    ) -> (IpAddr, u16) {
        match self.ip_of_mac(mac) {
            Some(ip) if endpoint.0.is_unspecified() => (ip, endpoint.1),
            _ => endpoint,
        }
    }

    /// Records an identity value and where it came from. An identification protocol
    /// (DHCP, LLDP, ...) never overwrites a value an industrial protocol reported. A
    /// value repeated as it is stored allocates nothing (the common case: devices
    /// re-report their identity).
    fn record_identity(
        record: &mut DeviceRecord,
        ts_ns: u64,
        protocol: Protocol,
        field: IdentityField,
        new: &str,
    ) -> Recorded {
        let kept_source = record.identity_sources.get(&field).copied();
        if protocol.is_identification()
            && kept_source.is_some_and(|source| !source.is_identification())
            && record.identity.contains_key(&field)
        {
            return Recorded::Refused;
        }
        record.identity_sources.insert(field, protocol);
        if record.identity.get(&field).is_some_and(|kept| kept == new) {
            return Recorded::Same;
        }
        let old = record.identity.insert(field, new.to_owned());
        if let Some(old) = old.as_ref() {
            if record.identity_history.len() >= MAX_IDENTITY_HISTORY {
                record.identity_history.pop_front();
            }
            record.identity_history.push_back(IdentityChange {
                field,
                old: old.clone(),
                new: new.to_owned(),
                ts_ns,
                protocol,
            });
        }
        Recorded::Changed(old)
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::analyze) fn identity(
        &mut self,
        ts_ns: u64,
        device: IpAddr,
        mac: Option<Mac>,
        protocol: Protocol,
        field: IdentityField,
        value: ShortText,
    ) {
        let new = value.as_str();
        let device = match self.identity_target(device, mac) {
            Some(DeviceKey::Ip(ip)) => ip,
            Some(DeviceKey::Mac(mac)) => {
                if let Some(record) = self.by_mac.get_mut(&mac) {
                    Self::record_identity(record, ts_ns, protocol, field, new);
                    self.dirty.insert(DeviceKey::Mac(mac));
                }
                return;
            }
            None => return,
        };
        let Some(record) = self.by_ip.get_mut(&device) else {
            return;
        };
        let old = match Self::record_identity(record, ts_ns, protocol, field, new) {
            Recorded::Refused => return,
            Recorded::Same => {
                self.dirty.insert(DeviceKey::Ip(device));
                return;
            }
            Recorded::Changed(old) => old,
        };
        self.dirty.insert(DeviceKey::Ip(device));
        if vulnerabilities::matters(field) {
            self.rematch_device(device, ts_ns);
        }
        let Some(old) = old else {
            return;
        };
        let Some(record) = self.by_ip.get(&device) else {
            return;
        };
        if field == IdentityField::Mode
            && IdentityField::mode_is_run(&old)
            && !IdentityField::mode_is_run(new)
        {
            let engineer = record
                .engineering_contact_ns
                .filter(|at| ts_ns.saturating_sub(*at) <= ENGINEERING_SESSION_NS);
            if engineer.is_none() {
                self.raise(
                    "plc_mode_change",
                    ts_ns,
                    Subject {
                        src: Some(device),
                        app_proto: Some(protocol),
                        ..Subject::default()
                    },
                    format!("{device} left RUN: it reports mode {new:?} (was {old:?}), with no engineering workstation session"),
                    Detail::ModeChange {
                        old: old.clone(),
                        new: new.to_owned(),
                    },
                    Vec::new(),
                );
            }
        }
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
                Detail::IdentityChange {
                    field,
                    old,
                    new: new.to_owned(),
                },
                Vec::new(),
            );
        }
    }

    /// The inventory as stored (JSON records), for tests and tools.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.by_ip.values().chain(self.by_mac.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(protocols: &[Protocol]) -> DeviceRecord {
        let mut record = DeviceRecord::new(None, Some(IpAddr::from([10, 0, 0, 1])), 0, 1);
        for &protocol in protocols {
            record.role(protocol, true);
        }
        record
    }

    #[test]
    fn the_class_follows_the_industrial_protocol_a_device_answers() {
        for (protocols, class) in [
            (&[Protocol::S7commPlus][..], "plc"),
            (&[Protocol::S7comm], "plc"),
            (&[Protocol::Iec104], "rtu"),
            (&[Protocol::Dnp3], "rtu"),
            // MMS beside S7comm on port 102: the MMS answer tells an IEC 61850 server.
            (&[Protocol::Mms, Protocol::S7comm], "ied"),
            (&[Protocol::Mms], "ied"),
            (&[], "it_host"),
        ] {
            let guess = serving(protocols).class();
            assert_eq!(guess.class, class, "{protocols:?}: {:?}", guess.evidence);
        }
        let mut client = serving(&[]);
        client.role(Protocol::OpcUa, false);
        assert_eq!(client.class().class, "hmi");
    }
}
