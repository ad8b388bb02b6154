#!/usr/bin/env bash
# Quick start, step 1: build otsensor, generate the demo plant capture and replay it.
#   scripts/demo.sh            replay; EVE events in demo/eve.json, summary at the end
#   scripts/demo.sh --serve    the same, then keep serving the dashboard on the result
#                              (http://127.0.0.1:9750/, or OTSENSOR_DEMO_LISTEN) until Ctrl-C
# Other arguments are passed to `otsensor replay` (e.g. --workers 2).
# Installs only what the build and the demo need (scripts/deps.sh build).
set -euo pipefail
cd "$(dirname "$0")/.."
serve=0
args=()
for arg in "$@"; do
  if [[ $arg == --serve ]]; then
    serve=1
  else
    args+=("$arg")
  fi
done
scripts/deps.sh build
cargo build --release --quiet -p otsensor -p xtask
mkdir -p demo
if [[ ! -s demo/plant.pcap ]]; then
  cargo xtask gen mix --packets 200000 --seed 1 --out demo/plant.pcap
fi
# A fresh result every time: EVE appends, and the database would continue.
rm -f demo/eve.json demo/summary.json demo/otsensor.db demo/otsensor.db-wal demo/otsensor.db-shm
here=$(pwd)

if ((serve)); then
  listen=${OTSENSOR_DEMO_LISTEN:-127.0.0.1:9750}
  token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  printf 'http:\n  api_token: "%s"\n' "$token" >demo/otsensor.yaml
  echo "demo: the dashboard will be at http://$listen/#token=$token"
  echo "demo: (the token lets the page acknowledge alerts; Ctrl-C stops the server)"
  exec target/release/otsensor replay demo/plant.pcap --config demo/otsensor.yaml \
    --eve demo/eve.json --db demo/otsensor.db --summary-json demo/summary.json \
    --serve "$listen" ${args[@]+"${args[@]}"}
fi

target/release/otsensor replay demo/plant.pcap --eve demo/eve.json \
  --summary-json demo/summary.json ${args[@]+"${args[@]}"}
events=$(wc -l <demo/eve.json)
alerts=$(grep -c '"event_type":"alert"' demo/eve.json || true)
cat <<EOF

demo: done.
  EVE events   $here/demo/eve.json ($events events, $alerts alerts; one JSON object a line,
               Suricata's field names): grep '"event_type":"alert"' demo/eve.json
  summary      $here/demo/summary.json (the numbers printed above)
  dashboard    scripts/demo.sh --serve, then open the address it prints
               (inventory, alerts, map and traffic of this capture)
EOF
