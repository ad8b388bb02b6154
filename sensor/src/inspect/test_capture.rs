//! Test support for the inspection tests: hex fixtures, and (from `otsensor-wire`'s
//! `test-support` feature, the one copy) the PDUs of a capture's TCP streams framed by
//! a view's framer.

pub use otsensor_wire::test_capture::framed_pdus;

/// Bytes from a hex fixture (whitespace and other non-hex characters ignored).
pub fn hex(text: &str) -> Vec<u8> {
    let clean: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    clean
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("hex fixture");
            u8::from_str_radix(pair, 16).expect("hex fixture")
        })
        .collect()
}
