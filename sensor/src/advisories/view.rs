//! What the API shows of the advisory matches (`/api/devices`, `/api/vulnerabilities`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Confidence, DeviceMatch};

/// Severity labels of `otsensor_vulnerable_devices`, most severe first.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "none"];

/// One match as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VulnerabilityView {
    pub advisory: String,
    pub title: String,
    pub cves: Vec<String>,
    pub max_cvss: f64,
    pub severity: String,
    pub confidence: Confidence,
    pub product: String,
    pub affected: String,
    pub fixed: Option<String>,
    pub reason: String,
}

impl From<&DeviceMatch> for VulnerabilityView {
    fn from(m: &DeviceMatch) -> VulnerabilityView {
        VulnerabilityView {
            advisory: m.advisory.clone(),
            title: m.title.clone(),
            cves: m.cves.clone(),
            max_cvss: m.max_cvss(),
            severity: m.severity.clone(),
            confidence: m.confidence,
            product: m.product.clone(),
            affected: m.affected.clone(),
            fixed: m.fixed.clone(),
            reason: m.reason.clone(),
        }
    }
}

/// A device with its matches, for `GET /api/vulnerabilities`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VulnerableDevice {
    /// The device id of `/api/devices/{id}`.
    pub device: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    /// Severity of its worst high- or medium-confidence match.
    pub severity: Option<String>,
    pub vulnerabilities: Vec<VulnerabilityView>,
}

/// What `GET /api/vulnerabilities` answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VulnerabilitiesView {
    /// The advisory catalogue: where it came from and its size.
    pub source: String,
    pub advisories: usize,
    pub products: usize,
    /// Devices with a high- or medium-confidence match, by severity.
    pub vulnerable_devices: BTreeMap<String, i64>,
    /// Devices with any match, worst first.
    pub devices: Vec<VulnerableDevice>,
}

impl VulnerabilitiesView {
    /// Fills in where the advisory catalogue came from and its size.
    pub fn describe(&mut self, catalogue: &super::Catalogue) {
        catalogue.source().clone_into(&mut self.source);
        self.advisories = catalogue.len();
        self.products = catalogue.entries();
    }
}
