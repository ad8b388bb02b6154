//! MMS over ISO-on-TCP: the TPKT/COTP framing, the session/presentation/ACSE walk to
//! the MMS PDU (`mms_in_dt`), `Pdu::new_checked` and every accessor, on arbitrary
//! bytes (a TCP payload on port 102).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::mms::{self, Dt, Pdu};
use otsensor_wire::s7comm::{Cotp, Tpkt};

fn pdu(bytes: &[u8]) {
    if let Ok(pdu) = Pdu::new_checked(bytes) {
        assert!(pdu.contents().len() <= bytes.len());
        let _ = (pdu.pdu_type().name(), pdu.invoke_id(), pdu.trailing_bytes());
        if let Some(service) = pdu.confirmed_service() {
            let _ = (service.name(), service.response_name(), service.kind());
        }
        let _ = (
            pdu.service_body(),
            pdu.unconfirmed_service(),
            pdu.identify(),
        );
        let _ = (pdu.reject_reason(), pdu.error_class());
        let _ = pdu.anomalies().labels().count();
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = mms::looks_like(data);
    // The bytes as a COTP DT payload, and as a TPKT carrying one.
    if let Some(Dt::Mms(bytes, _, _)) = mms::mms_in_dt(data) {
        pdu(bytes);
    }
    pdu(data);
    if let Ok(tpkt) = Tpkt::new_checked(data) {
        if let Ok(cotp) = Cotp::new_checked(tpkt.payload()) {
            if let Some(Dt::Mms(bytes, _, _)) = mms::mms_in_dt(cotp.payload()) {
                pdu(bytes);
            }
        }
    }
});
