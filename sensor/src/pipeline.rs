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

use crate::analyze::{Analyzer, AnalyzerCounters, AnalyzerReport};
use crate::capture::{self, LinkType, Packet, PacketSource};
use crate::config::Policy;
use crate::control::{ControlHandler, ControlRequest};
use crate::dissect::inspect::EventSink;
use crate::dissect::Protocol;
use crate::flow;
use crate::flow::handoff::{HandoffFrame, HandoffRings};
use crate::flow::stream::StreamCounters;
use crate::layers;
use crate::metrics::{Metrics, WorkerMetrics};
use crate::observe::Stamped;
use crate::output::eve::{EveRecord, EveWriter};
use crate::output::sinks::{AlertSinks, SinkReport};
use crate::reload::SharedPolicy;
use crate::store::Store;
use crate::worker::{Delivery, ObservationSink, Worker, WorkerCounters, WorkerReport};

/// Where one packet of a batch lies.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ts_ns: u64,
    start: u32,
    len: u32,
    wire_len: u32,
    link: LinkType,
}

/// Packets copied out of the source, handed to a worker as one message. Batches are
/// allocated once and recycled, so the steady state allocates nothing.
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    max_packets: usize,
}

const BATCH_BYTES: usize = 1 << 20;
/// Partly filled batches are handed over once packet time has moved this far, so that
/// no worker runs far ahead of another in packet time: the analyzer then sees
/// observations from all workers in nearly packet-time order, as it does live, and
/// baseline decisions (learned before, deviation after) do not depend on how a sparse
/// capture happened to fill each worker's batch. Live, it also bounds how long a packet
/// waits in a partial batch. A one-worker replay needs neither.
const BATCH_FLUSH_NS: u64 = 10_000_000;
/// Capacity of the channel into the EVE writer thread, in records.
const EVE_QUEUE: usize = 16_384;

impl Batch {
    fn new(max_packets: usize) -> Batch {
        Batch {
            bytes: Vec::with_capacity(BATCH_BYTES),
            entries: Vec::with_capacity(max_packets),
            max_packets,
        }
    }

    fn is_full_for(&self, len: usize) -> bool {
        self.entries.len() >= self.max_packets || self.bytes.len() + len > self.bytes.capacity()
    }

    fn push(&mut self, packet: &Packet<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet.data);
        self.entries.push(Entry {
            ts_ns: packet.ts_ns,
            start: start as u32,
            len: packet.data.len() as u32,
            wire_len: packet.wire_len,
            link: packet.link,
        });
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// The packets of this batch, in order.
    pub fn packets(&self) -> impl Iterator<Item = Packet<'_>> {
        self.entries.iter().map(|e| Packet {
            ts_ns: e.ts_ns,
            link: e.link,
            data: &self.bytes[e.start as usize..(e.start + e.len) as usize],
            wire_len: e.wire_len,
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
    /// Where alerts go besides EVE (syslog, webhook); closed (drained) at the end.
    pub alert_sinks: Option<AlertSinks>,
    /// Config reload: workers look for a new policy snapshot once per batch and the
    /// analyzer receives it in its select loop. Its current policy is the run's policy.
    pub reloadable_policy: Option<Arc<SharedPolicy>>,
}

/// How long the EVE writer waits for more records before it flushes what it holds.
const EVE_IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// Observations between two refreshes of the analyzer's metrics.
const ANALYZER_METRICS_EVERY: u64 = 1024;

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
}

/// The threads every run has behind its workers, the EVE writer and the analyzer, and
/// what a worker needs to reach them. Shared by replay (a reader thread feeds the
/// workers, below) and live capture (each worker reads its own queue: `crate::live`).
pub(crate) struct Backend {
    /// The policy in force at the start (the reloadable one's current snapshot).
    pub policy: Arc<Policy>,
    pub workers: usize,
    pub obs_tx: Sender<Stamped>,
    pub eve_tx: Option<Sender<EveRecord>>,
    pub eve_thread: Option<thread::JoinHandle<(u64, u64)>>,
    pub analyzer: thread::JoinHandle<(AnalyzerReport, Vec<(&'static str, SinkReport)>)>,
    /// How workers deliver observations and protocol events (live: drop when full).
    pub delivery: Delivery,
    pub protocol_events: bool,
    pub metrics: Option<Arc<Metrics>>,
    pub started: Instant,
}

impl Backend {
    /// A worker wired to the analyzer (and the EVE writer for protocol events), following
    /// reloads of `reloadable`.
    pub(crate) fn new_worker(&self, id: usize, reloadable: Option<&Arc<SharedPolicy>>) -> Worker {
        let sink = ObservationSink::new(self.obs_tx.clone(), self.delivery);
        let events = match &self.eve_tx {
            Some(tx) if self.protocol_events => Some(EventSink::new(tx.clone(), self.delivery)),
            _ => None,
        };
        let mut worker = Worker::new(id, Arc::clone(&self.policy), sink, events);
        if let Some(shared) = reloadable {
            worker.watch_policy(shared.watch());
        }
        worker
    }

    /// Waits for the analyzer and the EVE writer once every worker has ended (and every
    /// other observation sender is gone), and builds the run's summary.
    pub(crate) fn finish(self, merged: WorkerReport, stopped: bool) -> Result<Summary, Error> {
        let Backend {
            workers,
            obs_tx,
            eve_tx,
            eve_thread,
            analyzer,
            started,
            ..
        } = self;
        drop(obs_tx);
        finish_run(FinishRun {
            merged,
            analyzer,
            eve_tx,
            eve_thread,
            started,
            stopped,
            workers,
        })
    }
}

/// Starts the EVE writer and the analyzer (taking the outputs, store and control
/// channel out of `options`).
pub(crate) fn start_backend(
    policy: Arc<Policy>,
    options: &mut ReplayOptions,
) -> Result<Backend, Error> {
    let started = Instant::now();
    let policy = match &options.reloadable_policy {
        Some(shared) => shared.current(),
        None => policy,
    };
    let policy_updates = options.reloadable_policy.as_ref().map(|s| s.subscribe());
    let workers = policy.workers.max(1);
    let (obs_tx, obs_rx) = bounded::<Stamped>(policy.observation_queue);

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
                    (writer.events, failures)
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

    let analyzer_policy = Arc::clone(&policy);
    let analyzer_eve = event_sink(&eve_tx, Delivery::Block);
    let store = options.store.take();
    let metrics = options.metrics.clone();
    if let Some(metrics) = &metrics {
        metrics
            .observation_queue_capacity
            .set(i64::try_from(policy.observation_queue).unwrap_or(i64::MAX));
    }
    let analyzer_metrics = metrics.clone();
    let control = options.control.take();
    let sinks = options
        .alert_sinks
        .take()
        .unwrap_or_else(|| AlertSinks::new(metrics.clone()));
    let analyzer = thread::Builder::new()
        .name("otsensor-analyzer".into())
        .spawn(move || {
            let mut analyzer = match store {
                Some(store) => Analyzer::with_store(analyzer_policy, analyzer_eve, store),
                None => Analyzer::new(analyzer_policy, analyzer_eve),
            };
            analyzer.set_outputs(sinks, analyzer_metrics.clone());
            analyzer.publish_learning();
            let requests = control.clone().unwrap_or_else(crossbeam_channel::never);
            let policy_updates = policy_updates.unwrap_or_else(crossbeam_channel::never);
            let mut folded = AnalyzerCounters::default();
            loop {
                crossbeam_channel::select! {
                    recv(obs_rx) -> observation => {
                        let Ok(stamped) = observation else { break };
                        // A reload published before this observation was sent applies to it.
                        if let Ok(policy) = policy_updates.try_recv() {
                            analyzer.set_policy(policy);
                        }
                        analyzer.handle(stamped);
                        if let Some(metrics) = &analyzer_metrics {
                            if analyzer.counters.observations.is_multiple_of(ANALYZER_METRICS_EVERY) {
                                metrics.fold_analyzer(&mut folded, &analyzer.counters, analyzer.device_count());
                                metrics.observation_queue_depth.set(obs_rx.len() as i64);
                                analyzer.publish_learning();
                            }
                        }
                    }
                    recv(requests) -> request => {
                        if let Ok(request) = request {
                            analyzer.answer(request);
                        }
                    }
                    recv(policy_updates) -> policy => {
                        if let Ok(policy) = policy {
                            analyzer.set_policy(policy);
                        }
                    }
                }
            }
            analyzer.capture_finished = true;
            let report = analyzer.finish();
            if let Some(metrics) = &analyzer_metrics {
                metrics.fold_analyzer(&mut folded, &analyzer.counters, analyzer.device_count());
                metrics.observation_queue_depth.set(0);
                analyzer.publish_learning();
            }
            let sink_reports = analyzer.take_sinks().close();
            analyzer.close_events();
            if let Some(requests) = control {
                // Keep answering the API after the capture ended, until it hangs up.
                let _ = thread::Builder::new()
                    .name("otsensor-control".into())
                    .spawn(move || {
                        for request in requests {
                            analyzer.answer(request);
                        }
                    });
            }
            (report, sink_reports)
        })
        .map_err(|_| Error::Thread("spawn analyzer"))?;
    Ok(Backend {
        policy,
        workers,
        obs_tx,
        eve_tx,
        eve_thread,
        analyzer,
        delivery,
        protocol_events,
        metrics,
        started,
    })
}

/// Runs the whole pipeline over a packet source until it ends.
pub fn replay(
    source: &mut dyn PacketSource,
    policy: Arc<Policy>,
    mut options: ReplayOptions,
) -> Result<Summary, Error> {
    let Backend {
        policy,
        workers,
        obs_tx,
        eve_tx,
        eve_thread,
        analyzer,
        delivery,
        protocol_events,
        metrics,
        started,
    } = start_backend(policy, &mut options)?;
    let event_sink = |tx: &Option<Sender<EveRecord>>, delivery: Delivery| {
        tx.clone().map(|tx| EventSink::new(tx, delivery))
    };

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
    for id in 0..workers {
        let (full_tx, full_rx) = bounded::<Batch>(IN_FLIGHT);
        let (free_tx, free_rx) = bounded::<Batch>(IN_FLIGHT + 1);
        for _ in 0..IN_FLIGHT {
            let _ = free_tx.send(Batch::new(policy.batch_packets));
        }
        filling.push(Batch::new(policy.batch_packets));
        let sink = ObservationSink::new(obs_tx.clone(), delivery);
        let events = if protocol_events {
            event_sink(&eve_tx, delivery)
        } else {
            None
        };
        let mut worker = Worker::new(id, Arc::clone(&policy), sink, events);
        if let Some(shared) = &options.reloadable_policy {
            worker.watch_policy(shared.watch());
        }
        let rings = rings.clone();
        let check_owner = options.spread != Spread::FlowHash;
        let finished = Arc::clone(&finished);
        let worker_metrics = metrics.as_ref().map(|m| m.worker(id));

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
    drop(obs_tx);

    let mut pacer = (options.realtime || options.realtime_speed.is_some())
        .then(|| Pacer::new(options.realtime_speed.unwrap_or(1.0)));
    let stop = options.stop;
    let mut stopped = false;
    let mut flushed_at_ns: Option<u64> = None;
    // Counted locally and folded into the metrics once per batch handed over.
    let (mut read_packets, mut read_bytes) = (0u64, 0u64);
    let fold_reader = |packets: &mut u64, bytes: &mut u64| {
        if let Some(metrics) = &metrics {
            metrics.reader_packets.inc_by(std::mem::take(packets));
            metrics.reader_bytes.inc_by(std::mem::take(bytes));
        }
    };
    let read_result = (|| -> Result<(), Error> {
        loop {
            // Hand over partial batches before waiting on a live source with nothing
            // ready, and every 10 ms of packet time (alerts must not wait for a full
            // batch).
            if source.idle() {
                fold_reader(&mut read_packets, &mut read_bytes);
                flush_batches(&mut filling, &free_batches, &to_workers)?;
            }
            let Some(packet) = source.next_packet()? else {
                break;
            };
            if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                stopped = true;
                break;
            }
            read_packets += 1;
            read_bytes += packet.data.len() as u64;
            // One worker of a replay has no other worker to stay level with: its batches
            // fill up whatever the capture's packet rate.
            let due = (workers > 1 || options.live)
                && flushed_at_ns
                    .is_none_or(|at| packet.ts_ns < at || packet.ts_ns - at >= BATCH_FLUSH_NS);
            if due {
                flushed_at_ns = Some(packet.ts_ns);
                fold_reader(&mut read_packets, &mut read_bytes);
                flush_batches(&mut filling, &free_batches, &to_workers)?;
            }
            if let Some(pacer) = pacer.as_mut() {
                pacer.wait_for(packet.ts_ns);
            }
            let owner = match options.spread {
                _ if workers == 1 => 0,
                Spread::FlowHash => flow::frame_owner(&layers::slice(&packet), workers),
                Spread::Asymmetric => flow::asymmetric_queue(&layers::slice(&packet), workers),
            };
            let batch = &mut filling[owner];
            if batch.is_full_for(packet.data.len()) || pacer.is_some() && !batch.entries.is_empty()
            {
                let next = free_batches[owner]
                    .recv()
                    .map_err(|_| Error::Thread("worker stopped"))?;
                let full = std::mem::replace(batch, next);
                fold_reader(&mut read_packets, &mut read_bytes);
                to_workers[owner]
                    .send(full)
                    .map_err(|_| Error::Thread("worker stopped"))?;
            }
            filling[owner].push(&packet);
        }
        Ok(())
    })();
    fold_reader(&mut read_packets, &mut read_bytes);

    // Drain: send what is left, close the inputs, let every worker end its flows.
    for (owner, batch) in filling.into_iter().enumerate() {
        if !batch.entries.is_empty() {
            let _ = to_workers[owner].send(batch);
        }
    }
    drop(to_workers);
    let mut merged = WorkerReport::default();
    for handle in handles {
        let report = handle
            .join()
            .map_err(|_| Error::Thread("worker panicked"))?;
        merged.merge(&report);
    }
    let summary = finish_run(FinishRun {
        merged,
        analyzer,
        eve_tx,
        eve_thread,
        started,
        stopped,
        workers,
    });
    read_result?;
    summary
}

/// What is left to wait for and report once every worker has ended.
struct FinishRun {
    merged: WorkerReport,
    analyzer: thread::JoinHandle<(AnalyzerReport, Vec<(&'static str, SinkReport)>)>,
    eve_tx: Option<Sender<EveRecord>>,
    eve_thread: Option<thread::JoinHandle<(u64, u64)>>,
    started: Instant,
    stopped: bool,
    workers: usize,
}

/// Joins the analyzer and then the EVE writer, and builds the summary.
fn finish_run(run: FinishRun) -> Result<Summary, Error> {
    let FinishRun {
        merged,
        analyzer,
        eve_tx,
        eve_thread,
        started,
        stopped,
        workers,
    } = run;
    let WorkerReport {
        counters,
        protocols: protocol_stats,
        stream,
    } = merged;
    let (report, _sink_reports) = analyzer
        .join()
        .map_err(|_| Error::Thread("analyzer panicked"))?;
    drop(eve_tx);
    let (eve_events, eve_write_errors) = match eve_thread {
        Some(handle) => handle
            .join()
            .map_err(|_| Error::Thread("EVE writer panicked"))?,
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
    })
}

/// Sends every non-empty batch being filled to its worker.
fn flush_batches(
    filling: &mut [Batch],
    free_batches: &[Receiver<Batch>],
    to_workers: &[Sender<Batch>],
) -> Result<(), Error> {
    for (owner, batch) in filling.iter_mut().enumerate() {
        if batch.entries.is_empty() {
            continue;
        }
        let next = free_batches[owner]
            .recv()
            .map_err(|_| Error::Thread("worker stopped"))?;
        let full = std::mem::replace(batch, next);
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
) -> WorkerReport {
    let me = worker.id;
    let workers = rings.workers();
    let mut input_open = true;
    loop {
        if input_open {
            match batches.recv_timeout(Duration::from_millis(1)) {
                Ok(mut batch) => {
                    worker.refresh_policy();
                    let started = metrics.is_some().then(Instant::now);
                    for packet in batch.packets() {
                        let frame = layers::slice(&packet);
                        // Under flow-hash spreading the reader already chose the owner.
                        let owner = if check_owner {
                            flow::frame_owner(&frame, workers)
                        } else {
                            me
                        };
                        if owner == me {
                            worker.process_frame(&frame);
                        } else {
                            hand_off(&mut worker, &rings, owner, &packet);
                        }
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
    report
}

/// Processes every frame other workers handed to this one; returns how many.
fn drain_inbox(worker: &mut Worker, rings: &HandoffRings) -> usize {
    let mut received = 0;
    for from in 0..rings.workers() {
        let Some(ring) = rings.ring(from, worker.id) else {
            continue;
        };
        while let Some(frame) = ring.pop() {
            worker.process(&frame.packet());
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
        worker.process(packet);
        return;
    };
    let (mut frame, cut) = HandoffFrame::copy_of(packet);
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
