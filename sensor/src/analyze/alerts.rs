//! Alerts: stable keys, de-duplication, throttling, the sinks and the store.

use super::*;
use crate::control::OutputLoss;

pub(in crate::analyze) struct AlertState {
    pub(in crate::analyze) id: u64,
    pub(in crate::analyze) status: AlertStatus,
    pub(in crate::analyze) count: u64,
    /// The first occurrence's packet time: what every write of the alert reports as
    /// `first_seen`, repeats included.
    pub(in crate::analyze) first_ns: u64,
    pub(in crate::analyze) last_ns: u64,
    pub(in crate::analyze) last_emitted_ns: Option<u64>,
    pub(in crate::analyze) raised_this_run: bool,
    pub(in crate::analyze) signature: &'static str,
    pub(in crate::analyze) src: Option<IpAddr>,
    pub(in crate::analyze) dst: Option<IpAddr>,
    pub(in crate::analyze) src_mac: Option<String>,
}

impl AlertState {
    /// The state of an alert read back from the store, or None when its key no longer
    /// parses (a signature since removed).
    pub(in crate::analyze) fn restored(key: &str, history: AlertHistory) -> Option<Self> {
        let (signature, src, dst, src_mac) = parse_alert_key(key)?;
        Some(Self {
            id: history.id,
            status: history.status,
            count: history.count,
            first_ns: history.first_ns,
            last_ns: history.last_ns,
            last_emitted_ns: Some(history.last_ns),
            raised_this_run: false,
            signature,
            src,
            dst,
            src_mac,
        })
    }
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

/// An alert's stable key, `signature|src|dst` (as [`detect::alert_key`] writes it),
/// built in one allocation.
pub(in crate::analyze) fn alert_key(signature: &str, subject: &Subject) -> String {
    let mut key = String::with_capacity(signature.len() + 2 * 40);
    write_alert_key(&mut key, signature, subject);
    key
}

/// [`alert_key`] into `key` (cleared first): the analyzer reuses one buffer, so that a
/// repeated alert is looked up without an allocation.
pub(in crate::analyze) fn write_alert_key(key: &mut String, signature: &str, subject: &Subject) {
    use std::fmt::Write;
    key.clear();
    key.push_str(signature);
    key.push('|');
    match (&subject.src, &subject.src_mac) {
        (None, Some(mac)) => {
            key.push_str("mac:");
            key.push_str(mac);
            key.push_str("|-");
            return;
        }
        (Some(ip), _) => {
            let _ = write!(key, "{ip}");
        }
        (None, None) => key.push('-'),
    }
    key.push('|');
    match subject.dst {
        Some(ip) => {
            let _ = write!(key, "{ip}");
        }
        None => key.push('-'),
    }
}

/// An alert occurrence counted in the table whose record is still to be built.
pub(in crate::analyze) struct Occurrence {
    detection: &'static Detection,
    key: String,
    id: u64,
    count: u64,
    status: AlertStatus,
    first_ns: u64,
    write: bool,
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

/// Signatures that report a lasting state rather than an event: raised once and then
/// only updated (count, last seen) in the store and the API, never re-sent. Not
/// `firmware_change` or `vulnerable_device`: their repeats are new changes.
pub(in crate::analyze) fn is_state_signature(signature: &str) -> bool {
    matches!(
        signature,
        "new_device" | "ip_conflict" | "inventory_full" | "alert_table_full"
    )
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
        detail: Detail,
        learn: Vec<BaselineItem>,
    ) {
        self.raise_with(signature, ts_ns, subject, move || (message, detail), learn);
    }

    /// [`Analyzer::raise`] for frequent alerts: `describe` builds the message and the
    /// context only when a record is built, not for a repeat that only counts.
    pub(in crate::analyze) fn raise_with(
        &mut self,
        signature: &'static str,
        ts_ns: u64,
        subject: Subject,
        describe: impl FnOnce() -> (String, Detail),
        learn: Vec<BaselineItem>,
    ) {
        let Some(occurrence) = self.occurrence(signature, ts_ns, &subject) else {
            return;
        };
        let (message, detail) = describe();
        self.write_alert(occurrence, ts_ns, subject, message, detail, learn);
    }

    /// Counts an occurrence of an alert in its table; what remains to be done with it,
    /// or None when counting was all (a throttled, learned or muted repeat whose row is
    /// already pending).
    fn occurrence(
        &mut self,
        signature: &'static str,
        ts_ns: u64,
        subject: &Subject,
    ) -> Option<Occurrence> {
        let detection = detect::by_name(signature)?;
        let mut key = std::mem::take(&mut self.alert_key_buffer);
        write_alert_key(&mut key, signature, subject);
        let occurrence = self.count_occurrence(detection, signature, &key, ts_ns, subject);
        self.alert_key_buffer = key;
        occurrence
    }

    /// [`Analyzer::occurrence`] of the alert keyed `key`.
    fn count_occurrence(
        &mut self,
        detection: &'static Detection,
        signature: &'static str,
        key: &str,
        ts_ns: u64,
        subject: &Subject,
    ) -> Option<Occurrence> {
        let mut new_id = None;
        if !self.alerts.contains_key(key) && !self.restore_alert(key) {
            // Room is made before the alert is inserted: a new alert is never dropped.
            self.make_room(ts_ns);
            new_id = Some(self.insert_alert(detection, signature, ts_ns, subject.clone()));
        }
        let emit = match new_id {
            Some(id) => Some(((id, 1, AlertStatus::New, ts_ns), true)),
            None => match self.alerts.get_mut(key) {
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
                    // A state (a new device, an address conflict...) is reported once;
                    // its repeats only update the stored row.
                    let write = !quiet && due && !is_state_signature(signature);
                    if write {
                        state.last_emitted_ns = Some(ts_ns);
                    }
                    Some(((state.id, state.count, state.status, state.first_ns), write))
                }
                None => None,
            },
        };
        let ((id, count, status, first_ns), write) = emit?;
        if !write {
            // A repeat that is not written (throttled, learned or muted): when its row
            // is already pending, updating the row is all there is to do, and no
            // record is built.
            if let Some(row) = self.pending_alerts.get_mut(key) {
                let alert = Arc::make_mut(&mut row.alert);
                alert.last_ns = alert.last_ns.max(ts_ns);
                alert.count = count;
                return None;
            }
        }
        Some(Occurrence {
            detection,
            key: key.to_owned(),
            id,
            count,
            status,
            first_ns,
            write,
        })
    }

    /// Builds the record of an occurrence: into the pending store row, and to the
    /// sinks when it is written.
    fn write_alert(
        &mut self,
        occurrence: Occurrence,
        ts_ns: u64,
        subject: Subject,
        message: String,
        detail: Detail,
        learn: Vec<BaselineItem>,
    ) {
        let Occurrence {
            detection,
            key,
            id,
            count,
            status,
            first_ns,
            write,
        } = occurrence;
        let signature = detection.name;
        let mut alert = Alert::of(detection);
        alert.id = id;
        alert.src_ip = subject.src;
        alert.src_port = subject.src_port;
        alert.dest_ip = subject.dst;
        alert.dest_port = subject.dst_port;
        alert.proto = subject.proto;
        // Flow id 0: a PDU without a flow (GOOSE, BACnet over LLC), no EVE flow event.
        alert.flow_id = subject.flow_id.filter(|id| *id != 0);
        alert.app_proto = subject.app_proto;
        alert.src_mac = subject.src_mac.clone();
        alert.message = message;
        // Devices and learned facts: only here, where a record is built.
        alert.context = self.alert_context(signature, &subject, detail);
        alert.first_ns = first_ns;
        alert.last_ns = ts_ns;
        alert.count = count;
        alert.status = status;
        // A new alert's packets: the evidence thread writes them and then the EVE record
        // (with the file's hash); the sinks get the path now, the store row does not.
        let mut unreferenced = None;
        let mut eve_by_evidence = false;
        if let (true, 1, Some(evidence)) = (write, count, self.evidence.as_ref()) {
            let plain = alert.clone();
            eve_by_evidence = evidence.request(&mut alert, ts_ns, self.eve.is_some());
            unreferenced = eve_by_evidence.then(|| Arc::new(plain));
        }
        // Built once, shared by the pending store row and every outlet.
        let alert = Arc::new(alert);
        let row_alert = unreferenced.unwrap_or_else(|| Arc::clone(&alert));
        match self.pending_alerts.get_mut(&key) {
            Some(row) => {
                if write {
                    // The stored record is the last occurrence written to the sinks.
                    let first_ns = row.alert.first_ns.min(ts_ns);
                    row.alert = row_alert;
                    if row.alert.first_ns != first_ns {
                        Arc::make_mut(&mut row.alert).first_ns = first_ns;
                    }
                }
                if row.alert.last_ns < ts_ns || row.alert.count != count {
                    let stored = Arc::make_mut(&mut row.alert);
                    stored.last_ns = stored.last_ns.max(ts_ns);
                    stored.count = count;
                }
            }
            None => {
                let row = AlertRow {
                    alert: row_alert,
                    learn,
                };
                self.pending_alerts.insert(key, row);
            }
        }
        if write {
            if self.current_mono_ns > 0 {
                let latency = mono_ns().saturating_sub(self.current_mono_ns).max(1);
                if let Some(histogram) = self.latency.as_mut() {
                    let _ = histogram.record(latency);
                }
            }
            self.sinks.send(&alert);
            self.changes.alert(&alert);
            if let (false, Some(eve)) = (eve_by_evidence, self.eve.as_mut()) {
                eve.alert(alert);
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
        self.alert_rows_since_prune += 1;
        self.insert_alert_state(
            alert_key(signature, &subject),
            AlertState {
                id,
                status: AlertStatus::New,
                count: 1,
                first_ns: ts_ns,
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

/// The order in which alerts leave the in-memory table when it is full, lowest first:
/// closed by an operator (acknowledged, learned), muted, then open ones by severity
/// (low, medium, high); within a class the oldest (lowest id) goes first. An evicted
/// alert keeps its store row (written at the next commit if still pending), so the
/// table is never the only record of an open alert, and a repeat finds it there.
pub(in crate::analyze) fn eviction_class(signature: &str, status: AlertStatus) -> u8 {
    match status {
        AlertStatus::Acknowledged | AlertStatus::Learned => 0,
        AlertStatus::Muted => 1,
        AlertStatus::New => match detect::by_name(signature).map(|d| d.severity) {
            Some(severity) if severity >= detect::Severity::LOW => 2,
            Some(detect::Severity::MEDIUM) => 3,
            _ => 4,
        },
    }
}

impl Analyzer {
    /// Sets a held alert's status (an operator's change read back from the store).
    pub(in crate::analyze) fn set_alert_status(&mut self, key: &str, status: AlertStatus) {
        let Some(state) = self.alerts.get_mut(key) else {
            return;
        };
        let old = (eviction_class(state.signature, state.status), state.id);
        state.status = status;
        let new = (eviction_class(state.signature, status), state.id);
        if let Some(key) = self.alert_order.remove(&old) {
            self.alert_order.insert(new, key);
        }
    }

    /// Evicts the least important alerts until one more fits (`eviction_class`); the
    /// first eviction of a run raises `alert_table_full`.
    fn make_room(&mut self, ts_ns: u64) {
        while self.alerts.len() >= self.max_alerts {
            let Some((_, key)) = self.alert_order.pop_first() else {
                return;
            };
            self.alerts.remove(&key);
            self.alerts_partial = true;
            self.counters.alerts_over_capacity += 1;
            if !self.alert_table_full_raised {
                self.alert_table_full_raised = true;
                let max = self.max_alerts;
                self.raise(
                    "alert_table_full",
                    ts_ns,
                    Subject::default(),
                    format!("the analyzer holds {max} distinct alerts; the least important are evicted from memory (their rows stay in the store) to make room for new ones"),
                    Detail::AlertTableFull {
                        max_alerts: max,
                        max_stored_alerts: MAX_STORED_ALERTS,
                    },
                    Vec::new(),
                );
            }
        }
    }

    /// Puts an alert that is not held back into the table from its pending or stored
    /// row (it was evicted, or not loaded at start); false when there is none.
    fn restore_alert(&mut self, key: &str) -> bool {
        if !self.alerts_partial {
            return false;
        }
        let history = match self.pending_alerts.get(key) {
            Some(row) => Some(AlertHistory {
                id: row.alert.id,
                status: row.alert.status,
                count: row.alert.count,
                first_ns: row.alert.first_ns,
                last_ns: row.alert.last_ns,
            }),
            None => {
                let stored = self.store().alert_state(key);
                match stored {
                    Ok(history) => history,
                    Err(_) => {
                        self.counters.store_errors += 1;
                        None
                    }
                }
            }
        };
        let Some(state) = history.and_then(|history| AlertState::restored(key, history)) else {
            return false;
        };
        self.make_room(state.last_ns);
        self.insert_alert_state(key.to_owned(), state);
        true
    }

    /// Tracks `state` under `key`, in the eviction order too.
    pub(in crate::analyze) fn insert_alert_state(&mut self, key: String, state: AlertState) {
        self.alert_order.insert(
            (eviction_class(state.signature, state.status), state.id),
            key.clone(),
        );
        self.alerts.insert(key, state);
    }

    /// An output dropped records (`loss` holds its totals since start): one
    /// `output_loss` alert per output, updated with the totals each time they grow.
    pub(in crate::analyze) fn raise_output_loss(&mut self, loss: &OutputLoss) {
        let subject = Subject::default();
        let key = alert_key("output_loss", &subject);
        if !self.alerts.contains_key(&key) {
            self.restore_alert(&key);
        }
        if let Some(state) = self.alerts.get_mut(&key) {
            // Each report carries new totals: written, not throttled.
            state.last_emitted_ns = None;
        }
        let output = loss.output;
        self.raise(
            "output_loss",
            self.latest_ns.max(1),
            subject,
            format!(
                "output {output} dropped {} records it could not deliver ({} alerts, {} device/baseline changes, {} heartbeats, {} changes refused); its bound of {} bytes was reached",
                loss.total(), loss.alerts, loss.state, loss.heartbeats, loss.changes, loss.bound_bytes
            ),
            Detail::OutputLoss {
                output,
                dropped_alerts: loss.alerts,
                dropped_state: loss.state,
                dropped_heartbeats: loss.heartbeats,
                dropped_changes: loss.changes,
                bound_bytes: loss.bound_bytes,
            },
            Vec::new(),
        );
    }

    /// A cap on state keyed by the wire was hit (`map` names it): counted by the
    /// caller; the first time in a run `state_capped` is raised (written to every sink
    /// even when the alert exists, so each capped map is reported once).
    pub(in crate::analyze) fn state_capped(&mut self, map: &'static str, ts_ns: u64, cap: usize) {
        if !self.caps_hit.insert(map) {
            return;
        }
        let key = alert_key("state_capped", &Subject::default());
        // Under a flood the health alert itself may have been evicted: back in the
        // table first, so that it is written, not throttled.
        if !self.alerts.contains_key(&key) {
            self.restore_alert(&key);
        }
        if let Some(state) = self.alerts.get_mut(&key) {
            state.last_emitted_ns = None;
        }
        let caps: Vec<&str> = self.caps_hit.iter().copied().collect();
        self.raise(
            "state_capped",
            ts_ns,
            Subject::default(),
            format!("analyzer state {map} reached its cap of {cap} entries; the least important are shed (otsensor_analyzer_state_shed_total{{map=\"{map}\"}})"),
            Detail::StateCapped {
                map,
                cap,
                capped: caps,
            },
            Vec::new(),
        );
    }
}
