//! `cargo xtask gen mix`: a deterministic synthetic capture of an industrial plant and
//! its ground truth.
//!
//! The plant (`plant`) is a set of hosts; *actors* (`ot`, `background`) plan the
//! frames of their conversations (`script`) one step at a time, and a discrete-event
//! loop writes the earliest planned frame next, so timestamps never go backwards while
//! thousands of conversations interleave. Each frame is encoded (`wire`), streamed to
//! the pcap file (`pcap`) and accounted by the ground truth (`truth`) from its bytes.
//! Everything random comes from one ChaCha8 stream seeded by `--seed`, so the same seed
//! and packet count give a byte-identical capture.

pub mod background;
pub mod fieldbus;
pub mod identity;
pub mod ot;
pub mod pcap;
pub mod plant;
pub mod proto;
pub mod scenario;
pub mod script;
pub mod substation;
pub mod truth;
pub mod wire;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use pcap::Resolution;
pub use truth::Truth;

use plant::{OtService, Plant};
use script::Script;

pub const US: u64 = 1_000;
pub const MS: u64 = 1_000_000;
pub const SECOND: u64 = 1_000_000_000;
/// The capture starts at 2024-03-04 06:00:00 UTC: a Monday morning shift.
const START_NS: u64 = 1_709_532_000 * SECOND;
/// Above this the address plan runs out of room.
pub const MAX_PACKETS: u64 = 50_000_000;

/// What `gen mix` is asked for.
#[derive(Clone, Debug)]
pub struct MixOptions {
    pub packets: u64,
    pub seed: u64,
    pub resolution: Resolution,
}

/// Counters the actors read to steer the mix.
#[derive(Debug, Default)]
pub struct Stats {
    pub total: u64,
    pub background: u64,
    pub active_transfers: u32,
}

/// What an actor may touch while planning.
pub struct Cx<'a> {
    /// Packet time of the event being handled.
    pub now_ns: u64,
    pub rng: &'a mut ChaCha8Rng,
    pub plant: &'a mut Plant,
    pub stats: &'a mut Stats,
    /// Actors to start now.
    pub spawn: &'a mut Vec<Box<dyn Actor>>,
}

/// A source of frames: a conversation or a periodic chore.
pub trait Actor {
    /// Called when the actor's script is empty: append what happens next (the first
    /// entry's delay counts from now). Planning nothing ends the actor.
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script);

    /// Whether the actor's frames count as non-industrial background.
    fn is_background(&self) -> bool {
        false
    }
}

/// A uniformly random duration in `[low, high)` (or `low` when the range is empty).
pub fn between<R: Rng>(rng: &mut R, low: u64, high: u64) -> u64 {
    if high > low {
        rng.random_range(low..high)
    } else {
        low
    }
}

/// The sidecar path: the capture's path with `.truth.json` appended.
pub fn truth_path(capture: &Path) -> PathBuf {
    let mut name = capture.as_os_str().to_owned();
    name.push(".truth.json");
    PathBuf::from(name)
}

struct Slot {
    actor: Box<dyn Actor>,
    script: Script,
    background: bool,
}

/// Writes the capture to `out` and its ground truth beside it; returns the truth.
pub fn mix(options: &MixOptions, out: &Path) -> Result<Truth> {
    if options.packets > MAX_PACKETS {
        bail!(
            "--packets {} is above the supported maximum of {MAX_PACKETS}",
            options.packets
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut plant = Plant::build(options.packets, &mut rng);
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut order: u64 = 0;
    let mut schedule = |heap: &mut BinaryHeap<Reverse<(u64, u64, usize)>>, at: u64, slot: usize| {
        heap.push(Reverse((at, order, slot)));
        order += 1;
    };

    let mut initial: Vec<Box<dyn Actor>> = Vec::new();
    let dnp3_master_address = |client: usize| 1 + (client % 100) as u16;
    for (index, association) in plant.associations.iter().enumerate() {
        let outstation = 10 + index as u16;
        let master = if association.service == OtService::Dnp3 {
            dnp3_master_address(association.client)
        } else {
            0
        };
        initial.push(Box::new(ot::PollActor::new(
            *association,
            master,
            outstation,
        )));
    }
    for (server, controllers) in &plant.bacnet_sites {
        initial.push(Box::new(ot::BacnetActor::new(*server, controllers.clone())));
    }
    if let Some(&workstation) = plant.engineering.first() {
        if !plant.enip_devices.is_empty() {
            initial.push(Box::new(ot::ListIdentityActor::new(
                workstation,
                plant.enip_devices.clone(),
            )));
        }
    }
    // The SCADA masters (the DNP3 pollers) read the IEDs over MMS, in turn.
    let mut scada: Vec<usize> = (plant.associations.iter())
        .filter(|a| a.service == OtService::Dnp3)
        .map(|a| a.client)
        .collect();
    scada.sort_unstable();
    scada.dedup();
    for (index, &ied) in plant.ieds.iter().enumerate() {
        initial.push(Box::new(substation::GooseActor::new(ied, index)));
        if let Some(&client) = scada.get(index % scada.len().max(1)) {
            initial.push(Box::new(substation::MmsActor::new(client, ied, index)));
        }
    }
    for (index, &(controller, device)) in plant.profinet.iter().enumerate() {
        let frame_id = 0x8000 + 2 * index as u16;
        initial.push(Box::new(fieldbus::CyclicActor::new(
            controller, device, frame_id,
        )));
        initial.push(Box::new(fieldbus::CyclicActor::new(
            device,
            controller,
            frame_id + 1,
        )));
    }
    if let (Some(&workstation), false) = (plant.engineering.first(), plant.profinet.is_empty()) {
        let devices = plant.profinet.iter().map(|&(_, device)| device).collect();
        initial.push(Box::new(fieldbus::DcpActor::new(workstation, devices)));
    }
    initial.push(Box::new(ot::ArpActor));
    for (i, &mac) in plant.switches.iter().enumerate() {
        initial.push(Box::new(ot::LldpActor::new(mac, 1 + i as u16)));
    }
    for &client in &plant.it_clients {
        initial.push(Box::new(background::DnsActor::new(client)));
        initial.push(Box::new(identity::DhcpActor::new(client)));
    }
    for host in identity::mdns_announcers(&plant) {
        initial.push(Box::new(identity::MdnsActor::new(host)));
    }
    for switch in identity::cdp_announcers(&plant) {
        initial.push(Box::new(identity::CdpActor::new(switch)));
    }
    for &client in &plant.it_clients {
        initial.push(Box::new(identity::NbnsActor::new(client)));
    }
    for agent in identity::snmp_agents(&plant) {
        initial.push(Box::new(identity::SnmpPollActor::new(agent)));
    }
    initial.push(Box::new(background::Spawner::default()));
    for actor in initial {
        let background = actor.is_background();
        slots.push(Some(Slot {
            actor,
            script: Script::new(),
            background,
        }));
        schedule(&mut heap, START_NS, slots.len() - 1);
    }

    let mut writer = pcap::PcapWriter::create(out, options.resolution)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut tracker = truth::Tracker::default();
    let mut stats = Stats::default();
    let mut spawned: Vec<Box<dyn Actor>> = Vec::new();
    let mut frame = Vec::with_capacity(2048);
    let mut ip_id: u16 = rng.random();

    while tracker.packets() < options.packets {
        let Some(Reverse((now_ns, _, index))) = heap.pop() else {
            bail!(
                "generator bug: every actor ended before {} packets",
                options.packets
            );
        };
        let Some(slot) = slots.get_mut(index).and_then(Option::as_mut) else {
            bail!("generator bug: event for an empty actor slot");
        };
        if let Some(planned) = slot.script.pop_front() {
            if let Some(spec) = planned.spec {
                ip_id = ip_id.wrapping_add(1);
                wire::encode(&spec, ip_id, &mut frame)?;
                writer.write(now_ns, &frame)?;
                tracker.frame(options.resolution.truncate(now_ns), &frame)?;
                for pdu in planned.pdus {
                    tracker.pdu(pdu);
                }
                stats.total += 1;
                stats.background += u64::from(slot.background);
            }
        }
        if slot.script.is_empty() {
            let mut cx = Cx {
                now_ns,
                rng: &mut rng,
                plant: &mut plant,
                stats: &mut stats,
                spawn: &mut spawned,
            };
            slot.actor.plan(&mut cx, &mut slot.script);
        }
        match slot.script.front() {
            Some(next) => schedule(&mut heap, now_ns + next.delay_ns, index),
            None => {
                slots[index] = None;
                free.push(index);
            }
        }
        for actor in spawned.drain(..) {
            let background = actor.is_background();
            let slot = Slot {
                actor,
                script: Script::new(),
                background,
            };
            let index = match free.pop() {
                Some(index) => {
                    slots[index] = Some(slot);
                    index
                }
                None => {
                    slots.push(Some(slot));
                    slots.len() - 1
                }
            };
            schedule(&mut heap, now_ns, index);
        }
    }
    writer
        .finish()
        .with_context(|| format!("cannot write {}", out.display()))?;
    let truth = tracker.finish(options.seed)?;
    let sidecar = truth_path(out);
    let json = serde_json::to_string_pretty(&truth)?;
    std::fs::write(&sidecar, json + "\n")
        .with_context(|| format!("cannot write {}", sidecar.display()))?;
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-gen-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        dir
    }

    fn generate(dir: &Path, name: &str, seed: u64, packets: u64) -> (Vec<u8>, Vec<u8>, Truth) {
        let out = dir.join(name);
        let options = MixOptions {
            packets,
            seed,
            resolution: Resolution::Micro,
        };
        let truth = mix(&options, &out);
        assert!(truth.is_ok(), "{truth:?}");
        let capture = std::fs::read(&out).unwrap_or_default();
        let sidecar = std::fs::read(truth_path(&out)).unwrap_or_default();
        (capture, sidecar, truth.unwrap_or_else(|_| unreachable!()))
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
        let dir = scratch("determinism");
        let (a, a_truth_file, a_truth) = generate(&dir, "a.pcap", 42, 5_000);
        let (b, b_truth_file, _) = generate(&dir, "b.pcap", 42, 5_000);
        let (c, _, c_truth) = generate(&dir, "c.pcap", 43, 5_000);
        assert!(a.len() > 24 + 5_000 * 16, "capture too small: {}", a.len());
        assert_eq!(a_truth.packets, 5_000);
        assert!(a == b, "same seed, different capture bytes");
        assert_eq!(a_truth_file, b_truth_file);
        assert!(a != c, "different seeds gave the same capture");
        assert_eq!(c_truth.seed, 43);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nanosecond_files_use_the_nanosecond_magic() {
        let dir = scratch("nanos");
        let out = dir.join("n.pcap");
        let options = MixOptions {
            packets: 100,
            seed: 1,
            resolution: Resolution::Nano,
        };
        assert!(mix(&options, &out).is_ok());
        let bytes = std::fs::read(&out).unwrap_or_default();
        assert_eq!(bytes.get(..4), Some(&[0x4d, 0x3c, 0xb2, 0xa1][..]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
