//! `cargo xtask gen-vendors`: the CIP (ODVA) and BACnet (ASHRAE) vendor id tables
//! `wire/src/vendors/table.rs` from tshark's value strings (`tshark -G
//! values`, rows of the fields `enip.lir.vendor` and `bacapp.vendor_identifier`).
//! Output is a Rust data file: two sorted `(id, name)` slices, binary-searched at run
//! time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The tshark field whose value strings name ODVA vendor ids.
pub const CIP_FIELD: &str = "enip.lir.vendor";
/// The tshark field whose value strings name ASHRAE BACnet vendor ids.
pub const BACNET_FIELD: &str = "bacapp.vendor_identifier";

/// Value strings of one field: `V<TAB>field<TAB>value<TAB>name` rows of `tshark -G
/// values` (the `E` row before them only names the table). Later duplicates of a
/// value are ignored, as tshark's lookup finds the first.
pub fn value_strings(values: &str, field: &str) -> BTreeMap<u16, String> {
    let mut table = BTreeMap::new();
    for line in values.lines() {
        let mut columns = line.splitn(4, '\t');
        let (Some("V"), Some(name_of_field), Some(value), Some(name)) = (
            columns.next(),
            columns.next(),
            columns.next(),
            columns.next(),
        ) else {
            continue;
        };
        if name_of_field != field {
            continue;
        }
        let Ok(value) = value.trim().parse::<u16>() else {
            continue;
        };
        let name = name.trim();
        if !name.is_empty() {
            table.entry(value).or_insert_with(|| name.to_owned());
        }
    }
    table
}

/// `name` as a Rust string literal's contents: quotes, backslashes and control
/// characters escaped, other characters (accented names) kept as they are.
fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the system clock (civil-from-days, H.
/// Hinnant's algorithm), so the generator needs no date crate.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn write_table(body: &mut String, name: &str, doc: &str, table: &BTreeMap<u16, String>) {
    let _ = writeln!(body, "/// {doc}");
    let _ = writeln!(body, "#[rustfmt::skip]");
    let _ = writeln!(body, "pub const {name}: &[(u16, &str)] = &[");
    for (id, vendor) in table {
        let _ = writeln!(body, "    ({id}, \"{}\"),", escaped(vendor));
    }
    let _ = writeln!(body, "];");
}

/// Renders the data file from `tshark -G values` output; `tshark_version` and `date`
/// go in its header.
pub fn render(values: &str, tshark_version: &str, date: &str) -> Result<(String, usize, usize)> {
    let cip = value_strings(values, CIP_FIELD);
    let bacnet = value_strings(values, BACNET_FIELD);
    if cip.is_empty() || bacnet.is_empty() {
        bail!("no value strings for {CIP_FIELD} or {BACNET_FIELD}: is this `tshark -G values`?");
    }
    let mut body = String::new();
    let _ = writeln!(
        body,
        "//! Vendor id tables: ODVA CIP vendor ids (tshark field `{CIP_FIELD}`) and ASHRAE\n\
         //! BACnet vendor ids (`{BACNET_FIELD}`), from the value strings of {tshark_version}\n\
         //! (`tshark -G values`), generated {date} by `cargo xtask gen-vendors`; do not edit.\n\
         //! Sorted by id."
    );
    let _ = writeln!(body);
    write_table(
        &mut body,
        "CIP_VENDORS",
        "ODVA vendor id (CIP Identity object attribute 1) to vendor name.",
        &cip,
    );
    let _ = writeln!(body);
    write_table(
        &mut body,
        "BACNET_VENDORS",
        "ASHRAE BACnet vendor identifier to vendor name.",
        &bacnet,
    );
    Ok((body, cip.len(), bacnet.len()))
}

/// Reads tshark's value strings (`values`, or runs `tshark -G values` when `None`) and
/// writes the data file to `out`; the number of CIP and BACnet entries.
pub fn generate(values: Option<&Path>, out: &Path) -> Result<(usize, usize)> {
    let text = match values {
        Some(path) => std::fs::read_to_string(path).with_context(|| path.display().to_string())?,
        None => {
            let output = std::process::Command::new("tshark")
                .args(["-G", "values"])
                .output()
                .context("running `tshark -G values` (install the tshark package)")?;
            String::from_utf8(output.stdout).context("tshark output is not UTF-8")?
        }
    };
    let version = std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(str::to_owned))
        .and_then(|line| {
            // "TShark (Wireshark) 4.0.17 (Git ...)": keep "tshark 4.0.17".
            line.split_whitespace()
                .nth(2)
                .map(|number| format!("tshark {number}"))
        })
        .unwrap_or_else(|| "tshark (unknown version)".to_owned());
    let (body, cip, bacnet) = render(&text, &version, &today())?;
    std::fs::write(out, body).with_context(|| out.display().to_string())?;
    Ok((cip, bacnet))
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = "E\tenip.lir.vendor\t3\tcip_vendor_vals\t[Binary Search]\n\
        V\tenip.lir.vendor\t0\tReserved\n\
        V\tenip.lir.vendor\t1\tRockwell Automation/Allen-Bradley\n\
        V\tenip.lir.vendor\t1\tDuplicate\n\
        V\tother.field\t2\tNot a vendor\n\
        V\tbacapp.vendor_identifier\t5\tJohnson Controls, Inc.\n\
        V\tbacapp.vendor_identifier\t7\tSay \"hi\"\\\n\
        V\tbacapp.vendor_identifier\t8\tGeb\u{e4}ude\n";

    #[test]
    fn keeps_only_the_named_fields_first_names() {
        let cip = value_strings(SAMPLE, CIP_FIELD);
        assert_eq!(cip.len(), 2);
        assert_eq!(
            cip.get(&1).map(String::as_str),
            Some("Rockwell Automation/Allen-Bradley")
        );
        let bacnet = value_strings(SAMPLE, BACNET_FIELD);
        assert_eq!(bacnet.keys().copied().collect::<Vec<_>>(), [5, 7, 8]);
    }

    #[test]
    fn renders_escaped_rust_with_a_source_header() {
        let (body, cip, bacnet) = render(SAMPLE, "tshark 4.0.17", "2026-11-29").unwrap();
        assert_eq!((cip, bacnet), (2, 3));
        assert!(body.contains("tshark 4.0.17"));
        assert!(body.contains("generated 2026-11-29"));
        assert!(body.contains("    (5, \"Johnson Controls, Inc.\"),"));
        assert!(body.contains(r#"    (7, "Say \"hi\"\\"),"#));
        assert!(body.contains("    (8, \"Geb\u{e4}ude\"),"));
        assert!(render("nothing", "tshark", "today").is_err());
    }

    #[test]
    fn today_is_a_date() {
        let date = today();
        assert_eq!(date.len(), 10);
        assert!(date.starts_with("20"));
    }
}
