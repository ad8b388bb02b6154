//! Feeds arbitrary bytes to the EtherNet/IP and CIP views and calls every accessor,
//! following embedded messages (MSP, Unconnected Send) one level down.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::{cip, enip};

fn request(request: &cip::Request<'_>, depth: u8) {
    let _ = (
        request.service(),
        request.path_size(),
        request.path(),
        request.data(),
        request.target(),
        request.kind(),
        cip::common_service_name(request.service()),
    );
    for segment in request.segments() {
        let _ = segment;
    }
    if depth > 0 {
        return;
    }
    if let Some(mut list) = request.multiple_service_packet() {
        let _ = list.service_count();
        for item in list.by_ref() {
            message(item, depth + 1);
        }
        let _ = list.malformed();
    }
    if let Some(send) = request.unconnected_send() {
        let _ = send.route_path;
        if let Ok(inner) = send.request() {
            self::request(&inner, depth + 1);
        }
    }
}

fn message(bytes: &[u8], depth: u8) {
    match cip::Message::new_checked(bytes) {
        Ok(cip::Message::Request(parsed)) => request(&parsed, depth),
        Ok(cip::Message::Response(response)) => {
            let _ = (
                response.service(),
                response.general_status(),
                response.additional_status_size(),
                response.additional_status().count(),
                response.data(),
            );
            if depth == 0 {
                if let Some(list) = response.multiple_service_packet() {
                    for item in list {
                        message(item, depth + 1);
                    }
                }
            }
        }
        Err(error) => {
            let _ = error.label();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = (
        enip::looks_like(data),
        enip::looks_like_io(data),
        enip::frame(data),
    );
    let _ = enip::IoPacket::parse(data);
    if let Ok(pdu) = enip::Encapsulation::new_checked(data) {
        let _ = (
            pdu.command().name(),
            pdu.length(),
            pdu.session_handle(),
            pdu.status(),
            pdu.sender_context(),
            pdu.options(),
            pdu.data(),
            pdu.interface_handle(),
            pdu.timeout(),
        );
        if let Some(items) = pdu.cpf() {
            for item in items {
                let _ = item.data.len();
            }
        }
        for identity in pdu.list_identity() {
            let _ = (
                identity.protocol_version(),
                identity.socket_port(),
                identity.socket_address(),
                identity.vendor_id(),
                identity.device_type(),
                identity.product_code(),
                identity.revision(),
                identity.status(),
                identity.serial_number(),
                identity.product_name(),
                identity.state(),
            );
        }
        if let Some(payload) = pdu.cip() {
            message(payload.message, 0);
        }
    }
    // A bare CIP message, as carried by other transports.
    message(data, 0);
});
