//! Bounds-checked integer readers shared by the views: the one place that turns a
//! byte offset into a number. Each answers `None` when the field does not fit in the
//! buffer, so a view's accessor decides what a missing field means.

/// A big-endian `u16` at `at` (Modbus, BACnet, S7comm).
pub fn be16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at.checked_add(2)?) {
        Some(&[a, b]) => Some(u16::from_be_bytes([a, b])),
        _ => None,
    }
}

/// A little-endian `u16` at `at` (DNP3, EtherNet/IP, CIP).
pub fn le16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at.checked_add(2)?) {
        Some(&[a, b]) => Some(u16::from_le_bytes([a, b])),
        _ => None,
    }
}

/// A little-endian `u32` at `at` (EtherNet/IP, CIP).
pub fn le32(buf: &[u8], at: usize) -> Option<u32> {
    match buf.get(at..at.checked_add(4)?) {
        Some(&[a, b, c, d]) => Some(u32::from_le_bytes([a, b, c, d])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_and_refuses_what_does_not_fit() {
        let buf = [0x12, 0x34, 0x56, 0x78, 0x9A];
        assert_eq!(be16(&buf, 0), Some(0x1234));
        assert_eq!(le16(&buf, 0), Some(0x3412));
        assert_eq!(le32(&buf, 1), Some(0x9A78_5634));
        assert_eq!(be16(&buf, 3), Some(0x789A));
        assert_eq!(be16(&buf, 4), None);
        assert_eq!(le16(&buf, 5), None);
        assert_eq!(le32(&buf, 2), None);
        // An offset near usize::MAX neither wraps nor panics.
        assert_eq!(be16(&buf, usize::MAX), None);
        assert_eq!(le32(&buf, usize::MAX - 1), None);
        assert_eq!(le16(&[], 0), None);
    }
}
