//! DNP3: stream framing, link frames with CRC checks, transport reassembly, and the
//! application layer (header, IIN, object headers, device attributes) on arbitrary
//! bytes. The application layer is also fed directly, since random bytes rarely pass
//! the link CRCs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsensor_wire::dnp3::{self, Fragment, LinkFrame, TransportReassembler};
use otsensor_wire::Framing;

fn exercise_fragment(bytes: &[u8]) {
    let Ok(fragment) = Fragment::new_checked(bytes) else {
        return;
    };
    let _ = (
        fragment.control(),
        fragment.fir(),
        fragment.fin(),
        fragment.con(),
    );
    let _ = (
        fragment.uns(),
        fragment.seq(),
        fragment.function_code().name(),
    );
    let _ = (
        fragment.is_response(),
        fragment.kind().name(),
        fragment.objects(),
    );
    if let Some(iin) = fragment.iin() {
        let _ = iin.names().count();
    }
    let mut headers = fragment.object_headers();
    for header in headers.by_ref() {
        let _ = (header.group, header.variation, header.range, header.objects);
        let _ = (
            header.qualifier.prefix_code(),
            header.qualifier.range_code(),
        );
        for attribute in header.device_attributes() {
            let _ = (attribute.name(), attribute.data_type, attribute.value);
        }
    }
    assert!(headers.end().is_some(), "a finished walk says why");
}

fuzz_target!(|data: &[u8]| {
    let _ = dnp3::looks_like(data);
    exercise_fragment(data);

    let mut reassembler = TransportReassembler::new();
    let mut user_data = [0u8; dnp3::MAX_USER_DATA];
    let mut rest = data;
    while !rest.is_empty() {
        match dnp3::frame(rest) {
            Framing::Frame(len) => {
                assert!(len >= dnp3::HEADER_LEN && len <= rest.len());
                let link = LinkFrame::new_checked(&rest[..len]).expect("a framed frame parses");
                let _ = (
                    link.length(),
                    link.control(),
                    link.dir(),
                    link.prm(),
                    link.fcb(),
                );
                let _ = (
                    link.fcv(),
                    link.dfc(),
                    link.link_function(),
                    link.destination(),
                );
                let _ = (
                    link.source(),
                    link.user_data_len(),
                    link.carries_user_data(),
                );
                if let Ok(n) = link.user_data_into(&mut user_data) {
                    assert_eq!(n, link.user_data_len());
                    if let Ok(Some(fragment)) = reassembler.push(&user_data[..n]) {
                        exercise_fragment(fragment);
                    }
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

    // Transport segments without link framing: each prefixed by its length octet.
    let mut reassembler = TransportReassembler::new();
    let mut rest = data;
    while let Some((&len, after)) = rest.split_first() {
        let len = usize::from(len).min(after.len());
        if let Ok(Some(fragment)) = reassembler.push(&after[..len]) {
            assert!(fragment.len() <= dnp3::MAX_FRAGMENT_LEN);
            exercise_fragment(fragment);
        }
        rest = &after[len..];
    }
});
