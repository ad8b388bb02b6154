//! Known vulnerabilities of the inventory, from CISA's ICS advisories (CSAF 2.0).
//!
//! A sensor is offline, so the advisories travel with it: `cargo xtask gen-advisories`
//! turns CISA's CSAF documents into a compact table (`sensor/data/advisories.tsv.gz`,
//! format in [`table`]) embedded in the binary, and `otsensor advisories import DIR`
//! adds newer CSAF files to the store at run time ([`import_dir`]). The analyzer holds
//! a [`Catalogue`] of both and matches a device ([`matcher`]) whenever its identity
//! changes; matches are stored on the device (`vulnerabilities`) and raise
//! `vulnerable_device` when a device first matches with high confidence.
//!
//! - [`csaf`] reads one CSAF document (tolerant of CISA's variations, refusing with a
//!   reason what it cannot use);
//! - [`version`] is the version-range semantics (`vers:` and CISA's free text);
//! - [`matcher`] is identity → advisories with a confidence and a reason.

pub mod csaf;
pub mod matcher;
pub mod table;
pub mod version;
pub mod view;

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use matcher::{Confidence, DeviceMatch, Identity};

use matcher::{Entry, EntryIndex};

/// The embedded table (gzip of the text form, see [`table`]).
const EMBEDDED: &[u8] = include_bytes!("../../data/advisories.tsv.gz");

/// One advisory: what the table keeps of a CSAF document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advisory {
    /// `document.tracking.id` (`ICSA-24-004-01`).
    pub id: String,
    pub title: String,
    /// Initial and current release dates (`YYYY-MM-DD`): a newer `revised` replaces.
    pub released: String,
    pub revised: String,
    pub vulns: Vec<Vuln>,
    pub products: Vec<Product>,
}

/// One vulnerability of an advisory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vuln {
    pub cve: String,
    /// Highest CVSS base score, in tenths.
    pub cvss_tenths: u8,
}

/// One affected product entry: vendor, product name, affected versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub vendor: String,
    pub name: String,
    /// The `product_version_range` (or `product_version`) text; `*` for all.
    pub range: String,
    /// Indices into the advisory's `vulns`; empty when all of them affect it.
    pub vulns: Vec<u16>,
}

/// One vendor key's product entries (indices into `Catalogue::entries`, ascending) and
/// what matching reads of them, built on first use: a device checks only the entries
/// the index names (see [`EntryIndex`]), not every entry of its vendor (thousands for
/// some).
#[derive(Debug, Default)]
struct VendorEntries {
    entries: Vec<u32>,
    index: OnceLock<EntryIndex>,
    /// A device reporting this vendor and no product: its vendor-only matches, shared
    /// by every such device.
    vendor_only: OnceLock<Arc<[DeviceMatch]>>,
}

/// Advisories ready for matching: product entries indexed by vendor key.
#[derive(Debug)]
pub struct Catalogue {
    advisories: Vec<Advisory>,
    /// (advisory, product) of each product entry.
    entries: Vec<(u32, u32)>,
    /// Each entry's matching form, prepared on first use (see [`Catalogue::prepare`]):
    /// preparing all of them is most of building the catalogue, and the analyzer
    /// would wait for all of them at its first device identity.
    prepared: Vec<OnceLock<Entry>>,
    by_vendor: HashMap<String, VendorEntries>,
    /// Where the advisories came from (the embedded table's header, plus imports).
    source: String,
}

impl Catalogue {
    /// Indexes `advisories` (later ones with the same id replace earlier ones when
    /// they are at least as recent).
    pub fn new(advisories: Vec<Advisory>, source: String) -> Catalogue {
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut kept: Vec<Advisory> = Vec::with_capacity(advisories.len());
        for advisory in advisories {
            match by_id.get(&advisory.id) {
                Some(&i) if kept[i].revised > advisory.revised => {}
                Some(&i) => kept[i] = advisory,
                None => {
                    by_id.insert(advisory.id.clone(), kept.len());
                    kept.push(advisory);
                }
            }
        }
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        let mut entries = Vec::new();
        let mut by_vendor: HashMap<String, VendorEntries> = HashMap::new();
        for (a, advisory) in kept.iter().enumerate() {
            for (p, product) in advisory.products.iter().enumerate() {
                let (Ok(a), Ok(p), Ok(index)) = (
                    u32::try_from(a),
                    u32::try_from(p),
                    u32::try_from(entries.len()),
                ) else {
                    continue;
                };
                entries.push((a, p));
                for key in matcher::vendor_keys(&product.vendor) {
                    by_vendor.entry(key).or_default().entries.push(index);
                }
            }
        }
        Catalogue {
            advisories: kept,
            prepared: entries.iter().map(|_| OnceLock::new()).collect(),
            entries,
            by_vendor,
            source,
        }
    }

    /// A catalogue of this one's advisories plus `imported` (newer revisions win).
    pub fn with_imports(&self, imported: Vec<Advisory>) -> Catalogue {
        let count = imported.len();
        let mut all = self.advisories.clone();
        all.extend(imported);
        Catalogue::new(all, format!("{}; {count} imported", self.source))
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    pub fn get(&self, id: &str) -> Option<&Advisory> {
        self.advisories
            .binary_search_by(|a| a.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.advisories[i])
    }

    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// Product entries indexed.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Entry `index` (from `by_vendor`) ready for matching.
    fn entry(&self, index: u32) -> &Entry {
        let i = index as usize;
        self.prepared[i].get_or_init(|| {
            let (a, p) = self.entries[i];
            let product = &self.advisories[a as usize].products[p as usize];
            Entry::new(a, p, &product.name, &product.range)
        })
    }

    /// `vendor`'s entry index, built (and its entries prepared) on first use.
    fn vendor_index<'a>(&'a self, vendor: &'a VendorEntries) -> &'a EntryIndex {
        vendor
            .index
            .get_or_init(|| EntryIndex::new(vendor.entries.iter().map(|&i| (i, self.entry(i)))))
    }

    /// Prepares every vendor's entries, index and vendor-only answer not yet built.
    /// The pipeline does it before the first packet, so that the analyzer's first
    /// device of a vendor builds nothing; a catalogue with imported advisories builds
    /// what a match needs on first use.
    pub fn prepare(&self) {
        let mut vendors: Vec<(&String, &VendorEntries)> = self.by_vendor.iter().collect();
        vendors.sort_by_key(|(_, vendor)| std::cmp::Reverse(vendor.entries.len()));
        for (key, vendor) in vendors {
            self.vendor_index(vendor);
            self.vendor_only(key, vendor);
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The embedded table's text (decompressed once).
pub fn embedded_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = String::new();
        let mut decoder = flate2::read::GzDecoder::new(EMBEDDED);
        if decoder.read_to_string(&mut text).is_err() {
            text.clear();
        }
        text
    })
}

/// The embedded catalogue (built once).
pub fn embedded() -> Arc<Catalogue> {
    static CATALOGUE: OnceLock<Arc<Catalogue>> = OnceLock::new();
    Arc::clone(CATALOGUE.get_or_init(|| {
        let text = embedded_text();
        let source = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .unwrap_or("embedded advisory table")
            .to_owned();
        // The table is generated and tested; an unreadable one is an empty catalogue.
        Arc::new(Catalogue::new(
            table::read(text).unwrap_or_default(),
            source,
        ))
    }))
}

/// The outcome of importing a directory.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Advisories newer than what the sensor had (new ids or later revisions).
    pub imported: Vec<Advisory>,
    /// Readable advisories the sensor already had in this or a later revision.
    pub unchanged: usize,
    /// Files skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Most files read from one directory tree (an operator's update, not a crawl).
const MAX_IMPORT_FILES: usize = 100_000;
/// Largest CSAF file read (the largest of CISA's is under 2 MB).
const MAX_FILE_BYTES: u64 = 16 << 20;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>, skipped: &mut Vec<(PathBuf, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            skipped.push((dir.to_owned(), format!("cannot read directory: {error}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if out.len() >= MAX_IMPORT_FILES {
            skipped.push((path, format!("more than {MAX_IMPORT_FILES} files")));
            return;
        }
        if path.is_dir() {
            files_under(&path, out, skipped);
        } else {
            out.push(path);
        }
    }
}

/// Reads every CSAF file under `dir` (recursively, `.json` files) and keeps those newer
/// than `known` has. Other files and documents that cannot be used are skipped with
/// the reason; nothing is written.
pub fn import_dir(dir: &Path, known: &Catalogue) -> ImportReport {
    let mut report = ImportReport::default();
    let mut files = Vec::new();
    files_under(dir, &mut files, &mut report.skipped);
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            report.skipped.push((
                path,
                "not a .json file (CSAF documents are JSON)".to_owned(),
            ));
            continue;
        }
        let bytes = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                report
                    .skipped
                    .push((path, format!("larger than {MAX_FILE_BYTES} bytes")));
                continue;
            }
            _ => match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    report.skipped.push((path, format!("cannot read: {error}")));
                    continue;
                }
            },
        };
        match csaf::parse(&bytes) {
            Ok(advisory) => {
                let newer = known
                    .get(&advisory.id)
                    .is_none_or(|old| advisory.revised > old.revised);
                let duplicate = report
                    .imported
                    .iter()
                    .any(|a| a.id == advisory.id && a.revised >= advisory.revised);
                if newer && !duplicate {
                    report.imported.retain(|a| a.id != advisory.id);
                    report.imported.push(advisory);
                } else {
                    report.unchanged += 1;
                }
            }
            Err(error) => report.skipped.push((path, error.to_string())),
        }
    }
    report
}

/// `otsensor advisories import`: reads `dir` against what the sensor has (embedded
/// table and earlier imports in `store`) and stores the newer advisories.
pub fn import_into_store(
    dir: &Path,
    store: &mut crate::store::Store,
) -> crate::store::Result<ImportReport> {
    let stored: Vec<Advisory> = store
        .imported_advisories()?
        .iter()
        .filter_map(|block| table::read(block).ok())
        .flatten()
        .collect();
    let known = embedded().with_imports(stored);
    let report = import_dir(dir, &known);
    if !report.imported.is_empty() {
        let rows: Vec<(String, String, String)> = report
            .imported
            .iter()
            .map(|advisory| {
                let mut block = String::new();
                table::write(advisory, &mut block);
                (advisory.id.clone(), advisory.revised.clone(), block)
            })
            .collect();
        store.import_advisories(&rows)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_builds_the_answer_every_device_of_a_vendor_shares() {
        let catalogue = embedded();
        let siemens = Identity {
            vendor: Some("Siemens AG".into()),
            firmware: Some("V3.2.6".into()),
            ..Identity::default()
        };
        catalogue.prepare();
        assert!(catalogue
            .by_vendor
            .values()
            .all(|vendor| vendor.vendor_only.get().is_some()));
        let shared = catalogue.shared_matches(&siemens);
        assert!(!shared.is_empty());
        // The prepared answer itself, not a copy, and the one matching builds.
        assert!(Arc::ptr_eq(&shared, &catalogue.shared_matches(&siemens)));
        assert_eq!(*shared, *catalogue.matches(&siemens));
        // Unprepared, the first such device builds the same answer.
        let fresh = Catalogue::new(catalogue.advisories().to_vec(), String::new());
        assert_eq!(*fresh.shared_matches(&siemens), *shared);
        // A device with a product is matched, not handed its vendor's answer.
        let product = Identity {
            product: Some("SIMATIC S7-1200".into()),
            ..siemens
        };
        assert!(!Arc::ptr_eq(&catalogue.shared_matches(&product), &shared));
    }

    #[test]
    fn embedded_table_loads() {
        let catalogue = embedded();
        assert!(catalogue.len() > 2000, "{}", catalogue.len());
        assert!(catalogue.entries() > 10_000, "{}", catalogue.entries());
        assert!(
            catalogue.source().contains("CISA"),
            "{}",
            catalogue.source()
        );
        assert!(catalogue.get("ICSA-24-004-01").is_some());
    }
}
