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
use std::net::IpAddr;
use std::sync::Arc;

use super::{Analyzer, DeviceRecord, Subject};
use crate::advisories::view::{VulnerabilitiesView, VulnerabilityView, VulnerableDevice};
use crate::advisories::{self, table, Catalogue, Confidence, DeviceMatch, Identity};
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
        let Ok(revision) = self.store.advisories_revision() else {
            self.counters.store_errors += 1;
            return;
        };
        if self.vulnerabilities.revision == Some(revision) {
            return;
        }
        self.vulnerabilities.revision = Some(revision);
        let imported = match self.store.imported_advisories() {
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
        self.publish_vulnerable_devices();
    }

    /// Matches one device again after its identity changed; raises
    /// `vulnerable_device` for high-confidence advisories it did not match before.
    pub(super) fn rematch_device(&mut self, ip: IpAddr, ts_ns: u64) {
        let Some(record) = self.by_ip.get_mut(&ip) else {
            return;
        };
        let catalogue = self
            .vulnerabilities
            .catalogue
            .get_or_insert_with(advisories::embedded);
        let identity = Identity::from_fields(&record.identity, record.vendor);
        let matches = catalogue.matches(&identity);
        if matches == record.vulnerabilities {
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
            self.publish_vulnerable_devices();
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
        let context = serde_json::json!({
            "firmware": firmware,
            "advisories": gained
                .iter()
                .map(|m| VulnerabilityView::from(*m))
                .collect::<Vec<_>>(),
        });
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
        self.publish_vulnerable_devices();
    }

    /// Sets `otsensor_vulnerable_devices{severity}`.
    pub(super) fn publish_vulnerable_devices(&self) {
        if let Some(metrics) = &self.metrics {
            for severity in SEVERITIES {
                let count = self
                    .vulnerabilities
                    .counts
                    .get(severity)
                    .copied()
                    .unwrap_or(0);
                metrics
                    .vulnerable_devices
                    .with_label_values(&[severity])
                    .set(count);
            }
        }
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
