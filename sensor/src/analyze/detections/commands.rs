//! Industrial commands and protocol errors: programming, stops, writes, illegal operations.

use crate::analyze::*;

impl Analyzer {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::analyze) fn command(
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
        // Built only when an alert is raised: commands are the analyzer's most frequent
        // observation after sightings.
        let context = || serde_json::json!({ "command": code, "kind": kind });
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
                    context(),
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
                        context(),
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
                        context(),
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
                        context(),
                        vec![command_item],
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::analyze) fn protocol_error(
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
}
