//! `cargo xtask …`: project automation (capture generation, benchmarks).

mod bench;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: bench::CountingAllocator = bench::CountingAllocator;

#[derive(Parser, Debug)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark the pipeline on a capture loaded into memory.
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Replay {
            file,
            workers,
            repeat,
        } => bench::replay(&bench::ReplayBench {
            file: &file,
            workers,
            repeat: repeat.max(1),
        }),
    }
}
