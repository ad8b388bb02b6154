//! MMS (ISO 9506) over ISO-on-TCP for scenarios: a confirmed request in the session
//! data transfer of an association (ISO 8327-1 Give-Tokens + Data-Transfer SPDUs,
//! ISO 8823 fully-encoded data with presentation context 3), as IEC 61850 clients send
//! it. Connection set-up reuses the COTP CR/CC of [`super::s7comm`].

/// One BER element with a short-form length (every element here is under 128 bytes).
fn tlv(tag: &[u8], contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 1 + contents.len());
    out.extend_from_slice(tag);
    out.push(contents.len() as u8);
    out.extend_from_slice(contents);
    out
}

/// A COTP DT (last data unit) in a TPKT carrying session GT+DT and one presentation
/// data value holding `mms`.
fn session_data(out: &mut Vec<u8>, mms: &[u8]) {
    let mut pdv = vec![0x02, 0x01, 0x03];
    pdv.extend_from_slice(&tlv(&[0xa0], mms));
    let ppdu = tlv(&[0x61], &tlv(&[0x30], &pdv));
    let mut body = vec![0x02, 0xf0, 0x80, 0x01, 0x00, 0x01, 0x00];
    body.extend_from_slice(&ppdu);
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    out.extend_from_slice(&body);
}

/// A confirmed-RequestPDU (invokeID, then the service `[service]`) in session data.
fn confirmed_request(out: &mut Vec<u8>, invoke_id: u8, service: &[u8]) {
    let mut contents = vec![0x02, 0x01, invoke_id];
    contents.extend_from_slice(service);
    session_data(out, &tlv(&[0xa0], &contents));
}

/// Stop (confirmed service 41, `[41]` with a two-octet tag `bf 29`) of the program
/// invocation `name` (programInvocationName `[0] IMPLICIT Identifier`).
pub fn program_stop(out: &mut Vec<u8>, invoke_id: u8, name: &[u8]) {
    confirmed_request(out, invoke_id, &tlv(&[0xbf, 0x29], &tlv(&[0x80], name)));
}

/// The Stop response (`[41]` NULL contents) to `invoke_id`.
pub fn program_stop_response(out: &mut Vec<u8>, invoke_id: u8) {
    let mut contents = vec![0x02, 0x01, invoke_id];
    contents.extend_from_slice(&[0xbf, 0x29, 0x00]);
    session_data(out, &tlv(&[0xa1], &contents));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_stop_is_mms_service_41_in_session_data() {
        let mut out = Vec::new();
        program_stop(&mut out, 7, b"LLN0");
        // TPKT, COTP DT, session GT+DT, fully-encoded data (context 3),
        // confirmed-RequestPDU invokeID 7, stop [41] { [0] "LLN0" }.
        let want = "03000022 02f080 01000100 6115 3013 020103 a00e a00c 020107 bf2906 80044c4c4e30";
        let want: Vec<u8> = (0..want.replace(' ', "").len() / 2)
            .map(|i| {
                let clean = want.replace(' ', "");
                u8::from_str_radix(&clean[2 * i..2 * i + 2], 16).unwrap_or(0)
            })
            .collect();
        assert_eq!(out, want);
    }
}
