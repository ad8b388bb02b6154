//! MAC address vendors from the IEEE registries: MA-L (24-bit OUI), MA-M (28-bit) and
//! MA-S and IAB (36-bit) blocks. The table is data (`sensor/data/oui.tsv`, regenerated
//! by `cargo xtask gen-oui`), embedded in the binary and searched in place: its lines
//! are sorted by prefix (byte order, asserted by a test), so a lookup is a binary
//! search over the text and nothing is parsed or indexed at start (an index of its
//! 46k lines cost the analyzer milliseconds of CPU on its first new device).
//! The longest registered prefix wins: a small vendor's MA-S block inside an OUI
//! registered to the "IEEE Registration Authority" names that vendor.

use otsensor_wire::layers::Mac;

const TABLE: &str = include_str!("../data/oui.tsv");

/// Prefix lengths in the table, longest first, in hex digits.
const LENGTHS: [usize; 3] = [9, 7, 6];

/// The registered owner of `mac`'s longest registered prefix; `None` for unknown and
/// locally administered addresses.
pub fn vendor(mac: &Mac) -> Option<&'static str> {
    if mac[0] & 0x02 != 0 {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 12];
    for (i, byte) in mac.iter().enumerate() {
        digits[2 * i] = HEX[usize::from(byte >> 4)];
        digits[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
    }
    LENGTHS
        .iter()
        .find_map(|&len| digits.get(..len).and_then(find))
}

/// The vendor on the line whose prefix is exactly `prefix` (upper-case hex digits).
fn find(prefix: &[u8]) -> Option<&'static str> {
    let text = TABLE.as_bytes();
    // Comment lines lead the file ('#' sorts before every hex digit, but the search
    // starts after them anyway).
    let mut lo = 0;
    while text.get(lo) == Some(&b'#') {
        lo = line_end(text, lo) + 1;
    }
    // `lo` is always a line start, `hi` a line start or the end.
    let mut hi = text.len();
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = text
            .get(lo..mid)
            .and_then(|before| before.iter().rposition(|b| *b == b'\n'))
            .map_or(lo, |at| lo + at + 1);
        let end = line_end(text, start);
        let line = text.get(start..end)?;
        let tab = line.iter().position(|b| *b == b'\t')?;
        match line.get(..tab)?.cmp(prefix) {
            std::cmp::Ordering::Equal => return TABLE.get(start + tab + 1..end),
            std::cmp::Ordering::Less => lo = end + 1,
            std::cmp::Ordering::Greater => hi = start,
        }
    }
    None
}

/// The index of the newline ending the line that starts at `start` (or the text's end).
fn line_end(text: &[u8], start: usize) -> usize {
    text.get(start..)
        .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        .map_or(text.len(), |at| start + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_prefixes_resolve() {
        // 00:1B:1B is Siemens' (IEEE registry).
        assert!(vendor(&[0x00, 0x1b, 0x1b, 1, 2, 3]).is_some_and(|v| v.contains("Siemens")));
        assert_eq!(vendor(&[0x02, 0, 0, 0, 0, 1]), None);
        // Registered as "QUALICABLE TV Industria E Com.,": shown without the comma.
        assert_eq!(
            vendor(&[0x00, 0x04, 0xf8, 1, 2, 3]),
            Some("QUALICABLE TV Industria E Com.")
        );
    }

    #[test]
    fn the_longest_registered_prefix_wins() {
        // 00:50:C2 is the IEEE Registration Authority's OUI for IAB blocks; IAB
        // 0050C2000 is T.L.S. Corp. (iab.csv), 0050C27D5 DEUTA-WERKE GmbH.
        assert_eq!(
            vendor(&[0x00, 0x50, 0xc2, 0x00, 0x00, 0x30]),
            Some("T.L.S.")
        );
        assert_eq!(
            vendor(&[0x00, 0x50, 0xc2, 0x7d, 0x50, 0x01]),
            Some("DEUTA-WERKE")
        );
        // MA-M 208593B is IOG Products LLC (mam.csv); MA-S 70B3D5719 2M Technology
        // (oui36.csv).
        assert_eq!(
            vendor(&[0x20, 0x85, 0x93, 0xb0, 0, 1]),
            Some("IOG Products")
        );
        assert_eq!(
            vendor(&[0x70, 0xb3, 0xd5, 0x71, 0x90, 1]),
            Some("2M Technology")
        );
        // 0050C2044 is in no IAB block: the MA-L owner stays.
        assert_eq!(
            vendor(&[0x00, 0x50, 0xc2, 0x04, 0x40, 0x01]),
            Some("IEEE Registration Authority")
        );
    }

    /// The table's lines: (prefix, vendor).
    fn lines() -> impl Iterator<Item = (&'static str, &'static str)> {
        TABLE
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('\t'))
    }

    #[test]
    fn the_table_is_sorted_upper_case_hex_of_known_lengths() {
        // The binary search relies on it.
        let prefixes: Vec<&str> = lines().map(|(prefix, _)| prefix).collect();
        assert!(prefixes.len() > 40_000);
        assert!(prefixes.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(prefixes.iter().all(|prefix| LENGTHS.contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))));
        // Every line is found by its own prefix.
        for (prefix, name) in lines() {
            assert_eq!(find(prefix.as_bytes()), Some(name), "{prefix}");
        }
        assert_eq!(find(b"FFFFFFFFF"), None);
        assert_eq!(find(b"000000000"), None);
    }

    #[test]
    fn no_vendor_name_ends_in_stray_punctuation() {
        let stray: Vec<&str> = lines()
            .map(|(_, name)| name)
            .filter(|name| name.ends_with([',', ';', ':', '-', '/', '(', '&', ' ']))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
}
