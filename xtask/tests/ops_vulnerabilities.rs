//! The dashboard's Vulnerabilities page in headless Chromium: a replay of real captures
//! (a 1756-ENBT module, a ControlLogix 1756-L61, an S7-300 CPU 315-2 PN/DP) served by
//! `otsensor replay --serve`; the page lists the advisories the API reports, and the
//! page and a device's detail are saved under `docs/screenshots/`.
//!
//! Chromium renders with `--dump-dom` / `--screenshot` after a virtual-time budget that
//! lets the page's API requests finish; no WebDriver is needed for a read-only page.

mod ops_support;

use std::path::PathBuf;
use std::process::Command;

use ops_support::*;

fn chromium(args: &[&str], url: &str) -> String {
    let profile = TempDir::new("chromium-vulnerabilities");
    let output = Command::new(program_path("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1360,1000",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn screenshot(url: &str, name: &str) {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/screenshots"));
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    chromium(&[&format!("--screenshot={}", path.display())], url);
    let png = std::fs::read(&path).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{name}.png"
    );
}

#[test]
fn vulnerabilities_page_lists_the_matched_advisories() {
    if !have("chromium") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is required under CI (scripts/deps.sh installs it)"
        );
        return;
    }
    let dir = TempDir::new("dashboard-vulnerabilities");
    let config = write_config(dir.path(), None);
    let files: Vec<PathBuf> = [
        "enip-cip-example-io-listidentity.pcap",
        "enip-cl5000-reboot-restart.pcap",
        "s7comm-ident-szl-upload.pcap",
    ]
    .iter()
    .map(|name| pcaps().join(name))
    .collect();
    let sensor = Sensor::serve(&[], &files, &config);
    sensor.wait_replayed();

    let view = get_json(&sensor.url("/api/vulnerabilities")).expect("vulnerabilities");
    let devices = view["devices"].as_array().expect("devices");
    let by_device = |id: &str| {
        devices
            .iter()
            .find(|d| d["device"] == id)
            .unwrap_or_else(|| panic!("{id} in {view}"))
    };
    let enbt = by_device("10.1.1.164");
    assert_eq!(enbt["vulnerabilities"][0]["advisory"], "ICSA-18-310-02");
    assert_eq!(enbt["vulnerabilities"][0]["confidence"], "high");
    let s7 = by_device("172.17.0.2");
    assert_eq!(s7["severity"], "high", "CVSS 7.5 at most: {s7}");
    assert_eq!(
        view["vulnerable_devices"]["critical"], 1,
        "the 1756-L61 (10.0)"
    );
    assert!(view["advisories"].as_u64().unwrap_or(0) > 2000);
    let alerts = get_json(&sensor.url("/api/alerts?signature=vulnerable_device")).expect("alerts");
    assert_eq!(alerts.as_array().map(Vec::len), Some(2), "{alerts}");

    // The page shows every high and medium match the API lists.
    let listed: usize = devices
        .iter()
        .flat_map(|d| d["vulnerabilities"].as_array().into_iter().flatten())
        .filter(|v| v["confidence"] != "low")
        .count();
    let dom = chromium(&["--dump-dom"], &sensor.url("/#/vulnerabilities"));
    let rows = dom.matches("<tr><td><a href=\"#/devices/").count();
    assert_eq!(rows, listed, "one row per match");
    for advisory in ["ICSA-18-310-02", "ICSA-22-090-05", "ICSA-20-105-08"] {
        assert!(dom.contains(advisory), "{advisory} on the page");
    }
    screenshot(&sensor.url("/#/vulnerabilities"), "vulnerabilities");
    screenshot(
        &sensor.url("/#/devices/172.17.0.2"),
        "device-vulnerabilities",
    );
}
