//! The dashboard in headless Chromium (driven through chromedriver's WebDriver API):
//! devices, map and alerts of a replay are shown, "Acknowledge" changes the alert's
//! status as the API reports it, alerts with evidence carry a "Download PCAP" link that
//! serves a pcapng, and each page is saved as a screenshot under `docs/screenshots/`.

mod ops_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ops_support::*;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52f-4a4b4e0e1e9f";

struct Browser {
    base: String,
    session: String,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let agent = agent();
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, Some(body)) => agent.post(&url).send_json(body),
            (_, None) => agent.post(&url).send_json(json!({})),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = response.body_mut().read_to_string().expect("body");
        let value: Value = serde_json::from_str(&text).expect("json");
        assert!(
            value["value"].get("error").is_none(),
            "{method} {path}: {text}"
        );
        value["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| {
                        e.get(ELEMENT)
                            .or_else(|| e.as_object()?.values().next())
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_else(|| panic!("elements {css}: {found}"))
    }

    fn wait_all(&self, css: &str, at_least: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.find_all(css);
            if found.len() >= at_least {
                return found;
            }
            if std::time::Instant::now() > deadline {
                let source = self.call("GET", "/source", None);
                let url = self.call("GET", "/url", None);
                panic!(
                    "{css}: found {} of {at_least} at {url}; page: {}",
                    found.len(),
                    source
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(3000)
                        .collect::<String>()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until an element matching `css` has text satisfying `check`; the page
    /// re-renders, so elements are looked up again on every try.
    fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        wait_for(css, Duration::from_secs(20), || {
            let element = self.find_all(css).into_iter().next()?;
            let url = format!(
                "{}/session/{}/element/{element}/text",
                self.base, self.session
            );
            let mut response = agent().get(&url).call().ok()?;
            let value: Value =
                serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
            let text = value["value"].as_str()?.to_owned();
            check(&text).then_some(text)
        })
    }

    fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn screenshot(&self, name: &str) {
        // Let layout and fonts settle.
        std::thread::sleep(Duration::from_millis(500));
        let data = self.call("GET", "/screenshot", None);
        let png = base64_decode(data.as_str().expect("base64"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/screenshots"));
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn dashboard_shows_the_replay_and_acknowledges_alerts() {
    if !have("chromedriver") || !have("chromium") {
        return;
    }
    let dir = TempDir::new("dashboard");
    let (capture, truth) = scenario_capture(dir.path(), "combined");
    let config = write_config(dir.path(), Some(&truth));
    // A database, so evidence is kept beside it (`evidence/`).
    let db = dir.path().join("otsensor.db");
    let sensor = Sensor::serve(
        &["--db", db.to_str().expect("path")],
        std::slice::from_ref(&capture),
        &config,
    );
    let health = sensor.wait_replayed();
    // The summary comes once the evidence thread has written every file.
    sensor.printed_packets();
    let devices = health["analyzer"]["devices"].as_u64().unwrap_or(0) as usize;
    assert_eq!(devices as u64, truth.devices, "the scenario's devices");

    let port = free_port();
    let _driver = Guard::spawn(
        "chromedriver",
        Command::new(program_path("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for("chromedriver", Duration::from_secs(20), || {
        get_json(&format!("{base}/status")).ok()
    });
    let profile = dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).expect("profile");
    let created: Value = {
        let mut response = agent()
            .post(&format!("{base}/session"))
            .send_json(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": program_path("chromium").to_string_lossy(),
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync",
                             "--disable-dev-shm-usage", "--window-size=1360,900",
                             format!("--user-data-dir={}", profile.display())]
                }
            }}}))
            .expect("new session");
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json")
    };
    let session = created["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {created}"))
        .to_owned();
    let browser = Browser { base, session };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exercise(&browser, &sensor, devices, truth.alerts.len())
    }));
    let _ = browser.call("DELETE", "", None);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn exercise(browser: &Browser, sensor: &Sensor, devices: usize, expected_alerts: usize) {
    // The token arrives in the fragment and is kept by the page.
    browser.go(&sensor.url(&format!("/#token={TOKEN}")));
    browser.wait_all("#devices-by-class .row", 1);
    browser.wait_all("#alerts-by-severity rect", 1);
    browser.wait_all("#traffic-by-protocol .row", 1);
    browser.screenshot("overview");

    // A link carrying another token never silently replaces the stored one: the page
    // loads anew (query), the token dialog opens with a notice, storage is unchanged.
    browser.go(&sensor.url("/?relink#token=someone-elses-token-0123456789"));
    browser.wait_all("#token-dialog[open] #token-notice:not([hidden])", 1);
    let script = |code: &str| {
        browser.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": code, "args": [] })),
        )
    };
    assert_eq!(
        script("return localStorage.getItem('otsensor-token');"),
        TOKEN,
        "the link's token replaced the stored one"
    );
    script("document.getElementById('token-dialog').close('cancel'); return null;");
    assert_eq!(
        script("return localStorage.getItem('otsensor-token');"),
        TOKEN
    );

    browser.go(&sensor.url("/#/devices"));
    let rows = browser.wait_all("#device-table tbody tr", devices);
    assert_eq!(rows.len(), devices, "every device is listed");
    browser.screenshot("devices");

    let detail_id = get_json(&sensor.url("/api/devices?class=plc")).expect("devices")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    browser.go(&sensor.url(&format!("/#/devices/{detail_id}")));
    browser.wait_text("h1", |text| text.contains(&detail_id));
    browser.screenshot("device");

    browser.go(&sensor.url("/#/map"));
    let nodes = browser.wait_all("#map .node", devices.min(2));
    assert!(nodes.len() >= 2);
    assert!(
        !browser.find_all("#map line.edge").is_empty(),
        "conversations are drawn"
    );
    // The scan's ports are one legend entry, not one per port.
    let legend = script(
        "return [...document.querySelectorAll('.legend span')].map(s => s.textContent).join('|');",
    );
    let legend = legend.as_str().unwrap_or_default().to_owned();
    assert!(legend.contains("other TCP ports ("), "{legend}");
    assert!(
        !legend.split('|').any(|entry| entry.starts_with("tcp/")),
        "a bare port in the legend: {legend}"
    );
    // Node labels never overlap one another.
    let overlaps = script(
        "const r = [...document.querySelectorAll('#map text.node-label')].map(t => t.getBoundingClientRect());
         let n = 0;
         for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++)
           if (r[i].left < r[j].right && r[j].left < r[i].right && r[i].top < r[j].bottom && r[j].top < r[i].bottom) n++;
         return [r.length, n];",
    );
    assert!(
        overlaps[0].as_u64().unwrap_or(0) >= 2,
        "labels drawn: {overlaps}"
    );
    assert_eq!(
        overlaps[1].as_u64(),
        Some(0),
        "overlapping labels: {overlaps}"
    );
    browser.screenshot("map");

    browser.go(&sensor.url("/#/alerts"));
    let alerts = get_json(&sensor.url("/api/alerts")).expect("alerts");
    let alerts = alerts.as_array().expect("array");
    assert_eq!(
        alerts.len(),
        expected_alerts,
        "the scenario's alerts, no more, no fewer"
    );
    let rows = browser.wait_all("#alert-table tbody tr", alerts.len());
    assert_eq!(rows.len(), alerts.len());
    // Every alert with evidence has its link, and the link serves the pcapng.
    let with_evidence = alerts.iter().filter(|a| a["evidence"].is_object()).count();
    assert!(with_evidence > 0, "no alert has evidence");
    let links = browser.wait_all("#alert-table a.pcap-link", with_evidence);
    assert_eq!(links.len(), with_evidence);
    let id = alerts
        .iter()
        .find(|a| a["evidence"].is_object())
        .and_then(|a| a["id"].as_u64())
        .expect("an alert with evidence");
    let pcap = agent()
        .get(&sensor.url(&format!("/api/alerts/{id}/pcap")))
        .call()
        .expect("pcap")
        .body_mut()
        .read_to_vec()
        .expect("pcap body");
    assert_eq!(
        pcap.get(..4),
        Some(&[0x0a, 0x0d, 0x0d, 0x0a][..]),
        "a pcapng section"
    );
    // Newest first, as the API lists them.
    let first = alerts[0]["id"].as_u64().expect("id");
    let url = sensor.url(&format!("/api/alerts/{first}"));
    let before = get_json(&url).expect("alert");
    assert_eq!(before["status"], "new");
    let buttons = browser.find_all("#alert-table tbody tr:first-child button.action-acknowledge");
    browser.click(&buttons[0]);
    wait_for("the acknowledgement", Duration::from_secs(10), || {
        let alert = get_json(&url).ok()?;
        (alert["status"] == "acknowledged").then_some(())
    });
    browser.wait_text(
        "#alert-table tbody tr:first-child td.alert-status",
        |text| text == "acknowledged",
    );
    browser.screenshot("alerts");
}
