//! Live capture from one interface as a [`PacketSource`](crate::capture::PacketSource): the XDP pre-filter attached,
//! one AF_XDP socket per RX queue registered under its queue id, frames handed out one
//! at a time in round-robin over the queues, until a stop flag is raised.
//!
//! This lets `otsensor run` feed the same pipeline as replay. Dropping a
//! [`LiveCapture`](crate::capture::live::LiveCapture) detaches the program before the sockets close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::afxdp::{self, QueueSocket, SocketSettings, SocketStats};
use super::{Error, Packet, PacketSource};
use crate::ebpf::{
    AttachReport, ConversationKey, ConversationTotals, KernelCounters, XdpFilter, XdpSettings,
};
use crate::metrics::Metrics;
use crate::observe::Observation;

/// How long an idle source sleeps in poll(2) before it looks at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How often the kernel's per-conversation accounting of shed bulk is read: a walk of
/// the whole flow map (one system call per entry), so seconds, not milliseconds.
pub const CONVERSATIONS_EVERY: Duration = Duration::from_secs(5);
/// How often the kernel and socket counters are folded into the metrics.
pub const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Kernel events logged per run (the rest are only counted).
const LOGGED_EVENTS: u32 = 20;
/// Under load the clock is read once per this many packets.
const TICK_EVERY_PACKETS: u32 = 4096;
/// Retry delay after the analyzer's channel was full.
const CONVERSATIONS_RETRY: Duration = Duration::from_millis(500);

/// Why live capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Filter(#[from] crate::ebpf::Error),
    #[error(transparent)]
    Socket(#[from] afxdp::Error),
}

/// One queue's books: redirected = received + kernel drops, or something is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAccounting {
    pub queue: u32,
    /// Frames the program redirected to this queue's socket.
    pub redirected: u64,
    /// Frames meant for user space that found no socket on this queue.
    pub no_socket: u64,
    /// Frames user space took from the socket.
    pub received: u64,
    /// XDP_STATISTICS drops (ring full, no fill buffer, invalid descriptor).
    pub kernel_drops: u64,
    /// redirected - received - kernel_drops.
    pub unaccounted: i128,
}

/// The pre-filter and the sockets of one interface.
pub struct LiveCapture {
    // Field order is drop order, but `Drop` detaches explicitly first anyway.
    filter: XdpFilter,
    sockets: Vec<QueueSocket>,
    report: AttachReport,
    ifname: String,
    stop: Arc<AtomicBool>,
    /// The socket that lent the last packet (released on the next call).
    lent_by: Option<usize>,
    next_socket: usize,
    /// Per conversation, the kernel's totals already reported to the analyzer.
    conversations_reported: HashMap<ConversationKey, ConversationTotals>,
    conversations_due: Instant,
    metrics: Option<Arc<Metrics>>,
    metrics_due: Instant,
    kernel_folded: KernelCounters,
    queues_folded: Vec<QueueAccounting>,
    /// Hands observations to the analyzer (see `PacketSource::attach_observations`).
    emit: Option<Box<dyn FnMut(Observation) -> bool>>,
    /// Packets since the last look at the clock.
    since_tick: u32,
    events_logged: u32,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("ifname", &self.ifname)
            .field("report", &self.report)
            .field("sockets", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Loads and attaches the pre-filter on `ifname`, opens and registers a socket on
    /// every RX queue. `stop` ends the source (set it from SIGINT/SIGTERM handling).
    pub fn start(
        ifname: &str,
        xdp: &XdpSettings,
        sockets: &SocketSettings,
        stop: Arc<AtomicBool>,
    ) -> Result<LiveCapture, StartError> {
        let queues = afxdp::rx_queue_count(ifname)?;
        let mut filter = XdpFilter::load(xdp)?;
        // Sockets first: frames redirected before a queue has its socket would only be
        // counted as "no socket" and passed.
        let mut opened = Vec::with_capacity(queues as usize);
        for queue in 0..queues {
            let socket = QueueSocket::open(ifname, queue, sockets)?;
            filter.register_socket(queue, &socket)?;
            opened.push(socket);
        }
        let report = filter.attach(ifname)?;
        Ok(LiveCapture {
            filter,
            sockets: opened,
            report,
            ifname: ifname.to_string(),
            stop,
            lent_by: None,
            next_socket: 0,
            conversations_reported: HashMap::new(),
            conversations_due: Instant::now() + CONVERSATIONS_EVERY,
            metrics: None,
            metrics_due: Instant::now(),
            kernel_folded: KernelCounters::default(),
            queues_folded: Vec::new(),
            emit: None,
            since_tick: 0,
            events_logged: 0,
        })
    }

    /// Keeps these metrics current with the kernel's counters (folded in every
    /// [`METRICS_EVERY`] by [`PacketSource::housekeeping`]).
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Takes the kernel's events: counted per kind in the metrics, the first
    /// [`LOGGED_EVENTS`] of the run logged with the frame's first bytes.
    fn drain_kernel_events(&mut self) {
        let metrics = self.metrics.clone();
        let logged = &mut self.events_logged;
        let _ = self.filter.drain_events(&mut |event| {
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
        if let (Some(metrics), Ok(suppressed)) = (&metrics, self.filter.suppressed_events()) {
            metrics
                .kernel_events_suppressed
                .set(i64::try_from(suppressed).unwrap_or(i64::MAX));
        }
    }

    /// Folds the XDP counters and the per-queue books into the metrics.
    pub fn fold_metrics(&mut self) {
        self.drain_kernel_events();
        let Some(metrics) = self.metrics.clone() else {
            return;
        };
        if let Ok(counters) = self.filter.counters() {
            metrics.fold_kernel(&mut self.kernel_folded, &counters);
        }
        if let Ok(queues) = self.queue_accounting() {
            for queue in &queues {
                metrics
                    .xdp_queue_unaccounted
                    .with_label_values(&[queue.queue.to_string().as_str()])
                    .set(i64::try_from(queue.unaccounted).unwrap_or(i64::MAX));
            }
            metrics.fold_queues(&mut self.queues_folded, &queues);
        }
    }

    /// Periodic work on the reader thread: kernel conversations to the analyzer,
    /// counters into the metrics, each when due.
    fn tick(&mut self) {
        self.since_tick = 0;
        let now = Instant::now();
        if now >= self.conversations_due {
            if let Some(mut emit) = self.emit.take() {
                let all_taken = self.report_conversations(&mut *emit);
                self.emit = Some(emit);
                self.conversations_due = now
                    + if all_taken {
                        CONVERSATIONS_EVERY
                    } else {
                        CONVERSATIONS_RETRY
                    };
            } else {
                self.conversations_due = now + CONVERSATIONS_EVERY;
            }
        }
        if now >= self.metrics_due {
            self.fold_metrics();
            self.metrics_due = now + METRICS_EVERY;
        }
    }

    /// Reports what the kernel shed per conversation since the last report, as
    /// [`Observation::KernelConversation`] deltas. A delta the analyzer's channel did
    /// not take stays unreported and is retried; conversations the kernel's LRU map
    /// evicted are forgotten (if they come back, their totals start again from zero).
    fn report_conversations(&mut self, emit: &mut dyn FnMut(Observation) -> bool) -> bool {
        let Ok(current) = self.filter.conversations() else {
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

    /// How the program was attached (mode, fallback, stale program replaced).
    pub fn attach_report(&self) -> AttachReport {
        self.report
    }

    /// The pre-filter: counters, flows, conversations, verdicts.
    pub fn filter(&self) -> &XdpFilter {
        &self.filter
    }

    pub fn filter_mut(&mut self) -> &mut XdpFilter {
        &mut self.filter
    }

    /// The sockets, in queue order.
    pub fn sockets(&self) -> &[QueueSocket] {
        &self.sockets
    }

    /// Per-queue socket statistics, in queue order.
    pub fn socket_stats(&self) -> Result<Vec<SocketStats>, afxdp::Error> {
        self.sockets.iter().map(QueueSocket::stats).collect()
    }

    /// Per queue: what the program redirected and what the socket received or the
    /// kernel dropped. Once the rings are drained, any non-zero `unaccounted` means
    /// frames went astray (export it as a metric and log it).
    pub fn queue_accounting(&self) -> Result<Vec<QueueAccounting>, StartError> {
        let kernel = self.filter.queue_counters(self.sockets.len() as u32)?;
        self.sockets
            .iter()
            .zip(kernel)
            .map(|(socket, counters)| {
                let stats = socket.stats()?;
                Ok(QueueAccounting {
                    queue: socket.queue(),
                    redirected: counters.redirected,
                    no_socket: counters.no_socket,
                    received: stats.received_packets,
                    kernel_drops: stats.kernel_drops(),
                    unaccounted: stats.unaccounted(counters.redirected),
                })
            })
            .collect()
    }

    /// Detaches the program (frames then take the host path); the sockets stay open so
    /// whatever is already in their rings can still be read.
    pub fn detach(&mut self) -> Result<(), crate::ebpf::Error> {
        self.filter.detach()
    }

    fn live_error(&self, source: std::io::Error) -> Error {
        Error::Live {
            interface: self.ifname.clone(),
            source,
        }
    }
}

impl PacketSource for LiveCapture {
    fn attach_observations(&mut self, emit: Box<dyn FnMut(Observation) -> bool>) {
        self.emit = Some(emit);
    }

    fn finish_observations(&mut self, emit: &mut dyn FnMut(Observation) -> bool) {
        self.emit = None;
        self.report_conversations(emit);
        self.fold_metrics();
    }

    fn idle(&mut self) -> bool {
        !self.sockets.iter_mut().any(|socket| socket.has_frame())
    }

    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        if let Some(index) = self.lent_by.take() {
            if let Some(socket) = self.sockets.get_mut(index) {
                socket.release_lent();
            }
        }
        self.since_tick += 1;
        if self.since_tick >= TICK_EVERY_PACKETS {
            self.tick();
        }
        let count = self.sockets.len();
        if count == 0 {
            return Ok(None);
        }
        loop {
            let ready = (0..count)
                .map(|k| (self.next_socket + k) % count)
                .find(|&index| {
                    self.sockets
                        .get_mut(index)
                        .is_some_and(QueueSocket::has_frame)
                });
            if let Some(index) = ready {
                self.next_socket = (index + 1) % count;
                self.lent_by = Some(index);
                return Ok(self
                    .sockets
                    .get_mut(index)
                    .and_then(QueueSocket::next_frame));
            }
            // Drain before stopping: only an empty set of rings ends the source.
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            self.tick();
            afxdp::wait_any(&self.sockets, IDLE_WAIT).map_err(|e| self.live_error(e))?;
        }
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // The program must stop redirecting before the sockets go away.
        let _ = self.filter.detach();
    }
}
