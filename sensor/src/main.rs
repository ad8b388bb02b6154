//! The `otsensor` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use otsensor::capture::pcap::PcapFiles;
use otsensor::detect::AlertStatus;

use otsensor::config::{ApiToken, Config, Error as ConfigError};
use otsensor::detect::Alert;
use otsensor::http::{AppState, HttpServer};
use otsensor::metrics::Metrics;
use otsensor::output::eve::{EveWriter, Rotation};
use otsensor::output::sinks::{self, AlertSinks};
use otsensor::output::syslog::{SyslogSink, SyslogTarget};
use otsensor::output::webhook::WebhookSink;
use otsensor::pipeline::{self, ReplayOptions, Summary};
use otsensor::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "otsensor",
    version,
    about = "Passive security sensor for industrial (OT) and IoT networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Capture live on an interface (XDP + AF_XDP) until SIGINT or SIGTERM.
    Run {
        /// The capture interface (overrides capture.interface).
        #[arg(long)]
        interface: Option<String>,
        /// Worker threads (overrides pipeline.workers).
        #[arg(long)]
        workers: Option<usize>,
        /// Configuration file (YAML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write EVE JSON events to this file, or `-` for standard output.
        #[arg(long)]
        eve: Option<PathBuf>,
        /// Write the summary (with the kernel's counters) as JSON here on exit.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// SQLite database to continue from and write (inventory, baseline, alerts).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Serve /metrics, the API and the dashboard (default address: http.listen).
        #[arg(long, num_args = 0..=1, value_name = "ADDR")]
        serve: Option<Option<std::net::SocketAddr>>,
    },
    /// Remove a stale otsensor XDP program (left by a killed run) from interfaces.
    Detach {
        /// Interfaces to clean (repeatable); default: every interface.
        #[arg(long)]
        interface: Vec<String>,
    },
    /// Process capture files through the sensor pipeline and print a summary.
    Replay {
        /// pcap or pcapng files, processed in the order given.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Worker threads (overrides pipeline.workers).
        #[arg(long)]
        workers: Option<usize>,
        /// Configuration file (YAML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write EVE JSON events to this file, or `-` for standard output.
        #[arg(long)]
        eve: Option<PathBuf>,
        /// Pace packets by their capture timestamps.
        #[arg(long)]
        realtime: bool,
        /// Also write the summary as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// SQLite database to continue from and write (inventory, baseline, alerts);
        /// without it the run uses a private in-memory one.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Serve /metrics, the API and the dashboard during the replay and keep them up
        /// afterwards until SIGINT/SIGTERM (default address: http.listen).
        #[arg(long, num_args = 0..=1, value_name = "ADDR")]
        serve: Option<Option<std::net::SocketAddr>>,
        /// Rotate the EVE file when it reaches this many bytes (keeps 5 old files).
        #[arg(long, value_name = "BYTES")]
        eve_rotate_bytes: Option<u64>,
        /// Send alerts as CEF over syslog: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT.
        #[arg(long, value_name = "URL")]
        syslog: Option<String>,
        /// PEM CA certificates for --syslog tls://.
        #[arg(long, value_name = "FILE")]
        syslog_ca: Option<PathBuf>,
        /// POST each alert's JSON to this URL (bearer token from $OTSENSOR_WEBHOOK_TOKEN).
        #[arg(long, value_name = "URL")]
        webhook: Option<String>,
        /// Raise these alerts (JSON lines of the alert record) at the end of the capture,
        /// as if detected: for testing sinks and the dashboard.
        #[arg(long, value_name = "FILE")]
        inject_alerts: Option<PathBuf>,
    },
    /// Baseline learning: progress, end early, restart.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Stored alerts: list, acknowledge, learn ("learn this"), mute.
    Alerts {
        #[command(subcommand)]
        action: AlertsAction,
    },
    /// Validate a configuration file and exit.
    CheckConfig { file: PathBuf },
    /// Print the default configuration.
    DefaultConfig,
}

#[derive(Subcommand, Debug)]
enum BaselineAction {
    /// Print learning progress and baseline sizes as JSON.
    Status(Db),
    /// End learning now: deviations alert from the next observation.
    End(Db),
    /// Forget the baseline and learn again from the next observation.
    Restart(Db),
}

/// The database a command works on.
#[derive(clap::Args, Debug)]
struct Db {
    #[arg(long)]
    db: PathBuf,
}

#[derive(Subcommand, Debug)]
enum AlertsAction {
    /// Print stored alerts as JSON lines, newest first.
    List {
        /// Only alerts with this status (new, acknowledged, learned, muted).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        db: PathBuf,
    },
    /// Mark an alert acknowledged.
    Ack {
        id: u64,
        #[arg(long)]
        db: PathBuf,
    },
    /// Add what the alert saw to the baseline, and mark it learned.
    Learn {
        id: u64,
        #[arg(long)]
        db: PathBuf,
    },
    /// Keep counting the alert but stop writing it to the sinks.
    Mute {
        id: u64,
        #[arg(long)]
        db: PathBuf,
    },
}

fn open_store(path: &Path) -> anyhow::Result<Store> {
    Store::open(path).with_context(|| format!("--db {}", path.display()))
}

fn baseline_command(action: BaselineAction) -> anyhow::Result<ExitCode> {
    let (BaselineAction::Status(Db { db })
    | BaselineAction::End(Db { db })
    | BaselineAction::Restart(Db { db })) = &action;
    let mut store = open_store(db)?;
    match action {
        BaselineAction::Status(_) => {
            let status = serde_json::json!({
                "learning": store.learning()?,
                "baseline": store.baseline_counts()?,
                "devices": store.device_count()?,
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        BaselineAction::End(_) => {
            store.end_learning()?;
            println!("learning ended");
        }
        BaselineAction::Restart(_) => {
            store.restart_learning()?;
            println!("baseline cleared; learning restarts at the next observation");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn alerts_command(action: AlertsAction) -> anyhow::Result<ExitCode> {
    let (AlertsAction::List { db, .. }
    | AlertsAction::Ack { db, .. }
    | AlertsAction::Learn { db, .. }
    | AlertsAction::Mute { db, .. }) = &action;
    let mut store = open_store(db)?;
    match action {
        AlertsAction::List { status, limit, .. } => {
            let status = match status {
                Some(text) => Some(AlertStatus::parse(&text).with_context(|| {
                    format!("--status {text}: expected new, acknowledged, learned or muted")
                })?),
                None => None,
            };
            for alert in store.alerts(status, limit)? {
                println!("{}", serde_json::to_string(&alert)?);
            }
        }
        AlertsAction::Ack { id, .. } => store.set_alert_status(id, AlertStatus::Acknowledged)?,
        AlertsAction::Learn { id, .. } => store.learn_alert(id)?,
        AlertsAction::Mute { id, .. } => store.set_alert_status(id, AlertStatus::Muted)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag set by SIGTERM and SIGINT: the replay stops reading, drains and commits.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("signal handler")?;
    }
    Ok(stop)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("otsensor: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::default()),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay {
            files,
            workers,
            config,
            eve,
            realtime,
            summary_json,
            db,
            serve,
            eve_rotate_bytes,
            syslog,
            syslog_ca,
            webhook,
            inject_alerts,
        } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(workers) = workers {
                config.pipeline.workers = workers;
            }
            let policy = Arc::new(config.validate()?);
            let eve = match eve {
                Some(path) => {
                    let rotation =
                        eve_rotate_bytes.map(|max_bytes| Rotation { max_bytes, keep: 5 });
                    let mut writer = EveWriter::open_rotating(&path, rotation)
                        .with_context(|| format!("--eve {}", path.display()))?;
                    writer.reopen_on_sighup().context("SIGHUP handler")?;
                    Some(writer)
                }
                None => None,
            };
            let store = match &db {
                Some(path) => Some(open_store(path)?),
                None => None,
            };
            let metrics = Metrics::new()?;
            let mut sinks = AlertSinks::new(Some(Arc::clone(&metrics)));
            if let Some(url) = syslog {
                let target = SyslogTarget::parse(&url, syslog_ca).map_err(anyhow::Error::msg)?;
                sinks.add(SyslogSink::new(target)?, sinks::DEFAULT_QUEUE)?;
            }
            if let Some(url) = webhook {
                let token = std::env::var("OTSENSOR_WEBHOOK_TOKEN")
                    .ok()
                    .map(ApiToken::new);
                sinks.add(WebhookSink::new(url, token), sinks::DEFAULT_QUEUE)?;
            }
            let injected_alerts = match inject_alerts {
                Some(path) => read_alerts(&path)?,
                None => Vec::new(),
            };
            let mut server = None;
            let mut control = None;
            if let Some(address) = serve {
                let address = address.unwrap_or(policy.http_listen);
                let token = match policy.http_api_token.clone() {
                    Some(token) => token,
                    None => {
                        let token = ApiToken::new(random_token()?);
                        eprintln!(
                            "otsensor: no http.api_token configured; this session's token is {}",
                            token.expose()
                        );
                        token
                    }
                };
                let (tx, rx) = crossbeam_channel::bounded(otsensor::control::CONTROL_QUEUE);
                let state = AppState::new(tx, Arc::clone(&metrics), Some(token));
                let started = HttpServer::start(address, state)?;
                eprintln!("otsensor: serving http://{}/", started.local_addr());
                server = Some(started);
                control = Some(rx);
            }
            let mut source = PcapFiles::open(&files)?;
            let summary = pipeline::replay(
                &mut source,
                policy,
                ReplayOptions {
                    realtime,
                    eve,
                    store,
                    stop: Some(stop_flag()?),
                    metrics: Some(Arc::clone(&metrics)),
                    control,
                    alert_sinks: (!sinks.is_empty() || !injected_alerts.is_empty())
                        .then_some(sinks),
                    injected_alerts,
                    ..Default::default()
                },
            )?;
            print_summary(&summary);
            if let Some(path) = summary_json {
                let json = serde_json::to_string_pretty(&summary)?;
                std::fs::write(&path, json + "\n")
                    .with_context(|| format!("--summary-json {}", path.display()))?;
            }
            let truncated = source.truncated_files();
            for path in truncated {
                eprintln!(
                    "otsensor: warning: {}: truncated capture (file ends mid-record); \
                     processed the packets before the cut",
                    path.display()
                );
            }
            if let Some(server) = server {
                eprintln!(
                    "otsensor: replay done; still serving http://{}/ until interrupted",
                    server.local_addr()
                );
                wait_for_termination()?;
                server.stop();
            }
            Ok(if truncated.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::CheckConfig { file } => {
            // Exit 1 for a refused file, apart from 2 for usage and other errors.
            let validated = Config::load(&file).and_then(|config| {
                config.validate().map_err(|error| ConfigError::File {
                    path: file.display().to_string(),
                    error: Box::new(error),
                })
            });
            match validated {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("otsensor: {error}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Run {
            interface,
            workers,
            config,
            eve,
            summary_json,
            db,
            serve,
        } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(workers) = workers {
                config.pipeline.workers = workers;
            }
            let policy = Arc::new(config.validate()?);
            // Empty counts as absent: the unit passes --interface ${OTSENSOR_INTERFACE}.
            let interface = interface
                .filter(|name| !name.is_empty())
                .or_else(|| policy.capture_interface.clone())
                .context("no interface: pass --interface or set capture.interface")?;
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, Arc::clone(&stop))
                    .context("installing signal handlers")?;
            }
            let address = serve.map(|address| address.unwrap_or(policy.http_listen));
            let token = policy.http_api_token.clone();
            let mut server = None;
            // Runs once XDP is attached and the sockets are open: drops the capture
            // capabilities first, then opens the outputs and starts the HTTP server, so
            // that (capabilities being per thread) no thread of the process keeps any.
            let after_attach = || -> anyhow::Result<ReplayOptions> {
                let retained = otsensor::privileges::drop_after_attach()?;
                for (capability, why) in &retained.kept {
                    eprintln!("otsensor: keeping {capability} after attach: {why}");
                }
                eprintln!("otsensor: capture capabilities dropped after attach");
                let eve = match eve {
                    Some(path) => Some(
                        EveWriter::open(&path)
                            .with_context(|| format!("--eve {}", path.display()))?,
                    ),
                    None => None,
                };
                let store = match &db {
                    Some(path) => Some(open_store(path)?),
                    None => None,
                };
                let metrics = Metrics::new()?;
                let mut control = None;
                if let Some(address) = address {
                    let (tx, rx) = crossbeam_channel::bounded(otsensor::control::CONTROL_QUEUE);
                    server = Some(start_http(address, token, tx, &metrics)?);
                    control = Some(rx);
                }
                Ok(ReplayOptions {
                    eve,
                    store,
                    metrics: Some(metrics),
                    control,
                    ..Default::default()
                })
            };
            eprintln!("otsensor: starting capture on {interface}; SIGINT or SIGTERM stops");
            let live = otsensor::live::run_after_attach(&interface, policy, stop, after_attach);
            if let Some(server) = server {
                server.stop();
            }
            let live = live?;
            print_summary(&live.summary);
            for (label, (packets, bytes)) in &live.kernel.counters {
                if *packets > 0 {
                    println!("  kernel {label:<22}{packets} packets {bytes} bytes");
                }
            }
            if let Some(path) = summary_json {
                let json = serde_json::to_string_pretty(&live)?;
                std::fs::write(&path, json + "\n")
                    .with_context(|| format!("--summary-json {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Detach { interface } => detach_command(interface),
        Command::Baseline { action } => baseline_command(action),
        Command::Alerts { action } => alerts_command(action),
        Command::DefaultConfig => {
            print!("{}", otsensor::config::DEFAULT_CONFIG_YAML);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Starts /metrics, the API and the dashboard for `otsensor run`.
fn start_http(
    address: std::net::SocketAddr,
    token: Option<ApiToken>,
    control: crossbeam_channel::Sender<otsensor::control::ControlRequest>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<HttpServer> {
    let token = match token {
        Some(token) => token,
        None => {
            let token = ApiToken::new(random_token()?);
            eprintln!(
                "otsensor: no http.api_token configured; this session's token is {}",
                token.expose()
            );
            token
        }
    };
    let state = AppState::new(control, Arc::clone(metrics), Some(token));
    let server = HttpServer::start(address, state)?;
    eprintln!("otsensor: serving http://{}/", server.local_addr());
    Ok(server)
}

/// `otsensor detach`: removes stale otsensor XDP programs; exit 1 if an interface
/// could not be cleaned (a program of another tool, or one a running sensor holds).
fn detach_command(interfaces: Vec<String>) -> anyhow::Result<ExitCode> {
    let interfaces = if interfaces.is_empty() {
        let mut all: Vec<String> = std::fs::read_dir("/sys/class/net")
            .context("/sys/class/net")?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    } else {
        interfaces
    };
    let mut failed = false;
    for interface in &interfaces {
        match otsensor::ebpf::detach_stale(interface) {
            Ok(Some(prog_id)) => println!("{interface}: removed stale XDP program {prog_id}"),
            Ok(None) => {}
            Err(error) => {
                eprintln!("otsensor: {interface}: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_termination() -> anyhow::Result<()> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("signal handler")?;
    }
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// 128 random bits from the kernel, as hex.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("/dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Alerts as JSON lines of the alert record.
fn read_alerts(path: &std::path::Path) -> anyhow::Result<Vec<Alert>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--inject-alerts {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("--inject-alerts {}:{}", path.display(), index + 1))
        })
        .collect()
}

fn print_summary(summary: &Summary) {
    println!("packets      {}", summary.packets);
    println!("bytes        {}", summary.bytes);
    println!("flows        {}", summary.flows);
    println!("devices      {}", summary.devices);
    println!("alerts       {}", summary.alerts);
    for (signature, count) in &summary.alerts_by_signature {
        println!("  {signature:<19}{count}");
    }
    let latency = &summary.alert_latency_ns;
    if latency.count > 0 {
        println!(
            "alert latency p50 {} us, p99 {} us",
            latency.p50 / 1_000,
            latency.p99 / 1_000
        );
    }
    for (name, pdus) in &summary.protocols {
        println!("  {name:<11}{pdus} PDUs");
    }
    println!("workers      {}", summary.workers);
    println!("elapsed      {:.3} s", summary.elapsed_seconds);
    println!("rate         {:.0} packets/s", summary.packets_per_second);
}
