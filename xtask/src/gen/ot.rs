//! The plant's own traffic: polling sessions (Modbus/TCP, DNP3, EtherNet/IP, S7comm,
//! S7comm-plus, IEC 60870-5-104, OPC UA, MQTT), BACnet/IP building automation, EtherNet/IP
//! discovery, ARP and LLDP.

use std::net::{IpAddr, Ipv4Addr};

use rand::Rng;

use super::plant::{Association, OtService, Peer, Plant};
use super::proto::{bacnet, dnp3, enip, iec104, modbus, mqtt, opcua, s7comm, s7commplus, Pdu};
use super::script::{address, l2_between, Planned, Script, TcpConn};
use super::wire::{FrameSpec, Net, BROADCAST_MAC, L2};
use super::{between, Actor, Cx, MS, SECOND, US};

/// A UDP datagram between two peers.
pub fn udp(
    plant: &Plant,
    from: Peer,
    to: Peer,
    ipv6: bool,
    ports: (u16, u16),
    payload: Vec<u8>,
) -> FrameSpec {
    FrameSpec {
        l2: l2_between(plant, from, to),
        net: Net::Udp {
            src: address(plant, from, ipv6),
            dst: address(plant, to, ipv6),
            sport: ports.0,
            dport: ports.1,
            payload,
        },
    }
}

/// A UDP broadcast from a host to `destination` on its own segment.
pub fn broadcast(
    plant: &Plant,
    from: usize,
    destination: Ipv4Addr,
    ports: (u16, u16),
    payload: Vec<u8>,
) -> FrameSpec {
    let host = &plant.hosts[from];
    FrameSpec {
        l2: L2 {
            src: host.mac,
            dst: BROADCAST_MAC,
            vlan: host.vlan,
        },
        net: Net::Udp {
            src: IpAddr::V4(host.ipv4),
            dst: IpAddr::V4(destination),
            sport: ports.0,
            dport: ports.1,
            payload,
        },
    }
}

fn frame(script: &mut Script, delay_ns: u64, spec: FrameSpec, pdus: Vec<Pdu>) {
    script.push_back(Planned {
        delay_ns,
        spec: Some(spec),
        pdus,
    });
}

fn identity_of(plant: &Plant, host: usize) -> enip::Identity {
    let h = &plant.hosts[host];
    let [_, _, _, a, b, c] = h.mac;
    enip::Identity {
        vendor: 1,         // Rockwell Automation/Allen-Bradley (ODVA vendor id 1)
        device_type: 0x0e, // programmable logic controller
        product_code: 50 + u16::from(c % 40),
        revision: (33, 11),
        serial: u32::from_be_bytes([0x60, a, b, c]),
        product_name: h.identity.1.to_owned(),
    }
}

/// Transport sequence numbers of each direction and the application sequence.
#[derive(Clone, Copy, Debug, Default)]
struct Dnp3Sequences {
    master: u8,
    outstation: u8,
    app: u8,
}

enum Session {
    Modbus {
        transaction: u16,
        unit: u8,
    },
    Dnp3 {
        link: dnp3::Link,
        seqs: Dnp3Sequences,
        polls: u32,
    },
    Enip {
        session: u32,
        context: u64,
    },
    S7 {
        pdu_ref: u16,
    },
    /// An S7comm-plus session: its id and the client's sequence number.
    S7Plus {
        session: u32,
        sequence: u16,
    },
    Iec104(Iec104Session),
    OpcUa(OpcUaSession),
    Mqtt(MqttSession),
}

/// An IEC 104 connection's send and receive sequence numbers (15 bits each) and the
/// RTU's I-frames the master has not acknowledged yet.
#[derive(Clone, Copy, Debug, Default)]
struct Iec104Session {
    master_sent: u16,
    rtu_sent: u16,
    unacknowledged: u16,
    common_address: u16,
    exchanges: u32,
}

impl Iec104Session {
    /// The (N(S), N(R)) of the master's next I-frame, counting it sent.
    fn next_master_seqs(&mut self) -> (u16, u16) {
        let seqs = (self.master_sent, self.rtu_sent);
        self.master_sent = (self.master_sent + 1) % 32_768;
        self.unacknowledged = 0;
        seqs
    }

    /// The (N(S), N(R)) of the RTU's next I-frame, counting it sent.
    fn next_rtu_seqs(&mut self) -> (u16, u16) {
        let seqs = (self.rtu_sent, self.master_sent);
        self.rtu_sent = (self.rtu_sent + 1) % 32_768;
        self.unacknowledged += 1;
        seqs
    }
}

/// An OPC UA secure channel and session: the channel, each side's sequence number and
/// the client's request ids.
#[derive(Clone, Copy, Debug)]
struct OpcUaSession {
    channel: opcua::Channel,
    client_sequence: u32,
    server_sequence: u32,
    request_id: u32,
}

impl Default for OpcUaSession {
    fn default() -> Self {
        OpcUaSession {
            channel: opcua::Channel { id: 0, token: 0 },
            client_sequence: 0,
            server_sequence: 0,
            request_id: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct MqttSession {
    subscriber: bool,
    packet_id: u16,
    exchanges: u32,
}

/// A poller and a PLC: long-lived TCP sessions of periodic request/response exchanges,
/// closed after a while and reopened from a new client port.
pub struct PollActor {
    association: Association,
    conn: Option<TcpConn>,
    polls_left: u32,
    started: bool,
    session: Session,
}

impl PollActor {
    pub fn new(
        association: Association,
        master_address: u16,
        outstation_address: u16,
    ) -> PollActor {
        let session = match association.service {
            OtService::Modbus => Session::Modbus {
                transaction: 0,
                unit: 1,
            },
            OtService::Dnp3 => Session::Dnp3 {
                link: dnp3::Link {
                    master: master_address,
                    outstation: outstation_address,
                },
                seqs: Dnp3Sequences::default(),
                polls: 0,
            },
            OtService::Enip => Session::Enip {
                session: 0,
                context: 0,
            },
            OtService::S7 => Session::S7 { pdu_ref: 0 },
            OtService::S7Plus => Session::S7Plus {
                session: 0,
                sequence: 0,
            },
            OtService::Iec104 => Session::Iec104(Iec104Session {
                common_address: outstation_address,
                ..Iec104Session::default()
            }),
            OtService::OpcUa => Session::OpcUa(OpcUaSession::default()),
            OtService::Mqtt { subscriber } => Session::Mqtt(MqttSession {
                subscriber,
                ..MqttSession::default()
            }),
        };
        PollActor {
            association,
            conn: None,
            polls_left: 0,
            started: false,
            session,
        }
    }

    fn open(&mut self, cx: &mut Cx<'_>, script: &mut Script) -> TcpConn {
        let a = self.association;
        let delay = if self.started {
            between(cx.rng, SECOND, 20 * SECOND)
        } else {
            between(cx.rng, 0, a.interval_ns)
        };
        self.started = true;
        let server_port = match a.service {
            OtService::Modbus => 502,
            OtService::S7 | OtService::S7Plus => 102,
            OtService::Enip => enip::ENIP_PORT,
            OtService::Dnp3 => 20_000,
            OtService::Iec104 => IEC104_PORT,
            OtService::OpcUa => OPCUA_PORT,
            OtService::Mqtt { .. } => MQTT_PORT,
        };
        let client_port = cx.plant.ephemeral_port(a.client);
        let windows = [8192u16, 16_384, 64_240];
        let mut conn = TcpConn::new(
            cx.plant,
            Peer::Host(a.client),
            Peer::Host(a.server),
            false,
            client_port,
            server_port,
            (cx.rng.random(), cx.rng.random()),
            (
                windows[cx.rng.random_range(0..3)],
                windows[cx.rng.random_range(0..3)],
            ),
        );
        conn.handshake(script, delay, lan_rtt(cx));
        self.polls_left = if cx.rng.random_bool(0.25) {
            cx.rng.random_range(10..200)
        } else {
            cx.rng.random_range(200..4000)
        };
        let rng = &mut *cx.rng;
        match &mut self.session {
            Session::Modbus { transaction, unit } => {
                *transaction = rng.random();
                *unit = if rng.random_bool(0.7) {
                    1
                } else {
                    rng.random_range(1..=247)
                };
            }
            Session::Dnp3 { seqs, polls, .. } => {
                seqs.app = rng.random_range(0..16);
                *polls = 0;
            }
            Session::Enip { session, context } => {
                *context = rng.random();
                let mut out = Vec::with_capacity(28);
                let request = enip::register_session(&mut out, 0, *context);
                conn.data(script, between(rng, 100 * US, MS), true, out, vec![request]);
                *session = rng.random_range(1..u32::MAX);
                let mut out = Vec::with_capacity(28);
                let reply = enip::register_session(&mut out, *session, *context);
                conn.data(script, between(rng, MS, 5 * MS), false, out, vec![reply]);
            }
            Session::S7 { pdu_ref } => {
                cotp_connect(rng, &mut conn, script);
                *pdu_ref = rng.random_range(1..1000);
                let mut out = Vec::with_capacity(25);
                let job = s7comm::setup_job(&mut out, *pdu_ref);
                conn.data(script, between(rng, 100 * US, MS), true, out, vec![job]);
                let mut out = Vec::with_capacity(27);
                let ack = s7comm::setup_ack(&mut out, *pdu_ref);
                conn.data(script, between(rng, MS, 5 * MS), false, out, vec![ack]);
            }
            Session::S7Plus { session, sequence } => {
                cotp_connect(rng, &mut conn, script);
                // The session id the PLC assigned in its CreateObject response (the
                // session set-up itself is not generated).
                *session = rng.random_range(0x100..0x4000);
                *sequence = rng.random_range(1..1000);
            }
            Session::Iec104(session) => {
                *session = Iec104Session {
                    common_address: session.common_address,
                    ..Iec104Session::default()
                };
                let mut out = Vec::with_capacity(6);
                let start = iec104::u_frame(&mut out, iec104::STARTDT_ACT);
                conn.data(script, between(rng, 100 * US, MS), true, out, vec![start]);
                let mut out = Vec::with_capacity(6);
                let confirm = iec104::u_frame(&mut out, iec104::STARTDT_CON);
                conn.data(script, between(rng, MS, 5 * MS), false, out, vec![confirm]);
                let delay = between(rng, MS, 20 * MS);
                iec104_interrogation(rng, &mut conn, script, delay, session);
            }
            Session::OpcUa(session) => {
                let endpoint = format!("opc.tcp://{}:{OPCUA_PORT}", cx.plant.hosts[a.server].ipv4);
                let mut out = Vec::with_capacity(64);
                let hello = opcua::hello(&mut out, &endpoint);
                conn.data(script, between(rng, 100 * US, MS), true, out, vec![hello]);
                let mut out = Vec::with_capacity(28);
                let ack = opcua::acknowledge(&mut out);
                conn.data(script, between(rng, MS, 3 * MS), false, out, vec![ack]);
                *session = OpcUaSession {
                    channel: opcua::Channel {
                        id: rng.random_range(1..u32::MAX),
                        token: rng.random_range(1..u32::MAX),
                    },
                    client_sequence: 1,
                    server_sequence: 1,
                    request_id: 1,
                };
                let policy = opcua::POLICY_BASIC256SHA256;
                let mut out = Vec::with_capacity(420);
                let open = opcua::open_request(&mut out, policy, 3, 1);
                conn.data(script, between(rng, 100 * US, MS), true, out, vec![open]);
                let mut out = Vec::with_capacity(420);
                let opened = opcua::open_response(&mut out, policy, session.channel, 1);
                conn.data(
                    script,
                    between(rng, 2 * MS, 10 * MS),
                    false,
                    out,
                    vec![opened],
                );
                let client = format!("client-{}", a.client);
                let create = opcua::create_session_tail(&endpoint, &client, rng.random());
                let session_id = rng.random();
                let token = rng.random();
                let created = opcua::create_session_response_tail(session_id, token, rng.random());
                let delay = between(rng, 100 * US, MS);
                let service = opcua::CREATE_SESSION;
                opcua_exchange(
                    rng, &mut conn, script, delay, session, service, &create, &created,
                );
                let activate = opcua::activate_session_tail();
                let activated = opcua::activate_session_response_tail(rng.random());
                let delay = between(rng, 100 * US, MS);
                let service = opcua::ACTIVATE_SESSION;
                opcua_exchange(
                    rng, &mut conn, script, delay, session, service, &activate, &activated,
                );
            }
            Session::Mqtt(session) => {
                session.exchanges = 0;
                let client_id = format!(
                    "{}-{}",
                    if session.subscriber {
                        "historian"
                    } else {
                        "gateway"
                    },
                    a.client
                );
                let mut out = Vec::with_capacity(32);
                let connect = mqtt::connect(&mut out, &client_id);
                conn.data(script, between(rng, 100 * US, MS), true, out, vec![connect]);
                let mut out = Vec::with_capacity(4);
                let accepted = mqtt::connack(&mut out, 0);
                conn.data(script, between(rng, MS, 3 * MS), false, out, vec![accepted]);
                if session.subscriber {
                    session.packet_id = session.packet_id.wrapping_add(1).max(1);
                    let mut out = Vec::with_capacity(16);
                    let subscribe = mqtt::subscribe(&mut out, session.packet_id, "plant/#");
                    conn.data(
                        script,
                        between(rng, 100 * US, MS),
                        true,
                        out,
                        vec![subscribe],
                    );
                    let mut out = Vec::with_capacity(5);
                    let granted = mqtt::suback(&mut out, session.packet_id);
                    conn.data(script, between(rng, MS, 3 * MS), false, out, vec![granted]);
                }
            }
        }
        conn
    }

    fn exchange(&mut self, cx: &mut Cx<'_>, conn: &mut TcpConn, script: &mut Script) {
        let identity = cx.plant.hosts[self.association.server].identity;
        let interval = self.association.interval_ns;
        let delay = between(cx.rng, interval - interval / 10, interval + interval / 10);
        let rng = &mut *cx.rng;
        match &mut self.session {
            Session::Modbus { transaction, unit } => {
                modbus_exchange(rng, conn, script, delay, transaction, *unit, identity)
            }
            Session::Dnp3 { link, seqs, polls } => {
                let request = if *polls % 60 == 0 {
                    dnp3::Request::ClassPoll { integrity: true }
                } else {
                    match rng.random_range(0..100) {
                        0..=85 => dnp3::Request::ClassPoll { integrity: false },
                        86..=91 => dnp3::Request::ClearRestart,
                        _ => dnp3::Request::Select {
                            index: rng.random_range(0..16),
                        },
                    }
                };
                *polls += 1;
                dnp3_exchange(rng, conn, script, delay, *link, seqs, request);
                if let dnp3::Request::Select { index } = request {
                    let operate = dnp3::Request::Operate { index };
                    let delay = between(rng, 5 * MS, 50 * MS);
                    dnp3_exchange(rng, conn, script, delay, *link, seqs, operate);
                }
            }
            Session::Enip { session, context } => {
                *context = context.wrapping_add(1);
                let attribute = match rng.random_range(0..3) {
                    0 => enip::IdentityAttribute::VendorId,
                    1 => enip::IdentityAttribute::Status,
                    _ => enip::IdentityAttribute::ProductName,
                };
                let mut out = Vec::with_capacity(48);
                let request = enip::get_attribute_request(&mut out, *session, *context, attribute);
                conn.data(script, delay, true, out, request.to_vec());
                let fail = rng.random_bool(0.03);
                let ident = identity_of(cx.plant, self.association.server);
                let mut out = Vec::with_capacity(64);
                let reply = enip::get_attribute_reply(
                    &mut out, *session, *context, attribute, &ident, fail,
                );
                conn.data(script, between(rng, MS, 8 * MS), false, out, reply.to_vec());
                if rng.random_bool(0.4) {
                    conn.ack(script, between(rng, MS, 40 * MS), true);
                }
            }
            Session::S7 { pdu_ref } => {
                *pdu_ref = pdu_ref.wrapping_add(1);
                let count = rng.random_range(1..=4);
                let items: Vec<s7comm::Item> = (0..count)
                    .map(|_| s7comm::Item {
                        db: rng.random_range(1..=100),
                        offset: rng.random_range(0..256) * 2,
                        length: rng.random_range(1..=16) * 2,
                    })
                    .collect();
                let mut out = Vec::with_capacity(80);
                let job = s7comm::read_job(&mut out, *pdu_ref, &items);
                conn.data(script, delay, true, out, vec![job]);
                let mut out = Vec::with_capacity(200);
                let ack = s7comm::read_ack(&mut out, *pdu_ref, &items, rng);
                conn.data(script, between(rng, 2 * MS, 10 * MS), false, out, vec![ack]);
                if rng.random_bool(0.4) {
                    conn.ack(script, between(rng, MS, 40 * MS), true);
                }
            }
            Session::S7Plus { session, sequence } => {
                *sequence = sequence.wrapping_add(1).max(1);
                let items = rng.random_range(1..=4u8);
                let mut out = Vec::with_capacity(64);
                let request = s7commplus::get_multi_variables(&mut out, *session, *sequence, items);
                conn.data(script, delay, true, out, vec![request]);
                let values: Vec<f32> = (0..items).map(|_| rng.random_range(0.0..100.0)).collect();
                let mut out = Vec::with_capacity(64);
                let reply = s7commplus::get_multi_variables_response(&mut out, *sequence, &values);
                conn.data(
                    script,
                    between(rng, 2 * MS, 10 * MS),
                    false,
                    out,
                    vec![reply],
                );
                if rng.random_bool(0.4) {
                    conn.ack(script, between(rng, MS, 40 * MS), true);
                }
            }
            Session::Iec104(session) => iec104_exchange(rng, conn, script, delay, session),
            Session::OpcUa(session) => {
                let node = rng.random_range(1000..1100);
                let request = opcua::read_tail(node);
                let reply = opcua::result_tail(Some(rng.random_range(0.0..500.0)));
                let read = opcua::READ;
                opcua_exchange(rng, conn, script, delay, session, read, &request, &reply);
                if rng.random_bool(0.4) {
                    conn.ack(script, between(rng, MS, 40 * MS), true);
                }
            }
            Session::Mqtt(session) => {
                mqtt_exchange(rng, conn, script, delay, session, self.association.client)
            }
        }
    }

    fn close(&mut self, cx: &mut Cx<'_>, mut conn: TcpConn, script: &mut Script) {
        let delay = between(
            cx.rng,
            self.association.interval_ns / 2,
            self.association.interval_ns,
        );
        let mut fin_delay = delay;
        let goodbye = match &mut self.session {
            Session::Enip { session, context } => {
                let mut out = Vec::with_capacity(24);
                let pdu = enip::unregister_session(&mut out, *session, *context);
                Some((out, pdu))
            }
            Session::OpcUa(session) => {
                let mut out = Vec::with_capacity(64);
                session.request_id += 1;
                let pdu = opcua::close(
                    &mut out,
                    session.channel,
                    session.client_sequence,
                    session.request_id,
                );
                Some((out, pdu))
            }
            Session::Mqtt(_) => {
                let mut out = Vec::with_capacity(2);
                let pdu = mqtt::disconnect(&mut out);
                Some((out, pdu))
            }
            _ => None,
        };
        if let Some((out, pdu)) = goodbye {
            conn.data(script, delay, true, out, vec![pdu]);
            fin_delay = between(cx.rng, 100 * US, MS);
        }
        conn.close(script, fin_delay, lan_rtt(cx), true);
    }
}

impl Actor for PollActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        match self.conn.take() {
            None => self.conn = Some(self.open(cx, script)),
            Some(mut conn) if self.polls_left > 0 => {
                self.polls_left -= 1;
                self.exchange(cx, &mut conn, script);
                self.conn = Some(conn);
            }
            Some(conn) => self.close(cx, conn, script),
        }
    }
}

/// The ISO-on-TCP connection (COTP CR and CC) that opens S7comm, S7comm-plus and MMS
/// sessions; not PDUs of any.
pub(super) fn cotp_connect<R: Rng>(rng: &mut R, conn: &mut TcpConn, script: &mut Script) {
    let client_ref = rng.random_range(1..0x4000);
    let mut out = Vec::with_capacity(22);
    s7comm::connect_request(&mut out, client_ref);
    conn.data(script, between(rng, 100 * US, MS), true, out, Vec::new());
    let mut out = Vec::with_capacity(22);
    s7comm::connect_confirm(&mut out, client_ref, rng.random_range(0x4000..0x8000));
    conn.data(script, between(rng, MS, 3 * MS), false, out, Vec::new());
}

const IEC104_PORT: u16 = 2404;
const OPCUA_PORT: u16 = 4840;
const MQTT_PORT: u16 = 1883;
/// The master acknowledges after this many unacknowledged I-frames (104 §5.5, w).
const IEC104_W: u16 = 8;

/// A station interrogation: the master's activation, the RTU's confirmation, its
/// measurands (cause interrogated) and termination, and the master's S-frame.
fn iec104_interrogation<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    delay: u64,
    session: &mut Iec104Session,
) {
    let common = session.common_address;
    let mut out = Vec::with_capacity(16);
    let seqs = session.next_master_seqs();
    let activation = iec104::interrogation(&mut out, seqs, iec104::COT_ACTIVATION, common);
    conn.data(script, delay, true, out, vec![activation]);
    let mut out = Vec::with_capacity(16);
    let seqs = session.next_rtu_seqs();
    let confirm = iec104::interrogation(&mut out, seqs, iec104::COT_ACTIVATION_CON, common);
    conn.data(script, between(rng, MS, 5 * MS), false, out, vec![confirm]);
    for block in 0..rng.random_range(1..=3u32) {
        let values: Vec<f32> = (0..rng.random_range(4..=12))
            .map(|_| rng.random_range(0.0f32..250.0))
            .collect();
        let mut out = Vec::with_capacity(16 + 8 * values.len());
        let seqs = session.next_rtu_seqs();
        let first = 1001 + 100 * block;
        let cause = iec104::COT_INTERROGATED;
        let report = iec104::measurands(&mut out, seqs, cause, common, first, &values);
        conn.data(script, between(rng, MS, 10 * MS), false, out, vec![report]);
    }
    let mut out = Vec::with_capacity(16);
    let seqs = session.next_rtu_seqs();
    let done = iec104::interrogation(&mut out, seqs, iec104::COT_ACTIVATION_TERM, common);
    conn.data(script, between(rng, MS, 5 * MS), false, out, vec![done]);
    iec104_acknowledge(rng, conn, script, session);
}

/// The master's S-frame for the RTU's I-frames so far.
fn iec104_acknowledge<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    session: &mut Iec104Session,
) {
    let mut out = Vec::with_capacity(6);
    let ack = iec104::s_frame(&mut out, session.rtu_sent);
    session.unacknowledged = 0;
    conn.data(script, between(rng, MS, 20 * MS), true, out, vec![ack]);
}

/// One reporting period: the RTU's spontaneous measurands, a general interrogation
/// every hundred periods and a TESTFR now and then; S-frames every `w` I-frames.
fn iec104_exchange<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    delay: u64,
    session: &mut Iec104Session,
) {
    session.exchanges += 1;
    if session.exchanges.is_multiple_of(100) {
        iec104_interrogation(rng, conn, script, delay, session);
        return;
    }
    if session.exchanges.is_multiple_of(30) {
        let mut out = Vec::with_capacity(6);
        let test = iec104::u_frame(&mut out, iec104::TESTFR_ACT);
        conn.data(script, delay, true, out, vec![test]);
        let mut out = Vec::with_capacity(6);
        let confirm = iec104::u_frame(&mut out, iec104::TESTFR_CON);
        conn.data(script, between(rng, MS, 5 * MS), false, out, vec![confirm]);
        return;
    }
    let values: Vec<f32> = (0..rng.random_range(1..=4))
        .map(|_| rng.random_range(0.0f32..250.0))
        .collect();
    let first = 1001 + rng.random_range(0..40);
    let mut out = Vec::with_capacity(16 + 8 * values.len());
    let seqs = session.next_rtu_seqs();
    let cause = iec104::COT_SPONTANEOUS;
    let common = session.common_address;
    let report = iec104::measurands(&mut out, seqs, cause, common, first, &values);
    conn.data(script, delay, false, out, vec![report]);
    if session.unacknowledged >= IEC104_W {
        iec104_acknowledge(rng, conn, script, session);
    } else if rng.random_bool(0.4) {
        conn.ack(script, between(rng, MS, 40 * MS), true);
    }
}

/// A service request on the secure channel and its response.
#[allow(clippy::too_many_arguments)]
fn opcua_exchange<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    delay: u64,
    session: &mut OpcUaSession,
    service: u16,
    request_tail: &[u8],
    response_tail: &[u8],
) {
    session.client_sequence += 1;
    session.server_sequence += 1;
    session.request_id += 1;
    let (channel, id) = (session.channel, session.request_id);
    let mut out = Vec::with_capacity(64 + request_tail.len());
    let sequence = session.client_sequence;
    let request = opcua::message(&mut out, channel, sequence, id, service, request_tail);
    conn.data(script, delay, true, out, vec![request]);
    let mut out = Vec::with_capacity(64 + response_tail.len());
    let sequence = session.server_sequence;
    let answer = service + opcua::RESPONSE_OFFSET;
    let response = opcua::message(&mut out, channel, sequence, id, answer, response_tail);
    conn.data(script, between(rng, MS, 8 * MS), false, out, vec![response]);
}

/// A publisher's reading (and a PINGREQ/PINGRESP now and then), or for a subscriber
/// one reading the broker forwards (the subscriber pings within its keep-alive).
fn mqtt_exchange<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    delay: u64,
    session: &mut MqttSession,
    client: usize,
) {
    session.exchanges += 1;
    let every = if session.subscriber { 20 } else { 40 };
    if session.exchanges.is_multiple_of(every) {
        let mut out = Vec::with_capacity(2);
        let ping = mqtt::ping_request(&mut out);
        conn.data(script, delay, true, out, vec![ping]);
        let mut out = Vec::with_capacity(2);
        let pong = mqtt::ping_response(&mut out);
        conn.data(script, between(rng, MS, 5 * MS), false, out, vec![pong]);
        return;
    }
    let tag = ["temperature", "pressure", "flow", "level", "vibration"][rng.random_range(0..5)];
    let source = if session.subscriber {
        rng.random_range(0..16)
    } else {
        client
    };
    let topic = format!("plant/gateway-{source}/{tag}");
    let reading = format!("{{\"value\":{:.2}}}", rng.random_range(0.0f64..500.0));
    let mut out = Vec::with_capacity(8 + topic.len() + reading.len());
    let publish = mqtt::publish(&mut out, &topic, reading.as_bytes());
    conn.data(script, delay, !session.subscriber, out, vec![publish]);
    if rng.random_bool(0.4) {
        conn.ack(script, between(rng, MS, 40 * MS), session.subscriber);
    }
}

fn lan_rtt(cx: &mut Cx<'_>) -> u64 {
    between(cx.rng, 150 * US, 900 * US)
}

fn modbus_request<R: Rng>(rng: &mut R) -> modbus::Request {
    use modbus::Request::*;
    match rng.random_range(0..100) {
        0..=63 => ReadHoldingRegisters {
            address: rng.random_range(0..2000),
            quantity: rng.random_range(1..=60),
        },
        64..=75 => ReadInputRegisters {
            address: rng.random_range(0..2000),
            quantity: rng.random_range(1..=40),
        },
        76..=85 => ReadCoils {
            address: rng.random_range(0..1000),
            quantity: rng.random_range(1..=128),
        },
        86..=89 => WriteSingleCoil {
            address: rng.random_range(0..1000),
            on: rng.random(),
        },
        90..=93 => WriteSingleRegister {
            address: rng.random_range(0..2000),
            value: rng.random(),
        },
        94..=97 => WriteMultipleRegisters {
            address: rng.random_range(0..2000),
            quantity: rng.random_range(1..=16),
        },
        _ => ReadDeviceIdentification,
    }
}

/// The server's answer; about one in fifty is an exception (illegal data address).
fn modbus_answer<R: Rng>(
    rng: &mut R,
    out: &mut Vec<u8>,
    transaction: u16,
    unit: u8,
    request: modbus::Request,
    identity: (&str, &str, &str),
) -> Pdu {
    if rng.random_bool(0.02) {
        modbus::exception(out, transaction, unit, request, 0x02)
    } else {
        modbus::response(out, transaction, unit, request, identity, rng)
    }
}

/// One polling cycle. Most are one request and one response, each in its own segment;
/// some pipeline two ADUs in one segment, some split one ADU over two segments.
fn modbus_exchange<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    delay: u64,
    transaction: &mut u16,
    unit: u8,
    identity: (&str, &str, &str),
) {
    let first = modbus_request(rng);
    *transaction = transaction.wrapping_add(1);
    let t1 = *transaction;
    let processing = between(rng, 2 * MS, 15 * MS);
    match rng.random_range(0..100) {
        0..=4 => {
            let second = modbus_request(rng);
            *transaction = transaction.wrapping_add(1);
            let t2 = *transaction;
            let mut out = Vec::with_capacity(64);
            let p1 = modbus::request(&mut out, t1, unit, first, rng);
            let p2 = modbus::request(&mut out, t2, unit, second, rng);
            conn.data(script, delay, true, out, vec![p1, p2]);
            let mut out = Vec::with_capacity(300);
            let r1 = modbus_answer(rng, &mut out, t1, unit, first, identity);
            let r2 = modbus_answer(rng, &mut out, t2, unit, second, identity);
            conn.data(script, processing, false, out, vec![r1, r2]);
        }
        5..=12 => {
            let split_request = rng.random_bool(0.5);
            let mut request = Vec::with_capacity(64);
            let p = modbus::request(&mut request, t1, unit, first, rng);
            let mut response = Vec::with_capacity(300);
            let r = modbus_answer(rng, &mut response, t1, unit, first, identity);
            let gap = between(rng, 100 * US, MS);
            if split_request {
                let cut = rng.random_range(1..request.len());
                let tail = request.split_off(cut);
                conn.data(script, delay, true, request, Vec::new());
                conn.data(script, gap, true, tail, vec![p]);
                conn.data(script, processing, false, response, vec![r]);
            } else {
                conn.data(script, delay, true, request, vec![p]);
                let cut = rng.random_range(1..response.len());
                let tail = response.split_off(cut);
                conn.data(script, processing, false, response, Vec::new());
                conn.data(script, gap, false, tail, vec![r]);
            }
        }
        _ => {
            let mut out = Vec::with_capacity(64);
            let p = modbus::request(&mut out, t1, unit, first, rng);
            conn.data(script, delay, true, out, vec![p]);
            let mut out = Vec::with_capacity(300);
            let r = modbus_answer(rng, &mut out, t1, unit, first, identity);
            conn.data(script, processing, false, out, vec![r]);
        }
    }
    if rng.random_bool(0.4) {
        conn.ack(script, between(rng, MS, 40 * MS), true);
    }
}

fn dnp3_exchange<R: Rng>(
    rng: &mut R,
    conn: &mut TcpConn,
    script: &mut Script,
    delay: u64,
    link: dnp3::Link,
    seqs: &mut Dnp3Sequences,
    request: dnp3::Request,
) {
    let mut out = Vec::with_capacity(64);
    let p = dnp3::request(&mut out, link, seqs.master, seqs.app, request);
    seqs.master = (seqs.master + 1) % 64;
    conn.data(script, delay, true, out, vec![p]);
    let iin1 = [0x00, 0x00, 0x02, 0x04][rng.random_range(0..4)];
    let mut out = Vec::with_capacity(160);
    let r = dnp3::response(
        &mut out,
        link,
        seqs.outstation,
        seqs.app,
        request,
        iin1,
        rng,
    );
    seqs.outstation = (seqs.outstation + 1) % 64;
    seqs.app = (seqs.app + 1) % 16;
    conn.data(script, between(rng, 3 * MS, 20 * MS), false, out, vec![r]);
    if rng.random_bool(0.4) {
        conn.ack(script, between(rng, MS, 40 * MS), true);
    }
}

/// A BMS server reading present values from its controllers round-robin, and a Who-Is
/// broadcast every two minutes or so that every controller answers with I-Am.
pub struct BacnetActor {
    server: usize,
    controllers: Vec<(usize, u32)>,
    next: usize,
    invoke_id: u8,
    next_who_is_ns: Option<u64>,
    /// Each controller is read about this often.
    cycle_ns: u64,
}

const BACNET_PORT: u16 = 47_808;

impl BacnetActor {
    pub fn new(server: usize, controllers: Vec<(usize, u32)>) -> BacnetActor {
        BacnetActor {
            server,
            controllers,
            next: 0,
            invoke_id: 0,
            next_who_is_ns: None,
            cycle_ns: 5 * SECOND,
        }
    }

    fn subnet_broadcast(plant: &Plant, host: usize) -> Ipv4Addr {
        let [a, b, c, _] = plant.hosts[host].ipv4.octets();
        Ipv4Addr::new(a, b, c, 255)
    }
}

impl Actor for BacnetActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let plant = &*cx.plant;
        let rng = &mut *cx.rng;
        let who_is_due = *self
            .next_who_is_ns
            .get_or_insert(cx.now_ns + between(rng, 0, 10 * SECOND));
        if cx.now_ns >= who_is_due || self.controllers.is_empty() {
            self.next_who_is_ns = Some(cx.now_ns + between(rng, 100 * SECOND, 140 * SECOND));
            let destination = Self::subnet_broadcast(plant, self.server);
            let mut out = Vec::with_capacity(8);
            let pdu = bacnet::who_is(&mut out);
            let spec = broadcast(
                plant,
                self.server,
                destination,
                (BACNET_PORT, BACNET_PORT),
                out,
            );
            frame(script, between(rng, 10 * MS, 100 * MS), spec, vec![pdu]);
            for &(controller, instance) in &self.controllers {
                let mut out = Vec::with_capacity(24);
                let pdu = bacnet::i_am(&mut out, instance, 17);
                let destination = Self::subnet_broadcast(plant, controller);
                let spec = broadcast(
                    plant,
                    controller,
                    destination,
                    (BACNET_PORT, BACNET_PORT),
                    out,
                );
                frame(script, between(rng, 2 * MS, 30 * MS), spec, vec![pdu]);
            }
            return;
        }
        let (controller, _) = self.controllers[self.next % self.controllers.len()];
        self.next += 1;
        self.invoke_id = self.invoke_id.wrapping_add(1);
        let (server, device) = (Peer::Host(self.server), Peer::Host(controller));
        let object_type = rng.random_range(0..3u16); // analog input, output, value
        let instance = rng.random_range(1..=8);
        let unknown_property = rng.random_bool(0.03);
        let property = if unknown_property {
            512
        } else {
            bacnet::PRESENT_VALUE
        };
        let mut out = Vec::with_capacity(24);
        let request =
            bacnet::read_property(&mut out, self.invoke_id, object_type, instance, property);
        let delay = self.cycle_ns / self.controllers.len().max(1) as u64;
        let spec = udp(
            plant,
            server,
            device,
            false,
            (BACNET_PORT, BACNET_PORT),
            out,
        );
        frame(script, delay, spec, vec![request]);
        let mut out = Vec::with_capacity(32);
        let answer = if unknown_property {
            bacnet::read_property_error(&mut out, self.invoke_id)
        } else {
            let value = rng.random_range(0.0f32..100.0);
            bacnet::read_property_ack(
                &mut out,
                self.invoke_id,
                object_type,
                instance,
                property,
                value,
            )
        };
        let spec = udp(
            plant,
            device,
            server,
            false,
            (BACNET_PORT, BACNET_PORT),
            out,
        );
        frame(script, between(rng, 5 * MS, 40 * MS), spec, vec![answer]);
    }
}

/// An engineering workstation browsing for EtherNet/IP devices with a ListIdentity
/// broadcast every few minutes, each from a fresh port; every device answers.
pub struct ListIdentityActor {
    workstation: usize,
    devices: Vec<usize>,
    started: bool,
}

impl ListIdentityActor {
    pub fn new(workstation: usize, devices: Vec<usize>) -> ListIdentityActor {
        ListIdentityActor {
            workstation,
            devices,
            started: false,
        }
    }
}

impl Actor for ListIdentityActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            between(cx.rng, 240 * SECOND, 360 * SECOND)
        } else {
            between(cx.rng, SECOND, 30 * SECOND)
        };
        self.started = true;
        let port = cx.plant.ephemeral_port(self.workstation);
        let context: u64 = cx.rng.random();
        let plant = &*cx.plant;
        let rng = &mut *cx.rng;
        let mut out = Vec::with_capacity(24);
        let pdu = enip::list_identity_request(&mut out, context);
        let spec = broadcast(
            plant,
            self.workstation,
            Ipv4Addr::BROADCAST,
            (port, enip::ENIP_PORT),
            out,
        );
        frame(script, delay, spec, vec![pdu]);
        for &device in &self.devices {
            let mut out = Vec::with_capacity(80);
            let ident = identity_of(plant, device);
            let pdu =
                enip::list_identity_reply(&mut out, context, plant.hosts[device].ipv4, &ident);
            let spec = udp(
                plant,
                Peer::Host(device),
                Peer::Host(self.workstation),
                false,
                (enip::ENIP_PORT, port),
                out,
            );
            frame(script, between(rng, MS, 20 * MS), spec, vec![pdu]);
        }
    }
}

/// ARP requests and replies between hosts of one segment.
pub struct ArpActor;

impl Actor for ArpActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let plant = &*cx.plant;
        let rng = &mut *cx.rng;
        let delay = between(rng, 300 * MS, 3 * SECOND);
        let Some(members) = (0..8)
            .map(|_| &plant.segments[rng.random_range(0..plant.segments.len())])
            .find(|members| members.len() >= 2)
        else {
            script.push_back(Planned {
                delay_ns: delay,
                spec: None,
                pdus: Vec::new(),
            });
            return;
        };
        let a = members[rng.random_range(0..members.len())];
        let mut b = members[rng.random_range(0..members.len())];
        if a == b {
            b = members[(members.iter().position(|&m| m == a).unwrap_or(0) + 1) % members.len()];
        }
        let (ha, hb) = (&plant.hosts[a], &plant.hosts[b]);
        let request = FrameSpec {
            l2: L2 {
                src: ha.mac,
                dst: BROADCAST_MAC,
                vlan: ha.vlan,
            },
            net: Net::Arp {
                operation: 1,
                sender_mac: ha.mac,
                sender_ip: ha.ipv4,
                target_mac: [0; 6],
                target_ip: hb.ipv4,
            },
        };
        let reply = FrameSpec {
            l2: L2 {
                src: hb.mac,
                dst: ha.mac,
                vlan: hb.vlan,
            },
            net: Net::Arp {
                operation: 2,
                sender_mac: hb.mac,
                sender_ip: hb.ipv4,
                target_mac: ha.mac,
                target_ip: ha.ipv4,
            },
        };
        frame(script, delay, request, Vec::new());
        frame(script, between(rng, 50 * US, 2 * MS), reply, Vec::new());
    }
}

/// A managed switch advertising itself with LLDP every 30 s: a layer-2-only device.
pub struct LldpActor {
    mac: [u8; 6],
    port: u16,
    started: bool,
}

impl LldpActor {
    pub fn new(mac: [u8; 6], port: u16) -> LldpActor {
        LldpActor {
            mac,
            port,
            started: false,
        }
    }
}

impl Actor for LldpActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            between(cx.rng, 30 * SECOND - 10 * MS, 30 * SECOND + 10 * MS)
        } else {
            // Early, so that short captures carry the switches' names too.
            between(cx.rng, 0, 5 * SECOND)
        };
        self.started = true;
        let spec = FrameSpec {
            l2: L2 {
                src: self.mac,
                dst: [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e],
                vlan: 0,
            },
            net: Net::Lldp {
                port: self.port,
                system: Some(super::identity::switch_system(self.mac, self.port)),
            },
        };
        frame(script, delay, spec, Vec::new());
    }
}
