//! `otsensor run`: live capture on one interface, one worker thread per RX queue, in
//! front of the same analyzer and outputs as replay. Maps the policy onto the XDP and
//! socket settings, turns start-up failures into messages an installer can act on, keeps
//! the kernel's books on the calling thread while the workers run, and adds them to the
//! summary.
//!
//! Threads: `otsensor-q{N}` per queue (owns socket N and its UMEM, see [`queue`]); the
//! analyzer and EVE writer of [`crate::pipeline`]; the calling thread does the
//! housekeeping ([`books`]) and the shutdown. None but the queue workers touches a packet.

/// Housekeeping: kernel counters, events and conversations → metrics and observations.
pub mod books;
/// The per-queue worker loop.
pub mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::afxdp::{BusyPoll, SocketSettings, ZeroCopy};
use crate::capture::live::{self, LiveCapture, StartError};
use crate::config::{BulkAction, Policy, XdpMode};
use crate::ebpf::{AttachMode, ShedAction, XdpSettings};
use crate::pipeline::{self, ReplayOptions, Summary};
use crate::worker::WorkerReport;

/// Longest sleep of the housekeeping thread between looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Wait after detaching before the workers' last look at their rings.
const DETACH_GRACE: Duration = Duration::from_millis(20);

/// Why live capture failed, in the installer's terms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("interface {0:?} does not exist (see `ip link`)")]
    NoInterface(String),
    #[error("not permitted to load XDP programs or open AF_XDP sockets: run as root or with CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON ({0})")]
    Permission(String),
    #[error("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): {0}")]
    NoXdpSockets(String),
    #[error("cannot start capture on {interface}: {reason}")]
    Start { interface: String, reason: String },
    #[error(transparent)]
    Pipeline(#[from] pipeline::Error),
    #[error("after attaching to {interface}: {reason:#}")]
    AfterAttach {
        interface: String,
        reason: anyhow::Error,
    },
}

/// Kernel-side numbers of a live run.
#[derive(Clone, Debug, Serialize)]
pub struct KernelReport {
    pub attach_mode: String,
    pub fell_back_to_generic: bool,
    pub replaced_stale_program: bool,
    /// Packets and bytes per verdict/reason counter of the XDP program.
    pub counters: std::collections::BTreeMap<&'static str, (u64, u64)>,
    /// Per queue: redirected, no socket, received, kernel drops, unaccounted.
    pub queues: Vec<serde_json::Value>,
    /// Conversations whose packets were shed in the kernel (accounted there), and
    /// their packets and bytes.
    pub shed_conversations: usize,
    pub shed_packets: u64,
    pub shed_bytes: u64,
}

/// The summary of a live run.
#[derive(Clone, Debug, Serialize)]
pub struct LiveSummary {
    #[serde(flatten)]
    pub summary: Summary,
    pub kernel: KernelReport,
}

/// The XDP program's settings from the policy.
pub fn xdp_settings(policy: &Policy) -> XdpSettings {
    XdpSettings {
        tcp_ports: policy.industrial_tcp_ports.clone(),
        udp_ports: policy.industrial_udp_ports.clone(),
        ethertypes: policy.industrial_ethertypes.clone(),
        bulk_action: match policy.bulk_action {
            BulkAction::Drop => ShedAction::Drop,
            BulkAction::Pass => ShedAction::Pass,
        },
        first_packets: policy.first_packets_per_flow,
        mode: match policy.xdp_mode {
            XdpMode::Auto => AttachMode::DriverOrGeneric,
            XdpMode::Driver => AttachMode::Driver,
            XdpMode::Generic => AttachMode::Generic,
        },
        ..XdpSettings::default()
    }
}

/// The AF_XDP socket settings from the policy.
pub fn socket_settings(policy: &Policy) -> SocketSettings {
    SocketSettings {
        frame_count: policy.umem_frames,
        rx_ring_size: policy.ring_size,
        fill_ring_size: policy.ring_size,
        zero_copy: ZeroCopy::Auto,
        busy_poll: (policy.busy_poll_usecs > 0).then_some(BusyPoll {
            usecs: policy.busy_poll_usecs,
            budget: policy.busy_poll_budget,
        }),
        ..SocketSettings::default()
    }
}

/// The number of workers `otsensor run` starts on `interface`: one per active RX queue
/// (a worker owns its queue). Falls back to `configured` when the queues cannot be read.
pub fn worker_count(interface: &str, configured: usize) -> usize {
    match crate::capture::afxdp::rx_queue_count(interface) {
        Ok(queues) if queues as usize != configured => {
            eprintln!(
                "otsensor: {interface} has {queues} RX queues: starting one worker per queue (not {configured}); `otsensor nic-setup --queues N` changes the queue count"
            );
            queues as usize
        }
        Ok(queues) => queues as usize,
        Err(_) => configured,
    }
}

fn explain(interface: &str, error: StartError) -> Error {
    let text = error.to_string();
    let lower = text.to_lowercase();
    if lower.contains("no such device") || lower.contains("no such interface") {
        Error::NoInterface(interface.to_owned())
    } else if lower.contains("operation not permitted") || lower.contains("permission denied") {
        Error::Permission(text)
    } else if lower.contains("address family not supported") {
        Error::NoXdpSockets(text)
    } else {
        Error::Start {
            interface: interface.to_owned(),
            reason: text,
        }
    }
}

/// Captures on `interface` until `stop` is set (SIGINT/SIGTERM), then drains the
/// queues, detaches the program and reports.
pub fn run(
    interface: &str,
    policy: Arc<Policy>,
    options: ReplayOptions,
    stop: Arc<AtomicBool>,
) -> Result<LiveSummary, Error> {
    run_after_attach(interface, policy, stop, move || Ok(options))
}

/// [`run`], with the pipeline's options made by `after_attach` on this thread once the
/// program is attached and the sockets are open, before any other thread starts.
/// That is where to drop privileges ([`crate::privileges::drop_after_attach`]) and then
/// open the outputs and start the HTTP server: capabilities are per thread and
/// inherited, so only threads started afterwards are without them.
pub fn run_after_attach(
    interface: &str,
    policy: Arc<Policy>,
    stop: Arc<AtomicBool>,
    after_attach: impl FnOnce() -> anyhow::Result<ReplayOptions>,
) -> Result<LiveSummary, Error> {
    let xdp = xdp_settings(&policy);
    let sockets = socket_settings(&policy);
    // Before the program attaches, so that no frame waits in a ring while the catalogue
    // is built (see `pipeline::start_backend`).
    crate::advisories::embedded().prepare();
    let mut capture =
        LiveCapture::start(interface, &xdp, &sockets).map_err(|e| explain(interface, e))?;
    let mut options = after_attach().map_err(|reason| Error::AfterAttach {
        interface: interface.to_owned(),
        reason,
    })?;
    let attach = capture.attach_report();
    if attach.fell_back_to_generic {
        eprintln!("otsensor: warning: {interface}: the driver has no native XDP; using generic mode (slower)");
    }
    options.live = true;
    // Config reload rewrites the kernel's policy maps in place through these handles.
    let reloadable = options.reloadable_policy.clone();
    if let Some(shared) = &reloadable {
        let maps = capture
            .filter()
            .policy_maps()
            .map_err(|e| explain(interface, StartError::from(e)))?;
        shared.attach_kernel_maps(maps);
    }
    let result = capture_until_stopped(&mut capture, policy, options, &stop);
    if let Some(shared) = &reloadable {
        shared.detach_kernel_maps();
    }
    let summary = result?;
    let counters = capture
        .filter()
        .counters()
        .map(|c| {
            c.iter()
                .map(|(counter, value)| (counter.label(), (value.packets, value.bytes)))
                .collect()
        })
        .unwrap_or_default();
    let queues = capture
        .queue_accounting()
        .map(|queues| {
            queues
                .iter()
                .map(|q| {
                    if q.unaccounted != 0 {
                        eprintln!(
                            "otsensor: warning: queue {}: {} frames redirected by the kernel are unaccounted for",
                            q.queue, q.unaccounted
                        );
                    }
                    serde_json::json!({
                        "queue": q.queue, "redirected": q.redirected, "no_socket": q.no_socket,
                        "received": q.received, "kernel_drops": q.kernel_drops,
                        "unaccounted": q.unaccounted as i64,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let conversations = capture.filter().conversations().unwrap_or_default();
    let shed_packets = conversations.values().map(|c| c.packets).sum();
    let shed_bytes = conversations.values().map(|c| c.bytes).sum();
    let _ = capture.detach();
    Ok(LiveSummary {
        summary,
        kernel: KernelReport {
            attach_mode: format!("{:?}", attach.mode),
            fell_back_to_generic: attach.fell_back_to_generic,
            replaced_stale_program: attach.replaced_stale_program.is_some(),
            counters,
            queues,
            shed_conversations: conversations.len(),
            shed_packets,
            shed_bytes,
        },
    })
}

/// Starts the analyzer and one worker per queue, keeps the books until `stop`, then
/// detaches the program, lets the workers drain their rings and waits for everything.
fn capture_until_stopped(
    capture: &mut LiveCapture,
    policy: Arc<Policy>,
    mut options: ReplayOptions,
    stop: &AtomicBool,
) -> Result<Summary, Error> {
    let interface = capture.interface().to_owned();
    let sockets = capture.take_sockets();
    // The analyzer merges one stream per queue worker.
    let mut backend = pipeline::start_backend(policy, Some(sockets.len()), &mut options)?;
    let crew = Arc::new(
        queue::Crew::new(
            sockets.len(),
            backend.policy.handoff_queue,
            Arc::clone(&backend.parks),
        )
        .map_err(|source| Error::Start {
            interface: interface.clone(),
            reason: format!("eventfd: {source}"),
        })?,
    );
    let mut handles = Vec::with_capacity(sockets.len());
    let mut spawn_error = None;
    for (id, socket) in sockets.into_iter().enumerate() {
        let queue = socket.queue();
        let cpu = live::queue_cpu(&interface, queue, &backend.policy.capture_cpus);
        let worker = match backend.new_worker(id, options.reloadable_policy.as_ref()) {
            Ok(worker) => worker,
            Err(error) => {
                spawn_error = Some(error);
                break;
            }
        };
        let worker = queue::QueueWorker {
            worker,
            socket,
            cpu,
            crew: Arc::clone(&crew),
            metrics: backend.metrics.as_ref().map(|m| m.worker(id)),
        };
        let name = format!("otsensor-q{queue}");
        match thread::Builder::new()
            .name(name.clone())
            .spawn(move || worker.run())
        {
            Ok(handle) => handles.push((name, handle)),
            Err(_) => {
                spawn_error = Some(pipeline::Error::Thread("spawn queue worker"));
                break;
            }
        }
    }
    if spawn_error.is_none() {
        // Printed once the workers run: scripts and tests wait for it before sending.
        eprintln!(
            "otsensor: attached to {interface} ({:?} mode, {} queues, one worker each)",
            capture.attach_report().mode,
            handles.len()
        );
    }
    let mut books = books::Books::new(
        backend.metrics.clone(),
        backend.obs_tx.clone(),
        backend.workers,
    );
    while spawn_error.is_none() && !stop.load(Ordering::Relaxed) {
        let due = books.tick(capture);
        let nap = due.saturating_duration_since(Instant::now()).min(STOP_POLL);
        thread::sleep(nap.max(Duration::from_millis(1)));
    }
    // Nothing new arrives once the program is detached (after a grace period for a
    // NAPI poll that ran the old program and flushes its redirects at its end); the
    // workers then empty their rings.
    let _ = capture.detach();
    thread::sleep(DETACH_GRACE);
    crew.drain();
    let mut merged = WorkerReport::default();
    let mut threads = Vec::with_capacity(handles.len());
    let mut panicked = false;
    for (name, handle) in handles {
        match handle.join() {
            Ok((report, cpu)) => {
                merged.merge(&report);
                threads.extend(cpu.map(|cpu| pipeline::ThreadCpu { name, ..cpu }));
            }
            Err(_) => panicked = true,
        }
    }
    books.finish(capture);
    if let Some(error) = spawn_error {
        return Err(error.into());
    }
    if panicked {
        return Err(pipeline::Error::Thread("queue worker panicked").into());
    }
    Ok(backend.finish(merged, false, threads)?)
}
