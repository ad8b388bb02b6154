//! PROFINET IO in the production cells: some S7 PLCs are IO controllers of an ET 200SP
//! remote IO station. Controller and device exchange RT class 1 cyclic frames (a slow
//! 256 ms reduction ratio, so that they do not swamp the mix), and the engineering
//! workstation's TIA Portal browses with DCP Identify All every few minutes, which
//! every IO device answers.

use rand::Rng;

use super::proto::profinet;
use super::script::{Planned, Script};
use super::wire::{FrameSpec, Mac, Net, L2};
use super::{between, Actor, Cx, MS, SECOND, US};

/// Send clock 1 ms times reduction ratio 256.
const CYCLE_NS: u64 = 256 * MS;
/// The cycle counter counts 31.25 µs units: 8192 per 256 ms cycle.
const CYCLE_COUNTER_STEP: u16 = 8192;

fn rt_frame(src: Mac, dst: Mac, vlan: u16, payload: Vec<u8>) -> FrameSpec {
    FrameSpec {
        l2: L2 { src, dst, vlan },
        net: Net::EtherType {
            ether_type: profinet::ETHER_TYPE,
            payload,
        },
    }
}

/// One direction of an IO application relation's cyclic data.
pub struct CyclicActor {
    from: usize,
    to: usize,
    frame_id: u16,
    counter: u16,
    data: [u8; 40],
    started: bool,
}

impl CyclicActor {
    pub fn new(from: usize, to: usize, frame_id: u16) -> CyclicActor {
        CyclicActor {
            from,
            to,
            frame_id,
            counter: 0,
            data: [0; 40],
            started: false,
        }
    }
}

impl Actor for CyclicActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            CYCLE_NS
        } else {
            self.started = true;
            self.counter = cx.rng.random();
            between(cx.rng, 0, CYCLE_NS)
        };
        self.counter = self.counter.wrapping_add(CYCLE_COUNTER_STEP);
        // A few inputs or outputs change now and then.
        let byte = cx.rng.random_range(0..self.data.len());
        if cx.rng.random_bool(0.1) {
            self.data[byte] ^= 1 << cx.rng.random_range(0..8);
        }
        let (from, to) = (&cx.plant.hosts[self.from], &cx.plant.hosts[self.to]);
        let mut payload = Vec::with_capacity(46);
        let pdu = profinet::cyclic(&mut payload, self.frame_id, self.counter, &self.data);
        script.push_back(Planned {
            delay_ns: delay,
            spec: Some(rt_frame(from.mac, to.mac, from.vlan, payload)),
            pdus: vec![pdu],
        });
    }
}

/// The station name an IO device answers DCP with.
pub fn name_of_station(device: usize) -> String {
    format!("et200sp-{device:03}")
}

/// An engineering workstation's DCP Identify All, answered by every IO device of the
/// plant (the workstation reaches the cells' layer 2 through the switch fabric).
pub struct DcpActor {
    workstation: usize,
    devices: Vec<usize>,
    started: bool,
}

impl DcpActor {
    pub fn new(workstation: usize, devices: Vec<usize>) -> DcpActor {
        DcpActor {
            workstation,
            devices,
            started: false,
        }
    }
}

impl Actor for DcpActor {
    fn plan(&mut self, cx: &mut Cx<'_>, script: &mut Script) {
        let delay = if self.started {
            between(cx.rng, 240 * SECOND, 480 * SECOND)
        } else {
            between(cx.rng, SECOND, 20 * SECOND)
        };
        self.started = true;
        let xid: u32 = cx.rng.random();
        let plant = &*cx.plant;
        let workstation = &plant.hosts[self.workstation];
        let mut payload = Vec::with_capacity(16);
        let pdu = profinet::dcp_identify_all(&mut payload, xid);
        let request = rt_frame(
            workstation.mac,
            profinet::DCP_IDENTIFY_MAC,
            workstation.vlan,
            payload,
        );
        script.push_back(Planned {
            delay_ns: delay,
            spec: Some(request),
            pdus: vec![pdu],
        });
        for &device in &self.devices {
            let host = &plant.hosts[device];
            let name = name_of_station(device);
            let station = profinet::Station {
                name_of_station: &name,
                type_of_station: "ET 200SP",
                vendor_id: 0x002a,
                device_id: 0x0313,
                ip: host.ipv4.octets(),
                mask: [255, 255, 255, 0],
            };
            let mut payload = Vec::with_capacity(96);
            let pdu = profinet::dcp_identify_response(&mut payload, xid, &station);
            script.push_back(Planned {
                delay_ns: between(cx.rng, 100 * US, 10 * MS),
                spec: Some(rt_frame(host.mac, workstation.mac, host.vlan, payload)),
                pdus: vec![pdu],
            });
        }
    }
}
