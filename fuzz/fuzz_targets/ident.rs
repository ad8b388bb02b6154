//! The six IT identification views on arbitrary bytes: DHCP (options, client FQDN),
//! LLDP (TLV walk, ids, management address), CDP (from SNAP and bare, TLVs, address
//! list), NBNS and mDNS (DNS record walk, names with compression pointers, NetBIOS
//! names, NB/NBSTAT data, TXT keys) and SNMP (BER header, bindings, OID text). The
//! first byte picks the view, the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::{cdp, dhcp, lldp, mdns, nbns, snmp};

fn dns_walk(message: otsensor_wire::dns::Message<'_>) {
    let mut name = [0u8; 256];
    for (at, _) in message.questions() {
        let _ = message.name_into(at, &mut name);
        let _ = message.first_label(at);
    }
    let mut records = message.records();
    for record in records.by_ref() {
        assert!(record.rdata_at + record.rdata.len() <= message.as_bytes().len());
        if let Some(written) = message.name_into(record.name_at, &mut name) {
            assert!(written.len() <= name.len());
        }
        let _ = message.name_into(record.rdata_at, &mut name);
        let _ = mdns::srv_target_at(&record);
        let _ = mdns::txt_value(record.rdata, b"md");
        let _ = nbns::nb_addresses(record.rdata).count();
        let _ = nbns::nbstat_names(record.rdata).count();
    }
    let _ = records.complete();
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            if let Ok(message) = dhcp::Dhcp::new_checked(input) {
                let _ = (
                    message.op(),
                    message.xid(),
                    message.ciaddr(),
                    message.yiaddr(),
                );
                let _ = (
                    message.client_mac(),
                    message.message_type(),
                    message.host_name(),
                );
                let _ = (message.vendor_class_id(), message.parameter_request_list());
                let _ = message.anomalies();
                if let Some(fqdn) = message.client_fqdn() {
                    let mut out = [0u8; 64];
                    assert!(fqdn.name_into(&mut out).len() <= 64);
                }
            }
        }
        1 => {
            if let Ok(frame) = lldp::Lldp::new_checked(input) {
                let _ = (frame.chassis_id(), frame.port_id(), frame.ttl());
                let _ = (frame.system_name(), frame.system_description());
                let _ = frame.port_description();
                let _ = frame.management_address().map(|m| m.ipv4());
                let _ = frame.anomalies();
            }
        }
        2 => {
            for parsed in [cdp::from_snap(input), cdp::Cdp::new_checked(input)] {
                if let Ok(message) = parsed {
                    let _ = (message.version(), message.ttl(), message.device_id());
                    let _ = (message.port_id(), message.software_version());
                    let _ = (
                        message.platform(),
                        message.ipv4_address(),
                        message.anomalies(),
                    );
                }
            }
        }
        3 => {
            if let Ok(message) = nbns::Nbns::new_checked(input) {
                let _ = message.opcode();
                for (at, _) in message.message.questions() {
                    let _ = message
                        .name_at(at)
                        .map(|n| (n.name().len(), n.is_host_suffix()));
                }
                dns_walk(message.message);
            }
        }
        4 => {
            if let Ok(message) = mdns::Mdns::new_checked(input) {
                let _ = message.is_response();
                dns_walk(message.message);
            }
        }
        _ => {
            if let Ok(message) = snmp::Snmp::new_checked(input) {
                let _ = (message.version(), message.pdu_type(), message.request_id());
                let _ = (message.error_status(), message.error_index());
                let mut out = [0u8; 64];
                for binding in message.bindings() {
                    assert!(snmp::oid_text(binding.oid, &mut out).len() <= 64);
                }
            }
        }
    }
});
