//! The whole frame path: arbitrary bytes, cut into frames of any supported link type,
//! through one worker (slicing, flow table, TCP stream framing, every dissector's
//! inspection, observations). Nothing may panic, whatever the bytes and their order.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use otsensor::capture::{LinkType, Packet};
use otsensor::config::Config;
use otsensor::observe::{Delivery, ObservationSink};
use otsensor::worker::Worker;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
    LinkType::RawIp,
];

fuzz_target!(|data: &[u8]| {
    let mut config = Config::default();
    config.flows.max_flows = 256;
    let Ok(policy) = config.validate() else {
        return;
    };
    // A channel that never fills: the fuzzer must not block on the analyzer.
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut worker = Worker::new(
        0,
        Arc::new(policy),
        ObservationSink::new(tx, Delivery::DropWhenFull),
        None,
    );
    // Frames: [link selector][length][bytes...] repeated; time advances a little per frame.
    let mut rest = data;
    let mut ts_ns = 1_700_000_000_000_000_000u64;
    while let [selector, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(len);
        let packet = Packet {
            ts_ns,
            link: LINKS[usize::from(*selector) % LINKS.len()],
            data: frame,
            wire_len: frame.len() as u32,
        };
        worker.process(&packet);
        ts_ns += u64::from(*selector) * 1_000_000;
        rest = next;
    }
    drop(worker.finish());
    drop(rx);
});
