//! Every Prometheus metric of otsensor, defined in this one place and documented for
//! operators in `docs/METRICS.md` (a unit test checks that every name is documented).
//!
//! **Workers never touch a metric per packet.** A worker keeps plain `u64` counters
//! and, once per batch, [`WorkerMetrics::fold`] adds the deltas since the previous
//! batch to the Prometheus counters (atomics, so no locks). Latency goes into a
//! worker-local `hdrhistogram`, swapped out at most every [`LATENCY_SWAP_INTERVAL`]
//! through a bounded channel to the [`LatencySummary`] collector, which merges what
//! arrived when Prometheus scrapes. A full channel keeps the samples in the worker for
//! the next swap: nothing blocks, nothing is lost.
//!
//! Names follow `otsensor_<subsystem>_<what>_<unit>[_total]` in base units (seconds,
//! bytes); labels are bounded: worker id, protocol, stage, reason, signature, severity,
//! queue, sink.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use hdrhistogram::Histogram;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use otsensor_wire::Protocol;

use crate::analyze::{AnalyzerCounters, AnalyzerStats};
use crate::flow::stream::StreamCounters;
use crate::inspect::ProtocolStats;
use crate::worker::WorkerCounters;

/// Why a metric could not be registered or encoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metric registry: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8")]
    NotUtf8,
}

/// How often a worker hands its latency histogram to the exporter.
pub const LATENCY_SWAP_INTERVAL: Duration = Duration::from_millis(200);
/// Histograms in flight from workers to the exporter, per summary.
const LATENCY_CHANNEL: usize = 64;
/// The quantiles every latency summary exports.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Latencies are recorded in nanoseconds, from 1 ns to 60 s, 3 significant digits.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// The sensor's metrics. Cheap to share (`Arc`); every handle inside is an atomic.
pub struct Metrics {
    registry: Registry,
    pub reader_packets: IntCounter,
    pub reader_bytes: IntCounter,
    pub worker_packets: IntCounterVec,
    pub worker_bytes: IntCounterVec,
    pub worker_frames_skipped: IntCounterVec,
    pub flows_created: IntCounterVec,
    pub flows_ended: IntCounterVec,
    pub flows_active: IntGaugeVec,
    pub observations_sent: IntCounterVec,
    pub observations_dropped: IntCounterVec,
    pub handoff_frames: IntCounterVec,
    pub handoff_dropped: IntCounterVec,
    pub handoff_truncated: IntCounterVec,
    pub stream_events: IntCounterVec,
    pub stream_resync_bytes: IntCounterVec,
    pub protocol_pdus: IntCounterVec,
    pub protocol_malformed: IntCounterVec,
    pub protocol_reassembly: IntCounterVec,
    pub kernel_packets: IntCounterVec,
    pub kernel_bytes: IntCounterVec,
    pub xdp_queue_frames: IntCounterVec,
    pub xdp_queue_unaccounted: IntGaugeVec,
    pub kernel_events: IntCounterVec,
    pub kernel_events_suppressed: IntGauge,
    pub observation_queue_depth: IntGauge,
    pub observation_queue_capacity: IntGauge,
    pub analyzer_observations: IntCounter,
    pub inventory_devices: IntGauge,
    pub inventory_overflow: IntCounter,
    pub analyzer_state_shed: IntCounterVec,
    pub sink_queue_depth: IntGaugeVec,
    pub sink_events: IntCounterVec,
    pub sink_dropped: IntCounterVec,
    pub sink_failures: IntCounterVec,
    pub sink_retries: IntCounterVec,
    pub alerts: IntCounterVec,
    pub http_connections: IntCounter,
    pub http_connections_open: IntGauge,
    pub http_rejected: IntCounterVec,
    pub learning_active: IntGauge,
    pub evidence_requests: IntCounter,
    pub evidence_requests_empty: IntCounter,
    pub evidence_files_written: IntCounter,
    pub evidence_bytes_written: IntCounter,
    pub evidence_write_errors: IntCounter,
    /// Retention deletions by reason (`size`, `count`, `age`).
    pub evidence_files_evicted: IntCounterVec,
    pub evidence_bytes_evicted: IntCounterVec,
    pub evidence_requests_dropped: IntCounter,
    /// Per worker: packets its ring kept, overwrote before any alert asked for them
    /// (packets and captured bytes), and cut to the ring's per-packet limit.
    pub evidence_ring_packets: IntCounterVec,
    pub evidence_ring_overwritten: IntCounterVec,
    pub evidence_ring_overwritten_bytes: IntCounterVec,
    pub evidence_ring_truncated: IntCounterVec,
    pub evidence_stored_files: IntGauge,
    pub evidence_stored_bytes: IntGauge,
    /// Devices matching a CISA advisory with high or medium confidence, by severity.
    pub vulnerable_devices: IntGaugeVec,
    pub learning_progress: prometheus::Gauge,
    pub start_time: prometheus::Gauge,
    pub packet_latency: Arc<LatencySummary>,
    pub alert_latency: Arc<LatencySummary>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, Error> {
    let metric = IntCounter::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, Error> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, Error> {
    let metric = IntGauge::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, Error> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The stream counters' labels, in [`stream_values`] order.
const STREAM_EVENTS: [&str; 5] = [
    "retransmitted_segment",
    "out_of_order_segment",
    "gap",
    "oversize_pdu",
    "pool_exhausted",
];

fn stream_values(stream: &StreamCounters) -> [u64; 5] {
    [
        stream.retransmitted_segments,
        stream.out_of_order_segments,
        stream.gaps,
        stream.oversize_pdus,
        stream.pool_exhausted,
    ]
}

/// Why evidence retention deletes a file (`reason` of the eviction counters).
pub const EVICTION_REASONS: [&str; 3] = ["size", "count", "age"];

/// The reassembly counters' labels (protocol, event), in [`reassembly_values`] order.
const REASSEMBLY_EVENTS: [(&str, &str); 8] = [
    ("dnp3", "expired"),
    ("dnp3", "pool_exhausted"),
    ("s7comm", "expired"),
    ("s7comm", "pool_exhausted"),
    ("s7comm", "overflow"),
    ("bacnet", "expired"),
    ("bacnet", "pool_exhausted"),
    ("bacnet", "overflow"),
];

fn reassembly_values(stats: &ProtocolStats) -> [u64; 8] {
    [
        stats.dnp3.reassembly_expired,
        stats.dnp3.reassembly_pool_exhausted,
        stats.s7comm.reassembly_expired,
        stats.s7comm.reassembly_pool_exhausted,
        stats.s7comm.reassembly_overflow,
        stats.bacnet.reassembly_expired,
        stats.bacnet.reassembly_pool_exhausted,
        stats.bacnet.reassembly_overflow,
    ]
}

/// Frames a worker skipped before flow lookup, by reason, in [`skipped_values`] order.
const SKIP_REASONS: [&str; 4] = ["non_ip", "ip_fragment", "truncated", "malformed"];

fn skipped_values(counters: &WorkerCounters) -> [u64; 4] {
    [
        counters.non_ip,
        counters.ip_fragments,
        counters.truncated,
        counters.malformed,
    ]
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Arc<Metrics>, Error> {
        let r = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "otsensor_build_info",
                "Always 1; the labels name the running build.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        r.register(Box::new(build_info))?;
        let packet_latency = Arc::new(LatencySummary::new(
            "otsensor_worker_packet_processing_seconds",
            "Time a worker spends on one packet (batch time / batch packets), merged over workers.",
        )?);
        r.register(Box::new(SharedSummary(Arc::clone(&packet_latency))))?;
        let alert_latency = Arc::new(LatencySummary::new(
            "otsensor_alert_latency_seconds",
            "Time from reading the packet that triggered an alert to the alert reaching the sinks.",
        )?);
        r.register(Box::new(SharedSummary(Arc::clone(&alert_latency))))?;
        let metrics = Metrics {
            reader_packets: counter(&r, "otsensor_reader_packets_total", "Packets taken from the capture source.")?,
            reader_bytes: counter(&r, "otsensor_reader_bytes_total", "Captured bytes taken from the capture source.")?,
            worker_packets: counter_vec(&r, "otsensor_worker_packets_total", "Packets processed, per worker.", &["worker"])?,
            worker_bytes: counter_vec(&r, "otsensor_worker_bytes_total", "Wire bytes processed, per worker.", &["worker"])?,
            worker_frames_skipped: counter_vec(&r, "otsensor_worker_frames_skipped_total", "Frames not tracked as flows, per worker and reason.", &["worker", "reason"])?,
            flows_created: counter_vec(&r, "otsensor_flows_created_total", "Flows created, per worker.", &["worker"])?,
            flows_ended: counter_vec(&r, "otsensor_flows_ended_total", "Flows removed from the table, per worker and reason (expired: idle timeout; evicted: table full).", &["worker", "reason"])?,
            flows_active: gauge_vec(&r, "otsensor_flows_active", "Flows in the table, per worker.", &["worker"])?,
            observations_sent: counter_vec(&r, "otsensor_observations_sent_total", "Observations sent to the analyzer, per worker.", &["worker"])?,
            observations_dropped: counter_vec(&r, "otsensor_observations_dropped_total", "Observations dropped because the analyzer channel was full, per worker.", &["worker"])?,
            handoff_frames: counter_vec(&r, "otsensor_handoff_frames_total", "Frames handed between workers (sent: to the flow's owner; received: from others).", &["worker", "direction"])?,
            handoff_dropped: counter_vec(&r, "otsensor_handoff_dropped_total", "Hand-offs dropped because the owner's ring was full.", &["worker"])?,
            handoff_truncated: counter_vec(&r, "otsensor_handoff_truncated_total", "Hand-offs cut to the hand-off frame size.", &["worker"])?,
            stream_events: counter_vec(&r, "otsensor_stream_events_total", "TCP stream reassembly events, per worker and event.", &["worker", "event"])?,
            stream_resync_bytes: counter_vec(&r, "otsensor_stream_resync_bytes_total", "Bytes skipped to find the next PDU start, per worker.", &["worker"])?,
            protocol_pdus: counter_vec(&r, "otsensor_protocol_pdus_total", "Application PDUs dissected, per protocol.", &["protocol"])?,
            protocol_malformed: counter_vec(&r, "otsensor_protocol_malformed_pdus_total", "PDUs that failed validation, per protocol.", &["protocol"])?,
            protocol_reassembly: counter_vec(&r, "otsensor_protocol_reassembly_events_total", "Message reassembly above the transport (DNP3 transport segments, S7 over COTP, BACnet segmentation), per protocol and event: expired (a half-open message lost its buffer after the timeout), pool_exhausted, overflow.", &["protocol", "event"])?,
            kernel_packets: counter_vec(&r, "otsensor_kernel_packets_total", "XDP pre-filter packets, per counter (kind=reason or verdict).", &["kind", "counter"])?,
            kernel_bytes: counter_vec(&r, "otsensor_kernel_bytes_total", "XDP pre-filter bytes, per counter (kind=reason or verdict).", &["kind", "counter"])?,
            xdp_queue_frames: counter_vec(&r, "otsensor_xdp_queue_frames_total", "AF_XDP accounting per queue: redirected, no_socket, received, kernel_dropped.", &["queue", "state"])?,
            xdp_queue_unaccounted: gauge_vec(&r, "otsensor_xdp_queue_unaccounted", "Per queue: redirected − received − kernel_dropped (frames still in the ring count until read; non-zero after a drain means frames went astray).", &["queue"])?,
            kernel_events: counter_vec(&r, "otsensor_kernel_events_total", "Rare events the XDP program reported through its ring buffer, per kind (parse_failed).", &["kind"])?,
            kernel_events_suppressed: gauge(&r, "otsensor_kernel_events_suppressed", "Kernel events refused by the program's per-CPU rate limit or a full ring, since load.")?,
            observation_queue_depth: gauge(&r, "otsensor_observation_queue_depth", "Observations waiting in the workers-to-analyzer channel.")?,
            observation_queue_capacity: gauge(&r, "otsensor_observation_queue_capacity", "Capacity of the workers-to-analyzer channel.")?,
            analyzer_observations: counter(&r, "otsensor_analyzer_observations_total", "Observations the analyzer consumed.")?,
            inventory_devices: gauge(&r, "otsensor_inventory_devices", "Devices in the inventory.")?,
            inventory_overflow: counter(&r, "otsensor_inventory_overflow_total", "Device sightings not recorded because the inventory was full.")?,
            analyzer_state_shed: counter_vec(&r, "otsensor_analyzer_state_shed_total", "Entries the analyzer shed because a map keyed by the wire was at its cap.", &["map"])?,
            sink_queue_depth: gauge_vec(&r, "otsensor_sink_queue_depth", "Events waiting in an output sink's queue.", &["sink"])?,
            sink_events: counter_vec(&r, "otsensor_sink_events_total", "Events an output sink delivered.", &["sink"])?,
            sink_dropped: counter_vec(&r, "otsensor_sink_dropped_total", "Events dropped because a sink's queue was full or retries ran out.", &["sink"])?,
            sink_failures: counter_vec(&r, "otsensor_sink_failures_total", "Failed delivery attempts of an output sink (each is retried with back-off).", &["sink"])?,
            sink_retries: counter_vec(&r, "otsensor_sink_retries_total", "Delivery retries of an output sink.", &["sink"])?,
            alerts: counter_vec(&r, "otsensor_alerts_total", "Alerts raised, per signature and severity.", &["signature", "severity"])?,
            http_connections: counter(&r, "otsensor_http_connections_total", "HTTP connections accepted.")?,
            http_connections_open: gauge(&r, "otsensor_http_connections_open", "HTTP connections open now (at most http.max_connections).")?,
            http_rejected: counter_vec(&r, "otsensor_http_rejected_total", "HTTP requests refused: Host or Origin not allowed, body too large, request timeout.", &["reason"])?,
            learning_active: gauge(&r, "otsensor_learning_active", "1 while the baseline is learning, else 0.")?,
            evidence_requests: counter(&r, "otsensor_evidence_requests_total", "Alerts whose evidence was asked for (they name a flow, a pair of hosts or a host).")?,
            evidence_requests_empty: counter(&r, "otsensor_evidence_requests_empty_total", "Evidence requests for which no ring held a packet any more (no file written).")?,
            evidence_files_written: counter(&r, "otsensor_evidence_files_written_total", "Alert evidence pcapng files written.")?,
            evidence_bytes_written: counter(&r, "otsensor_evidence_bytes_written_total", "Bytes of alert evidence files written.")?,
            evidence_write_errors: counter(&r, "otsensor_evidence_write_errors_total", "Evidence files that could not be written (the alert goes out without evidence).")?,
            evidence_files_evicted: counter_vec(&r, "otsensor_evidence_files_evicted_total", "Evidence files deleted by retention, oldest first, per reason: size (evidence.max_total_bytes), count (evidence.max_files), age (evidence.max_age).", &["reason"])?,
            evidence_bytes_evicted: counter_vec(&r, "otsensor_evidence_bytes_evicted_total", "Bytes of evidence files deleted by retention, per reason (size, count, age).", &["reason"])?,
            evidence_ring_packets: counter_vec(&r, "otsensor_evidence_ring_packets_total", "Packets a worker kept in its evidence ring.", &["worker"])?,
            evidence_ring_overwritten: counter_vec(&r, "otsensor_evidence_ring_overwritten_packets_total", "Packets a worker's evidence ring overwrote (oldest first) before any alert asked for them.", &["worker"])?,
            evidence_ring_overwritten_bytes: counter_vec(&r, "otsensor_evidence_ring_overwritten_bytes_total", "Captured bytes a worker's evidence ring overwrote before any alert asked for them.", &["worker"])?,
            evidence_ring_truncated: counter_vec(&r, "otsensor_evidence_ring_truncated_packets_total", "Packets cut to the evidence ring's per-packet limit (16 KiB, or a quarter of the ring).", &["worker"])?,
            evidence_requests_dropped: counter(&r, "otsensor_evidence_requests_dropped_total", "Evidence requests not taken because a queue was full (the analyzer's or a worker's).")?,
            evidence_stored_files: gauge(&r, "otsensor_evidence_stored_files", "Evidence files in the evidence directory.")?,
            evidence_stored_bytes: gauge(&r, "otsensor_evidence_stored_bytes", "Bytes of evidence files in the evidence directory.")?,
            vulnerable_devices: gauge_vec(&r, "otsensor_vulnerable_devices", "Devices matching a CISA ICS advisory with high or medium confidence, by the severity of the worst match.", &["severity"])?,
            learning_progress: {
                let g = prometheus::Gauge::new("otsensor_learning_progress_ratio", "Fraction of the learning period elapsed (0 to 1).")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            start_time: {
                let g = prometheus::Gauge::new("otsensor_start_time_seconds", "Unix time the sensor started.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            packet_latency,
            alert_latency,
            registry: r,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        metrics.start_time.set(now);
        // Every retention reason from the start, so a rate() sees the first deletion.
        for reason in EVICTION_REASONS {
            metrics.evidence_files_evicted.with_label_values(&[reason]);
            metrics.evidence_bytes_evicted.with_label_values(&[reason]);
        }
        Ok(Arc::new(metrics))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|_| Error::NotUtf8)
    }

    /// The names of every registered metric family (for the documentation check).
    pub fn family_names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect()
    }

    /// The handles of one worker's metrics.
    pub fn worker(self: &Arc<Self>, id: usize) -> WorkerMetrics {
        WorkerMetrics::new(Arc::clone(self), id)
    }

    /// Reads the analyzer's numbers (called by the analyzer thread between observations
    /// and after API requests): counters and alert latencies as deltas since `last`,
    /// gauges as they are.
    pub fn fold_analyzer(&self, last: &mut AnalyzerFolded, now: &AnalyzerStats) {
        self.fold_analyzer_counters(&mut last.counters, now.counters, now.devices);
        self.learning_active.set(i64::from(now.learning));
        self.learning_progress.set(now.learning_progress);
        for (severity, count) in now.vulnerable_devices {
            self.vulnerable_devices
                .with_label_values(&[severity])
                .set(count);
        }
        // Like the workers' recorders: the latencies reach the summary at most every
        // `LATENCY_SWAP_INTERVAL`, and all of them once the capture ended.
        let Some(latency) = now.alert_latency_ns else {
            return;
        };
        let due = now.capture_finished
            || last
                .latency_at
                .is_none_or(|at| at.elapsed() >= LATENCY_SWAP_INTERVAL);
        let folded = last
            .latency
            .get_or_insert_with(|| Histogram::new_from(latency));
        if !due || folded.len() == latency.len() {
            return;
        }
        last.latency_at = Some(Instant::now());
        // The analyzer's histogram only grows: record what it gained since the last fold.
        let mut gained = Vec::new();
        for value in latency.iter_recorded() {
            let ns = value.value_iterated_to();
            let new = value.count_at_value().saturating_sub(folded.count_at(ns));
            if new > 0 {
                gained.push((ns, new));
            }
        }
        for &(ns, count) in &gained {
            let _ = folded.record_n(ns, count);
        }
        self.alert_latency.record_counts(&gained);
    }

    fn fold_analyzer_counters(
        &self,
        last: &mut AnalyzerCounters,
        now: &AnalyzerCounters,
        devices: u64,
    ) {
        self.analyzer_observations
            .inc_by(now.observations.saturating_sub(last.observations));
        self.inventory_overflow.inc_by(
            now.devices_over_capacity
                .saturating_sub(last.devices_over_capacity),
        );
        self.inventory_devices
            .set(i64::try_from(devices).unwrap_or(i64::MAX));
        for (map, now, last) in [
            (
                "alerts",
                now.alerts_over_capacity,
                last.alerts_over_capacity,
            ),
            (
                "stored_alerts",
                now.stored_alerts_pruned,
                last.stored_alerts_pruned,
            ),
            (
                "baseline",
                now.baseline_over_capacity,
                last.baseline_over_capacity,
            ),
            (
                "arp_macs",
                now.arp_macs_over_capacity,
                last.arp_macs_over_capacity,
            ),
            (
                "scan_sources",
                now.scan_sources_over_capacity,
                last.scan_sources_over_capacity,
            ),
            (
                "flood_targets",
                now.flood_targets_over_capacity,
                last.flood_targets_over_capacity,
            ),
            (
                "object_sweeps",
                now.object_sweeps_over_capacity,
                last.object_sweeps_over_capacity,
            ),
        ] {
            self.analyzer_state_shed
                .with_label_values(&[map])
                .inc_by(now.saturating_sub(last));
        }
        *last = now.clone();
    }

    /// Counts an alert raised.
    pub fn alert_raised(&self, signature: &str, severity: u8) {
        let severity = severity_label(severity);
        self.alerts.with_label_values(&[signature, severity]).inc();
    }

    /// Adds the growth of the kernel's cumulative counters since `last` (Linux live
    /// capture; called periodically by whoever owns the filter).
    #[cfg(target_os = "linux")]
    pub fn fold_kernel(
        &self,
        last: &mut crate::ebpf::KernelCounters,
        now: &crate::ebpf::KernelCounters,
    ) {
        use crate::ebpf::Counter;
        for (counter, value) in now.iter() {
            let kind = if Counter::VERDICTS.contains(&counter) {
                "verdict"
            } else {
                "reason"
            };
            let before = last.get(counter);
            self.kernel_packets
                .with_label_values(&[kind, counter.label()])
                .inc_by(value.packets.saturating_sub(before.packets));
            self.kernel_bytes
                .with_label_values(&[kind, counter.label()])
                .inc_by(value.bytes.saturating_sub(before.bytes));
        }
        *last = *now;
    }

    /// Adds the growth of the per-queue AF_XDP books since `last`.
    #[cfg(target_os = "linux")]
    pub fn fold_queues(
        &self,
        last: &mut Vec<crate::capture::live::QueueAccounting>,
        now: &[crate::capture::live::QueueAccounting],
    ) {
        for queue in now {
            let before = last.iter().find(|q| q.queue == queue.queue);
            let label = queue.queue.to_string();
            let pairs = [
                ("redirected", queue.redirected, before.map(|b| b.redirected)),
                ("no_socket", queue.no_socket, before.map(|b| b.no_socket)),
                ("received", queue.received, before.map(|b| b.received)),
                (
                    "kernel_dropped",
                    queue.kernel_drops,
                    before.map(|b| b.kernel_drops),
                ),
            ];
            for (state, value, previous) in pairs {
                self.xdp_queue_frames
                    .with_label_values(&[label.as_str(), state])
                    .inc_by(value.saturating_sub(previous.unwrap_or(0)));
            }
        }
        *last = now.to_vec();
    }
}

/// What [`Metrics::fold_analyzer`] already read of the analyzer.
#[derive(Debug, Default)]
pub struct AnalyzerFolded {
    counters: AnalyzerCounters,
    /// The alert latencies already recorded (the analyzer's histogram as last folded).
    latency: Option<Histogram<u64>>,
    latency_at: Option<Instant>,
}

/// Suricata's severity number as a bounded label.
pub fn severity_label(severity: u8) -> &'static str {
    match severity {
        1 => "high",
        2 => "medium",
        3 => "low",
        _ => "info",
    }
}

/// One worker's metric handles and the counter values already folded in.
pub struct WorkerMetrics {
    metrics: Arc<Metrics>,
    packets: IntCounter,
    bytes: IntCounter,
    skipped: [IntCounter; 4],
    flows_created: IntCounter,
    flows_expired: IntCounter,
    flows_evicted: IntCounter,
    flows_active: IntGauge,
    observations_sent: IntCounter,
    observations_dropped: IntCounter,
    handoffs_sent: IntCounter,
    handoffs_received: IntCounter,
    handoffs_dropped: IntCounter,
    handoffs_truncated: IntCounter,
    stream: [IntCounter; 5],
    resync_bytes: IntCounter,
    pdus: Vec<IntCounter>,
    malformed: Vec<IntCounter>,
    reassembly: [IntCounter; 8],
    last_reassembly: [u64; 8],
    ring_packets: IntCounter,
    ring_overwritten: IntCounter,
    ring_overwritten_bytes: IntCounter,
    ring_truncated: IntCounter,
    last: WorkerCounters,
    last_stream: StreamCounters,
    last_pdus: [u64; Protocol::COUNT],
    last_malformed: [u64; Protocol::COUNT],
    latency: LatencyRecorder,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    fn new(metrics: Arc<Metrics>, id: usize) -> WorkerMetrics {
        let worker = id.to_string();
        let w = worker.as_str();
        let m = &metrics;
        WorkerMetrics {
            packets: m.worker_packets.with_label_values(&[w]),
            bytes: m.worker_bytes.with_label_values(&[w]),
            skipped: SKIP_REASONS
                .map(|reason| m.worker_frames_skipped.with_label_values(&[w, reason])),
            flows_created: m.flows_created.with_label_values(&[w]),
            flows_expired: m.flows_ended.with_label_values(&[w, "expired"]),
            flows_evicted: m.flows_ended.with_label_values(&[w, "evicted"]),
            flows_active: m.flows_active.with_label_values(&[w]),
            observations_sent: m.observations_sent.with_label_values(&[w]),
            observations_dropped: m.observations_dropped.with_label_values(&[w]),
            handoffs_sent: m.handoff_frames.with_label_values(&[w, "sent"]),
            handoffs_received: m.handoff_frames.with_label_values(&[w, "received"]),
            handoffs_dropped: m.handoff_dropped.with_label_values(&[w]),
            handoffs_truncated: m.handoff_truncated.with_label_values(&[w]),
            stream: STREAM_EVENTS.map(|event| m.stream_events.with_label_values(&[w, event])),
            resync_bytes: m.stream_resync_bytes.with_label_values(&[w]),
            pdus: Protocol::ALL
                .iter()
                .map(|p| m.protocol_pdus.with_label_values(&[p.name()]))
                .collect(),
            malformed: Protocol::ALL
                .iter()
                .map(|p| m.protocol_malformed.with_label_values(&[p.name()]))
                .collect(),
            reassembly: REASSEMBLY_EVENTS.map(|(protocol, event)| {
                m.protocol_reassembly.with_label_values(&[protocol, event])
            }),
            last_reassembly: [0; 8],
            ring_packets: m.evidence_ring_packets.with_label_values(&[w]),
            ring_overwritten: m.evidence_ring_overwritten.with_label_values(&[w]),
            ring_overwritten_bytes: m.evidence_ring_overwritten_bytes.with_label_values(&[w]),
            ring_truncated: m.evidence_ring_truncated.with_label_values(&[w]),
            last: WorkerCounters::default(),
            last_stream: StreamCounters::default(),
            last_pdus: [0; Protocol::COUNT],
            last_malformed: [0; Protocol::COUNT],
            latency: m.packet_latency.recorder(),
            metrics: Arc::clone(&metrics),
        }
    }

    /// Adds what changed since the previous call (once per batch; cheap: a few dozen
    /// atomic adds, no allocation).
    pub fn fold(
        &mut self,
        now: &WorkerCounters,
        protocols: &ProtocolStats,
        stream: &StreamCounters,
    ) {
        let last = &self.last;
        // Each counter gains what its worker counter gained since the last call.
        macro_rules! add_deltas {
            ($($field:ident),* $(,)?) => {
                $(self.$field.inc_by(now.$field.saturating_sub(last.$field));)*
            };
        }
        add_deltas!(packets, bytes);
        for ((counter, new), old) in self
            .skipped
            .iter()
            .zip(skipped_values(now))
            .zip(skipped_values(last))
        {
            counter.inc_by(new.saturating_sub(old));
        }
        add_deltas!(flows_created, flows_expired, flows_evicted);
        let active = now
            .flows_created
            .saturating_sub(now.flows_expired + now.flows_evicted);
        self.flows_active
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        add_deltas!(
            observations_sent,
            observations_dropped,
            handoffs_sent,
            handoffs_received,
            handoffs_dropped,
            handoffs_truncated,
            ring_packets,
            ring_overwritten,
            ring_overwritten_bytes,
            ring_truncated,
        );
        let reassembly = reassembly_values(protocols);
        for ((counter, new), old) in self
            .reassembly
            .iter()
            .zip(reassembly)
            .zip(self.last_reassembly)
        {
            counter.inc_by(new.saturating_sub(old));
        }
        self.last_reassembly = reassembly;
        for ((counter, new), old) in self
            .stream
            .iter()
            .zip(stream_values(stream))
            .zip(stream_values(&self.last_stream))
        {
            counter.inc_by(new.saturating_sub(old));
        }
        self.resync_bytes.inc_by(
            stream
                .resync_bytes
                .saturating_sub(self.last_stream.resync_bytes),
        );
        for index in 0..Protocol::COUNT {
            let (Some(pdus), Some(malformed)) = (self.pdus.get(index), self.malformed.get(index))
            else {
                continue;
            };
            let (new_pdus, new_malformed) = (
                protocols.pdus.get(index).copied().unwrap_or(0),
                protocols.malformed.get(index).copied().unwrap_or(0),
            );
            if let (Some(old_pdus), Some(old_malformed)) = (
                self.last_pdus.get_mut(index),
                self.last_malformed.get_mut(index),
            ) {
                pdus.inc_by(new_pdus.saturating_sub(*old_pdus));
                malformed.inc_by(new_malformed.saturating_sub(*old_malformed));
                *old_pdus = new_pdus;
                *old_malformed = new_malformed;
            }
        }
        self.last = now.clone();
        self.last_stream = *stream;
    }

    /// Records the processing time of one batch of `packets` packets.
    pub fn record_batch(&mut self, elapsed: Duration, packets: u64) {
        if packets == 0 {
            return;
        }
        let per_packet =
            u64::try_from(elapsed.as_nanos() / u128::from(packets)).unwrap_or(u64::MAX);
        self.latency.record_n(per_packet, packets);
    }

    /// Hands any recorded latency to the exporter (end of run).
    pub fn flush(&mut self) {
        self.latency.swap(true);
    }

    /// The shared metrics.
    pub fn shared(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's limits: this cannot fail on any input.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("constant histogram bounds are valid")
}

/// A Prometheus summary fed by hdrhistograms that recorders send over a channel.
pub struct LatencySummary {
    name: String,
    help: String,
    desc: Desc,
    inbox: Receiver<Histogram<u64>>,
    sender: Sender<Histogram<u64>>,
    /// Emptied histograms go back to recorders, so steady state allocates nothing.
    recycle_tx: Sender<Histogram<u64>>,
    recycle_rx: Receiver<Histogram<u64>>,
    /// The merge of everything received; locked only by scrapes and `record`.
    total: Mutex<(Histogram<u64>, u128)>,
}

impl std::fmt::Debug for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySummary")
            .field("name", &self.name)
            .finish()
    }
}

impl LatencySummary {
    fn new(name: &str, help: &str) -> Result<LatencySummary, Error> {
        let desc = Desc::new(name.to_owned(), help.to_owned(), vec![], Default::default())?;
        let (sender, inbox) = bounded(LATENCY_CHANNEL);
        let (recycle_tx, recycle_rx) = bounded(LATENCY_CHANNEL);
        Ok(LatencySummary {
            name: name.to_owned(),
            help: help.to_owned(),
            desc,
            inbox,
            sender,
            recycle_tx,
            recycle_rx,
            total: Mutex::new((new_histogram(), 0)),
        })
    }

    /// A recorder for one thread.
    pub fn recorder(&self) -> LatencyRecorder {
        LatencyRecorder {
            histogram: new_histogram(),
            to_exporter: self.sender.clone(),
            recycled: self.recycle_rx.clone(),
            last_swap: Instant::now(),
        }
    }

    /// Records `count` samples of each `(value_ns, count)` (a fold of another histogram).
    pub fn record_counts(&self, counts: &[(u64, u64)]) {
        if let Ok(mut total) = self.total.lock() {
            for &(ns, count) in counts {
                let _ = total.0.record_n(ns.clamp(1, LATENCY_MAX_NS), count);
                total.1 += u128::from(ns) * u128::from(count);
            }
        }
    }

    fn merge_inbox(&self) {
        let Ok(mut total) = self.total.lock() else {
            return;
        };
        while let Ok(mut histogram) = self.inbox.try_recv() {
            let _ = total.0.add(&histogram);
            // The sum rides in the histogram's count * mean; recompute from values.
            total.1 += histogram
                .iter_recorded()
                .map(|v| u128::from(v.value_iterated_to()) * u128::from(v.count_at_value()))
                .sum::<u128>();
            histogram.reset();
            let _ = self.recycle_tx.try_send(histogram);
        }
    }

    /// The merged count and the value at `quantile`, in seconds (for health and tests).
    pub fn snapshot(&self) -> (u64, Vec<(f64, f64)>) {
        self.merge_inbox();
        let Ok(total) = self.total.lock() else {
            return (0, Vec::new());
        };
        let quantiles = QUANTILES
            .iter()
            .map(|&q| (q, total.0.value_at_quantile(q) as f64 / 1e9))
            .collect();
        (total.0.len(), quantiles)
    }
}

impl Collector for LatencySummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.merge_inbox();
        let Ok(total) = self.total.lock() else {
            return Vec::new();
        };
        let mut summary = prometheus::proto::Summary::default();
        summary.set_sample_count(total.0.len());
        summary.set_sample_sum(total.1 as f64 / 1e9);
        let quantiles = QUANTILES
            .iter()
            .map(|&q| {
                let mut quantile = prometheus::proto::Quantile::default();
                quantile.set_quantile(q);
                let value = if total.0.is_empty() {
                    0.0
                } else {
                    total.0.value_at_quantile(q) as f64 / 1e9
                };
                quantile.set_value(value);
                quantile
            })
            .collect();
        summary.set_quantile(quantiles);
        let mut metric = prometheus::proto::Metric::default();
        metric.set_summary(summary);
        let mut family = MetricFamily::default();
        family.set_name(self.name.clone());
        family.set_help(self.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

/// Registers a shared summary (the registry wants an owned collector).
struct SharedSummary(Arc<LatencySummary>);

impl Collector for SharedSummary {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// A thread's own latency histogram (no sharing, no locks).
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    to_exporter: Sender<Histogram<u64>>,
    recycled: Receiver<Histogram<u64>>,
    last_swap: Instant,
}

impl std::fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyRecorder").finish_non_exhaustive()
    }
}

impl LatencyRecorder {
    /// Records `count` samples of `value_ns` and swaps the histogram out when due.
    pub fn record_n(&mut self, value_ns: u64, count: u64) {
        let _ = self
            .histogram
            .record_n(value_ns.clamp(1, LATENCY_MAX_NS), count);
        self.swap(false);
    }

    /// Sends the histogram to the exporter when the interval passed (or `force`).
    pub fn swap(&mut self, force: bool) {
        if self.histogram.is_empty() || !force && self.last_swap.elapsed() < LATENCY_SWAP_INTERVAL {
            return;
        }
        self.last_swap = Instant::now();
        let fresh = match self.recycled.try_recv() {
            Ok(histogram) => histogram,
            Err(_) => new_histogram(),
        };
        let full = std::mem::replace(&mut self.histogram, fresh);
        if let Err(error) = self.to_exporter.try_send(full) {
            // Exporter behind: keep the samples for the next swap.
            self.histogram = error.into_inner();
        }
    }
}

/// Config reload metrics (`otsensor run` only: replay has nothing to reload).
#[derive(Clone, Debug)]
pub struct ConfigMetrics {
    /// `otsensor_config_reloads_total{result="ok"|"error"}`.
    pub reloads: IntCounterVec,
    /// `otsensor_config_generation`: 1 at start, +1 per reload that changed policy.
    pub generation: IntGauge,
    /// `otsensor_config_last_reload_timestamp_seconds`: last successful reload (Unix time).
    pub last_reload: prometheus::Gauge,
}

impl Metrics {
    /// Registers the config reload metrics (once per registry), both results at zero.
    pub fn config_metrics(&self) -> Result<ConfigMetrics, Error> {
        let registry = &self.registry;
        let reloads = counter_vec(
            registry,
            "otsensor_config_reloads_total",
            "Configuration reloads (SIGHUP or API), by result: ok, or error (refused; the running configuration stays)",
            &["result"],
        )?;
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        let generation = gauge(
            registry,
            "otsensor_config_generation",
            "Generation of the policy in force: 1 at start, +1 per reload that changed it",
        )?;
        let last_reload = prometheus::Gauge::new(
            "otsensor_config_last_reload_timestamp_seconds",
            "Unix time of the last successful configuration reload (0: none yet)",
        )?;
        registry.register(Box::new(last_reload.clone()))?;
        Ok(ConfigMetrics {
            reloads,
            generation,
            last_reload,
        })
    }
}

/// The sensor's `outputs.nats` metrics (registered by [`Metrics::fleet`], once).
#[derive(Clone)]
pub struct FleetMetrics {
    pub published: IntCounterVec,
    pub duplicates: IntCounter,
    pub publish_failures: IntCounter,
    pub connected: IntGauge,
    pub spool_messages: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_dropped: IntCounterVec,
    pub spool_errors: IntCounter,
    pub changes_dropped: IntCounter,
    pub commands: IntCounterVec,
}

impl Metrics {
    /// Registers the fleet output's metrics (call once: a second call fails).
    pub fn fleet(&self) -> Result<FleetMetrics, Error> {
        let r = &self.registry;
        Ok(FleetMetrics {
            published: counter_vec(
                r,
                "otsensor_fleet_published_total",
                "Fleet messages acknowledged by JetStream, by kind",
                &["kind"],
            )?,
            duplicates: counter(
                r,
                "otsensor_fleet_duplicates_total",
                "Re-sent fleet messages JetStream recognised as duplicates",
            )?,
            publish_failures: counter(
                r,
                "otsensor_fleet_publish_failures_total",
                "Publish rounds that failed or timed out (retried)",
            )?,
            connected: gauge(
                r,
                "otsensor_fleet_connected",
                "1 while connected to a NATS server",
            )?,
            spool_messages: gauge(
                r,
                "otsensor_fleet_spool_messages",
                "Fleet messages waiting in the outbox",
            )?,
            spool_bytes: gauge(
                r,
                "otsensor_fleet_spool_bytes",
                "Bytes of fleet messages waiting in the outbox",
            )?,
            spool_dropped: counter_vec(
                r,
                "otsensor_fleet_spool_dropped_total",
                "Fleet messages dropped to keep the outbox bound, by class (heartbeat, state, alert)",
                &["class"],
            )?,
            spool_errors: counter(
                r,
                "otsensor_fleet_spool_errors_total",
                "Outbox file errors",
            )?,
            changes_dropped: counter(
                r,
                "otsensor_fleet_changes_dropped_total",
                "State changes the analyzer could not queue for the fleet (channel full)",
            )?,
            commands: counter_vec(
                r,
                "otsensor_fleet_commands_total",
                "Hub commands received, by result (applied, failed, or why refused)",
                &["result"],
            )?,
        })
    }
}

/// `otsensor hub`'s metrics, in a registry of its own.
pub struct HubMetrics {
    registry: Registry,
    pub messages: IntCounterVec,
    pub rejected: IntCounterVec,
    pub duplicates: IntCounter,
    pub batches: IntCounter,
    pub db_errors: IntCounter,
    pub sensors: IntGauge,
    pub commands: IntCounterVec,
    pub alert_latency: prometheus::Histogram,
}

impl std::fmt::Debug for HubMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubMetrics").finish_non_exhaustive()
    }
}

impl HubMetrics {
    pub fn new() -> Result<Arc<HubMetrics>, Error> {
        let r = Registry::new();
        let alert_latency = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "otsensor_hub_alert_latency_seconds",
                "From the sensor's analyzer emitting an alert change to its commit in PostgreSQL",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        r.register(Box::new(alert_latency.clone()))?;
        Ok(Arc::new(HubMetrics {
            messages: counter_vec(
                &r,
                "otsensor_hub_messages_total",
                "Fleet messages applied to PostgreSQL, by kind",
                &["kind"],
            )?,
            rejected: counter_vec(
                &r,
                "otsensor_hub_rejected_total",
                "Fleet messages refused, by reason (bad_signature, malformed, unknown_sensor, ...)",
                &["reason"],
            )?,
            duplicates: counter(
                &r,
                "otsensor_hub_duplicates_total",
                "Messages already applied (redelivered or re-sent), acknowledged without effect",
            )?,
            batches: counter(
                &r,
                "otsensor_hub_batches_total",
                "Batches committed to PostgreSQL",
            )?,
            db_errors: counter(
                &r,
                "otsensor_hub_db_errors_total",
                "PostgreSQL errors (the batch is retried)",
            )?,
            sensors: gauge(&r, "otsensor_hub_sensors", "Sensors known to the hub")?,
            commands: counter_vec(
                &r,
                "otsensor_hub_commands_total",
                "Operator commands sent to sensors, by result",
                &["result"],
            )?,
            alert_latency,
            registry: r,
        }))
    }

    pub fn render(&self) -> Result<String, Error> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|_| Error::NotUtf8)
    }

    pub fn family_names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_fold_adds_deltas_once() {
        let metrics = Metrics::new().expect("registry");
        let mut worker = metrics.worker(3);
        let mut counters = WorkerCounters {
            packets: 10,
            bytes: 1000,
            flows_created: 2,
            ..Default::default()
        };
        let mut stats = ProtocolStats::default();
        let stream = StreamCounters::default();
        worker.fold(&counters, &stats, &stream);
        worker.fold(&counters, &stats, &stream);
        counters.packets = 15;
        counters.ring_packets = 15;
        counters.ring_overwritten = 4;
        counters.ring_overwritten_bytes = 400;
        stats.dnp3.reassembly_expired = 2;
        stats.s7comm.reassembly_expired = 1;
        stats.bacnet.reassembly_expired = 3;
        worker.fold(&counters, &stats, &stream);
        worker.fold(&counters, &stats, &stream);
        assert_eq!(metrics.worker_packets.with_label_values(&["3"]).get(), 15);
        assert_eq!(metrics.flows_active.with_label_values(&["3"]).get(), 2);
        let text = metrics.render().expect("render");
        assert!(text.contains("otsensor_worker_packets_total{worker=\"3\"} 15"));
        assert!(text.contains("otsensor_evidence_ring_packets_total{worker=\"3\"} 15"));
        assert!(text.contains("otsensor_evidence_ring_overwritten_packets_total{worker=\"3\"} 4"));
        assert!(text.contains("otsensor_evidence_ring_overwritten_bytes_total{worker=\"3\"} 400"));
        for (protocol, expired) in [("dnp3", 2), ("s7comm", 1), ("bacnet", 3)] {
            let line = format!(
                "otsensor_protocol_reassembly_events_total{{event=\"expired\",protocol=\"{protocol}\"}} {expired}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    fn analyzer_stats<'a>(
        counters: &'a AnalyzerCounters,
        latency: &'a Histogram<u64>,
        capture_finished: bool,
    ) -> AnalyzerStats<'a> {
        AnalyzerStats {
            counters,
            devices: 3,
            learning: true,
            learning_progress: 0.25,
            vulnerable_devices: [
                ("critical", 1),
                ("high", 0),
                ("medium", 2),
                ("low", 0),
                ("none", 0),
            ],
            alert_latency_ns: Some(latency),
            capture_finished,
        }
    }

    #[test]
    fn analyzer_fold_reads_stats_and_adds_latencies_once() {
        let metrics = Metrics::new().expect("registry");
        let mut counters = AnalyzerCounters {
            observations: 7,
            ..Default::default()
        };
        let mut latency =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("bounds");
        latency.record(2_000_000).expect("in range");
        let mut folded = AnalyzerFolded::default();
        metrics.fold_analyzer(&mut folded, &analyzer_stats(&counters, &latency, false));
        metrics.fold_analyzer(&mut folded, &analyzer_stats(&counters, &latency, false));
        assert_eq!(metrics.alert_latency.snapshot().0, 1);
        assert_eq!(metrics.analyzer_observations.get(), 7);
        assert_eq!(metrics.inventory_devices.get(), 3);
        assert_eq!(metrics.learning_active.get(), 1);
        assert_eq!(metrics.learning_progress.get(), 0.25);
        let vulnerable = |s: &str| metrics.vulnerable_devices.with_label_values(&[s]).get();
        assert_eq!((vulnerable("critical"), vulnerable("medium")), (1, 2));
        // New latencies may wait for the swap interval while the capture runs, and are
        // all in once it ended, the one beyond the summary's range clamped.
        latency.record_n(5_000_000, 2).expect("in range");
        latency.record(90_000_000_000).expect("in range");
        counters.observations = 10;
        metrics.fold_analyzer(&mut folded, &analyzer_stats(&counters, &latency, false));
        assert_eq!(metrics.analyzer_observations.get(), 10);
        metrics.fold_analyzer(&mut folded, &analyzer_stats(&counters, &latency, true));
        metrics.fold_analyzer(&mut folded, &analyzer_stats(&counters, &latency, true));
        let (count, quantiles) = metrics.alert_latency.snapshot();
        assert_eq!(count, 4);
        let median = quantiles.iter().find(|(q, _)| *q == 0.5).map(|(_, v)| *v);
        assert!(
            median.is_some_and(|v| (v - 0.005).abs() < 0.0001),
            "{quantiles:?}"
        );
    }

    #[test]
    fn latency_reaches_the_summary_through_the_channel() {
        let metrics = Metrics::new().expect("registry");
        let mut worker = metrics.worker(0);
        worker.record_batch(Duration::from_micros(256), 256);
        worker.flush();
        let (count, quantiles) = metrics.packet_latency.snapshot();
        assert_eq!(count, 256);
        let p50 = quantiles.first().map(|q| q.1).unwrap_or(0.0);
        assert!((p50 - 1e-6).abs() < 1e-8, "p50 {p50}");
        let text = metrics.render().expect("render");
        assert!(text.contains("otsensor_worker_packet_processing_seconds{quantile=\"0.999\"}"));
        assert!(text.contains("otsensor_worker_packet_processing_seconds_count 256"));
    }

    #[test]
    fn every_metric_is_documented() {
        let doc = include_str!("../../docs/METRICS.md");
        let metrics = Metrics::new().expect("registry");
        // Per-worker families appear once a worker has its handles.
        let worker = metrics.worker(0);
        drop(worker);
        let fleet = metrics.fleet().expect("fleet metrics");
        drop(fleet);
        let hub = HubMetrics::new().expect("hub registry");
        for name in metrics.family_names().into_iter().chain(hub.family_names()) {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} missing from docs/METRICS.md"
            );
        }
        for name in [
            "otsensor_reader_packets_total",
            "otsensor_kernel_packets_total",
            "otsensor_sink_dropped_total",
            "otsensor_alerts_total",
            "otsensor_evidence_ring_overwritten_packets_total",
            "otsensor_evidence_files_evicted_total",
            "otsensor_protocol_reassembly_events_total",
        ] {
            assert!(doc.contains(&format!("`{name}`")), "{name} missing");
        }
    }
}
