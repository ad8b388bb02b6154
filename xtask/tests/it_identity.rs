//! A generated plant whose desktops renew DHCP leases, whose HMIs and engineering
//! workstations announce themselves over mDNS, whose switches name themselves in
//! LLDP and whose IEDs answer the SCADA masters' MMS Identify, replayed through the
//! real pipeline into a store: every such device carries the name (and model) the
//! generator gave it, with the protocol it came from; and these protocols add no alert
//! of their own.

use std::collections::BTreeMap;
use std::sync::Arc;

use otsensor::capture::pcap::PcapFiles;
use otsensor::config::{Config, HumanDuration};
use otsensor::pipeline::{replay, ReplayOptions};
use otsensor::store::Store;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use xtask::gen::{self, identity, plant::Plant, MixOptions, Resolution};

const PACKETS: u64 = 40_000;
const SEED: u64 = 11;

#[test]
fn generated_plant_devices_get_their_dhcp_mdns_and_lldp_names() {
    let dir = std::env::temp_dir().join(format!("xtask-it-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let capture = dir.join("mix.pcap");
    let options = MixOptions {
        packets: PACKETS,
        seed: SEED,
        resolution: Resolution::Micro,
    };
    gen::mix(&options, &capture).expect("generate the mix");
    // The plant the mix was built from (the generator's first use of its stream).
    let plant = Plant::build(PACKETS, &mut ChaCha8Rng::seed_from_u64(SEED));

    let db = dir.join("otsensor.db");
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(3600);
    let policy = Arc::new(config.validate().expect("config"));
    let mut source = PcapFiles::open(std::slice::from_ref(&capture)).expect("open");
    let summary = replay(
        &mut source,
        policy,
        ReplayOptions {
            store: Some(Store::open(&db).expect("store")),
            ..ReplayOptions::default()
        },
    )
    .expect("replay");
    assert!(summary.protocols.get("dhcp").is_some_and(|&n| n > 0));
    assert!(summary.protocols.get("mdns").is_some_and(|&n| n > 0));
    assert!(summary.protocols.get("lldp").is_some_and(|&n| n > 0));
    let stored: Vec<Value> = Store::open(&db)
        .expect("reopen")
        .devices()
        .expect("devices")
        .into_iter()
        .map(|(_, record)| record)
        .collect();
    let by_ip: BTreeMap<String, &Value> = stored
        .iter()
        .filter_map(|d| Some((d["ip"].as_str()?.to_owned(), d)))
        .collect();
    let by_mac: BTreeMap<String, &Value> = stored
        .iter()
        .filter(|d| d["ip"].is_null())
        .filter_map(|d| Some((d["mac"].as_str()?.to_owned(), d)))
        .collect();

    // DHCP: every IT client names itself (option 12) with its vendor class.
    let mut dhcp_checked = 0;
    for &client in &plant.it_clients {
        let ip = plant.hosts[client].ipv4.to_string();
        let device = by_ip
            .get(&ip)
            .unwrap_or_else(|| panic!("{ip} not in inventory"));
        assert_eq!(
            device["identity"]["host_name"],
            identity::host_name(&plant, client),
            "{ip}"
        );
        assert_eq!(device["identity"]["vendor_class"], identity::VENDOR_CLASS);
        assert_eq!(device["identity_sources"]["vendor_class"], "dhcp");
        dhcp_checked += 1;
    }
    assert!(dhcp_checked >= 6, "{dhcp_checked}");

    // mDNS: HMIs announce host name and model (TXT md=).
    let mut mdns_checked = 0;
    for host in identity::mdns_announcers(&plant) {
        let ip = plant.hosts[host].ipv4.to_string();
        let device = by_ip
            .get(&ip)
            .unwrap_or_else(|| panic!("{ip} not in inventory"));
        assert_eq!(
            device["identity"]["host_name"],
            identity::host_name(&plant, host)
        );
        assert_eq!(device["identity"]["model"], identity::model(&plant, host));
        assert_eq!(device["identity_sources"]["model"], "mdns");
        mdns_checked += 1;
    }
    assert!(mdns_checked >= 2, "{mdns_checked}");

    // MMS: the SCADA masters' Identify names each IED's vendor, model and revision.
    for &ied in &plant.ieds {
        let host = &plant.hosts[ied];
        let ip = host.ipv4.to_string();
        let device = by_ip
            .get(&ip)
            .unwrap_or_else(|| panic!("{ip} not in inventory"));
        let (vendor, model, revision) = host.identity;
        for (field, value) in [("vendor", vendor), ("model", model), ("firmware", revision)] {
            assert_eq!(device["identity"][field], value, "{ip} {field}");
            assert_eq!(device["identity_sources"][field], "mms", "{ip} {field}");
        }
    }
    assert!(!plant.ieds.is_empty());

    // LLDP: switches (MAC-only devices) carry their system name and description.
    for (i, mac) in plant.switches.iter().enumerate() {
        let text = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let device = by_mac
            .get(&text)
            .unwrap_or_else(|| panic!("{text} not in inventory"));
        let (name, description) = identity::switch_system(*mac, 1 + i as u16);
        assert_eq!(device["identity"]["system_name"], name.as_str());
        assert_eq!(device["identity"]["description"], description.as_str());
        assert_eq!(device["identity_sources"]["system_name"], "lldp");
    }

    // All within learning: the only alerts are the protocol failures the mix's
    // industrial error replies raise by design (they alert while learning too); the
    // identification traffic adds none.
    let by_design = ["bacnet_failure", "cip_failure", "illegal_operation"];
    for signature in summary.alerts_by_signature.keys() {
        assert!(
            by_design.contains(&signature.as_str()),
            "unexpected alert {signature}: {:?}",
            summary.alerts_by_signature
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
