//! BER (X.690) encoding shared by the ASN.1 builders (GOOSE, MMS, SNMP): definite
//! lengths and minimal unsigned INTEGER contents.

/// Length octets: short form under 128, else long form in one or two octets (every
/// element built here is under 64 KiB).
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.push(0x82);
        out.extend_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
    }
}

/// One element with a single-octet tag.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// The contents of an unsigned INTEGER in the fewest octets (a leading zero keeps it
/// positive).
pub fn unsigned(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    let mut out = Vec::with_capacity(5);
    if bytes[first] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[first..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_take_the_fewest_octets() {
        for (len, want) in [
            (5usize, vec![5u8]),
            (200, vec![0x81, 200]),
            (300, vec![0x82, 0x01, 0x2c]),
        ] {
            let mut out = Vec::new();
            push_len(&mut out, len);
            assert_eq!(out, want, "{len}");
        }
        assert_eq!(unsigned(0), vec![0]);
        assert_eq!(unsigned(0x7f), vec![0x7f]);
        assert_eq!(unsigned(0x80), vec![0, 0x80]);
        assert_eq!(unsigned(2_000), vec![0x07, 0xd0]);
    }
}
