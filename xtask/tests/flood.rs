//! A flood of 10 million distinct flows keeps the process's peak memory within the
//! flow table's budget plus a constant, and every flow beyond the table's capacity is
//! an eviction that is counted. Runs `cargo xtask flood` as its own process so that the
//! peak RSS is the pipeline's alone.

use std::path::Path;
use std::process::Command;

/// What the pipeline may use beyond the flow table: threads, channels, batches, stream
/// buffers' touched pages, the binary itself.
const CONSTANT_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

/// DESIGN's memory target, "1 M flows + 100 k devices ≤ 2 GiB RSS", as a share per
/// tracked flow (all of it given to flows: an upper bound for a table of `max_flows`).
/// Independent of the flow table's own size formula, which the table reports.
const DESIGN_BYTES_PER_FLOW: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0 / 1_000_000.0;
const MAX_FLOWS: f64 = 100_000.0;

fn field(output: &str, line: &str, word: usize) -> f64 {
    output
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.split_whitespace().nth(word))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line:?} in:\n{output}"))
}

#[test]
fn ten_million_flows_stay_within_the_flow_budget() {
    let exe = std::env::current_exe().expect("test path");
    let xtask = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("xtask");
    let output = Command::new(&xtask)
        .args(["flood", "--flows", "10000000", "--max-flows"])
        .arg((MAX_FLOWS as u64).to_string())
        .output()
        .expect("run xtask flood");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(field(&stdout, "flows", 1), 10_000_000.0);
    assert_eq!(
        field(&stdout, "flows", 3),
        9_900_000.0,
        "every flow past capacity is an eviction"
    );
    let table_mib = field(&stdout, "table", 7);
    let peak_mib = field(&stdout, "peak RSS", 2);
    let design_mib = MAX_FLOWS * DESIGN_BYTES_PER_FLOW / 1048576.0;
    assert!(
        table_mib <= design_mib,
        "the flow table plans {table_mib} MiB, more than DESIGN allows ({design_mib:.0} MiB)"
    );
    assert!(
        peak_mib * 1048576.0 <= design_mib * 1048576.0 + CONSTANT_BYTES,
        "peak RSS {peak_mib} MiB exceeds DESIGN's share for {MAX_FLOWS} flows \
         ({design_mib:.0} MiB) + 64 MiB"
    );
}
