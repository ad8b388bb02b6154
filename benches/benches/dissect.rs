//! ns per PDU for each dissector's whole inspection (`new_checked`, statistics,
//! request/response matching, observations), on PDUs cut from the shared captures,
//! against a baseline measured in the same run: touching every PDU's bytes (a sum).
//! Run: `cargo bench -p otsensor-benches --bench dissect`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use otsensor::inspect::dnp3;
use otsensor::inspect::{AppState, FlowInfo, Outputs, PduCtx, ProtocolStats, RecentCache};
use otsensor::observe::{Delivery, ObservationSink};
use otsensor_benches::{l2_pdus, pdus};
use otsensor_wire::Protocol;

const ROUNDS: usize = 200;

fn main() {
    let cases = [
        (Protocol::Modbus, "modbus"),
        (Protocol::Dnp3, "dnp3"),
        (Protocol::Bacnet, "bacnet"),
        (Protocol::Enip, "enip"),
        (Protocol::S7comm, "s7comm"),
        // Port 102: the ISO-on-TCP dispatcher tells these apart per COTP DT.
        (Protocol::S7comm, "s7commplus"),
        (Protocol::S7comm, "mms"),
        (Protocol::Iec104, "iec104"),
        (Protocol::OpcUa, "opcua"),
        (Protocol::Mqtt, "mqtt"),
        // IT identification protocols, from the captures that carry them.
        (Protocol::Dhcp, "profinet-mixed"),
        (Protocol::Lldp, "profinet-mixed"),
        (Protocol::Cdp, "enip-cl5000"),
        (Protocol::Nbns, "profinet-mixed"),
        (Protocol::Mdns, "opcua-open62541-discovery"),
        (Protocol::Profinet, "profinet"),
        (Protocol::Goose, "goose"),
    ];
    println!(
        "{:<10} {:>8} {:>12} {:>14} {:>8}",
        "protocol", "PDUs", "ns/PDU", "baseline ns", "ratio"
    );
    for (protocol, prefix) in cases {
        // GOOSE is layer 2 only; PROFINET has IO-CM over UDP and real-time frames.
        let l2 = protocol == Protocol::Goose;
        let pdus = if l2 {
            l2_pdus(protocol, prefix)
        } else {
            pdus(protocol, prefix)
        };
        // The port-102 cases run through the S7comm dispatcher: name them by capture.
        let label = if protocol == Protocol::S7comm {
            prefix
        } else {
            protocol.name()
        };
        bench(protocol, label, prefix, &pdus, l2);
        if protocol == Protocol::Profinet {
            bench(protocol, "pn-rt", prefix, &l2_pdus(protocol, prefix), true);
        }
    }
}

/// Times `inspect` on `pdus` against the byte-sum baseline; `l2`: the PDUs are
/// Ethernet payloads without IP (the worker's EtherType path, IP protocol 0).
fn bench(
    protocol: Protocol,
    label: &str,
    prefix: &str,
    pdus: &[(Vec<u8>, otsensor_wire::Direction)],
    l2: bool,
) {
    {
        if pdus.is_empty() {
            println!("{prefix:<8} no PDUs (is ../shared beside the repository?)");
            return;
        }
        let total = (pdus.len() * ROUNDS) as f64;
        // Baseline: read every byte of every PDU.
        let started = Instant::now();
        let mut sum = 0u64;
        for _ in 0..ROUNDS {
            for (pdu, _) in pdus {
                sum = sum.wrapping_add(pdu.iter().map(|&b| u64::from(b)).sum::<u64>());
            }
        }
        black_box(sum);
        let baseline = started.elapsed().as_nanos() as f64 / total;

        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sink = ObservationSink::new(tx, Delivery::DropWhenFull);
        let mut recent = RecentCache::new(16_384, 60_000_000_000);
        let mut stats = ProtocolStats::default();
        let mut pool = dnp3::ReassemblyPool::new(64);
        let mut segments = otsensor::inspect::reassembly::SegmentPool::new(16);
        let mut state = AppState::default();
        let host = |last| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 0);
        let info = FlowInfo {
            flow_id: 1,
            client: host(1),
            server: host(2),
            client_mac: None,
            server_mac: None,
            ip_protocol: if l2 { 0 } else { 6 },
            vlan: 0,
        };
        let started = Instant::now();
        for round in 0..ROUNDS {
            for (index, (pdu, direction)) in pdus.iter().enumerate() {
                let mut ctx = PduCtx {
                    ts_ns: (round * pdus.len() + index) as u64 * 1_000,
                    direction: *direction,
                    flow: &info,
                    state: &mut state,
                    stats: &mut stats,
                    out: Outputs {
                        observations: &mut sink,
                        recent: &mut recent,
                        events: None,
                    },
                    dnp3: &mut pool,
                    segments: &mut segments,
                };
                otsensor::inspect::inspect(protocol, pdu, &mut ctx);
            }
            while rx.try_recv().is_ok() {}
        }
        let per_pdu = started.elapsed().as_nanos() as f64 / total;
        black_box(&stats);
        println!(
            "{label:<10} {:>8} {per_pdu:>12.1} {baseline:>14.1} {:>8.1}",
            pdus.len(),
            per_pdu / baseline.max(0.01)
        );
    }
}
