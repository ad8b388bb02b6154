//! `cargo xtask gen scenario --name NAME --out FILE`: labelled captures, one per
//! detection. Each is a small plant's normal traffic — a learning phase of
//! [`LEARNING_S`] seconds, then more of the same — with the attack at [`ATTACK_S`];
//! `FILE.truth.json` lists the alerts that must fire (signature, src, dst) and the
//! learning duration to configure. `clean` is the same plant with no attack.
//!
//! The plant: an HMI polls a Modbus PLC every 10 s (short sessions, FC 3; FC 43 device
//! identification once), reads the S7 PLC over S7comm-plus, touches the CIP and DNP3
//! controllers' ports (handshakes without payload) and the BACnet controller (Who-Is /
//! I-Am), fetches updates from one external server; an engineering workstation
//! programs the Modbus PLC once (UMAS); every device ARPs for the HMI every 10 s. The
//! substation and edge: an IEC 104 RTU, an OPC UA server, an MQTT broker, two GOOSE
//! IEDs. The cell: the S7 PLC drives a PROFINET IO device (DCP, RT cyclic data), a
//! switch announces itself in LLDP, hosts renew DHCP leases, mDNS chatter; a bay
//! controller answers MMS. The network: a Cisco switch in CDP, NetBIOS names, an NMS
//! reading SNMP system groups. PDUs come
//! from the mix generator's builders (`proto`), so they are valid for the real
//! dissectors.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::identity;
use super::pcap::{PcapWriter, Resolution};
use super::proto::{
    bacnet, cdp, dnp3, enip, goose, iec104, mms, modbus, mqtt, nbns, opcua, profinet, s7comm,
    s7commplus, snmp,
};
use super::truth::Tracker;
use super::wire::{self, tcp_flags, FrameSpec, Net, L2};
use super::{truth_path, MS, SECOND};

/// Learning phase to configure (`learning.duration`), seconds.
pub const LEARNING_S: u64 = 120;
/// When the attack starts, seconds after the first frame.
pub const ATTACK_S: u64 = 150;
/// End of the capture, seconds after the first frame.
pub const END_S: u64 = 200;
/// End of the `device_quiet` capture: long enough for the RTU's quiet limit (its
/// learned gap of about a minute × `detection.silent_device.quiet_factor`) to pass.
const QUIET_END_S: u64 = 800;
/// End of the `silent_polled_rtu` capture: the polled RTU dies at [`ATTACK_S`] and is
/// still silent six minutes later.
const SILENT_RTU_END_S: u64 = ATTACK_S + 360;
/// When the quiet device of `device_quiet` sends again.
const QUIET_BACK_S: u64 = 780;
/// 2024-03-04 06:00:00 UTC.
const START_NS: u64 = 1_709_532_000 * SECOND;

/// Every scenario, in documentation order.
pub const SCENARIOS: [&str; 40] = [
    "clean",
    "new_device",
    "internet_connection",
    "remote_access",
    "scan",
    "discovery_sweep",
    "modbus_unit_sweep",
    "plc_programming",
    "firmware_change",
    "plc_stop",
    "plc_stop_s7",
    "plc_stop_cip",
    "plc_stop_dnp3",
    "plc_stop_bacnet",
    "plc_stop_mms",
    "plc_stop_s7commplus",
    "device_silent",
    "device_quiet",
    "cip_failure",
    "bacnet_failure",
    "illegal_operation",
    "new_conversation",
    "unauthorized_write",
    "ip_conflict",
    "midstream_c2",
    "midstream_internet",
    "inbound_internet",
    "syn_flood",
    "modbus_address_sweep",
    "s7_szl_enumeration",
    "cip_attribute_enumeration",
    "bacnet_object_sweep",
    "silent_polled_rtu",
    "profinet_io_write",
    "profinet_dcp_set",
    "iec104_control",
    "opcua_downgrade",
    "mqtt_new_publisher",
    "goose_anomaly",
    "combined",
];

/// One alert that must fire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExpectedAlert {
    pub signature: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// The device's MAC for an alert about a device known only by its MAC (GOOSE
    /// publishers): `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
}

/// The ground truth of one scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioTruth {
    pub name: String,
    pub learning_duration_s: u64,
    pub attack_at_s: u64,
    /// Application protocols whose inspection the attack relies on.
    pub protocols: Vec<String>,
    pub alerts: Vec<ExpectedAlert>,
    /// Devices in the capture by the analyzer's definition, counted from the frames as
    /// written (`truth::Tracker`, the mix generator's truth).
    #[serde(default)]
    pub devices: u64,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    mac: wire::Mac,
    ip: Ipv4Addr,
}

impl Node {
    const fn new(mac: wire::Mac, ip: [u8; 4]) -> Node {
        Node {
            mac,
            ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        }
    }

    fn addr(self) -> IpAddr {
        IpAddr::V4(self.ip)
    }
}

const GATEWAY: Node = Node::new([0x00, 0x1b, 0x1b, 0x00, 0x00, 0x01], [10, 10, 0, 1]);
const EWS: Node = Node::new([0x00, 0x1b, 0x21, 0x00, 0x00, 0x05], [10, 10, 0, 5]);
const HMI: Node = Node::new([0x00, 0x1b, 0x21, 0x00, 0x00, 0x10], [10, 10, 0, 10]);
const PLC_MODBUS: Node = Node::new([0x00, 0x80, 0xf4, 0x00, 0x00, 0x20], [10, 10, 0, 20]);
const PLC_S7: Node = Node::new([0x00, 0x1b, 0x1b, 0x00, 0x00, 0x21], [10, 10, 0, 21]);
const PLC_CIP: Node = Node::new([0x00, 0x00, 0xbc, 0x00, 0x00, 0x22], [10, 10, 0, 22]);
const RTU: Node = Node::new([0x00, 0x50, 0xc2, 0x00, 0x00, 0x30], [10, 10, 0, 30]);
const BACNET: Node = Node::new([0x00, 0x50, 0xc2, 0x00, 0x00, 0x40], [10, 10, 0, 40]);
/// A Modbus RTU the HMI polls every 2 s over one persistent connection
/// (`silent_polled_rtu` only).
const POLLED_RTU: Node = Node::new([0x00, 0x50, 0xc2, 0x00, 0x00, 0x31], [10, 10, 0, 31]);
/// An IEC 60870-5-104 RTU (controlled station) the HMI interrogates.
const RTU_104: Node = Node::new([0x00, 0x0a, 0xdc, 0x00, 0x00, 0x50], [10, 10, 0, 50]);
/// An OPC UA server the HMI reads over a signed channel (Basic256Sha256).
const OPCUA_SERVER: Node = Node::new([0x00, 0x0e, 0x8c, 0x00, 0x00, 0x60], [10, 10, 0, 60]);
/// An MQTT broker, the edge gateway that publishes to it, the HMI subscribes.
const BROKER: Node = Node::new([0x00, 0x1b, 0x21, 0x00, 0x00, 0x70], [10, 10, 0, 70]);
const EDGE_GATEWAY: Node = Node::new([0x00, 0x1b, 0x21, 0x00, 0x00, 0x71], [10, 10, 0, 71]);
/// The S7 PLC's PROFINET IO device (an ET 200SP head station): RT cyclic frames both
/// ways, answers the PLC's DCP Identify. Layer 2 only: a MAC-only device.
const IO_DEVICE: wire::Mac = [0x00, 0x1b, 0x1b, 0x00, 0x00, 0x81];
/// The IO device's name and address as its DCP Identify response states them.
const IO_DEVICE_STATION: profinet::Station<'static> = profinet::Station {
    name_of_station: "et200sp-line1",
    type_of_station: "ET 200SP",
    vendor_id: 0x002a,
    device_id: 0x0313,
    ip: [10, 10, 0, 81],
    mask: [255, 255, 255, 0],
};
/// RT class 1 frame ids of the PLC's output and the device's input data.
const IO_OUTPUT_FRAME: u16 = 0x8000;
const IO_INPUT_FRAME: u16 = 0x8001;
/// An IEC 61850 bay controller the HMI reads over MMS (port 102).
const BAY_CONTROLLER: Node = Node::new([0x00, 0x0a, 0xdc, 0x00, 0x01, 0x03], [10, 10, 0, 91]);
/// What the bay controller answers to MMS Identify: vendor, model, revision.
const BAY_CONTROLLER_IDENTITY: (&str, &str, &str) = ("SIEMENS", "SIPROTEC 5 7SJ82", "V9.30");
/// The cell's managed switch: LLDP only, a MAC-only device.
const SWITCH: wire::Mac = [0x00, 0x80, 0x63, 0x00, 0x00, 0x02];
const SWITCH_NAME: &str = "sw-line1";
const SWITCH_DESCRIPTION: &str = "Hirschmann RSP35 Industrial Ethernet Switch, HiOS-3S 09.0.02";
/// The site's Cisco distribution switch: CDP every minute, an SNMP agent at its
/// management address.
const CORE_SWITCH: Node = Node::new([0x00, 0x00, 0x0c, 0x00, 0x00, 0x02], [10, 10, 0, 2]);
/// The network management station that reads the switch's and the S7 PLC's system
/// group over SNMP.
const NMS: Node = Node::new([0x00, 0x1b, 0x21, 0x00, 0x00, 0x07], [10, 10, 0, 7]);
/// Host names the HMI and the engineering workstation send in DHCP option 12.
/// (Windows hosts: upper case, as their NetBIOS names.)
const HMI_HOST_NAME: &str = "HMI-LINE1";
const EWS_HOST_NAME: &str = "EWS-LINE1";
/// Two IEDs publishing GOOSE (layer 2 only: MAC-only devices).
const IED_1: wire::Mac = [0x00, 0x0a, 0xdc, 0x00, 0x01, 0x01];
const IED_2: wire::Mac = [0x00, 0x0a, 0xdc, 0x00, 0x01, 0x02];
/// GOOSE multicast destinations (IEC 61850-8-1 §C.3: 01-0C-CD-01-xx-xx).
const GOOSE_GROUP_1: wire::Mac = [0x01, 0x0c, 0xcd, 0x01, 0x00, 0x01];
const GOOSE_GROUP_2: wire::Mac = [0x01, 0x0c, 0xcd, 0x01, 0x00, 0x02];
/// A host that publishes GOOSE of IED 1's control block in `goose_anomaly`.
const ROGUE_PUBLISHER: wire::Mac = [0x00, 0x0c, 0x29, 0x00, 0x00, 0x67];
const IED_1_GOCB: &str = "IED1LD0/LLN0$GO$gcbTrip";
const IED_2_GOCB: &str = "IED2LD0/LLN0$GO$gcbInterlock";
/// The common address of the RTU's ASDUs.
const RTU_104_ASDU: u16 = 1;
/// The topics the edge gateway publishes while learning.
const GATEWAY_TOPICS: [&str; 2] = ["plant/line1/temperature", "plant/line1/pressure"];
const NEWCOMER: Node = Node::new([0x00, 0x0c, 0x29, 0x00, 0x00, 0x99], [10, 10, 0, 99]);
const SPOOFER_MAC: wire::Mac = [0x00, 0x0c, 0x29, 0x66, 0x66, 0x66];
// Public addresses outside the documentation ranges: those (RFC 5737) never count as
// the internet.
/// The one external server the plant reaches while learning (the HMI's updates).
pub const UPDATE_SERVER: Ipv4Addr = Ipv4Addr::new(185, 199, 108, 10);
const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(45, 33, 32, 7);
/// A public host that completes a session with the Modbus PLC (inbound).
const INBOUND_HOST: Ipv4Addr = Ipv4Addr::new(45, 33, 32, 8);
/// The HMI's IPv6 link-local address (mDNS, DHCPv6 chatter).
const HMI_LINK_LOCAL: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0x021b, 0x21ff, 0xfe00, 0x0010);

const FIRMWARE: &str = "V2.1";
const IDENTITY: (&str, &str, &str) = ("Schneider Electric", "BMX P34 2020", FIRMWARE);

/// One end of a conversation: an address and the MAC its frames carry.
#[derive(Clone, Copy, Debug)]
struct Peer {
    ip: Ipv4Addr,
    mac: wire::Mac,
}

impl From<Node> for Peer {
    fn from(node: Node) -> Peer {
        Peer {
            ip: node.ip,
            mac: node.mac,
        }
    }
}

/// An address beyond the gateway.
fn external(ip: Ipv4Addr) -> Peer {
    Peer {
        ip,
        mac: GATEWAY.mac,
    }
}

/// What a TCP server does with a connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Accept,
    Reset,
    Silent,
}

/// Frames planned out of order, written sorted by time.
struct Capture {
    frames: Vec<(u64, u64, Vec<u8>)>,
    order: u64,
    ip_id: u16,
    next_port: u16,
    rng: rand_chacha::ChaCha8Rng,
    transaction: u16,
}

impl Capture {
    fn new() -> Capture {
        use rand::SeedableRng;
        Capture {
            frames: Vec::new(),
            order: 0,
            ip_id: 1,
            next_port: 40_000,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(5),
            transaction: 1,
        }
    }

    fn port(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(40_000);
        self.next_port
    }

    fn push(&mut self, ts_ns: u64, spec: &FrameSpec) -> Result<()> {
        let mut out = Vec::with_capacity(128);
        wire::encode(spec, self.ip_id, &mut out)?;
        self.ip_id = self.ip_id.wrapping_add(1);
        self.frames.push((ts_ns, self.order, out));
        self.order += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        ts_ns: u64,
        from: Peer,
        to: Peer,
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: Vec<u8>,
    ) -> Result<()> {
        self.push(
            ts_ns,
            &FrameSpec {
                l2: L2 {
                    src: from.mac,
                    dst: to.mac,
                    vlan: 0,
                },
                net: Net::Tcp {
                    src: IpAddr::V4(from.ip),
                    dst: IpAddr::V4(to.ip),
                    sport: ports.0,
                    dport: ports.1,
                    seq,
                    ack,
                    flags,
                    window: 8192,
                    mss: flags & tcp_flags::SYN != 0,
                    payload,
                },
            },
        )
    }

    /// A TCP session: handshake, request/response exchanges 10 ms apart, FIN close.
    /// With `Answer::Silent` the SYN is retransmitted twice and nothing comes back;
    /// with `Answer::Reset` the server resets.
    fn session(
        &mut self,
        t0: u64,
        client: Peer,
        server: Peer,
        server_port: u16,
        answer: Answer,
        exchanges: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let client_port = self.port();
        let (mut cseq, mut sseq) = (1_000u32, 500_000u32);
        let out = (client_port, server_port);
        let back = (server_port, client_port);
        self.tcp(t0, client, server, out, cseq, 0, tcp_flags::SYN, Vec::new())?;
        match answer {
            Answer::Silent => {
                for retry in 1..=2u64 {
                    self.tcp(
                        t0 + retry * SECOND,
                        client,
                        server,
                        out,
                        cseq,
                        0,
                        tcp_flags::SYN,
                        Vec::new(),
                    )?;
                }
                return Ok(());
            }
            Answer::Reset => {
                let flags = tcp_flags::RST | tcp_flags::ACK;
                return self.tcp(
                    t0 + MS,
                    server,
                    client,
                    back,
                    0,
                    cseq + 1,
                    flags,
                    Vec::new(),
                );
            }
            Answer::Accept => {}
        }
        let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
        self.tcp(
            t0 + MS,
            server,
            client,
            back,
            sseq,
            cseq + 1,
            syn_ack,
            Vec::new(),
        )?;
        cseq += 1;
        sseq += 1;
        self.tcp(
            t0 + 2 * MS,
            client,
            server,
            out,
            cseq,
            sseq,
            tcp_flags::ACK,
            Vec::new(),
        )?;
        let mut t = t0 + 2 * MS;
        let data = tcp_flags::PSH | tcp_flags::ACK;
        for (request, response) in exchanges {
            t += 10 * MS;
            let len = request.len() as u32;
            self.tcp(t, client, server, out, cseq, sseq, data, request)?;
            cseq += len;
            if let Some(response) = response {
                let len = response.len() as u32;
                self.tcp(t + 2 * MS, server, client, back, sseq, cseq, data, response)?;
                sseq += len;
            }
        }
        t += 10 * MS;
        let fin = tcp_flags::FIN | tcp_flags::ACK;
        self.tcp(t, client, server, out, cseq, sseq, fin, Vec::new())?;
        self.tcp(
            t + MS,
            server,
            client,
            back,
            sseq,
            cseq + 1,
            fin,
            Vec::new(),
        )?;
        self.tcp(
            t + 2 * MS,
            client,
            server,
            out,
            cseq + 1,
            sseq + 1,
            tcp_flags::ACK,
            Vec::new(),
        )
    }

    /// An established TCP session first seen mid-stream: `exchanges` pairs of data
    /// segments, no SYN and no FIN in the capture; `server_first` makes the server's
    /// segment the first one seen.
    fn mid_session(
        &mut self,
        t0: u64,
        client: Peer,
        server: Peer,
        ports: (u16, u16),
        exchanges: u64,
        server_first: bool,
    ) -> Result<()> {
        let (mut cseq, mut sseq) = (7_000_000u32, 90_000_000u32);
        let out = ports;
        let back = (ports.1, ports.0);
        let data = tcp_flags::PSH | tcp_flags::ACK;
        for i in 0..exchanges {
            let t = t0 + i * 200 * MS;
            let request = b"cat /etc/passwd\n".to_vec();
            let reply = vec![b'x'; 200];
            let (rlen, plen) = (request.len() as u32, reply.len() as u32);
            if server_first {
                self.tcp(t, server, client, back, sseq, cseq, data, reply)?;
                self.tcp(
                    t + 5 * MS,
                    client,
                    server,
                    out,
                    cseq,
                    sseq + plen,
                    data,
                    request,
                )?;
            } else {
                self.tcp(t, client, server, out, cseq, sseq, data, request)?;
                self.tcp(
                    t + 5 * MS,
                    server,
                    client,
                    back,
                    sseq,
                    cseq + rlen,
                    data,
                    reply,
                )?;
            }
            cseq += rlen;
            sseq += plen;
        }
        Ok(())
    }

    /// A UDP datagram from `from` to a multicast or broadcast group (its MAC given).
    #[allow(clippy::too_many_arguments)]
    fn udp_group(
        &mut self,
        ts_ns: u64,
        src_mac: wire::Mac,
        src: IpAddr,
        group_mac: wire::Mac,
        group: IpAddr,
        ports: (u16, u16),
        payload: Vec<u8>,
    ) -> Result<()> {
        self.push(
            ts_ns,
            &FrameSpec {
                l2: L2 {
                    src: src_mac,
                    dst: group_mac,
                    vlan: 0,
                },
                net: Net::Udp {
                    src,
                    dst: group,
                    sport: ports.0,
                    dport: ports.1,
                    payload,
                },
            },
        )
    }

    fn udp(
        &mut self,
        ts_ns: u64,
        from: Peer,
        to: Peer,
        ports: (u16, u16),
        payload: Vec<u8>,
    ) -> Result<()> {
        self.push(
            ts_ns,
            &FrameSpec {
                l2: L2 {
                    src: from.mac,
                    dst: to.mac,
                    vlan: 0,
                },
                net: Net::Udp {
                    src: IpAddr::V4(from.ip),
                    dst: IpAddr::V4(to.ip),
                    sport: ports.0,
                    dport: ports.1,
                    payload,
                },
            },
        )
    }

    /// An ARP request (operation 1) or reply (2) from `sender_mac` claiming `sender_ip`.
    fn arp(
        &mut self,
        ts_ns: u64,
        operation: u16,
        sender_mac: wire::Mac,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> Result<()> {
        self.push(
            ts_ns,
            &FrameSpec {
                l2: L2 {
                    src: sender_mac,
                    dst: wire::BROADCAST_MAC,
                    vlan: 0,
                },
                net: Net::Arp {
                    operation,
                    sender_mac,
                    sender_ip,
                    target_mac: [0; 6],
                    target_ip,
                },
            },
        )
    }

    fn next_transaction(&mut self) -> u16 {
        self.transaction = self.transaction.wrapping_add(1);
        self.transaction
    }

    /// A Modbus request and its normal response.
    fn modbus(&mut self, request: modbus::Request) -> (Vec<u8>, Option<Vec<u8>>) {
        let transaction = self.next_transaction();
        let (mut req, mut resp) = (Vec::new(), Vec::new());
        modbus::request(&mut req, transaction, 1, request, &mut self.rng);
        modbus::response(&mut resp, transaction, 1, request, IDENTITY, &mut self.rng);
        (req, Some(resp))
    }

    /// A raw Modbus PDU (function code first) and its raw response PDU.
    fn modbus_raw(&mut self, request: &[u8], response: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        let transaction = self.next_transaction();
        (
            mbap(transaction, request),
            Some(mbap(transaction, response)),
        )
    }

    /// An IEC 104 session's exchanges from a master: STARTDT, then `commands` (each an
    /// I-format APDU from the master with the RTU's reply, sequence numbers counted
    /// here), then an S-format acknowledgement.
    fn iec104(&mut self, commands: &[Iec104Command]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let (mut start, mut start_con) = (Vec::new(), Vec::new());
        iec104::u_frame(&mut start, iec104::STARTDT_ACT);
        iec104::u_frame(&mut start_con, iec104::STARTDT_CON);
        let mut exchanges = vec![(start, Some(start_con))];
        let (mut master_sent, mut rtu_sent) = (0u16, 0u16);
        let common = RTU_104_ASDU;
        for command in commands {
            let (mut request, mut reply) = (Vec::new(), Vec::new());
            let ours = (master_sent, rtu_sent);
            master_sent += 1;
            match *command {
                Iec104Command::Interrogation => {
                    iec104::interrogation(&mut request, ours, iec104::COT_ACTIVATION, common);
                    let cause = iec104::COT_ACTIVATION_CON;
                    iec104::interrogation(&mut reply, (rtu_sent, master_sent), cause, common);
                    let values = [49.98f32, 110.2, 3.5];
                    let seqs = (rtu_sent + 1, master_sent);
                    let cause = iec104::COT_INTERROGATED;
                    iec104::measurands(&mut reply, seqs, cause, common, 1001, &values);
                    let seqs = (rtu_sent + 2, master_sent);
                    let cause = iec104::COT_ACTIVATION_TERM;
                    iec104::interrogation(&mut reply, seqs, cause, common);
                    rtu_sent += 3;
                }
                Iec104Command::SingleCommand { address } => {
                    let cause = iec104::COT_ACTIVATION;
                    iec104::single_command(&mut request, ours, cause, common, address, true);
                    let seqs = (rtu_sent, master_sent);
                    let cause = iec104::COT_ACTIVATION_CON;
                    iec104::single_command(&mut reply, seqs, cause, common, address, true);
                    rtu_sent += 1;
                }
                Iec104Command::ResetProcess => {
                    iec104::reset_process(&mut request, ours, iec104::COT_ACTIVATION, common);
                    let seqs = (rtu_sent, master_sent);
                    iec104::reset_process(&mut reply, seqs, iec104::COT_ACTIVATION_CON, common);
                    rtu_sent += 1;
                }
            }
            exchanges.push((request, Some(reply)));
        }
        let mut ack = Vec::new();
        iec104::s_frame(&mut ack, rtu_sent);
        exchanges.push((ack, None));
        exchanges
    }

    /// An OPC UA session's exchanges from a client: HEL/ACK, OpenSecureChannel under
    /// `policy`, CreateSession and ActivateSession, `services` (request id and tail,
    /// response tail), CloseSecureChannel.
    fn opcua(
        &mut self,
        policy: &str,
        services: &[(u16, Vec<u8>, Vec<u8>)],
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let channel = opcua::Channel {
            id: 0x1000 + u32::from(self.next_transaction()),
            token: 1,
        };
        let (mut hello, mut ack) = (Vec::new(), Vec::new());
        opcua::hello(&mut hello, "opc.tcp://10.10.0.60:4840");
        opcua::acknowledge(&mut ack);
        let (mut open, mut opened) = (Vec::new(), Vec::new());
        let mode = if policy == opcua::POLICY_NONE {
            opcua::MODE_NONE
        } else {
            2
        };
        opcua::open_request(&mut open, policy, mode, 1);
        opcua::open_response(&mut opened, policy, channel, 1);
        let mut exchanges = vec![(hello, Some(ack)), (open, Some(opened))];
        let session = [
            (opcua::CREATE_SESSION, Vec::new(), Vec::new()),
            (opcua::ACTIVATE_SESSION, Vec::new(), Vec::new()),
        ];
        let mut sequence = 2;
        for (i, (service, request_tail, response_tail)) in
            session.iter().chain(services).enumerate()
        {
            let request_id = 2 + i as u32;
            let (mut request, mut response) = (Vec::new(), Vec::new());
            opcua::message(
                &mut request,
                channel,
                sequence,
                request_id,
                *service,
                request_tail,
            );
            let answer = service + opcua::RESPONSE_OFFSET;
            opcua::message(
                &mut response,
                channel,
                sequence,
                request_id,
                answer,
                response_tail,
            );
            sequence += 1;
            exchanges.push((request, Some(response)));
        }
        let mut close = Vec::new();
        opcua::close(&mut close, channel, sequence, 99);
        exchanges.push((close, None));
        exchanges
    }

    /// An MQTT session's exchanges from a client: CONNECT (answered with `connack`),
    /// then when accepted the PUBLISHes of `topics` and a DISCONNECT.
    fn mqtt_publisher(
        &mut self,
        client_id: &str,
        connack: u8,
        topics: &[&str],
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let (mut connect, mut accepted) = (Vec::new(), Vec::new());
        mqtt::connect(&mut connect, client_id);
        mqtt::connack(&mut accepted, connack);
        let mut exchanges = vec![(connect, Some(accepted))];
        if connack != 0 {
            return exchanges;
        }
        for (i, topic) in topics.iter().enumerate() {
            let mut publish = Vec::new();
            let reading = format!("{{\"value\":{}}}", 20 + i);
            mqtt::publish(&mut publish, topic, reading.as_bytes());
            exchanges.push((publish, None));
        }
        let mut bye = Vec::new();
        mqtt::disconnect(&mut bye);
        exchanges.push((bye, None));
        exchanges
    }

    /// A GOOSE frame from `publisher` to its multicast `group`.
    fn goose(
        &mut self,
        ts_ns: u64,
        publisher: wire::Mac,
        group: wire::Mac,
        publication: &goose::Publication<'_>,
    ) -> Result<()> {
        let mut payload = Vec::with_capacity(160);
        goose::publication(&mut payload, publication);
        self.push(
            ts_ns,
            &FrameSpec {
                l2: L2 {
                    src: publisher,
                    dst: group,
                    vlan: 0,
                },
                net: Net::EtherType {
                    ether_type: goose::ETHER_TYPE,
                    payload,
                },
            },
        )
    }

    /// A frame of an EtherType of its own (no IP) from `src` to `dst`.
    fn ether_type(
        &mut self,
        ts_ns: u64,
        src: wire::Mac,
        dst: wire::Mac,
        ether_type: u16,
        payload: Vec<u8>,
    ) -> Result<()> {
        self.push(
            ts_ns,
            &FrameSpec {
                l2: L2 { src, dst, vlan: 0 },
                net: Net::EtherType {
                    ether_type,
                    payload,
                },
            },
        )
    }

    /// Writes the capture; returns its device count.
    fn write(mut self, out: &Path) -> Result<u64> {
        self.frames.sort_by_key(|(ts, order, _)| (*ts, *order));
        let mut writer =
            PcapWriter::create(out, Resolution::Nano).with_context(|| out.display().to_string())?;
        let mut tracker = Tracker::default();
        for (ts, _, frame) in &self.frames {
            writer.write(*ts, frame)?;
            tracker.frame(*ts, frame)?;
        }
        writer.finish()?;
        Ok(tracker.devices())
    }
}

/// A command an IEC 104 master sends in [`Capture::iec104`].
#[derive(Clone, Copy, Debug)]
enum Iec104Command {
    /// C_IC_NA_1 station interrogation.
    Interrogation,
    /// C_SC_NA_1 single command (operate) to an object.
    SingleCommand { address: u32 },
    /// C_RP_NA_1 reset process.
    ResetProcess,
}

/// MBAP header (transaction, protocol 0, length, unit 1) and `pdu`.
fn mbap(transaction: u16, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + pdu.len());
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    out.push(1);
    out.extend_from_slice(pdu);
    out
}

fn at(seconds: u64) -> u64 {
    START_NS + seconds * SECOND
}

/// How the plant's normal traffic varies per scenario.
#[derive(Clone, Copy)]
struct PlantOptions {
    /// The Modbus PLC stops answering from this second.
    modbus_plc_dead_from: Option<u64>,
    /// The RTU sends nothing from the first to the second of these seconds.
    rtu_quiet: Option<(u64, u64)>,
    /// End of the capture, seconds after the first frame.
    end_s: u64,
}

impl Default for PlantOptions {
    fn default() -> Self {
        PlantOptions {
            modbus_plc_dead_from: None,
            rtu_quiet: None,
            end_s: END_S,
        }
    }
}

/// The normal traffic from the first frame to `options.end_s`.
fn plant(cap: &mut Capture, options: PlantOptions) -> Result<()> {
    let read = modbus::Request::ReadHoldingRegisters {
        address: 100,
        quantity: 4,
    };
    for tick in (0..options.end_s).step_by(10) {
        let rtu_quiet = options
            .rtu_quiet
            .is_some_and(|(from, until)| (from..until).contains(&tick));
        // Every device ARPs for the HMI; the HMI answers nobody (it polls). (The core
        // switch too: known before the NMS's first SNMP poll, whose UDP flow then
        // lives to the end of the capture.)
        for (i, node) in [GATEWAY, EWS, PLC_S7, PLC_CIP, RTU, BACNET, CORE_SWITCH]
            .iter()
            .enumerate()
        {
            if rtu_quiet && node.ip == RTU.ip {
                continue;
            }
            cap.arp(
                at(tick) + 100 * MS * (i as u64 + 1),
                1,
                node.mac,
                node.ip,
                HMI.ip,
            )?;
        }
        cap.arp(at(tick) + 900 * MS, 1, HMI.mac, HMI.ip, GATEWAY.ip)?;
        let dead = options
            .modbus_plc_dead_from
            .is_some_and(|from| tick >= from);
        let answer = if dead { Answer::Silent } else { Answer::Accept };
        let mut exchanges = vec![cap.modbus(read), cap.modbus(read), cap.modbus(read)];
        if tick == 0 {
            exchanges.push(cap.modbus(modbus::Request::ReadDeviceIdentification));
        }
        if dead {
            exchanges.clear();
        }
        cap.session(
            at(tick) + 2 * SECOND,
            HMI.into(),
            PLC_MODBUS.into(),
            502,
            answer,
            exchanges,
        )?;
    }
    // The HMI's other controllers: connections without payload (learned conversations).
    for tick in (0..LEARNING_S).step_by(30) {
        let t = at(tick) + 4 * SECOND;
        cap.session(
            t + SECOND,
            HMI.into(),
            PLC_CIP.into(),
            44818,
            Answer::Accept,
            Vec::new(),
        )?;
        cap.session(
            t + 2 * SECOND,
            HMI.into(),
            RTU.into(),
            20000,
            Answer::Accept,
            Vec::new(),
        )?;
        // BACnet: unicast Who-Is, I-Am back.
        let (mut who, mut iam) = (Vec::new(), Vec::new());
        bacnet::who_is(&mut who);
        bacnet::i_am(&mut iam, 4000, 5);
        cap.udp(
            t + 3 * SECOND,
            HMI.into(),
            BACNET.into(),
            (47808, 47808),
            who,
        )?;
        cap.udp(
            t + 3 * SECOND + 5 * MS,
            BACNET.into(),
            HMI.into(),
            (47808, 47808),
            iam,
        )?;
    }
    // Chatter that never leaves the site: mDNS to 224.0.0.251, IPv6 link-local mDNS
    // and DHCPv6 to ff02::/16 all along; SSDP to 239.255.255.250 from the S7 PLC only
    // after learning (a new pair, and still not the internet).
    let mdns_v4 = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251));
    let mdns_v6 = IpAddr::V6(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb));
    let dhcpv6 = IpAddr::V6(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2));
    let hmi_v6 = IpAddr::V6(HMI_LINK_LOCAL);
    let query = vec![0u8; 12];
    for tick in (0..options.end_s).step_by(30) {
        let t = at(tick) + 7 * SECOND;
        let (mac, v4) = (HMI.mac, HMI.addr());
        cap.udp_group(
            t,
            mac,
            v4,
            [0x01, 0x00, 0x5e, 0, 0, 0xfb],
            mdns_v4,
            (5353, 5353),
            query.clone(),
        )?;
        cap.udp_group(
            t + MS,
            mac,
            hmi_v6,
            [0x33, 0x33, 0, 0, 0, 0xfb],
            mdns_v6,
            (5353, 5353),
            query.clone(),
        )?;
        cap.udp_group(
            t + 2 * MS,
            mac,
            hmi_v6,
            [0x33, 0x33, 0, 1, 0, 2],
            dhcpv6,
            (546, 547),
            vec![1, 0, 0, 1],
        )?;
    }
    let ssdp = IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250));
    let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n".to_vec();
    cap.udp_group(
        at(LEARNING_S + 5),
        PLC_S7.mac,
        PLC_S7.addr(),
        [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa],
        ssdp,
        (1900, 1900),
        search,
    )?;
    // Updates from the one external server the plant uses.
    cap.session(
        at(5),
        HMI.into(),
        external(UPDATE_SERVER),
        443,
        Answer::Accept,
        Vec::new(),
    )?;
    // The engineering workstation reads the PLC's UMAS id and downloads a block.
    let exchanges = vec![
        cap.modbus_raw(&[0x5a, 0x00, 0x02], &[0x5a, 0x00, 0xfe]),
        cap.modbus_raw(&[0x5a, 0x00, 0x34, 0x01, 0x00], &[0x5a, 0x00, 0xfe]),
    ];
    cap.session(
        at(20),
        EWS.into(),
        PLC_MODBUS.into(),
        502,
        Answer::Accept,
        exchanges,
    )?;
    plant_substation_and_edge(cap, options.end_s)?;
    plant_cell_and_it(cap, options.end_s)?;
    Ok(())
}

/// IEC 61850 GOOSE of the plant's IEDs: each publishes its control block every
/// second; IED 1's state changes once (stNum + 1, sqNum back to 0) at 60 s.
fn ied_publication(publisher: wire::Mac, second: u64) -> goose::Publication<'static> {
    const TRIP_VALUES: [bool; 3] = [false, false, true];
    const IDLE_VALUES: [bool; 3] = [false, false, false];
    if publisher == IED_1 {
        let changed = second >= 60;
        goose::Publication {
            appid: 0x0101,
            gocb_ref: IED_1_GOCB,
            dat_set: "IED1LD0/LLN0$dsTrip",
            go_id: "IED1_Trip",
            t_seconds: (START_NS / SECOND) as u32 + if changed { 60 } else { 0 },
            st_num: if changed { 11 } else { 10 },
            sq_num: if changed { second - 60 } else { second } as u32,
            simulation: false,
            conf_rev: 1,
            values: if changed { &TRIP_VALUES } else { &IDLE_VALUES },
        }
    } else {
        goose::Publication {
            appid: 0x0102,
            gocb_ref: IED_2_GOCB,
            dat_set: "IED2LD0/LLN0$dsInterlock",
            go_id: "IED2_Interlock",
            t_seconds: (START_NS / SECOND) as u32,
            st_num: 3,
            sq_num: second as u32,
            simulation: false,
            conf_rev: 2,
            values: &IDLE_VALUES,
        }
    }
}

/// The plant's IEC 104, OPC UA, MQTT and GOOSE traffic from the first frame to
/// `end_s`: the HMI interrogates the 104 RTU and reads the OPC UA server (over a
/// Basic256Sha256 channel) every 10 s; the edge gateway publishes two topics to the
/// broker every 10 s and the HMI subscribes every 30 s; both IEDs publish GOOSE every
/// second.
fn plant_substation_and_edge(cap: &mut Capture, end_s: u64) -> Result<()> {
    let hmi: Peer = HMI.into();
    for tick in (0..end_s).step_by(10) {
        let interrogation = cap.iec104(&[Iec104Command::Interrogation]);
        let t = at(tick) + 3 * SECOND;
        cap.session(t, hmi, RTU_104.into(), 2404, Answer::Accept, interrogation)?;
        let read = (
            opcua::READ,
            opcua::read_tail(1001),
            opcua::result_tail(Some(21.5)),
        );
        let exchanges = cap.opcua(opcua::POLICY_BASIC256SHA256, &[read]);
        let t = at(tick) + 5 * SECOND;
        cap.session(t, hmi, OPCUA_SERVER.into(), 4840, Answer::Accept, exchanges)?;
        let exchanges = cap.mqtt_publisher("edge-gateway", 0, &GATEWAY_TOPICS);
        let t = at(tick) + 6 * SECOND;
        let gateway: Peer = EDGE_GATEWAY.into();
        cap.session(t, gateway, BROKER.into(), 1883, Answer::Accept, exchanges)?;
        if tick % 30 == 0 {
            let (mut connect, mut connack) = (Vec::new(), Vec::new());
            mqtt::connect(&mut connect, "hmi");
            mqtt::connack(&mut connack, 0);
            let (mut subscribe, mut delivery) = (Vec::new(), Vec::new());
            mqtt::subscribe(&mut subscribe, 1, "plant/#");
            mqtt::suback(&mut delivery, 1);
            mqtt::publish(&mut delivery, GATEWAY_TOPICS[0], b"{\"value\":20}");
            let (mut ping, mut pong, mut bye) = (Vec::new(), Vec::new(), Vec::new());
            mqtt::ping_request(&mut ping);
            mqtt::ping_response(&mut pong);
            mqtt::disconnect(&mut bye);
            let exchanges = vec![
                (connect, Some(connack)),
                (subscribe, Some(delivery)),
                (ping, Some(pong)),
                (bye, None),
            ];
            let t = at(tick) + 8 * SECOND;
            cap.session(t, hmi, BROKER.into(), 1883, Answer::Accept, exchanges)?;
        }
    }
    for second in 0..end_s {
        for (publisher, group, offset) in [
            (IED_1, GOOSE_GROUP_1, 300 * MS),
            (IED_2, GOOSE_GROUP_2, 600 * MS),
        ] {
            let publication = ied_publication(publisher, second);
            cap.goose(at(second) + offset, publisher, group, &publication)?;
        }
    }
    Ok(())
}

/// The cell's Siemens and IT traffic from the first frame to `end_s`: the HMI reads
/// the S7 PLC over S7comm-plus every 10 s (GetMultiVariables in a short session) and
/// the bay controller over MMS (an association per read); the
/// PLC, as PROFINET IO controller, identifies its IO device by DCP at start-up and
/// exchanges RT cyclic data with it every 500 ms; the cell's switch announces itself
/// in LLDP every 30 s; the HMI and the engineering workstation renew their DHCP
/// leases with the gateway every minute, naming themselves.
fn plant_cell_and_it(cap: &mut Capture, end_s: u64) -> Result<()> {
    let hmi: Peer = HMI.into();
    let mut sequence = 1u16;
    for tick in (0..end_s).step_by(10) {
        let (mut cr, mut cc) = (Vec::new(), Vec::new());
        s7comm::connect_request(&mut cr, 1);
        s7comm::connect_confirm(&mut cc, 1, 2);
        let mut exchanges = vec![(cr, Some(cc))];
        for values in [[21.5f32, 3.2], [21.6, 3.1]] {
            let (mut read, mut reply) = (Vec::new(), Vec::new());
            s7commplus::get_multi_variables(&mut read, 0x3be, sequence, 2);
            s7commplus::get_multi_variables_response(&mut reply, sequence, &values);
            sequence = sequence.wrapping_add(1).max(1);
            exchanges.push((read, Some(reply)));
        }
        let t = at(tick) + 4 * SECOND;
        cap.session(t, hmi, PLC_S7.into(), 102, Answer::Accept, exchanges)?;
    }
    // DCP Identify All from the controller and the device's answer.
    let (mut identify, mut identity) = (Vec::new(), Vec::new());
    profinet::dcp_identify_all(&mut identify, 0x0100);
    profinet::dcp_identify_response(&mut identity, 0x0100, &IO_DEVICE_STATION);
    let t = at(0) + 150 * MS;
    let dcp_mac = profinet::DCP_IDENTIFY_MAC;
    cap.ether_type(t, PLC_S7.mac, dcp_mac, profinet::ETHER_TYPE, identify)?;
    cap.ether_type(
        t + 2 * MS,
        IO_DEVICE,
        PLC_S7.mac,
        profinet::ETHER_TYPE,
        identity,
    )?;
    // RT class 1: a 500 ms send clock counts 16,000 cycles of 31.25 us.
    let data = [0x11u8; 40];
    for half_second in 0..2 * end_s {
        let t = at(0) + SECOND / 4 + half_second * 500 * MS;
        let counter = (half_second * 16_000 % 65_536) as u16;
        for (src, dst, frame_id) in [
            (PLC_S7.mac, IO_DEVICE, IO_OUTPUT_FRAME),
            (IO_DEVICE, PLC_S7.mac, IO_INPUT_FRAME),
        ] {
            let mut frame = Vec::with_capacity(48);
            profinet::cyclic(&mut frame, frame_id, counter, &data);
            cap.ether_type(t, src, dst, profinet::ETHER_TYPE, frame)?;
        }
    }
    for tick in (0..end_s).step_by(30) {
        let spec = FrameSpec {
            l2: L2 {
                src: SWITCH,
                dst: [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e],
                vlan: 0,
            },
            net: Net::Lldp {
                port: 1,
                system: Some((SWITCH_NAME.to_owned(), SWITCH_DESCRIPTION.to_owned())),
            },
        };
        cap.push(at(tick) + 8 * SECOND, &spec)?;
    }
    // MMS: an association every 10 s (Identify in the first, a GetNameList every
    // minute, a report riding on the last answer now and then), one Read, released.
    let (vendor, model, revision) = BAY_CONTROLLER_IDENTITY;
    for tick in (0..end_s).step_by(10) {
        let (mut cr, mut cc) = (Vec::new(), Vec::new());
        s7comm::connect_request(&mut cr, 1);
        s7comm::connect_confirm(&mut cc, 1, 2);
        let (mut initiate, mut initiated) = (Vec::new(), Vec::new());
        mms::initiate_request(&mut initiate);
        mms::initiate_response(&mut initiated);
        let mut exchanges = vec![(cr, Some(cc)), (initiate, Some(initiated))];
        let mut invoke_id = 1;
        if tick == 0 {
            let (mut identify, mut identity) = (Vec::new(), Vec::new());
            mms::identify_request(&mut identify, invoke_id);
            let (vendor, model, revision) = (vendor.as_bytes(), model.as_bytes(), revision);
            mms::identify_response(&mut identity, invoke_id, vendor, model, revision.as_bytes());
            exchanges.push((identify, Some(identity)));
            invoke_id += 1;
        }
        if tick % 60 == 0 {
            let (mut list, mut names) = (Vec::new(), Vec::new());
            mms::get_name_list_request(&mut list, invoke_id, b"BAY1LD0");
            let items: [&[u8]; 2] = [b"MMXU1$MX$TotW", b"XCBR1$ST$Pos"];
            mms::get_name_list_response(&mut names, invoke_id, &items);
            exchanges.push((list, Some(names)));
            invoke_id += 1;
        }
        let (mut read, mut value) = (Vec::new(), Vec::new());
        mms::read_request(&mut read, invoke_id, b"BAY1LD0", b"MMXU1$MX$TotW$mag$f");
        mms::read_response(&mut value, invoke_id, 412.5);
        if tick % 30 == 20 {
            mms::information_report(&mut value, b"BAY1LD0/LLN0$BR$brcbMX01", 413.0);
        }
        exchanges.push((read, Some(value)));
        let (mut conclude, mut concluded) = (Vec::new(), Vec::new());
        mms::conclude_request(&mut conclude);
        mms::conclude_response(&mut concluded);
        let (mut release, mut released) = (Vec::new(), Vec::new());
        mms::release_request(&mut release);
        mms::release_response(&mut released);
        exchanges.push((conclude, Some(concluded)));
        exchanges.push((release, Some(released)));
        let t = at(tick) + 7 * SECOND + 500 * MS;
        cap.session(
            t,
            hmi,
            BAY_CONTROLLER.into(),
            102,
            Answer::Accept,
            exchanges,
        )?;
    }
    plant_network_identity(cap, end_s)?;
    let server = GATEWAY.into();
    for tick in (0..end_s).step_by(60) {
        for (i, (client, name)) in [(HMI, HMI_HOST_NAME), (EWS, EWS_HOST_NAME)]
            .into_iter()
            .enumerate()
        {
            let xid = 0x5ca1_0000 + (tick as u32) + i as u32;
            let lease = (client.ip, client.mac);
            let request = identity::dhcp_message(1, 3, xid, lease, GATEWAY.ip, Some(name));
            let ack = identity::dhcp_message(2, 5, xid, lease, GATEWAY.ip, None);
            let t = at(tick) + 9 * SECOND + i as u64 * SECOND;
            cap.udp(t, client.into(), server, (68, 67), request)?;
            cap.udp(t + 3 * MS, server, client.into(), (67, 68), ack)?;
        }
    }
    Ok(())
}

/// How the plant's hosts and switch name themselves beyond DHCP and LLDP: the core
/// switch announces itself in CDP every minute; the workstation and the HMI register
/// their NetBIOS names by broadcast at start-up, and the workstation looks the HMI up
/// every minute (the HMI answers); the NMS reads the system group of the switch
/// (SNMPv2c) and of the S7 PLC (SNMPv1) every minute.
fn plant_network_identity(cap: &mut Capture, end_s: u64) -> Result<()> {
    let broadcast = Peer {
        ip: Ipv4Addr::new(10, 10, 0, 255),
        mac: wire::BROADCAST_MAC,
    };
    let nbns_ports = (nbns::PORT, nbns::PORT);
    for (i, (host, name)) in [(EWS, EWS_HOST_NAME), (HMI, HMI_HOST_NAME)]
        .into_iter()
        .enumerate()
    {
        let mut registration = Vec::new();
        let id = 0x7000 + i as u16;
        nbns::registration(&mut registration, id, name, 0x00, false, host.ip);
        let t = at(0) + 600 * MS + i as u64 * 50 * MS;
        cap.udp(t, host.into(), broadcast, nbns_ports, registration)?;
    }
    let switch_system = snmp::System {
        descr: "Cisco IOS Software, IE-3400 Software, Version 17.9.4".to_owned(),
        object_id: vec![1, 3, 6, 1, 4, 1, 9, 1, 2685],
        name: "core-sw-01".to_owned(),
    };
    let plc_system = snmp::System {
        descr: "Siemens, SIMATIC S7, CPU 1516-3 PN/DP, FW: V2.9.4".to_owned(),
        object_id: vec![1, 3, 6, 1, 4, 1, 4329, 6, 3, 2],
        name: "plc-line1".to_owned(),
    };
    for (n, tick) in (0..end_s).step_by(60).enumerate() {
        let mut announcement = Vec::new();
        cdp::announcement(
            &mut announcement,
            &cdp::Announcement {
                device_id: &switch_system.name,
                software_version: &switch_system.descr,
                platform: "cisco IE-3400-8P2S",
                port_id: "GigabitEthernet1/1",
                address: Some(CORE_SWITCH.ip),
            },
        );
        let spec = FrameSpec {
            l2: L2 {
                src: CORE_SWITCH.mac,
                dst: cdp::MULTICAST_MAC,
                vlan: 0,
            },
            net: Net::Llc {
                payload: announcement,
            },
        };
        cap.push(at(tick) + 11 * SECOND, &spec)?;
        let (mut query, mut answer) = (Vec::new(), Vec::new());
        let id = 0x7100 + n as u16;
        nbns::query(&mut query, id, HMI_HOST_NAME, 0x00);
        nbns::positive_response(&mut answer, id, HMI_HOST_NAME, 0x00, HMI.ip);
        let t = at(tick) + 12 * SECOND;
        cap.udp(t, EWS.into(), broadcast, nbns_ports, query)?;
        cap.udp(t + MS, HMI.into(), EWS.into(), nbns_ports, answer)?;
        for (j, (agent, version, system)) in [
            (CORE_SWITCH, snmp::Version::V2c, &switch_system),
            (PLC_S7, snmp::Version::V1, &plc_system),
        ]
        .into_iter()
        .enumerate()
        {
            let request_id = 1000 + 2 * n as i32 + j as i32;
            let (mut get, mut response) = (Vec::new(), Vec::new());
            snmp::get_system(&mut get, version, request_id);
            snmp::system_response(&mut response, version, request_id, system);
            let ports = (50_000 + j as u16, snmp::AGENT_PORT);
            let t = at(tick) + 13 * SECOND + j as u64 * 100 * MS;
            cap.udp(t, NMS.into(), agent.into(), ports, get)?;
            cap.udp(
                t + 2 * MS,
                agent.into(),
                NMS.into(),
                (ports.1, ports.0),
                response,
            )?;
        }
    }
    Ok(())
}

fn expect(signature: &str, src: Option<Node>, dst: Option<IpAddr>) -> ExpectedAlert {
    ExpectedAlert {
        signature: signature.to_owned(),
        src: src.map(Node::addr),
        dst,
        src_mac: None,
    }
}

/// An alert about a device known only by its MAC.
fn expect_mac(signature: &str, mac: wire::Mac) -> ExpectedAlert {
    let [a, b, c, d, e, f] = mac;
    ExpectedAlert {
        signature: signature.to_owned(),
        src: None,
        dst: None,
        src_mac: Some(format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")),
    }
}

/// Adds one attack at `t`; returns its expected alerts and the protocols it needs.
fn attack(
    cap: &mut Capture,
    name: &str,
    t: u64,
) -> Result<(Vec<ExpectedAlert>, Vec<&'static str>)> {
    let hmi = HMI.into();
    let plc: Peer = PLC_MODBUS.into();
    let plc_dst = Some(PLC_MODBUS.addr());
    Ok(match name {
        "clean" | "device_silent" => (Vec::new(), Vec::new()),
        // The RTU, which ARPed every 10 s while learning, stays quiet (see `generate`).
        "device_quiet" => (
            vec![
                expect("device_silent", Some(RTU), None),
                expect("device_back", Some(RTU), None),
            ],
            Vec::new(),
        ),
        "new_device" => {
            cap.arp(t, 1, NEWCOMER.mac, NEWCOMER.ip, PLC_MODBUS.ip)?;
            let read = cap.modbus(modbus::Request::ReadCoils {
                address: 0,
                quantity: 8,
            });
            cap.session(
                t + SECOND,
                NEWCOMER.into(),
                plc,
                502,
                Answer::Accept,
                vec![read],
            )?;
            (vec![expect("new_device", Some(NEWCOMER), None)], Vec::new())
        }
        "internet_connection" => {
            cap.session(
                t,
                hmi,
                external(INTERNET_HOST),
                443,
                Answer::Accept,
                Vec::new(),
            )?;
            let dst = Some(IpAddr::V4(INTERNET_HOST));
            (
                vec![expect("internet_connection", Some(HMI), dst)],
                Vec::new(),
            )
        }
        "remote_access" => {
            cap.session(t, EWS.into(), hmi, 3389, Answer::Accept, Vec::new())?;
            (
                vec![expect("remote_access", Some(EWS), Some(HMI.addr()))],
                Vec::new(),
            )
        }
        "scan" => {
            // Port scan of the S7 PLC (closed ports reset), address scan of an empty subnet.
            for (i, port) in (1000u16..1030).enumerate() {
                cap.session(
                    t + i as u64 * 20 * MS,
                    hmi,
                    PLC_S7.into(),
                    port,
                    Answer::Reset,
                    Vec::new(),
                )?;
            }
            for host in 1..=60u8 {
                let target = Peer {
                    ip: Ipv4Addr::new(10, 10, 1, host),
                    mac: GATEWAY.mac,
                };
                let t = t + 2 * SECOND + u64::from(host) * 10 * MS;
                cap.tcp(
                    t,
                    EWS.into(),
                    target,
                    (45_000, 80),
                    7,
                    0,
                    tcp_flags::SYN,
                    Vec::new(),
                )?;
            }
            (
                vec![
                    expect("scan", Some(HMI), Some(PLC_S7.addr())),
                    expect("scan", Some(EWS), None),
                ],
                Vec::new(),
            )
        }
        "discovery_sweep" => {
            let mut who = Vec::new();
            bacnet::who_is(&mut who);
            let broadcast = Peer {
                ip: Ipv4Addr::new(10, 10, 0, 255),
                mac: wire::BROADCAST_MAC,
            };
            cap.udp(t, EWS.into(), broadcast, (47808, 47808), who)?;
            (vec![expect("scan", Some(EWS), None)], vec!["bacnet"])
        }
        "modbus_unit_sweep" => {
            // The engineering workstation (which never sent discovery requests while
            // learning) asks units 1..=16 behind the Modbus PLC for their identity
            // (FC 43 / 14), one connection: a unit-id sweep.
            let mut exchanges = Vec::new();
            for unit in 1..=16u8 {
                let transaction = cap.next_transaction();
                let request = modbus::Request::ReadDeviceIdentification;
                let (mut req, mut resp) = (Vec::new(), Vec::new());
                modbus::request(&mut req, transaction, unit, request, &mut cap.rng);
                modbus::response(
                    &mut resp,
                    transaction,
                    unit,
                    request,
                    IDENTITY,
                    &mut cap.rng,
                );
                exchanges.push((req, Some(resp)));
            }
            cap.session(t, EWS.into(), plc, 502, Answer::Accept, exchanges)?;
            (
                vec![
                    expect("scan", Some(EWS), plc_dst),
                    // FC 43 from the workstation is not in the baseline (it only sent
                    // UMAS while learning): rightly a new conversation too.
                    expect("new_conversation", Some(EWS), plc_dst),
                ],
                vec!["modbus"],
            )
        }
        "plc_programming" => {
            let download = cap.modbus_raw(&[0x5a, 0x00, 0x34, 0x01, 0x00], &[0x5a, 0x00, 0xfe]);
            cap.session(t, hmi, plc, 502, Answer::Accept, vec![download])?;
            (
                vec![expect("plc_programming", Some(HMI), plc_dst)],
                vec!["modbus"],
            )
        }
        "firmware_change" => {
            let transaction = cap.next_transaction();
            let request = modbus::Request::ReadDeviceIdentification;
            let (mut req, mut resp) = (Vec::new(), Vec::new());
            modbus::request(&mut req, transaction, 1, request, &mut cap.rng);
            let identity = (IDENTITY.0, IDENTITY.1, "V3.0");
            modbus::response(&mut resp, transaction, 1, request, identity, &mut cap.rng);
            cap.session(t, hmi, plc, 502, Answer::Accept, vec![(req, Some(resp))])?;
            (
                vec![expect("firmware_change", Some(PLC_MODBUS), None)],
                vec!["modbus"],
            )
        }
        "plc_stop" => {
            // UMAS STOP_PLC (0x41) and FC 8 / 4 force listen-only mode.
            let stop = cap.modbus_raw(&[0x5a, 0x00, 0x41], &[0x5a, 0x00, 0xfe]);
            let listen_only = cap.modbus_raw(
                &[0x08, 0x00, 0x04, 0x00, 0x00],
                &[0x08, 0x00, 0x04, 0x00, 0x00],
            );
            cap.session(t, hmi, plc, 502, Answer::Accept, vec![stop, listen_only])?;
            (vec![expect("plc_stop", Some(HMI), plc_dst)], vec!["modbus"])
        }
        "plc_stop_s7" => {
            let (mut cr, mut cc, mut setup, mut setup_ack, mut stop) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            s7comm::connect_request(&mut cr, 1);
            s7comm::connect_confirm(&mut cc, 1, 2);
            s7comm::setup_job(&mut setup, 1);
            s7comm::setup_ack(&mut setup_ack, 1);
            s7comm::plc_stop(&mut stop, 2);
            let exchanges = vec![(cr, Some(cc)), (setup, Some(setup_ack)), (stop, None)];
            cap.session(t, hmi, PLC_S7.into(), 102, Answer::Accept, exchanges)?;
            (
                // The HMI never spoke S7comm to this PLC while learning: that first
                // contact is also, rightly, a new conversation.
                vec![
                    expect("plc_stop", Some(HMI), Some(PLC_S7.addr())),
                    expect("new_conversation", Some(HMI), Some(PLC_S7.addr())),
                ],
                vec!["s7comm"],
            )
        }
        "plc_stop_mms" => {
            // An MMS client stops a program invocation on the port-102 controller
            // (an IEC 61850 IED or PLC answers MMS beside S7comm on ISO-on-TCP).
            let (mut cr, mut cc, mut stop, mut stopped) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            s7comm::connect_request(&mut cr, 1);
            s7comm::connect_confirm(&mut cc, 1, 2);
            mms::program_stop(&mut stop, 1, b"LLN0");
            mms::program_stop_response(&mut stopped, 1);
            let exchanges = vec![(cr, Some(cc)), (stop, Some(stopped))];
            cap.session(t, hmi, PLC_S7.into(), 102, Answer::Accept, exchanges)?;
            (
                vec![expect("plc_stop", Some(HMI), Some(PLC_S7.addr()))],
                vec!["mms"],
            )
        }
        "plc_stop_s7commplus" => {
            // An S7-1200/1500 client sets the CPU's requested operating state to STOP
            // (S7comm-plus SetVariable on object 52, attribute 2167) in a session
            // without TLS, as TIA Portal's "Stop CPU" does on older firmware.
            let (mut cr, mut cc, mut stop, mut stopped) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            s7comm::connect_request(&mut cr, 1);
            s7comm::connect_confirm(&mut cc, 1, 2);
            s7commplus::cpu_state_request(&mut stop, 0x3be, 9, s7commplus::STATE_STOP);
            s7commplus::set_variable_response(&mut stopped, 9);
            let exchanges = vec![(cr, Some(cc)), (stop, Some(stopped))];
            cap.session(t, hmi, PLC_S7.into(), 102, Answer::Accept, exchanges)?;
            (
                vec![expect("plc_stop", Some(HMI), Some(PLC_S7.addr()))],
                vec!["s7commplus"],
            )
        }
        "plc_stop_cip" => {
            let (mut reg, mut reg_reply, mut reset) = (Vec::new(), Vec::new(), Vec::new());
            enip::register_session(&mut reg, 0, 1);
            enip::register_session(&mut reg_reply, 0x1234, 1);
            // Identity object (class 1, instance 1) Reset (service 0x05), CIP Vol 1 5A-2.
            enip::cip_message(&mut reset, 0x1234, 2, &[0x05, 0x02, 0x20, 0x01, 0x24, 0x01]);
            let exchanges = vec![(reg, Some(reg_reply)), (reset, None)];
            cap.session(t, hmi, PLC_CIP.into(), 44818, Answer::Accept, exchanges)?;
            (
                // No EtherNet/IP between these two while learning: also a new conversation.
                vec![
                    expect("plc_stop", Some(HMI), Some(PLC_CIP.addr())),
                    expect("new_conversation", Some(HMI), Some(PLC_CIP.addr())),
                ],
                vec!["enip"],
            )
        }
        "plc_stop_dnp3" => {
            let mut restart = Vec::new();
            let link = dnp3::Link {
                master: 1,
                outstation: 10,
            };
            dnp3::request(&mut restart, link, 0, 0, dnp3::Request::ColdRestart);
            cap.session(
                t,
                hmi,
                RTU.into(),
                20000,
                Answer::Accept,
                vec![(restart, None)],
            )?;
            (
                vec![expect("plc_stop", Some(HMI), Some(RTU.addr()))],
                vec!["dnp3"],
            )
        }
        "plc_stop_bacnet" => {
            let mut reinit = Vec::new();
            bacnet::reinitialize_device(&mut reinit, 7);
            cap.udp(t, hmi, BACNET.into(), (47808, 47808), reinit)?;
            (
                vec![expect("plc_stop", Some(HMI), Some(BACNET.addr()))],
                vec!["bacnet"],
            )
        }
        "cip_failure" => {
            let (mut reg, mut reg_reply, mut get, mut fail) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            enip::register_session(&mut reg, 0, 1);
            enip::register_session(&mut reg_reply, 0x1234, 1);
            // Get_Attribute_Single (0x0E) of class 0x64 instance 1 attribute 1; the reply
            // (0x8E) carries general status 0x05 (path destination unknown).
            enip::cip_message(
                &mut get,
                0x1234,
                2,
                &[0x0e, 0x03, 0x20, 0x64, 0x24, 0x01, 0x30, 0x01],
            );
            enip::cip_message(&mut fail, 0x1234, 2, &[0x8e, 0x00, 0x05, 0x00]);
            let exchanges = vec![(reg, Some(reg_reply)), (get, Some(fail))];
            cap.session(t, hmi, PLC_CIP.into(), 44818, Answer::Accept, exchanges)?;
            (
                vec![
                    expect("cip_failure", Some(PLC_CIP), Some(HMI.addr())),
                    expect("new_conversation", Some(HMI), Some(PLC_CIP.addr())),
                ],
                vec!["enip"],
            )
        }
        "bacnet_failure" => {
            let (mut read, mut error) = (Vec::new(), Vec::new());
            bacnet::read_property(&mut read, 9, 8, 4000, 77);
            bacnet::read_property_error(&mut error, 9);
            cap.udp(t, hmi, BACNET.into(), (47808, 47808), read)?;
            cap.udp(t + 5 * MS, BACNET.into(), hmi, (47808, 47808), error)?;
            (
                vec![
                    expect("bacnet_failure", Some(BACNET), Some(HMI.addr())),
                    expect("new_conversation", Some(HMI), Some(BACNET.addr())),
                ],
                vec!["bacnet"],
            )
        }
        "illegal_operation" => {
            // FC 3 at an address the PLC does not have: exception 02 (illegal data address).
            let transaction = cap.next_transaction();
            let exchange = (
                mbap(transaction, &[0x03, 0x27, 0x10, 0x00, 0x04]),
                Some(mbap(transaction, &[0x83, 0x02])),
            );
            cap.session(t, hmi, plc, 502, Answer::Accept, vec![exchange])?;
            (
                vec![expect(
                    "illegal_operation",
                    Some(PLC_MODBUS),
                    Some(HMI.addr()),
                )],
                vec!["modbus"],
            )
        }
        "new_conversation" => {
            cap.session(
                t,
                EWS.into(),
                PLC_CIP.into(),
                44818,
                Answer::Accept,
                Vec::new(),
            )?;
            (
                vec![expect("new_conversation", Some(EWS), Some(PLC_CIP.addr()))],
                Vec::new(),
            )
        }
        "unauthorized_write" => {
            let write = cap.modbus(modbus::Request::WriteSingleRegister {
                address: 100,
                value: 9999,
            });
            cap.session(t, hmi, plc, 502, Answer::Accept, vec![write])?;
            (
                vec![expect("unauthorized_write", Some(HMI), plc_dst)],
                vec!["modbus"],
            )
        }
        // A PROFINET IO-CM Write (DCE/RPC opnum 3 on UDP 34964) from the engineering
        // workstation, which never wrote to the S7 PLC while learning: a controller the
        // device does not know rewrites its records.
        "profinet_io_write" => {
            let ews: Peer = EWS.into();
            cap.udp(t, ews, PLC_S7.into(), (49160, 34964), pnio_write_request())?;
            (
                vec![expect("unauthorized_write", Some(EWS), Some(PLC_S7.addr()))],
                vec!["profinet"],
            )
        }
        // A PROFINET DCP Set (EtherType 0x8892, no IP) from the engineering
        // workstation's MAC to the S7 PLC's: a new NameOfStation and IP parameters, a
        // configuration change the workstation never made while learning. The
        // analyzer finds both ends by their MACs.
        "profinet_dcp_set" => {
            cap.ether_type(
                t,
                EWS.mac,
                PLC_S7.mac,
                otsensor_wire::profinet::ETHER_TYPE,
                dcp_set_request(),
            )?;
            (
                vec![expect("unauthorized_write", Some(EWS), Some(PLC_S7.addr()))],
                vec!["profinet"],
            )
        }
        "ip_conflict" => {
            // Gratuitous ARP replies claiming the S7 PLC's address (ARP spoofing).
            for i in 0..3 {
                cap.arp(t + i * SECOND, 2, SPOOFER_MAC, PLC_S7.ip, PLC_S7.ip)?;
            }
            (vec![expect("ip_conflict", Some(PLC_S7), None)], Vec::new())
        }
        // A reverse shell between two field devices on tcp/4444, already open when
        // the capture starts its attack phase: no SYN, the listener's data first.
        "midstream_c2" => {
            cap.mid_session(t, BACNET.into(), RTU.into(), (51234, 4444), 20, true)?;
            (
                vec![expect("new_conversation", Some(BACNET), Some(RTU.addr()))],
                Vec::new(),
            )
        }
        // An internal host's TLS session to a public address, seen mid-stream.
        "midstream_internet" => {
            let server = external(INTERNET_HOST);
            cap.mid_session(t, EWS.into(), server, (50123, 443), 5, true)?;
            let dst = Some(IpAddr::V4(INTERNET_HOST));
            (
                vec![expect("internet_connection", Some(EWS), dst)],
                Vec::new(),
            )
        }
        // A public host completes a handshake with the Modbus PLC.
        "inbound_internet" => {
            cap.session(
                t,
                external(INBOUND_HOST),
                plc,
                502,
                Answer::Accept,
                Vec::new(),
            )?;
            (
                vec![ExpectedAlert {
                    signature: "internet_connection".to_owned(),
                    src: Some(IpAddr::V4(INBOUND_HOST)),
                    dst: plc_dst,
                    src_mac: None,
                }],
                Vec::new(),
            )
        }
        // SYN flood against the RTU's DNP3 port from 300 spoofed public sources and
        // 30 impossible ones (unspecified, multicast, broadcast); the RTU answers every
        // SYN with a SYN-ACK that nobody acknowledges. One `flood` alert, nothing else.
        "syn_flood" => {
            let rtu: Peer = RTU.into();
            let bogons = [
                Ipv4Addr::new(0, 0, 0, 0),
                Ipv4Addr::new(224, 0, 0, 9),
                Ipv4Addr::new(255, 255, 255, 255),
            ];
            for i in 0..330u32 {
                let source = if i % 11 == 10 {
                    bogons[(i as usize / 11) % bogons.len()]
                } else {
                    Ipv4Addr::new(
                        45,
                        60 + (i / 250) as u8,
                        (i / 10 % 25) as u8,
                        (i % 250) as u8 + 1,
                    )
                };
                let from = external(source);
                let ts = t + u64::from(i) * 10 * MS;
                let sport = 1024 + i as u16;
                cap.tcp(
                    ts,
                    from,
                    rtu,
                    (sport, 20000),
                    4242 + i,
                    0,
                    tcp_flags::SYN,
                    Vec::new(),
                )?;
                let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
                cap.tcp(
                    ts + MS,
                    rtu,
                    from,
                    (20000, sport),
                    777,
                    4243 + i,
                    syn_ack,
                    Vec::new(),
                )?;
            }
            (
                vec![ExpectedAlert {
                    signature: "flood".to_owned(),
                    src: None,
                    dst: Some(RTU.addr()),
                    src_mac: None,
                }],
                Vec::new(),
            )
        }
        // The engineering workstation reads 300 consecutive input registers of the
        // PLC one at a time; past address 49 the PLC answers exception 02 (illegal
        // data address). An ICS object sweep, and the exceptions themselves.
        "modbus_address_sweep" => {
            let mut exchanges = Vec::new();
            for address in 0u16..300 {
                let [hi, lo] = address.to_be_bytes();
                let reply: &[u8] = if address < 50 {
                    &[0x04, 0x02, 0x00, 0x2a]
                } else {
                    &[0x84, 0x02]
                };
                exchanges.push(cap.modbus_raw(&[0x04, hi, lo, 0x00, 0x01], reply));
            }
            cap.session(t, EWS.into(), plc, 502, Answer::Accept, exchanges)?;
            (
                vec![
                    expect("scan", Some(EWS), plc_dst),
                    expect("illegal_operation", Some(PLC_MODBUS), Some(EWS.addr())),
                    // Function 4 from the EWS is a command key it never used.
                    expect("new_conversation", Some(EWS), plc_dst),
                ],
                vec!["modbus"],
            )
        }
        // The engineering workstation, which never spoke S7 to this PLC, reads 120
        // distinct SZL lists (12 ids × 10 indexes) of the S7 PLC in one session: an S7
        // SZL enumeration (the PLC answers each, with no records).
        "s7_szl_enumeration" => {
            let (mut cr, mut cc, mut setup, mut setup_ack) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            s7comm::connect_request(&mut cr, 1);
            s7comm::connect_confirm(&mut cc, 1, 2);
            s7comm::setup_job(&mut setup, 1);
            s7comm::setup_ack(&mut setup_ack, 1);
            let mut exchanges = vec![(cr, Some(cc)), (setup, Some(setup_ack))];
            let ids = [
                0x0011u16, 0x001c, 0x0111, 0x0112, 0x0131, 0x0132, 0x0424, 0x0074, 0x0091, 0x00a0,
                0x0037, 0x0013,
            ];
            let mut reference = 1u16;
            for id in ids {
                for index in 0..10u16 {
                    reference += 1;
                    let (mut request, mut response) = (Vec::new(), Vec::new());
                    s7comm::szl_request(&mut request, reference, id, index);
                    s7comm::szl_response(&mut response, reference, id, index);
                    exchanges.push((request, Some(response)));
                }
            }
            let plc = PLC_S7.into();
            cap.session(t, EWS.into(), plc, 102, Answer::Accept, exchanges)?;
            let dst = Some(PLC_S7.addr());
            (
                vec![
                    expect("scan", Some(EWS), dst),
                    // The workstation never connected to this PLC while learning.
                    expect("new_conversation", Some(EWS), dst),
                ],
                vec!["s7comm"],
            )
        }
        // The engineering workstation reads Get_Attribute_Single over 120 class /
        // instance / attribute ids (8 classes × 3 instances × 5 attributes) of the CIP
        // controller; attributes 4 and 5 do not exist there (general status 0x14,
        // attribute not supported).
        "cip_attribute_enumeration" => {
            let (mut reg, mut reg_reply) = (Vec::new(), Vec::new());
            enip::register_session(&mut reg, 0, 1);
            enip::register_session(&mut reg_reply, 0x1234, 1);
            let mut exchanges = vec![(reg, Some(reg_reply))];
            let mut context = 1u64;
            for class in [0x01u8, 0x02, 0x04, 0x06, 0x48, 0xf4, 0xf5, 0xf6] {
                for instance in 1..=3u8 {
                    for attribute in 1..=5u8 {
                        context += 1;
                        let cip = [0x0e, 0x03, 0x20, class, 0x24, instance, 0x30, attribute];
                        let reply: &[u8] = if attribute <= 3 {
                            &[0x8e, 0x00, 0x00, 0x00, 0x01, 0x00]
                        } else {
                            &[0x8e, 0x00, 0x14, 0x00]
                        };
                        let (mut request, mut response) = (Vec::new(), Vec::new());
                        enip::cip_message(&mut request, 0x1234, context, &cip);
                        enip::cip_message(&mut response, 0x1234, context, reply);
                        exchanges.push((request, Some(response)));
                    }
                }
            }
            let plc = PLC_CIP.into();
            cap.session(t, EWS.into(), plc, 44818, Answer::Accept, exchanges)?;
            let dst = Some(PLC_CIP.addr());
            (
                vec![
                    expect("scan", Some(EWS), dst),
                    expect("new_conversation", Some(EWS), dst),
                    expect("cip_failure", Some(PLC_CIP), Some(EWS.addr())),
                ],
                vec!["enip"],
            )
        }
        // The engineering workstation reads present-value of analog inputs 1..=120 of
        // the BACnet controller, which has 40 of them: the rest answer with an error.
        "bacnet_object_sweep" => {
            let bacnet_peer: Peer = BACNET.into();
            for instance in 1..=120u32 {
                let ts = t + u64::from(instance) * 20 * MS;
                let invoke = instance as u8;
                let (mut read, mut reply) = (Vec::new(), Vec::new());
                bacnet::read_property(&mut read, invoke, 0, instance, 85);
                if instance <= 40 {
                    bacnet::read_property_ack(&mut reply, invoke, 0, instance, 85, 21.5);
                } else {
                    bacnet::read_property_error(&mut reply, invoke);
                }
                cap.udp(ts, EWS.into(), bacnet_peer, (47808, 47808), read)?;
                cap.udp(ts + 5 * MS, bacnet_peer, EWS.into(), (47808, 47808), reply)?;
            }
            let dst = Some(BACNET.addr());
            (
                vec![
                    expect("scan", Some(EWS), dst),
                    expect("new_conversation", Some(EWS), dst),
                    expect("bacnet_failure", Some(BACNET), Some(EWS.addr())),
                ],
                vec!["bacnet"],
            )
        }
        // The RTU polled every 2 s since the first second dies at `t` (see
        // `polled_rtu`): one `device_silent` for it, nothing else.
        "silent_polled_rtu" => {
            polled_rtu(cap, t, at(SILENT_RTU_END_S))?;
            (
                vec![expect("device_silent", Some(POLLED_RTU), None)],
                Vec::new(),
            )
        }
        // The engineering workstation, never an IEC 104 master, operates an output
        // of the 104 RTU (C_SC_NA_1) and resets its process (C_RP_NA_1).
        "iec104_control" => {
            let exchanges = cap.iec104(&[
                Iec104Command::SingleCommand { address: 4001 },
                Iec104Command::ResetProcess,
            ]);
            cap.session(
                t,
                EWS.into(),
                RTU_104.into(),
                2404,
                Answer::Accept,
                exchanges,
            )?;
            let dst = Some(RTU_104.addr());
            (
                vec![
                    expect("unauthorized_write", Some(EWS), dst),
                    expect("plc_stop", Some(EWS), dst),
                    // The workstation never spoke IEC 104 to the RTU while learning.
                    expect("new_conversation", Some(EWS), dst),
                ],
                vec!["iec104"],
            )
        }
        // The HMI, which always reached the OPC UA server over Basic256Sha256, opens a
        // session on a SecurityPolicy None channel and writes a value.
        "opcua_downgrade" => {
            let write = (
                opcua::WRITE,
                opcua::write_tail(1001, 95.0),
                opcua::result_tail(None),
            );
            let exchanges = cap.opcua(opcua::POLICY_NONE, &[write]);
            let server = OPCUA_SERVER.into();
            cap.session(t, hmi, server, 4840, Answer::Accept, exchanges)?;
            let dst = Some(OPCUA_SERVER.addr());
            (
                vec![
                    expect("security_downgrade", Some(HMI), dst),
                    expect("unauthorized_write", Some(HMI), dst),
                ],
                vec!["opcua"],
            )
        }
        // The engineering workstation is refused by the broker (bad credentials), then
        // connects and publishes a setpoint; the edge gateway publishes a topic it
        // never used while learning.
        "mqtt_new_publisher" => {
            let broker: Peer = BROKER.into();
            let refused = cap.mqtt_publisher("ews", 5, &[]);
            cap.session(t, EWS.into(), broker, 1883, Answer::Accept, refused)?;
            let publish = cap.mqtt_publisher("ews", 0, &["plant/line1/setpoint"]);
            let t2 = t + SECOND;
            cap.session(t2, EWS.into(), broker, 1883, Answer::Accept, publish)?;
            let topics = [GATEWAY_TOPICS[0], "plant/line1/valve_override"];
            let publish = cap.mqtt_publisher("edge-gateway", 0, &topics);
            let t3 = t + 2 * SECOND + 500 * MS;
            cap.session(
                t3,
                EDGE_GATEWAY.into(),
                broker,
                1883,
                Answer::Accept,
                publish,
            )?;
            let dst = Some(BROKER.addr());
            (
                vec![
                    expect("illegal_operation", Some(BROKER), Some(EWS.addr())),
                    expect("unauthorized_write", Some(EWS), dst),
                    expect("new_conversation", Some(EWS), dst),
                    expect("new_conversation", Some(EDGE_GATEWAY), dst),
                ],
                vec!["mqtt"],
            )
        }
        // A frame with IED 1's MAC jumps its stNum from 11 to 15 (the IED's next
        // publications then go back to 11: a replay to the sensor); IED 2 publishes
        // with another confRev once; a host never seen publishes IED 1's control
        // block with the simulation flag set.
        "goose_anomaly" => {
            let second = t.saturating_sub(START_NS) / SECOND;
            let injected = goose::Publication {
                st_num: 15,
                sq_num: 0,
                ..ied_publication(IED_1, second)
            };
            cap.goose(t + 100 * MS, IED_1, GOOSE_GROUP_1, &injected)?;
            let reconfigured = goose::Publication {
                conf_rev: 3,
                ..ied_publication(IED_2, second + 2)
            };
            cap.goose(
                t + 2 * SECOND + 100 * MS,
                IED_2,
                GOOSE_GROUP_2,
                &reconfigured,
            )?;
            let simulated = goose::Publication {
                st_num: 1,
                sq_num: 0,
                simulation: true,
                ..ied_publication(IED_1, second + 4)
            };
            let t_rogue = t + 4 * SECOND + 100 * MS;
            cap.goose(t_rogue, ROGUE_PUBLISHER, GOOSE_GROUP_1, &simulated)?;
            (
                vec![
                    expect_mac("goose_anomaly", IED_1),
                    expect_mac("goose_anomaly", IED_2),
                    expect_mac("goose_anomaly", ROGUE_PUBLISHER),
                    expect_mac("new_device", ROGUE_PUBLISHER),
                ],
                vec!["goose"],
            )
        }
        "combined" => {
            let mut alerts = Vec::new();
            let mut protocols = Vec::new();
            let parts = [
                "new_device",
                "internet_connection",
                "remote_access",
                "scan",
                "plc_programming",
                "plc_stop",
                "illegal_operation",
                "unauthorized_write",
                "ip_conflict",
            ];
            for (i, part) in parts.iter().enumerate() {
                let (a, p) = attack(cap, part, t + i as u64 * 4 * SECOND)?;
                alerts.extend(a);
                protocols.extend(p);
            }
            (alerts, protocols)
        }
        "hostile" => hostile(cap, t, HostileScale::CI)?,
        "hostile_full" => hostile(cap, t, HostileScale::FULL)?,
        other => bail!(
            "unknown scenario {other:?}; known: {}, hostile, hostile_full",
            SCENARIOS.join(", ")
        ),
    })
}

/// A PROFINET DCP Set request (IEC 61158-6-10, DCP: FrameID 0xFEFD, ServiceID 4,
/// ServiceType 0) with two blocks, each with BlockQualifier 1 (permanent): Device /
/// NameOfStation (2/2) "rogue-station" and IP / IP parameter (1/2) 10.10.0.99/24
/// gateway 10.10.0.1.
fn dcp_set_request() -> Vec<u8> {
    let mut blocks = Vec::new();
    let name = b"rogue-station";
    blocks.extend_from_slice(&[0x02, 0x02]);
    blocks.extend_from_slice(&(2 + name.len() as u16).to_be_bytes());
    blocks.extend_from_slice(&[0x00, 0x01]);
    blocks.extend_from_slice(name);
    if blocks.len() % 2 != 0 {
        blocks.push(0); // blocks are padded to an even length
    }
    blocks.extend_from_slice(&[0x01, 0x02, 0x00, 0x0E, 0x00, 0x01]);
    blocks.extend_from_slice(&[10, 10, 0, 99, 255, 255, 255, 0, 10, 10, 0, 1]);
    let mut pdu = vec![0xFE, 0xFD, 0x04, 0x00];
    pdu.extend_from_slice(&0x0000_1234u32.to_be_bytes()); // Xid
    pdu.extend_from_slice(&[0x00, 0x00]); // reserved (ResponseDelay in Identify)
    pdu.extend_from_slice(&(blocks.len() as u16).to_be_bytes());
    pdu.extend(blocks);
    pdu
}

/// A PROFINET IO-CM Write request: the connectionless DCE/RPC header (big-endian
/// data representation, C706 §12.5.3.1) to the PNIO device interface
/// DEA00001-6C97-11D1-8271-00A02442DF7D, opnum 3, and an NDR body holding one
/// IODWriteReqHeader (block 0x0008, IEC 61158-6-10) for record index 0xE040 on slot 0
/// subslot 1 with 4 bytes of record data.
fn pnio_write_request() -> Vec<u8> {
    const PNIO_TAIL: [u8; 12] = [
        0x6C, 0x97, 0x11, 0xD1, 0x82, 0x71, 0x00, 0xA0, 0x24, 0x42, 0xDF, 0x7D,
    ];
    let mut block = vec![0x00, 0x08, 0x00, 0x3C, 0x01, 0x00];
    block.extend_from_slice(&[0x00, 0x07]); // SeqNumber
    block.extend_from_slice(&[0x11; 16]); // ARUUID
    block.extend_from_slice(&[0, 0, 0, 0]); // API
    block.extend_from_slice(&[0x00, 0x00, 0x00, 0x01]); // slot, subslot
    block.extend_from_slice(&[0, 0]); // padding
    block.extend_from_slice(&[0xE0, 0x40]); // index
    block.extend_from_slice(&4u32.to_be_bytes()); // RecordDataLength
    block.resize(4 + 0x3C, 0); // RWPadding
    block.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
    let len = block.len() as u32;
    let mut body = Vec::new();
    body.extend_from_slice(&1024u32.to_be_bytes()); // ArgsMaximum
    body.extend_from_slice(&len.to_be_bytes()); // ArgsLength
    body.extend_from_slice(&1024u32.to_be_bytes()); // MaximumCount
    body.extend_from_slice(&0u32.to_be_bytes()); // Offset
    body.extend_from_slice(&len.to_be_bytes()); // ActualCount
    body.extend_from_slice(&block);
    let mut rpc = vec![4, 0, 0x20, 0, 0x00, 0x00, 0x00, 0x00];
    rpc.extend_from_slice(&[0xDE, 0xA0, 0x00, 0x00]); // object: instance 1, device 1
    rpc.extend_from_slice(&PNIO_TAIL[..6]);
    rpc.extend_from_slice(&[0x00, 0x01, 0x00, 0x01, 0x00, 0x2A]);
    rpc.extend_from_slice(&[0xDE, 0xA0, 0x00, 0x01]); // interface: PNIO device
    rpc.extend_from_slice(&PNIO_TAIL);
    rpc.extend_from_slice(&[0x22; 16]); // activity
    rpc.extend_from_slice(&0u32.to_be_bytes()); // server boot
    rpc.extend_from_slice(&1u32.to_be_bytes()); // interface version
    rpc.extend_from_slice(&5u32.to_be_bytes()); // sequence number
    rpc.extend_from_slice(&3u16.to_be_bytes()); // opnum: Write
    rpc.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // interface and activity hints
    rpc.extend_from_slice(&(body.len() as u16).to_be_bytes());
    rpc.extend_from_slice(&[0, 0, 0, 0]); // fragment number, auth, serial
    rpc.extend_from_slice(&body);
    rpc
}

/// Writes scenario `name` to `out` and its truth beside it; returns the truth.
pub fn generate(name: &str, out: &Path) -> Result<ScenarioTruth> {
    let mut cap = Capture::new();
    let quiet = name == "device_quiet";
    let options = PlantOptions {
        modbus_plc_dead_from: (name == "device_silent").then_some(ATTACK_S),
        rtu_quiet: quiet.then_some((ATTACK_S, QUIET_BACK_S)),
        end_s: match name {
            "device_quiet" => QUIET_END_S,
            "silent_polled_rtu" => SILENT_RTU_END_S,
            _ => END_S,
        },
    };
    plant(&mut cap, options)?;
    let (mut alerts, protocols) = attack(&mut cap, name, at(ATTACK_S))?;
    if name == "device_silent" {
        alerts.push(expect("device_silent", Some(PLC_MODBUS), None));
    }
    alerts.sort();
    alerts.dedup();
    let mut protocols: Vec<String> = protocols.iter().map(|p| (*p).to_owned()).collect();
    protocols.sort();
    protocols.dedup();
    let devices = cap.write(out)?;
    let truth = ScenarioTruth {
        name: name.to_owned(),
        learning_duration_s: LEARNING_S,
        attack_at_s: ATTACK_S,
        protocols,
        alerts,
        devices,
    };
    let path = truth_path(out);
    std::fs::write(&path, serde_json::to_string_pretty(&truth)? + "\n")
        .with_context(|| path.display().to_string())?;
    Ok(truth)
}

/// `silent_polled_rtu`: the HMI polls [`POLLED_RTU`] (FC 3) every 2 s over one
/// persistent Modbus/TCP connection from the first second on. At `dead_at` the RTU
/// loses power: it sends nothing more, and the HMI's next request is retransmitted by
/// TCP with a doubling timeout (200 ms up to 120 s) until `end`. The connection never
/// closes and its flow was answered, so no request goes unanswered at flow end: only
/// the RTU's learned rhythm (a sighting every minute) tells it is gone.
fn polled_rtu(cap: &mut Capture, dead_at: u64, end: u64) -> Result<()> {
    let (hmi, rtu): (Peer, Peer) = (HMI.into(), POLLED_RTU.into());
    let client_port = cap.port();
    let (out, back) = ((client_port, 502), (502, client_port));
    let (mut cseq, mut sseq) = (3_000u32, 800_000u32);
    let t0 = at(1);
    let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
    cap.tcp(t0, hmi, rtu, out, cseq, 0, tcp_flags::SYN, Vec::new())?;
    cap.tcp(t0 + MS, rtu, hmi, back, sseq, cseq + 1, syn_ack, Vec::new())?;
    cseq += 1;
    sseq += 1;
    cap.tcp(
        t0 + 2 * MS,
        hmi,
        rtu,
        out,
        cseq,
        sseq,
        tcp_flags::ACK,
        Vec::new(),
    )?;
    let read = modbus::Request::ReadHoldingRegisters {
        address: 0,
        quantity: 10,
    };
    let data = tcp_flags::PSH | tcp_flags::ACK;
    let mut t = t0 + SECOND;
    while t < dead_at {
        let (request, response) = cap.modbus(read);
        let len = request.len() as u32;
        cap.tcp(t, hmi, rtu, out, cseq, sseq, data, request)?;
        cseq += len;
        if let Some(response) = response {
            let len = response.len() as u32;
            cap.tcp(t + 8 * MS, rtu, hmi, back, sseq, cseq, data, response)?;
            sseq += len;
        }
        t += 2 * SECOND;
    }
    let (request, _) = cap.modbus(read);
    let mut timeout = 200 * MS;
    while t < end {
        cap.tcp(t, hmi, rtu, out, cseq, sseq, data, request.clone())?;
        t += timeout;
        timeout = (timeout * 2).min(120 * SECOND);
    }
    Ok(())
}

/// How big the floods of the `hostile` scenario are.
#[derive(Clone, Copy, Debug)]
pub struct HostileScale {
    /// Spoofed sources of BACnet Who-Is broadcasts (each a `scan` alert).
    pub discovery_sources: u32,
    /// ARP replies from random MACs, each claiming an address of its own.
    pub arp_macs: u32,
    /// Distinct external destinations one internal host sends SYNs to.
    pub external_destinations: u32,
    /// S7 sessions left with a first COTP DT without end-of-TSDU (never closed).
    pub half_open_reassemblies: u32,
}

impl HostileScale {
    /// Sized so that every analyzer cap is exceeded (100,000 alerts, 262,144 ARP
    /// MACs, 65,536 scan sources) and a replay runs in seconds. The full
    /// figures (1 M sources and MACs, 200 k destinations, 100 k reassemblies) are a
    /// benchmark run.
    pub const CI: HostileScale = HostileScale {
        discovery_sources: 110_000,
        arp_macs: 270_000,
        external_destinations: 20_000,
        half_open_reassemblies: 2_000,
    };

    /// The figures, for the memory benchmark (`--name hostile_full`).
    pub const FULL: HostileScale = HostileScale {
        discovery_sources: 1_000_000,
        arp_macs: 1_000_000,
        external_destinations: 200_000,
        half_open_reassemblies: 100_000,
    };
}

/// The host that stops the S7 PLC and writes to the Modbus PLC in `hostile`.
pub const HOSTILE_ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 66);
const ATTACKER: Node = Node::new([0x00, 0x0c, 0x29, 0x00, 0x00, 0x66], [10, 10, 0, 66]);
/// The address the random MACs of `hostile` ask for (no device uses it).
const ARP_BAIT: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 250);

/// `hostile`: floods after learning — spoofed discovery sources, ARP from random MACs,
/// SYNs from the BACnet controller to many external destinations, S7 sessions that
/// start a segmented PDU and never finish it — then, 30 s later, a real PLC STOP and a
/// new Modbus writer from a host never seen before. The floods' own alerts are not
/// listed in the truth (only the two real ones and what their host adds).
fn hostile(
    cap: &mut Capture,
    t: u64,
    scale: HostileScale,
) -> Result<(Vec<ExpectedAlert>, Vec<&'static str>)> {
    let flood_span = 20 * SECOND;
    let spread = |i: u32, n: u32| t + flood_span * u64::from(i) / u64::from(n.max(1));
    let mut who = Vec::new();
    bacnet::who_is(&mut who);
    let broadcast = IpAddr::V4(Ipv4Addr::new(10, 10, 0, 255));
    for i in 0..scale.discovery_sources {
        // 100.64.0.0/10 (shared address space): outside networks.internal.
        let src = Ipv4Addr::from(0x6440_0000u32 + i);
        let mac = random_mac(&mut cap.rng);
        cap.udp_group(
            spread(i, scale.discovery_sources),
            mac,
            IpAddr::V4(src),
            wire::BROADCAST_MAC,
            broadcast,
            (47808, 47808),
            who.clone(),
        )?;
    }
    for i in 0..scale.arp_macs {
        // Each random MAC claims its own address in 10.128.0.0/9 (the worker reports
        // one sighting per new (MAC, address), so each reaches the analyzer).
        let mac = random_mac(&mut cap.rng);
        let claimed = Ipv4Addr::from(0x0a80_0000u32 + i);
        cap.arp(spread(i, scale.arp_macs), 2, mac, claimed, ARP_BAIT)?;
    }
    let bacnet: Peer = BACNET.into();
    for i in 0..scale.external_destinations {
        // Public addresses 23.0.0.0 upwards, one SYN each, unanswered.
        let dst = external(Ipv4Addr::from(0x1700_0000u32 + i));
        let port = cap.port();
        cap.tcp(
            spread(i, scale.external_destinations),
            bacnet,
            dst,
            (port, 443),
            1_000,
            0,
            tcp_flags::SYN,
            Vec::new(),
        )?;
    }
    let plc_s7: Peer = PLC_S7.into();
    for i in 0..scale.half_open_reassemblies {
        // Clients 10.20.x.y: a handshake, then a COTP DT without end-of-TSDU carrying
        // the start of an S7 PDU, and nothing more.
        let client = Peer {
            ip: Ipv4Addr::from(0x0a14_0000u32 + i),
            mac: random_mac(&mut cap.rng),
        };
        let t0 = spread(i, scale.half_open_reassemblies);
        let port = cap.port();
        let (out, back) = ((port, 102), (102, port));
        cap.tcp(
            t0,
            client,
            plc_s7,
            out,
            1_000,
            0,
            tcp_flags::SYN,
            Vec::new(),
        )?;
        cap.tcp(
            t0 + MS,
            plc_s7,
            client,
            back,
            9_000,
            1_001,
            tcp_flags::SYN | tcp_flags::ACK,
            Vec::new(),
        )?;
        cap.tcp(
            t0 + 2 * MS,
            client,
            plc_s7,
            out,
            1_001,
            9_001,
            tcp_flags::ACK,
            Vec::new(),
        )?;
        // TPKT (length 4 + 3 + 10), COTP DT (length 2, code 0xf0, TPDU 0 without EOT),
        // the first 10 bytes of an S7 job header.
        let dt = vec![
            0x03, 0x00, 0x00, 0x11, 0x02, 0xf0, 0x00, 0x32, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00,
            0x08, 0x00, 0x00,
        ];
        cap.tcp(
            t0 + 3 * MS,
            client,
            plc_s7,
            out,
            1_001,
            9_001,
            tcp_flags::PSH | tcp_flags::ACK,
            dt,
        )?;
    }
    // The real attack, after the floods.
    let real = t + flood_span + 10 * SECOND;
    let attacker: Peer = ATTACKER.into();
    let (mut cr, mut cc, mut setup, mut setup_ack, mut stop) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    s7comm::connect_request(&mut cr, 1);
    s7comm::connect_confirm(&mut cc, 1, 2);
    s7comm::setup_job(&mut setup, 1);
    s7comm::setup_ack(&mut setup_ack, 1);
    s7comm::plc_stop(&mut stop, 2);
    let exchanges = vec![(cr, Some(cc)), (setup, Some(setup_ack)), (stop, None)];
    cap.session(real, attacker, plc_s7, 102, Answer::Accept, exchanges)?;
    let write = cap.modbus(modbus::Request::WriteSingleRegister {
        address: 100,
        value: 9999,
    });
    cap.session(
        real + 2 * SECOND,
        attacker,
        PLC_MODBUS.into(),
        502,
        Answer::Accept,
        vec![write],
    )?;
    Ok((
        vec![
            expect("plc_stop", Some(ATTACKER), Some(PLC_S7.addr())),
            expect(
                "unauthorized_write",
                Some(ATTACKER),
                Some(PLC_MODBUS.addr()),
            ),
        ],
        vec!["s7comm", "modbus", "bacnet"],
    ))
}

fn random_mac(rng: &mut impl rand::Rng) -> wire::Mac {
    let mut mac: wire::Mac = rng.random();
    // Locally administered unicast.
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}
