//! DESIGN's hot-path rule, asserted rather than printed: after a warm-up, one worker
//! processes the rest of a generated plant mix (new flows, TCP framing, every
//! dissector, the identification protocols' identity observations, observations to a
//! live analyzer) without a single allocation on its
//! thread. The test binary's global allocator counts the worker thread's allocations
//! (`xtask::bench::CountingAllocator`); the analyzer's thread is not counted. The
//! worker keeps every packet in its evidence ring, as a sensor with a database does.

use std::hint::black_box;
use std::sync::Arc;

use otsensor::capture::memory::MemoryCapture;
use otsensor::capture::pcap::PcapFiles;
use otsensor::config::Config;
use xtask::bench::{count_allocations, worker_allocations, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_counter_sees_an_allocation() {
    // Otherwise a broken counter would pass the real test.
    let (_, allocations) = count_allocations(|| black_box(Vec::<u8>::with_capacity(64)));
    assert_eq!(allocations, 1);
    let (_, none) = count_allocations(|| black_box(7u64) + 1);
    assert_eq!(none, 0);
}

#[test]
fn the_worker_allocates_nothing_per_packet_after_warm_up() {
    let dir = std::env::temp_dir().join(format!("otsensor-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("mix.pcap");
    let truth = xtask::gen::mix(
        &xtask::gen::MixOptions {
            packets: 60_000,
            seed: 5,
            resolution: xtask::gen::Resolution::Micro,
        },
        &path,
    )
    .expect("generate the mix");
    // The sensor itself finds the identification protocols in the same capture.
    let summary = otsensor::pipeline::replay(
        &mut PcapFiles::open(std::slice::from_ref(&path)).expect("open"),
        Arc::new(Config::default().validate().expect("default config")),
        otsensor::pipeline::ReplayOptions::default(),
    )
    .expect("replay");
    for protocol in ["lldp", "dhcp", "mdns", "cdp", "nbns", "snmp"] {
        assert!(
            summary.protocols.get(protocol).is_some_and(|n| *n > 0),
            "the mix carries no {protocol}: {:?}",
            summary.protocols
        );
    }
    let capture = MemoryCapture::load(&mut PcapFiles::open(&[path]).expect("open")).expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(capture.len() as u64, truth.packets);
    // The claim covers every protocol the mix's truth counts: the industrial ones and
    // the identification protocols CDP, NBNS and SNMP.
    assert!(
        truth
            .protocols
            .keys()
            .all(|p| summary.protocols.contains_key(p.as_str())),
        "{:?} against {:?}",
        truth.protocols,
        summary.protocols
    );
    for protocol in [
        "modbus",
        "dnp3",
        "bacnet",
        "enip",
        "s7comm",
        "s7commplus",
        "iec104",
        "opcua",
        "mqtt",
        "goose",
        "mms",
        "profinet",
        "cdp",
        "nbns",
        "snmp",
    ] {
        assert!(
            truth.protocols.get(protocol).is_some_and(|n| *n > 0),
            "the mix carries no {protocol}: {:?}",
            truth.protocols
        );
    }

    // Evidence on (the default), with a ring small enough that the mix wraps it many
    // times: keeping packets and overwriting the oldest allocates nothing either.
    let mut config = Config::default();
    assert!(config.evidence.enabled);
    config.evidence.ring_bytes = 1 << 20;
    config.evidence.ring_packets = 4096;
    let policy = Arc::new(config.validate().expect("default config"));
    // The first 10,000 packets warm up; the other 50,000 still start new flows and
    // carry every protocol of the mix.
    let warmup = 10_000;
    let (allocations, measured) =
        worker_allocations(&policy, &capture, warmup).expect("worker run");
    assert_eq!(measured, truth.packets - warmup as u64);
    assert_eq!(
        allocations, 0,
        "the worker allocated {allocations} times in {measured} packets after warm-up"
    );
}
