//! Vendor ids some protocols carry, named: ODVA vendor ids of CIP (EtherNet/IP
//! ListIdentity, Identity object) and ASHRAE vendor identifiers of BACnet (I-Am,
//! the device's vendor-identifier property). The tables are data generated from
//! tshark's value strings (`table.rs`, `cargo xtask gen-vendors`); lookups are binary
//! searches over static slices and allocate nothing.

use std::fmt::Write as _;

mod table;

fn lookup(table: &'static [(u16, &'static str)], id: u32) -> Option<&'static str> {
    let id = u16::try_from(id).ok()?;
    table
        .binary_search_by_key(&id, |&(key, _)| key)
        .ok()
        .and_then(|index| table.get(index))
        .map(|&(_, name)| name)
}

/// The name ODVA registered for a CIP vendor id; `None` when the table has none.
pub fn cip_vendor(id: u16) -> Option<&'static str> {
    lookup(table::CIP_VENDORS, u32::from(id))
}

/// The name ASHRAE registered for a BACnet vendor identifier; `None` when the table
/// has none.
pub fn bacnet_vendor(id: u32) -> Option<&'static str> {
    lookup(table::BACNET_VENDORS, id)
}

/// Identity text of a vendor: the name beside the raw id (`"Name (id)"`), or the raw
/// id alone when unknown. The name is cut so that the id always fits.
pub type VendorText = arrayvec::ArrayString<64>;

/// Formats a vendor's identity text without allocating (see [`VendorText`]).
pub fn vendor_text(name: Option<&str>, id: u32) -> VendorText {
    let mut out = VendorText::new();
    let Some(name) = name else {
        let _ = write!(out, "{id}");
        return out;
    };
    // " (4294967295)" is at most 13 bytes.
    let mut suffix = arrayvec::ArrayString::<16>::new();
    let _ = write!(suffix, " ({id})");
    let room = out.capacity() - suffix.len();
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let _ = out.try_push_str(name.get(..cut).unwrap_or("").trim_end());
    let _ = out.try_push_str(&suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_map_to_their_names() {
        // tshark 4.0.17 value strings of enip.lir.vendor and bacapp.vendor_identifier.
        assert_eq!(cip_vendor(1), Some("Rockwell Automation/Allen-Bradley"));
        assert_eq!(cip_vendor(0), Some("Reserved"));
        assert_eq!(bacnet_vendor(5), Some("Johnson Controls, Inc."));
        assert_eq!(bacnet_vendor(0), Some("ASHRAE"));
        assert_eq!(
            bacnet_vendor(7),
            Some("Siemens Schweiz AG (Formerly: Landis & Staefa Division Europe)")
        );
    }

    #[test]
    fn unknown_ids_keep_the_raw_number() {
        assert_eq!(cip_vendor(u16::MAX), None);
        assert_eq!(bacnet_vendor(70_000), None);
        assert_eq!(bacnet_vendor(u32::MAX), None);
        assert_eq!(vendor_text(bacnet_vendor(70_000), 70_000).as_str(), "70000");
        assert_eq!(
            vendor_text(cip_vendor(1), 1).as_str(),
            "Rockwell Automation/Allen-Bradley (1)"
        );
    }

    #[test]
    fn tables_are_sorted_and_large() {
        for table in [table::CIP_VENDORS, table::BACNET_VENDORS] {
            assert!(table.len() > 1000);
            assert!(table.windows(2).all(|pair| pair[0].0 < pair[1].0));
        }
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_and_keep_the_id() {
        let long = "é".repeat(40);
        let text = vendor_text(Some(&long), 4_294_967_295);
        assert!(text.ends_with(" (4294967295)"));
        assert!(text.len() <= 64);
    }
}
