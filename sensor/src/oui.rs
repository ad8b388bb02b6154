//! MAC address vendors from the IEEE registries: MA-L (24-bit OUI), MA-M (28-bit) and
//! MA-S and IAB (36-bit) blocks. The table is data (`sensor/data/oui.tsv`, regenerated
//! by `cargo xtask gen-oui`), embedded in the binary and indexed once on first use.
//! The longest registered prefix wins: a small vendor's MA-S block inside an OUI
//! registered to the "IEEE Registration Authority" names that vendor.

use std::sync::OnceLock;

use otsensor_wire::layers::Mac;

const TABLE: &str = include_str!("../data/oui.tsv");

/// Prefix lengths in the table, longest first: (hex digits, bits dropped from a MAC).
const LENGTHS: [(usize, u32); 3] = [(9, 12), (7, 20), (6, 24)];

/// One sorted (prefix, vendor) index per prefix length, in the order of [`LENGTHS`].
fn index() -> &'static [Vec<(u64, &'static str)>; 3] {
    static INDEX: OnceLock<[Vec<(u64, &'static str)>; 3]> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut tables: [Vec<(u64, &'static str)>; 3] = Default::default();
        for line in TABLE.lines().filter(|line| !line.starts_with('#')) {
            let Some((prefix, name)) = line.split_once('\t') else {
                continue;
            };
            let Some(at) = LENGTHS
                .iter()
                .position(|(digits, _)| *digits == prefix.len())
            else {
                continue;
            };
            if let Ok(value) = u64::from_str_radix(prefix, 16) {
                tables[at].push((value, name));
            }
        }
        // The file is sorted; sorting again keeps lookups right if it is edited by hand.
        for table in &mut tables {
            table.sort_unstable_by_key(|(prefix, _)| *prefix);
        }
        tables
    })
}

/// The registered owner of `mac`'s longest registered prefix; `None` for unknown and
/// locally administered addresses.
pub fn vendor(mac: &Mac) -> Option<&'static str> {
    if mac[0] & 0x02 != 0 {
        return None;
    }
    let address = mac
        .iter()
        .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte));
    LENGTHS
        .iter()
        .zip(index())
        .find_map(|((_, shift), table)| {
            let prefix = address >> shift;
            table
                .binary_search_by_key(&prefix, |(p, _)| *p)
                .ok()
                .and_then(|i| table.get(i))
        })
        .map(|(_, name)| *name)
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

    #[test]
    fn no_vendor_name_ends_in_stray_punctuation() {
        let stray: Vec<&str> = index()
            .iter()
            .flatten()
            .map(|(_, name)| *name)
            .filter(|name| name.ends_with([',', ';', ':', '-', '/', '(', '&', ' ']))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
}
