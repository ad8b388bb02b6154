//! S7comm-plus: `Pdu::new_checked` and every accessor on arbitrary bytes (a COTP DT
//! payload), and on the DT payload of a TPKT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::s7comm::{Cotp, Tpkt};
use otsensor_wire::s7commplus::Pdu;

fn pdu(bytes: &[u8]) {
    if let Ok(pdu) = Pdu::new_checked(bytes) {
        assert!(pdu.data().len() <= bytes.len());
        let _ = (pdu.pdu_type().name(), pdu.data_length(), pdu.digest());
        let _ = (pdu.opcode(), pdu.function().and_then(|f| f.name()));
        let _ = (pdu.sequence_number(), pdu.session_id(), pdu.body());
        let _ = (pdu.has_trailer(), pdu.trailing_bytes());
        let _ = (pdu.cpu_state_request(), pdu.order_number_and_firmware());
        let _ = pdu.anomalies().labels().count();
    }
}

fuzz_target!(|data: &[u8]| {
    pdu(data);
    if let Ok(tpkt) = Tpkt::new_checked(data) {
        if let Ok(cotp) = Cotp::new_checked(tpkt.payload()) {
            pdu(cotp.payload());
        }
    }
});
