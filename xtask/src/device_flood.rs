//! `cargo xtask flood --sources N`: a flood of frames from N random source MACs and
//! distinct scattered internal IPv4 addresses, built in memory and run through the whole pipeline, to
//! show that the inventory stays bounded: it stops at `inventory.max_devices`, counts
//! the overflow, and raises one `inventory_full` alert. Prints the peak RSS.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use otsensor::capture::memory::MemoryCapture;
use otsensor::capture::{LinkType, Packet};
use otsensor::config::Config;
use otsensor::pipeline::{replay, ReplayOptions, Summary};

use crate::gen::wire::{self, FrameSpec, Net, L2};

/// What a flood run reports.
#[derive(Debug)]
pub struct FloodReport {
    pub summary: Summary,
    /// VmHWM of this process after the run, in KiB (0 where /proc is absent).
    pub peak_rss_kib: u64,
}

/// One UDP frame per source: a random locally administered unicast MAC and a random
/// address in 10.0.0.0/8, to one fixed server.
pub fn build(sources: u64, seed: u64) -> Result<MemoryCapture> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut capture = MemoryCapture::default();
    let mut frame = Vec::with_capacity(128);
    let start_ns = 1_709_532_000_000_000_000u64;
    for i in 0..sources {
        let mut mac: wire::Mac = rng.random();
        mac[0] = (mac[0] & 0xfc) | 0x02;
        // A bijection of 0..2^24 (odd multiplier): scattered like random addresses, but
        // never repeated, so no two sources share an address (no `ip_conflict`).
        let host = ((i + 1).wrapping_mul(0x9E_3779) & 0x00ff_ffff) as u32;
        let ip = Ipv4Addr::from(0x0a00_0000 | host);
        let spec = FrameSpec {
            l2: L2 {
                src: mac,
                dst: [0x00, 0x1b, 0x1b, 0, 0, 1],
                vlan: 0,
            },
            net: Net::Udp {
                src: IpAddr::V4(ip),
                dst: IpAddr::V4(Ipv4Addr::new(10, 255, 255, 1)),
                sport: 40_000,
                dport: 9_999,
                payload: Vec::new(),
            },
        };
        wire::encode(&spec, i as u16, &mut frame)?;
        capture.push(&Packet {
            ts_ns: start_ns + i * 1_000,
            link: LinkType::Ethernet,
            data: &frame,
            wire_len: frame.len() as u32,
        });
    }
    Ok(capture)
}

/// Peak resident set size of this process (VmHWM), KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Builds and runs a flood of `sources` with the inventory capped at `max_devices`.
pub fn run(sources: u64, max_devices: usize, workers: usize) -> Result<FloodReport> {
    let capture = build(sources, 11)?;
    let mut config = Config::default();
    config.inventory.max_devices = max_devices;
    config.pipeline.workers = workers;
    let policy = Arc::new(config.validate()?);
    let mut source = capture.source();
    let summary = replay(&mut source, policy, ReplayOptions::default())
        .map_err(|e| anyhow!("flood replay: {e}"))?;
    Ok(FloodReport {
        summary,
        peak_rss_kib: peak_rss_kib(),
    })
}
