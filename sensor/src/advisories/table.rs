//! The advisory table's text form: the embedded table (`sensor/data/advisories.tsv.gz`,
//! written by `cargo xtask gen-advisories`) and the rows imported into the store use
//! it alike. One advisory is a block of tab-separated lines:
//!
//! ```text
//! A  <id>  <initial release date>  <current release date>  <title>
//! V  <CVE>  <CVSS base score>                    one per vulnerability, in order
//! W  <vendor>                                    the vendor of the P lines below
//! P  <product>  <version range>  <vulnerabilities: indices, empty = all>
//! ```
//!
//! Lines starting with `#` are comments (the header names source and date).

use std::fmt::Write as _;

use super::{Advisory, Product, Vuln};

fn field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// Appends `advisory` as one block.
pub fn write(advisory: &Advisory, out: &mut String) {
    let _ = writeln!(
        out,
        "A\t{}\t{}\t{}\t{}",
        field(&advisory.id),
        field(&advisory.released),
        field(&advisory.revised),
        field(&advisory.title)
    );
    for vuln in &advisory.vulns {
        let _ = writeln!(
            out,
            "V\t{}\t{}.{}",
            field(&vuln.cve),
            vuln.cvss_tenths / 10,
            vuln.cvss_tenths % 10
        );
    }
    let mut vendor: Option<&str> = None;
    for product in &advisory.products {
        if vendor != Some(product.vendor.as_str()) {
            let _ = writeln!(out, "W\t{}", field(&product.vendor));
            vendor = Some(&product.vendor);
        }
        let vulns: Vec<String> = product.vulns.iter().map(u16::to_string).collect();
        let _ = writeln!(
            out,
            "P\t{}\t{}\t{}",
            field(&product.name),
            field(&product.range),
            vulns.join(",")
        );
    }
}

/// A line the reader did not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Error {
    pub line: usize,
    pub reason: &'static str,
}

fn cvss(text: &str) -> Option<u8> {
    let (whole, tenth) = text.split_once('.').unwrap_or((text, "0"));
    let whole: u8 = whole.parse().ok()?;
    let tenth: u8 = tenth.get(..1).unwrap_or("0").parse().ok()?;
    (whole <= 10 && tenth <= 9).then(|| whole * 10 + tenth)
}

/// Reads every block of `text`.
pub fn read(text: &str) -> Result<Vec<Advisory>, Error> {
    let mut out: Vec<Advisory> = Vec::new();
    let mut vendor = String::new();
    for (i, line) in text.lines().enumerate() {
        let error = |reason| Error {
            line: i + 1,
            reason,
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let kind = fields.next().unwrap_or("");
        let mut next = || fields.next().unwrap_or("").to_owned();
        if kind == "A" {
            let (id, released, revised, title) = (next(), next(), next(), next());
            if id.is_empty() {
                return Err(error("advisory without an id"));
            }
            vendor.clear();
            out.push(Advisory {
                id,
                title,
                released,
                revised,
                vulns: Vec::new(),
                products: Vec::new(),
            });
            continue;
        }
        let Some(advisory) = out.last_mut() else {
            return Err(error("line before the first advisory"));
        };
        match kind {
            "V" => {
                let cve = next();
                let cvss_tenths = cvss(&next()).ok_or_else(|| error("bad CVSS score"))?;
                advisory.vulns.push(Vuln { cve, cvss_tenths });
            }
            "W" => vendor = next(),
            "P" => {
                let (name, range, vulns) = (next(), next(), next());
                let vulns = if vulns.is_empty() {
                    Vec::new()
                } else {
                    vulns
                        .split(',')
                        .map(|n| n.parse::<u16>().ok())
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| error("bad vulnerability index"))?
                };
                if vulns
                    .iter()
                    .any(|&v| usize::from(v) >= advisory.vulns.len())
                {
                    return Err(error("vulnerability index out of range"));
                }
                advisory.products.push(Product {
                    vendor: vendor.clone(),
                    name,
                    range,
                    vulns,
                });
            }
            _ => return Err(error("unknown line kind")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip() {
        let advisory = Advisory {
            id: "ICSA-00-000-00".into(),
            title: "Example\tPLC".into(),
            released: "2024-01-02".into(),
            revised: "2024-02-03".into(),
            vulns: vec![
                Vuln {
                    cve: "CVE-2024-0001".into(),
                    cvss_tenths: 98,
                },
                Vuln {
                    cve: "CVE-2024-0002".into(),
                    cvss_tenths: 50,
                },
            ],
            products: vec![
                Product {
                    vendor: "Acme".into(),
                    name: "PLC 1".into(),
                    range: "<V2.0".into(),
                    vulns: vec![1],
                },
                Product {
                    vendor: "Acme".into(),
                    name: "PLC 2".into(),
                    range: "vers:all/*".into(),
                    vulns: vec![],
                },
            ],
        };
        let mut text = String::from("# header\n");
        write(&advisory, &mut text);
        let back = read(&text).expect("reads");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].title, "Example PLC");
        assert_eq!(back[0].vulns, advisory.vulns);
        assert_eq!(back[0].products, advisory.products);
        assert_eq!(
            read("P\tx\ty\t\n"),
            Err(Error {
                line: 1,
                reason: "line before the first advisory"
            })
        );
        assert!(read("A\tX\t\t\t\nP\tx\t*\t3\n").is_err());
    }
}
