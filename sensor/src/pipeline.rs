//! The threads of one run and how they are joined: a reader that plays the NIC (it
//! spreads packets over workers by the symmetric flow hash, as symmetric RSS would),
//! N workers, and one analyzer. Every channel is bounded; shutdown closes them in order
//! so that every packet read is processed and every observation analysed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

use otsensor_wire::Protocol;

use crate::analyze::{Analyzer, AnalyzerReport, EventOutlet};
use crate::capture::{self, LinkType, Packet, PacketSource};
use crate::config::Policy;
use crate::control::{ControlHandler, ControlRequest, SnapshotCell, SnapshotPublisher};
use crate::flow;
use crate::flow::handoff::{HandoffFrame, HandoffRings};
use crate::flow::stream::StreamCounters;
use crate::metrics::{AnalyzerFolded, Metrics, WorkerMetrics};
use crate::observe::{
    park_states, Delivery, Merge, ObservationBatch, ObservationSink, ParkState, Stamped,
    OBSERVATION_BATCH,
};
use crate::output::eve::EventSink;
use crate::output::eve::{EveRecord, EveWriter};
use crate::output::sinks::{AlertSinks, SinkReport};
use crate::reload::SharedPolicy;
use crate::store::Store;
use crate::worker::{Worker, WorkerCounters, WorkerReport};

/// Where one packet of a batch lies.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ts_ns: u64,
    /// The packet's index in the source: its order key.
    seq: u64,
    /// Index in the batch's `blocks`, or `OWN_BYTES` for bytes copied into the batch.
    block: u32,
    start: u32,
    len: u32,
    wire_len: u32,
    link: LinkType,
}

/// An entry whose bytes were copied into the batch's own buffer.
const OWN_BYTES: u32 = u32::MAX;

/// Packets read from the source, handed to a worker as one message: either copied into
/// the batch, or (a source reading into shared blocks) a reference to each block the
/// packets lie in, taken once per block rather than per packet. Batches are allocated
/// once and recycled, so the steady state allocates nothing.
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    /// The source's blocks this batch's packets lie in; released when the worker clears it.
    blocks: Vec<capture::SharedBlock>,
    entries: Vec<Entry>,
    max_packets: usize,
    /// Index of the last packet the reader had read when it handed this batch over:
    /// every packet of this worker's up to it is in this batch or an earlier one.
    upto: u64,
}

const BATCH_BYTES: usize = 1 << 20;
/// Every this many packets read per worker, the reader hands every worker what it
/// holds (an empty batch is a watermark tick), so that a worker with little traffic
/// does not hold back the analyzer's merge of the others' observations. Counted in
/// packets, not packet time: balanced traffic fills whole batches before the tick,
/// however sparse the capture.
const TICK_BATCHES: u64 = 4;
/// Live (a reader-driven live source): the reader also hands over what it holds once
/// this much packet (wall-clock) time has passed, so that observations wait at most
/// about this long for a quiet worker's watermark.
const LIVE_TICK_NS: u64 = 1_000_000;
/// A replay worker publishes its watermark (sends its observations, waking the
/// analyzer) after at least this many packets while more are queued for it, and
/// whenever its input runs dry: every publication can cost the analyzer a wake-up
/// (~7 µs of CPU on a small machine), and 1024 packets are ~0.25 ms of a worker's time.
/// Replay with one worker runs it on the reader's thread and publishes every this many
/// packets.
const PUBLISH_PACKETS: u64 = 1024;
/// Capacity of the channel into the EVE writer thread, in records.
const EVE_QUEUE: usize = 16_384;

impl Batch {
    fn new(max_packets: usize) -> Batch {
        Batch {
            bytes: Vec::with_capacity(BATCH_BYTES),
            // At most one new block per packet: pushing never reallocates.
            blocks: Vec::with_capacity(max_packets),
            entries: Vec::with_capacity(max_packets),
            max_packets,
            upto: 0,
        }
    }

    fn is_full_for(&self, len: usize) -> bool {
        self.entries.len() >= self.max_packets || self.bytes.len() + len > self.bytes.capacity()
    }

    fn push(&mut self, packet: &Packet<'_>, seq: u64) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet.data);
        self.entries.push(Entry {
            ts_ns: packet.ts_ns,
            seq,
            block: OWN_BYTES,
            start: start as u32,
            len: packet.data.len() as u32,
            wire_len: packet.wire_len,
            link: packet.link,
        });
    }

    /// Adds a packet whose bytes stay in the source's shared block.
    fn push_shared(&mut self, packet: &Packet<'_>, seq: u64, shared: capture::SharedBytes<'_>) {
        if !self
            .blocks
            .last()
            .is_some_and(|last| Arc::ptr_eq(last, shared.block))
        {
            self.blocks.push(Arc::clone(shared.block));
        }
        self.entries.push(Entry {
            ts_ns: packet.ts_ns,
            seq,
            block: (self.blocks.len() - 1) as u32,
            start: shared.start as u32,
            len: packet.data.len() as u32,
            wire_len: packet.wire_len,
            link: packet.link,
        });
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.blocks.clear();
        self.entries.clear();
    }

    /// The packets of this batch, in order, with their order keys.
    pub fn packets(&self) -> impl Iterator<Item = (Packet<'_>, u64)> {
        self.entries.iter().map(|e| {
            let bytes = match e.block {
                OWN_BYTES => &self.bytes[..],
                block => self.blocks.get(block as usize).map_or(&[][..], |b| &b[..]),
            };
            let range = e.start as usize..e.start as usize + e.len as usize;
            (
                Packet {
                    ts_ns: e.ts_ns,
                    link: e.link,
                    data: bytes.get(range).unwrap_or(&[]),
                    wire_len: e.wire_len,
                },
                e.seq,
            )
        })
    }
}

/// Options of one replay.
#[derive(Debug, Default)]
pub struct ReplayOptions {
    /// Pace packets by their timestamps instead of as fast as possible.
    pub realtime: bool,
    /// Pace at this multiple of capture time (2.0 = twice as fast); implies `realtime`.
    pub realtime_speed: Option<f64>,
    /// Where EVE events go.
    pub eve: Option<EveWriter>,
    /// How packets are spread over workers.
    pub spread: Spread,
    /// Live capture: full channels drop and count instead of waiting (a queue must
    /// never stall); offline replay waits, so its results are complete.
    pub live: bool,
    /// The database the analyzer continues from and writes (inventory, baseline,
    /// alerts); none is a private in-memory one.
    pub store: Option<Store>,
    /// Set (e.g. by a SIGTERM handler) to stop reading: what was read is processed,
    /// flows are ended and the store is committed before `replay` returns.
    pub stop: Option<Arc<AtomicBool>>,
    /// Prometheus metrics to keep current while running.
    pub metrics: Option<Arc<Metrics>>,
    /// Requests from the HTTP API. The analyzer thread answers them between
    /// observations; after the capture ends a `otsensor-control` thread keeps
    /// answering until every sender is gone (so `--serve` can explore the result).
    pub control: Option<Receiver<ControlRequest>>,
    /// Where the analyzer publishes what the API's read endpoints serve (periodically
    /// when something changed, at once after an operator's change, and at the end).
    pub snapshot: Option<Arc<SnapshotCell>>,
    /// Where alerts go besides EVE (syslog, webhook); closed (drained) at the end.
    pub alert_sinks: Option<AlertSinks>,
    /// Config reload: workers look for a new policy snapshot once per batch and the
    /// analyzer receives it in its select loop. Its current policy is the run's policy.
    pub reloadable_policy: Option<Arc<SharedPolicy>>,
    /// Where alert evidence (pcapng) goes, when `evidence.enabled`: workers then keep
    /// their recent packets in a ring (`crate::evidence`).
    pub evidence_dir: Option<std::path::PathBuf>,
}

/// How long the EVE writer waits for more records before it flushes what it holds.
const EVE_IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// Observations between two refreshes of the analyzer's metrics.
const ANALYZER_METRICS_EVERY: u64 = 1024;
/// Emptied observation vectors a worker keeps in reserve.
const RECYCLED_VECTORS: usize = 16;
/// How often a thread looks for work again before it parks, at most (some
/// microseconds) and at least; see [`Spin`].
const SPIN_TRIES: u32 = 256;
const SPIN_TRIES_MIN: u32 = 8;

/// A receiver's spin before it parks, adapted to how its messages come: a spin that
/// catches a message doubles the next one (up to [`SPIN_TRIES`]), one that ends in a
/// park halves it (down to [`SPIN_TRIES_MIN`]). A dense stream (busy workers, a batch
/// every few microseconds) is taken without futex wake-ups; a sparse one (one replay
/// worker's batch every ~70 µs) parks almost at once instead of burning several
/// microseconds first, which on a small machine also took the core from the thread
/// it waited for (the analyzer used 0.8x the CPU per packet with a short spin).
#[derive(Debug)]
struct Spin {
    tries: u32,
}

impl Spin {
    fn new() -> Spin {
        Spin { tries: SPIN_TRIES }
    }

    /// Takes a message if one comes within the spin; `None` means park (or the
    /// channel is closed: the blocking receive that follows says which).
    fn recv<T>(&mut self, rx: &Receiver<T>) -> Option<T> {
        for _ in 0..self.tries {
            match rx.try_recv() {
                Ok(item) => {
                    self.tries = (self.tries * 2).min(SPIN_TRIES);
                    return Some(item);
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        self.tries = (self.tries / 2).max(SPIN_TRIES_MIN);
        None
    }
}

/// How the reader spreads packets over workers (as a NIC spreads them over queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spread {
    /// By the symmetric flow hash, as symmetric RSS does: no hand-off is needed.
    #[default]
    FlowHash,
    /// By a direction-dependent hash, as a NIC without symmetric RSS does: the two
    /// directions of a flow land on different workers, which hand frames to the
    /// flow's owner (exercises the hand-off path).
    Asymmetric,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Capture(#[from] capture::Error),
    #[error("a pipeline thread failed: {0}")]
    Thread(&'static str),
}

/// The summary of a run: the numbers `otsensor replay` prints and writes as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub devices: u64,
    /// Distinct alerts raised in this run (new, or repeated from the store's history).
    pub alerts: u64,
    pub alerts_by_signature: BTreeMap<String, u64>,
    /// Packet-to-alert latency (worker sent the observation → analyzer raised the alert).
    pub alert_latency_ns: crate::analyze::LatencySummary,
    /// True when the reader stopped early on request (SIGTERM).
    pub stopped: bool,
    /// PDUs per application protocol.
    pub protocols: BTreeMap<String, u64>,
    pub workers: usize,
    pub elapsed_seconds: f64,
    pub packets_per_second: f64,
    /// Per-protocol histograms (function codes, statuses, ...), shaped like the
    /// tshark-derived summaries.
    pub protocol_details: BTreeMap<&'static str, serde_json::Value>,
    /// PDUs that failed validation, per protocol.
    pub malformed_pdus: BTreeMap<String, u64>,
    pub counters: WorkerCounters,
    pub stream: StreamCounters,
    pub analyzer: AnalyzerReport,
    /// EVE records written, and write failures.
    pub eve_events: u64,
    pub eve_write_errors: u64,
    /// Alert evidence written, dropped and deleted (none when no evidence was kept).
    pub evidence: Option<crate::evidence::EvidenceReport>,
    /// CPU time of each thread of the run (reader, workers, analyzer, EVE writer), read
    /// by each thread as it ends; empty where the kernel does not say.
    pub threads: Vec<ThreadCpu>,
}

/// One thread's CPU time over a run.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub cpu_seconds: f64,
    /// Times the scheduler put the thread on a CPU (`/proc/thread-self/schedstat`): its
    /// wake-ups plus preemptions, the cost a hand-off adds beyond the work itself.
    /// 0 where the kernel does not report it.
    pub scheduled: u64,
}

impl ThreadCpu {
    /// The calling thread's usage so far, under `name`.
    pub fn now(name: impl Into<String>) -> Option<ThreadCpu> {
        thread_cpu(name, 0)
    }
}

/// The calling thread's `/proc/thread-self/schedstat`: nanoseconds on a CPU and the
/// number of times it was put on one.
fn thread_schedstat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let on_cpu_ns = fields.next()??;
    let _waiting_ns = fields.next();
    Some((on_cpu_ns, fields.next().flatten().unwrap_or(0)))
}

/// CPU time the calling thread has used, in nanoseconds: `/proc/thread-self/schedstat`
/// (nanoseconds on CPU), else `stat` (utime + stime in clock ticks, assumed 100 Hz).
pub fn thread_cpu_ns() -> Option<u64> {
    if let Some((ns, _)) = thread_schedstat() {
        return Some(ns);
    }
    let text = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

fn thread_cpu(name: impl Into<String>, since_ns: u64) -> Option<ThreadCpu> {
    Some(ThreadCpu {
        name: name.into(),
        cpu_seconds: thread_cpu_ns()?.saturating_sub(since_ns) as f64 / 1e9,
        scheduled: thread_schedstat().map_or(0, |(_, scheduled)| scheduled),
    })
}

/// The threads every run has behind its workers, the EVE writer and the analyzer, and
/// what a worker needs to reach them. Shared by replay (a reader thread feeds the
/// workers, below) and live capture (each worker reads its own queue: `crate::live`).
pub(crate) struct Backend {
    /// The policy in force at the start (the reloadable one's current snapshot).
    pub policy: Arc<Policy>,
    /// Workers whose streams the analyzer merges (producers `0..workers`).
    pub workers: usize,
    /// Per worker, whether it is parked: shared with the analyzer's merge (live).
    pub parks: Arc<[ParkState]>,
    /// Observation batches to the analyzer. A producer id of `workers` or above is not
    /// ordered against packets (live: the kernel's conversation reports).
    pub obs_tx: Sender<ObservationBatch>,
    /// Per worker, the analyzer's returns of emptied observation vectors (taken by
    /// [`Backend::new_worker`]).
    recycled: Vec<Option<Receiver<Vec<Stamped>>>>,
    pub eve_tx: Option<Sender<EveRecord>>,
    pub eve_thread: Option<thread::JoinHandle<EveOutcome>>,
    pub analyzer: thread::JoinHandle<AnalyzerOutcome>,
    /// How workers deliver observations and protocol events (live: drop when full).
    pub delivery: Delivery,
    pub protocol_events: bool,
    pub metrics: Option<Arc<Metrics>>,
    pub started: Instant,
    /// Per worker, its evidence ring and channels (taken by [`Backend::new_worker`]).
    evidence_ports: Vec<Option<crate::evidence::WorkerEvidence>>,
    evidence_thread: Option<thread::JoinHandle<crate::evidence::EvidenceReport>>,
}

/// What the analyzer thread returns: its report, the alert sinks' reports, its CPU.
type AnalyzerOutcome = (
    AnalyzerReport,
    Vec<(&'static str, SinkReport)>,
    Option<ThreadCpu>,
);
/// What the EVE writer returns: records written, write failures, its CPU.
type EveOutcome = (u64, u64, Option<ThreadCpu>);

impl Backend {
    /// Worker `id` (one of `0..workers`, each taken once) wired to the analyzer through
    /// a batched observation sink (and to the EVE writer for protocol events),
    /// following reloads of `reloadable`.
    pub(crate) fn new_worker(
        &mut self,
        id: usize,
        reloadable: Option<&Arc<SharedPolicy>>,
    ) -> Result<Worker, Error> {
        let recycled = self
            .recycled
            .get_mut(id)
            .and_then(Option::take)
            .ok_or(Error::Thread("spawn worker"))?;
        let sink = ObservationSink::batched(id, self.obs_tx.clone(), recycled, self.delivery);
        let events: Option<Box<dyn crate::inspect::ProtocolEventSink + Send>> = match &self.eve_tx {
            Some(tx) if self.protocol_events => {
                Some(Box::new(EventSink::new(tx.clone(), self.delivery)))
            }
            _ => None,
        };
        let mut worker = Worker::new(id, Arc::clone(&self.policy), sink, events);
        if let Some(evidence) = self.evidence_ports.get_mut(id).and_then(Option::take) {
            worker.attach_evidence(evidence);
        }
        if let Some(shared) = reloadable {
            worker.watch_policy(shared.watch());
        }
        Ok(worker)
    }

    /// Waits for the analyzer and the EVE writer once every worker has ended (and every
    /// other observation sender is gone), and builds the run's summary. `threads`: the
    /// CPU time of the threads the caller ran (workers).
    pub(crate) fn finish(
        self,
        merged: WorkerReport,
        stopped: bool,
        threads: Vec<ThreadCpu>,
    ) -> Result<Summary, Error> {
        let Backend {
            workers,
            obs_tx,
            eve_tx,
            eve_thread,
            analyzer,
            started,
            evidence_ports,
            evidence_thread,
            ..
        } = self;
        drop(obs_tx);
        // Rings of workers never started: their requests are answered empty.
        drop(evidence_ports);
        finish_run(FinishRun {
            merged,
            analyzer,
            evidence_thread,
            eve_tx,
            eve_thread,
            started,
            stopped,
            workers,
            threads,
        })
    }
}

/// Starts the EVE writer and the analyzer (taking the outputs, store, control channel
/// and snapshot cell out of `options`). `workers`: the number of worker streams the
/// analyzer merges (default: the policy's).
pub(crate) fn start_backend(
    policy: Arc<Policy>,
    workers: Option<usize>,
    options: &mut ReplayOptions,
) -> Result<Backend, Error> {
    let started = Instant::now();
    let policy = match &options.reloadable_policy {
        Some(shared) => shared.current(),
        None => policy,
    };
    let policy_updates = options.reloadable_policy.as_ref().map(|s| s.subscribe());
    let workers = workers.unwrap_or(policy.workers).max(1);
    let parks = park_states(workers);
    // One channel of observation batches from every worker (and the source) to the
    // analyzer, and per worker a channel that returns the emptied vectors.
    let (obs_tx, obs_rx) = bounded::<ObservationBatch>(
        (policy.observation_queue / OBSERVATION_BATCH).max(2 * workers + 2),
    );
    let (recycle_tx, recycle_rx): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| bounded::<Vec<Stamped>>(RECYCLED_VECTORS))
        .unzip();

    // The EVE writer thread: the one owner of the output file.
    let (eve_tx, eve_thread) = match options.eve.take() {
        Some(mut writer) => {
            let (tx, rx) = bounded::<EveRecord>(EVE_QUEUE);
            let handle = thread::Builder::new()
                .name("otsensor-eve".into())
                .spawn(move || {
                    let mut failures = 0u64;
                    let mut unflushed = false;
                    loop {
                        match rx.recv_timeout(EVE_IDLE_FLUSH) {
                            Ok(record) => {
                                failures += u64::from(writer.record(&record).is_err());
                                unflushed = true;
                            }
                            // A quiet moment: make what was written visible (tail -f,
                            // SIEM file readers) instead of holding it in the buffer.
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                if unflushed {
                                    failures += u64::from(writer.flush().is_err());
                                    unflushed = false;
                                }
                            }
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    failures += u64::from(writer.flush().is_err());
                    (writer.events, failures, thread_cpu("otsensor-eve", 0))
                })
                .map_err(|_| Error::Thread("spawn EVE writer"))?;
            (Some(tx), Some(handle))
        }
        None => (None, None),
    };
    let protocol_events = policy.eve_protocol_events;
    let delivery = if options.live {
        Delivery::DropWhenFull
    } else {
        Delivery::Block
    };
    // The analyzer waits for the EVE writer (alerts and flow records must not be lost);
    // workers' protocol events follow the workers' delivery rule.
    let event_sink = |tx: &Option<Sender<EveRecord>>, delivery: Delivery| {
        tx.clone().map(|tx| EventSink::new(tx, delivery))
    };

    let live = options.live;
    let analyzer_policy = Arc::clone(&policy);
    let analyzer_parks = Arc::clone(&parks);
    let analyzer_eve =
        event_sink(&eve_tx, Delivery::Block).map(|sink| Box::new(sink) as Box<dyn EventOutlet>);
    let store = options.store.take();
    let metrics = options.metrics.clone();
    if let Some(metrics) = &metrics {
        metrics
            .observation_queue_capacity
            .set(i64::try_from(policy.observation_queue).unwrap_or(i64::MAX));
    }
    let analyzer_metrics = metrics.clone();
    let evidence = match options.evidence_dir.take() {
        Some(dir) if policy.evidence.enabled => Some(
            crate::evidence::start(
                &policy.evidence,
                dir,
                workers,
                event_sink(&eve_tx, Delivery::Block),
                metrics.clone(),
            )
            .map_err(|_| Error::Thread("spawn evidence writer"))?,
        ),
        _ => None,
    };
    let (evidence_requests, evidence_ports, evidence_thread) = match evidence {
        Some(started) => (
            Some(started.requests),
            started.workers.into_iter().map(Some).collect(),
            Some(started.thread),
        ),
        None => (None, Vec::new(), None),
    };
    let control = options.control.take();
    let snapshot = options.snapshot.take();
    let mut sinks = options
        .alert_sinks
        .take()
        .unwrap_or_else(|| AlertSinks::new(metrics.clone()));
    // The embedded advisory catalogue and its vendor indexes are built once per process
    // (~0.15 s of CPU), before the first packet: built on demand, the first device identities
    // waited for them behind their packets, and every alert queued behind those was
    // late by as much (the replay's alert latency p99 was this start-up). Live capture
    // has built it before attaching (`live::run_after_attach`): this is then a no-op.
    crate::advisories::embedded().prepare();
    let analyzer = thread::Builder::new()
        .name("otsensor-analyzer".into())
        .spawn(move || {
            let mut analyzer = match store {
                Some(store) => Analyzer::with_store(analyzer_policy, analyzer_eve, store),
                None => Analyzer::new(analyzer_policy, analyzer_eve),
            };
            // Store commits on a thread of their own: a commit takes milliseconds,
            // and observations queued behind it would make their alerts late.
            analyzer.store_on_own_thread();
            let changes = sinks.take_state_changes();
            analyzer.set_outputs(Box::new(sinks), changes);
            analyzer.set_wall_clock(live);
            if let Some(requests) = evidence_requests {
                analyzer.set_evidence(requests);
            }
            let mut folded = AnalyzerFolded::default();
            if let Some(metrics) = &analyzer_metrics {
                metrics.fold_analyzer(&mut folded, &analyzer.stats());
            }
            let requests = control.clone().unwrap_or_else(crossbeam_channel::never);
            let policy_updates = policy_updates.unwrap_or_else(crossbeam_channel::never);
            let mut publisher = snapshot.map(SnapshotPublisher::new);
            if let Some(publisher) = &mut publisher {
                publisher.publish(&mut analyzer);
            }
            let mut next_snapshot = std::time::Instant::now() + crate::control::SNAPSHOT_INTERVAL;
            let mut merge = Merge::with_park_states(analyzer_parks);
            let mut spin = Spin::new();
            let mut next_metrics = ANALYZER_METRICS_EVERY;
            let mut next_tick = std::time::Instant::now() + Analyzer::TICK;
            let fold_now = std::cell::Cell::new(false);
            let mut release = |analyzer: &mut Analyzer, merge: &mut Merge, wall_ns: u64| {
                while let Some(stamped) = merge.pop(wall_ns) {
                    analyzer.handle(stamped);
                }
                if let Some(metrics) = &analyzer_metrics {
                    if analyzer.counters.observations >= next_metrics || fold_now.take() {
                        next_metrics = analyzer.counters.observations + ANALYZER_METRICS_EVERY;
                        metrics.fold_analyzer(&mut folded, &analyzer.stats());
                        metrics
                            .observation_queue_depth
                            .set((obs_rx.len() * OBSERVATION_BATCH / 2 + merge.held()) as i64);
                    }
                }
            };
            let take = |analyzer: &mut Analyzer, merge: &mut Merge, mut batch: ObservationBatch| {
                if batch.producer >= workers || workers == 1 {
                    // The source's own observations (kernel-shed conversations) are
                    // not ordered against packets: analysed as they come. One worker's
                    // stream is already in order: nothing to merge.
                    for stamped in batch.items.drain(..) {
                        analyzer.handle(stamped);
                    }
                } else {
                    merge.push(&mut batch);
                }
                if let Some(recycle) = recycle_tx.get(batch.producer) {
                    let _ = recycle.try_send(batch.items);
                }
            };
            loop {
                // Spin briefly before parking: a busy pipeline sends a batch every few
                // microseconds, and a futex wake-up costs more than that.
                let first = match spin.recv(&obs_rx) {
                    Some(batch) => Ok(batch),
                    None => {
                        // A parked worker wakes the analyzer with its next batch;
                        // only an observation stamped at the very nanosecond of the
                        // clock reading waits for the clock itself (see `Merge`).
                        let wait = if merge.waits_on_clock() {
                            Duration::from_micros(100)
                        } else if publisher.is_some() {
                            crate::control::SNAPSHOT_INTERVAL.min(Analyzer::TICK)
                        } else {
                            // Time-driven work (store commits) runs on this timer,
                            // not on traffic: a quiet network still commits.
                            Analyzer::TICK
                        };
                        crossbeam_channel::select! {
                            recv(obs_rx) -> batch => batch.map_err(|_| true),
                            recv(requests) -> request => {
                                if let Ok(request) = request {
                                    match &mut publisher {
                                        Some(publisher) => publisher.answer(&mut analyzer, request),
                                        None => analyzer.answer(request),
                                    }
                                    // An operator's change reaches the metrics now.
                                    fold_now.set(true);
                                }
                                Err(false)
                            }
                            recv(policy_updates) -> policy => {
                                if let Ok(policy) = policy {
                                    analyzer.set_policy(policy);
                                }
                                Err(false)
                            }
                            default(wait) => Err(false),
                        }
                    }
                };
                match first {
                    Ok(batch) => {
                        // A reload published before these observations were sent applies to them.
                        if let Ok(policy) = policy_updates.try_recv() {
                            analyzer.set_policy(policy);
                        }
                        take(&mut analyzer, &mut merge, batch);
                        // Drain what else is queued before releasing: one pass of the
                        // merge per burst.
                        for batch in obs_rx.try_iter().take(64) {
                            take(&mut analyzer, &mut merge, batch);
                        }
                    }
                    Err(true) => break,
                    Err(false) => {}
                }
                if control.is_some() {
                    while let Ok(request) = requests.try_recv() {
                        match &mut publisher {
                            Some(publisher) => publisher.answer(&mut analyzer, request),
                            None => analyzer.answer(request),
                        }
                        fold_now.set(true);
                    }
                }
                // Read after the batches are taken in: every key in them is below it,
                // and before the merge looks at the park states (see `ParkState`).
                let wall_ns = crate::observe::realtime_ns();
                #[cfg(target_os = "linux")]
                capture::afxdp::clock_before_loads();
                release(&mut analyzer, &mut merge, wall_ns);
                let now = std::time::Instant::now();
                if now >= next_tick {
                    next_tick = now + Analyzer::TICK;
                    analyzer.tick();
                    // Counters reach /metrics on a quiet network too.
                    fold_now.set(true);
                }
                if let Some(publisher) = &mut publisher {
                    let now = std::time::Instant::now();
                    if now >= next_snapshot {
                        publisher.tick(&mut analyzer);
                        next_snapshot = now + crate::control::SNAPSHOT_INTERVAL;
                    }
                }
            }
            merge.end_all();
            release(&mut analyzer, &mut merge, u64::MAX);
            analyzer.capture_finished = true;
            let report = analyzer.finish();
            if let Some(metrics) = &analyzer_metrics {
                metrics.fold_analyzer(&mut folded, &analyzer.stats());
                metrics.observation_queue_depth.set(0);
            }
            if let Some(publisher) = &mut publisher {
                publisher.publish(&mut analyzer);
            }
            let sink_reports = AlertSinks::from_outlet(analyzer.take_alert_outlet())
                .map(AlertSinks::close)
                .unwrap_or_default();
            analyzer.close_events();
            if let Some(requests) = control {
                // Keep answering the API after the capture ended, until it hangs up.
                let _ = thread::Builder::new()
                    .name("otsensor-control".into())
                    .spawn(move || {
                        for request in requests {
                            match &mut publisher {
                                Some(publisher) => publisher.answer(&mut analyzer, request),
                                None => analyzer.answer(request),
                            }
                            if let Some(metrics) = &analyzer_metrics {
                                metrics.fold_analyzer(&mut folded, &analyzer.stats());
                            }
                        }
                    });
            }
            (report, sink_reports, thread_cpu("otsensor-analyzer", 0))
        })
        .map_err(|_| Error::Thread("spawn analyzer"))?;
    Ok(Backend {
        policy,
        workers,
        parks,
        obs_tx,
        recycled: recycle_rx.into_iter().map(Some).collect(),
        eve_tx,
        eve_thread,
        analyzer,
        delivery,
        protocol_events,
        metrics,
        started,
        evidence_ports,
        evidence_thread,
    })
}

/// Runs the whole pipeline over a packet source until it ends.
pub fn replay(
    source: &mut dyn PacketSource,
    policy: Arc<Policy>,
    mut options: ReplayOptions,
) -> Result<Summary, Error> {
    let mut backend = start_backend(policy, None, &mut options)?;
    let (policy, workers) = (Arc::clone(&backend.policy), backend.workers);
    let metrics = backend.metrics.clone();

    // One worker of a replay runs on this thread: it reads the source itself, so no
    // packet is copied into a batch or handed over.
    let inline = workers == 1 && !options.live && options.spread == Spread::FlowHash;

    // Per worker: a channel of full batches in, and a channel of empty batches back.
    const IN_FLIGHT: usize = 4;
    let mut to_workers: Vec<Sender<Batch>> = Vec::with_capacity(workers);
    let mut free_batches: Vec<Receiver<Batch>> = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    let mut filling: Vec<Batch> = Vec::with_capacity(workers);
    let rings = match options.spread {
        Spread::FlowHash => HandoffRings::none(workers),
        Spread::Asymmetric => HandoffRings::new(workers, policy.handoff_queue),
    };
    let finished = Arc::new(AtomicUsize::new(0));
    let mut inline_worker = None;
    for id in 0..workers {
        let worker = backend.new_worker(id, options.reloadable_policy.as_ref())?;
        let worker_metrics = metrics.as_ref().map(|m| m.worker(id));
        if inline {
            inline_worker = Some((worker, worker_metrics));
            break;
        }
        let (full_tx, full_rx) = bounded::<Batch>(IN_FLIGHT);
        let (free_tx, free_rx) = bounded::<Batch>(IN_FLIGHT + 1);
        for _ in 0..IN_FLIGHT {
            let _ = free_tx.send(Batch::new(policy.batch_packets));
        }
        filling.push(Batch::new(policy.batch_packets));
        let rings = rings.clone();
        let check_owner = options.spread != Spread::FlowHash;
        let finished = Arc::clone(&finished);

        let handle = thread::Builder::new()
            .name(format!("otsensor-worker-{id}"))
            .spawn(move || {
                run_worker(
                    worker,
                    full_rx,
                    free_tx,
                    rings,
                    finished,
                    check_owner,
                    worker_metrics,
                )
            })
            .map_err(|_| Error::Thread("spawn worker"))?;
        to_workers.push(full_tx);
        free_batches.push(free_rx);
        handles.push(handle);
    }

    let mut pacer = (options.realtime || options.realtime_speed.is_some())
        .then(|| Pacer::new(options.realtime_speed.unwrap_or(1.0)));
    let stop = options.stop;
    let mut stopped = false;
    // Counted locally and folded into the metrics once per batch handed over.
    let (mut read_packets, mut read_bytes) = (0u64, 0u64);
    let fold_reader = |packets: &mut u64, bytes: &mut u64| {
        if let Some(metrics) = &metrics {
            metrics.reader_packets.inc_by(std::mem::take(packets));
            metrics.reader_bytes.inc_by(std::mem::take(bytes));
        }
    };
    // Packets read so far: the next packet's order key.
    let mut seq = 0u64;
    let reader_cpu_ns = thread_cpu_ns().unwrap_or(0);
    let mut inline_report = None;
    let read_result = if let Some((mut worker, mut worker_metrics)) = inline_worker {
        let result = (|| -> Result<(), Error> {
            let mut batch_started = worker_metrics.is_some().then(Instant::now);
            while let Some(packet) = source.next_packet()? {
                if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                    stopped = true;
                    break;
                }
                read_packets += 1;
                read_bytes += packet.data.len() as u64;
                if let Some(pacer) = pacer.as_mut() {
                    pacer.wait_for(packet.ts_ns);
                }
                worker.process_at(&packet, seq);
                seq += 1;
                if seq.is_multiple_of(PUBLISH_PACKETS) || pacer.is_some() {
                    worker.publish_watermark(seq - 1);
                    worker.refresh_policy();
                    fold_reader(&mut read_packets, &mut read_bytes);
                    if let (Some(metrics), Some(started)) = (worker_metrics.as_mut(), batch_started)
                    {
                        metrics.record_batch(started.elapsed(), PUBLISH_PACKETS);
                        let (protocols, stream) = worker.stats();
                        metrics.fold(&worker.counters(), protocols, stream);
                        batch_started = Some(Instant::now());
                    }
                }
            }
            Ok(())
        })();
        let report = worker.finish();
        if let Some(metrics) = worker_metrics.as_mut() {
            metrics.fold(&report.counters, &report.protocols, &report.stream);
            metrics.flush();
        }
        inline_report = Some(report);
        result
    } else {
        (|| -> Result<(), Error> {
            let tick = (policy.batch_packets as u64)
                .saturating_mul(workers as u64)
                .saturating_mul(TICK_BATCHES)
                .max(1);
            // Per worker: the reader's position when it last handed that worker a batch.
            let mut handed_upto = vec![0u64; workers];
            let mut ticked_at_ns: Option<u64> = None;
            loop {
                // Hand over what is held before waiting on a live source with nothing
                // ready (alerts must not wait for a full batch).
                if source.idle() && seq > 0 {
                    fold_reader(&mut read_packets, &mut read_bytes);
                    hand_over_all(
                        &mut filling,
                        &free_batches,
                        &to_workers,
                        &mut handed_upto,
                        seq - 1,
                    )?;
                }
                let Some((packet, shared)) = source.next_packet_shared()? else {
                    break;
                };
                if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                    stopped = true;
                    break;
                }
                read_packets += 1;
                read_bytes += packet.data.len() as u64;
                if let Some(pacer) = pacer.as_mut() {
                    pacer.wait_for(packet.ts_ns);
                }
                let owner = match options.spread {
                    _ if workers == 1 => 0,
                    Spread::FlowHash => {
                        flow::packet_owner(packet.link, packet.data, packet.wire_len, workers)
                    }
                    Spread::Asymmetric => flow::asymmetric_queue(&packet.slice(), workers),
                };
                let batch = &mut filling[owner];
                let copied_len = if shared.is_some() {
                    0
                } else {
                    packet.data.len()
                };
                if batch.is_full_for(copied_len) {
                    let next = free_batches[owner]
                        .recv()
                        .map_err(|_| Error::Thread("worker stopped"))?;
                    let mut full = std::mem::replace(batch, next);
                    full.upto = seq.saturating_sub(1);
                    handed_upto[owner] = full.upto;
                    fold_reader(&mut read_packets, &mut read_bytes);
                    to_workers[owner]
                        .send(full)
                        .map_err(|_| Error::Thread("worker stopped"))?;
                }
                match shared {
                    Some(shared) => filling[owner].push_shared(&packet, seq, shared),
                    None => filling[owner].push(&packet, seq),
                }
                // Keep every worker's watermark moving: by packet count in a replay; live
                // (and paced), also by time, so a quiet queue delays no alert for long.
                let due = if options.live {
                    ticked_at_ns
                        .is_none_or(|at| packet.ts_ns < at || packet.ts_ns - at >= LIVE_TICK_NS)
                } else {
                    pacer.is_some()
                };
                if due || (seq + 1).is_multiple_of(tick) {
                    ticked_at_ns = Some(packet.ts_ns);
                    fold_reader(&mut read_packets, &mut read_bytes);
                    hand_over_all(
                        &mut filling,
                        &free_batches,
                        &to_workers,
                        &mut handed_upto,
                        seq,
                    )?;
                }
                seq += 1;
            }
            Ok(())
        })()
    };
    fold_reader(&mut read_packets, &mut read_bytes);

    // Drain: send what is left, close the inputs, let every worker end its flows.
    for (owner, mut batch) in filling.into_iter().enumerate() {
        if !batch.entries.is_empty() {
            batch.upto = seq.saturating_sub(1);
            let _ = to_workers[owner].send(batch);
        }
    }
    drop(to_workers);
    let mut threads: Vec<ThreadCpu> = thread_cpu(
        if inline_report.is_some() {
            "reader+worker-0"
        } else {
            "reader"
        },
        reader_cpu_ns,
    )
    .into_iter()
    .collect();
    let mut merged = inline_report.unwrap_or_default();
    for (id, handle) in handles.into_iter().enumerate() {
        let (report, cpu) = handle
            .join()
            .map_err(|_| Error::Thread("worker panicked"))?;
        merged.merge(&report);
        threads.extend(cpu.map(|cpu| ThreadCpu {
            name: format!("otsensor-worker-{id}"),
            ..cpu
        }));
    }
    let summary = backend.finish(merged, stopped, threads);
    read_result?;
    summary
}

/// The analyzer thread, started as a run starts it for `producers` workers, fed
/// observation batches already made (`cargo xtask analyzer-capacity`): this thread
/// sends them through the analyzer's channel as fast as it takes them, so the analyzer
/// runs as it does behind busy workers. The summary's `threads` holds the analyzer's
/// CPU; `elapsed_seconds` is the wall time until it handled the last one.
pub fn analyze_batches(
    policy: Arc<Policy>,
    producers: usize,
    batches: Vec<ObservationBatch>,
) -> Result<Summary, Error> {
    let backend = start_backend(policy, Some(producers), &mut ReplayOptions::default())?;
    for batch in batches {
        backend
            .obs_tx
            .send(batch)
            .map_err(|_| Error::Thread("analyzer stopped"))?;
    }
    backend.finish(WorkerReport::default(), false, Vec::new())
}

/// What is left to wait for and report once every worker has ended.
struct FinishRun {
    merged: WorkerReport,
    analyzer: thread::JoinHandle<AnalyzerOutcome>,
    evidence_thread: Option<thread::JoinHandle<crate::evidence::EvidenceReport>>,
    eve_tx: Option<Sender<EveRecord>>,
    eve_thread: Option<thread::JoinHandle<EveOutcome>>,
    started: Instant,
    stopped: bool,
    workers: usize,
    /// CPU time of the threads that already ended (reader, workers).
    threads: Vec<ThreadCpu>,
}

/// Joins the analyzer and then the EVE writer, and builds the summary.
fn finish_run(run: FinishRun) -> Result<Summary, Error> {
    let FinishRun {
        merged,
        analyzer,
        evidence_thread,
        eve_tx,
        eve_thread,
        started,
        stopped,
        workers,
        mut threads,
    } = run;
    let WorkerReport {
        counters,
        protocols: protocol_stats,
        stream,
    } = merged;
    let (report, _sink_reports, analyzer_cpu) = analyzer
        .join()
        .map_err(|_| Error::Thread("analyzer panicked"))?;
    threads.extend(analyzer_cpu);
    // The evidence thread writes the EVE records of alerts with evidence: it ends
    // (every request answered) before the EVE writer can.
    let evidence = match evidence_thread {
        Some(handle) => Some(
            handle
                .join()
                .map_err(|_| Error::Thread("evidence writer panicked"))?,
        ),
        None => None,
    };
    drop(eve_tx);
    let (eve_events, eve_write_errors) = match eve_thread {
        Some(handle) => {
            let (events, errors, cpu) = handle
                .join()
                .map_err(|_| Error::Thread("EVE writer panicked"))?;
            threads.extend(cpu);
            (events, errors)
        }
        None => (0, 0),
    };

    let elapsed = started.elapsed().as_secs_f64();
    let protocols = Protocol::ALL
        .iter()
        .filter(|p| protocol_stats.pdus[p.index()] > 0)
        .map(|p| (p.name().to_owned(), protocol_stats.pdus[p.index()]))
        .collect();
    Ok(Summary {
        packets: counters.packets,
        bytes: counters.bytes,
        flows: counters.flows_created,
        devices: report.devices,
        alerts: report.alerts,
        alerts_by_signature: report.alerts_by_signature.clone(),
        alert_latency_ns: report.alert_latency_ns.clone(),
        stopped,
        protocols,
        workers,
        elapsed_seconds: elapsed,
        packets_per_second: if elapsed > 0.0 {
            counters.packets as f64 / elapsed
        } else {
            0.0
        },
        protocol_details: protocol_stats.details(),
        malformed_pdus: Protocol::ALL
            .iter()
            .filter(|p| protocol_stats.malformed[p.index()] > 0)
            .map(|p| (p.name().to_owned(), protocol_stats.malformed[p.index()]))
            .collect(),
        counters,
        stream,
        analyzer: report,
        eve_events,
        eve_write_errors,
        evidence,
        threads,
    })
}

/// Hands every worker what it holds, with the reader's position `upto`; a worker that
/// holds nothing gets an empty batch (a watermark tick) unless it is already there.
fn hand_over_all(
    filling: &mut [Batch],
    free_batches: &[Receiver<Batch>],
    to_workers: &[Sender<Batch>],
    handed_upto: &mut [u64],
    upto: u64,
) -> Result<(), Error> {
    for (owner, batch) in filling.iter_mut().enumerate() {
        if batch.entries.is_empty() && handed_upto[owner] == upto {
            continue;
        }
        let next = free_batches[owner]
            .recv()
            .map_err(|_| Error::Thread("worker stopped"))?;
        let mut full = std::mem::replace(batch, next);
        full.upto = upto;
        handed_upto[owner] = upto;
        to_workers[owner]
            .send(full)
            .map_err(|_| Error::Thread("worker stopped"))?;
    }
    Ok(())
}

/// One worker thread: processes its queue's batches, hands frames it does not own to
/// their owners, and processes what others hand it, until every queue is drained.
fn run_worker(
    mut worker: Worker,
    batches: Receiver<Batch>,
    free: Sender<Batch>,
    rings: HandoffRings,
    finished: Arc<AtomicUsize>,
    check_owner: bool,
    mut metrics: Option<WorkerMetrics>,
) -> (WorkerReport, Option<ThreadCpu>) {
    let me = worker.id;
    let workers = rings.workers();
    let handoffs = rings.enabled();
    let mut input_open = true;
    let mut spin = Spin::new();
    // Packets processed since the last publication of the watermark.
    let mut unpublished = 0u64;
    loop {
        if input_open {
            // Spin briefly, then park. With hand-offs the worker must also come back to
            // its inbox, so it parks for at most a millisecond.
            let received = match spin.recv(&batches) {
                Some(batch) => Ok(batch),
                None if handoffs => batches.recv_timeout(Duration::from_millis(1)),
                None => batches
                    .recv()
                    .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(mut batch) => {
                    worker.refresh_policy();
                    let started = metrics.is_some().then(Instant::now);
                    for (packet, seq) in batch.packets() {
                        let frame = packet.slice();
                        // Under flow-hash spreading the reader already chose the owner.
                        let owner = if check_owner {
                            flow::frame_owner(&frame, workers)
                        } else {
                            me
                        };
                        if owner == me {
                            worker.process_captured_at(&frame, packet.link, packet.data, seq);
                        } else {
                            hand_off(&mut worker, &rings, owner, &packet);
                        }
                    }
                    unpublished += batch.entries.len() as u64;
                    if unpublished >= PUBLISH_PACKETS || batches.is_empty() {
                        worker.publish_watermark(batch.upto);
                        unpublished = 0;
                    }
                    if let (Some(metrics), Some(started)) = (metrics.as_mut(), started) {
                        metrics.record_batch(started.elapsed(), batch.entries.len() as u64);
                        let (protocols, stream) = worker.stats();
                        metrics.fold(&worker.counters(), protocols, stream);
                    }
                    batch.clear();
                    // The reader may be gone at shutdown; the batch is then simply dropped.
                    let _ = free.send(batch);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    input_open = false;
                    finished.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        if !handoffs {
            if input_open {
                continue;
            }
            break;
        }
        let received = drain_inbox(&mut worker, &rings);
        if !input_open && received == 0 {
            // Everyone's input is drained and pushed: one last look at the inbox.
            if finished.load(Ordering::Acquire) == workers {
                drain_inbox(&mut worker, &rings);
                break;
            }
            thread::yield_now();
        }
    }
    let report = worker.finish();
    if let Some(metrics) = metrics.as_mut() {
        metrics.fold(&report.counters, &report.protocols, &report.stream);
        metrics.flush();
    }
    (report, ThreadCpu::now(""))
}

/// Processes every frame other workers handed to this one; returns how many.
fn drain_inbox(worker: &mut Worker, rings: &HandoffRings) -> usize {
    let mut received = 0;
    for from in 0..rings.workers() {
        let Some(ring) = rings.ring(from, worker.id) else {
            continue;
        };
        while let Some(frame) = ring.pop() {
            // Ordered as the receiving worker's latest packet (the sender's index is not
            // carried): hand-offs are for NICs without symmetric RSS.
            let (link, data) = frame.captured();
            worker.process_captured_at(&frame.frame(), link, data, 0);
            received += 1;
        }
    }
    worker.note_handoffs_received(received as u64);
    received
}

/// Offline replay never drops: while the owner's ring is full, this worker drains its
/// own inbox so that two workers waiting on each other cannot deadlock.
fn hand_off(worker: &mut Worker, rings: &HandoffRings, owner: usize, packet: &Packet<'_>) {
    let Some(ring) = rings.ring(worker.id, owner) else {
        // Hand-off disabled yet a foreign frame arrived: process it here rather than lose it.
        worker.process_at(packet, 0);
        return;
    };
    let (mut frame, cut) =
        HandoffFrame::copy_of(packet.ts_ns, packet.link, packet.data, packet.wire_len);
    worker.note_handoff_sent(cut);
    loop {
        match ring.push(frame) {
            Ok(()) => return,
            Err(back) => {
                frame = back;
                if drain_inbox(worker, rings) == 0 {
                    thread::yield_now();
                }
            }
        }
    }
}

/// Sleeps so that packets leave at the pace of their timestamps (times `speed`).
#[derive(Debug)]
struct Pacer {
    origin: Option<(u64, Instant)>,
    speed: f64,
}

impl Pacer {
    fn new(speed: f64) -> Pacer {
        // A non-positive or non-finite speed would never release a packet: pace 1:1.
        // The floor keeps `Duration::div_f64` from overflowing.
        let speed = if speed.is_finite() && speed > 0.0 {
            speed.max(1e-3)
        } else {
            1.0
        };
        Pacer {
            origin: None,
            speed,
        }
    }

    fn wait_for(&mut self, ts_ns: u64) {
        let (first_ts, first_instant) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let elapsed = Duration::from_nanos(ts_ns.saturating_sub(first_ts));
        let due = first_instant + elapsed.div_f64(self.speed);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
    }
}
