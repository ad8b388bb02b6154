//! A flood of 10 million distinct flows keeps the process's peak memory within the
//! flow table's budget plus a constant, and every flow beyond the table's capacity is
//! an eviction that is counted. Runs `cargo xtask flood` as its own process so that the
//! peak RSS is the pipeline's alone.

use std::path::Path;
use std::process::Command;

/// What the pipeline may use beyond the flow table: threads, channels, batches, stream
/// buffers' touched pages, the binary itself.
const CONSTANT_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

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
        .args(["flood", "--flows", "10000000", "--max-flows", "100000"])
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
    let budget_mib = field(&stdout, "table", 7);
    let peak_mib = field(&stdout, "peak RSS", 2);
    assert!(
        peak_mib * 1048576.0 <= budget_mib * 1048576.0 + CONSTANT_BYTES,
        "peak RSS {peak_mib} MiB exceeds the budget {budget_mib} MiB + 64 MiB"
    );
}
