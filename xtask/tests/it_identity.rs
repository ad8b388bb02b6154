//! A generated plant whose desktops renew DHCP leases and register their NetBIOS
//! names, whose HMIs and engineering workstations announce themselves over mDNS,
//! whose switches name themselves in LLDP (and the Cisco ones in CDP), whose NMS reads
//! the SNMP system group of switches and controllers, and whose IEDs answer the SCADA
//! masters' MMS Identify, replayed through the real pipeline into a store: every such
//! device carries the name (and model, description, object id) the generator gave it,
//! with the protocol it came from; and these protocols add no alert of their own.

use std::collections::BTreeMap;
use std::sync::Arc;

use otsensor::capture::pcap::PcapFiles;
use otsensor::config::{Config, HumanDuration};
use otsensor::pipeline::{replay, ReplayOptions};
use otsensor::store::Store;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use xtask::gen::proto::snmp;
use xtask::gen::{self, identity, plant::Plant, MixOptions, Resolution};

const PACKETS: u64 = 40_000;
const SEED: u64 = 11;

#[test]
fn generated_plant_devices_get_their_dhcp_mdns_lldp_cdp_nbns_and_snmp_names() {
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
    for protocol in ["dhcp", "mdns", "lldp", "cdp", "nbns", "snmp"] {
        assert!(
            summary.protocols.get(protocol).is_some_and(|&n| n > 0),
            "no {protocol}: {:?}",
            summary.protocols
        );
    }
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

    // NBNS: Windows hosts register their names (the same as their DHCP host names):
    // some hold the name last from NetBIOS.
    let nbns_named = plant
        .it_clients
        .iter()
        .filter(|&&client| {
            by_ip[&plant.hosts[client].ipv4.to_string()]["identity_sources"]["host_name"] == "nbns"
        })
        .count();
    assert!(nbns_named > 0, "no host name from NBNS");

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

    // LLDP: switches (at their management addresses) carry their system name and
    // description, which CDP and SNMP repeat.
    let mut cdp_checked = 0;
    for (i, mac) in plant.switches.iter().enumerate() {
        let ip = plant.hosts[plant.switch_hosts[i]].ipv4.to_string();
        let device = by_ip
            .get(&ip)
            .unwrap_or_else(|| panic!("switch {ip} not in inventory"));
        let (name, description) = identity::switch_system(*mac, 1 + i as u16);
        assert_eq!(device["identity"]["system_name"], name.as_str(), "{ip}");
        assert_eq!(device["identity"]["description"], description.as_str());
        let source = device["identity_sources"]["system_name"].as_str();
        assert!(
            matches!(source, Some("lldp" | "cdp" | "snmp")),
            "{ip}: {source:?}"
        );
        // CDP: the Cisco ones' platform and software (its first line).
        match identity::switch_platform(*mac) {
            Some(platform) => {
                assert_eq!(device["identity"]["model"], platform, "{ip}");
                assert_eq!(device["identity_sources"]["model"], "cdp");
                assert_eq!(device["identity"]["os"], description.as_str());
                cdp_checked += 1;
            }
            None => assert!(device["identity"]["model"].is_null(), "{ip}"),
        }
    }
    assert!(cdp_checked >= 1, "{cdp_checked}");

    // SNMP: every polled agent's sysName, sysDescr (its first line) and sysObjectID.
    let mut snmp_checked = [0; 2];
    for (agent, version) in identity::snmp_agents(&plant) {
        let ip = plant.hosts[agent].ipv4.to_string();
        let device = by_ip
            .get(&ip)
            .unwrap_or_else(|| panic!("agent {ip} not in inventory"));
        let system = identity::snmp_system(&plant, agent);
        let first_line = system.descr.lines().next().unwrap_or_default();
        let object_id = system
            .object_id
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".");
        assert_eq!(
            device["identity"]["system_name"],
            system.name.as_str(),
            "{ip}"
        );
        assert_eq!(device["identity"]["description"], first_line, "{ip}");
        assert_eq!(device["identity"]["object_id"], object_id.as_str(), "{ip}");
        assert_eq!(device["identity_sources"]["object_id"], "snmp");
        snmp_checked[usize::from(version == snmp::Version::V2c)] += 1;
    }
    assert!(snmp_checked.iter().all(|&n| n >= 1), "{snmp_checked:?}");

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
