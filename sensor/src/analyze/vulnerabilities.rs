//! Known vulnerabilities of the inventory: the analyzer's side of [`crate::advisories`].
//!
//! The analyzer holds one [`Catalogue`] (the embedded table plus the advisories
//! imported into its store) and matches a device again whenever an identity attribute
//! the matcher reads changes. The matches are kept on the device record
//! (`vulnerabilities`), so they are stored, served by the API and survive restarts.
//!
//! **`vulnerable_device` is raised when a device gains a high-confidence advisory it
//! did not have**: its identity became complete enough to match, its firmware changed
//! into an affected range, or an imported advisory covers it. A device that stays
//! affected is not raised again; one whose firmware leaves the range loses the match.

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Analyzer, DeviceRecord, Subject};
use crate::advisories::view::{VulnerabilitiesView, VulnerabilityView, VulnerableDevice};
use crate::advisories::{self, table, Catalogue, Confidence, DeviceMatch, Identity};
use crate::detect::Detail;
use crate::observe::IdentityField;
use crate::store::DeviceKey;

use crate::advisories::view::SEVERITIES;

/// The catalogue in force and what the gauge shows.
#[derive(Default)]
pub(super) struct Vulnerabilities {
    /// Built on first use (decompressing and indexing the table takes tens of
    /// milliseconds; a run without device identities never needs it).
    catalogue: Option<Arc<Catalogue>>,
    /// The store's import revision the catalogue includes.
    revision: Option<i64>,
    /// Vulnerable devices (a high or medium match) by the severity of their worst one.
    counts: BTreeMap<&'static str, i64>,
    /// True when `catalogue` includes imported advisories.
    imports: bool,
    /// Catalogue changes so far (imports picked up).
    changes: u64,
    /// The catalogue's answer per identity already matched: a plant's devices of one
    /// model report the same identity, and a match allocates its answer and checks the
    /// candidate entries of the vendor's index. Keyed by the hash of the fields the
    /// matcher reads (see [`match_fields`]), so a lookup borrows the device's identity;
    /// the entry keeps the fields to rule out a collision. Cleared when the catalogue
    /// changes, and when it holds `MAX_MATCH_MEMO` identities (bounded memory).
    memo: HashMap<u64, (MatchKey, Matches)>,
}

/// Distinct identities whose matches are remembered (see `Vulnerabilities::memo`).
const MAX_MATCH_MEMO: usize = 4096;

/// A device's advisory matches, shared by the memo and every device with the same
/// identity: handing them to a device (or cloning its record for the store) counts a
/// reference instead of copying the advisories' texts.
pub type Matches = Arc<[DeviceMatch]>;

/// No matches, shared: a new device record allocates none.
pub fn no_matches() -> Matches {
    static NONE: std::sync::OnceLock<Matches> = std::sync::OnceLock::new();
    Arc::clone(NONE.get_or_init(|| Arc::from(Vec::new())))
}

/// Everything [`Catalogue::matches`] reads of an [`Identity`], in [`match_fields`]'
/// order.
type MatchKey = [Option<Box<str>>; 7];

/// The fields [`Identity::from_fields`] takes from a record, borrowed (blank values
/// are absent, as there): what the memo is keyed by.
fn match_fields<'a>(
    fields: &'a BTreeMap<IdentityField, String>,
    mac_vendor: Option<&'a str>,
) -> [Option<&'a str>; 7] {
    let get = |field| {
        fields
            .get(&field)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    [
        get(IdentityField::Vendor),
        mac_vendor,
        get(IdentityField::Product),
        get(IdentityField::Model),
        get(IdentityField::OrderNumber),
        get(IdentityField::Name),
        get(IdentityField::Firmware),
    ]
}

impl Vulnerabilities {
    /// The catalogue's matches of a record's identity, from the memo when it was
    /// matched before (then nothing is allocated).
    fn matches(
        &mut self,
        fields: &BTreeMap<IdentityField, String>,
        mac_vendor: Option<&str>,
    ) -> Matches {
        let key = match_fields(fields, mac_vendor);
        let hash = self.memo.hasher().hash_one(key);
        if let Some((kept, matches)) = self.memo.get(&hash) {
            if kept.iter().map(Option::as_deref).eq(key) {
                return Arc::clone(matches);
            }
        }
        let catalogue = self.catalogue.get_or_insert_with(advisories::embedded);
        let matches = catalogue.shared_matches(&Identity::from_fields(fields, mac_vendor));
        if self.memo.len() >= MAX_MATCH_MEMO {
            self.memo.clear();
        }
        let kept = key.map(|field| field.map(Box::from));
        self.memo.insert(hash, (kept, Arc::clone(&matches)));
        matches
    }
}

impl std::fmt::Debug for Vulnerabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vulnerabilities")
            .field("advisories", &self.catalogue.as_ref().map(|c| c.len()))
            .field("revision", &self.revision)
            .finish()
    }
}

/// Identity attributes the matcher reads.
pub(super) fn matters(field: IdentityField) -> bool {
    matches!(
        field,
        IdentityField::Vendor
            | IdentityField::Product
            | IdentityField::Model
            | IdentityField::OrderNumber
            | IdentityField::Name
            | IdentityField::Firmware
    )
}

/// The severity a device counts under: its worst high- or medium-confidence match.
fn device_severity(matches: &[DeviceMatch]) -> Option<&'static str> {
    matches
        .iter()
        .filter(|m| m.confidence != Confidence::Low)
        .map(|m| m.max_cvss_tenths)
        .max()
        .map(advisories::matcher::severity)
}

impl Analyzer {
    /// Loads the store's imported advisories when they changed since the catalogue was
    /// built, and then matches every device again.
    pub(super) fn refresh_advisories(&mut self) {
        let revision = self.store().advisories_revision();
        let Ok(revision) = revision else {
            self.counters.store_errors += 1;
            return;
        };
        if self.vulnerabilities.revision == Some(revision) {
            return;
        }
        self.vulnerabilities.revision = Some(revision);
        let blocks = self.store().imported_advisories();
        let imported = match blocks {
            Ok(blocks) => blocks
                .iter()
                .filter_map(|block| table::read(block).ok())
                .flatten()
                .collect::<Vec<_>>(),
            Err(_) => {
                self.counters.store_errors += 1;
                return;
            }
        };
        self.vulnerabilities.imports = !imported.is_empty();
        self.vulnerabilities.changes += 1;
        self.vulnerabilities.memo.clear();
        self.vulnerabilities.catalogue = if imported.is_empty() {
            None
        } else {
            Some(Arc::new(advisories::embedded().with_imports(imported)))
        };
        self.rematch_all();
    }

    /// Matches every device with an identity again (start, new advisories).
    pub(super) fn rematch_all(&mut self) {
        let mut ips: Vec<IpAddr> = self
            .by_ip
            .iter()
            .filter(|(_, r)| !r.identity.is_empty() || !r.vulnerabilities.is_empty())
            .map(|(ip, _)| *ip)
            .collect();
        ips.sort_unstable();
        for ip in ips {
            let ts_ns = self.by_ip.get(&ip).map_or(0, |r| r.last_seen_ns);
            self.rematch_device(ip, ts_ns);
        }
    }

    /// Matches one device again after its identity changed; raises
    /// `vulnerable_device` for high-confidence advisories it did not match before.
    pub(super) fn rematch_device(&mut self, ip: IpAddr, ts_ns: u64) {
        let Some(record) = self.by_ip.get_mut(&ip) else {
            return;
        };
        let matches = self
            .vulnerabilities
            .matches(&record.identity, record.vendor);
        if Arc::ptr_eq(&matches, &record.vulnerabilities) || matches == record.vulnerabilities {
            return;
        }
        let old = std::mem::replace(&mut record.vulnerabilities, matches);
        let new = &record.vulnerabilities;
        self.dirty.insert(DeviceKey::Ip(ip));
        for (severity, delta) in [(device_severity(&old), -1), (device_severity(new), 1)] {
            if let Some(severity) = severity {
                *self.vulnerabilities.counts.entry(severity).or_default() += delta;
            }
        }
        let gained: Vec<&DeviceMatch> = new
            .iter()
            .filter(|m| m.confidence == Confidence::High)
            .filter(|m| {
                !old.iter()
                    .any(|o| o.confidence == Confidence::High && o.advisory == m.advisory)
            })
            .collect();
        if gained.is_empty() {
            return;
        }
        let firmware = record.identity.get(&IdentityField::Firmware).cloned();
        let ids: Vec<&str> = gained.iter().map(|m| m.advisory.as_str()).collect();
        let worst = gained.iter().map(|m| m.max_cvss_tenths).max().unwrap_or(0);
        let message = format!(
            "{ip} matches {} (CVSS up to {}.{}){}",
            ids.join(", "),
            worst / 10,
            worst % 10,
            firmware
                .as_deref()
                .map(|f| format!(" with firmware {f}"))
                .unwrap_or_default()
        );
        let context = Detail::Vulnerable {
            firmware,
            advisories: gained.iter().map(|m| VulnerabilityView::from(*m)).collect(),
        };
        self.raise(
            "vulnerable_device",
            ts_ns,
            Subject {
                src: Some(ip),
                ..Subject::default()
            },
            message,
            context,
            Vec::new(),
        );
    }

    /// Vulnerable devices by severity (`otsensor_vulnerable_devices{severity}`).
    pub(super) fn vulnerable_device_counts(&self) -> [(&'static str, i64); SEVERITIES.len()] {
        SEVERITIES.map(|severity| {
            let count = self
                .vulnerabilities
                .counts
                .get(severity)
                .copied()
                .unwrap_or(0);
            (severity, count)
        })
    }

    /// The answer of `GET /api/vulnerabilities` without the catalogue's description
    /// (see [`VulnerabilitiesView::describe`]).
    pub(super) fn vulnerabilities_view(&self) -> VulnerabilitiesView {
        let mut devices: Vec<(Option<u8>, VulnerableDevice)> = self
            .by_ip
            .values()
            .filter(|r| !r.vulnerabilities.is_empty())
            .map(|record: &DeviceRecord| {
                let identity = |field| record.identity.get(&field).cloned();
                let worst = record
                    .vulnerabilities
                    .iter()
                    .filter(|m| m.confidence != Confidence::Low)
                    .map(|m| m.max_cvss_tenths)
                    .max();
                (
                    worst,
                    VulnerableDevice {
                        device: record.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                        vendor: identity(IdentityField::Vendor)
                            .or_else(|| record.vendor.map(str::to_owned)),
                        model: identity(IdentityField::Model)
                            .or_else(|| identity(IdentityField::Product))
                            .or_else(|| identity(IdentityField::OrderNumber)),
                        firmware: identity(IdentityField::Firmware),
                        severity: device_severity(&record.vulnerabilities).map(str::to_owned),
                        vulnerabilities: record
                            .vulnerabilities
                            .iter()
                            .map(VulnerabilityView::from)
                            .collect(),
                    },
                )
            })
            .collect();
        devices.sort_by(|(a, x), (b, y)| b.cmp(a).then_with(|| x.device.cmp(&y.device)));
        VulnerabilitiesView {
            source: String::new(),
            advisories: 0,
            products: 0,
            vulnerable_devices: SEVERITIES
                .iter()
                .map(|s| {
                    let n = self.vulnerabilities.counts.get(s).copied().unwrap_or(0);
                    ((*s).to_owned(), n)
                })
                .collect(),
            devices: devices.into_iter().map(|(_, d)| d).collect(),
        }
    }

    /// The catalogue in force when it includes imported advisories (`None`: the
    /// embedded one, which the reader builds when it needs it).
    pub(super) fn imported_catalogue(&self) -> Option<Arc<Catalogue>> {
        self.vulnerabilities
            .catalogue
            .clone()
            .filter(|_| self.vulnerabilities.imports)
    }

    /// Grows when the catalogue changes (an import), for the API's snapshot.
    pub(super) fn advisory_changes(&self) -> u64 {
        self.vulnerabilities.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisories::{Advisory, Product, Vuln};
    use crate::config::Config;
    use crate::control::ControlHandler;
    use crate::observe::{Observation, ShortText};
    use crate::store::Store;
    use otsensor_wire::Protocol;

    /// An advisory imported while the analyzer runs reaches the API snapshot: the
    /// catalogue in force, the device's matches, and a change the publisher notices.
    #[test]
    fn an_import_reaches_the_api_snapshot() {
        let policy = Arc::new(Config::default().validate().expect("policy"));
        let store = Store::temporary().expect("store");
        let path = store.path().expect("file").to_path_buf();
        let mut a = Analyzer::with_store(policy, None, store);
        let ip: IpAddr = "10.0.0.9".parse().expect("ip");
        a.observe(Observation::DeviceSeen {
            ts_ns: 1,
            mac: None,
            ip: Some(ip),
            vlan: 0,
        });
        for (field, value) in [
            (IdentityField::Vendor, "Rockwell Automation"),
            (IdentityField::Product, "1756-EN9Z/A"),
            (IdentityField::Firmware, "2.1"),
        ] {
            a.observe(Observation::Identity {
                ts_ns: 2,
                device: ip,
                mac: None,
                protocol: Protocol::Enip,
                field,
                value: ShortText::from_bytes(value.as_bytes()),
            });
        }
        let before = a.snapshot();
        assert!(before.catalogue.is_none(), "nothing imported yet");
        let listed = |view: &VulnerabilitiesView| {
            view.devices
                .iter()
                .flat_map(|d| d.vulnerabilities.iter().map(|v| v.advisory.clone()))
                .collect::<Vec<_>>()
        };
        let view = before.vulnerabilities.expect("view");
        assert!(!listed(&view).contains(&"ICSA-99-001-01".to_owned()));
        let changes = a.change_count();

        let advisory = Advisory {
            id: "ICSA-99-001-01".into(),
            title: "Example EtherNet/IP module".into(),
            released: "2099-01-01".into(),
            revised: "2099-01-02".into(),
            vulns: vec![Vuln {
                cve: "CVE-2099-0001".into(),
                cvss_tenths: 91,
            }],
            products: vec![Product {
                vendor: "Rockwell Automation".into(),
                name: "1756-EN9Z".into(),
                range: "<= 2.001".into(),
                vulns: Vec::new(),
            }],
        };
        let mut record = String::new();
        table::write(&advisory, &mut record);
        Store::open(&path)
            .expect("second connection")
            .import_advisories(&[(advisory.id.clone(), advisory.revised.clone(), record)])
            .expect("import");
        a.reload().expect("reload");

        assert!(a.change_count() > changes, "the publisher sees the import");
        let after = a.snapshot();
        let catalogue = after.catalogue.as_ref().expect("imported catalogue");
        assert_eq!(catalogue.len(), advisories::embedded().len() + 1);
        let mut view = after.vulnerabilities.clone().expect("view");
        assert_eq!(listed(&view), ["ICSA-99-001-01"]);
        assert_eq!(view.devices[0].severity.as_deref(), Some("critical"));
        view.describe(catalogue);
        assert_eq!(view.advisories, catalogue.len());
    }
}
