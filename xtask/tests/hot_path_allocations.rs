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

/// The analyzer's side: an observation about what the inventory already knows (a
/// device seen again, an identity value re-reported as it is stored) allocates
/// nothing, and a second device of a model already matched against the advisories
/// allocates only the values it stores (the matches are shared from the memo).
#[test]
fn the_analyzer_allocates_nothing_for_what_it_already_knows() {
    use otsensor::analyze::Analyzer;
    use otsensor::observe::{IdentityField, Observation, ShortText};
    use otsensor_wire::Protocol;
    use std::net::IpAddr;

    let policy = Arc::new(Config::default().validate().expect("default config"));
    let mut analyzer = Analyzer::new(policy, None);
    let devices: [(IpAddr, [u8; 6]); 2] = [
        ("10.0.0.9".parse().expect("ip"), [0x00, 0x1b, 0x1b, 0, 0, 9]),
        (
            "10.0.0.10".parse().expect("ip"),
            [0x00, 0x1b, 0x1b, 0, 0, 10],
        ),
    ];
    // A vendor and no product: the vendor's advisories match at low confidence (many
    // of them, and no `vulnerable_device` alert, whose record is not counted here).
    let identity = [
        (IdentityField::Vendor, "Siemens"),
        (IdentityField::Firmware, "V3.2.6"),
        (IdentityField::Mode, "RUN"),
        (IdentityField::SystemName, "plc"),
    ];
    let observations = |(ip, mac): (IpAddr, [u8; 6]), ts_ns: u64| {
        let seen = Observation::DeviceSeen {
            ts_ns,
            mac: Some(mac),
            ip: Some(ip),
            vlan: 0,
        };
        let reports = identity.map(|(field, value)| Observation::Identity {
            ts_ns,
            device: ip,
            mac: Some(mac),
            protocol: Protocol::S7comm,
            field,
            value: ShortText::from_bytes(value.as_bytes()),
        });
        std::iter::once(seen).chain(reports)
    };
    // As the pipeline does before its first packet.
    otsensor::advisories::embedded().prepare();
    // The first device of the model: its record, its identity, and the catalogue's
    // answer for a vendor without a product, prepared and shared (not built, not
    // copied: the vendor's advisories are ~10 allocations each).
    let (_, first) = count_allocations(|| {
        for observation in observations(devices[0], 1_000) {
            analyzer.observe(observation);
        }
    });
    // 33 when written; a copy of the answer alone is ~50 more.
    assert!(
        first <= 48,
        "the first device of a prepared vendor allocated {first} times (at most 48)"
    );
    // A second device of the same model: its record and the values it stores, and no
    // copy of the (memoised) advisory matches, which are several per field.
    let (_, second) = count_allocations(|| {
        for observation in observations(devices[1], 2_000) {
            analyzer.observe(observation);
        }
    });
    let vulnerable = analyzer
        .devices()
        .filter(|d| !d.vulnerabilities.is_empty())
        .count();
    assert_eq!(
        vulnerable, 2,
        "the vendor matches advisories on both devices"
    );
    let bound = 4 * identity.len() + 8;
    assert!(
        second <= bound as u64,
        "a second device of a matched model allocated {second} times (at most {bound})"
    );
    // Both re-report what they said: nothing new, nothing allocated.
    let (_, steady) = count_allocations(|| {
        for ts_ns in [3_000, 4_000, 5_000] {
            for device in devices {
                for observation in observations(device, ts_ns) {
                    analyzer.observe(observation);
                }
            }
        }
    });
    assert_eq!(
        steady, 0,
        "known devices re-reporting their identity allocated {steady} times"
    );
    assert_eq!(
        analyzer.finish().alerts,
        0,
        "no alert among what was counted"
    );
}
