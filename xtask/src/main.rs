//! `cargo xtask …`: project automation (capture generation, benchmarks).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use xtask::{bench, gen, oui};

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
    /// Regenerate sensor/data/oui.tsv (MAC vendors) from Debian's ieee-data package.
    GenOui {
        #[arg(long, default_value = "/usr/share/ieee-data/oui.csv")]
        csv: PathBuf,
        #[arg(long, default_value = "sensor/data/oui.tsv")]
        out: PathBuf,
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
}

#[derive(Subcommand)]
enum Gen {
    /// An OT plant mix (Modbus/TCP, DNP3, BACnet/IP, EtherNet/IP, S7comm, ARP, LLDP,
    /// DNS, TLS-like bulk) and its ground truth in FILE.truth.json.
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
        Task::GenOui { csv, out } => {
            let version = std::process::Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", "ieee-data"])
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "(unknown version)".to_owned());
            let prefixes = oui::generate(&csv, &version, &out)?;
            eprintln!("wrote {} ({prefixes} prefixes)", out.display());
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
    }
    Ok(())
}
