//! Scans: port and host sweeps, discovery bursts, Modbus unit-id sweeps.

use crate::analyze::bounded::Admitted;
use crate::analyze::*;

/// Recent flow starts of one source, for scan detection over a sliding window.
#[derive(Default)]
pub(in crate::analyze) struct ScanTracker {
    pub(in crate::analyze) recent: VecDeque<(u64, IpAddr, u16)>,
    pub(in crate::analyze) discovery: VecDeque<(u64, IpAddr)>,
    /// (time, server, Modbus unit id) of recent requests, distinct pairs only.
    pub(in crate::analyze) units: VecDeque<(u64, IpAddr, u8)>,
}

/// (client, server, protocol) triples tracked for object sweeps.
const MAX_OBJECT_SWEEPS: usize = 16_384;

/// Distinct objects one client addressed on one server in the current window (at
/// most `detection.scan.object_sweep` kept).
#[derive(Default)]
pub(in crate::analyze) struct ObjectSweep {
    window_start_ns: u64,
    objects: std::collections::HashSet<u64>,
}

impl Analyzer {
    /// The scan tracker of `source`, created when absent; at `MAX_SCAN_SOURCES` the
    /// oldest tracker of a one-shot source (a spoofed address) is evicted first.
    fn scan_tracker(&mut self, source: IpAddr) -> &mut ScanTracker {
        let (_, admitted) = self.scans.entry(source, MAX_SCAN_SOURCES, |t| {
            t.recent.len() + t.discovery.len() + t.units.len() >= 2
        });
        if admitted == Admitted::Evicted {
            self.counters.scan_sources_over_capacity += 1;
            let ts_ns = self.latest_ns;
            self.state_capped("scan_sources", ts_ns, MAX_SCAN_SOURCES);
        }
        // `state_capped` never touches the scan trackers: the entry is still there.
        self.scans.entry(source, MAX_SCAN_SOURCES, |_| false).0
    }

    /// Port and address scans over a sliding window of the source's flow starts.
    pub(in crate::analyze) fn track_scan(&mut self, flow: &FlowStart) {
        let source = flow.client.0;
        let (target, port) = flow.server;
        let window = self.policy.scan_window_ns;
        let port_threshold = self.policy.port_scan_ports as usize;
        let host_threshold = self.policy.address_scan_hosts as usize;
        let cap = (port_threshold + host_threshold).clamp(16, 4096);
        let tracker = self.scan_tracker(source);
        while tracker
            .recent
            .front()
            .is_some_and(|(ts, _, _)| ts.saturating_add(window) < flow.ts_ns)
        {
            tracker.recent.pop_front();
        }
        if tracker
            .recent
            .iter()
            .any(|(_, host, p)| *host == target && *p == port)
        {
            return;
        }
        if tracker.recent.len() >= cap {
            tracker.recent.pop_front();
        }
        tracker.recent.push_back((flow.ts_ns, target, port));
        let ports_on_target = tracker
            .recent
            .iter()
            .filter(|(_, host, _)| *host == target)
            .count();
        let mut hosts: Vec<IpAddr> = tracker.recent.iter().map(|(_, h, _)| *h).collect();
        hosts.sort_unstable();
        hosts.dedup();
        if ports_on_target >= port_threshold {
            self.raise_flow(
                "scan",
                flow,
                format!(
                    "{source} probed {ports_on_target} ports of {target} within the scan window"
                ),
                Vec::new(),
            );
        }
        if hosts.len() >= host_threshold {
            let count = hosts.len();
            let mut subject = Subject::flow(flow);
            subject.dst = None;
            self.raise(
                "scan",
                flow.ts_ns,
                subject,
                format!("{source} probed {count} hosts within the scan window"),
                Detail::Scan(ScanDetail::AddressScan { hosts: count }),
                Vec::new(),
            );
        }
    }

    /// Discovery requests: a broadcast one, or unicast ones to `discovery_sweep` hosts
    /// within the scan window, from a source that did not discover during learning.
    pub(in crate::analyze) fn discovery(&mut self, ts_ns: u64, subject: Subject, learning: bool) {
        let (Some(source), Some(target)) = (subject.src, subject.dst) else {
            return;
        };
        let item = BaselineItem::Discoverer(source);
        if learning {
            self.learn(item, ts_ns);
            return;
        }
        if self.baseline.contains(&item) {
            return;
        }
        let broadcast = match target {
            IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.octets()[3] == 255,
            IpAddr::V6(v6) => v6.is_multicast(),
        };
        let window = self.policy.scan_window_ns;
        let threshold = self.policy.discovery_sweep as usize;
        let tracker = self.scan_tracker(source);
        while tracker
            .discovery
            .front()
            .is_some_and(|(ts, _)| ts.saturating_add(window) < ts_ns)
        {
            tracker.discovery.pop_front();
        }
        if !tracker.discovery.iter().any(|(_, h)| *h == target) && tracker.discovery.len() < 4096 {
            tracker.discovery.push_back((ts_ns, target));
        }
        let hosts = tracker.discovery.len();
        if broadcast || hosts >= threshold {
            let mut subject = subject;
            subject.dst = None;
            let protocol = subject.app_proto.map_or("", Protocol::name);
            self.raise(
                "scan",
                ts_ns,
                subject,
                format!("{source} sent {protocol} discovery requests (ICS discovery sweep)"),
                Detail::Scan(ScanDetail::DiscoverySweep { hosts, broadcast }),
                vec![item],
            );
        }
    }

    /// Modbus unit-id sweep: one client addressing `discovery_sweep` distinct unit ids
    /// of one server within the scan window, from a source that did not discover (or
    /// sweep) during learning. A sweep while learning makes the source a known
    /// discoverer (a gateway poller).
    pub(in crate::analyze) fn modbus_unit_sweep(
        &mut self,
        ts_ns: u64,
        subject: Subject,
        unit: u8,
        learning: bool,
    ) {
        let (Some(source), Some(server)) = (subject.src, subject.dst) else {
            return;
        };
        let item = BaselineItem::Discoverer(source);
        if self.baseline.contains(&item) {
            return;
        }
        let window = self.policy.scan_window_ns;
        let threshold = self.policy.discovery_sweep as usize;
        let tracker = self.scan_tracker(source);
        while tracker
            .units
            .front()
            .is_some_and(|(ts, _, _)| ts.saturating_add(window) < ts_ns)
        {
            tracker.units.pop_front();
        }
        if !tracker
            .units
            .iter()
            .any(|(_, host, u)| *host == server && *u == unit)
            && tracker.units.len() < MAX_UNIT_SWEEP_TARGETS
        {
            tracker.units.push_back((ts_ns, server, unit));
        }
        let units = tracker
            .units
            .iter()
            .filter(|(_, host, _)| *host == server)
            .count();
        if units < threshold {
            return;
        }
        if learning {
            self.learn(item, ts_ns);
            return;
        }
        self.raise(
            "scan",
            ts_ns,
            subject,
            format!("{source} addressed {units} Modbus unit ids of {server} (ICS discovery sweep)"),
            Detail::Scan(ScanDetail::ModbusUnitSweep { units }),
            vec![item],
        );
    }

    /// ICS reconnaissance below the port level: one client addressing
    /// `detection.scan.object_sweep` distinct objects (Modbus function and address, S7
    /// SZL id and index, CIP service/class/instance/attribute of generic reads, BACnet
    /// object and property of ReadProperty(Multiple), DNP3 outstation address, function
    /// and (function, object type, first index)) of one server within a scan
    /// window. A client that did so while learning
    /// (a gateway poller, a historian) becomes a known discoverer and is exempt.
    pub(in crate::analyze) fn object_sweep(
        &mut self,
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        protocol: Protocol,
        object: u64,
    ) {
        let source = client.0;
        let item = BaselineItem::Discoverer(source);
        if self.baseline.contains(&item) {
            return;
        }
        let key = (source, server.0, protocol);
        let window = self.policy.scan_window_ns;
        let threshold = self.policy.object_sweep as usize;
        // One-object pairs (a spoofed source, a single poll) go first when full.
        let (_, admitted) = self
            .object_sweeps
            .entry(key, MAX_OBJECT_SWEEPS, |sweep| sweep.objects.len() >= 2);
        if admitted == Admitted::Evicted {
            self.counters.object_sweeps_over_capacity += 1;
            self.state_capped("object_sweeps", ts_ns, MAX_OBJECT_SWEEPS);
        }
        let Some(sweep) = self.object_sweeps.get_mut(&key) else {
            return;
        };
        if ts_ns >= sweep.window_start_ns.saturating_add(window) || sweep.objects.is_empty() {
            sweep.window_start_ns = ts_ns;
            sweep.objects.clear();
        }
        // Bounded: once the threshold is reached the sweep is established.
        if sweep.objects.len() >= threshold || !sweep.objects.insert(object) {
            return;
        }
        if sweep.objects.len() < threshold {
            return;
        }
        if self.is_learning(ts_ns) {
            self.learn(item, ts_ns);
            return;
        }
        let what = match protocol {
            Protocol::Modbus => "Modbus register/coil addresses",
            Protocol::S7comm => "S7 SZL lists",
            Protocol::Enip => "CIP class/instance/attribute ids",
            Protocol::Bacnet => "BACnet object properties",
            Protocol::Dnp3 => "DNP3 outstation addresses, functions and point ranges",
            _ => "objects",
        };
        self.raise(
            "scan",
            ts_ns,
            Subject {
                src: Some(source),
                src_port: Some(client.1),
                dst: Some(server.0),
                dst_port: Some(server.1),
                flow_id: Some(flow_id),
                app_proto: Some(protocol),
                ..Subject::default()
            },
            format!(
                "{source} addressed {threshold} distinct {what} of {} within the scan window (ICS object sweep)",
                server.0
            ),
            Detail::Scan(ScanDetail::ObjectSweep {
                objects: threshold,
                protocol: protocol.name(),
            }),
            vec![item],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::tests::{analyzer_with_eve, eve_alerts};
    use crate::output::eve::EveRecord;
    use crossbeam_channel::Receiver;

    const S: u64 = 1_000_000_000;
    const CLIENT: (IpAddr, u16) = (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)), 40000);
    const SERVER: (IpAddr, u16) = (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 20000);

    fn access(a: &mut Analyzer, ts_ns: u64, objects: std::ops::Range<u64>) {
        for object in objects {
            a.observe(Observation::ObjectAccess {
                ts_ns,
                flow_id: 42,
                client: CLIENT,
                server: SERVER,
                protocol: Protocol::Dnp3,
                object,
            });
        }
    }

    fn sweeps(rx: &Receiver<EveRecord>) -> Vec<(Option<IpAddr>, Option<IpAddr>, Option<u64>)> {
        eve_alerts(rx)
            .into_iter()
            .filter(|alert| alert.signature == "scan")
            .map(|alert| (alert.src_ip, alert.dest_ip, alert.flow_id))
            .collect()
    }

    #[test]
    fn an_object_sweep_after_learning_is_one_scan_on_its_flow() {
        let (mut a, rx) = analyzer_with_eve(60);
        access(&mut a, 1, 0..3);
        let threshold = u64::from(a.policy.object_sweep);
        access(&mut a, 120 * S, 0..threshold - 1);
        assert_eq!(sweeps(&rx), []);
        access(&mut a, 121 * S, 0..threshold + 20);
        assert_eq!(
            sweeps(&rx),
            [(Some(CLIENT.0), Some(SERVER.0), Some(42))],
            "one alert, on the flow the sweep ran in"
        );
    }

    #[test]
    fn a_client_that_swept_while_learning_is_a_known_discoverer() {
        let (mut a, rx) = analyzer_with_eve(60);
        let threshold = u64::from(a.policy.object_sweep);
        access(&mut a, S, 0..threshold);
        access(&mut a, 120 * S, threshold..3 * threshold);
        assert_eq!(sweeps(&rx), []);
    }
}
