//! The HTTP surface of `otsensor replay --serve`: API answers, the token on changes,
//! `/metrics` accepted by `promtool check metrics`, and a real Prometheus server
//! scraping it and answering a query for the packet counter.

mod ops_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use ops_support::*;

#[test]
fn api_serves_the_replayed_scenario_and_refuses_changes_without_token() {
    let dir = TempDir::new("api");
    let (capture, truth) = scenario_capture(dir.path(), "combined");
    let config = write_config(dir.path(), Some(&truth));
    let sensor = Sensor::serve(&[], std::slice::from_ref(&capture), &config);
    let health = sensor.wait_replayed();
    let packets = sensor.printed_packets();
    assert!(packets > 100, "packets {packets}");
    assert_eq!(
        health["packets"], packets,
        "health counts every packet read"
    );
    let device_count = health["analyzer"]["devices"].as_u64().unwrap_or(0);
    assert_eq!(
        device_count, truth.devices,
        "the scenario's devices: {health}"
    );

    let devices = get_json(&sensor.url("/api/devices")).expect("devices");
    let list = devices.as_array().expect("array");
    assert_eq!(list.len() as u64, device_count);
    let modbus = get_json(&sensor.url("/api/devices?protocol=modbus")).expect("filtered");
    let modbus = modbus.as_array().expect("array");
    assert!(
        !modbus.is_empty() && modbus.len() < list.len(),
        "protocol filter narrows"
    );
    let plc = modbus
        .iter()
        .find(|d| d["class"] == "plc")
        .expect("a Modbus PLC");
    let id = plc["id"].as_str().expect("id");
    let detail = get_json(&sensor.url(&format!("/api/devices/{id}"))).expect("detail");
    let peers = detail["peers"].as_array().expect("peers");
    assert!(
        peers.iter().any(|p| p["protocols"]
            .as_array()
            .is_some_and(|list| list.iter().any(|proto| proto == "modbus"))),
        "{detail}"
    );
    assert_eq!(
        get_text(&sensor.url("/api/devices/203.0.113.99"))
            .expect("get")
            .0,
        404
    );

    let flows = get_json(&sensor.url("/api/flows")).expect("flows");
    assert!(
        flows["by_protocol"]["modbus"].as_u64().unwrap_or(0) > 0,
        "{flows}"
    );

    // The alerts the analyzer raised are exactly the scenario's ground truth.
    let alerts = get_json(&sensor.url("/api/alerts")).expect("alerts");
    let alerts = alerts.as_array().expect("array").clone();
    let served: std::collections::BTreeSet<ExpectedAlert> = alerts
        .iter()
        .map(|a| ExpectedAlert {
            signature: a["signature"].as_str().unwrap_or_default().to_owned(),
            src: a["src_ip"].as_str().and_then(|ip| ip.parse().ok()),
            dst: a["dest_ip"].as_str().and_then(|ip| ip.parse().ok()),
            src_mac: None,
        })
        .collect();
    let expected: std::collections::BTreeSet<ExpectedAlert> =
        truth.alerts.iter().cloned().collect();
    assert_eq!(served, expected);
    let high_expected = alerts.iter().filter(|a| a["severity"] == 1).count();
    let high = get_json(&sensor.url("/api/alerts?severity=1")).expect("alerts");
    assert_eq!(high.as_array().map(Vec::len), Some(high_expected));
    assert!(high_expected > 0 && high_expected < alerts.len());
    assert_eq!(health["analyzer"]["alerts_new"], alerts.len());

    // Changes need the token: none, or a wrong one, is 401 and changes nothing.
    let first = alerts[0]["id"].as_u64().expect("alert id");
    let ack = sensor.url(&format!("/api/alerts/{first}/acknowledge"));
    let (status, body) = post(&ack, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(post(&ack, Some("test-token-0123456789abcdeX")).0, 401);
    assert_eq!(post(&sensor.url("/api/baseline/end-learning"), None).0, 401);
    let alert = get_json(&sensor.url(&format!("/api/alerts/{first}"))).expect("alert");
    assert_eq!(alert["status"], "new");
    let (status, body) = post(&ack, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "acknowledged");
    let alert = get_json(&sensor.url(&format!("/api/alerts/{first}"))).expect("alert");
    assert_eq!(alert["status"], "acknowledged");
    let health = get_json(&sensor.url("/api/health")).expect("health");
    assert_eq!(health["analyzer"]["alerts_new"], alerts.len() - 1);
    assert_eq!(
        post(&sensor.url("/api/alerts/99999/mute"), Some(TOKEN)).0,
        404
    );

    // "Learn this" adds the alert's facts to the baseline.
    let second = alerts[1]["id"].as_u64().expect("alert id");
    let before = get_json(&sensor.url("/api/baseline")).expect("baseline");
    assert_eq!(before["learning"], false, "{before}");
    assert_eq!(before["progress"], 1.0);
    let (status, body) = post(
        &sensor.url(&format!("/api/alerts/{second}/learn")),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "learned");

    // The baseline is the analyzer's: restarting learning forgets it.
    assert!(before["entries"].as_u64().unwrap_or(0) > 0, "{before}");
    let (status, body) = post(&sensor.url("/api/baseline/restart-learning"), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"], 0, "{body}");
    let (status, body) = post(&sensor.url("/api/baseline/end-learning"), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["learning"], false, "{body}");

    // The dashboard and its assets are served from the binary.
    let (status, page) = get_text(&sensor.url("/")).expect("dashboard");
    assert_eq!(status, 200);
    assert!(
        page.contains("/assets/app.js") && !page.contains("http://") && !page.contains("https://")
    );
    assert_eq!(get_text(&sensor.url("/assets/app.js")).expect("js").0, 200);
}

#[test]
fn metrics_pass_promtool_and_prometheus_scrapes_the_packet_counter() {
    let dir = TempDir::new("prom");
    let (capture, truth) = scenario_capture(dir.path(), "combined");
    let config = write_config(dir.path(), Some(&truth));
    let sensor = Sensor::serve(&[], std::slice::from_ref(&capture), &config);
    sensor.wait_replayed();
    let packets = sensor.printed_packets();

    let (status, text) = get_text(&sensor.url("/metrics")).expect("metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains(&format!("otsensor_reader_packets_total {packets}")),
        "{text}"
    );
    let worker_sum: u64 = text
        .lines()
        .filter(|l| l.starts_with("otsensor_worker_packets_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(worker_sum, packets, "workers account for every packet");
    assert!(text.contains("otsensor_protocol_pdus_total{protocol=\"modbus\"}"));
    // Alerts, their latency and learning reach the metrics from the analyzer.
    let alerts: u64 = text
        .lines()
        .filter(|l| l.starts_with("otsensor_alerts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        alerts,
        truth.alerts.len() as u64,
        "one alert per expected alert (de-duplicated): {alerts}"
    );
    assert!(
        text.contains("otsensor_alert_latency_seconds_count ")
            && !text.contains("otsensor_alert_latency_seconds_count 0\n"),
        "alert latency recorded"
    );
    assert!(
        text.contains("otsensor_learning_progress_ratio 1\n"),
        "learning done"
    );
    assert!(text.contains("otsensor_learning_active 0\n"));
    assert!(text.contains("otsensor_worker_packet_processing_seconds{quantile=\"0.99\"}"));
    // Evidence and reassembly counters are exported from the start (at zero here: no
    // evidence directory), so rate() and alerts see their first increase.
    for series in [
        "otsensor_evidence_requests_total ",
        "otsensor_evidence_write_errors_total ",
        "otsensor_evidence_files_evicted_total{reason=\"size\"} ",
        "otsensor_evidence_files_evicted_total{reason=\"age\"} ",
        "otsensor_evidence_bytes_evicted_total{reason=\"count\"} ",
        "otsensor_evidence_ring_overwritten_packets_total{worker=",
        "otsensor_evidence_ring_overwritten_bytes_total{worker=",
        "otsensor_protocol_reassembly_events_total{event=\"expired\",protocol=\"dnp3\"} ",
        "otsensor_protocol_reassembly_events_total{event=\"expired\",protocol=\"s7comm\"} ",
        "otsensor_protocol_reassembly_events_total{event=\"expired\",protocol=\"bacnet\"} ",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }

    if !have("promtool") {
        return;
    }
    let mut check = Command::new(program_path("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let output = check.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/otsensor-rules.yml"
    );
    let output = Command::new(program_path("promtool"))
        .args(["check", "rules", rules])
        .output()
        .expect("promtool");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    if !have("prometheus") {
        return;
    }
    let port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: otsensor\n    \
             static_configs:\n      - targets: [\"{}\"]\n",
            sensor.address
        ),
    )
    .expect("prometheus config");
    let _prometheus = Guard::spawn(
        "prometheus",
        Command::new(program_path("prometheus"))
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=otsensor_reader_packets_total%7Bjob%3D%22otsensor%22%7D"
    );
    let scraped = wait_for(
        "Prometheus to scrape otsensor",
        Duration::from_secs(90),
        || {
            let answer = get_json(&query).ok()?;
            let value = answer["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<u64>()
                .ok()?;
            Some(value)
        },
    );
    assert_eq!(scraped, packets, "Prometheus sees the packet counter");
    let up = get_json(&format!("http://127.0.0.1:{port}/api/v1/query?query=up")).expect("up");
    assert_eq!(up["data"]["result"][0]["value"][1], "1");
}

/// Alerts carry what an analyst needs to act (issue 12): both devices as the inventory
/// knows them, the learned fact they deviate from, and the `flow_id` of their EVE flow
/// event; the same in the API and in EVE. Checked on the `combined` scenario against
/// its truth (who wrote, what the HMI reached while learning) and the API's inventory.
#[test]
fn alerts_carry_both_devices_the_learned_fact_and_their_flow() {
    let dir = TempDir::new("context");
    let (capture, truth) = scenario_capture(dir.path(), "combined");
    let config = write_config(dir.path(), Some(&truth));
    let eve = dir.path().join("eve.json");
    let eve_arg = eve.to_str().expect("utf-8 path");
    let sensor = Sensor::serve(&["--eve", eve_arg], std::slice::from_ref(&capture), &config);
    sensor.wait_replayed();
    let alerts = get_json(&sensor.url("/api/alerts")).expect("alerts");
    let alerts = alerts.as_array().expect("array");
    let served = |signature: &str| -> (ExpectedAlert, serde_json::Value) {
        let expected = truth
            .alerts
            .iter()
            .find(|a| a.signature == signature)
            .unwrap_or_else(|| panic!("{signature} in the truth"))
            .clone();
        let ip = |value: &serde_json::Value| value.as_str().and_then(|ip| ip.parse().ok());
        let alert = alerts
            .iter()
            .find(|a| {
                a["signature"] == signature
                    && ip(&a["src_ip"]) == expected.src
                    && ip(&a["dest_ip"]) == expected.dst
            })
            .unwrap_or_else(|| panic!("{signature} served: {alerts:?}"))
            .clone();
        (expected, alert)
    };
    let device = |ip: std::net::IpAddr| {
        get_json(&sensor.url(&format!("/api/devices/{ip}"))).expect("device")
    };

    // The write: both ends as the inventory describes them, and no learned writer.
    let (write, alert) = served("unauthorized_write");
    let (hmi, plc) = (write.src.expect("src"), write.dst.expect("dst"));
    let context = &alert["context"];
    assert_eq!(context["src_device"]["ip"], hmi.to_string(), "{context}");
    assert_eq!(context["src_device"]["class"], device(hmi)["class"]);
    assert!(
        context["src_device"]["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|r| r == "modbus client")),
        "{context}"
    );
    let inventory = device(plc);
    assert_eq!(context["dest_device"]["class"], inventory["class"]);
    let mut identity_fields = 0;
    for field in ["name", "vendor", "product", "model", "firmware"] {
        if let Some(value) = inventory["identity"][field].as_str() {
            assert_eq!(context["dest_device"][field], value, "{field}: {context}");
            identity_fields += 1;
        }
    }
    assert!(
        identity_fields >= 2,
        "the PLC reported its identity: {inventory}"
    );
    assert_eq!(
        context["baseline"]["learned"],
        serde_json::json!([]),
        "nobody wrote to the PLC while learning: {context}"
    );
    assert_eq!(
        context["baseline"]["fact"],
        format!("no client wrote to {plc} over Modbus during learning")
    );

    // The internet connection: what the HMI reached while learning.
    let (_, internet) = served("internet_connection");
    assert_eq!(
        internet["context"]["baseline"]["learned"],
        serde_json::json!([scenario::UPDATE_SERVER.to_string()]),
        "{internet}"
    );

    // EVE: the same context under `otsensor`, and a flow event with the alert's flow_id.
    let flow_id = alert["flow_id"].as_u64().expect("the write has a flow");
    let (eve_alert, flow) = wait_for("the EVE alert and flow", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&eve).ok()?;
        let events: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let eve_alert = events
            .iter()
            .find(|e| e["event_type"] == "alert" && e["otsensor"]["alert_id"] == alert["id"])?
            .clone();
        let flow = events
            .iter()
            .find(|e| e["event_type"] == "flow" && e["flow_id"] == flow_id)?
            .clone();
        Some((eve_alert, flow))
    });
    assert_eq!(eve_alert["flow_id"], flow_id);
    for key in ["src_device", "dest_device", "baseline"] {
        assert_eq!(
            eve_alert["otsensor"][key], context[key],
            "{key}: {eve_alert}"
        );
    }
    assert_eq!(flow["src_ip"], hmi.to_string(), "{flow}");
    assert_eq!(flow["dest_ip"], plc.to_string(), "{flow}");
    assert_eq!(flow["dest_port"], alert["dest_port"], "{flow}");
}
