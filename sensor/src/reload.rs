//! Config reload (SIGHUP and `POST /api/config/reload`): the configuration file is
//! read and validated again; if it is refused, the reason is logged and returned and the
//! running policy stays in force untouched. If it is accepted, the settings that can
//! change while running (networks, allowlists, thresholds, learning, industrial ports and
//! EtherTypes, bulk action) are swapped in as one new [`Policy`] snapshot, and the
//! settings that shape threads, memory and sockets (workers, queues, flow table, UMEM,
//! rings, interface, XDP mode, outputs, HTTP) keep their running value and are reported
//! as needing a restart.
//!
//! **Order of a reload:** validate → rewrite the kernel's policy maps in place (the
//! program stays attached, so nothing is dropped) → publish the snapshot. If the kernel
//! update fails, the maps are put back and nothing is published.
//!
//! **Workers look once per batch** ([`PolicyWatch::changed`]: one atomic load), never per
//! packet; the analyzer receives the snapshot on a channel in its select loop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use crate::config::{lock, Config, Error as ConfigError, Policy, PolicySnapshots, PolicyWatch};
use crate::metrics::ConfigMetrics;

/// Why a reload was refused. The running policy is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is unreadable or invalid: the same field/line/column reason that
    /// `otsensor check-config` prints.
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("the sensor was started without --config: there is no file to re-read")]
    NoConfigFile,
    /// The kernel's tables could not be rewritten (they were put back as they were).
    #[error("cannot update the XDP program's tables: {0}")]
    Kernel(String),
    #[error("the reload thread is not running")]
    Unavailable,
}

/// What a successful reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadOutcome {
    /// The policy generation now in force (1 is the policy the sensor started with).
    pub generation: u64,
    /// Settings whose new value is now in force.
    pub changed: Vec<&'static str>,
    /// Settings whose new value differs but only takes effect after a restart; the
    /// running value is kept.
    pub needs_restart: Vec<&'static str>,
    /// Whether the XDP program's tables were rewritten.
    pub kernel_maps_updated: bool,
}

/// The current policy, shared by the reloader (writer) and the pipeline (readers): the
/// published snapshots ([`PolicySnapshots`], which the workers watch) and, live, the
/// kernel maps a reload rewrites before publishing.
pub struct SharedPolicy {
    snapshots: Arc<PolicySnapshots>,
    #[cfg(target_os = "linux")]
    kernel: Mutex<Option<crate::ebpf::PolicyMaps>>,
}

impl std::fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPolicy")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl SharedPolicy {
    /// Generation 1: the policy the sensor starts with.
    pub fn new(policy: Arc<Policy>) -> Arc<SharedPolicy> {
        Arc::new(SharedPolicy {
            snapshots: PolicySnapshots::new(policy),
            #[cfg(target_os = "linux")]
            kernel: Mutex::new(None),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.snapshots.current()
    }

    pub fn generation(&self) -> u64 {
        self.snapshots.generation()
    }

    /// A per-worker view that notices a new snapshot with one atomic load.
    pub fn watch(self: &Arc<Self>) -> PolicyWatch {
        self.snapshots.watch()
    }

    /// A channel that receives every snapshot published from now on (for a thread that
    /// waits in a `select!`, such as the analyzer).
    pub fn subscribe(&self) -> Receiver<Arc<Policy>> {
        self.snapshots.subscribe()
    }

    /// Makes `policy` current; returns its generation.
    pub fn publish(&self, policy: Arc<Policy>) -> u64 {
        self.snapshots.publish(policy)
    }

    /// Hands over the live filter's policy maps: reloads rewrite them from now on.
    #[cfg(target_os = "linux")]
    pub fn attach_kernel_maps(&self, maps: crate::ebpf::PolicyMaps) {
        *lock(&self.kernel) = Some(maps);
    }

    /// Forgets the kernel maps (the capture is ending).
    #[cfg(target_os = "linux")]
    pub fn detach_kernel_maps(&self) {
        *lock(&self.kernel) = None;
    }

    /// Rewrites the kernel maps for `policy` if a filter is attached; on failure puts
    /// the previous settings back. Returns whether there were maps to update.
    #[cfg(target_os = "linux")]
    fn update_kernel(&self, policy: &Policy) -> Result<bool, ReloadError> {
        let mut slot = lock(&self.kernel);
        let Some(maps) = slot.as_mut() else {
            return Ok(false);
        };
        let previous = maps.settings().clone();
        let mut wanted = crate::live::xdp_settings(policy);
        // Not policy: keep what the capture was started with.
        wanted.no_socket_action = previous.no_socket_action;
        wanted.mode = previous.mode;
        if wanted == previous {
            return Ok(true);
        }
        match maps.apply(&wanted) {
            Ok(()) => Ok(true),
            Err(error) => {
                let _ = maps.apply(&previous);
                Err(ReloadError::Kernel(error.to_string()))
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn update_kernel(&self, _policy: &Policy) -> Result<bool, ReloadError> {
        Ok(false)
    }
}

/// One setting: its name in the file, whether it can change while running, and whether
/// two policies differ in it.
struct Setting {
    name: &'static str,
    live: bool,
    differs: fn(&Policy, &Policy) -> bool,
}

macro_rules! setting {
    ($name:literal, $live:expr, $($field:ident).+) => {
        Setting {
            name: $name,
            live: $live,
            differs: |a, b| a.$($field).+ != b.$($field).+,
        }
    };
}

const LIVE: bool = true;
const RESTART: bool = false;

/// Every field of [`Policy`] and how a reload treats it. `docs/CONFIG.md` lists the same.
const SETTINGS: &[Setting] = &[
    setting!("networks.internal", LIVE, internal_networks),
    setting!("networks.external_allowlist", LIVE, external_allowlist),
    setting!("inventory.max_devices", LIVE, max_devices),
    setting!("learning.duration", LIVE, learning_duration_ns),
    setting!("capture.bulk_action", LIVE, bulk_action),
    setting!("capture.industrial_tcp_ports", LIVE, industrial_tcp_ports),
    setting!("capture.industrial_udp_ports", LIVE, industrial_udp_ports),
    setting!("capture.industrial_ethertypes", LIVE, industrial_ethertypes),
    setting!(
        "capture.first_packets_per_flow",
        LIVE,
        first_packets_per_flow
    ),
    setting!("detection.scan.port_scan_ports", LIVE, port_scan_ports),
    setting!(
        "detection.scan.address_scan_hosts",
        LIVE,
        address_scan_hosts
    ),
    setting!("detection.scan.discovery_sweep", LIVE, discovery_sweep),
    setting!("detection.scan.object_sweep", LIVE, object_sweep),
    setting!("detection.scan.window", LIVE, scan_window_ns),
    setting!(
        "detection.silent_device.unanswered_requests",
        LIVE,
        silent_unanswered_requests
    ),
    setting!("detection.silent_device.window", LIVE, silent_window_ns),
    setting!(
        "detection.silent_device.quiet_factor",
        LIVE,
        silent_quiet_factor
    ),
    setting!(
        "detection.silent_device.quiet_floor",
        LIVE,
        silent_quiet_floor_ns
    ),
    setting!("detection.flood.attempts", LIVE, flood_attempts),
    setting!("detection.flood.window", LIVE, flood_window_ns),
    setting!(
        "detection.engineering_workstations",
        LIVE,
        engineering_workstations
    ),
    setting!("pipeline.workers", RESTART, workers),
    setting!("pipeline.batch_packets", RESTART, batch_packets),
    setting!("pipeline.observation_queue", RESTART, observation_queue),
    setting!("pipeline.handoff_queue", RESTART, handoff_queue),
    setting!("flows.max_flows", RESTART, max_flows),
    setting!("flows.idle_timeout", RESTART, flow_idle_timeout_ns),
    setting!("flows.closed_timeout", RESTART, flow_closed_timeout_ns),
    setting!("capture.interface", RESTART, capture_interface),
    setting!("capture.xdp_mode", RESTART, xdp_mode),
    setting!("capture.umem_frames", RESTART, umem_frames),
    setting!("capture.ring_size", RESTART, ring_size),
    setting!("capture.cpus", RESTART, capture_cpus),
    setting!("capture.busy_poll_usecs", RESTART, busy_poll_usecs),
    setting!("capture.busy_poll_budget", RESTART, busy_poll_budget),
    setting!("outputs.eve.enabled", RESTART, eve_enabled),
    setting!("outputs.eve.path", RESTART, eve_path),
    setting!("outputs.eve.protocol_events", RESTART, eve_protocol_events),
    setting!("http.enabled", RESTART, http_enabled),
    setting!("http.listen", RESTART, http_listen),
    setting!("http.api_token_file", RESTART, http_api_token_file),
    setting!("http.allowed_hosts", RESTART, http_limits.allowed_hosts),
    setting!("http.max_connections", RESTART, http_limits.max_connections),
    setting!("http.header_timeout", RESTART, http_limits.header_timeout),
    setting!("http.idle_timeout", RESTART, http_limits.idle_timeout),
    setting!("http.request_timeout", RESTART, http_limits.request_timeout),
    setting!("http.max_body_bytes", RESTART, http_limits.max_body_bytes),
    setting!("outputs.syslog.url", RESTART, syslog_url),
    setting!("outputs.nats", RESTART, nats),
    setting!("evidence", RESTART, evidence),
    setting!("outputs.syslog.ca_file", RESTART, syslog_ca_file),
    setting!("outputs.webhook.url", RESTART, webhook_url),
    setting!("outputs.webhook.ca_file", RESTART, webhook_ca_file),
    Setting {
        name: "outputs.webhook.token",
        live: RESTART,
        differs: |a, b| {
            a.webhook_token.as_ref().map(|t| t.expose())
                != b.webhook_token.as_ref().map(|t| t.expose())
        },
    },
    Setting {
        name: "http.api_token",
        live: RESTART,
        differs: |a, b| {
            a.http_api_token.as_ref().map(|t| t.expose())
                != b.http_api_token.as_ref().map(|t| t.expose())
        },
    },
];

/// The names of the settings that reload live and of those that need a restart.
pub fn setting_names() -> (Vec<&'static str>, Vec<&'static str>) {
    let live = SETTINGS.iter().filter(|s| s.live).map(|s| s.name).collect();
    let restart = SETTINGS
        .iter()
        .filter(|s| !s.live)
        .map(|s| s.name)
        .collect();
    (live, restart)
}

/// The policy to put in force: `new` for every live setting, `running` for the rest.
/// Returns it with the names of the live settings that changed and of the
/// restart-only settings that differ (and were kept).
pub fn merge(running: &Policy, new: &Policy) -> (Policy, Vec<&'static str>, Vec<&'static str>) {
    let changed = SETTINGS
        .iter()
        .filter(|s| s.live && (s.differs)(running, new))
        .map(|s| s.name)
        .collect();
    let needs_restart = SETTINGS
        .iter()
        .filter(|s| !s.live && (s.differs)(running, new))
        .map(|s| s.name)
        .collect();
    // Exhaustive on purpose: a new `Policy` field does not compile until it is
    // classified here (and in SETTINGS and docs/CONFIG.md).
    let Policy {
        workers: _,
        batch_packets: _,
        observation_queue: _,
        handoff_queue: _,
        max_flows: _,
        flow_idle_timeout_ns: _,
        flow_closed_timeout_ns: _,
        internal_networks,
        max_devices,
        external_allowlist,
        learning_duration_ns,
        capture_interface: _,
        xdp_mode: _,
        bulk_action,
        industrial_tcp_ports,
        industrial_udp_ports,
        industrial_ethertypes,
        umem_frames: _,
        ring_size: _,
        first_packets_per_flow,
        capture_cpus: _,
        busy_poll_usecs: _,
        busy_poll_budget: _,
        eve_enabled: _,
        eve_path: _,
        eve_protocol_events: _,
        port_scan_ports,
        address_scan_hosts,
        discovery_sweep,
        object_sweep,
        scan_window_ns,
        silent_unanswered_requests,
        silent_window_ns,
        silent_quiet_factor,
        silent_quiet_floor_ns,
        flood_attempts,
        flood_window_ns,
        engineering_workstations,
        http_enabled: _,
        http_listen: _,
        http_api_token: _,
        http_api_token_file: _,
        http_limits: _,
        syslog_url: _,
        syslog_ca_file: _,
        webhook_url: _,
        webhook_token: _,
        webhook_ca_file: _,
        nats: _,
        evidence: _,
    } = new.clone();
    let merged = Policy {
        internal_networks,
        external_allowlist,
        max_devices,
        learning_duration_ns,
        bulk_action,
        industrial_tcp_ports,
        industrial_udp_ports,
        industrial_ethertypes,
        first_packets_per_flow,
        port_scan_ports,
        address_scan_hosts,
        discovery_sweep,
        object_sweep,
        scan_window_ns,
        silent_unanswered_requests,
        silent_window_ns,
        silent_quiet_factor,
        silent_quiet_floor_ns,
        flood_attempts,
        flood_window_ns,
        engineering_workstations,
        ..running.clone()
    };
    (merged, changed, needs_restart)
}

/// Re-reads the configuration file and puts it in force (see the module docs).
#[derive(Debug)]
pub struct Reloader {
    config_path: Option<PathBuf>,
    /// `--workers` given on the command line: applied to every re-read file, as at start.
    workers_override: Option<usize>,
    shared: Arc<SharedPolicy>,
    metrics: Option<ConfigMetrics>,
}

impl Reloader {
    pub fn new(
        config_path: Option<PathBuf>,
        workers_override: Option<usize>,
        shared: Arc<SharedPolicy>,
        metrics: Option<ConfigMetrics>,
    ) -> Reloader {
        if let Some(metrics) = &metrics {
            metrics.generation.set(shared.generation() as i64);
        }
        Reloader {
            config_path,
            workers_override,
            shared,
            metrics,
        }
    }

    pub fn shared(&self) -> &Arc<SharedPolicy> {
        &self.shared
    }

    /// One reload, counted in `otsensor_config_reloads_total{result}`.
    pub fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let result = self.try_reload();
        if let Some(metrics) = &self.metrics {
            let label = if result.is_ok() { "ok" } else { "error" };
            metrics.reloads.with_label_values(&[label]).inc();
            if result.is_ok() {
                metrics.generation.set(self.shared.generation() as i64);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                metrics.last_reload.set(now.as_secs_f64());
            }
        }
        result
    }

    fn try_reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let mut config = Config::load(path)?;
        if let Some(workers) = self.workers_override {
            config.pipeline.workers = workers;
        }
        let new = config.validate().map_err(|error| ConfigError::File {
            path: path.display().to_string(),
            error: Box::new(error),
        })?;
        let running = self.shared.current();
        let (merged, changed, needs_restart) = merge(&running, &new);
        let kernel_maps_updated = self.shared.update_kernel(&merged)?;
        let generation = if changed.is_empty() {
            self.shared.generation()
        } else {
            self.shared.publish(Arc::new(merged))
        };
        Ok(ReloadOutcome {
            generation,
            changed,
            needs_restart,
            kernel_maps_updated,
        })
    }

    /// Reloads and logs the result to standard error: `config reloaded ...` or
    /// `config reload refused: <reason>` (service managers and tests look for these).
    pub fn reload_and_log(&self, trigger: &str) -> Result<ReloadOutcome, ReloadError> {
        let result = self.reload();
        match &result {
            Ok(outcome) => {
                eprintln!(
                    "otsensor: config reloaded ({trigger}): generation {}, changed [{}], needs restart [{}]",
                    outcome.generation,
                    outcome.changed.join(", "),
                    outcome.needs_restart.join(", ")
                );
                if !outcome.needs_restart.is_empty() {
                    eprintln!(
                        "otsensor: warning: kept the running value of [{}] until a restart",
                        outcome.needs_restart.join(", ")
                    );
                }
            }
            Err(error) => {
                // The reason alone on the line, exactly as `check-config` prints it.
                eprintln!("otsensor: config reload refused: {error}");
                eprintln!("otsensor: keeping the running configuration");
            }
        }
        result
    }
}

/// A request to reload, from the API (with a reply slot) or from SIGHUP (without).
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: Option<Sender<Result<ReloadOutcome, ReloadError>>>,
}

/// The `otsensor-reload` thread (serialises reloads) and the SIGHUP listener feeding it.
#[derive(Debug)]
pub struct ReloadService {
    requests: Sender<ReloadRequest>,
    signals: Option<signal_hook::iterator::Handle>,
    threads: Vec<JoinHandle<()>>,
}

/// How long the API waits for a reload before giving up.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

impl ReloadService {
    /// Starts the reload thread; with `on_sighup`, SIGHUP triggers a reload too.
    pub fn start(reloader: Reloader, on_sighup: bool) -> std::io::Result<ReloadService> {
        let (tx, rx) = request_channel();
        Self::start_with_channel(reloader, tx, rx, on_sighup)
    }

    /// As [`ReloadService::start`], on a channel made beforehand with
    /// [`request_channel`] (so the HTTP server can be given its sender first).
    pub fn start_with_channel(
        reloader: Reloader,
        tx: Sender<ReloadRequest>,
        rx: Receiver<ReloadRequest>,
        on_sighup: bool,
    ) -> std::io::Result<ReloadService> {
        let worker = thread::Builder::new()
            .name("otsensor-reload".into())
            .spawn(move || {
                for request in rx {
                    let trigger = if request.reply.is_some() {
                        "API"
                    } else {
                        "SIGHUP"
                    };
                    let result = reloader.reload_and_log(trigger);
                    if let Some(reply) = request.reply {
                        let _ = reply.try_send(result);
                    }
                }
            })?;
        let mut threads = vec![worker];
        let mut handle = None;
        if on_sighup {
            let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
            handle = Some(signals.handle());
            let forward = tx.clone();
            threads.push(
                thread::Builder::new()
                    .name("otsensor-sighup".into())
                    .spawn(move || {
                        for _ in signals.forever() {
                            // Full means reloads are already queued: one more adds nothing.
                            let _ = forward.try_send(ReloadRequest { reply: None });
                        }
                    })?,
            );
        }
        Ok(ReloadService {
            requests: tx,
            signals: handle,
            threads,
        })
    }

    /// Where the API sends its requests.
    pub fn requests(&self) -> Sender<ReloadRequest> {
        self.requests.clone()
    }

    /// Stops listening for SIGHUP and ends the reload thread once every requester
    /// (the API) has let go.
    pub fn stop(self) {
        if let Some(handle) = &self.signals {
            handle.close();
        }
        drop(self.requests);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The channel of reload requests (bounded: a burst of SIGHUPs collapses).
pub fn request_channel() -> (Sender<ReloadRequest>, Receiver<ReloadRequest>) {
    crossbeam_channel::bounded(16)
}

/// Sends a reload request and waits for its outcome (the API's side).
pub fn request_reload(requests: &Sender<ReloadRequest>) -> Result<ReloadOutcome, ReloadError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    requests
        .send_timeout(ReloadRequest { reply: Some(tx) }, RELOAD_TIMEOUT)
        .map_err(|_| ReloadError::Unavailable)?;
    rx.recv_timeout(RELOAD_TIMEOUT)
        .map_err(|_| ReloadError::Unavailable)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        Config::from_yaml(yaml)
            .and_then(|c| c.validate())
            .expect("valid config")
    }

    #[test]
    fn merge_takes_live_settings_and_keeps_restart_ones() {
        let running = policy("pipeline: {workers: 2}\n");
        let new = policy(
            "pipeline: {workers: 4}\nnetworks: {internal: [10.9.0.0/16]}\n\
             capture: {industrial_tcp_ports: [502, 5020], ring_size: 4096, umem_frames: 8192}\n",
        );
        let (merged, changed, needs_restart) = merge(&running, &new);
        assert_eq!(merged.workers, 2);
        assert_eq!(merged.ring_size, running.ring_size);
        assert_eq!(merged.industrial_tcp_ports, vec![502, 5020]);
        assert!(merged.is_internal("10.9.1.1".parse().expect("ip")));
        assert!(!merged.is_internal("192.168.1.1".parse().expect("ip")));
        assert_eq!(
            changed,
            vec!["networks.internal", "capture.industrial_tcp_ports"]
        );
        assert_eq!(
            needs_restart,
            vec![
                "pipeline.workers",
                "capture.umem_frames",
                "capture.ring_size"
            ]
        );
    }

    #[test]
    fn every_policy_field_is_classified() {
        // `merge` destructures `Policy` exhaustively; SETTINGS must name each.
        assert_eq!(SETTINGS.len(), 55);
        let (live, restart) = setting_names();
        assert_eq!(
            live.len(),
            21,
            "the 21 fields `merge` takes from the new file"
        );
        assert_eq!(restart.len(), 34);
        let doc = include_str!("../../docs/CONFIG.md");
        for setting in SETTINGS {
            assert!(
                doc.contains(&format!("`{}`", setting.name)),
                "{} missing from docs/CONFIG.md",
                setting.name
            );
        }
    }

    /// Publishes `next` when the pipeline asks for its first packet: every worker and
    /// the analyzer must then work under `next` for the whole capture.
    struct ReloadOnFirstPacket<'a> {
        inner: crate::capture::memory::MemorySource<'a>,
        shared: Arc<SharedPolicy>,
        next: Option<Policy>,
    }

    impl crate::capture::PacketSource for ReloadOnFirstPacket<'_> {
        fn next_packet(
            &mut self,
        ) -> Result<Option<crate::capture::Packet<'_>>, crate::capture::Error> {
            if let Some(next) = self.next.take() {
                self.shared.publish(Arc::new(next));
            }
            self.inner.next_packet()
        }
    }

    fn analyzer_json(summary: &crate::pipeline::Summary) -> serde_json::Value {
        let mut value = serde_json::to_value(&summary.analyzer).expect("json");
        if let Some(map) = value.as_object_mut() {
            map.remove("alert_latency_ns");
        }
        value
    }

    #[test]
    fn a_published_policy_reaches_workers_and_analyzer_of_a_running_pipeline() {
        use crate::capture::memory::MemoryCapture;
        use crate::capture::pcap::PcapFiles;
        use crate::pipeline::{replay, ReplayOptions};
        let file = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/pcaps/modbus-polling-fc3.pcap"
        ));
        let mut files = PcapFiles::open(&[file]).expect("capture");
        let capture = MemoryCapture::load(&mut files).expect("load");
        let old = policy("learning: {duration: 0s}\npipeline: {workers: 2}\n");
        let new = policy(
            "learning: {duration: 0s}\npipeline: {workers: 2}\nnetworks: {internal: [198.51.100.0/24]}\n",
        );
        let run = |start: &Policy, reload_to: Option<&Policy>| {
            let shared = SharedPolicy::new(Arc::new(start.clone()));
            let mut source = ReloadOnFirstPacket {
                inner: capture.source(),
                shared: Arc::clone(&shared),
                next: reload_to.cloned(),
            };
            let options = ReplayOptions {
                reloadable_policy: Some(shared),
                ..Default::default()
            };
            replay(&mut source, Arc::new(start.clone()), options).expect("replay")
        };
        let under_old = analyzer_json(&run(&old, None));
        let under_new = analyzer_json(&run(&new, None));
        assert_ne!(
            under_old, under_new,
            "the capture must tell the policies apart"
        );
        let reloaded = analyzer_json(&run(&old, Some(&new)));
        assert_eq!(reloaded, under_new);
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn invalid_config_is_refused_and_the_old_policy_stays() {
        let dir = std::env::temp_dir().join(format!("otsensor-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = write(&dir, "a.yaml", "networks: {internal: [10.1.0.0/16]}\n");
        let start = Config::load(&path)
            .and_then(|c| c.validate())
            .expect("valid");
        let shared = SharedPolicy::new(Arc::new(start));
        let mut watch = shared.watch();
        let updates = shared.subscribe();
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let config_metrics = metrics.config_metrics().expect("config metrics");
        let reloader = Reloader::new(
            Some(path.clone()),
            None,
            Arc::clone(&shared),
            Some(config_metrics),
        );

        // Invalid: a bad CIDR on line 2.
        std::fs::write(&path, "networks:\n  internal: [10.1.0.0/33]\n").expect("write");
        let error = reloader.reload().expect_err("refused");
        let reason = error.to_string();
        assert!(reason.contains("networks.internal[0]"), "{reason}");
        assert!(reason.contains("line 2"), "{reason}");
        assert_eq!(shared.generation(), 1);
        assert!(watch.changed().is_none());
        assert!(updates.try_recv().is_err());
        assert!(shared
            .current()
            .is_internal("10.1.2.3".parse().expect("ip")));

        // Valid: the worker's watch and the analyzer's channel both see the new policy.
        std::fs::write(&path, "networks: {internal: [10.2.0.0/16]}\n").expect("write");
        let outcome = reloader.reload().expect("reloaded");
        assert_eq!(outcome.generation, 2);
        assert_eq!(outcome.changed, vec!["networks.internal"]);
        let seen = watch.changed().expect("new policy");
        assert!(seen.is_internal("10.2.0.1".parse().expect("ip")));
        assert!(watch.changed().is_none());
        let sent = updates.try_recv().expect("analyzer update");
        assert!(!sent.is_internal("10.1.2.3".parse().expect("ip")));

        let text = metrics.render().expect("render");
        assert!(
            text.contains("otsensor_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("otsensor_config_reloads_total{result=\"error\"} 1"));
        assert!(text.contains("otsensor_config_generation 2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
