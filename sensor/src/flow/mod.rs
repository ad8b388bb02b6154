//! Flows: symmetric 5-tuple keys, the hash that picks a flow's owning worker, and the
//! bounded per-worker [`table::FlowTable`].

pub mod handoff;
pub mod stream;
pub mod table;

use std::hash::BuildHasher;
use std::net::IpAddr;

use otsensor_wire::layers::{Frame, Mac};

/// The transport name as Suricata writes it.
pub fn proto_name(protocol: u8) -> String {
    match protocol {
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        1 => "ICMP".to_owned(),
        58 => "IPv6-ICMP".to_owned(),
        132 => "SCTP".to_owned(),
        other => other.to_string(),
    }
}

/// A flow's identity, the same for both directions: the lower (ip, port) endpoint first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_ip: IpAddr,
    pub hi_ip: IpAddr,
    pub lo_port: u16,
    pub hi_port: u16,
    pub protocol: u8,
    /// Outer VLAN id (0 untagged): the same addresses on two VLANs are two flows.
    pub vlan: u16,
}

/// Which endpoint of the key sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Lo,
    Hi,
}

impl FlowKey {
    /// The key of an IP frame and the side that sent it; `None` for non-IP frames and
    /// for later fragments (their ports are not in the packet). Inlined: returned
    /// through memory, the key was stored in pieces and read back whole, a
    /// store-forwarding stall per packet in the worker's profile.
    #[inline]
    pub fn of(frame: &Frame<'_>) -> Option<(FlowKey, Side)> {
        let (src, dst) = (frame.src_ip?, frame.dst_ip?);
        let (sport, dport) = frame.ports().unwrap_or((0, 0));
        let protocol = frame.ip_protocol();
        let side = if (src, sport) <= (dst, dport) {
            Side::Lo
        } else {
            Side::Hi
        };
        let ((lo_ip, lo_port), (hi_ip, hi_port)) = if side == Side::Lo {
            ((src, sport), (dst, dport))
        } else {
            ((dst, dport), (src, sport))
        };
        Some((
            FlowKey {
                lo_ip,
                hi_ip,
                lo_port,
                hi_port,
                protocol,
                vlan: frame.vlan[0],
            },
            side,
        ))
    }
}

/// The fixed-seed hasher: the same flow hashes the same in every run and every worker,
/// so replays are deterministic and both directions meet on one worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowHasher;

const SEED: u64 = 0x6f74_7365_6e73_6f72; // "otsensor"

impl FlowHasher {
    pub fn hash_key(&self, key: &FlowKey) -> u64 {
        foldhash::fast::FixedState::with_seed(SEED).hash_one(key)
    }

    pub fn hash_mac(&self, mac: &Mac) -> u64 {
        foldhash::fast::FixedState::with_seed(SEED).hash_one(mac)
    }
}

/// The worker (0..workers) that owns frames with this hash.
pub fn owner(hash: u64, workers: usize) -> usize {
    // Multiply-shift keeps the high bits, which the hash mixes best.
    ((u128::from(hash) * workers as u128) >> 64) as usize
}

/// The owning worker of any frame: by flow key for IP, by source MAC otherwise, so that
/// per-worker de-duplication sees each device's non-IP frames in one place.
pub fn frame_owner(frame: &Frame<'_>, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let hasher = FlowHasher;
    if let Some((key, _)) = FlowKey::of(frame) {
        return owner(hasher.hash_key(&key), workers);
    }
    match frame.src_mac {
        Some(mac) => owner(hasher.hash_mac(&mac), workers),
        None => 0,
    }
}

/// The queue a NIC without symmetric RSS would pick: a hash of the packet's ordered
/// addresses and ports, so the two directions of a flow usually land apart (each
/// direction keeps its order). Used to exercise hand-offs.
pub fn asymmetric_queue(frame: &Frame<'_>, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let ports = frame.ports().unwrap_or((0, 0));
    let hash = foldhash::fast::FixedState::with_seed(SEED ^ 0xA5A5).hash_one((
        frame.src_ip,
        frame.dst_ip,
        ports,
        frame.src_mac,
    ));
    owner(hash, workers)
}
