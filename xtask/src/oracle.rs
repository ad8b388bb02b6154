//! An independent view of a capture, from tshark rather than from etherparse (which
//! both the sensor and the generator's truth slice with): flows and devices counted
//! from tshark's per-frame fields by the sensor's documented definitions, and the
//! per-protocol PDU histograms of `../shared/tools/oracle.py --summary`
//! (`../shared/tools/ORACLE.md`). Tests use it to check generated captures and the
//! sensor's totals against something that shares no code with either.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::gen::truth::is_internal;

/// The flow table's default timeouts (`flows.idle_timeout`, `flows.closed_timeout`).
const IDLE_TIMEOUT_NS: u64 = 600 * 1_000_000_000;
const CLOSED_TIMEOUT_NS: u64 = 30 * 1_000_000_000;

/// Flows and devices of a capture as tshark sees its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    pub frames: u64,
    pub flows: u64,
    pub devices: u64,
}

/// `../shared/tools/oracle.py`, beside the repository.
pub fn oracle_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/oracle.py")
}

/// `oracle.py --summary CAPTURE`: tshark's per-protocol PDU counts and histograms.
pub fn summary(capture: &Path) -> Result<serde_json::Value> {
    let output = Command::new("python3")
        .arg(oracle_script())
        .arg("--summary")
        .arg(capture)
        .output()
        .context("running python3 oracle.py (scripts/deps.sh installs python3 and tshark)")?;
    if !output.status.success() {
        bail!(
            "oracle.py --summary {}: {}",
            capture.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).context("oracle.py summary JSON")
}

const FIELDS: [&str; 17] = [
    "frame.time_epoch",
    "eth.src",
    "sll.src.eth",
    "vlan.id",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "udp.srcport",
    "udp.dstport",
];
// ARP sender fields follow FIELDS on the command line.
const ARP_FIELDS: [&str; 2] = ["arp.src.hw_mac", "arp.src.proto_ipv4"];

#[derive(Clone, Copy)]
struct FlowState {
    last_ns: u64,
    fin: [bool; 2],
    closed: bool,
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

/// Nanoseconds from tshark's `frame.time_epoch` ("1709532000.123456789").
fn epoch_ns(text: &str) -> u64 {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u64 = secs.parse().unwrap_or(0);
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    secs * 1_000_000_000 + digits.parse::<u64>().unwrap_or(0)
}

/// Counts flows and devices from tshark's dissection of `capture`:
/// - a flow is an unordered pair of (address, port) endpoints with the IP protocol and
///   the outer VLAN id, over IP packets that are not fragments; it ends after 600 s
///   idle, or 30 s after FIN both ways or a RST (the flow table's defaults), and a
///   later packet starts another;
/// - a device is an internal unicast IP address seen as an IP source or ARP sender, or
///   a unicast source MAC that never carried one (`otsensor::analyze`).
///
/// Several files are read in order as one capture (as `otsensor replay` reads them).
pub fn census(captures: &[PathBuf]) -> Result<Census> {
    let mut census = Census::default();
    let mut flows = FlowMap::new();
    let mut device_ips: HashSet<IpAddr> = HashSet::new();
    let mut source_macs: HashSet<[u8; 6]> = HashSet::new();
    let mut macs_with_ip: HashSet<[u8; 6]> = HashSet::new();
    for capture in captures {
        let text = tshark_fields(capture)?;
        for line in text.lines() {
            census.frames += 1;
            let f: Vec<&str> = line.split('\t').collect();
            account(
                &f,
                &mut census,
                &mut flows,
                &mut device_ips,
                &mut source_macs,
                &mut macs_with_ip,
            );
        }
    }
    let mac_only = source_macs
        .iter()
        .filter(|m| !macs_with_ip.contains(*m))
        .count();
    census.devices = (device_ips.len() + mac_only) as u64;
    Ok(census)
}

fn tshark_fields(capture: &Path) -> Result<String> {
    let mut command = Command::new("tshark");
    command
        .args(["-n", "-r"])
        .arg(capture)
        .args(["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"])
        .args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]);
    for field in FIELDS.iter().chain(ARP_FIELDS.iter()) {
        command.args(["-e", field]);
    }
    let output = command
        .output()
        .context("running tshark (scripts/deps.sh installs it)")?;
    if !output.status.success() {
        bail!(
            "tshark -r {}: {}",
            capture.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

type FlowMap = HashMap<((IpAddr, u16), (IpAddr, u16), u8, u16), FlowState>;

/// One frame's fields into the census.
fn account(
    f: &[&str],
    census: &mut Census,
    flows: &mut FlowMap,
    device_ips: &mut HashSet<IpAddr>,
    source_macs: &mut HashSet<[u8; 6]>,
    macs_with_ip: &mut HashSet<[u8; 6]>,
) {
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let ts = epoch_ns(get(0));
    let mac = parse_mac(get(1)).or_else(|| parse_mac(get(2)));
    let vlan: u16 = get(3).parse().unwrap_or(0);
    let unicast_mac = |m: &[u8; 6]| m[0] & 1 == 0 && *m != [0; 6];
    let mac_seen = |macs: &mut HashSet<[u8; 6]>| {
        if let Some(m) = mac.filter(unicast_mac) {
            macs.insert(m);
        }
    };
    // ARP: the sender's protocol address.
    if let Ok(sender) = get(FIELDS.len() + 1).parse::<std::net::Ipv4Addr>() {
        let ip = IpAddr::V4(sender);
        if !sender.is_unspecified() && is_internal(ip) {
            device_ips.insert(ip);
            if let Some(m) = parse_mac(get(FIELDS.len())).or(mac) {
                macs_with_ip.insert(m);
            }
        } else {
            mac_seen(source_macs);
        }
        return;
    }
    let (src, dst, protocol, fragment) =
        if let (Ok(src), Ok(dst)) = (get(4).parse::<IpAddr>(), get(5).parse::<IpAddr>()) {
            let fragment =
                matches!(get(7), "1" | "True" | "true") || get(8).parse::<u32>().unwrap_or(0) > 0;
            (src, dst, get(6).parse::<u8>().unwrap_or(0), fragment)
        } else if let (Ok(src), Ok(dst)) = (get(9).parse::<IpAddr>(), get(10).parse::<IpAddr>()) {
            (src, dst, get(11).parse::<u8>().unwrap_or(0), false)
        } else {
            mac_seen(source_macs);
            return;
        };
    if is_unicast(src) && is_internal(src) {
        device_ips.insert(src);
        if let Some(m) = mac {
            macs_with_ip.insert(m);
        }
    } else {
        mac_seen(source_macs);
    }
    if fragment {
        return;
    }
    let port = |i: usize| get(i).parse::<u16>().unwrap_or(0);
    let (sport, dport, flags) = match protocol {
        6 => {
            let flags = u16::from_str_radix(get(14).trim_start_matches("0x"), 16).unwrap_or(0);
            (port(12), port(13), flags)
        }
        17 => (port(15), port(16), 0),
        _ => (0, 0, 0),
    };
    let (a, b) = ((src, sport), (dst, dport));
    let from_lo = a <= b;
    let key = if from_lo {
        (a, b, protocol, vlan)
    } else {
        (b, a, protocol, vlan)
    };
    let side = usize::from(!from_lo);
    let (fin, rst) = (flags & 0x01 != 0, flags & 0x04 != 0);
    let fresh = FlowState {
        last_ns: ts,
        fin: [false; 2],
        closed: false,
    };
    let state = match flows.get_mut(&key) {
        Some(state) => {
            let timeout = if state.closed {
                CLOSED_TIMEOUT_NS
            } else {
                IDLE_TIMEOUT_NS
            };
            if ts.saturating_sub(state.last_ns) > timeout {
                census.flows += 1;
                *state = fresh;
            }
            state
        }
        None => {
            census.flows += 1;
            flows.entry(key).or_insert(fresh)
        }
    };
    state.last_ns = ts;
    state.fin[side] |= fin;
    if rst || (state.fin[0] && state.fin[1]) {
        state.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tshark_values() {
        assert_eq!(
            parse_mac("00:1b:1b:00:00:01"),
            Some([0, 0x1b, 0x1b, 0, 0, 1])
        );
        assert_eq!(parse_mac("00:1b"), None);
        assert_eq!(epoch_ns("1709532000.5"), 1_709_532_000_500_000_000);
        assert_eq!(epoch_ns("1.000000001"), 1_000_000_001);
    }
}
