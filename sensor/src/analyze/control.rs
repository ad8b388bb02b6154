//! The analyzer answers the API: it owns inventory, alerts and baseline, so requests
//! reach it through [`ControlHandler`] between observations (see `crate::control`).
//! Alerts and operator changes go through the store, which is where the CLI makes
//! the same changes; what the analyzer holds in memory is refreshed from it.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::net::IpAddr;

use super::{Analyzer, AnalyzerStats, DeviceRecord};
use crate::clock::rfc3339_micros;
use crate::control::{
    mac_text, AlertFilter, ApiSnapshot, BaselineAction, BaselineView, ControlError, ControlHandler,
    Conversation, DeviceDetail, DeviceFilter, DeviceSummary, FlowsSummary, HealthView,
    IdentityChange, OutputLoss, PeerView, MAX_LIST,
};
use crate::detect::{Alert, AlertStatus};
use crate::flow::proto_name;
use crate::observe::{FlowRecord, IdentityField};
use crate::store::{self, DeviceKey};

/// Conversations kept for the flow summary (bounded memory under floods; more are
/// counted in the totals only).
const MAX_CONVERSATIONS: usize = 50_000;

/// A device's peers: protocols and flows seen with each.
type Peers = BTreeMap<IpAddr, (BTreeSet<String>, u64)>;

/// Ended flows, totalled per protocol and per conversation. Keyed by typed labels, so
/// that adding a flow allocates nothing; the API's text views are built when asked.
#[derive(Debug, Default)]
pub(super) struct FlowBook {
    flows_ended: u64,
    packets: u64,
    bytes: u64,
    /// Flows and bytes per protocol.
    by_protocol: HashMap<FlowLabel, (u64, u64)>,
    conversations: HashMap<(IpAddr, IpAddr, FlowLabel), Tally>,
}

/// A flow's protocol: the application protocol, or transport and server port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum FlowLabel {
    App(otsensor_wire::Protocol),
    Port { ip_protocol: u8, port: u16 },
}

impl FlowLabel {
    fn of(record: &FlowRecord) -> FlowLabel {
        match record.app_proto {
            Some(protocol) => FlowLabel::App(protocol),
            None => FlowLabel::Port {
                ip_protocol: record.protocol,
                port: record.dest_port,
            },
        }
    }

    /// The label for humans (`modbus`, `tcp/443`).
    fn text(self) -> String {
        match self {
            FlowLabel::App(protocol) => protocol.name().to_owned(),
            FlowLabel::Port { ip_protocol, port } => {
                format!("{}/{port}", proto_name(ip_protocol).to_lowercase())
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    flows: u64,
    packets: u64,
    bytes: u64,
}

impl FlowBook {
    pub(super) fn add(&mut self, record: &FlowRecord) {
        let label = FlowLabel::of(record);
        let packets = record.to_server.packets + record.to_client.packets;
        let bytes = record.to_server.bytes + record.to_client.bytes;
        self.flows_ended += 1;
        self.packets += packets;
        self.bytes += bytes;
        let by_protocol = self.by_protocol.entry(label).or_default();
        by_protocol.0 += 1;
        by_protocol.1 += bytes;
        let key = (record.src_ip, record.dest_ip, label);
        if self.conversations.len() >= MAX_CONVERSATIONS && !self.conversations.contains_key(&key) {
            return;
        }
        let tally = self.conversations.entry(key).or_default();
        tally.flows += 1;
        tally.packets += packets;
        tally.bytes += bytes;
    }

    /// The totals and the conversations, as the API shows them.
    fn summary(&self) -> FlowsSummary {
        let mut summary = FlowsSummary {
            flows_ended: self.flows_ended,
            packets: self.packets,
            bytes: self.bytes,
            ..FlowsSummary::default()
        };
        for (label, (flows, bytes)) in &self.by_protocol {
            *summary.by_protocol.entry(label.text()).or_default() += flows;
            *summary.bytes_by_protocol.entry(label.text()).or_default() += bytes;
        }
        summary.conversations = self
            .conversations
            .iter()
            .map(|(&(client, server, label), tally)| Conversation {
                client,
                server,
                protocol: label.text(),
                flows: tally.flows,
                packets: tally.packets,
                bytes: tally.bytes,
            })
            .collect();
        summary
    }

    /// Every address's peers, in one pass over the conversations (for snapshots).
    fn peers_index(&self) -> HashMap<IpAddr, Peers> {
        let mut index: HashMap<IpAddr, Peers> = HashMap::default();
        for (&(client, server, label), tally) in &self.conversations {
            for (ip, peer) in [(client, server), (server, client)] {
                let entry = index.entry(ip).or_default().entry(peer).or_default();
                entry.0.insert(label.text());
                entry.1 += tally.flows;
            }
        }
        index
    }

    /// The peers of `ip` with the protocols and flows seen between them.
    fn peers_of(&self, ip: IpAddr) -> Peers {
        let mut peers: BTreeMap<IpAddr, (BTreeSet<String>, u64)> = BTreeMap::new();
        for (&(client, server, label), tally) in &self.conversations {
            let peer = if client == ip {
                server
            } else if server == ip {
                client
            } else {
                continue;
            };
            let entry = peers.entry(peer).or_default();
            entry.0.insert(label.text());
            entry.1 += tally.flows;
        }
        peers
    }
}

fn device_id(record: &DeviceRecord) -> String {
    match (record.ip, record.mac.as_ref()) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(mac)) => mac_text(mac),
        (None, None) => String::new(),
    }
}

/// A device with its identity history and `peers`.
fn detail(record: &DeviceRecord, mut peers: Peers) -> DeviceDetail {
    // Peers seen only in flows still open, or beyond the book's capacity.
    for peer in &record.peers {
        peers.entry(*peer).or_default();
    }
    DeviceDetail {
        summary: summary(record),
        identity: record.identity.clone(),
        identity_sources: record.identity_sources.clone(),
        identity_history: record
            .identity_history
            .iter()
            .map(|change| IdentityChange {
                timestamp: rfc3339_micros(change.ts_ns),
                protocol: change.protocol,
                field: change.field,
                previous: Some(change.old.clone()),
                value: change.new.clone(),
            })
            .collect(),
        peers: peers
            .into_iter()
            .map(|(ip, (protocols, flows))| PeerView {
                ip,
                protocols: protocols.into_iter().collect(),
                flows,
            })
            .collect(),
    }
}

fn summary(record: &DeviceRecord) -> DeviceSummary {
    let identity = |field| record.identity.get(&field).cloned();
    DeviceSummary {
        id: device_id(record),
        ip: record.ip,
        mac: record.mac.as_ref().map(mac_text),
        vlan: record.vlan,
        class: record.class().class.to_owned(),
        name: identity(IdentityField::Name)
            .or_else(|| identity(IdentityField::HostName))
            .or_else(|| identity(IdentityField::SystemName)),
        vendor: identity(IdentityField::Vendor).or_else(|| record.vendor.map(str::to_owned)),
        model: identity(IdentityField::Model).or_else(|| identity(IdentityField::Product)),
        firmware: identity(IdentityField::Firmware),
        protocols: record.protocols.keys().copied().collect(),
        first_seen: rfc3339_micros(record.first_seen_ns),
        last_seen: rfc3339_micros(record.last_seen_ns),
        packets: record.packets_sent + record.packets_received,
        bytes: record.bytes_sent + record.bytes_received,
        vulnerabilities: record.vulnerabilities.iter().map(Into::into).collect(),
    }
}

impl Analyzer {
    /// Devices by the module's definition: every IP device, and MAC-only devices.
    fn device_records(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.by_ip.values().chain(
            self.by_mac
                .iter()
                .filter(|(mac, _)| !self.macs_with_ip.contains(*mac))
                .map(|(_, record)| record),
        )
    }

    fn find_device(&self, id: &str) -> Option<&DeviceRecord> {
        if let Ok(ip) = id.parse::<IpAddr>() {
            return self.by_ip.get(&ip);
        }
        match format!("mac:{}", id.to_lowercase()).parse::<DeviceKey>() {
            Ok(DeviceKey::Mac(mac)) if !self.macs_with_ip.contains(&mac) => self.by_mac.get(&mac),
            _ => None,
        }
    }

    /// Learning progress from 0 to 1 in packet time (1 once learning ended).
    fn learning_progress(&self) -> f64 {
        let duration = self.policy.learning_duration_ns;
        match self.learning_started_ns {
            _ if self.learning_ended || duration == 0 => 1.0,
            None => 0.0,
            Some(started) => {
                let elapsed = self.latest_ns.saturating_sub(started);
                (elapsed as f64 / duration as f64).min(1.0)
            }
        }
    }

    /// What the metrics read (`Metrics::fold_analyzer`), between observations and
    /// after each request.
    pub fn stats(&self) -> AnalyzerStats<'_> {
        AnalyzerStats {
            counters: &self.counters,
            devices: self.device_count(),
            learning: self.is_learning(self.latest_ns),
            learning_progress: self.learning_progress(),
            vulnerable_devices: self.vulnerable_device_counts(),
            alert_latency_ns: self.latency.as_ref(),
            capture_finished: self.capture_finished,
        }
    }

    /// Pending changes reach the store first, so what it answers is current.
    fn committed_store(&mut self) -> std::sync::MutexGuard<'_, store::Store> {
        self.commit();
        self.store()
    }
}

impl ControlHandler for Analyzer {
    fn list_devices(&mut self, filter: &DeviceFilter) -> Vec<DeviceSummary> {
        let mut out: Vec<DeviceSummary> = self
            .device_records()
            .map(summary)
            .filter(|d| filter.matches(d))
            .collect();
        out.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.id.cmp(&b.id)));
        out.truncate(MAX_LIST);
        out
    }

    fn device(&mut self, id: &str) -> Option<DeviceDetail> {
        let record = self.find_device(id)?;
        let peers = record
            .ip
            .map(|ip| self.flow_book.peers_of(ip))
            .unwrap_or_default();
        Some(detail(record, peers))
    }

    fn list_alerts(&mut self, filter: &AlertFilter) -> Vec<Alert> {
        let stored = self
            .committed_store()
            .alerts_where(&filter.query(), MAX_LIST);
        match stored {
            Ok(stored) => stored.into_iter().map(|s| s.alert).collect(),
            Err(_) => {
                self.counters.store_errors += 1;
                Vec::new()
            }
        }
    }

    fn alert(&mut self, id: u64) -> Option<Alert> {
        let stored = self.committed_store().alert(id);
        match stored {
            Ok(stored) => stored.map(|s| s.alert),
            Err(_) => {
                self.counters.store_errors += 1;
                None
            }
        }
    }

    fn set_alert_status(&mut self, id: u64, status: AlertStatus) -> Result<Alert, ControlError> {
        self.commit();
        let changed = match status {
            AlertStatus::Learned => self.store().learn_alert(id),
            other => self.store().set_alert_status(id, other),
        };
        match changed {
            Ok(()) => {}
            Err(store::Error::NoSuchAlert(id)) => return Err(ControlError::NoSuchAlert { id }),
            Err(error) => {
                return Err(ControlError::Store {
                    reason: error.to_string(),
                })
            }
        }
        // The store changed under the analyzer: take the new status (and, for
        // "learned", the new baseline facts) now rather than at the next commit.
        if self.reload().is_err() {
            self.counters.store_errors += 1;
        }
        let alert = self.alert(id).ok_or(ControlError::NoSuchAlert { id })?;
        self.changes.alert(&alert);
        Ok(alert)
    }

    fn baseline(&mut self) -> BaselineView {
        let duration = self.policy.learning_duration_ns;
        BaselineView {
            learning: self.is_learning(self.latest_ns),
            progress: self.learning_progress(),
            started: self.learning_started_ns.map(rfc3339_micros),
            ends: self
                .learning_started_ns
                .filter(|_| duration > 0)
                .map(|started| rfc3339_micros(started.saturating_add(duration))),
            entries: self.baseline.len() as u64,
        }
    }

    fn change_baseline(&mut self, action: BaselineAction) -> Result<BaselineView, ControlError> {
        self.commit();
        let changed = match action {
            BaselineAction::EndLearning => self.store().end_learning(),
            BaselineAction::RestartLearning => self.store().restart_learning(),
        };
        if let Err(error) = changed {
            return Err(ControlError::Store {
                reason: error.to_string(),
            });
        }
        if self.reload().is_err() {
            self.counters.store_errors += 1;
        }
        if action == BaselineAction::RestartLearning {
            // Learning starts again at the next observation's packet time.
            self.learning_started_ns = None;
        }
        let view = self.baseline();
        self.changes.baseline(&view);
        Ok(view)
    }

    fn flows(&mut self) -> FlowsSummary {
        let mut summary = self.flow_book.summary();
        let mut conversations = std::mem::take(&mut summary.conversations);
        conversations.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| (a.client, a.server).cmp(&(b.client, b.server)))
        });
        conversations.truncate(MAX_LIST);
        summary.conversations = conversations;
        summary
    }

    fn health(&mut self) -> HealthView {
        HealthView {
            devices: self.device_count(),
            alerts: self.alerts.len() as u64,
            alerts_new: self
                .alerts
                .values()
                .filter(|a| a.status == AlertStatus::New)
                .count() as u64,
            observations: self.counters.observations,
            learning: self.is_learning(self.latest_ns),
            capture_finished: self.capture_finished,
        }
    }

    fn output_loss(&mut self, loss: OutputLoss) {
        self.raise_output_loss(&loss);
        // Stored at once: after a replay ends no timer commits any more.
        self.commit();
    }

    fn snapshot(&mut self) -> ApiSnapshot {
        let mut peers = self.flow_book.peers_index();
        let mut devices: Vec<DeviceDetail> = self
            .device_records()
            .map(|record| {
                let mine = record
                    .ip
                    .and_then(|ip| peers.remove(&ip))
                    .unwrap_or_default();
                detail(record, mine)
            })
            .collect();
        devices.sort_by(|a, b| (a.summary.ip, &a.summary.id).cmp(&(b.summary.ip, &b.summary.id)));
        ApiSnapshot {
            devices,
            flows: self.flows(),
            baseline: Some(self.baseline()),
            health: Some(self.health()),
            vulnerabilities: Some(self.vulnerabilities_view()),
            catalogue: self.imported_catalogue(),
            generation: 0,
        }
    }

    fn change_count(&self) -> u64 {
        // Observations change inventory, flows and health; the end of the capture
        // changes health; an import changes the advisory catalogue.
        self.counters.observations + u64::from(self.capture_finished) + self.advisory_changes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, HumanDuration};
    use crate::control::{reply_channel, ControlRequest};
    use crate::flow::table::{DirectionCounts, EndReason};
    use crate::observe::Observation;
    use otsensor_wire::Protocol;

    fn analyzer(learning_s: u64) -> Analyzer {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(learning_s);
        let policy = config.validate().expect("default config validates");
        Analyzer::new(Arc::new(policy), None)
    }

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * S;

    fn seen(a: &mut Analyzer, ts_ns: u64, ip: [u8; 4], mac: u8) {
        a.observe(Observation::DeviceSeen {
            ts_ns,
            mac: Some([2, 0, 0, 0, 0, mac]),
            ip: Some(IpAddr::from(ip)),
            vlan: 0,
        });
    }

    fn modbus_flow(ts_ns: u64, client: [u8; 4], server: [u8; 4]) -> Observation {
        let side = |packets, bytes| DirectionCounts { packets, bytes };
        Observation::FlowEnded(FlowRecord {
            flow_id: 1,
            src_ip: IpAddr::from(client),
            src_port: 50_000,
            dest_ip: IpAddr::from(server),
            dest_port: 502,
            protocol: 6,
            vlan: 0,
            first_ns: ts_ns,
            last_ns: ts_ns + S,
            to_server: side(10, 1_000),
            to_client: side(10, 1_200),
            reason: EndReason::Timeout,
            app_proto: Some(Protocol::Modbus),
            tcp_flags_to_server: 0x1a,
            tcp_flags_to_client: 0x12,
        })
    }

    fn ask<T>(
        a: &mut Analyzer,
        request: impl FnOnce(crate::control::Reply<T>) -> ControlRequest,
    ) -> T {
        let (tx, rx) = reply_channel();
        a.answer(request(tx));
        rx.try_recv().expect("answered at once")
    }

    #[test]
    fn devices_peers_and_flows_come_from_the_analyzers_own_state() {
        let mut a = analyzer(60);
        seen(&mut a, T0, [10, 0, 0, 5], 5);
        seen(&mut a, T0, [10, 0, 0, 10], 10);
        a.observe(modbus_flow(T0, [10, 0, 0, 5], [10, 0, 0, 10]));

        let devices = ask(&mut a, |tx| {
            ControlRequest::ListDevices(DeviceFilter::default(), tx)
        });
        let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["10.0.0.5", "10.0.0.10"]);
        assert_eq!(devices[0].packets, 20, "sent + received");
        assert_eq!(devices[1].bytes, 2_200);

        let modbus_only = ask(&mut a, |tx| {
            ControlRequest::ListDevices(
                DeviceFilter {
                    protocol: Some("modbus".into()),
                    class: Some("plc".into()),
                    ..DeviceFilter::default()
                },
                tx,
            )
        });
        assert_eq!(modbus_only.len(), 1, "{modbus_only:?}");
        assert_eq!(modbus_only[0].protocols, [Protocol::Modbus]);

        let detail = ask(&mut a, |tx| ControlRequest::Device("10.0.0.10".into(), tx))
            .expect("device 10.0.0.10");
        assert_eq!(detail.peers.len(), 1);
        assert_eq!(detail.peers[0].ip, IpAddr::from([10, 0, 0, 5]));
        assert_eq!(detail.peers[0].protocols, ["modbus"]);
        assert_eq!(detail.peers[0].flows, 1);
        assert!(ask(&mut a, |tx| ControlRequest::Device("10.9.9.9".into(), tx)).is_none());

        let flows = ask(&mut a, ControlRequest::Flows);
        assert_eq!(flows.flows_ended, 1);
        assert_eq!(flows.by_protocol.get("modbus"), Some(&1));
        assert_eq!(flows.conversations[0].bytes, 2_200);
    }

    #[test]
    fn alerts_are_acknowledged_learned_and_baseline_controlled_through_the_store() {
        let mut a = analyzer(60);
        seen(&mut a, T0, [10, 0, 0, 5], 5);
        let view = ask(&mut a, ControlRequest::Baseline);
        assert!(view.learning);
        assert_eq!(view.progress, 0.0);
        seen(&mut a, T0 + 30 * S, [10, 0, 0, 5], 5);
        let view = ask(&mut a, ControlRequest::Baseline);
        assert!((view.progress - 0.5).abs() < 1e-9, "{view:?}");

        let view = ask(&mut a, |tx| {
            ControlRequest::ChangeBaseline(BaselineAction::EndLearning, tx)
        })
        .expect("end learning");
        assert!(!view.learning);
        assert_eq!(view.progress, 1.0);

        // After learning, a new device alerts; it reaches the API with an id.
        seen(&mut a, T0 + 40 * S, [10, 0, 0, 77], 77);
        let alerts = ask(&mut a, |tx| {
            ControlRequest::ListAlerts(AlertFilter::default(), tx)
        });
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].signature, "new_device");
        let id = alerts[0].id;
        assert_eq!(ask(&mut a, ControlRequest::Health).alerts_new, 1);

        let acked = ask(&mut a, |tx| {
            ControlRequest::SetAlertStatus(id, AlertStatus::Acknowledged, tx)
        })
        .expect("ack");
        assert_eq!(acked.status, AlertStatus::Acknowledged);
        assert_eq!(ask(&mut a, ControlRequest::Health).alerts_new, 0);
        let unknown = ask(&mut a, |tx| {
            ControlRequest::SetAlertStatus(id + 100, AlertStatus::Muted, tx)
        });
        assert_eq!(unknown, Err(ControlError::NoSuchAlert { id: id + 100 }));

        // "Learn this" puts the device into the baseline: after a restart of
        // learning and its end, a device learned stays quiet while another alerts.
        let learned = ask(&mut a, |tx| {
            ControlRequest::SetAlertStatus(id, AlertStatus::Learned, tx)
        })
        .expect("learn");
        assert_eq!(learned.status, AlertStatus::Learned);
        let entries_before = ask(&mut a, ControlRequest::Baseline).entries;
        let view = ask(&mut a, |tx| {
            ControlRequest::ChangeBaseline(BaselineAction::RestartLearning, tx)
        })
        .expect("restart");
        assert_eq!(view.entries, 0, "restart forgets the baseline");
        assert!(entries_before > 0);
        seen(&mut a, T0 + 50 * S, [10, 0, 0, 5], 5);
        assert!(ask(&mut a, ControlRequest::Baseline).learning);
    }

    /// 10,000 newer low-severity alerts after one high-severity alert (ids from 1).
    fn noisy_store() -> store::Store {
        let mut db = store::Store::in_memory().expect("store");
        let mut batch = store::Batch::default();
        let mut high = crate::control::tests_support::sample_alert();
        high.id = 1;
        high.count = 1;
        batch.alerts.push(store::AlertRow {
            alert: Arc::new(high),
            learn: Vec::new(),
        });
        for i in 0..10_000u32 {
            let mut low = crate::control::tests_support::sample_alert();
            low.id = u64::from(i) + 2;
            low.signature = "new_device".into();
            low.severity = crate::detect::Severity::LOW;
            low.src_ip = Some(IpAddr::from((0x0a01_0000u32 + i).to_be_bytes()));
            low.dest_ip = None;
            low.last_ns = T0 + u64::from(i + 1) * S;
            low.count = 1;
            batch.alerts.push(store::AlertRow {
                alert: Arc::new(low),
                learn: Vec::new(),
            });
        }
        db.write(&batch).expect("write");
        db
    }

    #[test]
    fn alert_filters_run_before_the_limit() {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(0);
        let policy = Arc::new(config.validate().expect("policy"));
        let mut a = Analyzer::with_store(policy, None, noisy_store());
        let high = ask(&mut a, |tx| {
            ControlRequest::ListAlerts(
                AlertFilter {
                    severity: Some(1),
                    ..AlertFilter::default()
                },
                tx,
            )
        });
        assert_eq!(high.len(), 1, "newer noise must not hide the high alert");
        assert_eq!(high[0].signature, "plc_stop");
        let by_signature = ask(&mut a, |tx| {
            ControlRequest::ListAlerts(
                AlertFilter {
                    signature: Some("plc_stop".into()),
                    ..AlertFilter::default()
                },
                tx,
            )
        });
        assert_eq!(by_signature.len(), 1);
        let by_device = ask(&mut a, |tx| {
            ControlRequest::ListAlerts(
                AlertFilter {
                    device: Some(IpAddr::from([10, 0, 0, 10])),
                    ..AlertFilter::default()
                },
                tx,
            )
        });
        assert_eq!(by_device.len(), 1);
        let all = ask(&mut a, |tx| {
            ControlRequest::ListAlerts(AlertFilter::default(), tx)
        });
        assert_eq!(all.len(), MAX_LIST);
    }

    #[test]
    fn the_snapshot_holds_every_device_with_the_detail_the_api_answers() {
        let mut a = analyzer(0);
        seen(&mut a, T0, [10, 0, 0, 10], 10);
        seen(&mut a, T0, [10, 0, 0, 20], 20);
        a.observe(modbus_flow(T0 + S, [10, 0, 0, 20], [10, 0, 0, 10]));
        let before = a.change_count();
        let snapshot = a.snapshot();
        assert_eq!(snapshot.devices.len(), a.device_count() as usize);
        for device in &snapshot.devices {
            let asked = a.device(&device.summary.id).expect("device");
            assert_eq!(&asked, device);
        }
        assert_eq!(snapshot.health, Some(a.health()));
        assert_eq!(snapshot.flows, a.flows());
        assert!(snapshot.device("10.0.0.10").is_some());
        assert!(snapshot.device("10.9.9.9").is_none());
        seen(&mut a, T0 + 2 * S, [10, 0, 0, 30], 30);
        assert!(
            a.change_count() > before,
            "new observations change the snapshot"
        );
    }
}
