//! Project automation behind `cargo xtask`, as a library so that integration tests can
//! call the generators directly.

/// `gen-advisories`: the embedded CISA ICS advisory table from CSAF documents.
pub mod advisories;
/// `analyzer-capacity`: how many busy workers one analyzer thread keeps up with.
pub mod analyzer_capacity;
/// `replay`: the in-memory pipeline benchmark and the counting allocator.
pub mod bench;
/// `fuzz-corpus`: seed corpora for the fuzz targets, cut from the shared captures.
pub mod corpus;
/// `flood-devices`: a flood of random sources against the inventory cap.
pub mod device_flood;
/// `fleet-bench`: hub ingest rate and alert → PostgreSQL latency.
pub mod fleet_bench;
/// `fleet-lab`: NATS cluster, PostgreSQL, hub and sensors on loopback (tests use it too).
pub mod fleet_lab;
/// `flood`: distinct-flow floods generated in memory, for bounded-memory checks.
pub mod flood;
/// `gen mix`: deterministic synthetic plant captures with a ground-truth sidecar.
pub mod gen;
/// `live-bench`: zero-loss send rates of otsensor and tcpdump on a veth pair.
pub mod live_bench;
/// tshark's view of a capture (flows, devices, `oracle.py` summaries): the
/// independent check of generated captures and of the sensor's totals.
pub mod oracle;
/// `gen-oui`: the MAC vendor table from the IEEE registry.
pub mod oui;
/// `package`: the Debian package (binary, config, hardened systemd unit, user).
pub mod package;
/// The live benchmark's sender: preloaded frames over AF_PACKET, qdisc bypassed.
pub mod sender;
/// Network namespaces, veth pairs and tcpreplay for kernel tests and `live-bench`;
/// the skip rule (`SKIPPED:`, never under `CI=true`).
pub mod testlab;
/// `gen-vendors`: the CIP and BACnet vendor id tables from tshark's value strings.
pub mod vendors;
/// `xdp-bench`: the XDP pre-filter against the empty program; fails above its target.
pub mod xdp_bench;
