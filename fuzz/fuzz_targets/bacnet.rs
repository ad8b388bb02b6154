//! Feeds arbitrary datagrams to the BACnet/IP views and calls every accessor: none
//! may panic once `new_checked` succeeded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::bacnet::{self, Apdu, Bvlc, Npdu, Tags};

fn apdu(apdu: &Apdu<'_>) {
    let _ = (
        apdu.apdu_type(),
        apdu.segmented(),
        apdu.more_follows(),
        apdu.segmented_response_accepted(),
        apdu.max_apdu_code(),
        apdu.invoke_id(),
        apdu.sequence_number(),
        apdu.window_size(),
        apdu.negative_ack(),
        apdu.sent_by_server(),
        apdu.confirmed_service().map(bacnet::confirmed_service_name),
        apdu.unconfirmed_service()
            .map(bacnet::unconfirmed_service_name),
        apdu.service_data(),
        apdu.reject_reason(),
        apdu.abort_reason(),
        apdu.error(),
        apdu.kind(),
        apdu.i_am(),
        apdu.device_communication_control(),
        apdu.reinitialize_device(),
    );
    if let Some(mut results) = apdu.property_results() {
        for result in results.by_ref() {
            let _ = result
                .value()
                .map(|tag| (tag.character_string(), tag.unsigned()));
        }
        let _ = results.malformed();
    }
    for string in apdu.identity_strings() {
        let _ = string.text.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = bacnet::looks_like(data);
    // The tag reader on raw bytes, including constructed values.
    let mut tags = Tags::new(data);
    while let Some(tag) = tags.next() {
        let _ = (tag.unsigned(), tag.object_id(), tag.character_string());
        if tag.body == bacnet::TagBody::Opening {
            let _ = tags.constructed(tag.number);
        }
    }
    if let Ok(bvlc) = Bvlc::new_checked(data) {
        let _ = (
            bvlc.bvlc_type(),
            bvlc.function(),
            bvlc.length(),
            bvlc.length_mismatch(),
            bvlc.forwarded_address(),
            bvlc.result_code(),
        );
        if let Some(Ok(npdu)) = bvlc.npdu().map(Npdu::new_checked) {
            let _ = (
                npdu.version(),
                npdu.control(),
                npdu.is_network_message(),
                npdu.expecting_reply(),
                npdu.priority(),
                npdu.destination(),
                npdu.source(),
                npdu.source_invalid(),
                npdu.hop_count(),
                npdu.network_message_type(),
                npdu.vendor_id(),
                npdu.payload(),
            );
            if let Some(Ok(parsed)) = npdu.apdu() {
                apdu(&parsed);
            }
        }
    }
    // The APDU alone, as BACnet over LLC or MS/TP would deliver it.
    if let Ok(parsed) = Apdu::new_checked(data) {
        apdu(&parsed);
    }
});
