//! The ground truth of a generated capture, computed from the frames as written (each
//! frame is sliced again after encoding), by the pipeline's own definitions:
//!
//! - **flows**: distinct (unordered pair of (ip, port) endpoints, IP protocol, outer
//!   VLAN id) over non-fragment IP packets. The tracker also applies the flow table's
//!   default timeouts (idle 600 s, 30 s after FIN both ways or RST) and counts a key
//!   that comes back after its flow ended as a *split*; the generator refuses to finish
//!   with splits, or with any flow idle for more than 300 s between two packets, so
//!   every flow counts exactly once with any idle timeout of 300 s or more.
//! - **devices**: internal unicast IP addresses (RFC 1918, 169.254/16, fc00::/7,
//!   fe80::/10) seen as an IP source or as an ARP sender, plus unicast source MACs
//!   that never carried such an address (`otsensor::analyze` module doc).
//! - **protocols / functions**: PDUs counted when the segment completing them is
//!   written (keys below).
//!
//! # Function keys
//!
//! modbus: decimal function code without the exception bit (`"3"`); dnp3: application
//! function code (`"1"`, `"129"`); bacnet: `"<apdu kind>/<service>"` with kinds
//! `confirmed`, `unconfirmed`, `complex_ack`, `error` and the decimal service choice
//! (`"confirmed/12"` = ReadProperty); enip: `"command/0x%04x"` per encapsulation message
//! and `"cip/0x%02x"` per CIP message (reply bit included: `"cip/0x8e"`); s7comm:
//! `"<rosctr>/<function>"` in decimal (`"1/240"` setup job, `"3/4"` read ack);
//! s7commplus: `"<opcode>/<function>"` in decimal (`"49/1356"` GetMultiVariables
//! request, `"50/1356"` its response); iec104:
//! `"I/<type id>"`, `"S"`, `"U"`; opcua: the message type (`"HEL"`, `"OPN"`, `"CLO"`)
//! or `"MSG/<service encoding id>"`; mqtt: the decimal control packet type; goose:
//! `"goose"`; profinet: `"dcp/<service id>/<service type>"` for DCP and
//! `"pn_rt+pn_io"` for cyclic data; mms: tshark's PDU name, with `"/<service>"` (the
//! decimal CHOICE tag) for confirmed and unconfirmed PDUs (`"confirmed-RequestPDU/4"`
//! = Read request, `"unconfirmed-PDU/0"` = informationReport, `"initiate-RequestPDU"`;
//! the initiate pair rides the session CONNECT/ACCEPT, counted as tshark counts it);
//! cdp: the version (`"2"`); nbns: `"<opcode>/<request|response>"` with the decimal
//! opcode (`"5/request"` a name registration, `"0/response"` a query's answer); snmp:
//! `"<v1|v2c>/<pdu type>"` of the agent's messages only (`"v2c/get-response"`), as the
//! sensor reads no requests. DHCP, LLDP and mDNS are not counted here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};
use etherparse::{LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use serde::Serialize;

use super::proto::Pdu;
use super::wire::{tcp_flags, Mac};

/// Bumped whenever the same seed and size would produce different bytes.
pub const GENERATOR_VERSION: u32 = 5;

/// The sidecar `FILE.truth.json`. Top-level names match `otsensor replay --summary-json`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Truth {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub devices: u64,
    pub protocols: BTreeMap<String, u64>,
    pub functions: BTreeMap<String, BTreeMap<String, u64>>,
    pub seed: u64,
    pub generator_version: u32,
}

/// The flow table's default timeouts (`flows.idle_timeout_seconds`,
/// `flows.closed_timeout_seconds`).
const IDLE_TIMEOUT_NS: u64 = 600 * 1_000_000_000;
const CLOSED_TIMEOUT_NS: u64 = 30 * 1_000_000_000;
/// No flow idles longer than this between two packets, so that any idle timeout from
/// here up counts it once (the generator refuses to finish otherwise).
pub const MAX_FLOW_GAP_NS: u64 = 300 * 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
    protocol: u8,
    vlan: u16,
}

#[derive(Clone, Copy, Debug)]
struct FlowState {
    last_ns: u64,
    /// TCP flags seen from the lower and the higher endpoint.
    flags: [u8; 2],
    closed: bool,
}

/// Counts what was written, frame by frame.
#[derive(Debug, Default)]
pub struct Tracker {
    packets: u64,
    bytes: u64,
    flows: HashMap<FlowKey, FlowState>,
    flow_count: u64,
    flow_splits: u64,
    max_flow_gap_ns: u64,
    device_ips: HashSet<IpAddr>,
    source_macs: HashSet<Mac>,
    macs_with_ip: HashSet<Mac>,
    protocols: BTreeMap<&'static str, u64>,
    functions: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    last_ts_ns: u64,
}

/// The sensor's default `networks.internal`.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 10
                || (a == 172 && (16..32).contains(&b))
                || (a == 192 && b == 168)
                || (a == 169 && b == 254)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

fn is_unicast_mac(mac: &Mac) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

impl Tracker {
    /// Accounts one written frame whose timestamp, as a reader sees it, is `ts_ns`.
    pub fn frame(&mut self, ts_ns: u64, frame: &[u8]) -> Result<()> {
        if ts_ns < self.last_ts_ns {
            bail!(
                "timestamps went backwards: {ts_ns} after {}",
                self.last_ts_ns
            );
        }
        self.last_ts_ns = ts_ns;
        self.packets += 1;
        self.bytes += frame.len() as u64;
        let sliced = match LaxSlicedPacket::from_ethernet(frame) {
            Ok(sliced) => sliced,
            Err(e) => bail!("generated frame does not slice: {e}"),
        };
        if let Some((err, layer)) = &sliced.stop_err {
            bail!("generated frame is malformed at {layer:?}: {err}");
        }
        let Some(LinkSlice::Ethernet2(eth)) = &sliced.link else {
            bail!("generated frame is not Ethernet II");
        };
        let src_mac = eth.source();
        let vlan = sliced
            .link_exts
            .iter()
            .find_map(|ext| match ext {
                LaxLinkExtSlice::Vlan(vlan) => Some(vlan.vlan_identifier().value()),
                _ => None,
            })
            .unwrap_or(0);
        let (src, dst, protocol) = match &sliced.net {
            Some(LaxNetSlice::Ipv4(ipv4)) => {
                if ipv4.payload().fragmented {
                    bail!("the generator writes no fragments");
                }
                let header = ipv4.header();
                (
                    IpAddr::V4(header.source_addr()),
                    IpAddr::V4(header.destination_addr()),
                    ipv4.payload().ip_number.0,
                )
            }
            Some(LaxNetSlice::Ipv6(ipv6)) => {
                let header = ipv6.header();
                (
                    IpAddr::V6(Ipv6Addr::from(header.source())),
                    IpAddr::V6(Ipv6Addr::from(header.destination())),
                    ipv6.payload().ip_number.0,
                )
            }
            Some(LaxNetSlice::Arp(arp)) => {
                let sender_ip = <[u8; 4]>::try_from(arp.sender_protocol_addr())
                    .ok()
                    .map(Ipv4Addr::from);
                let sender_mac = <[u8; 6]>::try_from(arp.sender_hw_addr()).ok();
                match sender_ip {
                    Some(ip) if !ip.is_unspecified() && is_internal(IpAddr::V4(ip)) => {
                        self.device_ips.insert(IpAddr::V4(ip));
                        self.macs_with_ip.insert(sender_mac.unwrap_or(src_mac));
                    }
                    _ => self.mac_seen(src_mac),
                }
                return Ok(());
            }
            None => {
                self.mac_seen(src_mac);
                return Ok(());
            }
        };
        if is_unicast(src) && is_internal(src) {
            self.device_ips.insert(src);
            self.macs_with_ip.insert(src_mac);
        } else {
            self.mac_seen(src_mac);
        }
        let (sport, dport, flags) = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                let mut flags = 0;
                for (set, bit) in [
                    (tcp.fin(), tcp_flags::FIN),
                    (tcp.syn(), tcp_flags::SYN),
                    (tcp.rst(), tcp_flags::RST),
                    (tcp.psh(), tcp_flags::PSH),
                    (tcp.ack(), tcp_flags::ACK),
                ] {
                    if set {
                        flags |= bit;
                    }
                }
                (tcp.source_port(), tcp.destination_port(), flags)
            }
            Some(TransportSlice::Udp(udp)) => (udp.source_port(), udp.destination_port(), 0),
            _ => (0, 0, 0),
        };
        self.flow_packet(ts_ns, (src, sport), (dst, dport), protocol, vlan, flags);
        Ok(())
    }

    fn mac_seen(&mut self, mac: Mac) {
        if is_unicast_mac(&mac) {
            self.source_macs.insert(mac);
        }
    }

    fn flow_packet(
        &mut self,
        ts_ns: u64,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        protocol: u8,
        vlan: u16,
        flags: u8,
    ) {
        let from_lo = src <= dst;
        let (lo, hi) = if from_lo { (src, dst) } else { (dst, src) };
        let key = FlowKey {
            lo,
            hi,
            protocol,
            vlan,
        };
        let side = usize::from(!from_lo);
        match self.flows.get_mut(&key) {
            Some(state) => {
                self.max_flow_gap_ns = self
                    .max_flow_gap_ns
                    .max(ts_ns.saturating_sub(state.last_ns));
                let timeout = if state.closed {
                    CLOSED_TIMEOUT_NS
                } else {
                    IDLE_TIMEOUT_NS
                };
                if ts_ns.saturating_sub(state.last_ns) > timeout {
                    // The sensor would end the flow and start another: the generator
                    // must never do this (see the module doc).
                    self.flow_splits += 1;
                    self.flow_count += 1;
                    *state = FlowState {
                        last_ns: ts_ns,
                        flags: [0; 2],
                        closed: false,
                    };
                }
                state.last_ns = ts_ns;
                state.flags[side] |= flags;
                if flags & tcp_flags::RST != 0
                    || (state.flags[0] & tcp_flags::FIN != 0
                        && state.flags[1] & tcp_flags::FIN != 0)
                {
                    state.closed = true;
                }
            }
            None => {
                self.flow_count += 1;
                let mut state = FlowState {
                    last_ns: ts_ns,
                    flags: [0; 2],
                    closed: false,
                };
                state.flags[side] |= flags;
                state.closed = flags & tcp_flags::RST != 0;
                self.flows.insert(key, state);
            }
        }
    }

    /// Accounts one PDU (or nested message) completed by the frame just written.
    pub fn pdu(&mut self, pdu: Pdu) {
        let name = pdu.proto.name();
        if pdu.counts_as_pdu {
            *self.protocols.entry(name).or_default() += 1;
        }
        *self
            .functions
            .entry(name)
            .or_default()
            .entry(pdu.function)
            .or_default() += 1;
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Devices so far, by the analyzer's definition (module doc).
    pub fn devices(&self) -> u64 {
        let mac_only = self
            .source_macs
            .iter()
            .filter(|mac| !self.macs_with_ip.contains(*mac))
            .count();
        (self.device_ips.len() + mac_only) as u64
    }

    /// The finished truth; an error if a flow would have been counted twice.
    pub fn finish(self, seed: u64) -> Result<Truth> {
        if self.flow_splits > 0 {
            bail!(
                "generator bug: {} flows idle past a flow-table timeout and reused",
                self.flow_splits
            );
        }
        if self.max_flow_gap_ns > MAX_FLOW_GAP_NS {
            bail!(
                "generator bug: a flow idled {} s between two packets",
                self.max_flow_gap_ns / 1_000_000_000
            );
        }
        Ok(Truth {
            packets: self.packets,
            bytes: self.bytes,
            flows: self.flow_count,
            devices: self.devices(),
            protocols: self
                .protocols
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            functions: self
                .functions
                .iter()
                .map(|(proto, keys)| {
                    (
                        (*proto).to_owned(),
                        keys.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                    )
                })
                .collect(),
            seed,
            generator_version: GENERATOR_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_match_the_default_config() {
        for inside in [
            "10.1.2.3",
            "172.31.0.1",
            "192.168.9.9",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(inside.parse().is_ok_and(is_internal), "{inside}");
        }
        for outside in ["172.32.0.1", "203.0.113.5", "2001:db8::1", "8.8.8.8"] {
            assert!(
                outside.parse().is_ok_and(|ip| !is_internal(ip)),
                "{outside}"
            );
        }
    }
}
