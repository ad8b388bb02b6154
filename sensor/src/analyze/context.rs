//! What an analyst needs to act on an alert without opening another tool, added to
//! its `context` when the alert record is built: both devices as the inventory knows
//! them (`src_device`, `dest_device`) and the learned fact the alert deviates from
//! (`baseline`). Built only for an alert record (a new alert, a write to the sinks, a
//! stored row), never per packet, as typed data the sinks serialise
//! ([`detect::AlertContext`]), and bounded: a device is a handful of short fields, and
//! learned facts are found by probing the baseline with the device's remembered peers
//! (at most `MAX_PEERS`), of which at most [`LearnedFact::LISTED`] are listed.

use std::borrow::Cow;

use super::*;
use crate::detect::{AlertContext, Detail, DeviceContext, DeviceRole, LearnedFact};
use crate::inspect::describe;

/// A service as alerts name it: `tcp/502`, or `port 502` when its transport is not
/// known. Written where it is used, so that a text not used is not formatted.
struct Service {
    ip_protocol: Option<u8>,
    port: u16,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = self.port;
        match self.ip_protocol {
            Some(6) => write!(f, "tcp/{port}"),
            Some(17) => write!(f, "udp/{port}"),
            Some(other) => write!(f, "ip-proto-{other}/{port}"),
            None => write!(f, "port {port}"),
        }
    }
}

/// The device as the inventory knows it: addresses, identity (name, vendor, product,
/// model, firmware), class guess and protocol roles.
pub(in crate::analyze) fn device_context(record: &DeviceRecord) -> DeviceContext {
    let identity = |field: IdentityField| record.identity.get(&field).cloned();
    let vendor = match record.identity.get(&IdentityField::Vendor) {
        Some(vendor) => Some(Cow::Owned(vendor.clone())),
        None => record.vendor.map(Cow::Borrowed),
    };
    let mut roles = arrayvec::ArrayVec::new();
    for (protocol, protocol_roles) in &record.protocols {
        for (has, server) in [
            (protocol_roles.client, false),
            (protocol_roles.server, true),
        ] {
            if has {
                // At most one client and one server entry per protocol: never full.
                let _ = roles.try_push(DeviceRole {
                    protocol: *protocol,
                    server,
                });
            }
        }
    }
    DeviceContext {
        ip: record.ip,
        mac: record.mac.as_ref().map(store::format_mac),
        name: identity(IdentityField::Name),
        vendor,
        product: identity(IdentityField::Product),
        model: identity(IdentityField::Model),
        firmware: identity(IdentityField::Firmware),
        class: Cow::Borrowed(record.class_name()),
        roles,
    }
}

impl Analyzer {
    /// The alert's context: its own fields with the devices and the learned fact added
    /// (see the module documentation).
    pub(in crate::analyze) fn alert_context(
        &self,
        signature: &str,
        subject: &Subject,
        detail: Detail,
    ) -> AlertContext {
        let src = match (subject.src, &subject.src_mac) {
            (Some(ip), _) => self.by_ip.get(&ip),
            (None, Some(mac)) => match store::parse_mac(mac) {
                Some(mac) => self.by_mac.get(&mac),
                None => None,
            },
            (None, None) => None,
        };
        let inbound = matches!(
            detail,
            Detail::Direction {
                direction: "inbound"
            }
        );
        AlertContext {
            src_device: src.map(device_context),
            dest_device: subject
                .dst
                .and_then(|ip| self.by_ip.get(&ip))
                .map(device_context),
            baseline: self.learned_fact(signature, subject, inbound),
            detail,
        }
    }

    /// The peers of `device` (as far as the inventory remembers them) for which
    /// `learned` builds a baseline fact that is in the baseline, in address order.
    fn learned_peers(
        &self,
        device: IpAddr,
        learned: impl Fn(IpAddr) -> BaselineItem,
    ) -> Vec<IpAddr> {
        self.by_ip.get(&device).map_or_else(Vec::new, |record| {
            record
                .peers
                .iter()
                .copied()
                .filter(|peer| self.baseline.contains(&learned(*peer)))
                .collect()
        })
    }

    /// The learned fact an alert deviates from, for the signatures that judge against
    /// the baseline.
    fn learned_fact(
        &self,
        signature: &str,
        subject: &Subject,
        inbound: bool,
    ) -> Option<LearnedFact> {
        let (src, dst) = (subject.src, subject.dst);
        match signature {
            "unauthorized_write" => {
                let (server, protocol) = (dst?, subject.app_proto?);
                let name = describe::display(protocol);
                let writers = self.learned_peers(server, |peer| BaselineItem::Writer {
                    client: peer,
                    server,
                    protocol,
                });
                Some(LearnedFact::peers(
                    format_args!("seen {name} writers of {server} during learning"),
                    format_args!("no client wrote to {server} over {name} during learning"),
                    writers,
                ))
            }
            "plc_programming" => {
                let server = dst?;
                let programmers = self.learned_peers(server, BaselineItem::Workstation);
                let configured = self.policy.engineering_workstations.len();
                let mut fact = LearnedFact::peers(
                    format_args!("engineering workstations (programmed during learning) among the peers of {server}"),
                    format_args!("none of the peers of {server} programmed a device during learning"),
                    programmers,
                );
                fact.configured_workstation_networks = Some(configured);
                Some(fact)
            }
            "new_conversation" => {
                let (client, server, port) = (src?, dst?, subject.dst_port?);
                // A flow carries its IP protocol; a command key does not (TCP, or UDP
                // for the protocols that run over it).
                let transports = match subject.proto {
                    Some(ip_protocol) => vec![ip_protocol],
                    None => vec![6, 17],
                };
                let mut clients = Vec::new();
                let mut servers = Vec::new();
                let mut pair_learned = false;
                for ip_protocol in transports {
                    let conversation =
                        |client: IpAddr, server: IpAddr| BaselineItem::Conversation {
                            client,
                            server,
                            ip_protocol,
                            port,
                        };
                    clients.extend(self.learned_peers(server, |peer| conversation(peer, server)));
                    servers.extend(self.learned_peers(client, |peer| conversation(client, peer)));
                    pair_learned |= self.baseline.contains(&conversation(client, server));
                }
                clients.sort_unstable();
                clients.dedup();
                servers.sort_unstable();
                servers.dedup();
                let service = Service {
                    ip_protocol: subject.proto,
                    port,
                };
                let mut fact = LearnedFact::peers(
                    format_args!("learned clients of {server} on {service}"),
                    format_args!("no client talked to {server} on {service} during learning"),
                    clients,
                );
                fact.servers_of_client = Some(Box::new(LearnedFact::peers(
                    format_args!("learned servers of {client} on {service}"),
                    format_args!("{client} talked to no server on {service} during learning"),
                    servers,
                )));
                if subject.proto.is_none() {
                    // A new command key: the conversation itself may be known.
                    fact.conversation_learned = Some(pair_learned);
                }
                Some(fact)
            }
            "remote_access" => {
                let (client, server, port) = (src?, dst?, subject.dst_port?);
                let clients = self.learned_peers(server, |peer| BaselineItem::RemoteAccess {
                    client: peer,
                    server,
                    port,
                });
                let mut fact = LearnedFact::peers(
                    format_args!("learned remote-access clients of {server} on port {port}"),
                    format_args!(
                        "no remote-access session to {server} on port {port} during learning"
                    ),
                    clients,
                );
                let servers = self.learned_peers(client, |peer| BaselineItem::RemoteAccess {
                    client,
                    server: peer,
                    port,
                });
                fact.servers_of_client = Some(Box::new(LearnedFact::peers(
                    format_args!("learned remote-access servers of {client} on port {port}"),
                    format_args!(
                        "{client} opened no remote-access session on port {port} during learning"
                    ),
                    servers,
                )));
                Some(fact)
            }
            "internet_connection" => {
                let internal = if inbound { dst? } else { src? };
                let external = self.learned_peers(internal, |peer| BaselineItem::External {
                    internal,
                    external: peer,
                });
                let allowlisted = self.policy.external_allowlist.len();
                let mut fact = LearnedFact::peers(
                    format_args!("learned external peers of {internal}"),
                    format_args!("{internal} talked to no external address during learning"),
                    external,
                );
                fact.allowlist_networks = Some(allowlisted);
                Some(fact)
            }
            "scan" => {
                let source = src?;
                let known = self.baseline.contains(&BaselineItem::Discoverer(source));
                let text = if known {
                    format!("{source} sent discovery requests or swept objects during learning")
                } else {
                    format!("{source} sent no discovery requests and swept nothing during learning")
                };
                Some(LearnedFact {
                    fact: text,
                    discoverer: Some(known),
                    ..LearnedFact::default()
                })
            }
            "device_silent" | "device_back" => {
                let key = match (src, &subject.src_mac) {
                    (Some(ip), _) => DeviceKey::Ip(ip),
                    (None, Some(mac)) => DeviceKey::Mac(store::parse_mac(mac)?),
                    (None, None) => return None,
                };
                let record = match key {
                    DeviceKey::Ip(ip) => self.by_ip.get(&ip)?,
                    DeviceKey::Mac(mac) => self.by_mac.get(&mac)?,
                };
                let interval_s = record.learned_gap_ns / 1_000_000_000;
                let served: Vec<String> = record
                    .served
                    .iter()
                    .take(LearnedFact::LISTED)
                    .map(|&(ip_protocol, port)| {
                        Service {
                            ip_protocol: Some(ip_protocol),
                            port,
                        }
                        .to_string()
                    })
                    .collect();
                let sightings = record.learning_sightings;
                let mut text = if sightings >= QUIET_MIN_SIGHTINGS && record.learned_gap_ns > 0 {
                    format!("seen {sightings} times during learning, at most {interval_s} s apart")
                } else {
                    format!("no rhythm learned (seen {sightings} times during learning)")
                };
                if !served.is_empty() {
                    text.push_str(&format!("; answered {}", served.join(", ")));
                }
                Some(LearnedFact {
                    fact: text,
                    learning_sightings: Some(u64::from(record.learning_sightings)),
                    learned_interval_s: Some(interval_s),
                    served: Some(served),
                    ..LearnedFact::default()
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, HumanDuration};
    use crate::observe::Delivery;
    use crate::output::eve::{EveRecord, EventSink};
    use crossbeam_channel::Receiver;

    const S: u64 = 1_000_000_000;
    const HMI: [u8; 4] = [10, 0, 0, 5];
    const EWS: [u8; 4] = [10, 0, 0, 6];
    const PLC: [u8; 4] = [10, 0, 0, 20];

    fn ip(octets: [u8; 4]) -> IpAddr {
        IpAddr::from(octets)
    }

    /// An analyzer that learns for 10 s, with its EVE alerts readable.
    fn analyzer() -> (Analyzer, Receiver<EveRecord>) {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(10);
        let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = crossbeam_channel::unbounded();
        let eve = EventSink::new(tx, Delivery::Block);
        (Analyzer::new(Arc::new(policy), Some(Box::new(eve))), rx)
    }

    fn seen(a: &mut Analyzer, ts_ns: u64, octets: [u8; 4]) {
        a.observe(Observation::DeviceSeen {
            ts_ns,
            mac: Some([0x00, 0x80, 0xf4, 0, 0, octets[3]]),
            ip: Some(ip(octets)),
            vlan: 0,
        });
    }

    fn identity(a: &mut Analyzer, field: IdentityField, value: &str) {
        a.observe(Observation::Identity {
            ts_ns: S,
            device: ip(PLC),
            mac: None,
            protocol: Protocol::Modbus,
            field,
            value: ShortText::from_bytes(value.as_bytes()),
        });
    }

    fn command(
        a: &mut Analyzer,
        ts_ns: u64,
        flow_id: u64,
        client: [u8; 4],
        kind: CommandKind,
        code: u32,
    ) {
        a.observe(Observation::Command {
            ts_ns,
            flow_id,
            client: (ip(client), 40_000),
            server: (ip(PLC), 502),
            protocol: Protocol::Modbus,
            kind,
            code,
            unit: None,
            macs: None,
        });
    }

    fn flow(a: &mut Analyzer, ts_ns: u64, flow_id: u64, client: [u8; 4], server: ([u8; 4], u16)) {
        a.observe(Observation::FlowStarted {
            ts_ns,
            flow_id,
            client: (ip(client), 40_000),
            server: (ip(server.0), server.1),
            ip_protocol: 6,
            vlan: 0,
            app_proto: None,
            tcp_flags: 0x02,
        });
    }

    fn eve_alerts(rx: &Receiver<EveRecord>) -> Vec<Alert> {
        rx.try_iter()
            .filter_map(|record| match record {
                EveRecord::Alert(alert) => Some(Arc::unwrap_or_clone(alert)),
                _ => None,
            })
            .collect()
    }

    /// A plant of three devices: the HMI writes to the PLC while learning, the PLC
    /// reports its identity.
    fn plant() -> (Analyzer, Receiver<EveRecord>) {
        let (mut a, rx) = analyzer();
        for device in [HMI, EWS, PLC] {
            seen(&mut a, S, device);
        }
        identity(&mut a, IdentityField::Vendor, "Schneider Electric");
        identity(&mut a, IdentityField::Product, "BMX P34 2020");
        identity(&mut a, IdentityField::Firmware, "V2.1");
        identity(&mut a, IdentityField::Name, "PLC-01");
        flow(&mut a, 2 * S, 1, HMI, (PLC, 502));
        command(&mut a, 2 * S, 1, HMI, CommandKind::Write, 6);
        command(&mut a, 2 * S, 1, HMI, CommandKind::Read, 3);
        (a, rx)
    }

    #[test]
    fn an_unauthorized_write_names_both_devices_the_learned_writers_and_its_flow() {
        let (mut a, rx) = plant();
        command(&mut a, 20 * S, 9, EWS, CommandKind::Write, 16);
        let alerts = eve_alerts(&rx);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let alert = &alerts[0];
        assert_eq!(alert.signature, "unauthorized_write");
        assert_eq!(alert.flow_id, Some(9));
        let context = &alert.context.to_json();
        assert_eq!(
            context["operation"], "Modbus Write Multiple Registers (function 16)",
            "{context}"
        );
        assert_eq!(context["src_device"]["ip"], "10.0.0.6");
        assert_eq!(context["src_device"]["class"], "hmi");
        assert_eq!(
            context["src_device"]["roles"],
            serde_json::json!(["modbus client"])
        );
        let plc = &context["dest_device"];
        assert_eq!(plc["vendor"], "Schneider Electric");
        assert_eq!(plc["product"], "BMX P34 2020");
        assert_eq!(plc["firmware"], "V2.1");
        assert_eq!(plc["name"], "PLC-01");
        assert_eq!(plc["mac"], "00:80:f4:00:00:14");
        assert_eq!(
            plc["summary"],
            "plc \"PLC-01\" (Schneider Electric BMX P34 2020, firmware V2.1): modbus server"
        );
        assert_eq!(
            context["baseline"],
            serde_json::json!({
                "fact": "seen Modbus writers of 10.0.0.20 during learning: 10.0.0.5",
                "learned": ["10.0.0.5"],
                "more": 0,
            })
        );
        // The store (what the API serves) keeps the same context.
        a.commit();
        let stored = a.store().alerts(None, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0].alert.context.to_json(), context);
    }

    #[test]
    fn a_new_command_names_the_learned_clients_of_the_server() {
        let (mut a, rx) = plant();
        // Read Input Registers: a command key the HMI never used.
        command(&mut a, 20 * S, 3, HMI, CommandKind::Read, 4);
        let alerts = eve_alerts(&rx);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].signature, "new_conversation");
        let baseline = &alerts[0].context.to_json()["baseline"];
        assert_eq!(
            baseline["fact"], "learned clients of 10.0.0.20 on port 502: 10.0.0.5",
            "{baseline}"
        );
        assert_eq!(baseline["conversation_learned"], true);
    }

    #[test]
    fn an_internet_connection_names_the_learned_external_peers() {
        let (mut a, rx) = plant();
        flow(&mut a, 3 * S, 2, HMI, ([93, 184, 216, 34], 443));
        flow(&mut a, 20 * S, 5, HMI, ([8, 8, 4, 4], 8443));
        let alerts = eve_alerts(&rx);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let alert = &alerts[0];
        assert_eq!(alert.signature, "internet_connection");
        assert_eq!(alert.flow_id, Some(5));
        assert_eq!(alert.context.to_json()["src_device"]["ip"], "10.0.0.5");
        assert!(alert.context.dest_device.is_none(), "{:?}", alert.context);
        assert_eq!(
            alert.context.to_json()["baseline"]["fact"],
            "learned external peers of 10.0.0.5: 93.184.216.34"
        );
    }

    #[test]
    fn learned_peers_are_bounded_and_an_alert_without_a_flow_has_no_flow_id() {
        let (mut a, rx) = analyzer();
        seen(&mut a, S, PLC);
        for i in 1..=6 {
            seen(&mut a, S, [10, 0, 0, i]);
            command(&mut a, 2 * S, 1, [10, 0, 0, i], CommandKind::Write, 6);
        }
        command(&mut a, 20 * S, 0, [10, 0, 0, 66], CommandKind::Write, 6);
        let alerts = eve_alerts(&rx);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].flow_id, None, "flow id 0 is no flow");
        let baseline = &alerts[0].context.to_json()["baseline"];
        assert_eq!(
            baseline["fact"],
            "seen Modbus writers of 10.0.0.20 during learning: 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4 and 2 more"
        );
        assert_eq!(
            baseline["learned"].as_array().map(Vec::len),
            Some(LearnedFact::LISTED)
        );
        assert_eq!(baseline["more"], 2);
    }
}
