//! Alert evidence: the packets behind an alert, as a pcapng file.
//!
//! Every worker keeps its recent packets in a [`ring::Ring`] (a preallocated arena and
//! fixed slots: nothing allocated, locked or called per packet). When the analyzer
//! raises a new alert that names a flow, a pair of hosts or a host, it hands a copy of
//! the alert to the evidence thread (`otsensor-evidence`, [`Requests::request`]:
//! `try_send`, a full queue is a counted drop). That thread asks every worker for the
//! packets in the window around the alert ([`Collect`], `try_send` again); a worker
//! answers between batches once its packet clock has passed the window's end (so the
//! packets *after* the trigger are in its ring too), or at once when its ring holds
//! nothing of the flow. The thread merges the answers in capture order, caps them in
//! packets and bytes (oldest dropped first), writes `alert-<id>.pcapng` with the alert
//! in the section's comments, and only then writes the alert's EVE record, with the
//! file's path and SHA-256 (`otsensor.evidence`). Retention keeps the directory under
//! a total size, a file count and an age, deleting the oldest files first and counting
//! each deletion by its reason ([`Eviction`]; the replay summary and
//! `otsensor_evidence_files_evicted_total{reason}`).
//!
//! A worker that ends (end of a replay, shutdown) hands its ring and its request
//! channel to the evidence thread, which answers what comes later itself: alerts that
//! the analyzer raises after the last packet still get their packets.

pub mod pcapng;
pub mod ring;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};
use serde::Serialize;

use otsensor_wire::layers::{Frame, LinkType};

use self::ring::{host_hash, Packets, Ring, RingCounters, Selector};
use crate::detect::{Alert, EvidenceRef};
use crate::output::eve::{EveRecord, EventSink};

/// `evidence`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceSettings {
    pub enabled: bool,
    /// Where files go; none: `evidence/` beside the database (no database: no evidence).
    pub dir: Option<PathBuf>,
    /// Per worker: bytes of packet data and packets kept.
    pub ring_bytes: usize,
    pub ring_packets: usize,
    /// The window around the alert's packet, in packet time.
    pub before_ns: u64,
    pub after_ns: u64,
    /// Per file.
    pub max_packets: usize,
    pub max_file_bytes: usize,
    /// The directory as a whole.
    pub max_total_bytes: u64,
    pub max_files: usize,
    pub max_age: Duration,
}

impl Default for EvidenceSettings {
    fn default() -> Self {
        EvidenceSettings {
            enabled: true,
            dir: None,
            ring_bytes: 32 << 20,
            ring_packets: 131_072,
            before_ns: 60_000_000_000,
            after_ns: 2_000_000_000,
            max_packets: 10_000,
            max_file_bytes: 16 << 20,
            max_total_bytes: 1 << 30,
            max_files: 10_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Requests waiting in the analyzer-to-evidence channel.
pub const REQUEST_QUEUE: usize = 256;
/// Requests a worker holds at once (waiting for the window's end); more are answered
/// at once.
const HELD_PER_WORKER: usize = 64;
/// Requests the evidence thread works on at once (each waits for every worker).
const MAX_PENDING: usize = 256;
/// Collects a worker takes per batch boundary.
const TAKE_PER_BATCH: usize = 16;
/// A request not answered by every worker this long after its window ends (wall
/// time) is written with what arrived.
const ANSWER_SLACK: Duration = Duration::from_secs(10);
/// How often the evidence thread looks at deadlines and file ages when idle.
const TICK: Duration = Duration::from_millis(200);

/// The file of alert `id` in `dir`.
pub fn file_of(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("alert-{id}.pcapng"))
}

/// Counters shared by the analyzer's side and the evidence thread.
#[derive(Debug, Default)]
pub struct EvidenceStats {
    pub requests: AtomicU64,
    /// Requests not taken: the analyzer's queue to the evidence thread was full.
    pub requests_dropped: AtomicU64,
    /// Parts of requests a worker did not get: its queue was full.
    pub collects_dropped: AtomicU64,
    /// Requests for which no packet was left in any ring.
    pub requests_empty: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub write_errors: AtomicU64,
    /// Files (and their bytes) deleted by retention: every reason, then per
    /// [`Eviction`] reason.
    pub files_evicted: AtomicU64,
    pub files_evicted_by: [AtomicU64; 3],
    pub bytes_evicted_by: [AtomicU64; 3],
    pub stored_files: AtomicU64,
    pub stored_bytes: AtomicU64,
}

/// Why retention deleted a file, in the order of `metrics::EVICTION_REASONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// The directory was over `evidence.max_total_bytes`.
    Size = 0,
    /// The directory was over `evidence.max_files`.
    Count = 1,
    /// The file was older than `evidence.max_age`.
    Age = 2,
}

/// What a run reports about evidence (part of the replay summary).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct EvidenceReport {
    pub requests: u64,
    pub requests_dropped: u64,
    pub collects_dropped: u64,
    pub requests_empty: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub write_errors: u64,
    pub files_evicted: u64,
    /// `files_evicted` by reason, and the bytes deleted.
    pub files_evicted_size: u64,
    pub files_evicted_count: u64,
    pub files_evicted_age: u64,
    pub bytes_evicted: u64,
    pub stored_files: u64,
    pub stored_bytes: u64,
    /// Packets the workers' rings kept, and overwrote before an alert asked.
    pub ring_packets: u64,
    pub ring_overwritten: u64,
    pub ring_overwritten_bytes: u64,
    pub ring_truncated: u64,
}

impl EvidenceStats {
    pub fn report(&self) -> EvidenceReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EvidenceReport {
            requests: get(&self.requests),
            requests_dropped: get(&self.requests_dropped),
            collects_dropped: get(&self.collects_dropped),
            requests_empty: get(&self.requests_empty),
            files_written: get(&self.files_written),
            bytes_written: get(&self.bytes_written),
            write_errors: get(&self.write_errors),
            files_evicted: get(&self.files_evicted),
            files_evicted_size: get(&self.files_evicted_by[Eviction::Size as usize]),
            files_evicted_count: get(&self.files_evicted_by[Eviction::Count as usize]),
            files_evicted_age: get(&self.files_evicted_by[Eviction::Age as usize]),
            bytes_evicted: self.bytes_evicted_by.iter().map(get).sum(),
            stored_files: get(&self.stored_files),
            stored_bytes: get(&self.stored_bytes),
            ..EvidenceReport::default()
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The packets an alert names, or none (an alert about a MAC only, or no subject).
/// Alerts about many flows name one of them; their evidence is every packet of the
/// host they are about: the scanner (`scan`), the target (`flood`).
pub fn selector_of(alert: &Alert) -> Option<Selector> {
    match alert.signature.as_ref() {
        "scan" => return alert.src_ip.map(|ip| Selector::Host(host_hash(ip))),
        "flood" => {
            return alert
                .dest_ip
                .or(alert.src_ip)
                .map(|ip| Selector::Host(host_hash(ip)))
        }
        _ => {}
    }
    match (alert.flow_id, alert.src_ip, alert.dest_ip) {
        (Some(id), _, _) if id != 0 => Some(Selector::Flow(id)),
        (_, Some(src), Some(dst)) => Some(Selector::Pair(host_hash(src), host_hash(dst))),
        (_, Some(ip), None) | (_, None, Some(ip)) => Some(Selector::Host(host_hash(ip))),
        _ => None,
    }
}

/// One alert's request.
#[derive(Debug)]
struct Request {
    alert: Box<Alert>,
    selector: Selector,
    ts_ns: u64,
    /// Write the alert's EVE record once the file is written.
    eve: bool,
}

/// The analyzer's side: asks for an alert's evidence.
#[derive(Debug)]
pub struct Requests {
    tx: Sender<Request>,
    dir: PathBuf,
    stats: Arc<EvidenceStats>,
}

impl Requests {
    /// Asks for the evidence of a new alert raised at packet time `ts_ns`. On success
    /// `alert.evidence` holds the file's path (for the sinks written now) and, when
    /// `eve`, the evidence thread writes the alert's EVE record (with the SHA-256) once
    /// the file is written: the caller must not. False: nothing was asked (no packets
    /// named, or the queue is full: counted) and the caller writes EVE as usual.
    pub fn request(&self, alert: &mut Alert, ts_ns: u64, eve: bool) -> bool {
        let Some(selector) = selector_of(alert) else {
            return false;
        };
        add(&self.stats.requests, 1);
        alert.evidence = Some(EvidenceRef {
            path: file_of(&self.dir, alert.id).display().to_string(),
            sha256: None,
        });
        let request = Request {
            alert: Box::new(alert.clone()),
            selector,
            ts_ns,
            eve,
        };
        match self.tx.try_send(request) {
            Ok(()) => true,
            Err(_) => {
                add(&self.stats.requests_dropped, 1);
                alert.evidence = None;
                false
            }
        }
    }
}

/// A worker's part of one request.
#[derive(Clone, Copy, Debug)]
pub struct Collect {
    id: u64,
    selector: Selector,
    from_ns: u64,
    to_ns: u64,
}

/// From a worker to the evidence thread.
enum Reply {
    Collected {
        id: u64,
        packets: Packets,
    },
    /// The worker ended: its ring and its request channel, for what comes later.
    Ended {
        worker: usize,
        ring: Box<Ring>,
        collects: Receiver<Collect>,
    },
}

/// A worker's evidence: its ring and its channels to the evidence thread.
pub struct WorkerEvidence {
    worker: usize,
    ring: Box<Ring>,
    collects: Receiver<Collect>,
    replies: Sender<Reply>,
    held: Vec<Collect>,
}

impl std::fmt::Debug for WorkerEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerEvidence")
            .field("worker", &self.worker)
            .field("ring", &self.ring)
            .finish()
    }
}

impl WorkerEvidence {
    /// A ring and channels that lead nowhere (benchmarks and tests of the hot path).
    pub fn detached(settings: &EvidenceSettings) -> WorkerEvidence {
        let (_, collects) = bounded(1);
        let (replies, _) = unbounded();
        WorkerEvidence {
            worker: 0,
            ring: Box::new(Ring::new(settings.ring_bytes, settings.ring_packets)),
            collects,
            replies,
            held: Vec::with_capacity(HELD_PER_WORKER),
        }
    }

    /// Keeps one packet (per packet: a copy and two address hashes).
    #[inline]
    pub fn keep(&mut self, frame: &Frame<'_>, link: LinkType, data: &[u8]) {
        let a = frame.src_ip.map_or(0, host_hash);
        let b = frame.dst_ip.map_or(0, host_hash);
        self.ring
            .push(frame.ts_ns, link, data, frame.wire_len, 0, a, b);
    }

    /// Names the flow of the packet kept last.
    #[inline]
    pub fn tag_flow(&mut self, flow_id: u64) {
        self.ring.tag_last(flow_id);
    }

    pub fn ring_counters(&self) -> RingCounters {
        self.ring.counters
    }

    /// Between batches: takes new requests and answers those whose window has ended
    /// by packet time `now_ns` (or that this ring has nothing for).
    pub fn serve(&mut self, now_ns: u64) {
        for _ in 0..TAKE_PER_BATCH {
            match self.collects.try_recv() {
                Ok(collect) => {
                    let has_flow = match collect.selector {
                        Selector::Flow(_) => self.ring.holds(&collect.selector),
                        _ => true,
                    };
                    if !has_flow || self.held.len() >= HELD_PER_WORKER {
                        self.answer(collect);
                    } else {
                        self.held.push(collect);
                    }
                }
                Err(_) => break,
            }
        }
        let mut i = 0;
        while i < self.held.len() {
            if now_ns >= self.held[i].to_ns {
                let collect = self.held.swap_remove(i);
                self.answer(collect);
            } else {
                i += 1;
            }
        }
    }

    fn answer(&mut self, collect: Collect) {
        let mut packets = Packets::default();
        self.ring.collect(
            &collect.selector,
            collect.from_ns,
            collect.to_ns,
            &mut packets,
        );
        let _ = self.replies.send(Reply::Collected {
            id: collect.id,
            packets,
        });
    }

    /// The worker ends: answers what it holds and hands its ring over.
    pub fn finish(mut self) {
        for collect in std::mem::take(&mut self.held) {
            self.answer(collect);
        }
        let WorkerEvidence {
            worker,
            ring,
            collects,
            replies,
            ..
        } = self;
        let _ = replies.send(Reply::Ended {
            worker,
            ring,
            collects,
        });
    }
}

/// The evidence thread and what the pipeline wires to it.
pub struct Started {
    pub requests: Requests,
    /// One per worker, in worker order.
    pub workers: Vec<WorkerEvidence>,
    pub stats: Arc<EvidenceStats>,
    pub thread: thread::JoinHandle<EvidenceReport>,
}

/// Starts the evidence thread for `workers` workers, writing into `dir` (created).
pub fn start(
    settings: &EvidenceSettings,
    dir: PathBuf,
    workers: usize,
    eve: Option<EventSink>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> std::io::Result<Started> {
    std::fs::create_dir_all(&dir)?;
    let stats = Arc::new(EvidenceStats::default());
    let (request_tx, request_rx) = bounded::<Request>(REQUEST_QUEUE);
    let (reply_tx, reply_rx) = unbounded::<Reply>();
    let mut ports = Vec::with_capacity(workers);
    let mut to_workers = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (tx, rx) = bounded::<Collect>(MAX_PENDING);
        to_workers.push(Peer::Live(tx));
        ports.push(WorkerEvidence {
            worker,
            ring: Box::new(Ring::new(settings.ring_bytes, settings.ring_packets)),
            collects: rx,
            replies: reply_tx.clone(),
            held: Vec::with_capacity(HELD_PER_WORKER),
        });
    }
    drop(reply_tx);
    let mut writer = Writer {
        settings: settings.clone(),
        dir: dir.clone(),
        stats: Arc::clone(&stats),
        files: Retained::default(),
        eve,
        metrics,
        folded: EvidenceReport::default(),
        folded_evicted: [(0, 0); 3],
        rings: RingCounters::default(),
    };
    writer.scan();
    let thread = thread::Builder::new()
        .name("otsensor-evidence".into())
        .spawn(move || writer.run(request_rx, reply_rx, to_workers))?;
    Ok(Started {
        requests: Requests {
            tx: request_tx,
            dir,
            stats: Arc::clone(&stats),
        },
        workers: ports,
        stats,
        thread,
    })
}

enum Peer {
    Live(Sender<Collect>),
    Ended(Box<Ring>),
    Gone,
}

struct Pending {
    request: Request,
    collect: Collect,
    waiting: usize,
    packets: Packets,
    deadline: Instant,
}

/// The evidence files on disk, oldest first. A file written again (an alert raised
/// again) moves to the back in O(1): its old queue entry stays behind, stale, and is
/// skipped, so a flood of alerts costs no scan of the whole directory list per file.
#[derive(Default)]
struct Retained {
    /// (path, generation, written), oldest first, stale entries included.
    queue: VecDeque<(PathBuf, u64, SystemTime)>,
    /// Each file's current generation and size.
    current: HashMap<PathBuf, (u64, u64)>,
    generation: u64,
    /// Total size of the current files.
    bytes: u64,
}

impl Retained {
    fn len(&self) -> usize {
        self.current.len()
    }

    fn insert(&mut self, path: PathBuf, bytes: u64, written: SystemTime) {
        self.generation += 1;
        if let Some((_, old)) = self.current.insert(path.clone(), (self.generation, bytes)) {
            self.bytes -= old;
        }
        self.bytes += bytes;
        self.queue.push_back((path, self.generation, written));
        // Stale entries stay under the live ones (amortised O(1) per insert).
        if self.queue.len() > 2 * self.current.len() + 64 {
            let current = &self.current;
            self.queue.retain(|(path, generation, _)| {
                current.get(path).is_some_and(|c| c.0 == *generation)
            });
        }
    }

    fn drop_stale_front(&mut self) {
        while let Some((path, generation, _)) = self.queue.front() {
            if self.current.get(path).is_some_and(|c| c.0 == *generation) {
                break;
            }
            self.queue.pop_front();
        }
    }

    fn oldest_written(&mut self) -> Option<SystemTime> {
        self.drop_stale_front();
        self.queue.front().map(|entry| entry.2)
    }

    /// Forgets the oldest file: its path and size.
    fn pop_oldest(&mut self) -> Option<(PathBuf, u64)> {
        self.drop_stale_front();
        let (path, _, _) = self.queue.pop_front()?;
        let (_, bytes) = self.current.remove(&path)?;
        self.bytes -= bytes;
        Some((path, bytes))
    }
}

struct Writer {
    settings: EvidenceSettings,
    dir: PathBuf,
    stats: Arc<EvidenceStats>,
    /// Files in the directory, oldest first.
    files: Retained,
    eve: Option<EventSink>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// What was last added to the metrics (evictions: files and bytes per reason).
    folded: EvidenceReport,
    folded_evicted: [(u64, u64); 3],
    rings: RingCounters,
}

impl Writer {
    fn run(
        mut self,
        requests: Receiver<Request>,
        replies: Receiver<Reply>,
        mut peers: Vec<Peer>,
    ) -> EvidenceReport {
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        let mut requests_open = true;
        let mut replies_open = true;
        let no_requests = crossbeam_channel::never();
        let no_replies = crossbeam_channel::never();
        loop {
            // Replies first: they complete requests.
            loop {
                match replies.try_recv() {
                    Ok(reply) => self.on_reply(reply, &mut peers, &mut pending),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if replies_open {
                            replies_open = false;
                            // Every worker is gone: nothing more will answer.
                            for peer in peers.iter_mut() {
                                if matches!(peer, Peer::Live(_)) {
                                    *peer = Peer::Gone;
                                }
                            }
                            let ids: Vec<u64> = pending.keys().copied().collect();
                            for id in ids {
                                if let Some(p) = pending.remove(&id) {
                                    self.finalize(p);
                                }
                            }
                        }
                        break;
                    }
                }
            }
            let now = Instant::now();
            let late: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| now >= p.deadline)
                .map(|(id, _)| *id)
                .collect();
            for id in late {
                if let Some(p) = pending.remove(&id) {
                    self.finalize(p);
                }
            }
            self.expire();
            self.fold_metrics();
            if !requests_open && pending.is_empty() {
                break;
            }
            let take_requests = requests_open && pending.len() < MAX_PENDING;
            let requests_rx = if take_requests {
                &requests
            } else {
                &no_requests
            };
            let replies_rx = if replies_open { &replies } else { &no_replies };
            crossbeam_channel::select! {
                recv(requests_rx) -> request => match request {
                    Ok(request) => self.on_request(request, &mut peers, &mut pending),
                    Err(_) => requests_open = false,
                },
                recv(replies_rx) -> reply => {
                    if let Ok(reply) = reply {
                        self.on_reply(reply, &mut peers, &mut pending);
                    }
                },
                default(TICK) => {}
            }
        }
        self.fold_metrics();
        let mut report = self.stats.report();
        report.ring_packets = self.rings.packets;
        report.ring_overwritten = self.rings.overwritten;
        report.ring_overwritten_bytes = self.rings.overwritten_bytes;
        report.ring_truncated = self.rings.truncated;
        report
    }

    fn on_request(
        &mut self,
        request: Request,
        peers: &mut [Peer],
        pending: &mut HashMap<u64, Pending>,
    ) {
        let id = request.alert.id;
        let collect = Collect {
            id,
            selector: request.selector,
            from_ns: request.ts_ns.saturating_sub(self.settings.before_ns),
            to_ns: request.ts_ns.saturating_add(self.settings.after_ns),
        };
        if let Some(old) = pending.remove(&id) {
            self.finalize(old);
        }
        let mut entry = Pending {
            request,
            collect,
            waiting: 0,
            packets: Packets::default(),
            deadline: Instant::now() + Duration::from_nanos(self.settings.after_ns) + ANSWER_SLACK,
        };
        for peer in peers.iter() {
            match peer {
                Peer::Live(tx) => {
                    if tx.try_send(collect).is_ok() {
                        entry.waiting += 1;
                    } else {
                        add(&self.stats.collects_dropped, 1);
                    }
                }
                Peer::Ended(ring) => ring.collect(
                    &collect.selector,
                    collect.from_ns,
                    collect.to_ns,
                    &mut entry.packets,
                ),
                Peer::Gone => {}
            }
        }
        if entry.waiting == 0 {
            self.finalize(entry);
        } else {
            pending.insert(id, entry);
        }
    }

    fn on_reply(&mut self, reply: Reply, peers: &mut [Peer], pending: &mut HashMap<u64, Pending>) {
        let mut answered = |this: &mut Writer, id: u64, packets: Option<&Packets>| {
            if let Some(p) = pending.get_mut(&id) {
                if let Some(packets) = packets {
                    p.packets.extend(packets);
                }
                p.waiting = p.waiting.saturating_sub(1);
                if p.waiting == 0 {
                    if let Some(p) = pending.remove(&id) {
                        this.finalize(p);
                    }
                }
            }
        };
        match reply {
            Reply::Collected { id, packets } => answered(self, id, Some(&packets)),
            Reply::Ended {
                worker,
                ring,
                collects,
            } => {
                let c = ring.counters;
                self.rings.packets += c.packets;
                self.rings.overwritten += c.overwritten;
                self.rings.overwritten_bytes += c.overwritten_bytes;
                self.rings.truncated += c.truncated;
                // What was sent to the worker and not taken: answered from its ring.
                for collect in collects.try_iter() {
                    let mut packets = Packets::default();
                    ring.collect(
                        &collect.selector,
                        collect.from_ns,
                        collect.to_ns,
                        &mut packets,
                    );
                    answered(self, collect.id, Some(&packets));
                }
                if let Some(peer) = peers.get_mut(worker) {
                    *peer = Peer::Ended(ring);
                }
            }
        }
    }

    /// Writes the file (if any packet was found) and then the alert's EVE record.
    fn finalize(&mut self, pending: Pending) {
        let Pending {
            request,
            collect,
            mut packets,
            ..
        } = pending;
        let mut alert = request.alert;
        packets.finish(self.settings.max_packets, self.settings.max_file_bytes);
        alert.evidence = None;
        if packets.entries.is_empty() {
            add(&self.stats.requests_empty, 1);
        } else {
            let comments = comments(&alert, &collect, &packets);
            let bytes = pcapng::write(&comments, &packets);
            let path = file_of(&self.dir, alert.id);
            match write_atomically(&path, &bytes) {
                Ok(()) => {
                    let digest = ::ring::digest::digest(&::ring::digest::SHA256, &bytes);
                    let sha256 = digest
                        .as_ref()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>();
                    add(&self.stats.files_written, 1);
                    add(&self.stats.bytes_written, bytes.len() as u64);
                    self.stored(path.clone(), bytes.len() as u64);
                    alert.evidence = Some(EvidenceRef {
                        path: path.display().to_string(),
                        sha256: Some(sha256),
                    });
                }
                Err(error) => {
                    add(&self.stats.write_errors, 1);
                    eprintln!("otsensor: evidence {}: {error}", path.display());
                }
            }
        }
        if request.eve {
            if let Some(eve) = self.eve.as_mut() {
                eve.send(EveRecord::Alert(Arc::from(alert)));
            }
        }
    }

    /// Takes in the files a previous run left, oldest first.
    fn scan(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut found: Vec<(PathBuf, u64, SystemTime)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("alert-") && name.ends_with(".pcapng")
            })
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.path(), meta.len(), meta.modified().ok()?))
            })
            .collect();
        found.sort_by_key(|(_, _, modified)| *modified);
        for (path, bytes, modified) in found {
            self.files.insert(path, bytes, modified);
        }
        self.evict();
    }

    fn stored(&mut self, path: PathBuf, bytes: u64) {
        self.files.insert(path, bytes, SystemTime::now());
        self.evict();
    }

    /// Deletes the oldest files while the directory is over its size or count.
    fn evict(&mut self) {
        loop {
            let reason = if self.files.bytes > self.settings.max_total_bytes {
                Eviction::Size
            } else if self.files.len() > self.settings.max_files {
                Eviction::Count
            } else {
                break;
            };
            if !self.remove_oldest(reason) {
                break;
            }
        }
        self.publish_store();
    }

    /// Deletes files older than the age limit.
    fn expire(&mut self) {
        let now = SystemTime::now();
        while let Some(written) = self.files.oldest_written() {
            let age = now.duration_since(written).unwrap_or_default();
            if age <= self.settings.max_age {
                break;
            }
            self.remove_oldest(Eviction::Age);
        }
        self.publish_store();
    }

    /// Deletes the oldest file; false when there is none.
    fn remove_oldest(&mut self, reason: Eviction) -> bool {
        let Some((path, bytes)) = self.files.pop_oldest() else {
            return false;
        };
        if std::fs::remove_file(&path).is_ok() {
            add(&self.stats.files_evicted, 1);
            add(&self.stats.files_evicted_by[reason as usize], 1);
            add(&self.stats.bytes_evicted_by[reason as usize], bytes);
        }
        true
    }

    fn publish_store(&self) {
        self.stats
            .stored_files
            .store(self.files.len() as u64, Ordering::Relaxed);
        self.stats
            .stored_bytes
            .store(self.files.bytes, Ordering::Relaxed);
    }

    fn fold_metrics(&mut self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let now = self.stats.report();
        let delta = |new: u64, old: u64| new.saturating_sub(old);
        metrics
            .evidence_files_written
            .inc_by(delta(now.files_written, self.folded.files_written));
        metrics
            .evidence_bytes_written
            .inc_by(delta(now.bytes_written, self.folded.bytes_written));
        metrics
            .evidence_requests
            .inc_by(delta(now.requests, self.folded.requests));
        metrics
            .evidence_requests_empty
            .inc_by(delta(now.requests_empty, self.folded.requests_empty));
        metrics
            .evidence_write_errors
            .inc_by(delta(now.write_errors, self.folded.write_errors));
        for (index, reason) in crate::metrics::EVICTION_REASONS.iter().enumerate() {
            let (files, bytes) = (
                &self.stats.files_evicted_by[index],
                &self.stats.bytes_evicted_by[index],
            );
            let (files, bytes) = (files.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
            let (folded_files, folded_bytes) = self.folded_evicted[index];
            metrics
                .evidence_files_evicted
                .with_label_values(&[reason])
                .inc_by(delta(files, folded_files));
            metrics
                .evidence_bytes_evicted
                .with_label_values(&[reason])
                .inc_by(delta(bytes, folded_bytes));
            self.folded_evicted[index] = (files, bytes);
        }
        metrics.evidence_requests_dropped.inc_by(
            delta(now.requests_dropped, self.folded.requests_dropped)
                + delta(now.collects_dropped, self.folded.collects_dropped),
        );
        metrics
            .evidence_stored_files
            .set(i64::try_from(now.stored_files).unwrap_or(i64::MAX));
        metrics
            .evidence_stored_bytes
            .set(i64::try_from(now.stored_bytes).unwrap_or(i64::MAX));
        self.folded = now;
    }
}

/// The section comments: what the file is evidence of.
fn comments(alert: &Alert, collect: &Collect, packets: &Packets) -> Vec<String> {
    let endpoint = |ip: Option<std::net::IpAddr>, port: Option<u16>| match (ip, port) {
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        _ => "-".to_owned(),
    };
    vec![
        format!("otsensor alert_id {}", alert.id),
        format!("signature {} ({})", alert.signature, alert.signature_id),
        format!(
            "flow_id {}",
            alert.flow_id.map_or("-".to_owned(), |id| id.to_string())
        ),
        format!(
            "src {} dest {}",
            endpoint(alert.src_ip, alert.src_port),
            endpoint(alert.dest_ip, alert.dest_port)
        ),
        format!("message {}", alert.message),
        format!(
            "window {} .. {} ns, {} packets",
            collect.from_ns,
            collect.to_ns,
            packets.entries.len()
        ),
    ]
}

/// Writes `bytes` to a temporary name and renames it into place: a reader never sees
/// half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("pcapng.part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("otsensor-evidence-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn frame(ts_ns: u64, src: u8, dst: u8) -> Frame<'static> {
        let mut frame = otsensor_wire::layers::slice(LinkType::Ethernet, &[], ts_ns, 60);
        frame.src_ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, src)));
        frame.dst_ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, dst)));
        frame
    }

    fn alert(id: u64, flow_id: u64) -> Alert {
        let mut alert = Alert::of(&crate::detect::CATALOGUE[0]);
        alert.id = id;
        alert.flow_id = Some(flow_id);
        alert
    }

    fn files_in(dir: &Path) -> (usize, u64) {
        let mut count = 0;
        let mut bytes = 0;
        // The evidence thread may delete a file between the listing and its metadata.
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            if let Ok(meta) = entry.metadata() {
                count += 1;
                bytes += meta.len();
            }
        }
        (count, bytes)
    }

    #[test]
    fn an_alert_gets_its_flows_packets_before_and_after_and_a_late_one_its_ring() {
        let dir = scratch("window");
        let settings = EvidenceSettings {
            ring_bytes: 1 << 20,
            ring_packets: 1024,
            before_ns: 10,
            after_ns: 5,
            ..EvidenceSettings::default()
        };
        let started = start(&settings, dir.clone(), 1, None, None).expect("start");
        let Started {
            requests,
            mut workers,
            stats,
            thread,
        } = started;
        let mut worker = workers.remove(0);
        // Flow 7 at t = 100..=130 step 1; flow 8 interleaved.
        for t in 100..=130u64 {
            let flow = if t % 2 == 0 { 7 } else { 8 };
            worker.keep(&frame(t, 1, 2), LinkType::Ethernet, &[t as u8; 60]);
            worker.tag_flow(flow);
        }
        let mut first = alert(1, 7);
        assert!(requests.request(&mut first, 110, false));
        assert!(first
            .evidence
            .as_ref()
            .is_some_and(|e| e.path.ends_with("alert-1.pcapng")));
        // Not answered before packet time passes 115.
        for _ in 0..10 {
            worker.serve(114);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stats.files_written.load(Ordering::Relaxed), 0);
        worker.serve(130);
        // An alert raised after the worker ended is answered from its ring.
        let mut late = alert(2, 8);
        worker.finish();
        assert!(requests.request(&mut late, 125, false));
        drop(requests);
        let report = thread.join().expect("join");
        assert_eq!(report.files_written, 2, "{report:?}");
        let read = |id: u64| {
            let path = file_of(&dir, id);
            let mut files = crate::capture::pcap::PcapFiles::open(&[path]).expect("open");
            let mut times = Vec::new();
            use crate::capture::PacketSource;
            while let Some(packet) = files.next_packet().expect("read") {
                assert_eq!(packet.data, &[packet.ts_ns as u8; 60][..]);
                times.push(packet.ts_ns);
            }
            times
        };
        assert_eq!(read(1), vec![100, 102, 104, 106, 108, 110, 112, 114]);
        assert_eq!(read(2), vec![115, 117, 119, 121, 123, 125, 127, 129]);
        assert_eq!(report.ring_packets, 31);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_written_again_becomes_the_newest_and_stale_entries_stay_bounded() {
        let t = SystemTime::UNIX_EPOCH;
        let mut files = Retained::default();
        for (name, bytes) in [("a", 1), ("b", 2), ("c", 4)] {
            files.insert(PathBuf::from(name), bytes, t);
        }
        // "a" rewritten many times: still one file, now the newest.
        for i in 0..10_000u64 {
            files.insert(PathBuf::from("a"), 8 + i % 2, t);
        }
        assert_eq!((files.len(), files.bytes), (3, 2 + 4 + 9));
        assert!(files.queue.len() <= 2 * files.len() + 64 + 1);
        let order: Vec<(PathBuf, u64)> = std::iter::from_fn(|| files.pop_oldest()).collect();
        assert_eq!(
            order,
            [
                (PathBuf::from("b"), 2),
                (PathBuf::from("c"), 4),
                (PathBuf::from("a"), 9)
            ]
        );
        assert_eq!((files.len(), files.bytes), (0, 0));
    }

    #[test]
    fn retention_caps_hold_under_a_flood_of_100k_alerts() {
        let dir = scratch("flood");
        // Files left by an earlier run count against the caps too.
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("alert-999999999.pcapng"), [0u8; 1000]).expect("old file");
        let settings = EvidenceSettings {
            ring_bytes: 1 << 20,
            ring_packets: 4096,
            before_ns: 1_000,
            after_ns: 0,
            max_packets: 4,
            max_files: 50,
            max_total_bytes: 20_000,
            ..EvidenceSettings::default()
        };
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let Started {
            requests,
            mut workers,
            stats,
            thread,
        } = start(&settings, dir.clone(), 1, None, Some(Arc::clone(&metrics))).expect("start");
        let mut worker = workers.remove(0);
        let alerts = 100_000u64;
        let mut taken = 0u64;
        for id in 1..=alerts {
            let flow = id % 2000 + 1;
            worker.keep(&frame(id * 10, 1, 2), LinkType::Ethernet, &[1u8; 120]);
            worker.tag_flow(flow);
            let mut raised = alert(id, flow);
            taken += u64::from(requests.request(&mut raised, id * 10, false));
            if id % 64 == 0 {
                worker.serve(id * 10);
                let (count, bytes) = files_in(&dir);
                assert!(
                    count <= 52 && bytes <= 20_000 + 2_000,
                    "{id}: {count} files, {bytes} bytes"
                );
            }
        }
        worker.finish();
        drop(requests);
        let report = thread.join().expect("join");
        let (count, bytes) = files_in(&dir);
        assert!(count <= 50, "{count} files");
        assert!(bytes <= 20_000, "{bytes} bytes");
        assert_eq!(report.stored_files, count as u64);
        assert_eq!(report.stored_bytes, bytes);
        assert_eq!(report.requests, alerts);
        // Every request is accounted for: written, empty, or dropped (the analyzer's
        // queue, counted when it was refused).
        assert_eq!(taken + report.requests_dropped, alerts, "{report:?}");
        // A worker whose queue was full answers nothing: such requests may be empty.
        assert_eq!(
            report.files_written + report.requests_empty,
            taken,
            "{report:?}"
        );
        assert!(report.files_written > 1000, "{report:?}");
        // Everything written and the old file, minus what is left, was deleted.
        assert_eq!(
            report.files_evicted + count as u64,
            report.files_written + 1
        );
        assert_eq!(
            stats.files_evicted.load(Ordering::Relaxed),
            report.files_evicted
        );
        // Each deletion has one reason: the size or the count cap (files of a few
        // hundred bytes: 20,000 bytes is about 50 files), the age never (30 days).
        assert_eq!(
            report.files_evicted,
            report.files_evicted_size + report.files_evicted_count + report.files_evicted_age,
            "{report:?}"
        );
        assert!(
            report.files_evicted_size + report.files_evicted_count > 1000,
            "{report:?}"
        );
        assert_eq!(report.files_evicted_age, 0, "{report:?}");
        // The metrics say the same, by reason.
        let evicted = |reason: &str| {
            metrics
                .evidence_files_evicted
                .with_label_values(&[reason])
                .get()
        };
        assert_eq!(
            (evicted("size"), evicted("count"), evicted("age")),
            (
                report.files_evicted_size,
                report.files_evicted_count,
                report.files_evicted_age
            )
        );
        assert_eq!(metrics.evidence_files_written.get(), report.files_written);
        assert_eq!(metrics.evidence_requests.get(), report.requests);
        assert_eq!(metrics.evidence_requests_empty.get(), report.requests_empty);
        let bytes_evicted: u64 = crate::metrics::EVICTION_REASONS
            .iter()
            .map(|reason| {
                metrics
                    .evidence_bytes_evicted
                    .with_label_values(&[reason])
                    .get()
            })
            .sum();
        assert_eq!(bytes_evicted, report.bytes_evicted);
        assert!(bytes_evicted > 1000 * 100, "{report:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
