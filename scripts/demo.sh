#!/usr/bin/env bash
# Quick start, step 1: build otsensor, generate the demo plant capture and replay it.
# Extra arguments are passed to `otsensor replay` (e.g. --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --quiet -p otsensor -p xtask
mkdir -p demo
if [[ ! -s demo/plant.pcap ]]; then
  cargo xtask gen mix --packets 200000 --seed 1 --out demo/plant.pcap
fi
exec target/release/otsensor replay demo/plant.pcap --eve demo/eve.json --summary-json demo/summary.json "$@"
