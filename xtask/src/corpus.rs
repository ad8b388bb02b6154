//! `cargo xtask fuzz-corpus`: seed corpora for the fuzz targets, cut at run time from
//! the shared captures (`../shared/pcaps`), so no capture bytes are committed.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::path::Path;

use anyhow::Context;
use otsensor::capture::pcap::PcapFile;
use otsensor::capture::{LinkType, PacketSource};

/// Seeds per target at most: enough variety, quick to load.
const MAX_SEEDS: usize = 400;

fn target_of(ports: (u16, u16)) -> Option<&'static str> {
    let by_port = |port| match port {
        502 => Some("modbus"),
        20000 => Some("dnp3"),
        47808 => Some("bacnet"),
        44818 | 2222 => Some("enip"),
        102 => Some("s7comm"),
        2404 => Some("iec104"),
        4840 => Some("opcua"),
        1883 => Some("mqtt"),
        34964 => Some("profinet"),
        _ => None,
    };
    by_port(ports.1).or_else(|| by_port(ports.0))
}

/// Port 102 carries S7comm, S7comm-plus and MMS: a COTP DT's first payload byte
/// (after TPKT 4 and COTP DT 3 bytes) picks the target, 0x32 S7comm, 0x72 S7comm-plus,
/// anything else MMS (session SPDUs, or MMS PDUs directly on COTP).
fn iso_user(target: &'static str, payload: &[u8]) -> &'static str {
    if target != "s7comm" || payload.get(5) != Some(&0xF0) {
        return target;
    }
    match payload.get(7) {
        Some(0x32) | None => "s7comm",
        Some(0x72) => "s7commplus",
        Some(_) => "mms",
    }
}

/// The `ident` target's selector byte (its first input byte picks the view, in the
/// order of the match in fuzz/fuzz_targets/ident.rs) for an identification protocol
/// frame: DHCP 0, LLDP 1, CDP 2, NBNS 3, mDNS 4, SNMP 5.
fn ident_selector(frame: &otsensor_wire::layers::Frame<'_>) -> Option<u8> {
    if frame.src_ip.is_none() && frame.ether_type == 0x88CC {
        return Some(1);
    }
    if frame.llc.is_some_and(|llc| llc.dsap == 0xAA) {
        return Some(2);
    }
    let by_port = |port| match port {
        67 | 68 => Some(0),
        137 => Some(3),
        5353 => Some(4),
        161 | 162 => Some(5),
        _ => None,
    };
    let (src, dst) = frame.ports()?;
    by_port(dst).or_else(|| by_port(src))
}

fn link_selector(link: LinkType) -> u8 {
    // Matches the order of `LINKS` in fuzz/fuzz_targets/frame.rs.
    match link {
        LinkType::Ethernet => 0,
        LinkType::LinuxSll => 2,
        LinkType::LinuxSll2 => 3,
        LinkType::Null | LinkType::Loop => 4,
        LinkType::RawIp => 5,
    }
}

/// Writes `fuzz/corpus/<target>/<hash>` files from every capture in `pcaps`.
pub fn write(pcaps: &Path, out: &Path) -> anyhow::Result<()> {
    let mut captures: Vec<_> = std::fs::read_dir(pcaps)
        .with_context(|| format!("{}", pcaps.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    captures.sort();
    let mut seen = HashSet::new();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    let hasher = foldhash_state();
    let mut save = |target: &'static str, bytes: &[u8]| -> anyhow::Result<()> {
        let count = counts.entry(target).or_default();
        if *count >= MAX_SEEDS || bytes.is_empty() {
            return Ok(());
        }
        let key = hasher.hash_one((target, bytes));
        if !seen.insert(key) {
            return Ok(());
        }
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{key:016x}")), bytes)?;
        *count += 1;
        Ok(())
    };
    for capture in &captures {
        let mut file = PcapFile::open(capture)?;
        let mut window: Vec<u8> = Vec::new();
        let mut frames = 0;
        while let Some(packet) = file.next_packet()? {
            let frame = packet.slice();
            if let Some(target) = frame.ports().and_then(target_of) {
                save(iso_user(target, frame.payload), frame.payload)?;
            }
            if frame.src_ip.is_none() && frame.ether_type == 0x88B8 {
                save("goose", frame.payload)?;
            }
            if frame.src_ip.is_none() && frame.ether_type == 0x8892 {
                save("profinet", frame.payload)?;
            }
            if let Some(selector) = ident_selector(&frame) {
                let body = frame.llc.map_or(frame.payload, |llc| llc.payload);
                let mut seed = Vec::with_capacity(body.len() + 1);
                seed.push(selector);
                seed.extend_from_slice(body);
                save("ident", &seed)?;
            }
            // The frame target takes runs of 16 frames in its [link][len][bytes] format.
            let len = packet.data.len().min(255);
            window.push(link_selector(packet.link));
            window.push(len as u8);
            window.extend_from_slice(&packet.data[..len]);
            frames += 1;
            if frames == 16 {
                save("frame", &window)?;
                window.clear();
                frames = 0;
            }
        }
    }
    for (target, count) in &counts {
        println!("{target:<8} {count} seeds");
    }
    Ok(())
}

/// A hasher with a fixed key, so seed file names are stable between runs.
fn foldhash_state() -> impl BuildHasher {
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
}
