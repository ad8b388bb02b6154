//! Reading one CSAF 2.0 security advisory (OASIS CSAF 2.0, §3.2) into an
//! [`Advisory`]: its tracking id, dates and title, the vulnerabilities (CVE, highest
//! CVSS v3 base score) and every product that a vulnerability lists as
//! `known_affected` (or `first_affected`/`last_affected`), with its vendor, product
//! name (product family and name branches joined) and the version range of its leaf
//! branch. Products only listed as fixed or not affected are left out.
//!
//! The reader is tolerant where CISA's documents vary (missing scores, model numbers
//! written as `product_version` leaves) and strict where a document would be
//! meaningless: not JSON, not CSAF, another CSAF version, no tracking id, nothing
//! affected. Each refusal is an [`Error`] naming the reason.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Advisory, Product, Vuln};

/// Why a file is not an advisory this sensor can use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("not a CSAF document (no document.csaf_version)")]
    NotCsaf,
    #[error("CSAF version {0:?} is not supported (2.0 is)")]
    Version(String),
    #[error("document.category {0:?} is not a security advisory")]
    Category(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("no product is listed as affected")]
    NothingAffected,
    #[error("{0}")]
    Table(String),
}

/// Longest title kept (characters).
const MAX_TITLE: usize = 160;
/// Deepest branch nesting followed (the spec has no limit; real trees have 3-4).
const MAX_DEPTH: usize = 16;

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

/// Cleans a name for the one-line table: no tabs or line breaks, trimmed.
pub(super) fn clean(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `product_version` leaf that names a model (`1763-L16DWD`) rather than a version.
fn names_a_model(text: &str) -> bool {
    text.split_once('-').is_some_and(|(_, after)| {
        after
            .trim_start()
            .starts_with(|c: char| c.is_ascii_alphabetic())
    })
}

/// One leaf of the product tree.
struct Leaf {
    vendor: String,
    name: String,
    range: String,
}

fn walk(
    branch: &Value,
    depth: usize,
    vendor: &str,
    names: &mut Vec<String>,
    out: &mut BTreeMap<String, Leaf>,
) {
    let Some(branches) = branch.get("branches").and_then(Value::as_array) else {
        return;
    };
    if depth >= MAX_DEPTH {
        return;
    }
    for child in branches {
        let category = text(child, &["category"]).unwrap_or("");
        let name = clean(text(child, &["name"]).unwrap_or(""));
        let mut vendor = vendor.to_owned();
        let pushed = match category {
            "vendor" => {
                vendor = name.clone();
                false
            }
            "product_family" | "product_name" => {
                names.push(name.clone());
                true
            }
            _ => false,
        };
        if let Some(id) = text(child, &["product", "product_id"]) {
            let (product, range) = match category {
                "product_version_range" => (names.join(" "), name.clone()),
                "product_version" if names_a_model(&name) => {
                    (format!("{} {name}", names.join(" ")), "*".to_owned())
                }
                "product_version" => (names.join(" "), name.clone()),
                _ => (names.join(" "), "*".to_owned()),
            };
            let product = if product.trim().is_empty() {
                clean(text(child, &["product", "name"]).unwrap_or(""))
            } else {
                product
            };
            out.insert(
                id.to_owned(),
                Leaf {
                    vendor: vendor.clone(),
                    name: product.trim().to_owned(),
                    range,
                },
            );
        }
        walk(child, depth + 1, &vendor, names, out);
        if pushed {
            names.pop();
        }
    }
}

/// The highest CVSS v3 (else v2) base score of a vulnerability, in tenths.
fn cvss_tenths(vulnerability: &Value) -> u8 {
    let mut best = 0.0f64;
    for score in vulnerability
        .get("scores")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for key in ["cvss_v3", "cvss_v2"] {
            if let Some(base) = score
                .get(key)
                .and_then(|c| c.get("baseScore"))
                .and_then(Value::as_f64)
            {
                best = best.max(base);
            }
        }
    }
    (best.clamp(0.0, 10.0) * 10.0).round() as u8
}

/// Reads a CSAF document.
pub fn parse(bytes: &[u8]) -> Result<Advisory, Error> {
    let doc: Value = serde_json::from_slice(bytes)?;
    let version = text(&doc, &["document", "csaf_version"]).ok_or(Error::NotCsaf)?;
    if version != "2.0" {
        return Err(Error::Version(version.to_owned()));
    }
    let category = text(&doc, &["document", "category"]).unwrap_or("");
    if !matches!(
        category,
        "csaf_security_advisory" | "csaf_vex" | "csaf_base"
    ) {
        return Err(Error::Category(category.to_owned()));
    }
    let id = text(&doc, &["document", "tracking", "id"])
        .map(clean)
        .filter(|id| !id.is_empty())
        .ok_or(Error::Missing("document.tracking.id"))?;
    let date = |key| {
        text(&doc, &["document", "tracking", key])
            .map(|d| d.chars().take(10).collect::<String>())
            .unwrap_or_default()
    };
    let released = date("initial_release_date");
    let revised = date("current_release_date");
    let title: String = clean(text(&doc, &["document", "title"]).unwrap_or(""))
        .chars()
        .take(MAX_TITLE)
        .collect();

    let mut leaves = BTreeMap::new();
    if let Some(tree) = doc.get("product_tree") {
        walk(tree, 0, "", &mut Vec::new(), &mut leaves);
        // `installed_on` and similar relationships (§3.2.2.4): a firmware version on a
        // device is the device's product with the firmware's version range.
        for relationship in tree
            .get("relationships")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(component), Some(device)) = (
                text(relationship, &["full_product_name", "product_id"]),
                text(relationship, &["product_reference"]),
                text(relationship, &["relates_to_product_reference"]),
            ) else {
                continue;
            };
            let (Some(component), Some(device)) = (leaves.get(component), leaves.get(device))
            else {
                continue;
            };
            let leaf = Leaf {
                vendor: device.vendor.clone(),
                name: device.name.clone(),
                range: component.range.clone(),
            };
            leaves.insert(id.to_owned(), leaf);
        }
    }

    let mut vulns = Vec::new();
    // Product id → indices of the vulnerabilities that affect it.
    let mut affected: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (i, vulnerability) in doc
        .get("vulnerabilities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Ok(index) = u16::try_from(i) else { break };
        let cve = text(vulnerability, &["cve"])
            .or_else(|| text(vulnerability, &["title"]))
            .map(clean)
            .unwrap_or_else(|| format!("{id}#{}", i + 1));
        vulns.push(Vuln {
            cve,
            cvss_tenths: cvss_tenths(vulnerability),
        });
        let status = vulnerability.get("product_status");
        for key in ["known_affected", "first_affected", "last_affected"] {
            for product in status
                .and_then(|s| s.get(key))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                affected
                    .entry(product.to_owned())
                    .or_default()
                    .insert(index);
            }
        }
    }

    let mut products = Vec::new();
    for (product_id, indices) in affected {
        let Some(leaf) = leaves.get(&product_id) else {
            continue;
        };
        if leaf.name.is_empty() {
            continue;
        }
        products.push(Product {
            vendor: leaf.vendor.clone(),
            name: leaf.name.clone(),
            range: leaf.range.clone(),
            vulns: if indices.len() == vulns.len() {
                Vec::new()
            } else {
                indices.into_iter().collect()
            },
        });
    }
    if products.is_empty() {
        return Err(Error::NothingAffected);
    }
    // Same product and range listed under two ids: one entry.
    products.sort_by(|a, b| (&a.vendor, &a.name, &a.range).cmp(&(&b.vendor, &b.name, &b.range)));
    products.dedup_by(|a, b| {
        a.vendor == b.vendor && a.name == b.name && a.range == b.range && a.vulns == b.vulns
    });
    Ok(Advisory {
        id,
        title,
        released,
        revised,
        vulns,
        products,
    })
}
