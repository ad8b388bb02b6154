//! The `otsensor` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use otsensor::capture::pcap::PcapFiles;
use otsensor::detect::AlertStatus;

use otsensor::changes::ChangeSender;
use otsensor::config::{ApiToken, Config, Error as ConfigError};
use otsensor::control::SnapshotCell;
use otsensor::http::{token, AppState, HttpServer};
use otsensor::metrics::Metrics;
use otsensor::output::eve::{EveWriter, Rotation};
use otsensor::output::nats::NatsOutput;
use otsensor::output::sinks::{self, AlertSinks};
use otsensor::output::syslog::{SyslogSink, SyslogTarget};
use otsensor::output::webhook::{self, WebhookSink};
use otsensor::pipeline::{self, ReplayOptions, Summary};
use otsensor::reload::{ReloadService, Reloader, SharedPolicy};
use otsensor::store::Store;

mod progress;

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

/// Where a run's events, state and alerts go (shared by `run` and `replay`).
#[derive(clap::Args, Debug)]
struct OutputArgs {
    /// Write EVE JSON events to this file, or `-` for standard output.
    #[arg(long)]
    eve: Option<PathBuf>,
    /// Rotate the EVE file when it reaches this many bytes (keeps 5 old files).
    #[arg(long, value_name = "BYTES")]
    eve_rotate_bytes: Option<u64>,
    /// SQLite database to continue from and write (inventory, baseline, alerts);
    /// without it the run uses a private in-memory one.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Serve /metrics, the API and the dashboard (default address: http.listen). A
    /// replay keeps serving after the capture ends, until SIGINT/SIGTERM.
    #[arg(long, num_args = 0..=1, value_name = "ADDR")]
    serve: Option<Option<std::net::SocketAddr>>,
    /// Send alerts as CEF over syslog: udp://HOST:PORT, tcp://HOST:PORT or
    /// tls://HOST:PORT (overrides outputs.syslog.url).
    #[arg(long, value_name = "URL")]
    syslog: Option<String>,
    /// PEM CA certificates for --syslog tls:// (overrides outputs.syslog.ca_file).
    #[arg(long, value_name = "FILE")]
    syslog_ca: Option<PathBuf>,
    /// POST each alert's JSON to this URL, https:// or http:// (overrides
    /// outputs.webhook.url; bearer token from $OTSENSOR_WEBHOOK_TOKEN, else
    /// outputs.webhook.token or outputs.webhook.token_file; CA from outputs.webhook.ca_file).
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
}

/// The opened outputs of one run.
struct Outputs {
    options: ReplayOptions,
    server: Option<HttpServer>,
    /// `outputs.nats`: stopped after the pipeline (and the server) so it can drain.
    fleet: Option<NatsOutput>,
}

impl OutputArgs {
    /// Opens the EVE file, database, sinks and HTTP server the flags and the policy ask for.
    /// `reload` (live runs) makes `POST /api/config/reload` available, and EVE follow
    /// `outputs.eve` when `--eve` is not given.
    fn open(
        self,
        policy: &otsensor::config::Policy,
        metrics: Arc<Metrics>,
        reload: Option<crossbeam_channel::Sender<otsensor::reload::ReloadRequest>>,
    ) -> anyhow::Result<Outputs> {
        // A live sensor follows outputs.eve; a replay writes EVE only when asked.
        let eve_path = self
            .eve
            .or_else(|| (reload.is_some() && policy.eve_enabled).then(|| policy.eve_path.clone()));
        let eve = match eve_path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if path != Path::new("-") {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("EVE directory {}", dir.display()))?;
                    }
                }
                let rotation = self
                    .eve_rotate_bytes
                    .map(|max_bytes| Rotation { max_bytes, keep: 5 });
                let mut writer = EveWriter::open_rotating(&path, rotation)
                    .map_err(|error| eve_open_error(&path, error))?;
                writer.reopen_on_sighup().context("SIGHUP handler")?;
                Some(writer)
            }
            None => None,
        };
        let serve = match self.serve {
            Some(address) => Some(address.unwrap_or(policy.http_listen)),
            None => policy.http_enabled.then_some(policy.http_listen),
        };
        let store = match &self.db {
            Some(path) => Some(open_store(path)?),
            // The API reads alerts through connections of its own, which need a file.
            None if serve.is_some() => {
                Some(Store::temporary().context("temporary database for --serve")?)
            }
            None => None,
        };
        let database = store.as_ref().and_then(|s| s.path().map(Path::to_path_buf));
        // Alert evidence: `evidence.dir`, else `evidence/` beside the --db file.
        let evidence_dir = policy.evidence.enabled.then(|| {
            policy.evidence.dir.clone().or_else(|| {
                self.db.as_ref().map(|db| {
                    db.parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .join("evidence")
                })
            })
        });
        let evidence_dir = evidence_dir.flatten();
        let mut sinks = AlertSinks::new(Some(Arc::clone(&metrics)));
        let syslog = self.syslog.or_else(|| policy.syslog_url.clone());
        if let Some(url) = syslog {
            let ca = self.syslog_ca.or_else(|| policy.syslog_ca_file.clone());
            let target = SyslogTarget::parse(&url, ca).map_err(anyhow::Error::msg)?;
            sinks.add(SyslogSink::new(target)?, sinks::DEFAULT_QUEUE)?;
        }
        if let Some(url) = self.webhook.or_else(|| policy.webhook_url.clone()) {
            webhook::check_url(&url)
                .map_err(|reason| anyhow::anyhow!("--webhook {url:?} {reason}"))?;
            let token = match std::env::var("OTSENSOR_WEBHOOK_TOKEN") {
                Ok(token) => Some(ApiToken::new(token)),
                Err(_) => policy.webhook_token.clone(),
            };
            let sink = WebhookSink::new(url, token, policy.webhook_ca_file.as_deref())?;
            sinks.add(sink, sinks::DEFAULT_QUEUE)?;
        }
        let mut server = None;
        let mut control = None;
        let mut snapshot = None;
        // The HTTP server and the fleet's commands both ask the analyzer.
        let (control_tx, control_rx) = crossbeam_channel::bounded(otsensor::control::CONTROL_QUEUE);
        let mut fleet = None;
        if let Some(settings) = policy.nats.clone() {
            let (changes, rx, dropped) = ChangeSender::channel(otsensor::changes::CHANGE_QUEUE);
            sinks.set_state_changes(changes);
            fleet = Some(
                NatsOutput::start(
                    settings,
                    rx,
                    dropped,
                    control_tx.clone(),
                    Some(Arc::clone(&metrics)),
                )
                .context("outputs.nats")?,
            );
            control = Some(control_rx.clone());
        }
        if let Some(address) = serve {
            let (token, source) = token::resolve(
                policy.http_api_token.clone(),
                policy.http_api_token_file.as_deref(),
            )
            .context("http.api_token_file")?;
            let (tx, rx) = (control_tx.clone(), control_rx.clone());
            let cell = SnapshotCell::new();
            let mut state = AppState::new(tx, Arc::clone(&cell), Arc::clone(&metrics), Some(token));
            if let Some(path) = &database {
                state = state.with_alert_database(path);
            }
            if let Some(dir) = &evidence_dir {
                state = state.with_evidence_dir(dir);
            }
            if let Some(reload) = reload {
                state = state.with_reload(reload);
            }
            let mut started = HttpServer::start(address, state, policy.http_limits.clone())?;
            // The token itself is never printed: stderr goes to the journal.
            match source {
                token::TokenSource::Configured => {}
                token::TokenSource::Created(file) => eprintln!(
                    "otsensor: generated an API token in {} (http.api_token_file)",
                    file.display()
                ),
                token::TokenSource::Temporary { file, dir } => {
                    eprintln!(
                        "otsensor: no http.api_token configured; this session's token is in {}",
                        file.display()
                    );
                    started.remove_on_stop(dir);
                }
            }
            eprintln!("otsensor: serving http://{}/", started.local_addr());
            server = Some(started);
            control = Some(rx);
            snapshot = Some(cell);
        }
        Ok(Outputs {
            options: ReplayOptions {
                eve,
                store,
                metrics: Some(Arc::clone(&metrics)),
                control,
                snapshot,
                alert_sinks: Some(sinks),
                evidence_dir,
                ..Default::default()
            },
            server,
            fleet,
        })
    }
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
        /// Write the summary (with the kernel's counters) as JSON here on exit.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        #[command(flatten)]
        outputs: OutputArgs,
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
        /// Pace packets by their capture timestamps.
        #[arg(long)]
        realtime: bool,
        /// Pace packets at this multiple of capture time (e.g. 20: a minute of capture in 3 s);
        /// implies --realtime.
        #[arg(long, value_name = "FACTOR")]
        realtime_speed: Option<f64>,
        /// Also write the summary as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// No progress line (it is shown only when stderr is a terminal anyway).
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        outputs: OutputArgs,
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
    /// Known vulnerabilities: import newer CISA CSAF advisories into the database.
    Advisories {
        #[command(subcommand)]
        action: AdvisoriesAction,
    },
    /// Validate a configuration file and exit.
    CheckConfig { file: PathBuf },
    /// Print the default configuration.
    DefaultConfig,
    /// Check and set what capture needs on a NIC: promiscuous mode, queues, ring sizes,
    /// offloads off, symmetric RSS, IRQ affinity. Idempotent.
    NicSetup {
        #[arg(long)]
        interface: String,
        /// Receive queues to configure (one per worker); default: keep the current count.
        #[arg(long)]
        queues: Option<u32>,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check whether this box can capture on an interface, and what to fix.
    Doctor {
        #[arg(long)]
        interface: String,
    },
    /// The fleet hub: consume what sensors publish to NATS JetStream into PostgreSQL and
    /// serve the fleet's dashboard and API (docs/FLEET.md).
    Hub {
        /// NATS servers, comma-separated (overrides nats.url of --config).
        #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
        nats: Vec<String>,
        /// PostgreSQL connection URL (overrides postgres of --config).
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Serve the dashboard, /api and /metrics here (overrides listen of --config).
        #[arg(long, value_name = "ADDR")]
        serve: Option<std::net::SocketAddr>,
        /// Hub configuration (YAML): sensors and their keys, API token, NATS credentials.
        #[arg(long)]
        config: Option<PathBuf>,
    },
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
enum AdvisoriesAction {
    /// Read every CSAF 2.0 file under DIR and store the advisories newer than the
    /// sensor's (new ids or later revisions); other files are skipped with the reason.
    /// A running sensor picks them up at its next commit.
    Import {
        dir: PathBuf,
        #[arg(long)]
        db: PathBuf,
    },
    /// Print the advisory catalogue in force (embedded and imported) as JSON.
    Status(Db),
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

/// Why the EVE file did not open; for a permission problem (a file left by an earlier
/// run as root, then a service running as its own user), what to do about it.
fn eve_open_error(path: &Path, error: std::io::Error) -> anyhow::Error {
    if error.kind() != std::io::ErrorKind::PermissionDenied {
        return anyhow::Error::new(error).context(format!("--eve {}", path.display()));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    anyhow::anyhow!(
        "--eve {}: {error}: the file or its directory belongs to another user (an earlier run \
         as root?); give them to the user otsensor runs as, e.g. `chown -R otsensor:otsensor {}` \
         (installing or reconfiguring the package does this: dpkg-reconfigure otsensor)",
        path.display(),
        dir.display()
    )
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

fn advisories_command(action: AdvisoriesAction) -> anyhow::Result<ExitCode> {
    use otsensor::advisories;
    match action {
        AdvisoriesAction::Import { dir, db } => {
            anyhow::ensure!(dir.is_dir(), "{}: not a directory", dir.display());
            let mut store = open_store(&db)?;
            let report = advisories::import_into_store(&dir, &mut store)?;
            for (path, reason) in &report.skipped {
                eprintln!("skipped {}: {reason}", path.display());
            }
            println!(
                "imported {} advisories ({} already known, {} files skipped) into {}",
                report.imported.len(),
                report.unchanged,
                report.skipped.len(),
                db.display()
            );
        }
        AdvisoriesAction::Status(Db { db }) => {
            let store = open_store(&db)?;
            let stored: Vec<advisories::Advisory> = store
                .imported_advisories()?
                .iter()
                .filter_map(|block| advisories::table::read(block).ok())
                .flatten()
                .collect();
            let imported = stored.len();
            let catalogue = advisories::embedded().with_imports(stored);
            let newest = catalogue
                .advisories()
                .iter()
                .map(|a| a.revised.as_str())
                .max();
            let status = serde_json::json!({
                "embedded": advisories::embedded().source(),
                "imported": imported,
                "advisories": catalogue.len(),
                "products": catalogue.entries(),
                "newest": newest,
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
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
            realtime,
            realtime_speed,
            summary_json,
            quiet,
            outputs,
        } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(workers) = workers {
                config.pipeline.workers = workers;
            }
            let policy = Arc::new(config.validate()?);
            let metrics = Metrics::new()?;
            let Outputs {
                options,
                server,
                fleet,
            } = outputs.open(&policy, Arc::clone(&metrics), None)?;
            let mut source = PcapFiles::open(&files)?;
            let progress = progress::Progress::start(&files, metrics, quiet);
            let summary = pipeline::replay(
                &mut source,
                policy,
                ReplayOptions {
                    realtime,
                    realtime_speed,
                    stop: Some(stop_flag()?),
                    ..options
                },
            );
            if let Some(progress) = progress {
                progress.finish();
            }
            let summary = summary?;
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
            if let Some(fleet) = fleet {
                fleet.stop();
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
            config: config_path,
            summary_json,
            outputs,
        } => {
            let mut config = load_config(config_path.as_ref())?;
            if let Some(workers) = workers {
                config.pipeline.workers = workers;
            }
            // Empty counts as absent: the unit passes --interface ${OTSENSOR_INTERFACE}.
            let interface = interface
                .filter(|name| !name.is_empty())
                .or_else(|| config.capture.interface.clone())
                .context("no interface: pass --interface or set capture.interface")?;
            // One worker per RX queue: each owns its queue's socket.
            config.pipeline.workers =
                otsensor::live::worker_count(&interface, config.pipeline.workers);
            let policy = Arc::new(config.validate()?);
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, Arc::clone(&stop))
                    .context("installing signal handlers")?;
            }
            let metrics = Metrics::new()?;
            // Config reload: SIGHUP and POST /api/config/reload re-read --config.
            let shared = SharedPolicy::new(Arc::clone(&policy));
            let reloader = Reloader::new(
                config_path.clone(),
                // The worker count is the queue count, whatever a reloaded file says.
                Some(policy.workers),
                Arc::clone(&shared),
                Some(metrics.config_metrics()?),
            );
            let open_policy = Arc::clone(&policy);
            let mut running = None;
            // Runs once XDP is attached and the sockets are open: drops the capture
            // capabilities first, then starts the threads (reload, HTTP, sinks), so that
            // (capabilities being per thread) no thread of the process keeps any.
            let after_attach = || -> anyhow::Result<ReplayOptions> {
                let retained = otsensor::privileges::drop_after_attach()?;
                for (capability, why) in &retained.kept {
                    eprintln!("otsensor: keeping {capability} after attach: {why}");
                }
                eprintln!("otsensor: capture capabilities dropped after attach");
                let reload = ReloadService::start(reloader, true).context("SIGHUP handler")?;
                let opened = outputs.open(&open_policy, metrics, Some(reload.requests()));
                let Outputs {
                    options,
                    server,
                    fleet,
                } = match opened {
                    Ok(opened) => opened,
                    Err(error) => {
                        reload.stop();
                        return Err(error);
                    }
                };
                running = Some((server, reload, fleet));
                Ok(ReplayOptions {
                    reloadable_policy: Some(shared),
                    ..options
                })
            };
            eprintln!(
                "otsensor: starting capture on {interface}; SIGHUP reloads the configuration, SIGINT or SIGTERM stops"
            );
            let live = otsensor::live::run_after_attach(&interface, policy, stop, after_attach);
            if let Some((server, reload, fleet)) = running {
                if let Some(server) = server {
                    server.stop();
                }
                reload.stop();
                if let Some(fleet) = fleet {
                    fleet.stop();
                }
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
        Command::Advisories { action } => advisories_command(action),
        Command::NicSetup {
            interface,
            queues,
            dry_run,
        } => {
            let options = otsensor::nic::Options {
                interface,
                queues,
                dry_run,
            };
            let report = otsensor::nic::setup(&options)?;
            use otsensor::nic::Status;
            let failed = report.count(Status::Failed);
            if dry_run {
                println!(
                    "nic-setup (dry run): {} would change, {} unsupported, {} failed",
                    report.count(Status::WouldChange),
                    report.count(Status::Unsupported),
                    failed
                );
            } else {
                println!(
                    "nic-setup: {} changed, {} unsupported, {} failed",
                    report.count(Status::Changed),
                    report.count(Status::Unsupported),
                    failed
                );
            }
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Doctor { interface } => {
            println!("otsensor doctor: {interface}");
            let report = otsensor::doctor::diagnose(&interface);
            print!("{report}");
            Ok(if report.verdict() == otsensor::doctor::Level::Fail {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Hub {
            nats,
            postgres,
            serve,
            config,
        } => {
            let mut hub = match &config {
                Some(path) => otsensor::hub::HubConfig::load(path)?,
                None => otsensor::hub::HubConfig::default(),
            };
            if !nats.is_empty() {
                hub.nats.url = nats;
            }
            if postgres.is_some() {
                hub.postgres = postgres;
            }
            if serve.is_some() {
                hub.listen = serve;
            }
            otsensor::hub::run(hub, stop_flag()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DefaultConfig => {
            print!("{}", otsensor::config::DEFAULT_CONFIG_YAML);
            Ok(ExitCode::SUCCESS)
        }
    }
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
