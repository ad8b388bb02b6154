#!/usr/bin/env bash
# Quick start, step 2: the whole test suite, exactly as CI runs it (`.ci/run`).
# Needs ../shared beside the repository (the shared captures). Kernel tests (XDP,
# AF_XDP, network namespaces) need root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if [[ ! -d ../shared/pcaps ]]; then
  echo "test.sh: ../shared/pcaps is missing: the shared capture set must sit beside the repository" >&2
  exit 1
fi
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Release mode: the suite replays millions of packets.
mkdir -p target
# Tests that cannot run here (a tool or root missing) print `SKIPPED: …` and append the
# line to this file (xtask::testlab::skip); under CI=true they fail instead.
export OTSENSOR_SKIP_LOG="$PWD/target/skipped.log"
: >"$OTSENSOR_SKIP_LOG"
cargo test --workspace --release -- --test-threads 2 2>&1 | tee target/test.log
# Fuzz smoke: every target briefly, seeded from corpora cut out of the shared captures
# at run time (long runs are recorded in docs/FUZZING.md).
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
cargo xtask fuzz-corpus --out fuzz/corpus >/dev/null
mkdir -p target/fuzz-logs
for target in $(cargo +nightly fuzz list); do
  log="target/fuzz-logs/$target.log"
  if ! cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time=15 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target FAILED (log: $log)" >&2
    exit 1
  fi
  echo "fuzz: $target $(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log")"
done
echo "fuzz: every target ran without a crash"
# One closing line for the whole suite (cargo prints one per test binary).
passed=$(grep -oE 'test result: ok\. [0-9]+ passed' target/test.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' target/test.log | awk '{s+=$6} END {print s+0}')
echo "tests: $passed passed, $failed failed"
skipped=$(grep -c '^SKIPPED:' "$OTSENSOR_SKIP_LOG" || true)
echo "skipped: $skipped (each line in target/skipped.log says why)"
