//! Modbus/TCP: stream framing, `Adu::new_checked` and every accessor on arbitrary
//! bytes. Checks that framing makes progress inside the buffer, that a frame that
//! starts a valid MBAP header parses as exactly that frame, and that anything else is
//! handed on as a chunk the ADU parser rejects (counted as non-Modbus by the inspector).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::modbus::{self, Adu};
use otsensor_wire::{Direction, Framing};

fn exercise(adu: &Adu<'_>) {
    let _ = (
        adu.transaction_id(),
        adu.protocol_id(),
        adu.length(),
        adu.unit_id(),
    );
    let _ = (
        adu.raw_function_code(),
        adu.function_code().name(),
        adu.is_exception(),
    );
    let _ = (adu.exception_code(), adu.pdu(), adu.data(), adu.as_bytes());
    let _ = (
        adu.diagnostic_code(),
        adu.mei_type(),
        adu.write_value(),
        adu.kind().name(),
    );
    for direction in [Direction::Request, Direction::Response] {
        let _ = adu.read_access(direction);
        let _ = adu.write_access(direction);
        let _ = adu.byte_count(direction);
        let _ = adu.values(direction);
        let _ = adu.device_id_request(direction);
        let _ = adu.anomalies(direction).labels().count();
        if let Some(id) = adu.device_identification(direction) {
            let _ = (
                id.read_device_id_code(),
                id.conformity_level(),
                id.more_follows(),
            );
            let _ = (id.next_object_id(), id.number_of_objects());
            let mut objects = id.objects();
            for object in objects.by_ref() {
                let _ = (object.name(), object.value);
            }
            let _ = objects.truncated();
        }
    }
    if let Some(umas) = adu.umas() {
        let _ = (umas.session(), umas.function_code().name(), umas.data());
        let _ = umas.effective_function().kind();
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = modbus::looks_like(data);
    if let Ok(adu) = Adu::new_checked(data) {
        exercise(&adu);
    }
    let mut rest = data;
    while !rest.is_empty() {
        match modbus::frame(rest) {
            Framing::Frame(len) => {
                assert!(len > 0 && len <= rest.len(), "frame outside the buffer");
                if let Ok(adu) = Adu::new_checked(&rest[..len]) {
                    assert_eq!(adu.as_bytes().len(), len, "a frame holds exactly one ADU");
                    exercise(&adu);
                }
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
