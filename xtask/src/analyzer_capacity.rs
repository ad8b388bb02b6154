//! `cargo xtask analyzer-capacity FILE --producers N`: whether one analyzer thread keeps
//! up with N busy workers, on a machine with fewer cores than that.
//!
//! N workers process the capture as the pipeline spreads it (symmetric flow hash), each
//! publishing its observation batches with its watermark after every batch of its
//! packets, as `pipeline::run_worker` does; their CPU per packet is measured on this
//! thread. The analyzer then takes those batches in the order they were sent, merges the
//! N streams into packet order (`observe::Merge`) and handles every observation, as the
//! analyzer thread does, with nothing else competing for the core. N busy workers
//! produce packets N times as fast as one; the analyzer keeps up when its CPU per packet
//! is at most the workers' per packet divided by N. Channel takes are not included: a
//! busy pipeline's analyzer takes a batch of observations per channel message and never
//! parks.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use otsensor::analyze::Analyzer;
use otsensor::capture::memory::MemoryCapture;
use otsensor::capture::pcap::PcapFiles;
use otsensor::config::Config;
use otsensor::observe::{Delivery, Merge, ObservationBatch, ObservationSink, Stamped};
use otsensor::pipeline;
use otsensor::worker::Worker;

/// This thread's CPU nanoseconds since `start` (a `pipeline::thread_cpu_ns` reading).
fn cpu_since(start: Option<u64>) -> f64 {
    pipeline::thread_cpu_ns()
        .zip(start)
        .map_or(0.0, |(now, then)| now.saturating_sub(then) as f64)
}

/// What [`measure`] found, CPU per packet of the capture (best of the runs).
#[derive(Clone, Debug)]
pub struct Capacity {
    pub packets: u64,
    pub observations: usize,
    pub batches: usize,
    pub producers: usize,
    /// The workers' CPU per packet.
    pub worker_ns: f64,
    /// The analyzer handling the merged stream, no merge.
    pub handled_ns: f64,
    /// The analyzer merging the producers' batches and handling what they release.
    pub merged_ns: f64,
    /// The analyzer thread fed through its channel: CPU per packet, times it was put on
    /// a CPU, wall seconds.
    pub thread_ns: f64,
    pub thread_scheduled: u64,
    pub thread_seconds: f64,
    /// Alerts raised (the same in every way of running the analyzer, else an error).
    pub alerts: u64,
}

impl Capacity {
    /// Busy workers the analyzer keeps up with: the workers' CPU per packet over the
    /// analyzer's (the slower of the merge on this thread and its own thread).
    pub fn workers_kept_up_with(&self) -> f64 {
        self.worker_ns / self.merged_ns.max(self.thread_ns).max(f64::MIN_POSITIVE)
    }
}

/// Runs the benchmark and prints its report.
pub fn run(file: &Path, producers: usize, repeat: usize) -> anyhow::Result<()> {
    let c = measure(file, producers, repeat)?;
    println!(
        "capture      {} ({} packets, {} observations in {} batches from {producers} workers)",
        file.display(),
        c.packets,
        c.observations,
        c.batches
    );
    println!("workers      {:>7.1} ns/packet of worker CPU", c.worker_ns);
    println!(
        "analyzer     {:>7.1} ns/packet handling the merged stream ({} alerts)",
        c.handled_ns, c.alerts
    );
    println!(
        "  +merge     {:>7.1} ns/packet merging {producers} streams and handling them",
        c.merged_ns
    );
    println!(
        "  thread     {:>7.1} ns/packet of the analyzer thread's CPU, fed through its channel ({:.2} M packets/s wall, on a CPU {} times)",
        c.thread_ns,
        c.packets as f64 / c.thread_seconds.max(1e-9) / 1e6,
        c.thread_scheduled
    );
    let capacity = c.workers_kept_up_with();
    println!(
        "capacity     {capacity:.1} busy workers (worker ns/packet / the analyzer's, the slower of merge and thread); {producers} {} (best of {repeat} runs each)",
        if capacity >= producers as f64 {
            "kept up with"
        } else {
            "NOT kept up with"
        }
    );
    Ok(())
}

/// Measures a capture (see the module's documentation); `repeat` runs of each part.
pub fn measure(file: &Path, producers: usize, repeat: usize) -> anyhow::Result<Capacity> {
    anyhow::ensure!(producers >= 1, "--producers must be at least 1");
    let mut source = PcapFiles::open(&[file.to_owned()])?;
    let capture = MemoryCapture::load(&mut source).context("loading the capture")?;
    let packets = capture.len() as u64;
    anyhow::ensure!(packets > 0, "{}: no packets", file.display());
    let mut config = Config::default();
    config.pipeline.workers = producers;
    let policy = Arc::new(config.validate()?);
    let batch_packets = policy.batch_packets.max(1);
    otsensor::advisories::embedded().prepare();

    // The batches N workers send, in the order they send them: each publishes its
    // watermark after every `batch_packets` of its packets.
    let (tx, rx) = crossbeam_channel::unbounded::<ObservationBatch>();
    let sink = |id: usize| {
        ObservationSink::batched(id, tx.clone(), crossbeam_channel::never(), Delivery::Block)
    };
    let mut workers: Vec<Worker> = (0..producers)
        .map(|id| Worker::new(id, Arc::clone(&policy), sink(id), None))
        .collect();
    let mut since_watermark = vec![0usize; producers];
    for (seq, packet) in capture.iter().enumerate() {
        let seq = seq as u64;
        let owner =
            otsensor::flow::packet_owner(packet.link, packet.data, packet.wire_len, producers);
        workers[owner].process_at(&packet, seq);
        since_watermark[owner] += 1;
        if since_watermark[owner] == batch_packets {
            since_watermark[owner] = 0;
            workers[owner].publish_watermark(seq);
        }
    }
    for worker in workers {
        drop(worker.finish());
    }
    let batches: Vec<ObservationBatch> = rx.try_iter().collect();

    // A worker's CPU per packet, as `xtask replay` measures it: one worker, every packet.
    let mut worker_ns = f64::MAX;
    for _ in 0..repeat.max(1) {
        let mut worker = Worker::new(0, Arc::clone(&policy), sink(0), None);
        let started = pipeline::thread_cpu_ns();
        for (seq, packet) in capture.iter().enumerate() {
            worker.process_at(&packet, seq as u64);
            if (seq + 1) % batch_packets == 0 {
                worker.publish_watermark(seq as u64);
            }
        }
        drop(worker.finish());
        worker_ns = worker_ns.min(cpu_since(started) / packets as f64);
        // Its batches are not needed.
        while rx.try_recv().is_ok() {}
    }
    drop(tx);
    let observations: usize = batches.iter().map(|b| b.items.len()).sum();
    // The merged order, once: checked complete and in packet order.
    let mut merge = Merge::new(producers);
    let mut order: Vec<Stamped> = Vec::with_capacity(observations);
    for mut batch in batches.clone() {
        merge.push(&mut batch);
        order.extend(std::iter::from_fn(|| merge.pop(0)));
    }
    merge.end_all();
    order.extend(std::iter::from_fn(|| merge.pop(0)));
    anyhow::ensure!(
        order.len() == observations,
        "the merge released {} of {observations} observations",
        order.len()
    );
    anyhow::ensure!(
        order.windows(2).all(|w| w[0].order <= w[1].order),
        "the merge released observations out of packet order"
    );

    // Alternately: the analyzer handling the merged stream as given, and the analyzer
    // as its thread runs it, merging every batch and handling what the watermarks
    // release after each.
    let mut handled_ns = f64::MAX;
    let mut merged_ns = f64::MAX;
    let mut alerts = (0, 0);
    for _ in 0..repeat.max(1) {
        let input = order.clone();
        let mut analyzer = Analyzer::new(Arc::clone(&policy), None);
        analyzer.store_on_own_thread();
        let started = pipeline::thread_cpu_ns();
        for stamped in input {
            analyzer.handle(stamped);
        }
        alerts.0 = analyzer.finish().alerts;
        handled_ns = handled_ns.min(cpu_since(started) / packets as f64);

        let input = batches.clone();
        let mut analyzer = Analyzer::new(Arc::clone(&policy), None);
        analyzer.store_on_own_thread();
        let mut merge = Merge::new(producers);
        let started = pipeline::thread_cpu_ns();
        for mut batch in input {
            merge.push(&mut batch);
            while let Some(stamped) = merge.pop(0) {
                analyzer.handle(stamped);
            }
        }
        merge.end_all();
        while let Some(stamped) = merge.pop(0) {
            analyzer.handle(stamped);
        }
        alerts.1 = analyzer.finish().alerts;
        merged_ns = merged_ns.min(cpu_since(started) / packets as f64);
    }
    anyhow::ensure!(
        alerts.0 == alerts.1,
        "merged and pre-ordered runs raised different alerts ({} and {})",
        alerts.0,
        alerts.1
    );

    // The analyzer thread itself, its batches sent through its channel from this thread
    // as fast as it takes them: the merge, channel takes and parking included.
    let mut threaded: Option<(f64, u64, f64)> = None;
    for _ in 0..repeat.max(1) {
        let summary = pipeline::analyze_batches(Arc::clone(&policy), producers, batches.clone())?;
        anyhow::ensure!(
            summary.alerts == alerts.0,
            "the analyzer thread raised {} alerts, the merged run {}",
            summary.alerts,
            alerts.0
        );
        let thread = summary
            .threads
            .iter()
            .find(|t| t.name == "otsensor-analyzer")
            .context("the analyzer thread's CPU time")?;
        let ns = thread.cpu_seconds * 1e9 / packets as f64;
        if threaded.is_none_or(|(best, _, _)| ns < best) {
            threaded = Some((ns, thread.scheduled, summary.elapsed_seconds));
        }
    }
    let (thread_ns, thread_scheduled, thread_seconds) =
        threaded.context("no run of the analyzer thread")?;
    Ok(Capacity {
        packets,
        observations,
        batches: batches.len(),
        producers,
        worker_ns,
        handled_ns,
        merged_ns,
        thread_ns,
        thread_scheduled,
        thread_seconds,
        alerts: alerts.0,
    })
}
