//! `cargo xtask xdp-bench`: the XDP pre-filter's cost per frame against the empty XDP
//! program, both run by the kernel with `BPF_PROG_TEST_RUN` in the same run
//! (alternating rounds, the least disturbed round kept), on every kind of frame the
//! filter decides differently about. Fails (non-zero exit) when any frame costs more
//! than the empty program plus the target (DESIGN: ≤ empty + 75 ns), so the claim in
//! `docs/BENCHMARKS.md` is checked, not only printed. Needs root (CAP_BPF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};

use crate::gen::wire::{self, tcp_flags, FrameSpec, Net, L2};

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub struct XdpBench {
    /// Runs per round inside the kernel.
    pub repeat: u32,
    /// Alternating rounds (program, empty); the minimum of each is kept.
    pub rounds: u32,
    /// The allowed cost over the empty program, ns per frame.
    pub target_ns: f64,
}

/// One frame's result.
#[derive(Debug, Clone)]
pub struct FrameCost {
    pub name: &'static str,
    pub program_ns: f64,
    pub empty_ns: f64,
    /// The program's XDP action (1 drop, 2 pass, 4 redirect).
    pub action: u32,
}

impl FrameCost {
    pub fn over_empty_ns(&self) -> f64 {
        self.program_ns - self.empty_ns
    }
}

const HMI: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const PLC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const BACKUP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 30);
const MAC_A: wire::Mac = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: wire::Mac = [0x02, 0, 0, 0, 0, 0x0b];

fn tcp(src: IpAddr, dst: IpAddr, ports: (u16, u16), flags: u8, len: usize, vlan: u16) -> FrameSpec {
    FrameSpec {
        l2: L2 {
            src: MAC_A,
            dst: MAC_B,
            vlan,
        },
        net: Net::Tcp {
            src,
            dst,
            sport: ports.0,
            dport: ports.1,
            seq: 1000,
            ack: 1,
            flags,
            window: 8192,
            mss: false,
            payload: vec![0x5a; len],
        },
    }
}

fn udp(src: IpAddr, dst: IpAddr, ports: (u16, u16), len: usize, vlan: u16) -> FrameSpec {
    FrameSpec {
        l2: L2 {
            src: MAC_A,
            dst: MAC_B,
            vlan,
        },
        net: Net::Udp {
            src,
            dst,
            sport: ports.0,
            dport: ports.1,
            payload: vec![0x5a; len],
        },
    }
}

/// The frames measured: industrial (to user space), bulk (shed), both over VLAN IPv6,
/// and an ARP frame.
pub fn frames() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let (hmi, plc, backup) = (IpAddr::V4(HMI), IpAddr::V4(PLC), IpAddr::V4(BACKUP));
    let v6a: IpAddr = IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>()?);
    let v6b: IpAddr = IpAddr::V6("2001:db8::2".parse::<Ipv6Addr>()?);
    let ack_psh = tcp_flags::ACK | tcp_flags::PSH;
    let specs = vec![
        (
            "industrial (Modbus/TCP 502)",
            tcp(hmi, plc, (40000, 502), ack_psh, 12, 0),
        ),
        (
            "bulk (TCP 445 established, 1514 B)",
            tcp(hmi, backup, (40000, 445), tcp_flags::ACK, 1460, 0),
        ),
        (
            "bulk min-size (UDP 9000)",
            udp(hmi, backup, (40002, 9000), 18, 0),
        ),
        (
            "VLAN IPv6 industrial (OPC UA TCP 4840)",
            tcp(v6a, v6b, (50000, 4840), tcp_flags::ACK, 16, 10),
        ),
        (
            "VLAN IPv6 bulk (UDP 9000)",
            udp(v6a, v6b, (50000, 9000), 16, 10),
        ),
        (
            "ARP request",
            FrameSpec {
                l2: L2 {
                    src: MAC_A,
                    dst: wire::BROADCAST_MAC,
                    vlan: 0,
                },
                net: Net::Arp {
                    operation: 1,
                    sender_mac: MAC_A,
                    sender_ip: HMI,
                    target_mac: [0; 6],
                    target_ip: PLC,
                },
            },
        ),
    ];
    specs
        .into_iter()
        .map(|(name, spec)| {
            let mut out = Vec::new();
            wire::encode(&spec, 1, &mut out).with_context(|| format!("encoding {name}"))?;
            Ok((name, out))
        })
        .collect()
}

/// Measures every frame; prints a table; returns the results.
pub fn run(bench: &XdpBench) -> Result<Vec<FrameCost>> {
    let mut results = Vec::new();
    println!(
        "| frame | program ns | empty ns | program − empty | target ≤ {:.0} ns |",
        bench.target_ns
    );
    println!("|---|---|---|---|---|");
    for (name, frame) in frames()? {
        let result = otsensor::ebpf::bench_pair(&frame, bench.repeat, bench.rounds)
            .with_context(|| format!("BPF_PROG_TEST_RUN on {name} (needs root)"))?;
        let cost = FrameCost {
            name,
            program_ns: result.program.as_nanos() as f64,
            empty_ns: result.empty.as_nanos() as f64,
            action: result.action,
        };
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {} |",
            cost.program_ns,
            cost.empty_ns,
            cost.over_empty_ns(),
            if cost.over_empty_ns() <= bench.target_ns {
                "ok"
            } else {
                "OVER"
            }
        );
        results.push(cost);
    }
    Ok(results)
}

/// The frames over target, for the exit status.
pub fn over_target(results: &[FrameCost], target_ns: f64) -> Vec<&FrameCost> {
    results
        .iter()
        .filter(|cost| cost.over_empty_ns() > target_ns)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_and_differ() {
        let frames = frames().expect("frames");
        assert_eq!(frames.len(), 6);
        // VLAN-tagged frames carry 0x8100 after the MACs.
        let (_, vlan) = &frames[3];
        assert_eq!(&vlan[12..14], &[0x81, 0x00]);
        assert!(frames.iter().all(|(_, f)| f.len() >= 60));
    }

    #[test]
    fn over_target_is_strictly_greater() {
        let cost = |program_ns| FrameCost {
            name: "x",
            program_ns,
            empty_ns: 10.0,
            action: 2,
        };
        let results = [cost(85.0), cost(85.5), cost(20.0)];
        let over = over_target(&results, 75.0);
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].program_ns, 85.5);
    }
}
