//! IT identification traffic: desktops and engineering workstations renew their DHCP
//! leases (option 12 host name, 60 vendor class, 55 parameter list) with the site's
//! resolver, which also serves DHCP; HMIs and engineering workstations announce their
//! host names and models over mDNS; switches name themselves in LLDP (see
//! `ot::LldpActor`). Each names a device the way the inventory must then show it, so
//! the names are functions of the plant ([`host_name`], [`switch_system`]).

use std::net::{IpAddr, Ipv4Addr};

use super::plant::{oui, Peer, Plant};
use super::script::{Planned, Script};
use super::wire::{FrameSpec, Net, L2};
use super::{between, Actor, Cx, SECOND};

const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const MDNS_PORT: u16 = 5353;
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// 224.0.0.251's multicast MAC (RFC 1112 §6.4).
const MDNS_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
/// What Windows clients send in option 60.
pub const VENDOR_CLASS: &str = "MSFT 5.0";

/// The host name a plant host gives itself: its product's first word and its index
/// ("desktop-042", "engineering-007", "simatic-003").
pub fn host_name(plant: &Plant, host: usize) -> String {
    let product = plant.hosts[host].identity.1;
    let word = product.split_whitespace().next().unwrap_or("host");
    format!("{}-{host:03}", word.to_lowercase())
}

/// The model a host announces in mDNS TXT `md=`: its product.
pub fn model(plant: &Plant, host: usize) -> &'static str {
    plant.hosts[host].identity.1
}

/// A switch's LLDP system name and description, from its MAC's vendor and its port.
pub fn switch_system(mac: [u8; 6], port: u16) -> (String, String) {
    let description = if mac[..3] == oui::HIRSCHMANN {
        "Hirschmann RSP35 Industrial Ethernet Switch, HiOS-3S 09.0.02"
    } else {
        "Cisco IOS Software, IE-3400 Software, Version 17.9.4"
    };
    (format!("sw-cell-{port:02}"), description.to_owned())
}

/// Hosts that announce themselves over mDNS: HMIs and engineering workstations.
pub fn mdns_announcers(plant: &Plant) -> Vec<usize> {
    let mut hosts: Vec<usize> = plant
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.identity.1.contains("HMI"))
        .map(|(i, _)| i)
        .collect();
    hosts.extend(plant.engineering.iter().copied());
    hosts
}

fn dhcp_option(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    out.push(code);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// A DHCP message (RFC 2131 §2): `op` 1 request / 2 reply, message type (option 53),
/// the client's address in ciaddr (renewing: RFC 2131 §4.3.2) and yiaddr (the ACK),
/// and the client's options.
pub fn dhcp_message(
    op: u8,
    message_type: u8,
    xid: u32,
    client: (Ipv4Addr, [u8; 6]),
    server: Ipv4Addr,
    client_options: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(&[op, 1, 6, 0]);
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // secs, flags
    out.extend_from_slice(&client.0.octets()); // ciaddr
    let yiaddr = if op == 2 {
        client.0
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    out.extend_from_slice(&yiaddr.octets());
    out.extend_from_slice(&[0; 8]); // siaddr, giaddr
    out.extend_from_slice(&client.1);
    out.resize(236, 0); // chaddr padding, sname, file
    out.extend_from_slice(&[99, 130, 83, 99]);
    dhcp_option(&mut out, 53, &[message_type]);
    if let Some(name) = client_options {
        dhcp_option(&mut out, 12, name.as_bytes());
        dhcp_option(&mut out, 60, VENDOR_CLASS.as_bytes());
        dhcp_option(
            &mut out,
            55,
            &[1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252],
        );
    } else {
        dhcp_option(&mut out, 54, &server.octets());
        dhcp_option(&mut out, 51, &86_400u32.to_be_bytes());
        dhcp_option(&mut out, 1, &[255, 255, 255, 0]);
    }
    out.push(255);
    out
}

/// A client renewing its lease with the resolver (which serves DHCP too): a unicast
/// REQUEST from its address, the server's ACK, every two to three minutes (so its
/// flow never idles past the generator's limit).
pub struct DhcpActor {
    client: usize,
    started: bool,
}

impl DhcpActor {
    pub fn new(client: usize) -> DhcpActor {
        DhcpActor {
            client,
            started: false,
        }
    }
}

impl Actor for DhcpActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            between(cx.rng, 120 * SECOND, 180 * SECOND)
        } else {
            between(cx.rng, 0, 5 * SECOND)
        };
        self.started = true;
        let plant = &*cx.plant;
        let xid: u32 = rand::Rng::random(cx.rng);
        let host = &plant.hosts[self.client];
        let server = plant.hosts[plant.resolver].ipv4;
        let name = host_name(plant, self.client);
        let client = (host.ipv4, host.mac);
        let request = super::ot::udp(
            plant,
            Peer::Host(self.client),
            Peer::Host(plant.resolver),
            false,
            (DHCP_CLIENT_PORT, DHCP_SERVER_PORT),
            dhcp_message(1, 3, xid, client, server, Some(&name)),
        );
        let ack = super::ot::udp(
            plant,
            Peer::Host(plant.resolver),
            Peer::Host(self.client),
            false,
            (DHCP_SERVER_PORT, DHCP_CLIENT_PORT),
            dhcp_message(2, 5, xid, client, server, None),
        );
        let answer = between(cx.rng, SECOND / 1000, SECOND / 50);
        for (delay_ns, spec) in [(delay, request), (answer, ack)] {
            script.push_back(Planned {
                delay_ns,
                spec: Some(spec),
                pdus: Vec::new(),
            });
        }
    }

    fn is_background(&self) -> bool {
        true
    }
}

fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn dns_record(out: &mut Vec<u8>, name: &str, rtype: u16, rdata: &[u8]) {
    dns_name(out, name);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&0x8001u16.to_be_bytes()); // cache-flush, IN
    out.extend_from_slice(&120u32.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// An mDNS announcement (RFC 6762 §8.3, RFC 6763): PTR from `_workstation._tcp` to the
/// instance, SRV to `<host>.local`, TXT with `md=<model>`, and the A record.
pub fn mdns_announcement(host: &str, model: &str, address: Ipv4Addr) -> Vec<u8> {
    let service = "_workstation._tcp.local";
    let instance = format!("{host}.{service}");
    let target = format!("{host}.local");
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0, 0, 0x84, 0x00, 0, 0, 0, 4, 0, 0, 0, 0]);
    let mut ptr = Vec::new();
    dns_name(&mut ptr, &instance);
    dns_record(&mut out, service, 12, &ptr);
    let mut srv = vec![0, 0, 0, 0, 0, 9];
    dns_name(&mut srv, &target);
    dns_record(&mut out, &instance, 33, &srv);
    let mut txt = Vec::new();
    let entry = format!("md={model}");
    txt.push(entry.len().min(255) as u8);
    txt.extend_from_slice(&entry.as_bytes()[..entry.len().min(255)]);
    dns_record(&mut out, &instance, 16, &txt);
    dns_record(&mut out, &target, 1, &address.octets());
    out
}

/// A host announcing itself over mDNS every one to two minutes.
pub struct MdnsActor {
    host: usize,
    started: bool,
}

impl MdnsActor {
    pub fn new(host: usize) -> MdnsActor {
        MdnsActor {
            host,
            started: false,
        }
    }
}

impl Actor for MdnsActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            between(cx.rng, 60 * SECOND, 120 * SECOND)
        } else {
            between(cx.rng, 0, 5 * SECOND)
        };
        self.started = true;
        let plant = &*cx.plant;
        let host = &plant.hosts[self.host];
        let spec = FrameSpec {
            l2: L2 {
                src: host.mac,
                dst: MDNS_MAC,
                vlan: host.vlan,
            },
            net: Net::Udp {
                src: IpAddr::V4(host.ipv4),
                dst: IpAddr::V4(MDNS_GROUP),
                sport: MDNS_PORT,
                dport: MDNS_PORT,
                payload: mdns_announcement(
                    &host_name(plant, self.host),
                    model(plant, self.host),
                    host.ipv4,
                ),
            },
        };
        script.push_back(Planned {
            delay_ns: delay,
            spec: Some(spec),
            pdus: Vec::new(),
        });
    }

    fn is_background(&self) -> bool {
        true
    }
}
