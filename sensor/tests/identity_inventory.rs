//! The shared captures that carry IT identification protocols, replayed through the
//! real pipeline into a store: the inventory's devices get the host names, system
//! names, descriptions and models the frames carry, each with the protocol it came
//! from. The expected values are tshark's fields for those frames (`dhcp.option.hostname`,
//! `dhcp.option.vendor_class_id`, `lldp.tlv.system.desc`, `cdp.deviceid`,
//! `cdp.platform`, `cdp.software_version`, `nbns.name`, `dns.resp.name`), read once
//! with tshark 4.0 and written down here. Identification protocols raise no alert.

use std::path::PathBuf;
use std::sync::Arc;

use otsensor::capture::pcap::PcapFiles;
use otsensor::config::Config;
use otsensor::pipeline::{replay, ReplayOptions, Summary};
use otsensor::store::Store;
use serde_json::Value;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps")).join(name)
}

/// Replays `capture` into a fresh store; the summary and every stored device record.
fn inventory(capture: &str) -> (Summary, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!(
        "otsensor-identity-{}-{capture}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let db = dir.join("otsensor.db");
    let policy = Arc::new(Config::default().validate().expect("default config"));
    let mut source = PcapFiles::open(&[shared(capture)]).expect("capture opens");
    let options = ReplayOptions {
        store: Some(Store::open(&db).expect("store")),
        ..ReplayOptions::default()
    };
    let summary = replay(&mut source, policy, options).expect("replay");
    let devices = Store::open(&db)
        .expect("store reopens")
        .devices()
        .expect("devices")
        .into_iter()
        .map(|(_, record)| record)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (summary, devices)
}

/// The device with this MAC or IP that reports `field`.
fn with_identity<'a>(devices: &'a [Value], key: &str, field: &str) -> &'a Value {
    devices
        .iter()
        .find(|d| (d["mac"] == key || d["ip"] == key) && !d["identity"][field].is_null())
        .unwrap_or_else(|| {
            let near: Vec<_> = devices
                .iter()
                .filter(|d| d["mac"] == key || d["ip"] == key)
                .collect();
            panic!("no device {key} with identity.{field}; records for it: {near:?}")
        })
}

fn assert_identity(devices: &[Value], key: &str, field: &str, value: &str, protocol: &str) {
    let device = with_identity(devices, key, field);
    assert_eq!(device["identity"][field], value, "{key} {field}");
    assert_eq!(device["identity_sources"][field], protocol, "{key} {field}");
}

#[test]
fn profinet_capture_dhcp_lldp_and_nbns_names() {
    let (summary, devices) = inventory("profinet-mixed-rt-dcp-ptcp-cm-errors.pcap");
    // tshark: 62 dhcp, 731 nbns, 201 lldp records.
    assert_eq!(summary.protocols.get("dhcp"), Some(&62));
    assert_eq!(summary.protocols.get("nbns"), Some(&731));
    assert_eq!(summary.protocols.get("lldp"), Some(&201));
    // Frame 118: DHCP Discover from 0.0.0.0, chaddr 00:0e:8c:ef:75:c5.
    assert_identity(
        &devices,
        "00:0e:8c:ef:75:c5",
        "host_name",
        "siemens-x208-switch",
        "dhcp",
    );
    // Frame 1237: a Windows laptop's Discover.
    assert_identity(
        &devices,
        "e4:11:5b:5a:d9:73",
        "host_name",
        "LT-US-DSWANSON",
        "dhcp",
    );
    assert_identity(
        &devices,
        "e4:11:5b:5a:d9:73",
        "vendor_class",
        "MSFT 5.0",
        "dhcp",
    );
    // LLDP system descriptions from two ports of the SCALANCE switch.
    for mac in ["00:0e:8c:ef:75:c9", "00:0e:8c:ef:75:cd"] {
        assert_identity(
            &devices,
            mac,
            "description",
            "Siemens AG SIMATIC S7 MULTIPORT SCALANCE X 200 FAM",
            "lldp",
        );
    }
    // NBNS registrations of KW-VLIPC<00> and <20> by 192.168.1.1; WORKGROUP<00> is a
    // group name and names no host.
    assert_identity(&devices, "192.168.1.1", "host_name", "KW-VLIPC", "nbns");
    assert!(devices
        .iter()
        .all(|d| d["identity"]["host_name"] != "WORKGROUP"));
}

#[test]
fn cdp_names_the_cisco_switch() {
    let (summary, devices) = inventory("enip-cl5000-firmware-change.pcap");
    assert_eq!(summary.protocols.get("cdp"), Some(&3));
    assert_eq!(summary.protocols.get("lldp"), Some(&6));
    let cdp = with_identity(&devices, "00:1e:f6:73:59:81", "system_name");
    assert_eq!(cdp["identity"]["system_name"], "Ns5gt");
    assert_eq!(cdp["identity"]["model"], "cisco WS-CE500-24TT");
    assert_eq!(
        cdp["identity"]["os"],
        "Cisco IOS Software, CE500 Software (CE500-LANBASE-M), Version 12"
    );
    assert_eq!(cdp["identity_sources"]["model"], "cdp");
    // Counted only: a CDP or LLDP frame is never a protocol error.
    assert_eq!(summary.malformed_pdus.get("cdp").copied().unwrap_or(0), 0);
    assert_eq!(summary.malformed_pdus.get("lldp").copied().unwrap_or(0), 0);
}

#[test]
fn mdns_names_the_opcua_discovery_server() {
    let (summary, devices) = inventory("opcua-open62541-discovery.pcap");
    assert_eq!(summary.protocols.get("mdns"), Some(&1));
    // dns.resp.name of the A records that are not service names.
    assert_identity(
        &devices,
        "192.168.224.105",
        "host_name",
        "Maui-16714",
        "mdns",
    );
}
