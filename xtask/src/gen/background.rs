//! Non-industrial background: DNS lookups to the internal resolver and TLS-like bulk
//! transfers from desktops to servers beyond the gateway, spawned so that background
//! stays near its share of the capture.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::{Rng, RngCore};

use super::ot::udp;
use super::plant::Peer;
use super::script::{Planned, Script, TcpConn};
use super::{between, Actor, Cx, MS, SECOND, US};

/// Share of frames the spawner aims at for background traffic.
const BACKGROUND_SHARE: f64 = 0.4;
const MAX_ACTIVE_TRANSFERS: u32 = 3;
const DNS_PORT: u16 = 53;
const HTTPS_PORT: u16 = 443;
const MSS_V4: usize = 1448;
const MSS_V6: usize = 1428;
const TLS_RECORD: usize = 16_384;

const NAMES: [&str; 9] = [
    "historian.plant.local",
    "mes.plant.local",
    "wsus.corp.example",
    "time.corp.example",
    "mail.corp.example",
    "update.vendor.example",
    "license.vendor.example",
    "intranet.corp.example",
    "av.corp.example",
];

fn dns_question(out: &mut Vec<u8>, name: &str, qtype: u16) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // class IN
}

/// A recursive query (RFC 1035, 4.1): one question.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    dns_question(&mut out, name, qtype);
    out
}

/// The answer: one record pointing back at the question name, or NXDOMAIN.
fn dns_response(id: u16, name: &str, qtype: u16, answer: Option<IpAddr>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&id.to_be_bytes());
    let (flags, answers): ([u8; 2], u8) = if answer.is_some() {
        ([0x81, 0x80], 1)
    } else {
        ([0x81, 0x83], 0)
    };
    out.extend_from_slice(&flags);
    out.extend_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
    dns_question(&mut out, name, qtype);
    if let Some(address) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        match address {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    out
}

/// A desktop resolving names now and then, each lookup from a fresh port.
pub struct DnsActor {
    client: usize,
}

impl DnsActor {
    pub fn new(client: usize) -> DnsActor {
        DnsActor { client }
    }
}

impl Actor for DnsActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = between(cx.rng, SECOND, 15 * SECOND);
        let port = cx.plant.ephemeral_port(self.client);
        let plant = &*cx.plant;
        let rng = &mut *cx.rng;
        let ipv6 = plant.hosts[self.client].ipv6.is_some() && rng.random_bool(0.3);
        let name = NAMES[rng.random_range(0..NAMES.len())];
        let aaaa = rng.random_bool(0.3);
        let qtype = if aaaa { 28 } else { 1 };
        let id: u16 = rng.random();
        let answer = (!rng.random_bool(0.05)).then(|| {
            if aaaa {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    4,
                    0,
                    0,
                    0,
                    0,
                    rng.random_range(1..100),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.random_range(1..100)))
            }
        });
        let (client, resolver) = (Peer::Host(self.client), Peer::Host(plant.resolver));
        let query = udp(
            plant,
            client,
            resolver,
            ipv6,
            (port, DNS_PORT),
            dns_query(id, name, qtype),
        );
        let response = udp(
            plant,
            resolver,
            client,
            ipv6,
            (DNS_PORT, port),
            dns_response(id, name, qtype, answer),
        );
        for (delay_ns, spec) in [(delay, query), (between(rng, 300 * US, 20 * MS), response)] {
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

enum TlsPhase {
    Start,
    Bulk,
    Done,
}

/// One download over TLS: handshake-like records, then application-data records of
/// 16 KiB carried in full-size segments, acknowledged every second segment.
pub struct TlsActor {
    client: usize,
    server: IpAddr,
    conn: Option<TcpConn>,
    phase: TlsPhase,
    mss: usize,
    /// Records still to start, and the body length of the last one.
    records_left: u32,
    last_record: usize,
    /// Body bytes left in the current record, and the pending record header.
    record_left: usize,
    header: [u8; 5],
    header_pos: usize,
}

impl TlsActor {
    pub fn new(client: usize, server: IpAddr, records: u32, last_record: usize) -> TlsActor {
        TlsActor {
            client,
            server,
            conn: None,
            phase: TlsPhase::Start,
            mss: if server.is_ipv6() { MSS_V6 } else { MSS_V4 },
            records_left: records,
            last_record,
            record_left: 0,
            header: [0; 5],
            header_pos: 5,
        }
    }

    fn stream_done(&self) -> bool {
        self.records_left == 0 && self.record_left == 0 && self.header_pos >= 5
    }

    /// Up to `limit` bytes of the server's record stream.
    fn next_bytes(&mut self, rng: &mut impl RngCore, limit: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(limit);
        while out.len() < limit {
            if let Some(&byte) = self.header.get(self.header_pos) {
                out.push(byte);
                self.header_pos += 1;
                continue;
            }
            if self.record_left == 0 {
                if self.records_left == 0 {
                    break;
                }
                self.records_left -= 1;
                let length = if self.records_left == 0 {
                    self.last_record
                } else {
                    TLS_RECORD
                };
                let [hi, lo] = (length as u16).to_be_bytes();
                self.header = [0x17, 0x03, 0x03, hi, lo];
                self.header_pos = 0;
                self.record_left = length;
                continue;
            }
            let take = (limit - out.len()).min(self.record_left);
            let start = out.len();
            out.resize(start + take, 0);
            if let Some(body) = out.get_mut(start..) {
                rng.fill_bytes(body);
            }
            self.record_left -= take;
        }
        out
    }
}

/// A TLS record of `content_type` with `length` bytes of random body.
fn tls_record(rng: &mut impl RngCore, content_type: u8, length: usize) -> Vec<u8> {
    let mut out = vec![content_type, 0x03, 0x03];
    out.extend_from_slice(&(length as u16).to_be_bytes());
    let start = out.len();
    out.resize(start + length, 0);
    if let Some(body) = out.get_mut(start..) {
        rng.fill_bytes(body);
    }
    out
}

impl Actor for TlsActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        match self.phase {
            TlsPhase::Start => {
                let port = cx.plant.ephemeral_port(self.client);
                let rng = &mut *cx.rng;
                let mut conn = TcpConn::new(
                    cx.plant,
                    Peer::Host(self.client),
                    Peer::External(self.server),
                    self.server.is_ipv6(),
                    port,
                    HTTPS_PORT,
                    (rng.random(), rng.random()),
                    (64_240, 65_535),
                );
                let wan_rtt = between(rng, 8 * MS, 40 * MS);
                conn.handshake(script, between(rng, 0, 50 * MS), wan_rtt);
                // ClientHello, ServerHello + certificate flight, key exchange, finished.
                let hello = {
                    let length = rng.random_range(200..500);
                    tls_record(rng, 0x16, length)
                };
                conn.data(script, between(rng, 100 * US, MS), true, hello, Vec::new());
                let mut flight = {
                    let length = rng.random_range(2500..4000);
                    tls_record(rng, 0x16, length)
                };
                let mut delay = wan_rtt;
                while !flight.is_empty() {
                    let rest = flight.split_off(flight.len().min(self.mss));
                    conn.data(script, delay, false, flight, Vec::new());
                    flight = rest;
                    delay = between(rng, 50 * US, 300 * US);
                }
                conn.ack(script, between(rng, 100 * US, MS), true);
                let finished = tls_record(rng, 0x14, 1);
                conn.data(script, between(rng, MS, 3 * MS), true, finished, Vec::new());
                let ticket = {
                    let length = rng.random_range(100..250);
                    tls_record(rng, 0x16, length)
                };
                conn.data(script, wan_rtt, false, ticket, Vec::new());
                let request = {
                    let length = rng.random_range(200..600);
                    tls_record(rng, 0x17, length)
                };
                conn.data(script, between(rng, MS, 5 * MS), true, request, Vec::new());
                self.conn = Some(conn);
                self.phase = TlsPhase::Bulk;
            }
            TlsPhase::Bulk => {
                let Some(mut conn) = self.conn.take() else {
                    self.phase = TlsPhase::Done;
                    return;
                };
                if self.stream_done() {
                    conn.close(
                        script,
                        between(cx.rng, MS, 10 * MS),
                        between(cx.rng, 8 * MS, 40 * MS),
                        true,
                    );
                    cx.stats.active_transfers = cx.stats.active_transfers.saturating_sub(1);
                    self.phase = TlsPhase::Done;
                    return;
                }
                let mut first = true;
                for _ in 0..2 {
                    let payload = self.next_bytes(cx.rng, self.mss);
                    if payload.is_empty() {
                        break;
                    }
                    let delay = if first {
                        between(cx.rng, 5 * MS, 20 * MS)
                    } else {
                        between(cx.rng, 40 * US, 250 * US)
                    };
                    first = false;
                    conn.segment(
                        script,
                        delay,
                        false,
                        super::wire::tcp_flags::ACK,
                        payload,
                        Vec::new(),
                    );
                }
                conn.ack(script, between(cx.rng, 50 * US, 400 * US), true);
                self.conn = Some(conn);
            }
            TlsPhase::Done => {}
        }
    }

    fn is_background(&self) -> bool {
        true
    }
}

/// Starts bulk transfers while background traffic is below its share; every fourth
/// goes over IPv6 from a dual-stack desktop.
#[derive(Default)]
pub struct Spawner {
    started: u64,
}

impl Actor for Spawner {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let below_share =
            (cx.stats.background as f64) < BACKGROUND_SHARE * (cx.stats.total as f64 + 1.0);
        if below_share
            && cx.stats.active_transfers < MAX_ACTIVE_TRANSFERS
            && !cx.plant.it_clients.is_empty()
        {
            let plant = &*cx.plant;
            let rng = &mut *cx.rng;
            let dual_stack: Vec<usize> = plant
                .it_clients
                .iter()
                .copied()
                .filter(|&c| plant.hosts[c].ipv6.is_some())
                .collect();
            let ipv6 =
                self.started % 4 == 3 && !dual_stack.is_empty() && !plant.external_v6.is_empty();
            self.started += 1;
            let (client, server) = if ipv6 {
                let client = dual_stack[rng.random_range(0..dual_stack.len())];
                let server = plant.external_v6[rng.random_range(0..plant.external_v6.len())];
                (client, IpAddr::V6(server))
            } else {
                let client = plant.it_clients[rng.random_range(0..plant.it_clients.len())];
                let server = plant.external_v4[rng.random_range(0..plant.external_v4.len())];
                (client, IpAddr::V4(server))
            };
            let records = rng.random_range(1..120);
            let last = rng.random_range(100..TLS_RECORD);
            cx.spawn
                .push(Box::new(TlsActor::new(client, server, records, last)));
            cx.stats.active_transfers += 1;
        }
        script.push_back(Planned {
            delay_ns: between(cx.rng, 80 * MS, 120 * MS),
            spec: None,
            pdus: Vec::new(),
        });
    }
}
