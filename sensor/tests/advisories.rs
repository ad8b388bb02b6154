//! Known vulnerabilities from CISA's ICS advisories (`../shared/advisories/cisa-csaf-ot`).
//!
//! The expected advisories, CVEs and scores below were read by hand from the CSAF
//! documents named (product tree entry and `product_status.known_affected` of each
//! vulnerability); the identities come from real captures where the shared set has
//! them (a ControlLogix 1756-L61 and its 1756-ENBT module, an S7-300 CPU 315-2 PN/DP)
//! and from fixtures shaped like the protocols' reports otherwise (S7-1200 via SZL, a
//! Modicon M340 via Modbus Read Device Identification).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use otsensor::advisories::{self, csaf, Confidence, DeviceMatch, Identity};
use otsensor::analyze::Analyzer;
use otsensor::capture::pcap::PcapFiles;
use otsensor::config::Config;
use otsensor::observe::{IdentityField, Observation, ShortText};
use otsensor::pipeline::{self, ReplayOptions};
use otsensor::store::Store;
use otsensor_wire::Protocol;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("otsensor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn every_shared_csaf_file_parses_or_is_skipped_with_a_reason() {
    let mut files = Vec::new();
    json_files(&shared().join("advisories/cisa-csaf-ot"), &mut files);
    let mut parsed = 0;
    let mut products = 0;
    let mut skipped = Vec::new();
    for path in &files {
        match csaf::parse(&std::fs::read(path).expect("read")) {
            Ok(advisory) => {
                parsed += 1;
                products += advisory.products.len();
                assert!(
                    !advisory.id.is_empty() && !advisory.vulns.is_empty(),
                    "{path:?}"
                );
            }
            Err(error) => skipped.push((path.clone(), error.to_string())),
        }
    }
    eprintln!(
        "{} files: {parsed} advisories ({products} affected products), {} skipped: {skipped:?}",
        files.len(),
        skipped.len()
    );
    // 2,379 advisories (README) and CISA's feed index, which is not a CSAF document.
    assert_eq!(files.len(), 2380);
    assert_eq!(parsed, 2379);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].0.ends_with("cisa-csaf-ot-feed-tlp-white.json"));
    assert!(skipped[0].1.contains("not a CSAF document"), "{skipped:?}");
    // The embedded table is this set (regenerate with `cargo xtask gen-advisories`).
    let embedded = advisories::embedded();
    assert_eq!(embedded.len(), parsed);
    assert_eq!(embedded.entries(), products);
    assert!(
        embedded.source().contains("6960219f"),
        "{}",
        embedded.source()
    );
}

/// Advisory id → (confidence, CVEs, max CVSS in tenths) of a device's matches.
type Found = BTreeMap<String, (Confidence, Vec<String>, u8)>;

fn found(matches: &[DeviceMatch]) -> Found {
    matches
        .iter()
        .map(|m| {
            let mut cves = m.cves.clone();
            cves.sort();
            (m.advisory.clone(), (m.confidence, cves, m.max_cvss_tenths))
        })
        .collect()
}

fn ids(found: &Found, confidence: Confidence) -> Vec<&str> {
    found
        .iter()
        .filter(|(_, (c, _, _))| *c == confidence)
        .map(|(id, _)| id.as_str())
        .collect()
}

/// Replays `capture` into a fresh store and returns the device records with an identity.
fn replay_devices(
    capture: &str,
    scratch: &Scratch,
) -> (Vec<serde_json::Value>, BTreeMap<String, u64>) {
    let db = scratch.0.join(format!("{capture}.db"));
    let policy = Arc::new(Config::default().validate().expect("config"));
    let mut source = PcapFiles::open(&[shared().join("pcaps").join(capture)]).expect("capture");
    let summary = pipeline::replay(
        &mut source,
        policy,
        ReplayOptions {
            store: Some(Store::open(&db).expect("store")),
            ..Default::default()
        },
    )
    .expect("replay");
    let store = Store::open(&db).expect("store");
    let devices = store
        .devices()
        .expect("devices")
        .into_iter()
        .map(|(_, record)| record)
        .filter(|r| r["identity"].as_object().is_some_and(|i| !i.is_empty()))
        .collect();
    (devices, summary.alerts_by_signature)
}

fn matches_of(record: &serde_json::Value) -> Vec<DeviceMatch> {
    serde_json::from_value(record["vulnerabilities"].clone()).expect("vulnerabilities")
}

#[test]
fn real_capture_identities_match_the_hand_checked_advisories() {
    let scratch = Scratch::new("advisories-captures");

    // ControlLogix EtherNet/IP module, ListIdentity: 1756-ENBT/A, revision 4.3.
    let (devices, alerts) = replay_devices("enip-cip-example-io-listidentity.pcap", &scratch);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["identity"]["product"], "1756-ENBT/A");
    let enbt = found(&matches_of(&devices[0]));
    // ICSA-18-310-02: "1756 ControlLogix EtherNet/IP Communications Modules 1756-ENBT",
    // vers:all/*, CVE-2018-17924 (CVSS 8.6). No other advisory names the 1756-ENBT.
    assert_eq!(
        enbt,
        Found::from([(
            "ICSA-18-310-02".to_owned(),
            (Confidence::High, vec!["CVE-2018-17924".to_owned()], 86)
        )])
    );
    assert_eq!(alerts.get("vulnerable_device"), Some(&1), "{alerts:?}");

    // ControlLogix 5560 controller: "1756-L61/B LOGIX5561", revision 16.20.
    let (devices, alerts) = replay_devices("enip-cl5000-reboot-restart.pcap", &scratch);
    let l61 = devices
        .iter()
        .find(|d| d["identity"]["product"] == "1756-L61/B LOGIX5561")
        .expect("the 1756-L61");
    let l61 = found(&matches_of(l61));
    // ICSA-22-090-05 lists "ControlLogix 5560 controllers" (family), all versions,
    // CVE-2022-1161 (10.0). Same vendor, other products (1756-EN2T modules of
    // ICSA-23-193-01, CompactLogix 5370 of ICSA-19-120-01) do not match.
    assert_eq!(
        l61,
        Found::from([(
            "ICSA-22-090-05".to_owned(),
            (Confidence::Medium, vec!["CVE-2022-1161".to_owned()], 100)
        )])
    );
    assert_eq!(
        alerts.get("vulnerable_device"),
        None,
        "family only: {alerts:?}"
    );

    // S7-300 CPU 315-2 PN/DP, SZL 0x0011/0x001C: 6ES7 315-2EH14-0AB0, firmware V3.2.6.
    let (devices, alerts) = replay_devices("s7comm-ident-szl-upload.pcap", &scratch);
    assert_eq!(devices.len(), 1);
    let s7 = found(&matches_of(&devices[0]));
    // Entries "SIMATIC S7-300 CPU 315-2 PN/DP (6ES7315-2EH14-0AB0)" with ranges
    // containing V3.2.6: <V3.2.16 (18-079-02, 19-099-06), <V3.2.17 (19-283-01,
    // 19-283-02), <V3.X.17 (20-042-05), all (20-105-08), <V3.2.19 (22-104-06,
    // 22-314-02, 23-222-09).
    assert_eq!(
        ids(&s7, Confidence::High),
        [
            "ICSA-18-079-02",
            "ICSA-19-099-06",
            "ICSA-19-283-01",
            "ICSA-19-283-02",
            "ICSA-20-042-05",
            "ICSA-20-105-08",
            "ICSA-22-104-06",
            "ICSA-22-314-02",
            "ICSA-23-222-09",
        ]
    );
    // "SIMATIC S7-300 CPU family (incl. related ET200 CPUs and SIPLUS variants)":
    // <V3.X.14, <V3.X.16 (twice), <V3.X.17, all versions (twice).
    assert_eq!(
        ids(&s7, Confidence::Medium),
        [
            "ICSA-17-129-02",
            "ICSA-17-339-01",
            "ICSA-19-043-04",
            "ICSA-20-070-02",
            "ICSA-20-252-02",
            "ICSA-20-315-04",
        ]
    );
    assert_eq!(
        s7["ICSA-20-105-08"],
        (Confidence::High, vec!["CVE-2019-19300".to_owned()], 75)
    );
    assert_eq!(
        s7["ICSA-22-104-06"],
        (Confidence::High, vec!["CVE-2022-25622".to_owned()], 53)
    );
    assert_eq!(alerts.get("vulnerable_device"), Some(&1), "{alerts:?}");
}

fn identity(fields: &[(IdentityField, &str)]) -> Identity {
    let map: BTreeMap<IdentityField, String> =
        fields.iter().map(|(f, v)| (*f, (*v).to_owned())).collect();
    Identity::from_fields(&map, None)
}

#[test]
fn fixture_identities_and_negative_cases() {
    let catalogue = advisories::embedded();

    // S7-1200 CPU 1214C DC/DC/DC as SZL reports it, firmware V4.5.0.
    let s7_1200 = found(&catalogue.matches(&identity(&[
        (IdentityField::OrderNumber, "6ES7 214-1AG40-0XB0"),
        (IdentityField::Model, "CPU 1214C DC/DC/DC"),
        (IdentityField::Firmware, "V4.5.0"),
    ])));
    // ICSA-24-284-01 names the order number, all versions: CVE-2024-46886 (4.7).
    assert_eq!(ids(&s7_1200, Confidence::High), ["ICSA-24-284-01"]);
    assert_eq!(
        s7_1200["ICSA-24-284-01"],
        (Confidence::High, vec!["CVE-2024-46886".to_owned()], 47)
    );
    // "SIMATIC S7-1200 CPU family (incl. SIPLUS variants)" entries whose range holds
    // V4.5.0: 19-318-02 (all / FS text), 19-344-06 (>= 4.4.0, only CVE-2019-10943),
    // 21-222-09 (= V4.5.0), 22-041-01 (>=V4.5.0<V4.5.2), 22-104-05 (<V4.5.2),
    // 22-167-14, 22-314-02, 22-349-03 (<V4.6.0), 23-222-07, 23-222-09, 23-257-01 (all).
    assert_eq!(
        ids(&s7_1200, Confidence::Medium),
        [
            "ICSA-19-318-02",
            "ICSA-19-344-06",
            "ICSA-21-222-09",
            "ICSA-22-041-01",
            "ICSA-22-104-05",
            "ICSA-22-167-14",
            "ICSA-22-314-02",
            "ICSA-22-349-03",
            "ICSA-23-222-07",
            "ICSA-23-222-09",
            "ICSA-23-257-01",
        ]
    );
    // Its product_status lists both CVEs for the ">= 4.4.0" entry, whose name says
    // "(only affected by CVE-2019-10943)": the text wins.
    assert_eq!(s7_1200["ICSA-19-344-06"].1, ["CVE-2019-10943"]);
    // Fixed versions: <V4.5.0 (21-152-01, 22-286-04), <V4.4.0 (20-105-08); and the
    // CP 1243-1 of 22-132-13 is another product of the family.
    for fixed in [
        "ICSA-21-152-01",
        "ICSA-22-286-04",
        "ICSA-20-105-08",
        "ICSA-22-132-13",
    ] {
        assert!(!s7_1200.contains_key(fixed), "{fixed}");
    }

    // The same CPU one release on: V4.5.2 leaves 22-041-01 and 22-104-05.
    let patched = found(&catalogue.matches(&identity(&[
        (IdentityField::OrderNumber, "6ES7 214-1AG40-0XB0"),
        (IdentityField::Firmware, "V4.5.2"),
    ])));
    assert!(!patched.contains_key("ICSA-22-041-01"));
    assert!(!patched.contains_key("ICSA-22-104-05"));
    assert!(patched.contains_key("ICSA-22-167-14"));

    // Modicon M340 CPU BMX P34 2020, firmware SV3.40 (Modbus device identification).
    let m340 = found(&catalogue.matches(&identity(&[
        (IdentityField::Vendor, "Schneider Electric"),
        (IdentityField::Product, "BMX P34 2020"),
        (IdentityField::Firmware, "v3.40"),
    ])));
    // "Modicon M340" (18-086-01, 19-136-01: all), "M340 CPUs BMX P34x" (21-005-01),
    // "Modicon M340 CPU (part numbers BMXP34*)" (21-194-02, 23-227-01: all; 23-201-01:
    // < SV3.51). Not 19-183-01 / 20-016-01 (< 3.01) nor 17-054-03 (< 2.9): fixed.
    assert_eq!(
        ids(&m340, Confidence::Medium),
        [
            "ICSA-18-086-01",
            "ICSA-19-136-01",
            "ICSA-21-005-01",
            "ICSA-21-194-02",
            "ICSA-23-201-01",
            "ICSA-23-227-01",
        ]
    );
    assert!(ids(&m340, Confidence::High).is_empty());
    assert_eq!(
        m340["ICSA-23-201-01"],
        (Confidence::Medium, vec!["CVE-2022-45788".to_owned()], 75)
    );
    assert_eq!(m340["ICSA-21-194-02"].2, 98);

    // 1756-EN2T series D: fixed at 11.4 for every advisory naming series D; series B
    // is "all versions" in ICSA-18-310-02 while series D there is <= 10.10.
    let en2t_d = found(&catalogue.matches(&identity(&[
        (
            IdentityField::Vendor,
            "Rockwell Automation/Allen-Bradley (1)",
        ),
        (IdentityField::Product, "1756-EN2T/D"),
        (IdentityField::Firmware, "11.4"),
    ])));
    assert!(en2t_d.is_empty(), "{en2t_d:?}");
    let en2t_b = found(&catalogue.matches(&identity(&[
        (
            IdentityField::Vendor,
            "Rockwell Automation/Allen-Bradley (1)",
        ),
        (IdentityField::Product, "1756-EN2T/B"),
        (IdentityField::Firmware, "11.4"),
    ])));
    assert_eq!(ids(&en2t_b, Confidence::High), ["ICSA-18-310-02"]);

    // No firmware reported: an exact model is only medium, and says why.
    let unknown = catalogue.matches(&identity(&[
        (
            IdentityField::Vendor,
            "Rockwell Automation/Allen-Bradley (1)",
        ),
        (IdentityField::Product, "1756-EN2T/D"),
    ]));
    let en2t = unknown
        .iter()
        .find(|m| m.advisory == "ICSA-23-193-01")
        .expect("ICSA-23-193-01");
    assert_eq!(en2t.confidence, Confidence::Medium);
    assert!(
        en2t.reason.contains("firmware not reported"),
        "{}",
        en2t.reason
    );
    assert_eq!(
        en2t.cves,
        ["CVE-2023-3595".to_owned(), "CVE-2023-3596".to_owned()]
    );

    // Cost of one match (printed, not asserted: timings belong in benchmarks).
    let s7 = identity(&[
        (IdentityField::OrderNumber, "6ES7 214-1AG40-0XB0"),
        (IdentityField::Model, "CPU 1214C DC/DC/DC"),
        (IdentityField::Firmware, "V4.5.0"),
    ]);
    let started = std::time::Instant::now();
    for _ in 0..100 {
        assert!(!catalogue.matches(&s7).is_empty());
    }
    let per_match = started.elapsed() / 100;
    let started = std::time::Instant::now();
    let rebuilt = advisories::Catalogue::new(catalogue.advisories().to_vec(), String::new());
    eprintln!(
        "one S7-1200 match: {per_match:?}; indexing {} advisories / {} entries: {:?}",
        rebuilt.len(),
        rebuilt.entries(),
        started.elapsed()
    );

    // A vendor and nothing else: vendor-only matches, capped and marked low.
    let vendor_only = catalogue.matches(&identity(&[(IdentityField::Vendor, "Siemens AG")]));
    assert_eq!(vendor_only.len(), 5);
    assert!(vendor_only.iter().all(|m| m.confidence == Confidence::Low));
    assert!(vendor_only.iter().all(|m| m.max_cvss_tenths >= 90));
}

fn analyzer() -> Analyzer {
    Analyzer::new(
        Arc::new(Config::default().validate().expect("config")),
        None,
    )
}

fn report_identity(a: &mut Analyzer, ts_ns: u64, ip: IpAddr, field: IdentityField, value: &str) {
    a.observe(Observation::Identity {
        ts_ns,
        device: ip,
        mac: None,
        protocol: Protocol::Enip,
        field,
        value: ShortText::from_bytes(value.as_bytes()),
    });
}

#[test]
fn firmware_changing_into_an_affected_range_raises_vulnerable_device() {
    const S: u64 = 1_000_000_000;
    let ip: IpAddr = "10.0.0.7".parse().expect("ip");
    let mut a = analyzer();
    a.observe(Observation::DeviceSeen {
        ts_ns: S,
        mac: Some([0, 0, 0xbc, 1, 2, 3]),
        ip: Some(ip),
        vlan: 0,
    });
    for (field, value) in [
        (
            IdentityField::Vendor,
            "Rockwell Automation/Allen-Bradley (1)",
        ),
        (IdentityField::Firmware, "11.4"),
        (IdentityField::Product, "1756-EN2T/D"),
    ] {
        report_identity(&mut a, 2 * S, ip, field, value);
    }
    let device = a.devices().find(|d| d.ip == Some(ip)).expect("device");
    assert!(device.vulnerabilities.is_empty(), "fixed firmware");
    // Downgraded to 11.2: <= 11.003 (ICSA-23-193-01) and <= 11.002 (ICSA-23-264-04).
    report_identity(&mut a, 10 * S, ip, IdentityField::Firmware, "11.2");
    let device = a.devices().find(|d| d.ip == Some(ip)).expect("device");
    let high: Vec<&str> = device
        .vulnerabilities
        .iter()
        .filter(|m| m.confidence == Confidence::High)
        .map(|m| m.advisory.as_str())
        .collect();
    assert_eq!(high, ["ICSA-23-193-01", "ICSA-23-264-04"]);
    // Reported again: no new advisory, no new alert occurrence.
    report_identity(&mut a, 20 * S, ip, IdentityField::Firmware, "11.2");
    let report = a.finish();
    let raised: Vec<_> = report
        .raised
        .iter()
        .filter(|r| r.signature == "vulnerable_device")
        .map(|r| (r.src, r.count))
        .collect();
    assert_eq!(raised, [(Some(ip), 1)]);
    assert_eq!(report.alerts_by_signature.get("firmware_change"), Some(&1));
}

/// A minimal CSAF 2.0 advisory for a product no CISA advisory names.
fn csaf_document() -> serde_json::Value {
    serde_json::json!({
        "document": {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "title": "Example EtherNet/IP module",
            "publisher": {"category": "coordinator", "name": "test", "namespace": "https://example.invalid"},
            "tracking": {
                "id": "ICSA-99-001-01",
                "initial_release_date": "2099-01-01T00:00:00Z",
                "current_release_date": "2099-01-02T00:00:00Z",
                "status": "final", "version": "1",
                "revision_history": [{"date": "2099-01-01T00:00:00Z", "number": "1", "summary": "Initial"}]
            }
        },
        "product_tree": {"branches": [{
            "category": "vendor", "name": "Rockwell Automation",
            "branches": [{
                "category": "product_name", "name": "1756-EN9Z",
                "branches": [{"category": "product_version_range", "name": "<= 2.001",
                              "product": {"name": "1756-EN9Z <= 2.001", "product_id": "CSAFPID-0001"}}]
            }]
        }]},
        "vulnerabilities": [{
            "cve": "CVE-2099-0001",
            "product_status": {"known_affected": ["CSAFPID-0001"]},
            "scores": [{"cvss_v3": {"baseScore": 9.1, "baseSeverity": "CRITICAL", "version": "3.1",
                                    "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N"},
                        "products": ["CSAFPID-0001"]}]
        }]
    })
}

#[test]
fn import_command_stores_newer_advisories_and_skips_others_with_a_reason() {
    let scratch = Scratch::new("advisories-import");
    let dir = scratch.0.join("update");
    std::fs::create_dir_all(dir.join("2099")).expect("dir");
    std::fs::write(
        dir.join("2099/icsa-99-001-01.json"),
        serde_json::to_vec(&csaf_document()).expect("json"),
    )
    .expect("write");
    std::fs::write(
        dir.join("2099/broken.json"),
        b"{\"document\": {\"csaf_version\": ",
    )
    .expect("write");
    std::fs::write(dir.join("README.txt"), b"notes").expect("write");
    // A real advisory the embedded table already has, in the same revision.
    std::fs::copy(
        shared().join("advisories/cisa-csaf-ot/2023/icsa-23-193-01.json"),
        dir.join("icsa-23-193-01.json"),
    )
    .expect("copy");
    let db = scratch.0.join("sensor.db");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_otsensor"))
            .args(["advisories", "import"])
            .arg(&dir)
            .arg("--db")
            .arg(&db)
            .output()
            .expect("otsensor runs")
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("imported 1 advisories (1 already known, 2 files skipped)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("broken.json: not JSON"),
        "malformed file named with the reason: {stderr}"
    );
    assert!(
        stderr.contains("README.txt: not a .json file"),
        "unknown file named with the reason: {stderr}"
    );
    // Again: nothing newer.
    let again = run();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("imported 0 advisories (2 already known"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // The analyzer on that store matches the imported advisory.
    let store = Store::open(&db).expect("store");
    assert_eq!(store.imported_advisories().expect("imported").len(), 1);
    let policy = Arc::new(Config::default().validate().expect("config"));
    let mut a = Analyzer::with_store(policy, None, store);
    let ip: IpAddr = "10.0.0.9".parse().expect("ip");
    a.observe(Observation::DeviceSeen {
        ts_ns: 1,
        mac: None,
        ip: Some(ip),
        vlan: 0,
    });
    for (field, value) in [
        (
            IdentityField::Vendor,
            "Rockwell Automation/Allen-Bradley (1)",
        ),
        (IdentityField::Product, "1756-EN9Z/A"),
        (IdentityField::Firmware, "2.1"),
    ] {
        report_identity(&mut a, 2, ip, field, value);
    }
    let device = a.devices().find(|d| d.ip == Some(ip)).expect("device");
    assert_eq!(
        found(&device.vulnerabilities),
        Found::from([(
            "ICSA-99-001-01".to_owned(),
            (Confidence::High, vec!["CVE-2099-0001".to_owned()], 91)
        )])
    );
}
