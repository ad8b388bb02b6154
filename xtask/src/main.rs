//! `cargo xtask …`: project automation (capture generation, benchmarks).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use xtask::{advisories, bench, device_flood, gen, oui, vendors};

#[global_allocator]
static ALLOCATOR: bench::CountingAllocator = bench::CountingAllocator;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "otsensor project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Generate synthetic captures.
    #[command(subcommand)]
    Gen(Gen),
    /// Write the fuzz targets' seed corpora from the shared captures.
    FuzzCorpus {
        #[arg(long, default_value = "../shared/pcaps")]
        pcaps: PathBuf,
        #[arg(long, default_value = "fuzz/corpus")]
        out: PathBuf,
    },
    /// Flood the pipeline with distinct flows (generated in memory) and print the
    /// peak RSS against the flow table's budget, and the evictions.
    Flood {
        #[arg(long, default_value_t = 10_000_000)]
        flows: u64,
        #[arg(long, default_value_t = 100_000)]
        max_flows: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Flood the pipeline with frames from random source MACs/IPs and show that the
    /// inventory stays bounded; prints peak RSS.
    FloodDevices {
        #[arg(long, default_value_t = 1_000_000)]
        sources: u64,
        /// inventory.max_devices for the run.
        #[arg(long, default_value_t = 100_000)]
        max_devices: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Regenerate sensor/data/oui.tsv (MAC vendors) from Debian's ieee-data package
    /// (its MA-L, MA-M, MA-S and IAB registries).
    GenOui {
        #[arg(long, default_value = "/usr/share/ieee-data")]
        dir: PathBuf,
        #[arg(long, default_value = "sensor/data/oui.tsv")]
        out: PathBuf,
    },
    /// Regenerate sensor/data/advisories.tsv.gz (known vulnerabilities) from a
    /// directory of CISA CSAF 2.0 advisories.
    GenAdvisories {
        /// The CSAF directory (e.g. ../shared/advisories/cisa-csaf-ot).
        dir: PathBuf,
        #[arg(long, default_value = "sensor/data/advisories.tsv.gz")]
        out: PathBuf,
    },
    /// Regenerate wire/src/vendors/table.rs (CIP and BACnet vendor ids) from
    /// tshark's value strings.
    GenVendors {
        /// Output of `tshark -G values`; runs tshark when absent.
        #[arg(long)]
        values: Option<PathBuf>,
        #[arg(long, default_value = "wire/src/vendors/table.rs")]
        out: PathBuf,
    },
    /// Build the release binary and the Debian package (dpkg-deb); prints its path.
    Package {
        /// Directory for the .deb (default: <target dir>/debian).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Package the existing target/release/otsensor without running cargo build.
        #[arg(long)]
        no_build: bool,
    },
    /// A fleet on loopback: a 3-node NATS JetStream cluster, PostgreSQL, the hub and three
    /// sensors replaying generated plants; prints the dashboard URL, tears down on Enter.
    FleetLab {
        /// The otsensor binary (default: $CARGO_TARGET_DIR or target, release/otsensor).
        #[arg(long)]
        otsensor: Option<PathBuf>,
        /// Port of the hub's dashboard on 127.0.0.1.
        #[arg(long, default_value_t = 8480)]
        port: u16,
        /// Replay speed (multiple of capture time); the plants run 200 s of capture.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Hub ingest rate (messages/s into PostgreSQL) and alert → PostgreSQL latency on a
    /// loopback 3-node cluster, against JetStream's own publish rate in the same run.
    FleetBench {
        #[arg(long)]
        otsensor: Option<PathBuf>,
        /// Messages for the ingest measurement.
        #[arg(long, default_value_t = 30_000)]
        messages: u64,
        /// Alerts for the latency measurement (sent at `--rate` per second).
        #[arg(long, default_value_t = 2_000)]
        alerts: u64,
        #[arg(long, default_value_t = 200)]
        rate: u64,
    },
    /// Benchmark the pipeline on a capture loaded into memory, against the null
    /// pipeline (read + slice) measured in the same run.
    Replay {
        file: PathBuf,
        /// Worker counts for the threaded pipeline runs (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        workers: Vec<usize>,
        /// Runs per measurement; the best is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Benchmark the analyzer alone on the observations one worker makes of a capture:
    /// CPU per observation, and its allocations by observation kind (first run, then
    /// a warm pass of the same observations).
    AnalyzeBench {
        file: PathBuf,
        /// Runs: the first counts allocations, the best of the others is timed.
        #[arg(long, default_value_t = 4)]
        repeat: usize,
    },
    /// Whether one analyzer keeps up with N busy workers: the workers' CPU per packet
    /// against the analyzer's, merging their N observation streams, on one core each.
    AnalyzerCapacity {
        file: PathBuf,
        /// Workers whose streams the analyzer merges.
        #[arg(long, default_value_t = 4)]
        producers: usize,
        /// Runs of each measurement; the best is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Live capture on a veth pair between two namespaces (needs root): the highest
    /// send rate with zero loss for `otsensor run` and for `tcpdump -w /dev/null`.
    LiveBench {
        /// The otsensor binary (default: $CARGO_TARGET_DIR or target, release/otsensor).
        #[arg(long)]
        otsensor: Option<PathBuf>,
        /// Packets in the generated mix, sent once per trial.
        #[arg(long, default_value_t = 100_000)]
        packets: u64,
        #[arg(long, default_value_t = 25_000)]
        start_pps: u64,
        #[arg(long, default_value_t = 3_200_000)]
        max_pps: u64,
        /// Bisection steps between the last clean and the first lossy rate.
        #[arg(long, default_value_t = 3)]
        refine: u32,
        #[arg(long, default_value_t = 2)]
        queues: u32,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// The common rate of the CPU-per-packet comparison (0: the lower of the two
        /// zero-loss rates).
        #[arg(long, default_value_t = 0)]
        cpu_pps: u64,
        /// Seconds over which otsensor's CPU with no traffic is measured (0: skip).
        #[arg(long, default_value_t = 10)]
        idle_seconds: u64,
        /// Times the mix is sent in each trial of the CPU comparison (CPU time is
        /// counted in 10 ms ticks: more packets, finer figures).
        #[arg(long, default_value_t = 5)]
        cpu_repeat: u64,
        /// Leave the veth's receive work in the sender's system calls (the kernel's
        /// default) instead of threaded NAPI and RPS, as a NIC would spread it.
        #[arg(long)]
        rx_in_sender: bool,
    },
    /// The XDP pre-filter's cost per frame against the empty XDP program
    /// (BPF_PROG_TEST_RUN, same run; needs root). Exits non-zero when a frame costs
    /// more than the empty program plus --target-ns.
    XdpBench {
        /// Runs per round inside the kernel.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Alternating rounds; the least disturbed of each is kept.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Allowed cost over the empty program (DESIGN's target: 75 ns).
        #[arg(long, default_value_t = 75.0)]
        target_ns: f64,
    },
}

#[derive(Subcommand)]
enum Gen {
    /// An OT plant mix (Modbus/TCP, S7comm, S7comm-plus, EtherNet/IP, DNP3, IEC 104, OPC
    /// UA, MQTT, BACnet/IP, GOOSE, MMS, PROFINET IO, ARP, LLDP, DHCP, mDNS, DNS, TLS-like
    /// bulk) and its ground truth in FILE.truth.json.
    Mix {
        /// Frames to write.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Seed of the random stream: same seed and size, same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Timestamp resolution of the pcap file.
        #[arg(long, value_enum, default_value_t = TsResolution::Micro)]
        resolution: TsResolution,
        /// The capture to write (legacy pcap, Ethernet).
        #[arg(long)]
        out: PathBuf,
    },
    /// A labelled detection scenario (learning phase, then an attack) and its ground
    /// truth in FILE.truth.json; `--name list` prints the names.
    Scenario {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TsResolution {
    Micro,
    Nano,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Gen(Gen::Mix {
            packets,
            seed,
            resolution,
            out,
        }) => {
            let started = Instant::now();
            let options = gen::MixOptions {
                packets,
                seed,
                resolution: match resolution {
                    TsResolution::Micro => gen::Resolution::Micro,
                    TsResolution::Nano => gen::Resolution::Nano,
                },
            };
            let truth = gen::mix(&options, &out)?;
            let elapsed = started.elapsed().as_secs_f64();
            eprintln!(
                "wrote {} ({} packets, {} flows, {} devices) and {} in {elapsed:.2} s",
                out.display(),
                truth.packets,
                truth.flows,
                truth.devices,
                gen::truth_path(&out).display(),
            );
        }
        Task::Gen(Gen::Scenario { name, out }) => {
            if name == "list" {
                for name in gen::scenario::SCENARIOS {
                    println!("{name}");
                }
                return Ok(());
            }
            let out = out.ok_or_else(|| anyhow::anyhow!("--out FILE is required"))?;
            let truth = gen::scenario::generate(&name, &out)?;
            eprintln!(
                "wrote {} and {} ({} alerts expected; learning.duration = {}s)",
                out.display(),
                gen::truth_path(&out).display(),
                truth.alerts.len(),
                truth.learning_duration_s
            );
        }
        Task::FloodDevices {
            sources,
            max_devices,
            workers,
        } => {
            let report = device_flood::run(sources, max_devices, workers)?;
            let s = &report.summary;
            println!("sources              {sources}");
            println!("packets              {}", s.packets);
            println!("inventory devices    {} (cap {max_devices})", s.devices);
            println!(
                "over capacity        {}",
                s.analyzer.counters.devices_over_capacity
            );
            println!(
                "inventory_full       {}",
                s.alerts_by_signature
                    .get("inventory_full")
                    .copied()
                    .unwrap_or(0)
            );
            println!("alerts               {}", s.alerts);
            println!("elapsed              {:.2} s", s.elapsed_seconds);
            println!("peak RSS (VmHWM)     {} MiB", report.peak_rss_kib / 1024);
        }
        Task::GenOui { dir, out } => {
            let version = std::process::Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", "ieee-data"])
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "(unknown version)".to_owned());
            let prefixes = oui::generate(&dir, &version, &out)?;
            eprintln!("wrote {} ({prefixes} prefixes)", out.display());
        }
        Task::GenAdvisories { dir, out } => {
            let generated = advisories::generate(&dir, &out)?;
            for (path, reason) in &generated.skipped {
                eprintln!("skipped {}: {reason}", path.display());
            }
            eprintln!(
                "wrote {} ({} files, {} advisories, {} products, {} skipped; {} bytes of text, {} gzip)",
                out.display(),
                generated.files,
                generated.advisories,
                generated.products,
                generated.skipped.len(),
                generated.text_bytes,
                generated.gzip_bytes,
            );
        }
        Task::GenVendors { values, out } => {
            let (cip, bacnet) = vendors::generate(values.as_deref(), &out)?;
            eprintln!(
                "wrote {} ({cip} CIP vendors, {bacnet} BACnet vendors)",
                out.display()
            );
        }
        Task::Package { out_dir, no_build } => {
            let deb = xtask::package::package(out_dir, no_build)?;
            println!("{}", deb.display());
        }
        Task::FuzzCorpus { pcaps, out } => xtask::corpus::write(&pcaps, &out)?,
        Task::Flood {
            flows,
            max_flows,
            workers,
        } => {
            xtask::flood::run(flows, max_flows, workers)?;
        }
        Task::Replay {
            file,
            workers,
            repeat,
        } => {
            bench::replay(&bench::ReplayBench {
                file: &file,
                workers,
                repeat: repeat.max(1),
            })?;
        }
        Task::AnalyzeBench { file, repeat } => bench::analyzer(&file, repeat)?,
        Task::AnalyzerCapacity {
            file,
            producers,
            repeat,
        } => xtask::analyzer_capacity::run(&file, producers, repeat)?,
        Task::FleetLab {
            otsensor,
            port,
            speed,
        } => {
            let dir =
                std::env::temp_dir().join(format!("otsensor-fleet-lab-{}", std::process::id()));
            let result = xtask::fleet_lab::run(&xtask::fleet_lab::LabOptions {
                binary: otsensor.unwrap_or_else(default_otsensor),
                dir: dir.clone(),
                hub_port: port,
                speed,
            });
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        Task::FleetBench {
            otsensor,
            messages,
            alerts,
            rate,
        } => {
            let dir =
                std::env::temp_dir().join(format!("otsensor-fleet-bench-{}", std::process::id()));
            let result = xtask::fleet_bench::run(&xtask::fleet_bench::BenchOptions {
                binary: otsensor.unwrap_or_else(default_otsensor),
                dir: dir.clone(),
                messages,
                alerts,
                rate,
            });
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        Task::LiveBench {
            otsensor,
            packets,
            start_pps,
            max_pps,
            refine,
            queues,
            workers,
            cpu_pps,
            idle_seconds,
            cpu_repeat,
            rx_in_sender,
        } => {
            let otsensor = otsensor.unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("target"));
                target.join("release").join("otsensor")
            });
            xtask::live_bench::live_bench(&xtask::live_bench::LiveBench {
                otsensor,
                packets,
                start_pps,
                max_pps,
                refine,
                queues,
                workers,
                cpu_pps,
                idle_seconds,
                cpu_repeat,
                rx_in_sender,
            })?;
        }
        Task::XdpBench {
            repeat,
            rounds,
            target_ns,
        } => {
            let bench = xtask::xdp_bench::XdpBench {
                repeat,
                rounds,
                target_ns,
            };
            let results = xtask::xdp_bench::run(&bench)?;
            let over = xtask::xdp_bench::over_target(&results, target_ns);
            if !over.is_empty() {
                let names: Vec<&str> = over.iter().map(|c| c.name).collect();
                anyhow::bail!(
                    "XDP pre-filter above empty + {target_ns} ns on: {}",
                    names.join(", ")
                );
            }
            println!("xdp-bench: every frame within empty + {target_ns} ns");
        }
    }
    Ok(())
}

/// `$CARGO_TARGET_DIR` (or `target`)`/release/otsensor`.
fn default_otsensor() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("release")
        .join("otsensor")
}
