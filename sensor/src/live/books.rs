//! Housekeeping of a live capture, on the thread that started it (it touches no
//! packet): the kernel's counters, events and per-queue books folded into the metrics
//! every [`METRICS_EVERY`], and what the kernel shed per conversation sent to the
//! analyzer every [`CONVERSATIONS_EVERY`]. This is where the capture layer's own stats
//! structs are mapped onto metrics and observations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::capture::live::{LiveCapture, QueueAccounting};
use crate::ebpf::{ConversationKey, ConversationTotals, KernelCounters};
use crate::metrics::Metrics;
use crate::observe::{mono_ns, Observation, ObservationBatch, Stamped};

/// How often the kernel's per-conversation accounting of shed bulk is read: a walk of
/// the whole flow map (one system call per entry), so seconds, not milliseconds.
pub const CONVERSATIONS_EVERY: Duration = Duration::from_secs(5);
/// How often the kernel and socket counters are folded into the metrics.
pub const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Retry delay after the analyzer's channel was full.
const CONVERSATIONS_RETRY: Duration = Duration::from_millis(500);
/// Kernel events logged per run (the rest are only counted).
const LOGGED_EVENTS: u32 = 20;

/// What the housekeeping remembers between rounds.
pub struct Books {
    /// Per conversation, the kernel's totals already reported to the analyzer.
    conversations_reported: HashMap<ConversationKey, ConversationTotals>,
    conversations_due: Instant,
    metrics: Option<Arc<Metrics>>,
    metrics_due: Instant,
    kernel_folded: KernelCounters,
    queues_folded: Vec<QueueAccounting>,
    events_logged: u32,
    observations: Sender<ObservationBatch>,
    /// The producer id the conversation reports go under: one the analyzer does not
    /// order against packets (the workers are `0..producer`).
    producer: usize,
}

impl std::fmt::Debug for Books {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Books").finish_non_exhaustive()
    }
}

impl Books {
    /// `observations`: the analyzer's channel; `workers`: how many workers send on it.
    pub fn new(
        metrics: Option<Arc<Metrics>>,
        observations: Sender<ObservationBatch>,
        workers: usize,
    ) -> Books {
        let now = Instant::now();
        Books {
            conversations_reported: HashMap::new(),
            conversations_due: now + CONVERSATIONS_EVERY,
            metrics,
            metrics_due: now,
            kernel_folded: KernelCounters::default(),
            queues_folded: Vec::new(),
            events_logged: 0,
            observations,
            producer: workers,
        }
    }

    /// Does what is due; returns when to call again at the latest.
    pub fn tick(&mut self, capture: &LiveCapture) -> Instant {
        let now = Instant::now();
        if now >= self.conversations_due {
            let (observations, producer) = (self.observations.clone(), self.producer);
            let all_taken = self.report_conversations(capture, &mut |observation| {
                observations.try_send(stamp(producer, observation)).is_ok()
            });
            self.conversations_due = now
                + if all_taken {
                    CONVERSATIONS_EVERY
                } else {
                    CONVERSATIONS_RETRY
                };
        }
        if now >= self.metrics_due {
            self.fold_metrics(capture);
            self.metrics_due = now + METRICS_EVERY;
        }
        self.conversations_due.min(self.metrics_due)
    }

    /// The last round once the workers ended: the final conversation report (waiting
    /// for room in the analyzer's channel) and the final counters.
    pub fn finish(mut self, capture: &LiveCapture) {
        let (observations, producer) = (self.observations.clone(), self.producer);
        self.report_conversations(capture, &mut |observation| {
            observations.send(stamp(producer, observation)).is_ok()
        });
        self.fold_metrics(capture);
    }

    /// Takes the kernel's events: counted per kind in the metrics, the first
    /// [`LOGGED_EVENTS`] of the run logged with the frame's first bytes.
    fn drain_kernel_events(&mut self, capture: &LiveCapture) {
        let metrics = self.metrics.clone();
        let logged = &mut self.events_logged;
        let _ = capture.filter().drain_events(&mut |event| {
            if let Some(metrics) = &metrics {
                metrics
                    .kernel_events
                    .with_label_values(&[event.kind.label()])
                    .inc();
            }
            if *logged < LOGGED_EVENTS {
                *logged += 1;
                let snap: String = event.snap().iter().map(|b| format!("{b:02x}")).collect();
                eprintln!(
                    "otsensor: kernel: {} ({}) on queue {}, {}-byte frame starting {snap}",
                    event.kind.label(),
                    event.reason(),
                    event.rx_queue,
                    event.frame_len
                );
            }
        });
        if let (Some(metrics), Ok(suppressed)) = (&metrics, capture.filter().suppressed_events()) {
            metrics
                .kernel_events_suppressed
                .set(i64::try_from(suppressed).unwrap_or(i64::MAX));
        }
    }

    /// Folds the XDP counters and the per-queue books into the metrics.
    fn fold_metrics(&mut self, capture: &LiveCapture) {
        self.drain_kernel_events(capture);
        let Some(metrics) = self.metrics.clone() else {
            return;
        };
        if let Ok(counters) = capture.filter().counters() {
            metrics.fold_kernel(&mut self.kernel_folded, &counters);
        }
        if let Ok(queues) = capture.queue_accounting() {
            for queue in &queues {
                metrics
                    .xdp_queue_unaccounted
                    .with_label_values(&[queue.queue.to_string().as_str()])
                    .set(i64::try_from(queue.unaccounted).unwrap_or(i64::MAX));
            }
            // Live, the "reader" counters are what the workers took from their sockets.
            let sum = |books: &[QueueAccounting]| {
                books.iter().fold((0u64, 0u64), |(p, b), q| {
                    (p + q.received, b + q.received_bytes)
                })
            };
            let (before, now) = (sum(&self.queues_folded), sum(&queues));
            metrics
                .reader_packets
                .inc_by(now.0.saturating_sub(before.0));
            metrics.reader_bytes.inc_by(now.1.saturating_sub(before.1));
            metrics.fold_queues(&mut self.queues_folded, &queues);
        }
    }

    /// Reports what the kernel shed per conversation since the last report, as
    /// [`Observation::KernelConversation`] deltas. A delta `emit` did not take stays
    /// unreported and is retried; conversations the kernel's LRU map evicted are
    /// forgotten (if they come back, their totals start again from zero).
    fn report_conversations(
        &mut self,
        capture: &LiveCapture,
        emit: &mut dyn FnMut(Observation) -> bool,
    ) -> bool {
        let Ok(current) = capture.filter().conversations() else {
            return true;
        };
        let mut all_taken = true;
        for (key, totals) in &current {
            let before = self
                .conversations_reported
                .get(key)
                .copied()
                .unwrap_or_default();
            // Totals shrink when one of the conversation's flows was evicted: report
            // what grew and take the new totals as the reference.
            let delta = |now: u64, then: u64| now.saturating_sub(then);
            let observation = Observation::KernelConversation {
                ts_ns: crate::ebpf::monotonic_to_realtime_ns(totals.last_seen_monotonic_ns),
                client: key.client,
                server: key.server,
                ip_protocol: key.protocol,
                server_port: key.server_port,
                packets_to_server: delta(totals.packets_to_server, before.packets_to_server),
                bytes_to_server: delta(totals.bytes_to_server, before.bytes_to_server),
                packets_to_client: delta(totals.packets_to_client, before.packets_to_client),
                bytes_to_client: delta(totals.bytes_to_client, before.bytes_to_client),
            };
            let grew = totals.packets_to_server > before.packets_to_server
                || totals.packets_to_client > before.packets_to_client;
            if grew && all_taken && !emit(observation) {
                all_taken = false;
            }
            if !grew || all_taken {
                self.conversations_reported.insert(*key, *totals);
            }
        }
        self.conversations_reported
            .retain(|key, _| current.contains_key(key));
        all_taken
    }
}

/// One conversation report as its own message (a few per conversation every
/// [`CONVERSATIONS_EVERY`]: not the hot path).
fn stamp(producer: usize, observation: Observation) -> ObservationBatch {
    ObservationBatch {
        producer,
        items: vec![Stamped {
            observation,
            mono_ns: mono_ns(),
            order: 0,
        }],
        ..Default::default()
    }
}
