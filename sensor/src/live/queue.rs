//! The live worker loop: one thread per RX queue owns that queue's AF_XDP socket (its
//! UMEM, fill and RX rings) and the queue's [`Worker`]. It takes a batch from the RX
//! ring, slices and dissects every frame in place in the UMEM (no copy), and the socket
//! returns the batch's frames to the fill ring together. No other thread touches a
//! packet.
//!
//! A frame whose flow another worker owns (a NIC without symmetric RSS) is copied into
//! the hand-off ring towards its owner; a full ring is a counted drop (a live queue
//! never waits). The owner takes its inbox before each ring batch. When a flow's frames
//! reach two queues, a handed frame can still come after a later one of the same
//! direction that arrived on the owner's own queue; TCP framing holds a few reordered
//! runs for that (`flow::stream`). An idle worker spins briefly, then parks in poll(2) on its socket and
//! its [`Waker`] (an eventfd), so a quiet sensor uses no CPU: it is woken by the socket
//! when frames arrive, by a peer that handed it a frame, or at shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::capture::afxdp::{self, QueueSocket, Waker};
use crate::capture::Packet;
use crate::flow;
use crate::flow::handoff::{HandoffFrame, HandoffRings};
use crate::metrics::WorkerMetrics;
use crate::observe::{realtime_ns, ParkState};
use crate::pipeline::ThreadCpu;
use crate::worker::{Worker, WorkerReport};

/// Empty looks at the rings before a worker parks: the next frame of a burst often
/// arrives within a microsecond, and parking costs two system calls. 200 looks cost more
/// CPU per frame than the parks they saved (live-bench at 100 kpps: 0.76x the process
/// CPU with 16).
const SPIN_ROUNDS: u32 = 16;
/// Longest sleep of a parked worker: then it moves its clock to the wall clock (flows
/// expire, the watermark advances) and folds its metrics, and parks again.
pub const IDLE_TICK: Duration = Duration::from_millis(250);
/// A busy worker publishes its watermark (its observations go to the analyzer, waking
/// it) and folds its metrics once this many frames were processed since it last did,
/// or [`PUBLISH_INTERVAL_NS`] passed, or before it parks: not after every ring batch,
/// which at moderate rates holds one or two frames and made the hand-off cost more
/// than the frames.
const PUBLISH_FRAMES: usize = 256;
/// At most this long (wall clock) between a busy worker's publications: the longest an
/// observation waits in the worker before the analyzer may take it.
const PUBLISH_INTERVAL_NS: u64 = 100_000;

/// What the queue workers of one capture share: a waker and a park state each, the
/// hand-off rings, and the shutdown handshake.
#[derive(Debug)]
pub struct Crew {
    wakers: Vec<Waker>,
    /// Shared with the analyzer's merge: while a worker is parked its watermark is the
    /// wall clock ([`ParkState`]).
    parks: Arc<[ParkState]>,
    rings: HandoffRings,
    /// Set once the XDP program is detached: no frame can arrive any more, so a worker
    /// whose ring is empty is done with its queue.
    drain: AtomicBool,
    /// Workers done with their own queue (they still empty their inbox until all are).
    finished: AtomicUsize,
}

impl Crew {
    /// `workers` wakers and, with more than one worker, hand-off rings of `capacity`;
    /// `parks`: one per worker, the analyzer's merge holds the same.
    pub fn new(
        workers: usize,
        handoff_capacity: usize,
        parks: Arc<[ParkState]>,
    ) -> std::io::Result<Crew> {
        let wakers = (0..workers)
            .map(|_| Waker::new())
            .collect::<std::io::Result<Vec<_>>>()?;
        let rings = if workers > 1 {
            HandoffRings::new(workers, handoff_capacity)
        } else {
            HandoffRings::none(workers)
        };
        Ok(Crew {
            wakers,
            parks,
            rings,
            drain: AtomicBool::new(false),
            finished: AtomicUsize::new(0),
        })
    }

    /// Tells every worker to finish: call after the program is detached, so what is in
    /// the rings is all there will be.
    pub fn drain(&self) {
        self.drain.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            waker.wake();
        }
    }
}

/// One queue's worker thread: its socket, its engine, where it runs.
pub struct QueueWorker {
    pub worker: Worker,
    pub socket: QueueSocket,
    /// The CPU to pin the thread to, if any.
    pub cpu: Option<usize>,
    pub crew: Arc<Crew>,
    pub metrics: Option<WorkerMetrics>,
}

impl QueueWorker {
    /// Runs until [`Crew::drain`] and every ring is empty; returns the worker's report
    /// and the thread's CPU seconds.
    pub fn run(self) -> (WorkerReport, Option<ThreadCpu>) {
        let QueueWorker {
            mut worker,
            mut socket,
            cpu,
            crew,
            mut metrics,
        } = self;
        if let Some(cpu) = cpu {
            if let Err(error) = afxdp::pin_current_thread(cpu) {
                eprintln!(
                    "otsensor: warning: queue {}: cannot pin its worker to CPU {cpu}: {error}",
                    socket.queue()
                );
            }
        }
        let me = worker.id;
        let workers = crew.rings.workers();
        // With one queue every frame is this worker's; with several, the NIC's RSS may
        // not be symmetric, so the owner is checked per frame (one hash).
        let check_owner = workers > 1;
        let (Some(waker), Some(park)) = (crew.wakers.get(me), crew.parks.get(me)) else {
            return (worker.finish(), None);
        };
        // The watermark last published: frames taken later are stamped after it, but a
        // frame a peer handed over may be older, and is ordered just after `floor`: the
        // last watermark published, or after a park the clock read on waking (until
        // then the analyzer may have taken the wall clock as this worker's watermark).
        let mut published = 0u64;
        let mut floor = 0u64;
        // Frames processed since then, and the timestamp of the last ring batch taken.
        let mut unpublished = 0usize;
        let mut batch_ts = 0u64;
        let mut empty_rounds = 0u32;
        let mut done_with_queue = false;
        loop {
            worker.refresh_policy();
            // What peers handed over first: they took it off their rings before this
            // worker takes its next batch, and a flow whose frames reach two queues (no
            // stable RSS) keeps its order best that way.
            let handed = drain_inbox(&mut worker, &crew.rings, floor);
            let started = metrics.is_some().then(Instant::now);
            let got = socket.recv_batch(&mut |packet: Packet<'_>| {
                batch_ts = packet.ts_ns;
                let frame = packet.slice();
                let owner = if check_owner {
                    flow::frame_owner(&frame, workers)
                } else {
                    me
                };
                if owner == me {
                    worker.process_captured_at(&frame, packet.link, packet.data, frame.ts_ns);
                } else {
                    hand_off(&mut worker, &crew, owner, &packet);
                }
            });
            if got > 0 {
                if let (Some(metrics), Some(started)) = (metrics.as_mut(), started) {
                    metrics.record_batch(started.elapsed(), got as u64);
                }
            }
            if got + handed > 0 {
                unpublished += got + handed;
                empty_rounds = 0;
                // Handed frames bring no new ring timestamp: after them alone the
                // worker publishes on the count, or at the end of the burst.
                if unpublished >= PUBLISH_FRAMES
                    || batch_ts.saturating_sub(published) >= PUBLISH_INTERVAL_NS
                {
                    published = publish(&mut worker, &mut metrics);
                    floor = published;
                    unpublished = 0;
                }
                continue;
            }
            if unpublished > 0
                && (empty_rounds == SPIN_ROUNDS / 4 || crew.drain.load(Ordering::SeqCst))
            {
                // The burst has ended: what it caused goes to the analyzer now, not
                // after the spin.
                published = publish(&mut worker, &mut metrics);
                floor = published;
                unpublished = 0;
            }
            if crew.drain.load(Ordering::SeqCst) {
                // Detached and this ring is empty: nothing more will come on it. Peers
                // may still hand frames over until they are done too.
                if !done_with_queue {
                    done_with_queue = true;
                    crew.finished.fetch_add(1, Ordering::AcqRel);
                }
                if crew.finished.load(Ordering::Acquire) == workers {
                    drain_inbox(&mut worker, &crew.rings, floor);
                    break;
                }
                thread::yield_now();
                continue;
            }
            empty_rounds += 1;
            if empty_rounds < SPIN_ROUNDS {
                std::hint::spin_loop();
                continue;
            }
            empty_rounds = 0;
            published = idle(&mut worker, park, &mut metrics);
            waker.park();
            // A peer that pushed before it saw `parked` did not wake us: look once more.
            let work_waiting = inbox_waiting(me, &crew.rings) || crew.drain.load(Ordering::SeqCst);
            if !work_waiting {
                if let Err(error) = socket.wait_or_woken(waker, IDLE_TICK) {
                    eprintln!("otsensor: queue {}: poll failed: {error}", socket.queue());
                    thread::sleep(IDLE_TICK);
                }
            }
            // Awake before any clock reading that stamps a frame (see `ParkState`).
            park.wake();
            floor = realtime_ns().max(published);
            waker.unpark();
        }
        let report = worker.finish();
        if let Some(metrics) = metrics.as_mut() {
            metrics.fold(&report.counters, &report.protocols, &report.stream);
            metrics.flush();
        }
        (report, ThreadCpu::now(""))
    }
}

/// Publishes the worker's watermark, the realtime clock now: every frame taken from now
/// on is stamped after it. Folds its metrics too. Returns the watermark.
fn publish(worker: &mut Worker, metrics: &mut Option<WorkerMetrics>) -> u64 {
    let now = realtime_ns();
    worker.publish_watermark(now);
    if let Some(metrics) = metrics.as_mut() {
        let (protocols, stream) = worker.stats();
        metrics.fold(&worker.counters(), protocols, stream);
    }
    now
}

/// A worker with nothing to do, about to park: time still passes. Its clock follows
/// the wall clock (live packet time is the wall clock at reception), so idle flows
/// expire and are reported without waiting for the next frame; then it stores the
/// park in `park` and publishes the wall clock as its idle watermark, so that until it
/// wakes the analyzer's merge takes the wall clock for it and does not wait. Stored
/// before the batch is sent: the analyzer that takes the batch in finds the park.
/// Returns the watermark published.
fn idle(worker: &mut Worker, park: &ParkState, metrics: &mut Option<WorkerMetrics>) -> u64 {
    let now = realtime_ns();
    worker.idle_until(now);
    park.park(now);
    worker.publish_idle(now);
    if let Some(metrics) = metrics.as_mut() {
        let (protocols, stream) = worker.stats();
        metrics.fold(&worker.counters(), protocols, stream);
    }
    now
}

/// Copies a frame to its owner's ring and wakes the owner if it is parked; a full ring
/// is a counted drop (a live queue never waits for another).
fn hand_off(worker: &mut Worker, crew: &Crew, owner: usize, packet: &Packet<'_>) {
    let Some(ring) = crew.rings.ring(worker.id, owner) else {
        worker.process(packet);
        return;
    };
    let (frame, cut) =
        HandoffFrame::copy_of(packet.ts_ns, packet.link, packet.data, packet.wire_len);
    match ring.push(frame) {
        Ok(()) => {
            worker.note_handoff_sent(cut);
            if let Some(waker) = crew.wakers.get(owner) {
                waker.wake_if_parked();
            }
        }
        Err(_) => worker.note_handoff_dropped(),
    }
}

/// Processes every frame other workers handed to this one; returns how many. A frame
/// stamped before `floor` (this worker's last watermark, or the clock it read on
/// waking) is ordered just after it.
fn drain_inbox(worker: &mut Worker, rings: &HandoffRings, floor: u64) -> usize {
    let mut received = 0;
    for from in 0..rings.workers() {
        let Some(ring) = rings.ring(from, worker.id) else {
            continue;
        };
        while let Some(handed) = ring.pop() {
            let frame = handed.frame();
            let order = frame.ts_ns.max(floor.saturating_add(1));
            let (link, data) = handed.captured();
            worker.process_captured_at(&frame, link, data, order);
            received += 1;
        }
    }
    if received > 0 {
        worker.note_handoffs_received(received as u64);
    }
    received
}

fn inbox_waiting(me: usize, rings: &HandoffRings) -> bool {
    (0..rings.workers()).any(|from| rings.ring(from, me).is_some_and(|ring| !ring.is_empty()))
}
