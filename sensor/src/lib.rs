//! otsensor: a passive security sensor for industrial (OT) and IoT networks.
//!
//! Packets come from a [`capture`] source, are sliced by [`layers`], owned per flow by
//! one [`worker`] (symmetric [`flow`] hash), dissected by [`dissect`], and turned into
//! [`observe::Observation`]s that the single [`analyze`] thread folds into inventory and
//! alerts. [`pipeline`] wires the threads; [`output`] writes events.

/// The analyzer thread: inventory, counts and (later) detections.
pub mod analyze;
/// Packet sources: pcap/pcapng files (and, later, AF_XDP) behind one interface.
pub mod capture;
/// The YAML configuration, validated into an immutable `Policy`.
pub mod config;
/// The control seam: requests from the HTTP server to the owner of inventory and alerts.
pub mod control;
/// The detection catalogue and the `Alert` record.
pub mod detect;
/// Industrial protocol dissectors: typed zero-copy views over PDUs.
pub mod dissect;
/// The XDP pre-filter's loader: embedded object, attach, maps, counters (Linux).
#[cfg(target_os = "linux")]
pub mod ebpf;
/// Symmetric 5-tuple keys and hashing, and the bounded per-worker flow table.
pub mod flow;
/// axum: `/metrics`, the JSON API and the embedded dashboard; one `ApiError` type.
pub mod http;
/// L2–L4 slicing of one frame (etherparse) into the fields the pipeline keys on.
pub mod layers;
/// Every Prometheus metric, defined in one place (documented in `docs/METRICS.md`).
pub mod metrics;
/// `Observation`: the only message from workers to the analyzer.
pub mod observe;
/// Event writers and alert sinks: EVE JSON lines, syslog CEF, webhook.
pub mod output;
/// Threads and channels: reader, workers, analyzer; clean draining shutdown.
pub mod pipeline;
/// The per-queue worker loop: owns its flows, de-dup cache and counters.
pub mod worker;
