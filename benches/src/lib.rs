//! Shared pieces of otsensor's micro benchmarks: PDUs cut from the shared captures.

use std::path::{Path, PathBuf};

use otsensor::capture::pcap::PcapFile;
use otsensor::capture::PacketSource;
use otsensor_wire::layers::Transport;
use otsensor_wire::{self as dissect, Direction, Protocol};

/// The shared captures beside the repository.
pub fn shared_pcaps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps")
}

/// Whole PDUs of `protocol` with their direction, from every shared capture whose
/// name starts with `prefix`: TCP payloads framed with the protocol's framer per
/// segment, UDP payloads whole (as the worker hands them to `inspect`).
pub fn pdus(protocol: Protocol, prefix: &str) -> Vec<(Vec<u8>, Direction)> {
    pdus_of(protocol, prefix, false)
}

/// The Ethernet payloads of `protocol`'s EtherType (GOOSE, PROFINET real-time frames)
/// from every shared capture whose name starts with `prefix`.
pub fn l2_pdus(protocol: Protocol, prefix: &str) -> Vec<(Vec<u8>, Direction)> {
    pdus_of(protocol, prefix, true)
}

fn pdus_of(protocol: Protocol, prefix: &str, l2: bool) -> Vec<(Vec<u8>, Direction)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(shared_pcaps()) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    for file in files {
        let Ok(mut source) = PcapFile::open(&file) else {
            continue;
        };
        while let Ok(Some(packet)) = source.next_packet() {
            let frame = packet.slice();
            if protocol.is_identification() {
                // As the worker finds them: by UDP ports, EtherType, or CDP's SNAP.
                let pdu = match (frame.transport, frame.llc) {
                    (Transport::Udp { src_port, dst_port }, _)
                        if Protocol::identification_by_ports(src_port, dst_port)
                            == Some(protocol) =>
                    {
                        Some(frame.payload)
                    }
                    (_, Some(llc))
                        if protocol == Protocol::Cdp && llc.dsap == dissect::cdp::SNAP_SAP =>
                    {
                        Some(llc.payload)
                    }
                    _ if frame.src_ip.is_none()
                        && Protocol::by_ether_type(frame.ether_type) == Some(protocol) =>
                    {
                        Some(frame.payload)
                    }
                    _ => None,
                };
                if let Some(pdu) = pdu {
                    out.push((pdu.to_vec(), Direction::Request));
                }
                continue;
            }
            // Layer-2 protocols (GOOSE, PROFINET RT) are wanted with `l2` only.
            if frame.src_ip.is_none() && Protocol::by_ether_type(frame.ether_type) == Some(protocol)
            {
                if l2 {
                    out.push((frame.payload.to_vec(), Direction::Request));
                }
                continue;
            }
            if l2 {
                continue;
            }
            let (ip_protocol, ports) = match frame.transport {
                Transport::Tcp {
                    src_port, dst_port, ..
                } => (6, (src_port, dst_port)),
                Transport::Udp { src_port, dst_port } => (17, (src_port, dst_port)),
                _ => continue,
            };
            let to_server = Protocol::by_port(ip_protocol, ports.1) == Some(protocol);
            if !to_server && Protocol::by_port(ip_protocol, ports.0) != Some(protocol) {
                continue;
            }
            let direction = if to_server {
                Direction::Request
            } else {
                Direction::Response
            };
            match (ip_protocol, dissect::framer(protocol)) {
                (6, Some(frame_fn)) | (17, Some(frame_fn))
                    if !dissect::datagram_is_one_pdu(protocol) =>
                {
                    let mut rest = frame.payload;
                    while let dissect::Framing::Frame(len) = frame_fn(rest) {
                        out.push((rest[..len].to_vec(), direction));
                        rest = &rest[len..];
                    }
                }
                _ if !frame.payload.is_empty() => out.push((frame.payload.to_vec(), direction)),
                _ => {}
            }
        }
    }
    out
}
