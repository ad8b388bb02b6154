//! Alerts: stable keys, de-duplication, throttling, the sinks and the store.

use super::*;

pub(in crate::analyze) struct AlertState {
    pub(in crate::analyze) id: u64,
    pub(in crate::analyze) status: AlertStatus,
    pub(in crate::analyze) count: u64,
    pub(in crate::analyze) last_ns: u64,
    pub(in crate::analyze) last_emitted_ns: Option<u64>,
    pub(in crate::analyze) raised_this_run: bool,
    pub(in crate::analyze) signature: &'static str,
    pub(in crate::analyze) src: Option<IpAddr>,
    pub(in crate::analyze) dst: Option<IpAddr>,
    pub(in crate::analyze) src_mac: Option<String>,
}

/// Who an alert is about, and the packet context.
#[derive(Clone, Debug, Default)]
pub(in crate::analyze) struct Subject {
    pub(in crate::analyze) src: Option<IpAddr>,
    pub(in crate::analyze) src_port: Option<u16>,
    pub(in crate::analyze) dst: Option<IpAddr>,
    pub(in crate::analyze) dst_port: Option<u16>,
    pub(in crate::analyze) proto: Option<u8>,
    pub(in crate::analyze) flow_id: Option<u64>,
    pub(in crate::analyze) app_proto: Option<Protocol>,
    pub(in crate::analyze) src_mac: Option<String>,
}

impl Subject {
    pub(in crate::analyze) fn device(key: DeviceKey) -> Subject {
        match key {
            DeviceKey::Ip(ip) => Subject {
                src: Some(ip),
                ..Subject::default()
            },
            DeviceKey::Mac(mac) => Subject {
                src_mac: Some(store::format_mac(&mac)),
                ..Subject::default()
            },
        }
    }

    pub(in crate::analyze) fn flow(flow: &FlowStart) -> Subject {
        Subject {
            src: Some(flow.client.0),
            src_port: Some(flow.client.1),
            dst: Some(flow.server.0),
            dst_port: Some(flow.server.1),
            proto: Some(flow.ip_protocol),
            flow_id: Some(flow.flow_id),
            app_proto: flow.app_proto,
            src_mac: None,
        }
    }
}

pub(in crate::analyze) fn alert_key(signature: &str, subject: &Subject) -> String {
    match (&subject.src, &subject.src_mac) {
        (None, Some(mac)) => format!("{signature}|mac:{mac}|-"),
        _ => detect::alert_key(signature, subject.src, subject.dst),
    }
}

pub(in crate::analyze) type ParsedKey =
    (&'static str, Option<IpAddr>, Option<IpAddr>, Option<String>);

pub(in crate::analyze) fn parse_alert_key(key: &str) -> Option<ParsedKey> {
    let mut parts = key.split('|');
    let signature = detect::by_name(parts.next()?)?.name;
    let src = parts.next()?;
    let dst = parts.next()?;
    let (src, src_mac) = match src.strip_prefix("mac:") {
        Some(mac) => (None, Some(mac.to_owned())),
        None => (src.parse().ok(), None),
    };
    Some((signature, src, dst.parse().ok(), src_mac))
}

impl Analyzer {
    /// Raises (or repeats) an alert: de-duplicated per (signature, src, dst), written to
    /// the sinks on first occurrence and at most once per throttle interval after, and
    /// stored. Learned and muted alerts are counted but not written.
    pub(in crate::analyze) fn raise(
        &mut self,
        signature: &'static str,
        ts_ns: u64,
        subject: Subject,
        message: String,
        context: serde_json::Value,
        learn: Vec<BaselineItem>,
    ) {
        let Some(detection) = detect::by_name(signature) else {
            return;
        };
        let key = alert_key(signature, &subject);
        let emit = match self.alerts.get_mut(&key) {
            Some(state) => {
                self.counters.alert_repeats += 1;
                state.raised_this_run = true;
                // A replay of packets already accounted (restart) adds nothing.
                if ts_ns > state.last_ns {
                    state.count += 1;
                    state.last_ns = ts_ns;
                }
                let quiet = matches!(state.status, AlertStatus::Learned | AlertStatus::Muted);
                let due = state
                    .last_emitted_ns
                    .is_none_or(|last| ts_ns >= last.saturating_add(ALERT_THROTTLE_NS));
                let write = !quiet && due;
                if write {
                    state.last_emitted_ns = Some(ts_ns);
                }
                Some(((state.id, state.count, state.status), write))
            }
            None => {
                if self.alerts.len() >= MAX_ALERTS {
                    self.counters.alerts_over_capacity += 1;
                    if !self.alert_table_full_raised && signature != "alert_table_full" {
                        self.alert_table_full_raised = true;
                        // Room is kept for this one alert.
                        self.insert_alert(detection, "alert_table_full", ts_ns, Subject::default());
                    }
                    return;
                }
                let id = self.insert_alert(detection, signature, ts_ns, subject.clone());
                Some(((id, 1, AlertStatus::New), true))
            }
        };
        let Some(((id, count, status), write)) = emit else {
            return;
        };
        if !write {
            // A repeat that is not written (throttled, learned or muted): when its row
            // is already pending, updating the row is all there is to do, and no
            // record is built.
            if let Some(row) = self.pending_alerts.get_mut(&key) {
                row.alert.last_ns = row.alert.last_ns.max(ts_ns);
                row.alert.count = count;
                return;
            }
        }
        let first_ns = ts_ns;
        let mut alert = Alert::of(detection);
        alert.id = id;
        alert.src_ip = subject.src;
        alert.src_port = subject.src_port;
        alert.dest_ip = subject.dst;
        alert.dest_port = subject.dst_port;
        alert.proto = subject.proto;
        alert.flow_id = subject.flow_id;
        alert.app_proto = subject.app_proto;
        alert.src_mac = subject.src_mac.clone();
        alert.message = message;
        alert.context = context;
        alert.first_ns = first_ns;
        alert.last_ns = ts_ns;
        alert.count = count;
        alert.status = status;
        self.pending_alerts
            .entry(key)
            .and_modify(|row| {
                row.alert.last_ns = row.alert.last_ns.max(ts_ns);
                row.alert.count = count;
            })
            .or_insert_with(|| AlertRow {
                alert: alert.clone(),
                learn: learn.clone(),
            });
        if write {
            if self.current_mono_ns > 0 {
                let latency = mono_ns().saturating_sub(self.current_mono_ns).max(1);
                if let Some(histogram) = self.latency.as_mut() {
                    let _ = histogram.record(latency);
                }
                if let Some(metrics) = &self.metrics {
                    metrics.alert_latency.record(Duration::from_nanos(latency));
                }
            }
            let mut alert = alert;
            // A new alert's packets: the evidence thread writes them and then the
            // EVE record (with the file's hash); the sinks get the path now.
            let eve_by_evidence = count == 1
                && self.evidence.as_ref().is_some_and(|evidence| {
                    evidence.request(&mut alert, ts_ns, self.eve.is_some())
                });
            self.sinks.send(&alert);
            self.changes.alert(&alert);
            if let (false, Some(eve)) = (eve_by_evidence, self.eve.as_mut()) {
                eve.send(EveRecord::Alert(Box::new(alert)));
            }
        }
    }

    pub(in crate::analyze) fn insert_alert(
        &mut self,
        _detection: &Detection,
        signature: &'static str,
        ts_ns: u64,
        subject: Subject,
    ) -> u64 {
        let id = self.next_alert_id;
        self.next_alert_id += 1;
        let key = alert_key(signature, &subject);
        self.alerts.insert(
            key,
            AlertState {
                id,
                status: AlertStatus::New,
                count: 1,
                last_ns: ts_ns,
                last_emitted_ns: Some(ts_ns),
                raised_this_run: true,
                signature,
                src: subject.src,
                dst: subject.dst,
                src_mac: subject.src_mac,
            },
        );
        id
    }
}
