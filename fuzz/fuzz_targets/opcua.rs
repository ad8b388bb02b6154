//! OPC UA binary: stream framing, `Message::new_checked`, the secure conversation
//! headers, the service body (type id, request/response headers, OpenSecureChannel
//! security mode, GetEndpoints applications) and the bounded reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::opcua::{self, Message, Reader};
use otsensor_wire::Framing;

fn exercise(message: &Message<'_>) {
    let _ = (
        message.message_type().name(),
        message.chunk_type(),
        message.size(),
    );
    let _ = (message.hello(), message.error(), message.body());
    if let Some(secure) = message.secure() {
        let _ = (secure.policy_is_none(), secure.token_id, secure.request_id);
        if let Some(body) = secure.service() {
            let _ = (body.numeric_id(), body.service(), body.rest());
            let _ = (body.request_header(), body.response_header());
            let _ = body.open_security_mode().map(|m| m.name());
            for app in body.applications().take(64) {
                let _ = (app.application_name, app.product_uri, app.security_mode);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = opcua::looks_like(data);
    let mut reader = Reader::new(data);
    let _ = reader.skip_diagnostic_info();
    let _ = reader.skip_extension_object();
    let _ = reader.localized_text();
    if let Ok(message) = Message::new_checked(data) {
        exercise(&message);
    }
    let mut rest = data;
    while !rest.is_empty() {
        match opcua::frame(rest) {
            Framing::Frame(len) => {
                assert!(len > 0 && len <= rest.len(), "frame outside the buffer");
                let message = Message::new_checked(&rest[..len]).expect("a framed message parses");
                assert_eq!(message.as_bytes().len(), len);
                exercise(&message);
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
