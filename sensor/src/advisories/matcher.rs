//! Matching a device's identity (vendor, product/model/order number, firmware) to the
//! product entries of the advisories.
//!
//! **Vendors** are compared by a key: the first significant word of each vendor named
//! (`Schneider Electric Software, LLC` → `schneider`; `Rockwell Automation/Allen-Bradley
//! (1)` → `rockwell`, with `allen` an alias). A device without a reported vendor takes
//! it from a Siemens order number (`6ES7…`) or, last, from its MAC's OUI.
//!
//! **Products**, most specific first:
//! - *exact*: a catalogue or order number the device reports appears as a token of the
//!   entry (`1756-EN2T Series D`, `(6ES7511-1AK02-0AB0)`), with the series agreeing
//!   when both name one; or the entry is the device's product/model name;
//! - *family*: the entry names the device's product family (`SIMATIC S7-1200 CPU
//!   family`, `ControlLogix 5570 controllers`, `Modicon M340 CPU (part numbers
//!   BMXP34*)`) — from a small table of catalogue prefixes per vendor, from part-number
//!   wildcards, or from the device's own product name inside the entry's — and the
//!   entry names no other specific order number and is not engineering software;
//! - *vendor only*: the device reported a vendor and nothing else to match on.
//!
//! **Versions** follow [`Range`]: a firmware outside the range is no match (fixed or
//! not affected); a firmware the device did not report, or a range the parser cannot
//! read, lowers an exact match to medium confidence and says why.
//!
//! **Confidence**: high = exact model and firmware in the affected range; medium =
//! product family (firmware in range or undecidable), or exact model with the version
//! undecidable; low = vendor only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::version::{Range, Version};
use super::{Advisory, Catalogue, VendorEntries};
use crate::observe::IdentityField;

/// Vendor-only matches kept per device (the highest CVSS first).
const MAX_VENDOR_ONLY: usize = 5;

/// How sure a match is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Exact model or order number, firmware in the affected range.
    High,
    /// Product family, or exact model whose version could not be compared.
    Medium,
    /// Vendor only.
    Low,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        }
    }
}

/// Severity of a CVSS v3 base score (FIRST's qualitative rating scale).
pub fn severity(cvss_tenths: u8) -> &'static str {
    match cvss_tenths {
        90.. => "critical",
        70..=89 => "high",
        40..=69 => "medium",
        1..=39 => "low",
        0 => "none",
    }
}

/// One advisory that applies to a device, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMatch {
    pub advisory: String,
    pub title: String,
    pub cves: Vec<String>,
    /// Highest CVSS base score of the matched vulnerabilities, in tenths (98 = 9.8).
    pub max_cvss_tenths: u8,
    pub severity: String,
    pub confidence: Confidence,
    /// The advisory's product entry that matched, and its affected versions.
    pub product: String,
    pub affected: String,
    /// First fixed version, when the range ends below one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    pub reason: String,
}

impl DeviceMatch {
    pub fn max_cvss(&self) -> f64 {
        f64::from(self.max_cvss_tenths) / 10.0
    }
}

/// What the matcher reads of a device.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// Reported vendor (protocol identity).
    pub vendor: Option<String>,
    /// Registered owner of the MAC's OUI.
    pub mac_vendor: Option<String>,
    /// Product name, model, order number, module name.
    pub product: Option<String>,
    pub model: Option<String>,
    pub order_number: Option<String>,
    pub name: Option<String>,
    pub firmware: Option<String>,
}

impl Identity {
    /// From an inventory record's identity attributes.
    pub fn from_fields(
        fields: &BTreeMap<IdentityField, String>,
        mac_vendor: Option<&str>,
    ) -> Identity {
        let get = |field| fields.get(&field).filter(|v| !v.trim().is_empty()).cloned();
        Identity {
            vendor: get(IdentityField::Vendor),
            mac_vendor: mac_vendor.map(str::to_owned),
            product: get(IdentityField::Product),
            model: get(IdentityField::Model),
            order_number: get(IdentityField::OrderNumber),
            name: get(IdentityField::Name),
            firmware: get(IdentityField::Firmware),
        }
    }

    fn texts(&self) -> impl Iterator<Item = &str> {
        [&self.order_number, &self.product, &self.model, &self.name]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Whether anything but the vendor identifies the product.
    fn has_product(&self) -> bool {
        self.texts().next().is_some()
    }
}

/// Words that are no vendor's name.
const VENDOR_STOP: [&str; 14] = [
    "inc",
    "llc",
    "ltd",
    "co",
    "corp",
    "corporation",
    "company",
    "gmbh",
    "ag",
    "sa",
    "the",
    "ltda",
    "limited",
    "bv",
];

/// The comparable keys of a vendor text (several for `A, B and C`).
pub fn vendor_keys(text: &str) -> Vec<String> {
    let mut plain = String::with_capacity(text.len());
    let mut depth = 0u32;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    let plain = plain.replace(" and ", ",");
    let mut keys = Vec::new();
    for part in plain.split([',', '/', '&', ';']) {
        let Some(first) = part
            .split(|c: char| !c.is_alphanumeric())
            .find(|w| !w.is_empty() && !VENDOR_STOP.contains(w))
        else {
            continue;
        };
        let key = match first {
            "allen" => "rockwell",
            "telemecanique" | "modicon" => "schneider",
            "ge" => "general",
            other => other,
        };
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
    }
    keys
}

/// Upper-case, alphanumeric words separated by single spaces, with a space at each end
/// (so ` WORD ` finds whole words).
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.push_str(&word.to_uppercase());
        out.push(' ');
    }
    out
}

/// Upper case without spaces: `6ES7 315-2EH14-0AB0` → `6ES7315-2EH14-0AB0`.
fn compact(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A Siemens order number (MLFB): `6ES7511-1AK02-0AB0`, `6AG1214-1AG40-2XB0`.
fn is_siemens_order(compact: &str) -> bool {
    let b = compact.as_bytes();
    b.len() >= 12
        && b[0] == b'6'
        && b[1].is_ascii_alphabetic()
        && b[2].is_ascii_alphabetic()
        && b[3].is_ascii_digit()
        && compact.contains('-')
}

/// A catalogue-number-like token: digits and letters, with a hyphen or long enough.
fn is_catalog(token: &str) -> bool {
    token.len() >= 5
        && token.bytes().any(|b| b.is_ascii_digit())
        && token.bytes().any(|b| b.is_ascii_alphabetic())
        && (token.contains('-') || token.len() >= 8)
}

/// A catalogue number a device reported, with its series letter (`1756-EN2T/D`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Catalog {
    full: String,
    base: String,
    series: Option<char>,
}

fn split_series(token: &str) -> (String, Option<char>) {
    if let Some((base, series)) = token.rsplit_once('/') {
        let mut chars = series.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            if c.is_ascii_alphabetic() {
                return (base.to_owned(), Some(c));
            }
        }
    }
    (token.to_owned(), None)
}

fn device_catalogs(identity: &Identity) -> Vec<Catalog> {
    let mut out: Vec<Catalog> = Vec::new();
    let mut add = |token: String| {
        let (base, series) = split_series(&token);
        if is_catalog(&base) && !out.iter().any(|c| c.full == token) {
            out.push(Catalog {
                full: token,
                base,
                series,
            });
        }
    };
    // An order number or product name written with spaces (`6ES7 315-2EH14-0AB0`,
    // `BMX P34 2020`) is one catalogue number; a model or module name is not.
    for text in [&identity.order_number, &identity.product]
        .into_iter()
        .flatten()
    {
        let whole = compact(text);
        if is_siemens_order(&whole) || text.split_whitespace().count() <= 3 {
            add(whole);
        }
    }
    for text in identity.texts() {
        for token in text.split(|c: char| c.is_whitespace() || "(),;:".contains(c)) {
            add(compact(token));
        }
    }
    out
}

/// Product families by catalogue prefix: the words an advisory uses for the family.
fn families(vendor: &str, catalog: &str) -> &'static [&'static str] {
    let starts = |p: &str| catalog.starts_with(p);
    match vendor {
        "rockwell" => {
            if starts("1756-L5") {
                &["CONTROLLOGIX 5550"]
            } else if starts("1756-L6") {
                &["CONTROLLOGIX 5560", "GUARDLOGIX 5560"]
            } else if starts("1756-L7") {
                &["CONTROLLOGIX 5570", "GUARDLOGIX 5570"]
            } else if starts("1756-L8") {
                &["CONTROLLOGIX 5580", "GUARDLOGIX 5580"]
            } else if starts("1769-L") && catalog.get(8..10) == Some("ER") {
                &["COMPACTLOGIX 5370", "COMPACT GUARDLOGIX 5370"]
            } else if starts("1769-L") {
                &["1769 COMPACTLOGIX"]
            } else if starts("1768-L") {
                &["1768 COMPACTLOGIX"]
            } else if starts("5069-L3") {
                &["COMPACTLOGIX 5380", "COMPACT GUARDLOGIX 5380"]
            } else if starts("5069-L4") {
                &["COMPACTLOGIX 5480"]
            } else if starts("1766-L") {
                &["MICROLOGIX 1400"]
            } else if starts("1763-L") {
                &["MICROLOGIX 1100"]
            } else if starts("1762-L") {
                &["MICROLOGIX 1200"]
            } else if starts("1764-") {
                &["MICROLOGIX 1500"]
            } else if starts("1747-L5") {
                &["SLC 500"]
            } else {
                &[]
            }
        }
        "siemens" => {
            let line = catalog.get(..6).unwrap_or("");
            match line {
                "6ES721" | "6AG121" | "6AG221" => &["S7 1200"],
                "6ES751" | "6AG151" | "6AG251" => &["S7 1500"],
                "6ES731" | "6AG131" => &["S7 300"],
                "6ES741" | "6AG141" => &["S7 400"],
                _ => &[],
            }
        }
        "schneider" => {
            if starts("BMXP34") {
                &["MODICON M340", "M340 CPU", "M340 CPUS"]
            } else if starts("BMEP58") || starts("BMEH58") {
                &["MODICON M580"]
            } else if starts("TSXP57") || starts("TSXH57") {
                &["MODICON PREMIUM"]
            } else if starts("140CPU") {
                &["MODICON QUANTUM"]
            } else if starts("TM221") {
                &["MODICON M221"]
            } else if starts("TM241") {
                &["MODICON M241"]
            } else if starts("TM251") {
                &["MODICON M251"]
            } else if starts("TM258") {
                &["MODICON M258"]
            } else if starts("171CBU") {
                &["MODICON MOMENTUM"]
            } else if starts("BMKC80") {
                &["MODICON MC80"]
            } else {
                &[]
            }
        }
        _ => &[],
    }
}

/// Entry words that make it engineering or simulation software, not a device.
const SOFTWARE: [&str; 12] = [
    " SOFTWARE ",
    " STUDIO ",
    " DESIGNER ",
    " PLCSIM ",
    " EMULATE ",
    " SIMULATOR ",
    " TIA PORTAL ",
    " STEP 7 ",
    " WINCC ",
    " ECHO ",
    " SOFTLOGIX ",
    " BUILDER ",
];

/// One product entry, prepared for matching.
#[derive(Debug)]
pub(super) struct Entry {
    pub advisory: u32,
    pub product: u32,
    words: String,
    /// Compact tokens and concatenations of 2 and 3 neighbours.
    tokens: HashSet<String>,
    /// Specific order numbers it names (Siemens MLFBs).
    orders: Vec<String>,
    /// Part-number wildcards (`BMXP34*` → `BMXP34`).
    wildcards: Vec<String>,
    series: Vec<char>,
    software: bool,
    range: Range,
}

impl Entry {
    pub(super) fn new(advisory: u32, product: u32, name: &str, range: &str) -> Entry {
        let words = words(name);
        let raw: Vec<String> = name
            .split(|c: char| c.is_whitespace() || "(),;".contains(c))
            .map(|t| compact(t.trim_end_matches(['.', ':'])))
            .filter(|t| !t.is_empty())
            .collect();
        let mut tokens = HashSet::new();
        let mut series = Vec::new();
        for (i, token) in raw.iter().enumerate() {
            let (base, letter) = split_series(token);
            if let Some(letter) = letter {
                if is_catalog(&base) {
                    series.push(letter);
                    tokens.insert(base);
                }
            }
            tokens.insert(token.clone());
            if let Some(next) = raw.get(i + 1) {
                tokens.insert(format!("{token}{next}"));
                if let Some(third) = raw.get(i + 2) {
                    tokens.insert(format!("{token}{next}{third}"));
                }
            }
            if token == "SERIES" {
                if let Some(next) = raw.get(i + 1) {
                    series.extend(next.split(['/', ',']).filter_map(|s| {
                        let mut c = s.chars();
                        match (c.next(), c.next()) {
                            (Some(l), None) if l.is_ascii_alphabetic() => Some(l),
                            _ => None,
                        }
                    }));
                }
            }
        }
        let orders = raw
            .iter()
            .filter(|t| is_siemens_order(t))
            .cloned()
            .collect();
        let wildcards = raw
            .iter()
            .filter_map(|t| t.strip_suffix('*'))
            .map(|t| t.trim_end_matches('*').to_owned())
            .filter(|t| t.len() >= 3)
            .collect();
        let software = SOFTWARE.iter().any(|w| words.contains(w));
        Entry {
            advisory,
            product,
            words,
            tokens,
            orders,
            wildcards,
            series,
            software,
            range: Range::parse(range),
        }
    }
}

/// How a product entry matched, before versions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Exact,
    Family,
}

/// What [`product_match`] compares of a device, computed once per identity rather than
/// once per advisory entry of its vendor (thousands for some vendors).
struct Prepared<'a> {
    /// Product and model, each with its [`words`].
    names: Vec<(&'a str, String)>,
    /// Every text of [`Identity::texts`], each with its [`words`].
    texts: Vec<(&'a str, String)>,
    /// Per catalogue number (same order): its base without hyphens, and without spaces.
    catalog_keys: Vec<(String, String)>,
}

impl<'a> Prepared<'a> {
    fn new(identity: &'a Identity, catalogs: &[Catalog]) -> Prepared<'a> {
        let with_words = |text: &'a str| (text, words(text));
        Prepared {
            names: [&identity.product, &identity.model]
                .into_iter()
                .flatten()
                .map(|text| with_words(text))
                .collect(),
            texts: identity.texts().map(with_words).collect(),
            catalog_keys: catalogs
                .iter()
                .map(|c| (c.base.replace('-', ""), c.base.replace(' ', "")))
                .collect(),
        }
    }
}

fn product_match(
    entry: &Entry,
    device: &Prepared,
    catalogs: &[Catalog],
    vendor: &str,
) -> Option<(Kind, String)> {
    for catalog in catalogs {
        let named = entry.tokens.contains(&catalog.full) || entry.tokens.contains(&catalog.base);
        let series_agrees = match (catalog.series, entry.series.is_empty()) {
            (Some(s), false) => entry.series.contains(&s),
            _ => true,
        };
        if named && series_agrees {
            return Some((
                Kind::Exact,
                format!("order/catalogue number {}", catalog.full),
            ));
        }
    }
    for (text, words) in &device.names {
        if words.len() > 3 && entry.words.trim() == words.trim() {
            return Some((Kind::Exact, format!("product name {text:?}")));
        }
    }
    if entry.software {
        return None;
    }
    let names_other_order = !entry.orders.is_empty();
    for (catalog, (unhyphenated, unspaced)) in catalogs.iter().zip(&device.catalog_keys) {
        if let Some(wildcard) = entry
            .wildcards
            .iter()
            .find(|w| unhyphenated.starts_with(w.as_str()))
        {
            return Some((
                Kind::Family,
                format!("part number {} in family {wildcard}*", catalog.full),
            ));
        }
        if names_other_order {
            continue;
        }
        for family in families(vendor, unspaced) {
            // A communication processor or module of the family is another product.
            let module = entry.words.contains(" CP ") || entry.words.contains(" CM ");
            if !module
                && entry.words.contains(family)
                && entry.words.contains(&format!(" {family} "))
            {
                return Some((
                    Kind::Family,
                    format!("{} is a {}", catalog.full, family.to_lowercase()),
                ));
            }
        }
    }
    if names_other_order {
        return None;
    }
    for (text, words) in &device.texts {
        // At least two words, or one with letters and digits: not a bare number.
        let significant = words.split_whitespace().count() >= 2
            || words.trim().len() >= 4
                && words.bytes().any(|b| b.is_ascii_digit())
                && words.bytes().any(|b| b.is_ascii_alphabetic());
        if significant && entry.words.contains(words.as_str()) {
            return Some((
                Kind::Family,
                format!("product {text:?} in the entry's name"),
            ));
        }
    }
    None
}

/// The key of a token or word in an [`EntryIndex`] (a collision only adds a candidate).
fn index_key(text: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0).hash_one(text)
}

/// Which of one vendor's entries a device can match. Every way [`product_match`]
/// matches needs one of: a token of the entry equal to a catalogue number of the device
/// (exact); the entry's words containing every word of the device's product or model
/// name (exact), of a product family (family) or of a device text (family), each a
/// whole word since words are space-delimited; or a part-number wildcard. So the
/// entries holding such a token, the rarest word of such a text, or a wildcard are the
/// only candidates, and [`product_match`] decides on them as on the full list.
#[derive(Debug, Default)]
pub(super) struct EntryIndex {
    by_token: HashMap<u64, Vec<u32>>,
    by_word: HashMap<u64, Vec<u32>>,
    with_wildcards: Vec<u32>,
}

impl EntryIndex {
    /// From (entry index, entry) in ascending entry index.
    pub(super) fn new<'a>(entries: impl Iterator<Item = (u32, &'a Entry)>) -> EntryIndex {
        let mut index = EntryIndex::default();
        let add = |map: &mut HashMap<u64, Vec<u32>>, text: &str, i: u32| {
            let list = map.entry(index_key(text)).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        };
        for (i, entry) in entries {
            for token in &entry.tokens {
                add(&mut index.by_token, token, i);
            }
            for word in entry.words.split(' ').filter(|w| !w.is_empty()) {
                add(&mut index.by_word, word, i);
            }
            if !entry.wildcards.is_empty() {
                index.with_wildcards.push(i);
            }
        }
        index
    }

    fn with_token(&self, token: &str) -> &[u32] {
        self.by_token
            .get(&index_key(token))
            .map_or(&[], Vec::as_slice)
    }

    /// The entries that may contain all of `words` (space-separated): those with the
    /// rarest of them. None when `words` has no word.
    fn with_words(&self, words: &str) -> &[u32] {
        words
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| {
                self.by_word
                    .get(&index_key(w))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|entries| entries.len())
            .unwrap_or(&[])
    }

    /// Entries [`product_match`] may match for `device`, ascending (the order of the
    /// vendor's full list, which the merging of matches depends on).
    fn candidates(&self, device: &Prepared, catalogs: &[Catalog], vendor: &str) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for (catalog, (_, unspaced)) in catalogs.iter().zip(&device.catalog_keys) {
            out.extend_from_slice(self.with_token(&catalog.full));
            out.extend_from_slice(self.with_token(&catalog.base));
            for family in families(vendor, unspaced) {
                out.extend_from_slice(self.with_words(family));
            }
        }
        if !catalogs.is_empty() {
            out.extend_from_slice(&self.with_wildcards);
        }
        for (_, words) in device.names.iter().chain(&device.texts) {
            out.extend_from_slice(self.with_words(words));
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Catalogue {
    /// The vendor keys a device is matched under.
    fn device_vendors(identity: &Identity, catalogs: &[Catalog]) -> Vec<String> {
        if let Some(vendor) = &identity.vendor {
            let keys = vendor_keys(vendor);
            if !keys.is_empty() {
                return keys;
            }
        }
        if catalogs.iter().any(|c| is_siemens_order(&c.full)) {
            return vec!["siemens".to_owned()];
        }
        identity
            .mac_vendor
            .as_deref()
            .map(vendor_keys)
            .unwrap_or_default()
    }

    /// Every advisory that applies to `identity`, best first (confidence, then CVSS).
    pub fn matches(&self, identity: &Identity) -> Vec<DeviceMatch> {
        self.matches_with(identity, true)
    }

    /// [`Catalogue::matches`] as one shared slice: a device reporting a vendor and no
    /// product gets its vendor's answer without a copy.
    pub fn shared_matches(&self, identity: &Identity) -> Arc<[DeviceMatch]> {
        match self.vendor_only_answer(identity) {
            Some(answer) => Arc::clone(answer),
            None => self.matches_with(identity, true).into(),
        }
    }

    /// The vendor-only matches of a device reporting `vendor` (its key) and no product,
    /// built once (by [`Catalogue::prepare`], or here on first use).
    pub(super) fn vendor_only<'a>(
        &'a self,
        key: &str,
        vendor: &'a VendorEntries,
    ) -> &'a Arc<[DeviceMatch]> {
        vendor.vendor_only.get_or_init(|| {
            let identity = Identity {
                vendor: Some(key.to_owned()),
                ..Identity::default()
            };
            // Only the advisories the answer keeps are described (building a match
            // copies its texts; some vendors have thousands of entries): those with
            // the highest CVSS of their entries first, then the lowest id, as
            // `matches_with` orders them (advisories are sorted by id).
            let mut highest: HashMap<u32, u8> = HashMap::new();
            for vendor in Self::device_vendors(&identity, &[]) {
                let Some(vendor_entries) = self.by_vendor.get(&vendor) else {
                    continue;
                };
                for &i in &vendor_entries.entries {
                    let entry = self.entry(i);
                    let cvss = self.entry_max_cvss(entry);
                    let best = highest.entry(entry.advisory).or_insert(cvss);
                    *best = (*best).max(cvss);
                }
            }
            let mut ranked: Vec<(std::cmp::Reverse<u8>, u32)> = highest
                .into_iter()
                .map(|(advisory, cvss)| (std::cmp::Reverse(cvss), advisory))
                .collect();
            ranked.sort_unstable();
            let mut kept: Vec<u32> = ranked
                .into_iter()
                .take(MAX_VENDOR_ONLY)
                .map(|(_, advisory)| advisory)
                .collect();
            kept.sort_unstable();
            self.matches_among(&identity, false, Some(&kept)).into()
        })
    }

    /// The answer shared by every device of one vendor key reporting a vendor and no
    /// product (the usual case); None for any other identity, or a vendor without
    /// advisories.
    fn vendor_only_answer(&self, identity: &Identity) -> Option<&Arc<[DeviceMatch]>> {
        if identity.has_product() || identity.vendor.is_none() {
            return None;
        }
        // No product, so no catalogue numbers.
        let vendors = Self::device_vendors(identity, &[]);
        let [vendor] = vendors.as_slice() else {
            return None;
        };
        let (key, entries) = self.by_vendor.get_key_value(vendor)?;
        Some(self.vendor_only(key, entries))
    }

    /// [`Catalogue::matches`], checking only the entries `EntryIndex` names when
    /// `indexed`, every entry of the device's vendors otherwise (the reference the
    /// index is tested against).
    fn matches_with(&self, identity: &Identity, indexed: bool) -> Vec<DeviceMatch> {
        self.matches_among(identity, indexed, None)
    }

    /// [`Catalogue::matches_with`], considering only the advisories in `among` (sorted)
    /// for a device without a product when given.
    fn matches_among(
        &self,
        identity: &Identity,
        indexed: bool,
        among: Option<&[u32]>,
    ) -> Vec<DeviceMatch> {
        if indexed {
            if let Some(answer) = self.vendor_only_answer(identity) {
                return answer.to_vec();
            }
        }
        let catalogs = device_catalogs(identity);
        let vendors = Self::device_vendors(identity, &catalogs);
        let firmware = identity.firmware.as_deref().and_then(Version::parse);
        let prepared = Prepared::new(identity, &catalogs);
        // Advisory index → best match so far.
        let mut best: HashMap<u32, DeviceMatch> = HashMap::new();
        // Several entries of one advisory: the best confidence wins; entries of equal
        // confidence add their CVEs.
        fn consider(best: &mut HashMap<u32, DeviceMatch>, advisory: u32, found: DeviceMatch) {
            match best.get_mut(&advisory) {
                Some(old) if old.confidence == found.confidence => {
                    for cve in found.cves {
                        if !old.cves.contains(&cve) {
                            old.cves.push(cve);
                        }
                    }
                    if found.max_cvss_tenths > old.max_cvss_tenths {
                        old.max_cvss_tenths = found.max_cvss_tenths;
                        old.severity = found.severity;
                    }
                }
                Some(old) if old.confidence < found.confidence => {}
                _ => {
                    best.insert(advisory, found);
                }
            }
        }
        for vendor in &vendors {
            let Some(vendor_entries) = self.by_vendor.get(vendor) else {
                continue;
            };
            let entries = &vendor_entries.entries;
            if !identity.has_product() {
                if identity.vendor.is_some() {
                    for &i in entries {
                        let entry = self.entry(i);
                        if among.is_some_and(|among| among.binary_search(&entry.advisory).is_err())
                        {
                            continue;
                        }
                        match best.get_mut(&entry.advisory) {
                            // Another entry of an advisory matched (every match here is
                            // low): what `consider` takes of a described match, without
                            // describing it (a Siemens advisory has hundreds of entries).
                            Some(old) if old.confidence == Confidence::Low => {
                                let vulns = self.entry_vulns(entry);
                                for vuln in &vulns {
                                    if !old.cves.contains(&vuln.cve) {
                                        old.cves.push(vuln.cve.clone());
                                    }
                                }
                                let cvss = vulns.iter().map(|v| v.cvss_tenths).max().unwrap_or(0);
                                if cvss > old.max_cvss_tenths {
                                    old.max_cvss_tenths = cvss;
                                    old.severity = severity(cvss).to_owned();
                                }
                            }
                            _ => consider(
                                &mut best,
                                entry.advisory,
                                self.describe(
                                    entry,
                                    Confidence::Low,
                                    format!("vendor {vendor} only; the device reported no product"),
                                ),
                            ),
                        }
                    }
                }
                continue;
            }
            let candidates;
            let entries = if indexed {
                candidates = self
                    .vendor_index(vendor_entries)
                    .candidates(&prepared, &catalogs, vendor);
                &candidates
            } else {
                entries
            };
            for &i in entries {
                let entry = self.entry(i);
                let Some((kind, why)) = product_match(entry, &prepared, &catalogs, vendor) else {
                    continue;
                };
                let in_range = firmware.as_ref().map(|f| (f, entry.range.contains(f)));
                let (confidence, reason) = match (kind, in_range, &entry.range) {
                    (_, Some((_, Some(false))), _) => continue,
                    (Kind::Exact, _, Range::All) => (
                        Confidence::High,
                        format!("exact model ({why}); all versions affected"),
                    ),
                    (Kind::Exact, Some((f, Some(true))), _) => (
                        Confidence::High,
                        format!("exact model ({why}); firmware {f} in affected range"),
                    ),
                    (Kind::Exact, None, _) => (
                        Confidence::Medium,
                        format!("exact model ({why}); firmware not reported"),
                    ),
                    (Kind::Exact, Some((_, None)), _) => (
                        Confidence::Medium,
                        format!("exact model ({why}); version range not understood"),
                    ),
                    (Kind::Family, Some((f, Some(true))), _) => (
                        Confidence::Medium,
                        format!("product family ({why}); firmware {f} in affected range"),
                    ),
                    (Kind::Family, Some((_, None)), _) => (
                        Confidence::Medium,
                        format!("product family ({why}); version range not understood"),
                    ),
                    (Kind::Family, None, _) => (
                        Confidence::Medium,
                        format!("product family ({why}); firmware not reported"),
                    ),
                };
                consider(
                    &mut best,
                    entry.advisory,
                    self.describe(entry, confidence, reason),
                );
            }
        }
        let mut out: Vec<DeviceMatch> = best.into_values().collect();
        out.sort_by(|a, b| {
            (
                a.confidence,
                std::cmp::Reverse(a.max_cvss_tenths),
                &a.advisory,
            )
                .cmp(&(
                    b.confidence,
                    std::cmp::Reverse(b.max_cvss_tenths),
                    &b.advisory,
                ))
        });
        let mut vendor_only = 0;
        out.retain(|m| {
            if m.confidence != Confidence::Low {
                return true;
            }
            vendor_only += 1;
            vendor_only <= MAX_VENDOR_ONLY
        });
        out
    }

    /// The vulnerabilities of an entry's advisory that affect it.
    fn entry_vulns(&self, entry: &Entry) -> Vec<&super::Vuln> {
        let advisory: &Advisory = &self.advisories[entry.advisory as usize];
        let product = &advisory.products[entry.product as usize];
        let vulns: Vec<&super::Vuln> = if product.vulns.is_empty() {
            advisory.vulns.iter().collect()
        } else {
            product
                .vulns
                .iter()
                .filter_map(|&i| advisory.vulns.get(usize::from(i)))
                .collect()
        };
        // CISA sometimes narrows an entry in its text: ">= 4.4.0 (only affected by
        // CVE-2019-10943)" while product_status lists every CVE for it.
        let only: Vec<&str> = [product.range.as_str(), product.name.as_str()]
            .iter()
            .filter_map(|text| text.find("only affected by").map(|at| &text[at..]))
            .flat_map(|text| text.split(|c: char| c.is_whitespace() || ",;()".contains(c)))
            .filter(|word| word.starts_with("CVE-"))
            .collect();
        if vulns.iter().any(|v| only.contains(&v.cve.as_str())) {
            vulns
                .into_iter()
                .filter(|v| only.contains(&v.cve.as_str()))
                .collect()
        } else {
            vulns
        }
    }

    /// The highest CVSS of the vulnerabilities affecting an entry (what its match
    /// reports), in tenths.
    fn entry_max_cvss(&self, entry: &Entry) -> u8 {
        let advisory: &Advisory = &self.advisories[entry.advisory as usize];
        let product = &advisory.products[entry.product as usize];
        let narrowed = [&product.range, &product.name]
            .iter()
            .any(|text| text.contains("only affected by"));
        let highest = if narrowed {
            self.entry_vulns(entry).iter().map(|v| v.cvss_tenths).max()
        } else if product.vulns.is_empty() {
            advisory.vulns.iter().map(|v| v.cvss_tenths).max()
        } else {
            // Without a narrowing text, `entry_vulns` without collecting them.
            product
                .vulns
                .iter()
                .filter_map(|&i| advisory.vulns.get(usize::from(i)))
                .map(|v| v.cvss_tenths)
                .max()
        };
        highest.unwrap_or(0)
    }

    fn describe(&self, entry: &Entry, confidence: Confidence, reason: String) -> DeviceMatch {
        let advisory: &Advisory = &self.advisories[entry.advisory as usize];
        let product = &advisory.products[entry.product as usize];
        let vulns = self.entry_vulns(entry);
        let max_cvss_tenths = vulns.iter().map(|v| v.cvss_tenths).max().unwrap_or(0);
        DeviceMatch {
            advisory: advisory.id.clone(),
            title: advisory.title.clone(),
            cves: vulns.iter().map(|v| v.cve.clone()).collect(),
            max_cvss_tenths,
            severity: severity(max_cvss_tenths).to_owned(),
            confidence,
            product: product.name.clone(),
            affected: product.range.clone(),
            fixed: entry.range.fixed().map(ToString::to_string),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_keys_ignore_legal_forms_and_know_aliases() {
        assert_eq!(
            vendor_keys("Schneider Electric Software, LLC"),
            ["schneider"]
        );
        assert_eq!(
            vendor_keys("Rockwell Automation/Allen-Bradley (1)"),
            ["rockwell"]
        );
        assert_eq!(vendor_keys("Siemens AG"), ["siemens"]);
        assert_eq!(
            vendor_keys("ABB, Phoenix Contact, Schneider Electric, Siemens, and WAGO"),
            ["abb", "phoenix", "schneider", "siemens", "wago"]
        );
        assert_eq!(vendor_keys("General Electric (GE)"), ["general"]);
    }

    #[test]
    fn catalogs_split_series_and_join_siemens_order_numbers() {
        let identity = Identity {
            product: Some("1756-EN2T/D".into()),
            order_number: Some("6ES7 315-2EH14-0AB0".into()),
            ..Identity::default()
        };
        let catalogs = device_catalogs(&identity);
        assert!(catalogs.contains(&Catalog {
            full: "6ES7315-2EH14-0AB0".into(),
            base: "6ES7315-2EH14-0AB0".into(),
            series: None
        }));
        assert!(catalogs.contains(&Catalog {
            full: "1756-EN2T/D".into(),
            base: "1756-EN2T".into(),
            series: Some('D')
        }));
    }

    /// Identities seen in the shared captures (`../shared/pcaps`, all replayed into one
    /// inventory) and in the generated OT mix, one a line: vendor, MAC vendor, product,
    /// model, order number, name, firmware (`-`: not reported).
    const SEEN: &str = "\
Siemens Schweiz AG (Formerly: Cerberus AG) (22)|Hon Hai Precision Ind.|3.7.6|RCG-525|-|-|1.4.7\n\
-|Siemens|-|-|-|-|-\n\
OpenGeneral Pty., Ltd. (221)|Hon Hai Precision Ind.|5.8.2|TEI-757|-|-|4.8.2\n\
Automated Logic Corporation (24)|BELKIN COMPONENTS|-|-|-|-|-\n\
Onicon Incorporated (206)|Hon Hai Precision Ind.|0.7.1|VFH-314|-|-|0.1.2\n\
Phoenix Controls Corporation (26)|Hon Hai Precision Ind.|0.5.2|PXZ-142|-|-|5.1.5\n\
Acuity Brands Lighting, Inc. (42)|Siemens|-|-|-|-|-\n\
Aricent Ltd. (240)|Hon Hai Precision Ind.|3.3.1|BOW-967|-|-|3.7.2\n\
ESS Engineering (46)|Hon Hai Precision Ind.|0.9.1|MVB-613|-|-|5.7.2\n\
D-Tek Controls (103)|Hon Hai Precision Ind.|5.5.7|NKF-693|-|-|2.5.5\n\
-|PCS Systemtechnik|-|-|-|-|-\n\
-|-|http://open62541.org|-|-|open62541-based OPC UA Application|-\n\
Mitsubishi Electric Building Techno-Service Co., Ltd. (173)|Hon Hai Precision Ind.|4.0.7|EWP-367|-|-|0.4.2\n\
-|Siemens Numerical Control Ltd.|-|-|6ES7 214-1HE30-0XB0|-|V2.2\n\
Micro Control Systems, Inc. (181)|Hon Hai Precision Ind.|5.7.6|LWY-398|-|-|0.0.7\n\
JCI Systems Integration Services (107)|Hon Hai Precision Ind.|4.3.3|EIB-728|-|-|0.7.2\n\
Acuity Brands Lighting, Inc. (42)|Dell|-|-|-|-|-\n\
ASI Controls (162)|Hon Hai Precision Ind.|5.9.7|SQJ-782|-|-|1.1.9\n\
WILO SE (251)|Hon Hai Precision Ind.|0.5.8|ZAC-176|-|-|2.6.4\n\
Veris Industries (133)|Hon Hai Precision Ind.|4.2.9|BEC-985|-|-|5.4.9\n\
-|PHOENIX CONTACT Electronics|-|-|-|-|-\n\
Duksan Mecasys Co., Ltd. (167)|Hon Hai Precision Ind.|1.8.5|HVY-869|-|-|0.0.7\n\
I Controls (139)|Hon Hai Precision Ind.|2.8.0|HZU-655|-|-|1.3.2\n\
Shenzhen Junzhi Hi-Tech Co., Ltd. (130)|Hon Hai Precision Ind.|5.2.2|UXB-926|-|-|4.2.9\n\
Custom Mechanical Equipment, LLC (100)|Hon Hai Precision Ind.|3.7.7|RMS-578|-|-|5.5.5\n\
-|Siemens Numerical Control Ltd.|-|-|6ES7 211-1BE31-0XB0|-|V3.0\n\
M&M Systems, Inc. (116)|Hon Hai Precision Ind.|2.8.4|WLK-428|-|-|2.0.0\n\
INFO TECH|ASUSTek COMPUTER INC.|-|S61850 for PC|-|-|0.0.1\n\
SAMSON AG (51)|Hon Hai Precision Ind.|0.6.1|DPA-307|-|-|5.5.8\n\
-|XEROX CORPORATION|-|CPU 315-2 PN/DP|6ES7 315-2EH14-0AB0|CPU 315-2 PN/DP|V3.2.6\n\
Lighting Control & Design, Inc. (215)|Hon Hai Precision Ind.|2.4.4|CIJ-439|-|-|5.1.9\n\
-|Intelligent Platforms, LLC.|-|IC200PNS001|-|versamax-pns11|-\n\
Reliance Electric (65)|Hon Hai Precision Ind.|1.8.2|NFA-027|-|-|5.0.1\n\
AREVA T&D Corporation|Hewlett Packard|-|e-terracomm|-|-|2.3.1\n\
Automated Logic Corporation (24)|AutomatedLogic|-|-|-|-|-\n\
AREVA T&D Corporation|Broadcom|-|e-terracomm|-|-|2.3.1\n\
PowerCold Comfort Air Solutions, Inc. (138)|Hon Hai Precision Ind.|1.8.5|GHU-026|-|-|5.6.1\n\
Cornell University (15)|Hon Hai Precision Ind.|1.3.3|ETA-633|-|-|3.8.4\n\
-|RTDS Technologies|-|-|-|-|-\n\
-|Siemens AG|-|-|6ES7 151-8AB01-0AB0|IM151-8 PN/DP CPU|-\n\
Yamatake Building Systems Co., Ltd. (85)|Hon Hai Precision Ind.|0.5.7|HIY-054|-|-|4.2.1\n\
-|-|-|-|-|-|-\n\
Scada Engine (123)|Hon Hai Precision Ind.|1.7.7|RMC-419|-|-|3.8.9\n\
TSC21 Association of Japan (212)|Hon Hai Precision Ind.|1.8.7|KAJ-796|-|-|2.1.3\n\
-|VMware|-|-|-|-|-\n\
Centaurus Prime (134)|Hon Hai Precision Ind.|3.3.7|TNX-397|-|-|3.3.6\n\
Smart Temp Australia Pty. Ltd. (165)|Hon Hai Precision Ind.|2.5.5|EAC-257|-|-|2.7.8\n\
Integrated Control Technology Limited (230)|Hon Hai Precision Ind.|5.2.6|VDS-393|-|-|0.4.2\n\
Rockwell Automation/Allen-Bradley (1)|Rockwell Automation|1756-L61/B LOGIX5561|-|-|-|16.20\n\
-|Intel|-|-|-|-|-\n\
-|Cisco Systems|-|cisco WS-CE500-24TT|-|-|-\n\
-|Hewlett Packard|-|-|-|-|-\n\
DAIKIN Industries Ltd. (53)|Hon Hai Precision Ind.|4.2.7|EFV-321|-|-|0.7.5\n\
Rockwell Automation/Allen-Bradley (1)|Cisco Systems|1756-ENBT/A|-|-|-|4.3\n\
SEL|SCHWEITZER ENGINEERING|-|-|-|-|-\n\
SEL|SCHWEITZER ENGINEERING|-|SEL-487E relay|-|-|-\n\
SEL|SCHWEITZER ENGINEERING|-|SEL-487E relay|-|-|R320\n\
Schneider Electric|TELEMECANIQUE ELECTRIQUE|-|-|-|-|-\n\
Schneider Electric|TELEMECANIQUE ELECTRIQUE|-|-|-|-|V3.10\n\
-|Siemens|-|SIMATIC HMI TP1200|-|-|-\n\
Moxa|MOXA TECHNOLOGIES CORP., LTD.|-|-|-|-|-\n\
Moxa|MOXA TECHNOLOGIES CORP., LTD.|-|-|-|-|4.2\n\
-|Dell|-|Engineering workstation|-|-|-\n\
-|Cisco Systems|-|cisco IE-3400-8P2S|-|-|-\n\
Honeywell Inc. (17)|Honeywell|-|-|-|-|-\n\
-|Siemens AG|-|-|-|et200sp-177|-\n\
-|Siemens AG|-|ET 200SP|-|et200sp-177|-\n\
-|Siemens AG|-|-|-|et200sp-178|-\n\
-|Siemens AG|-|ET 200SP|-|et200sp-178|-\n\
-|Siemens AG|-|-|-|et200sp-179|-\n\
-|Siemens AG|-|ET 200SP|-|et200sp-179|-\n\
-|Siemens AG|-|-|-|et200sp-180|-\n\
-|Siemens AG|-|ET 200SP|-|et200sp-180|-\n\
Rockwell Automation/Allen-Bradley (1)|Rockwell Automation|-|-|-|-|-\n\
Rockwell Automation/Allen-Bradley (1)|Rockwell Automation|-|-|-|-|33.11\n\
Rockwell Automation/Allen-Bradley (1)|Rockwell Automation|1756-L83E/B|-|-|-|33.11\n\
Rockwell Automation/Allen-Bradley (1)|Rockwell Automation|1769-L33ER/A|-|-|-|33.11";

    fn identity_of(fields: [Option<&str>; 7]) -> Identity {
        let [vendor, mac_vendor, product, model, order_number, name, firmware] =
            fields.map(|field| field.map(str::to_owned));
        Identity {
            vendor,
            mac_vendor,
            product,
            model,
            order_number,
            name,
            firmware,
        }
    }

    fn seen() -> impl Iterator<Item = Identity> {
        SEEN.lines().map(|line| {
            let mut fields = line.split('|').map(|f| Some(f).filter(|f| *f != "-"));
            identity_of(std::array::from_fn(|_| fields.next().flatten()))
        })
    }

    /// A vendor's answer describes only the advisories it keeps: the same answer as
    /// the walk over every entry of the vendor.
    #[test]
    fn every_vendor_only_answer_equals_the_full_walk() {
        // A fresh catalogue: the answers are built here, not taken from another test.
        let embedded = super::super::embedded();
        let catalogue = Catalogue::new(embedded.advisories().to_vec(), String::new());
        let mut low = 0;
        for (key, vendor) in &catalogue.by_vendor {
            let identity = Identity {
                vendor: Some(key.clone()),
                ..Identity::default()
            };
            let walked = catalogue.matches_with(&identity, false);
            assert_eq!(catalogue.vendor_only(key, vendor)[..], walked[..], "{key}");
            low += walked.len();
        }
        assert!(low > catalogue.by_vendor.len(), "{low}");
    }

    /// The index changes which entries are checked, never the answer: the indexed
    /// matcher against the walk over every entry of the device's vendors, for the
    /// identities seen, the hand-checked ones, and identities made of the catalogue's
    /// own product names, order numbers and wildcards under every vendor.
    #[test]
    fn indexed_matching_equals_the_full_walk() {
        let catalogue = super::super::embedded();
        let mut identities: Vec<Identity> = seen().collect();
        for fields in [
            [
                None,
                None,
                None,
                None,
                Some("6ES7 214-1AG40-0XB0"),
                None,
                Some("V4.5.0"),
            ],
            [
                None,
                None,
                None,
                Some("CPU 1214C DC/DC/DC"),
                Some("6ES7 214-1AG40-0XB0"),
                None,
                Some("V4.5.2"),
            ],
            [
                Some("Schneider Electric"),
                None,
                Some("BMX P34 2020"),
                None,
                None,
                None,
                Some("v3.40"),
            ],
            [
                Some("Rockwell Automation/Allen-Bradley (1)"),
                None,
                Some("1756-EN2T/D"),
                None,
                None,
                None,
                Some("11.4"),
            ],
            [
                Some("Rockwell Automation/Allen-Bradley (1)"),
                None,
                Some("1756-EN2T/B"),
                None,
                None,
                None,
                None,
            ],
            [
                Some("Rockwell Automation/Allen-Bradley (1)"),
                None,
                Some("1756-L71"),
                None,
                None,
                None,
                Some("20.11"),
            ],
            [
                Some("Rockwell Automation"),
                None,
                Some("1769-L33ER"),
                None,
                None,
                None,
                Some("30.1"),
            ],
            [
                Some("Schneider Electric"),
                None,
                Some("TM221CE16R"),
                None,
                None,
                None,
                None,
            ],
            [Some("Siemens AG"), None, None, None, None, None, None],
            [
                Some("ABB, Phoenix Contact, Schneider Electric, Siemens, and WAGO"),
                None,
                None,
                None,
                None,
                None,
                None,
            ],
            [
                Some("ABB, Phoenix Contact, Siemens"),
                None,
                Some("ET 200SP"),
                None,
                None,
                None,
                Some("V2.0"),
            ],
        ] {
            identities.push(identity_of(fields));
        }
        // Every 10th product entry of the catalogue, as a device would report it.
        let mut vendors: BTreeMap<&str, ()> = BTreeMap::new();
        for (n, product) in catalogue
            .advisories()
            .iter()
            .flat_map(|a| a.products.iter())
            .enumerate()
        {
            vendors.insert(product.vendor.as_str(), ());
            if n % 10 != 0 {
                continue;
            }
            let vendor = Some(product.vendor.clone());
            let firmware = ["1.0", "V2.1.3", "10.4"][n % 3].to_owned();
            identities.push(Identity {
                vendor: vendor.clone(),
                product: Some(product.name.clone()),
                firmware: Some(firmware.clone()),
                ..Identity::default()
            });
            let words: Vec<&str> = product.name.split_whitespace().collect();
            identities.push(Identity {
                mac_vendor: vendor.clone(),
                model: Some(words.iter().take(3).copied().collect::<Vec<_>>().join(" ")),
                name: words.last().map(|w| (*w).to_owned()),
                ..Identity::default()
            });
            for token in &words {
                let token = token.trim_matches(|c: char| "(),;:".contains(c));
                if !token.bytes().any(|b| b.is_ascii_digit()) {
                    continue;
                }
                // Wildcards (`BMXP34*`) as a part number of the family.
                let part = match token.strip_suffix('*') {
                    Some(prefix) => format!("{}2020", prefix.trim_end_matches('*')),
                    None => token.to_owned(),
                };
                identities.push(Identity {
                    vendor: vendor.clone(),
                    order_number: Some(part),
                    firmware: (n % 2 == 0).then(|| firmware.clone()),
                    ..Identity::default()
                });
            }
        }
        // A vendor and nothing else, for every vendor named.
        for vendor in vendors.keys() {
            identities.push(Identity {
                vendor: Some((*vendor).to_owned()),
                ..Identity::default()
            });
        }
        let mut matched = 0;
        for identity in &identities {
            let indexed = catalogue.matches_with(identity, true);
            assert_eq!(
                indexed,
                catalogue.matches_with(identity, false),
                "{identity:?}"
            );
            matched += usize::from(!indexed.is_empty());
        }
        // The set exercises matching, not only misses.
        assert!(
            matched > identities.len() / 2,
            "{matched} of {}",
            identities.len()
        );
    }
}
