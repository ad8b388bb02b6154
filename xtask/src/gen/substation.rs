//! The substation's IEC 61850 station bus: protection IEDs publishing GOOSE, and
//! SCADA clients reading the IEDs over MMS.
//!
//! GOOSE: each IED repeats its control block every second (sqNum + 1); now and then its
//! state changes (stNum + 1, sqNum back to 0, a new event time) and it retransmits
//! fast, 2, 4, 8, 16 and 32 ms apart, before falling back to the heartbeat
//! (IEC 61850-8-1 §18.1).
//!
//! MMS (IEC 61850-8-1 client/server, TCP 102): a client associates (COTP, session,
//! presentation, ACSE, MMS initiate), identifies the IED once per association, then
//! reads a measurement every few seconds with a GetNameList now and then, receives an
//! occasional report, and after a while concludes, releases and associates again.

use rand::Rng;

use super::ot::cotp_connect;
use super::plant::Peer;
use super::proto::{goose, mms};
use super::script::{Planned, Script, TcpConn};
use super::wire::{FrameSpec, Net, L2};
use super::{between, Actor, Cx, MS, SECOND, US};

/// The heartbeat; timeAllowedtoLive (2 s) covers one lost frame.
const HEARTBEAT_NS: u64 = SECOND;
/// Fast retransmissions after a state change.
const BURST: u32 = 5;

/// One IED's GOOSE control block.
pub struct GooseActor {
    host: usize,
    appid: u16,
    gocb_ref: String,
    dat_set: String,
    go_id: String,
    st_num: u32,
    sq_num: u32,
    t_seconds: u32,
    values: [bool; 3],
    /// Fast retransmissions left, and the gap before the next one.
    burst_left: u32,
    burst_gap_ns: u64,
    started: bool,
}

impl GooseActor {
    /// The IED `host`, the `index`-th of the substation (its APPID and names).
    pub fn new(host: usize, index: usize) -> GooseActor {
        let name = format!("IED{}", index + 1);
        GooseActor {
            host,
            appid: 0x0100 + index as u16,
            gocb_ref: format!("{name}LD0/LLN0$GO$gcbTrip"),
            dat_set: format!("{name}LD0/LLN0$dsTrip"),
            go_id: format!("{name}_Trip"),
            st_num: 0,
            sq_num: 0,
            t_seconds: 0,
            values: [false; 3],
            burst_left: 0,
            burst_gap_ns: 0,
            started: false,
        }
    }
}

impl Actor for GooseActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let rng = &mut *cx.rng;
        let delay = if !self.started {
            self.started = true;
            self.st_num = rng.random_range(1..50);
            self.sq_num = rng.random_range(0..1000);
            self.t_seconds = (cx.now_ns / SECOND) as u32 - rng.random_range(60..86_400);
            between(rng, 0, HEARTBEAT_NS)
        } else if self.burst_left > 0 {
            self.burst_left -= 1;
            self.sq_num = self.sq_num.wrapping_add(1);
            let gap = self.burst_gap_ns;
            self.burst_gap_ns *= 2;
            gap
        } else if rng.random_bool(0.003) {
            // A state change: new status number, sequence restarts, fast repeats.
            self.st_num = self.st_num.wrapping_add(1).max(1);
            self.sq_num = 0;
            let index = rng.random_range(0..self.values.len());
            self.values[index] = !self.values[index];
            self.burst_left = BURST;
            self.burst_gap_ns = 2 * MS;
            let delay = between(rng, 100 * MS, HEARTBEAT_NS);
            self.t_seconds = ((cx.now_ns + delay) / SECOND) as u32;
            delay
        } else {
            self.sq_num = self.sq_num.wrapping_add(1);
            between(rng, HEARTBEAT_NS - 50 * US, HEARTBEAT_NS + 50 * US)
        };
        let publication = goose::Publication {
            appid: self.appid,
            gocb_ref: &self.gocb_ref,
            dat_set: &self.dat_set,
            go_id: &self.go_id,
            t_seconds: self.t_seconds,
            st_num: self.st_num,
            sq_num: self.sq_num,
            simulation: false,
            conf_rev: 1,
            values: &self.values,
        };
        let mut payload = Vec::with_capacity(160);
        let pdu = goose::publication(&mut payload, &publication);
        let host = &cx.plant.hosts[self.host];
        let [_, low] = self.appid.to_be_bytes();
        script.push_back(Planned {
            delay_ns: delay,
            spec: Some(FrameSpec {
                l2: L2 {
                    src: host.mac,
                    dst: [0x01, 0x0c, 0xcd, 0x01, 0x00, low],
                    vlan: host.vlan,
                },
                net: Net::EtherType {
                    ether_type: goose::ETHER_TYPE,
                    payload,
                },
            }),
            pdus: vec![pdu],
        });
    }
}

/// The MMS poll period.
const MMS_POLL_NS: u64 = 2 * SECOND;
/// Measurements a client reads, one per poll (IEC 61850 object references under the
/// logical device; the value is a float).
const MMS_ITEMS: [&str; 4] = [
    "MMXU1$MX$TotW$mag$f",
    "MMXU1$MX$Hz$mag$f",
    "MMXU1$MX$PhV$phsA$cVal$mag$f",
    "MMXU1$MX$A$phsA$cVal$mag$f",
];
/// The logical nodes a GetNameList of the logical device answers.
const MMS_NAMES: [&[u8]; 5] = [b"LLN0", b"LPHD1", b"MMXU1", b"PTOC1", b"XCBR1"];

/// An IEC 61850 client (a SCADA master) and one IED's MMS server.
pub struct MmsActor {
    client: usize,
    ied: usize,
    /// The IED's logical device ("IED1LD0") and report id.
    domain: String,
    report_id: String,
    conn: Option<TcpConn>,
    invoke_id: u32,
    polls_left: u32,
    started: bool,
}

impl MmsActor {
    /// `client` reads `ied`, the `index`-th IED of the substation (its names).
    pub fn new(client: usize, ied: usize, index: usize) -> MmsActor {
        let domain = format!("IED{}LD0", index + 1);
        let report_id = format!("{domain}/LLN0$RP$urcbMeas01");
        MmsActor {
            client,
            ied,
            domain,
            report_id,
            conn: None,
            invoke_id: 0,
            polls_left: 0,
            started: false,
        }
    }

    fn next_invoke_id(&mut self) -> u32 {
        self.invoke_id = self.invoke_id.wrapping_add(1);
        self.invoke_id
    }

    /// TCP and COTP connect, the association, and the Identify.
    fn open(&mut self, cx: &mut Cx<'_>, script: &mut Script) -> TcpConn {
        let delay = if self.started {
            between(cx.rng, SECOND, 20 * SECOND)
        } else {
            between(cx.rng, 0, MMS_POLL_NS)
        };
        self.started = true;
        let client_port = cx.plant.ephemeral_port(self.client);
        let rng = &mut *cx.rng;
        let mut conn = TcpConn::new(
            cx.plant,
            Peer::Host(self.client),
            Peer::Host(self.ied),
            false,
            client_port,
            102,
            (rng.random(), rng.random()),
            (64_240, 8192),
        );
        conn.handshake(script, delay, between(rng, 150 * US, 900 * US));
        cotp_connect(rng, &mut conn, script);
        let mut out = Vec::with_capacity(256);
        let request = mms::initiate_request(&mut out);
        conn.data(script, between(rng, 100 * US, MS), true, out, vec![request]);
        let mut out = Vec::with_capacity(256);
        let response = mms::initiate_response(&mut out);
        conn.data(
            script,
            between(rng, 2 * MS, 8 * MS),
            false,
            out,
            vec![response],
        );
        self.invoke_id = 0;
        let id = self.next_invoke_id();
        let mut out = Vec::with_capacity(32);
        let request = mms::identify_request(&mut out, id);
        conn.data(script, between(rng, 100 * US, MS), true, out, vec![request]);
        let (vendor, model, revision) = cx.plant.hosts[self.ied].identity;
        let mut out = Vec::with_capacity(80);
        let response = mms::identify_response(
            &mut out,
            id,
            vendor.as_bytes(),
            model.as_bytes(),
            revision.as_bytes(),
        );
        conn.data(script, between(rng, MS, 5 * MS), false, out, vec![response]);
        // Some associations are short-lived (a gateway reconnecting), most last minutes.
        self.polls_left = if rng.random_bool(0.3) {
            rng.random_range(5..20)
        } else {
            rng.random_range(20..400)
        };
        conn
    }

    /// One poll: a Read (one in ten a GetNameList) and its response; now and then the
    /// IED's report comes first.
    fn poll(&mut self, cx: &mut Cx<'_>, conn: &mut TcpConn, script: &mut Script) {
        let rng = &mut *cx.rng;
        let mut delay = between(
            rng,
            MMS_POLL_NS - MMS_POLL_NS / 10,
            MMS_POLL_NS + MMS_POLL_NS / 10,
        );
        if rng.random_bool(0.05) {
            let report_delay = between(rng, 0, delay);
            let mut out = Vec::with_capacity(96);
            let value = rng.random_range(49.9f32..50.1);
            let report = mms::information_report(&mut out, self.report_id.as_bytes(), value);
            conn.data(script, report_delay, false, out, vec![report]);
            conn.ack(script, between(rng, 100 * US, 40 * MS), true);
            delay = delay.saturating_sub(report_delay).max(MS);
        }
        let id = self.next_invoke_id();
        let domain = self.domain.as_bytes();
        if rng.random_bool(0.1) {
            let mut out = Vec::with_capacity(48);
            let request = mms::get_name_list_request(&mut out, id, domain);
            conn.data(script, delay, true, out, vec![request]);
            let mut out = Vec::with_capacity(80);
            let response = mms::get_name_list_response(&mut out, id, &MMS_NAMES);
            conn.data(script, between(rng, MS, 5 * MS), false, out, vec![response]);
        } else {
            let item = MMS_ITEMS[rng.random_range(0..MMS_ITEMS.len())];
            let mut out = Vec::with_capacity(80);
            let request = mms::read_request(&mut out, id, domain, item.as_bytes());
            conn.data(script, delay, true, out, vec![request]);
            let mut out = Vec::with_capacity(40);
            let response = mms::read_response(&mut out, id, rng.random_range(0.0f32..2000.0));
            conn.data(script, between(rng, MS, 5 * MS), false, out, vec![response]);
        }
    }

    /// The conclude, the release (FINISH/DISCONNECT with ACSE RLRQ/RLRE) and the TCP
    /// close.
    fn close(&mut self, cx: &mut Cx<'_>, mut conn: TcpConn, script: &mut Script) {
        let rng = &mut *cx.rng;
        let mut out = Vec::with_capacity(24);
        let request = mms::conclude_request(&mut out);
        let delay = between(rng, MMS_POLL_NS / 2, MMS_POLL_NS);
        conn.data(script, delay, true, out, vec![request]);
        let mut out = Vec::with_capacity(24);
        let response = mms::conclude_response(&mut out);
        conn.data(script, between(rng, MS, 3 * MS), false, out, vec![response]);
        let mut out = Vec::with_capacity(24);
        mms::release_request(&mut out);
        conn.data(script, between(rng, 100 * US, MS), true, out, Vec::new());
        let mut out = Vec::with_capacity(24);
        mms::release_response(&mut out);
        conn.data(script, between(rng, MS, 3 * MS), false, out, Vec::new());
        conn.close(
            script,
            between(rng, 100 * US, MS),
            between(rng, 150 * US, 900 * US),
            true,
        );
    }
}

impl Actor for MmsActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        match self.conn.take() {
            None => self.conn = Some(self.open(cx, script)),
            Some(mut conn) if self.polls_left > 0 => {
                self.polls_left -= 1;
                self.poll(cx, &mut conn, script);
                self.conn = Some(conn);
            }
            Some(conn) => self.close(cx, conn, script),
        }
    }
}
