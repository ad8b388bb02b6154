//! Conversation detections: new conversations, internet connections, remote access.

use crate::analyze::*;

/// TCP ports of remote-access tools (IANA and vendor documentation): SSH, Telnet,
/// pcAnywhere, Radmin, RDP, VNC HTTP, VNC displays 0-3, TeamViewer, AnyDesk.
pub(in crate::analyze) const REMOTE_ACCESS_TCP: [u16; 13] = [
    22, 23, 5631, 4899, 3389, 5800, 5900, 5901, 5902, 5903, 5938, 7070, 6568,
];
/// UDP ports: RDP's UDP transport, TeamViewer.
pub(in crate::analyze) const REMOTE_ACCESS_UDP: [u16; 2] = [3389, 5938];

/// The fields of a flow start the detections use.
pub(in crate::analyze) struct FlowStart {
    pub(in crate::analyze) ts_ns: u64,
    pub(in crate::analyze) flow_id: u64,
    pub(in crate::analyze) client: (IpAddr, u16),
    pub(in crate::analyze) server: (IpAddr, u16),
    pub(in crate::analyze) ip_protocol: u8,
    pub(in crate::analyze) app_proto: Option<Protocol>,
    pub(in crate::analyze) tcp_flags: u8,
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// True for addresses that never leave the site whatever `networks.internal` says:
/// multicast, broadcast, link-local, unspecified, loopback and documentation ranges
/// (RFC 5737, RFC 3849). None of them is "the internet".
pub(in crate::analyze) fn stays_on_site(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_loopback()
                || a == 0
                || a >= 240
                || (a, b, c) == (192, 0, 2)
                || (a, b, c) == (198, 51, 100)
                || (a, b, c) == (203, 0, 113)
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            v6.is_multicast()
                || v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_unicast_link_local()
                || (segments[0], segments[1]) == (0x2001, 0x0db8)
        }
    }
}

/// Sources no real host can have: multicast, broadcast, unspecified.
pub(in crate::analyze) fn is_bogon_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    }
}

pub(in crate::analyze) fn is_remote_access(ip_protocol: u8, port: u16) -> bool {
    match ip_protocol {
        6 => REMOTE_ACCESS_TCP.contains(&port),
        17 => REMOTE_ACCESS_UDP.contains(&port),
        _ => false,
    }
}

impl Analyzer {
    pub(in crate::analyze) fn flow_started(&mut self, mut flow: FlowStart) {
        let tcp = flow.ip_protocol == 6;
        // A TCP flow first seen after its SYN (a sensor starts mid-session, SYNs are
        // lost under load, long sessions outlive flow timeouts) is judged like any
        // other; the worker oriented it by its ports, and what the inventory learned
        // about who serves which port overrides that guess.
        let mid_stream = tcp && flow.tcp_flags & TCP_SYN == 0;
        if mid_stream && self.serves(flow.client) && !self.serves(flow.server) {
            std::mem::swap(&mut flow.client, &mut flow.server);
        }
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
        // A connection attempt: a SYN without ACK (SYN-ACK-first flows were answered).
        let attempt = tcp && flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        if attempt && server_internal && !client_internal && !learning {
            self.track_flood(&flow);
        }
        let remote = is_remote_access(flow.ip_protocol, port);
        let crosses_site =
            client_internal != server_internal && !stays_on_site(client) && !stays_on_site(server);
        // Outbound: judged at once. Inbound (a public client): judged when the
        // handshake completes (at flow end), so spoofed SYNs never raise one alert
        // per forged source (they feed `flood`).
        if crosses_site && client_internal {
            let item = BaselineItem::External {
                internal: client,
                external: server,
            };
            if learning {
                self.learn(item, flow.ts_ns);
            } else if !self.policy.is_external_allowed(server) && !self.baseline.contains(&item) {
                let how = if mid_stream {
                    " (seen mid-session)"
                } else {
                    ""
                };
                self.raise_flow(
                    "internet_connection",
                    &flow,
                    format!(
                        "outbound: {client} -> {server}:{port} leaves the internal networks{how}"
                    ),
                    vec![item],
                );
            }
        }
        if remote && !stays_on_site(client) && !stays_on_site(server) {
            let item = BaselineItem::RemoteAccess {
                client,
                server,
                port,
            };
            if learning {
                self.learn(item, flow.ts_ns);
            } else if !self.baseline.contains(&item) {
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
        let opening = !tcp || flow.tcp_flags & 0x12 == 0x02;
        if opening && !learning {
            self.track_scan(&flow);
        }
    }

    /// True when the inventory saw `endpoint`'s device answer on that port.
    fn serves(&self, endpoint: (IpAddr, u16)) -> bool {
        self.by_ip
            .get(&endpoint.0)
            .is_some_and(|device| device.served.contains(&(6, endpoint.1)))
    }

    pub(in crate::analyze) fn flow_ended(&mut self, record: &FlowRecord) {
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
        // A session first seen mid-stream has no handshake in view: both sides sending
        // without SYNs is an established session.
        let mid_stream = tcp
            && (record.tcp_flags_to_server | record.tcp_flags_to_client) & TCP_SYN == 0
            && record.to_server.packets > 0;
        let answered = record.to_client.packets > 0 && (!tcp || handshake || mid_stream);
        // The client's ACK after the server's SYN-ACK: a spoofed SYN never gets here.
        let completed = !tcp
            || mid_stream
            || (handshake
                && record.tcp_flags_to_server & TCP_ACK != 0
                && record.to_server.packets > 1);
        if record.to_client.packets > 0 && completed {
            self.inbound_internet(record, mid_stream);
        }
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
                Detail::None,
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
                Detail::None,
                vec![item],
            );
        }
    }

    /// A public client that completed a session with an internal device.
    fn inbound_internet(&mut self, record: &FlowRecord, mid_stream: bool) {
        let (client, server) = (record.src_ip, record.dest_ip);
        if self.policy.is_internal(client)
            || !self.policy.is_internal(server)
            || stays_on_site(client)
            || stays_on_site(server)
        {
            return;
        }
        let item = BaselineItem::External {
            internal: server,
            external: client,
        };
        if self.is_learning(record.first_ns) {
            self.learn(item, record.first_ns);
            return;
        }
        if self.policy.is_external_allowed(client) || self.baseline.contains(&item) {
            return;
        }
        let how = if mid_stream {
            " (seen mid-session)"
        } else {
            ""
        };
        let subject = Subject {
            src: Some(client),
            src_port: Some(record.src_port),
            dst: Some(server),
            dst_port: Some(record.dest_port),
            proto: Some(record.protocol),
            flow_id: Some(record.flow_id),
            app_proto: record.app_proto,
            src_mac: None,
        };
        self.raise(
            "internet_connection",
            record.first_ns,
            subject,
            format!(
                "inbound: {client} -> {server}:{} from outside the internal networks{how}",
                record.dest_port
            ),
            Detail::Direction {
                direction: "inbound",
            },
            vec![item],
        );
    }

    pub(in crate::analyze) fn raise_flow(
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
            Detail::None,
            learn,
        );
    }
}

#[cfg(test)]
mod tests {
    //! The flow family: internet connections, remote access, and what `flow_started`
    //! feeds (floods, port scans).
    use super::*;
    use crate::config::{Config, HumanDuration};

    const S: u64 = 1_000_000_000;
    const HMI: [u8; 4] = [10, 0, 0, 5];
    const PLC: [u8; 4] = [10, 0, 0, 20];

    fn analyzer(learning_s: u64) -> Analyzer {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(learning_s);
        let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
        Analyzer::new(Arc::new(policy), None)
    }

    fn flow(a: &mut Analyzer, ts_ns: u64, client: (IpAddr, u16), server: (IpAddr, u16), flags: u8) {
        a.observe(Observation::FlowStarted {
            ts_ns,
            flow_id: ts_ns,
            client,
            server,
            ip_protocol: 6,
            vlan: 0,
            app_proto: None,
            tcp_flags: flags,
        });
    }

    fn raised(a: &mut Analyzer) -> Vec<(String, Option<IpAddr>, Option<IpAddr>, u64)> {
        a.finish()
            .raised
            .iter()
            .map(|r| (r.signature.clone(), r.src, r.dst, r.count))
            .collect()
    }

    fn ip(octets: [u8; 4]) -> IpAddr {
        IpAddr::from(octets)
    }

    #[test]
    fn outbound_internet_alerts_after_learning_unless_learned_or_on_site() {
        let mut a = analyzer(10);
        let update_server = ip([93, 184, 216, 34]);
        let link_local = (ip([169, 254, 1, 1]), ip([169, 254, 1, 2]));
        let (ssdp, broadcast) = (ip([239, 255, 255, 250]), ip([255, 255, 255, 255]));
        // Learned: the HMI reaches one public update server. After learning: the
        // learned server, mDNS and SSDP multicast, a limited broadcast and link-local
        // (none of them is the internet), then a new public destination and one first
        // seen mid-session (ACK only).
        let flows = [
            (S, (ip(HMI), 40_000), (update_server, 443), TCP_SYN),
            (20 * S, (ip(HMI), 40_001), (update_server, 443), TCP_SYN),
            (21 * S, (ip(HMI), 5353), (ip([224, 0, 0, 251]), 5353), 0),
            (21 * S, (ip(HMI), 40_002), (ssdp, 1900), TCP_SYN),
            (21 * S, (ip(HMI), 40_003), (broadcast, 67), TCP_SYN),
            (21 * S, (link_local.0, 40_004), (link_local.1, 80), TCP_SYN),
            (22 * S, (ip(PLC), 40_005), (ip([8, 8, 4, 4]), 8443), TCP_SYN),
            (23 * S, (ip(PLC), 51_000), (ip([1, 1, 1, 1]), 4444), TCP_ACK),
        ];
        for (ts_ns, client, server, flags) in flows {
            flow(&mut a, ts_ns, client, server, flags);
        }
        let mut raised = raised(&mut a);
        raised.sort();
        let internet = |dst: [u8; 4]| {
            (
                "internet_connection".to_owned(),
                Some(ip(PLC)),
                Some(ip(dst)),
                1,
            )
        };
        assert_eq!(raised, vec![internet([1, 1, 1, 1]), internet([8, 8, 4, 4])]);
    }

    #[test]
    fn remote_access_between_internal_hosts_alerts_once_unless_learned() {
        let mut a = analyzer(10);
        flow(&mut a, S, (ip(HMI), 50_000), (ip(PLC), 3389), TCP_SYN);
        flow(&mut a, 20 * S, (ip(HMI), 50_001), (ip(PLC), 3389), TCP_SYN);
        let engineer = ip([10, 0, 0, 77]);
        flow(&mut a, 21 * S, (engineer, 50_002), (ip(PLC), 5900), TCP_SYN);
        flow(&mut a, 22 * S, (engineer, 50_003), (ip(PLC), 5900), TCP_SYN);
        assert_eq!(
            raised(&mut a),
            vec![("remote_access".to_owned(), Some(engineer), Some(ip(PLC)), 2)]
        );
    }

    #[test]
    fn a_spoofed_syn_flood_is_one_flood_alert_not_one_alert_per_source() {
        let mut a = analyzer(0);
        let attempts = u64::from(a.policy.flood_attempts);
        // Twice the threshold within one window, each from another public source,
        // plus SYNs from impossible sources (multicast, broadcast).
        let sources = (0..2 * attempts).map(|i| ip([45, 33, (i / 250) as u8, (i % 250) as u8 + 1]));
        for (i, source) in (0..).zip(sources) {
            flow(
                &mut a,
                S + i * 1_000_000,
                (source, 1024),
                (ip(PLC), 20_000),
                TCP_SYN,
            );
        }
        for bogon in [ip([224, 0, 0, 9]), ip([255, 255, 255, 255])] {
            flow(&mut a, 2 * S, (bogon, 1024), (ip(PLC), 20_000), TCP_SYN);
        }
        let raised = raised(&mut a);
        let signatures: Vec<&str> = raised.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(signatures, vec!["flood"], "{raised:?}");
        assert_eq!(raised[0].2, Some(ip(PLC)));
    }

    #[test]
    fn a_port_scan_alerts_at_its_threshold_and_not_below() {
        let ports = analyzer(0).policy.port_scan_ports as u16;
        let scanner = ip([10, 0, 0, 66]);
        // (Ports clear of the remote-access list, which would alert on their own.)
        let scan = |ports: u16| {
            let mut a = analyzer(0);
            for port in 0..ports {
                let server = (ip(PLC), 10_000 + port);
                flow(
                    &mut a,
                    S + u64::from(port),
                    (scanner, 60_000),
                    server,
                    TCP_SYN,
                );
            }
            raised(&mut a)
        };
        let below = scan(ports - 1);
        assert!(below.is_empty(), "below the threshold: {below:?}");
        let raised = scan(ports);
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!((raised[0].0.as_str(), raised[0].1), ("scan", Some(scanner)));
    }
}
