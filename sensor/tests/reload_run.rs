//! `otsensor run` on a veth in a namespace: SIGHUP and `POST /api/config/reload`
//! reload the config; an invalid file is refused with check-config's reason and the
//! sensor keeps running on the old one; the reload metrics count both.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xtask::testlab;

const TOKEN: &str = "reload-test-token-0123456789";
const LISTEN: &str = "127.0.0.1:19750";

/// The namespace with its veth pair, the config file and the sensor; removed on drop
/// (`xtask::testlab::Lab` deletes the namespace and its scratch directory).
struct Lab {
    lab: testlab::Lab,
    ns: String,
    ifname: String,
    config: PathBuf,
    child: Option<Child>,
}

impl Lab {
    fn create() -> Lab {
        let mut lab = testlab::Lab::new("rl").expect("lab");
        let ns = lab.namespace("reload").expect("namespace");
        let ifname = lab.ifname("");
        let peer = lab.ifname("p");
        lab.veth((&ns, &ifname), (&ns, &peer), 1)
            .expect("veth pair");
        lab.up(&ns, &ifname).expect("link up");
        lab.up(&ns, &peer).expect("link up");
        let config = lab.dir().join("otsensor.yaml");
        Lab {
            lab,
            ns,
            ifname,
            config,
            child: None,
        }
    }

    fn write_config(&self, ports: &str) {
        let text = format!(
            "http:\n  enabled: true\n  listen: {LISTEN}\n  api_token: {TOKEN}\ncapture:\n  industrial_tcp_ports: {ports}\n"
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    fn curl(&self, args: &[&str]) -> (String, String) {
        let output = self
            .lab
            .exec(&self.ns, "curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (body.to_owned(), code.to_owned())
    }

    fn metric(&self, name: &str) -> String {
        let (body, _) = self.curl(&[&format!("http://{LISTEN}/metrics")]);
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("")
            .to_owned()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line containing {needle:?} within 30 s");
}

#[test]
fn sighup_and_api_reload_refuse_invalid_files_and_keep_running() {
    const TEST: &str = "sighup_and_api_reload_refuse_invalid_files_and_keep_running";
    if !testlab::require_root(TEST) || !testlab::require_tools(TEST, &["ip", "curl"]) {
        return;
    }
    let mut lab = Lab::create();
    lab.write_config("[502]");
    let mut child = lab
        .lab
        .exec(&lab.ns, env!("CARGO_BIN_EXE_otsensor"))
        .arg("run")
        .args(["--interface", &lab.ifname, "--eve", "-", "--config"])
        .arg(&lab.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otsensor run");
    let stderr = child.stderr.take().expect("stderr");
    lab.child = Some(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[otsensor] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for(&lines, "serving http://");
    wait_for(&lines, "attached to");
    assert_eq!(lab.metric("otsensor_config_generation"), "1");

    // Invalid by SIGHUP: refused with the field and the line, still running.
    std::fs::write(
        &lab.config,
        format!("http:\n  enabled: true\n  listen: {LISTEN}\n  api_token: {TOKEN}\ncapture:\n  industrial_tcp_ports: [70000]\n"),
    )
    .expect("write");
    lab.signal("-HUP");
    let refused = wait_for(&lines, "config reload refused: ");
    assert!(
        refused.contains("capture.industrial_tcp_ports[0]"),
        "{refused}"
    );
    assert!(refused.contains("line 6"), "{refused}");
    assert!(lab
        .child
        .as_mut()
        .expect("child")
        .try_wait()
        .expect("wait")
        .is_none());
    assert_eq!(
        lab.metric("otsensor_config_reloads_total{result=\"error\"}"),
        "1"
    );
    assert_eq!(lab.metric("otsensor_config_generation"), "1");

    // Valid by SIGHUP.
    lab.write_config("[502, 5020]");
    lab.signal("-HUP");
    let reloaded = wait_for(&lines, "config reloaded");
    assert!(
        reloaded.contains("capture.industrial_tcp_ports"),
        "{reloaded}"
    );
    assert_eq!(
        lab.metric("otsensor_config_reloads_total{result=\"ok\"}"),
        "1"
    );
    assert_eq!(lab.metric("otsensor_config_generation"), "2");

    // The API: token required; 422 with the reason; 200 with what changed.
    let url = format!("http://{LISTEN}/api/config/reload");
    let (_, code) = lab.curl(&["-X", "POST", &url]);
    assert_eq!(code, "401");
    let auth = format!("Authorization: Bearer {TOKEN}");
    std::fs::write(&lab.config, "networks: {internal: []}\n").expect("write");
    let (body, code) = lab.curl(&["-X", "POST", "-H", &auth, &url]);
    assert_eq!(code, "422", "{body}");
    assert!(body.contains("networks.internal"), "{body}");
    lab.write_config("[5020]");
    std::fs::write(
        &lab.config,
        format!(
            "http:\n  enabled: true\n  listen: {LISTEN}\n  api_token: {TOKEN}\ncapture:\n  industrial_tcp_ports: [5020]\n  ring_size: 1024\n"
        ),
    )
    .expect("write");
    let (body, code) = lab.curl(&["-X", "POST", "-H", &auth, &url]);
    assert_eq!(code, "200", "{body}");
    let outcome: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(outcome["generation"], 3);
    assert_eq!(
        outcome["changed"],
        serde_json::json!(["capture.industrial_tcp_ports"])
    );
    assert_eq!(
        outcome["needs_restart"],
        serde_json::json!(["capture.ring_size"])
    );
    assert_eq!(outcome["kernel_maps_updated"], true);
    assert_eq!(
        lab.metric("otsensor_config_reloads_total{result=\"error\"}"),
        "2"
    );

    lab.signal("-TERM");
    let status = lab.child.as_mut().expect("child").wait().expect("exit");
    assert!(status.success(), "{status}");
    lab.child = None;
}
