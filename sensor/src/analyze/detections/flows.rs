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

pub(in crate::analyze) fn is_remote_access(ip_protocol: u8, port: u16) -> bool {
    match ip_protocol {
        6 => REMOTE_ACCESS_TCP.contains(&port),
        17 => REMOTE_ACCESS_UDP.contains(&port),
        _ => false,
    }
}

impl Analyzer {
    pub(in crate::analyze) fn flow_started(&mut self, flow: FlowStart) {
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
            serde_json::Value::Null,
            learn,
        );
    }
}
