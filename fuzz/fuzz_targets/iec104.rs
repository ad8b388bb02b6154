//! IEC 60870-5-104: stream framing, `Apdu::new_checked`, the ASDU view and its object
//! walk on arbitrary bytes. Checks that framing makes progress inside the buffer, that
//! every frame it reports parses, and that the object walk stays inside the ASDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::iec104::{self, Apdu};
use otsensor_wire::Framing;

fn exercise(apdu: &Apdu<'_>) {
    let _ = (apdu.length(), apdu.control(), apdu.format().name());
    let _ = (apdu.send_seq(), apdu.recv_seq(), apdu.u_bits());
    let _ = apdu.u_function().and_then(|f| f.name());
    let _ = apdu.anomalies().labels().count();
    let _ = apdu.asdu_bytes();
    if let Some(asdu) = apdu.asdu() {
        let _ = (asdu.type_id().name(), asdu.type_id().kind().name());
        let _ = (asdu.sequence(), asdu.num_objects(), asdu.cause().name());
        let _ = (asdu.negative(), asdu.test(), asdu.originator());
        let _ = (
            asdu.common_address(),
            asdu.first_address(),
            asdu.objects_len(),
        );
        let _ = iec104::sender_of(asdu.cause());
        let mut count = 0;
        for object in asdu.objects() {
            assert!(object.address <= 0x00FF_FFFF, "IOA wider than 3 octets");
            assert!(object.element.len() <= asdu.objects_bytes().len());
            count += 1;
        }
        assert!(count <= usize::from(asdu.num_objects()));
        // Types without a fixed element size (e.g. the 101-only CP24 time tags) are not
        // walked; a clean ASDU of any other type walks whole.
        if asdu.anomalies().is_empty() && asdu.objects_len().is_some() {
            assert_eq!(
                count,
                usize::from(asdu.num_objects()),
                "a clean ASDU walks whole"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = iec104::looks_like(data);
    if let Ok(apdu) = Apdu::new_checked(data) {
        exercise(&apdu);
    }
    let mut rest = data;
    while !rest.is_empty() {
        match iec104::frame(rest) {
            Framing::Frame(len) => {
                assert!(len > 0 && len <= rest.len(), "frame outside the buffer");
                let apdu = Apdu::new_checked(&rest[..len]).expect("a framed APDU parses");
                assert_eq!(apdu.as_bytes().len(), len);
                exercise(&apdu);
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
