//! `otsensor run`: live capture on one interface through the same pipeline as replay.
//! Maps the policy onto the XDP and socket settings, turns start-up failures into
//! messages an installer can act on, and adds the kernel's books to the summary.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

use crate::capture::afxdp::{SocketSettings, ZeroCopy};
use crate::capture::live::{LiveCapture, StartError};
use crate::config::{BulkAction, Policy, XdpMode};
use crate::ebpf::{AttachMode, ShedAction, XdpSettings};
use crate::pipeline::{self, ReplayOptions, Summary};

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
        ..SocketSettings::default()
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
/// pipeline, detaches the program and reports.
pub fn run(
    interface: &str,
    policy: Arc<Policy>,
    options: ReplayOptions,
    stop: Arc<AtomicBool>,
) -> Result<LiveSummary, Error> {
    run_after_attach(interface, policy, stop, move || Ok(options))
}

/// [`run`], with the pipeline's options made by `after_attach` on this thread once the
/// program is attached and the sockets are open, before any pipeline thread starts.
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
    let mut capture =
        LiveCapture::start(interface, &xdp, &sockets, stop).map_err(|e| explain(interface, e))?;
    let mut options = after_attach().map_err(|reason| Error::AfterAttach {
        interface: interface.to_owned(),
        reason,
    })?;
    let attach = capture.attach_report();
    eprintln!(
        "otsensor: attached to {interface} ({:?} mode, {} queues)",
        attach.mode,
        capture.sockets().len()
    );
    if attach.fell_back_to_generic {
        eprintln!("otsensor: warning: {interface}: the driver has no native XDP; using generic mode (slower)");
    }
    options.live = true;
    if let Some(metrics) = &options.metrics {
        capture.set_metrics(Arc::clone(metrics));
    }
    // Config reload rewrites the kernel's policy maps in place through these handles.
    let reloadable = options.reloadable_policy.clone();
    if let Some(shared) = &reloadable {
        let maps = capture
            .filter()
            .policy_maps()
            .map_err(|e| explain(interface, StartError::from(e)))?;
        shared.attach_kernel_maps(maps);
    }
    let summary = pipeline::replay(&mut capture, policy, options);
    if let Some(shared) = &reloadable {
        shared.detach_kernel_maps();
    }
    let summary = summary?;
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
