//! IT identification traffic: desktops and engineering workstations renew their DHCP
//! leases (option 12 host name, 60 vendor class, 55 parameter list) with the site's
//! resolver, which also serves DHCP, and, being Windows hosts, register their NetBIOS
//! names and look each other up over NBNS; HMIs and engineering workstations announce
//! their host names and models over mDNS; switches name themselves in LLDP (see
//! `ot::LldpActor`), the Cisco ones in CDP too; the NMS reads the MIB-II system group
//! of the switches and of the controllers that run SNMP agents. Each names a device
//! the way the inventory must then show it, so the names are functions of the plant
//! ([`host_name`], [`switch_system`], [`switch_platform`], [`snmp_system`]).

use std::net::{IpAddr, Ipv4Addr};

use super::plant::{oui, Peer, Plant};
use super::proto::{cdp, nbns, snmp, Pdu};
use super::script::{Planned, Script};
use super::wire::{FrameSpec, Net, L2};
use super::{between, Actor, Cx, MS, SECOND};

const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const MDNS_PORT: u16 = 5353;
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// 224.0.0.251's multicast MAC (RFC 1112 §6.4).
const MDNS_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
/// What Windows clients send in option 60.
pub const VENDOR_CLASS: &str = "MSFT 5.0";

/// Whether a host runs Windows: the IT desktops and the engineering workstations.
pub fn is_windows(plant: &Plant, host: usize) -> bool {
    plant.it_clients.contains(&host)
}

/// The host name a plant host gives itself: its product's first word and its index,
/// in upper case on Windows, which names itself so in DHCP, mDNS and NetBIOS alike
/// ("DESKTOP-042", "ENGINEERING-007", "simatic-003"); on Windows cut to NetBIOS's 15
/// characters, so that every protocol states the same name.
pub fn host_name(plant: &Plant, host: usize) -> String {
    let product = plant.hosts[host].identity.1;
    let word = product.split_whitespace().next().unwrap_or("host");
    let name = format!("{}-{host:03}", word.to_lowercase());
    if is_windows(plant, host) {
        nbns::netbios_name(&name)
    } else {
        name
    }
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

/// A Cisco switch's CDP platform; `None` for other vendors (Hirschmann switches speak
/// LLDP only).
pub fn switch_platform(mac: [u8; 6]) -> Option<&'static str> {
    (mac[..3] == oui::CISCO).then_some("cisco IE-3400-8P2S")
}

/// The full software version a Cisco switch states in CDP and SNMP sysDescr: its
/// LLDP system description, then more lines.
fn cisco_software_version(description: &str) -> String {
    format!(
        "{description}\r\nTechnical Support: http://www.cisco.com/techsupport\r\nCopyright (c) 1986-2023 by Cisco Systems, Inc."
    )
}

/// The switches that announce themselves over CDP: indexes into `plant.switches`.
pub fn cdp_announcers(plant: &Plant) -> Vec<usize> {
    (0..plant.switches.len())
        .filter(|&i| switch_platform(plant.switches[i]).is_some())
        .collect()
}

/// The hosts whose SNMP agents the NMS polls, with the version they answer: the
/// switches and the S7-1500 CPUs (v2c), and the Modbus gateways' older v1 agents.
pub fn snmp_agents(plant: &Plant) -> Vec<(usize, snmp::Version)> {
    let mut agents: Vec<(usize, snmp::Version)> = plant
        .switch_hosts
        .iter()
        .map(|&host| (host, snmp::Version::V2c))
        .collect();
    for (host, h) in plant.hosts.iter().enumerate() {
        if h.identity.1.starts_with("CPU 1516") {
            agents.push((host, snmp::Version::V2c));
        } else if h.identity.1.starts_with("MGate") {
            agents.push((host, snmp::Version::V1));
        }
    }
    agents
}

/// What an agent answers for sysDescr.0, sysObjectID.0 and sysName.0. A switch says
/// what it says in LLDP (sysDescr's first line is its LLDP description), a controller
/// names itself by [`host_name`].
pub fn snmp_system(plant: &Plant, host: usize) -> snmp::System {
    let h = &plant.hosts[host];
    if let Some(i) = plant.switch_hosts.iter().position(|&s| s == host) {
        let (name, description) = switch_system(h.mac, 1 + i as u16);
        let (descr, object_id) = if switch_platform(h.mac).is_some() {
            // ciscoProducts (enterprise 9, products subtree 1).
            (
                cisco_software_version(&description),
                vec![1, 3, 6, 1, 4, 1, 9, 1, 2685],
            )
        } else {
            // Hirschmann (enterprise 248), RSP products.
            (description, vec![1, 3, 6, 1, 4, 1, 248, 11, 2, 1, 1])
        };
        return snmp::System {
            descr,
            object_id,
            name,
        };
    }
    let (vendor, product, revision) = h.identity;
    let (descr, object_id) = if vendor == "Siemens" {
        // Siemens automation (enterprise 4329).
        (
            format!("Siemens, SIMATIC S7, {product}, FW: {revision}"),
            vec![1, 3, 6, 1, 4, 1, 4329, 6, 3, 2],
        )
    } else {
        // The Moxa gateways (enterprise 8691).
        (
            format!("{vendor} {product} Firmware V{revision}"),
            vec![1, 3, 6, 1, 4, 1, 8691, 2, 7],
        )
    };
    snmp::System {
        descr,
        object_id,
        name: host_name(plant, host),
    }
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

fn push(script: &mut Script, delay_ns: u64, spec: FrameSpec, pdu: Option<Pdu>) {
    script.push_back(Planned {
        delay_ns,
        spec: Some(spec),
        pdus: pdu.into_iter().collect(),
    });
}

/// A Cisco switch announcing itself over CDP every 60 s (its hold time is 180 s),
/// with its management address: a layer-2 frame like LLDP.
pub struct CdpActor {
    switch: usize,
    started: bool,
}

impl CdpActor {
    /// `switch` indexes `plant.switches`.
    pub fn new(switch: usize) -> CdpActor {
        CdpActor {
            switch,
            started: false,
        }
    }
}

impl Actor for CdpActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            between(cx.rng, 60 * SECOND - 10 * MS, 60 * SECOND + 10 * MS)
        } else {
            // Early, so that short captures carry the switches' CDP too.
            between(cx.rng, 0, 5 * SECOND)
        };
        self.started = true;
        let plant = &*cx.plant;
        let mac = plant.switches[self.switch];
        let port = 1 + self.switch as u16;
        let (name, description) = switch_system(mac, port);
        let address = plant
            .switch_hosts
            .get(self.switch)
            .map(|&host| plant.hosts[host].ipv4);
        let mut payload = Vec::with_capacity(320);
        let pdu = cdp::announcement(
            &mut payload,
            &cdp::Announcement {
                device_id: &name,
                software_version: &cisco_software_version(&description),
                platform: switch_platform(mac).unwrap_or("cisco"),
                port_id: &format!("GigabitEthernet1/{port}"),
                address,
            },
        );
        let spec = FrameSpec {
            l2: L2 {
                src: mac,
                dst: cdp::MULTICAST_MAC,
                vlan: 0,
            },
            net: Net::Llc { payload },
        };
        push(script, delay, spec, Some(pdu));
    }
}

/// The next Windows host after `host` on its subnet, round the ring (`None` when it
/// is alone there): whose name `host` looks up.
pub fn nbns_peer(plant: &Plant, host: usize) -> Option<usize> {
    let segment = plant.hosts[host].segment;
    let ring: Vec<usize> = plant
        .it_clients
        .iter()
        .copied()
        .filter(|&h| plant.hosts[h].segment == segment)
        .collect();
    let at = ring.iter().position(|&h| h == host)?;
    let peer = ring[(at + 1) % ring.len()];
    (peer != host).then_some(peer)
}

/// A Windows host on NetBIOS: it registers its names by broadcast when it starts
/// (workstation and server names, and its workgroup), then (soon after, and every one and a
/// half to four minutes) looks up its subnet neighbour's file server name by broadcast, which
/// the neighbour answers, and now and then the WPAD proxy name nobody answers.
pub struct NbnsActor {
    host: usize,
    started: bool,
    looked_up: bool,
}

impl NbnsActor {
    pub fn new(host: usize) -> NbnsActor {
        NbnsActor {
            host,
            started: false,
            looked_up: false,
        }
    }
}

impl Actor for NbnsActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let plant = &*cx.plant;
        let rng = &mut *cx.rng;
        let host = &plant.hosts[self.host];
        let [a, b, c, _] = host.ipv4.octets();
        let subnet_broadcast = Ipv4Addr::new(a, b, c, 255);
        let ports = (nbns::PORT, nbns::PORT);
        let name = host_name(plant, self.host);
        let mut id: u16 = rand::Rng::random(rng);
        if !self.started {
            self.started = true;
            let mut delay = between(rng, 0, 5 * SECOND);
            for (suffix, group) in [
                (nbns::suffix::WORKSTATION, false),
                (nbns::suffix::SERVER, false),
                (nbns::suffix::WORKSTATION, true),
            ] {
                let registered = if group { "WORKGROUP" } else { name.as_str() };
                let mut payload = Vec::with_capacity(68);
                id = id.wrapping_add(1);
                let pdu =
                    nbns::registration(&mut payload, id, registered, suffix, group, host.ipv4);
                let spec = super::ot::broadcast(plant, self.host, subnet_broadcast, ports, payload);
                push(script, delay, spec, Some(pdu));
                delay = between(rng, MS, 3 * MS);
            }
            return;
        }
        let mut delay = if self.looked_up {
            between(rng, 90 * SECOND, 240 * SECOND)
        } else {
            // The first lookups come soon after start-up.
            between(rng, 5 * SECOND, 60 * SECOND)
        };
        self.looked_up = true;
        let peer = nbns_peer(plant, self.host);
        // Alone on its subnet, the lookup of a name nobody holds keeps its
        // broadcasts going.
        if peer.is_none() || rand::Rng::random_bool(rng, 0.2) {
            let mut payload = Vec::with_capacity(50);
            let pdu = nbns::query(&mut payload, id, "WPAD", nbns::suffix::WORKSTATION);
            let spec = super::ot::broadcast(plant, self.host, subnet_broadcast, ports, payload);
            push(script, delay, spec, Some(pdu));
            delay = between(rng, 10 * MS, 500 * MS);
            id = id.wrapping_add(1);
        }
        let Some(peer) = peer else {
            return;
        };
        let peer_name = host_name(plant, peer);
        let mut payload = Vec::with_capacity(50);
        let pdu = nbns::query(&mut payload, id, &peer_name, nbns::suffix::SERVER);
        let spec = super::ot::broadcast(plant, self.host, subnet_broadcast, ports, payload);
        push(script, delay, spec, Some(pdu));
        let mut payload = Vec::with_capacity(62);
        let pdu = nbns::positive_response(
            &mut payload,
            id,
            &peer_name,
            nbns::suffix::SERVER,
            plant.hosts[peer].ipv4,
        );
        let spec = super::ot::udp(
            plant,
            Peer::Host(peer),
            Peer::Host(self.host),
            false,
            ports,
            payload,
        );
        push(
            script,
            between(rng, 200 * super::US, 3 * MS),
            spec,
            Some(pdu),
        );
    }

    fn is_background(&self) -> bool {
        true
    }
}

/// The NMS reading one agent's system group every two to three minutes from its own
/// port (one session per agent, so the flow never idles past the generator's limit).
pub struct SnmpPollActor {
    agent: usize,
    version: snmp::Version,
    /// The NMS's port for this agent, taken at the first poll.
    port: Option<u16>,
}

impl SnmpPollActor {
    pub fn new((agent, version): (usize, snmp::Version)) -> SnmpPollActor {
        SnmpPollActor {
            agent,
            version,
            port: None,
        }
    }
}

impl Actor for SnmpPollActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.port.is_some() {
            between(cx.rng, 120 * SECOND, 180 * SECOND)
        } else {
            between(cx.rng, 0, 10 * SECOND)
        };
        let nms = cx.plant.nms;
        let port = *self
            .port
            .get_or_insert_with(|| cx.plant.ephemeral_port(nms));
        let plant = &*cx.plant;
        // Positive, as net-snmp draws them.
        let request_id = rand::Rng::random_range(cx.rng, 1..i32::MAX);
        let mut request = Vec::with_capacity(64);
        snmp::get_system(&mut request, self.version, request_id);
        let mut response = Vec::with_capacity(320);
        let pdu = snmp::system_response(
            &mut response,
            self.version,
            request_id,
            &snmp_system(plant, self.agent),
        );
        let (nms, agent) = (Peer::Host(nms), Peer::Host(self.agent));
        let get = super::ot::udp(plant, nms, agent, false, (port, snmp::AGENT_PORT), request);
        let answer = super::ot::udp(plant, agent, nms, false, (snmp::AGENT_PORT, port), response);
        push(script, delay, get, None);
        push(script, between(cx.rng, MS, 20 * MS), answer, Some(pdu));
    }

    fn is_background(&self) -> bool {
        true
    }
}
