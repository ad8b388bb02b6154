//! Shared by the operator-surface tests: child processes that die with the test,
//! free ports, polling, HTTP, and scenario captures with their ground truth.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use xtask::gen::scenario::{self, ExpectedAlert, ScenarioTruth};

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing.
pub struct Guard {
    pub child: Child,
    pub name: &'static str,
}

impl Guard {
    pub fn spawn(name: &'static str, command: &mut Command) -> Guard {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Guard { child, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "otsensor-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a program is installed; tests that need it say so and skip when it is not.
pub fn have(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(program).is_file());
    if !found {
        eprintln!("SKIPPED: {program} is not installed (scripts/deps.sh installs it)");
    }
    found
}

pub fn program_path(program: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(program)
}

pub fn pcaps() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps")).to_owned()
}

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A configuration with an API token and, for a scenario, its learning period.
pub fn write_config(dir: &Path, truth: Option<&ScenarioTruth>) -> PathBuf {
    let path = dir.join("otsensor.yaml");
    let mut text = format!("http:\n  api_token: \"{TOKEN}\"\n");
    if let Some(truth) = truth {
        text.push_str(&format!(
            "learning:\n  duration: {}s\n",
            truth.learning_duration_s
        ));
    }
    std::fs::write(&path, text).expect("config");
    path
}

/// A generated scenario capture (learning phase, then attacks) and its ground truth.
pub fn scenario_capture(dir: &Path, name: &str) -> (PathBuf, ScenarioTruth) {
    let path = dir.join(format!("{name}.pcap"));
    match scenario::generate(name, &path) {
        Ok(truth) => (path, truth),
        Err(error) => panic!("generate {name}: {error:#}"),
    }
}

/// The otsensor binary built beside this test (target/<profile>/otsensor).
pub fn otsensor_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = dir.join("otsensor");
    assert!(
        binary.exists(),
        "{} missing: build the workspace first",
        binary.display()
    );
    binary
}

/// A running `otsensor replay … --serve 127.0.0.1:0`.
pub struct Sensor {
    pub guard: Guard,
    pub address: SocketAddr,
    pub stdout: mpsc::Receiver<String>,
    /// Every line the sensor wrote to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sensor {
    /// Starts the replay and waits until the server listens.
    pub fn serve(extra: &[&str], files: &[PathBuf], config: &Path) -> Sensor {
        let mut command = Command::new(otsensor_binary());
        command
            .arg("replay")
            .args(files)
            .arg("--config")
            .arg(config)
            .args(["--serve", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = Guard::spawn("otsensor", &mut command);
        let stderr = guard.child.stderr.take().expect("stderr");
        let stdout = guard.child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("otsensor: {line}");
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line.clone());
                }
                if let Some(rest) = line.strip_prefix("otsensor: serving http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
        });
        let (out_tx, out_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("otsensor announces its address")
            .parse()
            .expect("address");
        Sensor {
            guard,
            address,
            stdout: out_rx,
            stderr: lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Waits until the replay finished (the analyzer says so) and returns health.
    pub fn wait_replayed(&self) -> serde_json::Value {
        wait_for("the replay to finish", Duration::from_secs(120), || {
            let health = get_json(&self.url("/api/health")).ok()?;
            (health["analyzer"]["capture_finished"] == true).then_some(health)
        })
    }

    /// The summary's `packets` line.
    pub fn printed_packets(&self) -> u64 {
        wait_for("the summary", Duration::from_secs(60), || {
            while let Ok(line) = self.stdout.try_recv() {
                if let Some(n) = line.strip_prefix("packets") {
                    return n.trim().parse().ok();
                }
            }
            None
        })
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn get_text(url: &str) -> Result<(u16, String), String> {
    let mut response = agent().get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

pub fn get_json(url: &str) -> Result<serde_json::Value, String> {
    let (status, body) = get_text(url)?;
    if status != 200 {
        return Err(format!("{url}: {status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// POST with an optional bearer token; returns status and JSON body.
pub fn post(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = agent().post(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.send_empty().expect("POST");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}
