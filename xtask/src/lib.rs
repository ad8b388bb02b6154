//! Project automation behind `cargo xtask`, as a library so that integration tests can
//! call the generators directly.

/// `replay`: the in-memory pipeline benchmark and the counting allocator.
pub mod bench;
/// `fuzz-corpus`: seed corpora for the fuzz targets, cut from the shared captures.
pub mod corpus;
/// `flood-devices`: a flood of random sources against the inventory cap.
pub mod device_flood;
/// `flood`: distinct-flow floods generated in memory, for bounded-memory checks.
pub mod flood;
/// `gen mix`: deterministic synthetic plant captures with a ground-truth sidecar.
pub mod gen;
/// `live-bench`: zero-loss send rates of otsensor and tcpdump on a veth pair.
pub mod live_bench;
/// `gen-oui`: the MAC vendor table from the IEEE registry.
pub mod oui;
/// `package`: the Debian package (binary, config, hardened systemd unit, user).
pub mod package;
/// The live benchmark's sender: preloaded frames over AF_PACKET, qdisc bypassed.
pub mod sender;
/// `gen-vendors`: the CIP and BACnet vendor id tables from tshark's value strings.
pub mod vendors;
