//! MQTT: stream framing, `Packet::new_checked` and every variable-header accessor (for
//! levels 3.1.1 and 5.0) on arbitrary bytes. Checks that framing makes progress inside
//! the buffer and that every frame it reports parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::mqtt::{self, Packet};
use otsensor_wire::Framing;

fn exercise(packet: &Packet<'_>) {
    let _ = (
        packet.packet_type().name(),
        packet.flags(),
        packet.remaining_length(),
    );
    let _ = (packet.qos(), packet.retain(), packet.dup(), packet.body());
    let _ = (
        packet.connect(),
        packet.connack(),
        packet.topic(),
        packet.packet_id(),
    );
    let _ = packet.anomalies().labels().count();
    for level in [4, mqtt::LEVEL_5] {
        for (filter, options) in packet.subscriptions(level).take(64) {
            let _ = (filter, options);
        }
        let _ = packet.suback_codes(level);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = mqtt::looks_like(data);
    if let Ok(packet) = Packet::new_checked(data) {
        exercise(&packet);
    }
    let mut rest = data;
    while !rest.is_empty() {
        match mqtt::frame(rest) {
            Framing::Frame(len) => {
                assert!(len > 0 && len <= rest.len(), "frame outside the buffer");
                let packet = Packet::new_checked(&rest[..len]).expect("a framed packet parses");
                assert_eq!(packet.as_bytes().len(), len);
                exercise(&packet);
                rest = &rest[len..];
            }
            Framing::Resync(skip) => {
                assert!(skip > 0 && skip <= rest.len(), "resync without progress");
                rest = &rest[skip..];
            }
            Framing::Need(need) => {
                assert!(need > rest.len(), "asks for bytes it has");
                break;
            }
        }
    }
});
