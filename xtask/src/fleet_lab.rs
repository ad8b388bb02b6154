//! `cargo xtask fleet-lab`: a fleet on loopback for development and tests — a 3-node
//! NATS JetStream cluster and a PostgreSQL instance in temporary directories, the
//! hub, and sensors replaying generated plants. Everything started here is a child
//! process killed (by its own pid) when its guard drops, so a failing test or an
//! interrupted lab leaves nothing running.
//!
//! PostgreSQL refuses to run as root: when the lab runs as root, `initdb` and the
//! server run as the `postgres` user (`runuser`), on a data directory chowned to it.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::testlab::{self, is_root};

/// The sensors' and hub's shared secrets and the API token of the lab.
pub const API_TOKEN: &str = "fleet-lab-token-0123456789abcdef";

/// A child process SIGKILLed and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    /// Standard error lines (kept for failure messages).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command) -> Result<Proc> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            let label = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if std::env::var_os("FLEET_LAB_VERBOSE").is_some() {
                        eprintln!("[{label}] {line}");
                    }
                    if let Ok(mut log) = log.lock() {
                        if log.len() < 2000 {
                            log.push(line);
                        }
                    }
                }
            });
        }
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL now.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .rev()
                    .take(20)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls until `check` answers or `timeout` passes.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finds a program (`testlab::find_program`, then `extra_dirs`). A missing one is an
/// error under `CI=true`; otherwise the calling test is skipped through
/// [`testlab::skip`] (a `SKIPPED:` line that `scripts/test.sh` counts) and this is `None`.
pub fn find_program(name: &str, extra_dirs: &[&str]) -> Result<Option<PathBuf>> {
    let found = testlab::find_program(name).or_else(|| {
        extra_dirs
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
    });
    if found.is_some() {
        return Ok(found);
    }
    if testlab::in_ci() {
        bail!(
            "{name} is not installed (scripts/deps.sh installs it); CI=true makes this a failure"
        );
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("fleet lab")
        .to_owned();
    testlab::skip(
        &test,
        &format!("{name} is not installed (scripts/deps.sh installs it)"),
    );
    Ok(None)
}

/// The PostgreSQL binaries directory (Debian's versioned layout).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A command run as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.arg("-u").arg("postgres").arg("--").arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server on 127.0.0.1 in a temporary directory (`pg_ctl stop` on drop).
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    pg_ctl: PathBuf,
}

impl Postgres {
    /// Starts one under `dir`; `None` when PostgreSQL is not installed (and CI is not set).
    pub fn start(dir: &Path) -> Result<Option<Postgres>> {
        let Some(initdb) = find_program("initdb", &[PG_BIN])? else {
            return Ok(None);
        };
        let Some(pg_ctl) = find_program("pg_ctl", &[PG_BIN])? else {
            return Ok(None);
        };
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        if is_root() {
            let status = Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&data)
                .status()?;
            if !status.success() {
                bail!("chown {} to postgres failed", data.display());
            }
        }
        let output = as_postgres(&initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .context("initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let port = free_port()?;
        let options = format!(
            "-p {port} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            data.display()
        );
        let output = as_postgres(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(data.join("server.log"))
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("pg_ctl start")?;
        if !output.status.success() {
            let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Some(Postgres { port, data, pg_ctl }))
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One node of the NATS cluster.
#[derive(Debug)]
struct NatsNode {
    config: PathBuf,
    client_port: u16,
    proc: Option<Proc>,
}

/// A JetStream cluster on loopback; node processes die with it.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<NatsNode>,
}

/// A NATS user of the lab.
#[derive(Clone, Debug)]
pub struct NatsUser {
    pub user: String,
    pub password: String,
    /// None: everything (the hub); Some(sensor id): its own subjects only.
    pub sensor: Option<String>,
}

impl NatsCluster {
    /// Writes the configuration of `size` nodes under `dir` and starts them.
    pub fn start(dir: &Path, size: usize, users: &[NatsUser]) -> Result<Option<NatsCluster>> {
        let Some(binary) = find_program("nats-server", &[])? else {
            return Ok(None);
        };
        let mut ports = Vec::new();
        for _ in 0..size {
            ports.push((free_port()?, free_port()?));
        }
        let mut authorization = String::from("authorization {\n  users = [\n");
        for user in users {
            let permissions = match &user.sensor {
                None => String::new(),
                Some(id) => format!(
                    ", permissions: {{ publish: {{ allow: [\"otsensor.fleet.*.{id}.>\", \"_INBOX.>\", \"$JS.API.INFO\"] }}, \
                     subscribe: {{ allow: [\"otsensor.cmd.{id}\", \"_INBOX.>\"] }} }}"
                ),
            };
            authorization.push_str(&format!(
                "    {{ user: \"{}\", password: \"{}\"{permissions} }}\n",
                user.user, user.password
            ));
        }
        authorization.push_str("  ]\n}\n");
        let mut nodes = Vec::new();
        for (index, (client, cluster)) in ports.iter().enumerate() {
            let store = dir.join(format!("nats-{index}"));
            std::fs::create_dir_all(&store)?;
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, (_, c))| format!("\"nats-route://127.0.0.1:{c}\""))
                .collect();
            // A single node is no cluster (JetStream refuses a cluster without routes).
            let cluster_block = if size > 1 {
                format!(
                    "cluster {{\n  name: fleet-lab\n  listen: \"127.0.0.1:{cluster}\"\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: n{index}\nlisten: \"127.0.0.1:{client}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                 {cluster_block}{authorization}",
                store.display(),
            );
            let config = dir.join(format!("nats-{index}.conf"));
            std::fs::write(&config, text)?;
            nodes.push(NatsNode {
                config,
                client_port: *client,
                proc: None,
            });
        }
        let mut cluster = NatsCluster { binary, nodes };
        for index in 0..size {
            cluster.start_node(index)?;
        }
        Ok(Some(cluster))
    }

    pub fn start_node(&mut self, index: usize) -> Result<()> {
        let node = &mut self.nodes[index];
        if node.proc.as_mut().is_some_and(Proc::is_running) {
            return Ok(());
        }
        let proc = Proc::spawn(
            &format!("nats-{index}"),
            Command::new(&self.binary).arg("-c").arg(&node.config),
        )?;
        node.proc = Some(proc);
        let port = node.client_port;
        wait_until(
            &format!("nats node {index} listening"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        )?;
        Ok(())
    }

    /// SIGKILL one node.
    pub fn kill_node(&mut self, index: usize) {
        if let Some(mut proc) = self.nodes[index].proc.take() {
            proc.kill();
        }
    }

    /// Stops every node (SIGTERM, a clean shutdown).
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut proc) = node.proc.take() {
                proc.terminate(Duration::from_secs(5));
            }
        }
    }

    pub fn start_all(&mut self) -> Result<()> {
        // Start them together: each waits for its routes.
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if node.proc.is_none() {
                node.proc = Some(Proc::spawn(
                    &format!("nats-{index}"),
                    Command::new(&self.binary).arg("-c").arg(&node.config),
                )?);
            }
        }
        for node in &self.nodes {
            let port = node.client_port;
            wait_until("nats nodes listening", Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            })?;
        }
        Ok(())
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }
}

/// One sensor of the lab: its directory, key and configuration.
#[derive(Clone, Debug)]
pub struct SensorSpec {
    pub id: String,
    pub site: String,
    pub scenario: String,
}

/// Writes a sensor's key, NATS password and configuration; returns the config path.
#[allow(clippy::too_many_arguments)]
pub fn write_sensor_config(
    dir: &Path,
    spec: &SensorSpec,
    urls: &[String],
    learning_s: u64,
    spool_max_bytes: u64,
    heartbeat: &str,
) -> Result<PathBuf> {
    let key = dir.join(format!("{}.key", spec.id));
    std::fs::write(&key, sensor_secret(&spec.id))?;
    let password = dir.join(format!("{}.nats-password", spec.id));
    std::fs::write(&password, nats_password(&spec.id))?;
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "learning:\n  duration: {learning_s}s\n\
         http:\n  api_token: \"{API_TOKEN}\"\n\
         outputs:\n  eve:\n    enabled: false\n  nats:\n    url: [{}]\n    sensor_id: {}\n    site: {}\n\
         \x20   user: {}\n    password_file: {}\n    key_file: {}\n    spool_dir: {}\n\
         \x20   spool_max_bytes: {spool_max_bytes}\n    heartbeat_interval: {heartbeat}\n",
        urls.join(", "),
        spec.id,
        spec.site,
        spec.id,
        password.display(),
        key.display(),
        dir.join(format!("{}-spool", spec.id)).display(),
    );
    let path = dir.join(format!("{}.yaml", spec.id));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The lab's (deterministic, test-only) secrets.
pub fn sensor_secret(id: &str) -> String {
    format!("lab-key-{id}-0123456789abcdef0123456789abcdef")
}

pub fn nats_password(user: &str) -> String {
    format!("lab-password-{user}")
}

/// Writes the hub's configuration (sensor keys, API token, NATS user).
pub fn write_hub_config(
    dir: &Path,
    sensors: &[SensorSpec],
    replicas: usize,
    ack_wait_ms: u64,
) -> Result<PathBuf> {
    let token = dir.join("hub-api-token");
    std::fs::write(&token, API_TOKEN)?;
    let password = dir.join("hub.nats-password");
    std::fs::write(&password, nats_password("hub"))?;
    let mut text = format!(
        "api_token_file: {}\nnats:\n  user: hub\n  password_file: {}\n  replicas: {replicas}\n  ack_wait_ms: {ack_wait_ms}\nsensors:\n",
        token.display(),
        password.display()
    );
    for sensor in sensors {
        let key = dir.join(format!("{}.key", sensor.id));
        std::fs::write(&key, sensor_secret(&sensor.id))?;
        text.push_str(&format!(
            "  {}:\n    key_file: {}\n",
            sensor.id,
            key.display()
        ));
    }
    let path = dir.join("hub.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The NATS users of a lab with these sensors (the hub sees everything).
pub fn lab_users(sensors: &[SensorSpec]) -> Vec<NatsUser> {
    let mut users = vec![NatsUser {
        user: "hub".into(),
        password: nats_password("hub"),
        sensor: None,
    }];
    for sensor in sensors {
        users.push(NatsUser {
            user: sensor.id.clone(),
            password: nats_password(&sensor.id),
            sensor: Some(sensor.id.clone()),
        });
    }
    users
}

/// Starts `otsensor hub` and waits for its HTTP address.
pub fn start_hub(
    binary: &Path,
    config: &Path,
    urls: &[String],
    postgres: &str,
    port: u16,
) -> Result<Proc> {
    let proc = Proc::spawn(
        "hub",
        Command::new(binary)
            .arg("hub")
            .arg("--config")
            .arg(config)
            .arg("--nats")
            .arg(urls.join(","))
            .arg("--postgres")
            .arg(postgres)
            .arg("--serve")
            .arg(format!("127.0.0.1:{port}")),
    )?;
    wait_until("the hub's HTTP port", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })?;
    Ok(proc)
}

/// A running sensor replaying its scenario, serving its API.
#[derive(Debug)]
pub struct SensorProc {
    pub spec: SensorSpec,
    pub proc: Proc,
    pub http_port: u16,
    pub db: PathBuf,
}

/// Starts `otsensor replay` of `capture` at `speed` times capture time, serving its API.
pub fn start_sensor(
    binary: &Path,
    spec: &SensorSpec,
    config: &Path,
    capture: &Path,
    db: &Path,
    speed: f64,
) -> Result<SensorProc> {
    let http_port = free_port()?;
    let proc = Proc::spawn(
        &spec.id,
        Command::new(binary)
            .arg("replay")
            .arg("--config")
            .arg(config)
            .arg("--db")
            .arg(db)
            .arg("--realtime-speed")
            .arg(speed.to_string())
            .arg("--serve")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg(capture),
    )?;
    wait_until(
        &format!("sensor {} HTTP", spec.id),
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", http_port)).ok(),
    )?;
    Ok(SensorProc {
        spec: spec.clone(),
        proc,
        http_port,
        db: db.to_owned(),
    })
}

/// A minimal HTTP/1.1 client on loopback (GET or POST, optional bearer token).
pub fn http(method: &str, port: u16, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked bodies: axum streams JSON in one chunk; strip the framing.
    let body = if response
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A metric's value from Prometheus text (first sample whose line starts with `name`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sums every sample of a metric family whose labels contain `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Options of `cargo xtask fleet-lab`.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub hub_port: u16,
    pub speed: f64,
}

/// The default three sensors: two in one plant (their devices merge at the hub), one
/// in another.
pub fn default_sensors() -> Vec<SensorSpec> {
    vec![
        SensorSpec {
            id: "s1".into(),
            site: "plant-a".into(),
            scenario: "combined".into(),
        },
        SensorSpec {
            id: "s2".into(),
            site: "plant-a".into(),
            scenario: "plc_stop".into(),
        },
        SensorSpec {
            id: "s3".into(),
            site: "plant-b".into(),
            scenario: "scan".into(),
        },
    ]
}

/// Runs the lab until Enter or SIGINT, then tears it down.
pub fn run(options: &LabOptions) -> Result<()> {
    std::fs::create_dir_all(&options.dir)?;
    let sensors = default_sensors();
    let postgres = Postgres::start(&options.dir)?.context("PostgreSQL is not installed")?;
    let cluster = NatsCluster::start(&options.dir, 3, &lab_users(&sensors))?
        .context("nats-server is not installed")?;
    let hub_config = write_hub_config(&options.dir, &sensors, 3, 30_000)?;
    let _hub = start_hub(
        &options.binary,
        &hub_config,
        &cluster.urls(),
        &postgres.url(),
        options.hub_port,
    )?;
    let mut running = Vec::new();
    for spec in &sensors {
        let capture = options.dir.join(format!("{}.pcap", spec.scenario));
        let truth = crate::gen::scenario::generate(&spec.scenario, &capture)?;
        let config = write_sensor_config(
            &options.dir,
            spec,
            &cluster.urls(),
            truth.learning_duration_s,
            64 * 1024 * 1024,
            "2s",
        )?;
        let db = options.dir.join(format!("{}.db", spec.id));
        running.push(start_sensor(
            &options.binary,
            spec,
            &config,
            &capture,
            &db,
            options.speed,
        )?);
    }
    println!(
        "fleet lab: dashboard  http://127.0.0.1:{}/",
        options.hub_port
    );
    println!("           api token  {API_TOKEN}");
    println!("           NATS       {}", cluster.urls().join(","));
    println!("           PostgreSQL {}", postgres.url());
    for sensor in &running {
        println!(
            "           sensor {} ({}, {}) http://127.0.0.1:{}/",
            sensor.spec.id, sensor.spec.site, sensor.spec.scenario, sensor.http_port
        );
    }
    println!("press Enter (or Ctrl-C) to stop; everything is torn down");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(running);
    Ok(())
}
