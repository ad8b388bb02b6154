//! The substation's IEC 61850 station bus: protection IEDs publishing GOOSE. Each IED
//! repeats its control block every second (sqNum + 1); now and then its state changes
//! (stNum + 1, sqNum back to 0, a new event time) and it retransmits fast, 2, 4, 8, 16
//! and 32 ms apart, before falling back to the heartbeat (IEC 61850-8-1 §18.1).

use rand::Rng;

use super::proto::goose;
use super::script::{Planned, Script};
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
