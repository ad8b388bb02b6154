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
cargo test --workspace --release -- --test-threads 2
