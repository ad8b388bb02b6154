//! Industrial commands and protocol errors: programming, stops, writes, illegal operations.

use crate::analyze::*;
use crate::inspect::describe;

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
        // Only a known engineer opens an engineering session (a mode change during it
        // is theirs); an unknown programmer is `plc_programming`, not an excuse.
        let engineer = self.baseline.contains(&BaselineItem::Workstation(c))
            || self.policy.is_engineering_workstation(c);
        if let Some(device) = self.by_ip.get_mut(&s) {
            device.role(protocol, true);
            device.add_peer(c);
            if engineer {
                device.engineering_contact_ns = Some(ts_ns);
            }
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
        let operation = || describe::command(protocol, code);
        let context = || Detail::Command {
            command: code,
            kind,
            operation: operation(),
        };
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
                self.raise_with(
                    "plc_stop",
                    ts_ns,
                    subject,
                    || {
                        (
                            format!(
                                "{} command from {c} to {s}: {}",
                                describe::command_kind(kind),
                                operation()
                            ),
                            context(),
                        )
                    },
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
                    self.raise_with(
                        "plc_programming",
                        ts_ns,
                        subject,
                        || {
                            (
                                format!(
                                    "{} from {c} to {s}: {c} is not an engineering workstation",
                                    operation()
                                ),
                                context(),
                            )
                        },
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
                } else if self.baseline.contains(&item) {
                    // A learned writer with a write it never sent (a Modbus function,
                    // an IEC 104 type, an MQTT topic): a new command key.
                    if !self.baseline.contains(&command_item)
                        && self.is_baseline_device(c)
                        && self.is_baseline_device(s)
                    {
                        self.raise_with(
                            "new_conversation",
                            ts_ns,
                            subject,
                            || {
                                (
                                    format!(
                                        "{} from {c} to {s} is not in the baseline",
                                        operation()
                                    ),
                                    context(),
                                )
                            },
                            vec![command_item],
                        );
                    }
                } else {
                    self.raise_with(
                        "unauthorized_write",
                        ts_ns,
                        subject,
                        || {
                            (
                                format!(
                                    "{c} wrote to {s} ({}), which it never did during learning",
                                    operation()
                                ),
                                context(),
                            )
                        },
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
                    self.raise_with(
                        "new_conversation",
                        ts_ns,
                        subject,
                        || {
                            (
                                format!("{} from {c} to {s} is not in the baseline", operation()),
                                context(),
                            )
                        },
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
        // Built only for a record: a repeated error is counted, not described.
        let text = || {
            let error = describe::error(protocol, kind, code);
            (
                format!("{error} from {} to {}", src.0, dst.0),
                Detail::ProtocolError {
                    error: kind,
                    code,
                    operation: error,
                },
            )
        };
        self.raise_with(signature, ts_ns, subject, text, Vec::new());
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
    const PLC: [u8; 4] = [10, 0, 0, 20];

    /// An analyzer that learns for `learning_s` seconds, with its EVE alerts readable.
    fn analyzer(learning_s: u64) -> (Analyzer, Receiver<EveRecord>) {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(learning_s);
        let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = crossbeam_channel::unbounded();
        let eve = EventSink::new(tx, Delivery::Block);
        (Analyzer::new(Arc::new(policy), Some(Box::new(eve))), rx)
    }

    fn command(a: &mut Analyzer, ts_ns: u64, protocol: Protocol, kind: CommandKind, code: u32) {
        a.observe(Observation::Command {
            ts_ns,
            flow_id: 7,
            client: (IpAddr::from(HMI), 40_000),
            server: (IpAddr::from(PLC), 502),
            protocol,
            kind,
            code,
            unit: None,
            macs: None,
        });
    }

    fn error(a: &mut Analyzer, ts_ns: u64, protocol: Protocol, kind: ProtocolErrorKind, code: u32) {
        a.observe(Observation::ProtocolError {
            ts_ns,
            flow_id: 7,
            client: (IpAddr::from(HMI), 40_000),
            server: (IpAddr::from(PLC), 502),
            sender_is_server: true,
            protocol,
            kind,
            code,
        });
    }

    /// (signature, message, context operation) of every alert written to EVE.
    fn alerts(rx: &Receiver<EveRecord>) -> Vec<(String, String, String)> {
        rx.try_iter()
            .filter_map(|record| match record {
                EveRecord::Alert(alert) => Some((
                    alert.signature.to_string(),
                    alert.message.clone(),
                    alert.context.to_json()["operation"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn stops_and_restarts_alert_during_learning_and_name_the_command() {
        let (mut a, rx) = analyzer(3600);
        command(&mut a, S, Protocol::Dnp3, CommandKind::Restart, 13);
        command(&mut a, 3 * S, Protocol::Modbus, CommandKind::Read, 3);
        assert_eq!(
            alerts(&rx),
            vec![(
                "plc_stop".to_owned(),
                "Restart command from 10.0.0.5 to 10.0.0.20: DNP3 COLD_RESTART (function 13)"
                    .to_owned(),
                "DNP3 COLD_RESTART (function 13)".to_owned()
            )]
        );
        let (mut a, rx) = analyzer(3600);
        command(&mut a, 2 * S, Protocol::S7comm, CommandKind::Stop, 0x29);
        assert_eq!(
            alerts(&rx),
            vec![(
                "plc_stop".to_owned(),
                "Stop command from 10.0.0.5 to 10.0.0.20: S7comm PLC Stop (function 0x29)"
                    .to_owned(),
                "S7comm PLC Stop (function 0x29)".to_owned()
            )]
        );
    }

    #[test]
    fn writes_and_programming_alert_only_after_learning_from_new_sources() {
        let (mut a, rx) = analyzer(10);
        // Learned: the HMI writes registers with function 6.
        command(&mut a, S, Protocol::Modbus, CommandKind::Write, 6);
        command(&mut a, 20 * S, Protocol::Modbus, CommandKind::Write, 6);
        assert!(alerts(&rx).is_empty(), "a learned writer is not alerted");
        // Programming from a host that never programmed: alerted, named.
        command(
            &mut a,
            21 * S,
            Protocol::Modbus,
            CommandKind::Program,
            (90 << 8) | 0x31,
        );
        let alerts = alerts(&rx);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let (signature, message, _) = &alerts[0];
        assert_eq!(signature, "plc_programming");
        assert_eq!(
            message,
            "Modbus UMAS UPLOAD_BLOCK (function 90/0x31) from 10.0.0.5 to 10.0.0.20: 10.0.0.5 is not an engineering workstation",
        );
    }

    #[test]
    fn protocol_errors_read_as_the_protocol_names_them() {
        let (mut a, rx) = analyzer(0);
        error(
            &mut a,
            S,
            Protocol::Modbus,
            ProtocolErrorKind::ErrorReply,
            (1 << 16) | 2,
        );
        error(
            &mut a,
            S,
            Protocol::Enip,
            ProtocolErrorKind::ErrorReply,
            (0x0E << 8) | 0x08,
        );
        // CIP's benign statuses (partial transfer, embedded service error) never alert.
        error(
            &mut a,
            S,
            Protocol::Enip,
            ProtocolErrorKind::ErrorReply,
            (0x0E << 8) | 0x06,
        );
        error(
            &mut a,
            S,
            Protocol::Bacnet,
            ProtocolErrorKind::ErrorReply,
            0x2_0020,
        );
        let alerts = alerts(&rx);
        let messages: Vec<(&str, &str)> = alerts
            .iter()
            .map(|(signature, message, _)| (signature.as_str(), message.as_str()))
            .collect();
        assert_eq!(
            messages,
            vec![
                (
                    "illegal_operation",
                    "Modbus exception 2 (Illegal Data Address) to Read Coils (function 1) from 10.0.0.20 to 10.0.0.5"
                ),
                (
                    "cip_failure",
                    "CIP Get Attribute Single (0x0e) failed: general status 0x08 (service not supported) from 10.0.0.20 to 10.0.0.5"
                ),
                (
                    "bacnet_failure",
                    "BACnet Error: class property (2), code unknown-property (32) from 10.0.0.20 to 10.0.0.5"
                ),
            ]
        );
    }
}
