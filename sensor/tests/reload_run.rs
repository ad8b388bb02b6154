//! `otsensor run` on a veth in a namespace: SIGHUP and `POST /api/config/reload`
//! reload the config; an invalid file is refused with check-config's reason and the
//! sensor keeps running on the old one; the reload metrics count both.
#![cfg(target_os = "linux")]

mod xdp_frames;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "reload-test-token-0123456789";
const LISTEN: &str = "127.0.0.1:19750";

struct Lab {
    ns: String,
    ifname: String,
    config: PathBuf,
    child: Option<Child>,
}

impl Lab {
    fn create() -> Lab {
        let id = std::process::id();
        let lab = Lab {
            ns: format!("ots-reload-{id}"),
            ifname: format!("otsr{id}"),
            config: std::env::temp_dir().join(format!("otsensor-reload-run-{id}.yaml")),
            child: None,
        };
        let peer = format!("{}p", lab.ifname);
        for args in [
            vec!["netns", "add", &lab.ns],
            vec![
                "-n",
                &lab.ns,
                "link",
                "add",
                &lab.ifname,
                "numrxqueues",
                "1",
                "numtxqueues",
                "1",
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "numrxqueues",
                "1",
                "numtxqueues",
                "1",
            ],
            vec!["-n", &lab.ns, "link", "set", "lo", "up"],
            vec!["-n", &lab.ns, "link", "set", &lab.ifname, "up"],
            vec!["-n", &lab.ns, "link", "set", &peer, "up"],
        ] {
            let output = Command::new("ip").args(&args).output().expect("ip");
            assert!(
                output.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        lab
    }

    fn write_config(&self, ports: &str) {
        let text = format!(
            "http:\n  enabled: true\n  listen: {LISTEN}\n  api_token: {TOKEN}\ncapture:\n  industrial_tcp_ports: {ports}\n"
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    fn curl(&self, args: &[&str]) -> (String, String) {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
            ])
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
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_file(&self.config);
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
    let tools = ["ip", "curl"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !tools || !xdp_frames::kernel_tests_allowed("sighup_and_api_reload") {
        return;
    }
    let mut lab = Lab::create();
    lab.write_config("[502]");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns,
            env!("CARGO_BIN_EXE_otsensor"),
            "run",
        ])
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
