//! `cargo xtask flood`: a flood of distinct flows generated on the fly (no capture file,
//! so the process's memory is the pipeline's), to show that the flow table stays
//! within its budget and counts what it evicts.

use std::sync::Arc;
use std::time::Instant;

use otsensor::capture::{Error, LinkType, Packet, PacketSource};
use otsensor::config::Config;
use otsensor::flow::table::FlowTable;
use otsensor::pipeline::{self, ReplayOptions};

/// TCP SYNs from ever-new (address, port) pairs outside the internal networks, so that
/// every packet starts a flow and none adds a device.
#[derive(Debug)]
pub struct FlowFlood {
    frame: [u8; 54],
    sent: u64,
    total: u64,
}

impl FlowFlood {
    pub fn new(total: u64) -> FlowFlood {
        let mut frame = [0u8; 54];
        frame[0..6].copy_from_slice(&[0x00, 0x1b, 0x1b, 0x00, 0x00, 0x01]); // to the sensor's segment
        frame[6..12].copy_from_slice(&[0x02, 0x00, 0x5e, 0x00, 0x00, 0x02]); // a gateway
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        // IPv4, 40 bytes, TCP, 100.64.0.0/10 (shared address space, not internal) to 10.0.0.1.
        frame[14..24].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6]);
        frame[26..30].copy_from_slice(&[100, 64, 0, 0]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 1]);
        frame[36..38].copy_from_slice(&502u16.to_be_bytes());
        frame[46] = 0x50; // data offset 5
        frame[47] = 0x02; // SYN
        FlowFlood {
            frame,
            sent: 0,
            total,
        }
    }
}

impl PacketSource for FlowFlood {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        if self.sent == self.total {
            return Ok(None);
        }
        let n = self.sent;
        // 22 bits of address within 100.64/10 and 16 bits of port: distinct for 2^38 flows.
        let host = (n >> 16) as u32 & 0x3F_FFFF;
        self.frame[27..30].copy_from_slice(&(host | (64 << 22)).to_be_bytes()[1..]);
        self.frame[34..36].copy_from_slice(&((n & 0xFFFF) as u16).to_be_bytes());
        self.sent += 1;
        Ok(Some(Packet {
            ts_ns: 1_700_000_000_000_000_000 + n * 1_000,
            link: LinkType::Ethernet,
            data: &self.frame,
            wire_len: 60,
        }))
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs the flood and prints the figures; returns (peak RSS, evictions, budget).
pub fn run(flows: u64, max_flows: usize, workers: usize) -> anyhow::Result<(u64, u64, usize)> {
    let mut config = Config::default();
    config.flows.max_flows = max_flows;
    config.pipeline.workers = workers;
    let policy = Arc::new(config.validate()?);
    let before = peak_rss_bytes();
    let started = Instant::now();
    let summary = pipeline::replay(&mut FlowFlood::new(flows), policy, ReplayOptions::default())?;
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_bytes();
    let budget = FlowTable::memory_budget(max_flows.div_ceil(workers)) * workers;
    let evicted = summary.counters.flows_evicted;
    println!(
        "flows        {} created, {} evicted, {} expired",
        summary.flows, evicted, summary.counters.flows_expired
    );
    println!(
        "table        max_flows {max_flows} across {workers} workers: budget {:.1} MiB",
        budget as f64 / 1048576.0
    );
    println!(
        "peak RSS     {:.1} MiB (before the run {:.1} MiB; over the budget {:.1} MiB)",
        peak as f64 / 1048576.0,
        before as f64 / 1048576.0,
        (peak as f64 - budget as f64) / 1048576.0
    );
    println!("rate         {:.2} M flows/s", flows as f64 / elapsed / 1e6);
    Ok((peak, evicted, budget))
}
