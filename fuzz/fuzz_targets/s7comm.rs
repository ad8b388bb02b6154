//! Feeds arbitrary bytes to the TPKT, COTP and S7comm views and calls every
//! accessor, including the SZL record walkers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::s7comm::{self, Cotp, S7comm, SzlResponse, Tpkt};

fn s7(pdu: &S7comm<'_>) {
    let _ = (
        pdu.protocol_id(),
        pdu.rosctr(),
        pdu.pdu_reference(),
        pdu.parameter_length(),
        pdu.data_length(),
        pdu.error_class(),
        pdu.error_code(),
        pdu.header_error(),
        pdu.parameter(),
        pdu.data(),
        pdu.trailing_bytes(),
        pdu.function().map(|f| f.name()),
        pdu.item_count(),
        pdu.pi_service(),
        pdu.kind(),
    );
    for item in pdu.var_items() {
        let _ = (
            item.syntax_id(),
            item.transport_size(),
            item.length(),
            item.db_number(),
            item.area(),
            item.byte_address(),
            item.bit_address(),
        );
    }
    if let Some(userdata) = pdu.userdata() {
        let _ = (
            userdata.method(),
            userdata.kind_code(),
            userdata.function_group(),
            userdata.subfunction(),
            userdata.sequence_number(),
            userdata.data_unit_reference(),
            userdata.last_data_unit(),
            userdata.is_continuation(),
            userdata.error_code(),
            userdata.return_code(),
            userdata.payload(),
            userdata.szl(),
        );
        if let Some(szl) = userdata.szl_response() {
            szl_records(&szl);
        }
    }
}

fn szl_records(szl: &SzlResponse<'_>) {
    let _ = (
        szl.szl_id(),
        szl.szl_index(),
        szl.record_length(),
        szl.record_count(),
    );
    let _ = szl.records().count();
    for module in szl.module_identification() {
        let _ = (
            module.firmware_version(),
            s7comm::trim_padding(module.order_number),
        );
    }
    for component in szl.component_identification() {
        let _ = component.text();
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = (
        s7comm::looks_like(data),
        s7comm::frame(data),
        s7comm::is_s7comm_plus(data),
    );
    if let Ok(tpkt) = Tpkt::new_checked(data) {
        let _ = (tpkt.version(), tpkt.length());
        if let Ok(cotp) = Cotp::new_checked(tpkt.payload()) {
            let _ = (
                cotp.length_indicator(),
                cotp.pdu_type().code(),
                cotp.tpdu_number(),
                cotp.eot(),
                cotp.dst_ref(),
                cotp.src_ref(),
                cotp.class(),
                cotp.src_tsap(),
                cotp.dst_tsap(),
                cotp.parameters().count(),
            );
            if let Ok(pdu) = S7comm::new_checked(cotp.payload()) {
                s7(&pdu);
            }
        }
    }
    // The S7 PDU and an SZL payload directly, so the fuzzer need not find a TPKT.
    if let Ok(pdu) = S7comm::new_checked(data) {
        s7(&pdu);
    }
    if let Ok(szl) = SzlResponse::new_checked(data) {
        szl_records(&szl);
    }
});
