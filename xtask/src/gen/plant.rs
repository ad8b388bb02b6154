//! The simulated plant: hosts with vendor MACs and addresses on their subnets and
//! VLANs, and the roles that decide who talks to whom. Sizes scale with the requested
//! packet count so that per-device rates (and so the capture's duration) stay realistic.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::wire::Mac;

/// Organisationally unique identifiers of the vendors the plant is built from.
pub mod oui {
    pub const SIEMENS: [u8; 3] = [0x00, 0x1b, 0x1b];
    pub const SIEMENS_AD: [u8; 3] = [0x00, 0x0e, 0x8c];
    pub const ROCKWELL: [u8; 3] = [0x00, 0x00, 0xbc];
    pub const ROCKWELL_2: [u8; 3] = [0x00, 0x1d, 0x9c];
    pub const SCHNEIDER: [u8; 3] = [0x00, 0x80, 0xf4];
    pub const MOXA: [u8; 3] = [0x00, 0x90, 0xe8];
    pub const SEL: [u8; 3] = [0x00, 0x30, 0xa7];
    pub const HONEYWELL: [u8; 3] = [0x00, 0x40, 0x84];
    pub const HIRSCHMANN: [u8; 3] = [0x00, 0x80, 0x63];
    pub const CISCO: [u8; 3] = [0x00, 0x00, 0x0c];
    pub const DELL: [u8; 3] = [0x00, 0x14, 0x22];
    pub const HP: [u8; 3] = [0x3c, 0xd9, 0x2b];
    pub const VMWARE: [u8; 3] = [0x00, 0x50, 0x56];
}

/// The industrial protocol a PLC or RTU serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtService {
    Modbus,
    S7,
    /// S7comm-plus (TCP 102): an HMI reads an S7-1200/1500's variables.
    S7Plus,
    Enip,
    Dnp3,
    /// IEC 60870-5-104 (TCP 2404): the RTU reports, the SCADA master interrogates.
    Iec104,
    /// OPC UA binary (TCP 4840): a client reads a server's variables.
    OpcUa,
    /// MQTT 3.1.1 (TCP 1883) to a broker: a publisher's readings, or a subscriber.
    Mqtt {
        subscriber: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Host {
    pub mac: Mac,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    /// 802.1Q VLAN of the host's access port; 0 is untagged.
    pub vlan: u16,
    /// Index into `Plant::segments`: hosts that share a broadcast domain (ARP).
    pub segment: usize,
    /// Identity strings: vendor, product, revision.
    pub identity: (&'static str, &'static str, &'static str),
    next_port: u16,
}

/// The other end of a conversation: a plant host or a server beyond the gateway.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Host(usize),
    External(IpAddr),
}

/// One polling association: who polls whom, over what, how often.
#[derive(Clone, Copy, Debug)]
pub struct Association {
    pub client: usize,
    pub server: usize,
    pub service: OtService,
    pub interval_ns: u64,
}

#[derive(Debug)]
pub struct Plant {
    pub hosts: Vec<Host>,
    /// Hosts per broadcast domain.
    pub segments: Vec<Vec<usize>>,
    pub gateway_mac: Mac,
    pub switches: Vec<Mac>,
    /// The switches' management interfaces (hosts with the switch's MAC), in the
    /// order of `switches`.
    pub switch_hosts: Vec<usize>,
    /// The network management server that polls SNMP agents.
    pub nms: usize,
    pub external_v4: Vec<Ipv4Addr>,
    pub external_v6: Vec<Ipv6Addr>,
    pub associations: Vec<Association>,
    pub resolver: usize,
    /// Hosts that browse and resolve names (IT desktops, engineering workstations).
    pub it_clients: Vec<usize>,
    pub engineering: Vec<usize>,
    pub enip_devices: Vec<usize>,
    /// Protection IEDs publishing GOOSE on the station bus.
    pub ieds: Vec<usize>,
    /// PROFINET IO: (controller PLC, IO device).
    pub profinet: Vec<(usize, usize)>,
    /// BACnet sites: the BMS server and its controllers (host, device instance).
    pub bacnet_sites: Vec<(usize, Vec<(usize, u32)>)>,
    mac_counter: u32,
}

const MS: u64 = 1_000_000;

impl Plant {
    /// Builds the plant for a capture of about `packets` frames.
    pub fn build(packets: u64, rng: &mut ChaCha8Rng) -> Plant {
        let scale = packets as f64 / 1_000_000.0;
        let count = |per_million: f64, minimum: usize| {
            ((per_million * scale).round() as usize).max(minimum)
        };
        let mut plant = Plant {
            hosts: Vec::new(),
            segments: Vec::new(),
            gateway_mac: [0; 6],
            switches: Vec::new(),
            switch_hosts: Vec::new(),
            nms: 0,
            external_v4: Vec::new(),
            external_v6: Vec::new(),
            associations: Vec::new(),
            resolver: 0,
            it_clients: Vec::new(),
            engineering: Vec::new(),
            enip_devices: Vec::new(),
            ieds: Vec::new(),
            profinet: Vec::new(),
            bacnet_sites: Vec::new(),
            mac_counter: rng.random_range(0..0x00ff_ffff),
        };
        let mut segment_ids: BTreeMap<(u16, [u8; 3]), usize> = BTreeMap::new();

        // Control centre: SCADA masters, historian, engineering workstations.
        let masters: Vec<usize> = (0..count(6.0, 2).min(150))
            .map(|i| {
                let ip = Ipv4Addr::new(10, 10, 0, 10 + i as u8);
                plant.add(
                    oui::DELL,
                    ip,
                    None,
                    0,
                    ("Dell", "SCADA master", "1.0"),
                    &mut segment_ids,
                    rng,
                )
            })
            .collect();
        let historian = plant.add(
            oui::HP,
            Ipv4Addr::new(10, 10, 0, 5),
            None,
            0,
            ("HP", "Historian", "1.0"),
            &mut segment_ids,
            rng,
        );
        for i in 0..count(4.0, 1).min(50) {
            let ip = Ipv4Addr::new(10, 10, 0, 200 + i as u8);
            let ews = plant.add(
                oui::DELL,
                ip,
                None,
                0,
                ("Dell", "Engineering workstation", "1.0"),
                &mut segment_ids,
                rng,
            );
            plant.engineering.push(ews);
        }

        // Production cells of PLCs; two cells in five sit on a tagged VLAN with a local HMI.
        let mut plcs: Vec<OtService> = Vec::new();
        plcs.extend(std::iter::repeat_n(OtService::Modbus, count(80.0, 12)));
        plcs.extend(std::iter::repeat_n(OtService::S7, count(40.0, 8)));
        plcs.extend(std::iter::repeat_n(OtService::Enip, count(40.0, 8)));
        // Interleave so that every cell gets a mix of vendors.
        let mut order: Vec<usize> = (0..plcs.len()).collect();
        order.sort_by_key(|&i| (i * 7) % plcs.len());
        const PER_CELL: usize = 12;
        let cells = order.len().div_ceil(PER_CELL);
        for cell in 0..cells {
            let (b, c) = (20 + (cell / 250) as u8, (cell % 250) as u8);
            let tagged = cell % 5 < 2;
            let vlan = if tagged { 100 + cell as u16 } else { 0 };
            let hmi = tagged.then(|| {
                plant.add(
                    oui::SIEMENS_AD,
                    Ipv4Addr::new(10, b, c, 2),
                    None,
                    vlan,
                    ("Siemens", "SIMATIC HMI TP1200", "V17"),
                    &mut segment_ids,
                    rng,
                )
            });
            for (slot, &index) in order
                .iter()
                .skip(cell * PER_CELL)
                .take(PER_CELL)
                .enumerate()
            {
                let service = plcs[index];
                let ip = Ipv4Addr::new(10, b, c, 10 + slot as u8);
                let (vendor_oui, identity) = match service {
                    OtService::Modbus if slot % 4 == 3 => {
                        (oui::MOXA, ("Moxa", "MGate MB3180", "4.2"))
                    }
                    OtService::Modbus => (
                        oui::SCHNEIDER,
                        ("Schneider Electric", "BMX P34 2020", "V3.10"),
                    ),
                    OtService::S7 if slot % 2 == 0 => {
                        (oui::SIEMENS, ("Siemens", "CPU 315-2 PN/DP", "V3.2"))
                    }
                    OtService::S7 => (oui::SIEMENS_AD, ("Siemens", "CPU 1516-3 PN/DP", "V2.9")),
                    OtService::Enip if slot % 2 == 0 => (
                        oui::ROCKWELL,
                        ("Rockwell Automation", "1756-L83E/B", "33.11"),
                    ),
                    OtService::Enip => (
                        oui::ROCKWELL_2,
                        ("Rockwell Automation", "1769-L33ER/A", "32.11"),
                    ),
                    _ => (oui::SEL, ("SEL", "RTAC", "1.0")),
                };
                let plc = plant.add(vendor_oui, ip, None, vlan, identity, &mut segment_ids, rng);
                if service == OtService::Enip {
                    plant.enip_devices.push(plc);
                }
                let poller = hmi.unwrap_or(masters[cell % masters.len()]);
                plant.associate(poller, plc, service, rng);
                // A cell's own HMI reads its S7-1500s over S7comm-plus too.
                if service == OtService::S7 && slot % 2 == 1 {
                    if let Some(hmi) = hmi {
                        plant.associate(hmi, plc, OtService::S7Plus, rng);
                    }
                }
                // The historian also reads a share of the Modbus PLCs.
                if service == OtService::Modbus && rng.random_bool(0.15) {
                    plant.associate(historian, plc, service, rng);
                }
            }
        }

        // Some S7 PLCs are PROFINET IO controllers of a remote IO station in their cell.
        let controllers: Vec<usize> = plant
            .associations
            .iter()
            .filter(|a| a.service == OtService::S7)
            .map(|a| a.server)
            .take(count(4.0, 1))
            .collect();
        for controller in controllers {
            let plc = &plant.hosts[controller];
            let [a, b, c, d] = plc.ipv4.octets();
            let vlan = plc.vlan;
            let device = plant.add(
                oui::SIEMENS,
                Ipv4Addr::new(a, b, c, d + 100),
                None,
                vlan,
                ("Siemens", "ET 200SP IM 155-6 PN ST", "V4.2"),
                &mut segment_ids,
                rng,
            );
            plant.profinet.push((controller, device));
        }

        // Substation RTUs speaking DNP3 to the SCADA masters.
        for i in 0..count(40.0, 6) {
            let ip = Ipv4Addr::new(10, 30 + (i / 200) as u8, 0, 10 + (i % 200) as u8);
            let rtu = plant.add(
                oui::SEL,
                ip,
                None,
                0,
                ("SEL", "SEL-3530 RTAC", "R150"),
                &mut segment_ids,
                rng,
            );
            plant.associate(masters[i % masters.len()], rtu, OtService::Dnp3, rng);
        }

        // Telecontrol RTUs speaking IEC 60870-5-104 to the SCADA masters.
        for i in 0..count(20.0, 3) {
            let ip = Ipv4Addr::new(10, 31 + (i / 200) as u8, 0, 10 + (i % 200) as u8);
            let rtu = plant.add(
                oui::SIEMENS,
                ip,
                None,
                0,
                ("Siemens", "SICAM A8000 CP-8050", "V05.10"),
                &mut segment_ids,
                rng,
            );
            plant.associate(masters[i % masters.len()], rtu, OtService::Iec104, rng);
        }

        // Protection IEDs on the substation's station bus (VLAN 10), publishing GOOSE.
        for i in 0..count(6.0, 2).min(200) {
            let ied = plant.add(
                oui::SEL,
                Ipv4Addr::new(10, 35, 0, 10 + i as u8),
                None,
                10,
                ("SEL", "SEL-487E relay", "R320"),
                &mut segment_ids,
                rng,
            );
            plant.ieds.push(ied);
        }

        // OPC UA servers read by the historian and a SCADA master.
        for i in 0..count(4.0, 1).min(40) {
            let server = plant.add(
                oui::SIEMENS_AD,
                Ipv4Addr::new(10, 10, 1, 10 + i as u8),
                None,
                0,
                ("Siemens", "SIMATIC S7-1500 OPC UA server", "V3.0"),
                &mut segment_ids,
                rng,
            );
            plant.associate(historian, server, OtService::OpcUa, rng);
            plant.associate(masters[i % masters.len()], server, OtService::OpcUa, rng);
        }

        // An MQTT broker: edge gateways publish readings, the historian subscribes.
        let broker = plant.add(
            oui::VMWARE,
            Ipv4Addr::new(10, 10, 1, 100),
            None,
            0,
            ("VMware", "MQTT broker", "2.0"),
            &mut segment_ids,
            rng,
        );
        for i in 0..count(10.0, 2).min(200) {
            let gateway = plant.add(
                oui::MOXA,
                Ipv4Addr::new(10, 10, 2, 10 + i as u8),
                None,
                0,
                ("Moxa", "UC-8112A IIoT gateway", "3.4"),
                &mut segment_ids,
                rng,
            );
            plant.associate(gateway, broker, OtService::Mqtt { subscriber: false }, rng);
        }
        plant.associate(historian, broker, OtService::Mqtt { subscriber: true }, rng);

        // Building automation: BACnet/IP controllers on VLAN 50+, one BMS server per site.
        let controllers = count(50.0, 6);
        for site in 0..controllers.div_ceil(60) {
            let (c, vlan) = (5 + site as u8, 50 + site as u16);
            let server = plant.add(
                oui::VMWARE,
                Ipv4Addr::new(172, 16, c, 10),
                None,
                vlan,
                ("VMware", "BMS server", "1.0"),
                &mut segment_ids,
                rng,
            );
            let members = (site * 60..controllers.min((site + 1) * 60))
                .map(|i| {
                    let ip = Ipv4Addr::new(172, 16, c, 20 + (i % 60) as u8);
                    let host = plant.add(
                        oui::HONEYWELL,
                        ip,
                        None,
                        vlan,
                        ("Honeywell", "Spyder", "4.1"),
                        &mut segment_ids,
                        rng,
                    );
                    (host, 1000 + i as u32)
                })
                .collect();
            plant.bacnet_sites.push((server, members));
        }

        // IT segment: resolver, desktops (half dual-stack), default gateway.
        let v6 =
            |third: u16, host: u16| Ipv6Addr::new(0xfd12, 0x3456, 0x789a, third, 0, 0, 0, host);
        plant.resolver = plant.add(
            oui::VMWARE,
            Ipv4Addr::new(192, 168, 10, 53),
            Some(v6(10, 0x53)),
            0,
            ("VMware", "DNS resolver", "1.0"),
            &mut segment_ids,
            rng,
        );
        for i in 0..count(50.0, 6) {
            let (c, h) = (10 + (i / 150) as u8, 100 + (i % 150) as u8);
            let ipv6 = (i % 2 == 0).then(|| v6(u16::from(c), u16::from(h)));
            let vendor = if i % 3 == 0 { oui::HP } else { oui::DELL };
            let host = plant.add(
                vendor,
                Ipv4Addr::new(192, 168, c, h),
                ipv6,
                0,
                ("PC", "Desktop", "1.0"),
                &mut segment_ids,
                rng,
            );
            plant.it_clients.push(host);
        }
        plant.it_clients.extend(plant.engineering.iter().copied());
        plant.gateway_mac = plant.next_mac(oui::CISCO);
        // Managed switches, each with a management address on the control centre's
        // management subnet.
        for i in 0..count(6.0, 2).min(200) {
            let (vendor, identity) = if i % 2 == 0 {
                (oui::HIRSCHMANN, ("Hirschmann", "RSP35", "09.0.02"))
            } else {
                (oui::CISCO, ("Cisco", "IE-3400-8P2S", "17.9.4"))
            };
            let ip = Ipv4Addr::new(10, 10, 3, 10 + i as u8);
            let switch = plant.add(vendor, ip, None, 0, identity, &mut segment_ids, rng);
            plant.switches.push(plant.hosts[switch].mac);
            plant.switch_hosts.push(switch);
        }
        // The NMS polling the switches' and controllers' SNMP agents.
        plant.nms = plant.add(
            oui::VMWARE,
            Ipv4Addr::new(10, 10, 0, 7),
            None,
            0,
            ("VMware", "Network monitoring server", "1.0"),
            &mut segment_ids,
            rng,
        );
        plant.external_v4 = (0..12)
            .map(|i| {
                if i < 8 {
                    Ipv4Addr::new(203, 0, 113, 10 + i)
                } else {
                    Ipv4Addr::new(198, 51, 100, i)
                }
            })
            .collect();
        plant.external_v6 = (1..=4)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, i))
            .collect();
        plant
    }

    /// A MAC with `oui` and a suffix unique in this plant (an odd stride over 2^24).
    fn next_mac(&mut self, oui: [u8; 3]) -> Mac {
        self.mac_counter = (self.mac_counter + 0x9e37) & 0x00ff_ffff;
        let s = self.mac_counter.to_be_bytes();
        [oui[0], oui[1], oui[2], s[1], s[2], s[3]]
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        oui: [u8; 3],
        ipv4: Ipv4Addr,
        ipv6: Option<Ipv6Addr>,
        vlan: u16,
        identity: (&'static str, &'static str, &'static str),
        segment_ids: &mut BTreeMap<(u16, [u8; 3]), usize>,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        let [a, b, c, _] = ipv4.octets();
        let next_segment = self.segments.len();
        let segment = *segment_ids.entry((vlan, [a, b, c])).or_insert(next_segment);
        if segment == next_segment {
            self.segments.push(Vec::new());
        }
        let index = self.hosts.len();
        self.segments[segment].push(index);
        let mac = self.next_mac(oui);
        self.hosts.push(Host {
            mac,
            ipv4,
            ipv6,
            vlan,
            segment,
            identity,
            next_port: rng.random_range(49_152..60_000),
        });
        index
    }

    fn associate(
        &mut self,
        client: usize,
        server: usize,
        service: OtService,
        rng: &mut ChaCha8Rng,
    ) {
        let choices: &[u64] = match service {
            OtService::Modbus => &[250, 500, 1000, 1000, 2000],
            OtService::S7 | OtService::S7Plus => &[500, 1000, 1000],
            OtService::Enip => &[500, 1000, 2000],
            OtService::Dnp3 => &[1000, 2000, 2000, 5000],
            OtService::Iec104 => &[1000, 2000, 5000],
            OtService::OpcUa => &[1000, 1000, 2000],
            OtService::Mqtt { .. } => &[1000, 2000, 5000, 10_000],
        };
        let interval_ns = choices[rng.random_range(0..choices.len())] * MS;
        self.associations.push(Association {
            client,
            server,
            service,
            interval_ns,
        });
    }

    /// A fresh ephemeral port of `host` (49152-65535, then around again).
    pub fn ephemeral_port(&mut self, host: usize) -> u16 {
        let h = &mut self.hosts[host];
        let port = h.next_port;
        h.next_port = if port == u16::MAX { 49_152 } else { port + 1 };
        port
    }
}
