#!/usr/bin/env bash
# Installs the system packages otsensor's build and tests need, when they are missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

# package:command-or-file that proves it is installed
needs=(
  "clang:clang"
  "llvm:llvm-strip"
  "libbpf-dev:/usr/include/bpf/bpf_helpers.h"
  "linux-libc-dev:/usr/include/linux/bpf.h"
  "iproute2:ip"
  "ethtool:ethtool"
  # nic-setup and reload tests (issue 7): curl reaches the API inside a namespace.
  "curl:curl"
  "tcpdump:tcpdump"
  "tcpreplay:tcpreplay"
  # Operator-surface tests (issue 6): promtool/Prometheus, rsyslog, headless Chromium.
  "prometheus:promtool"
  "rsyslog:/usr/sbin/rsyslogd"
  "chromium:chromium"
  "chromium-driver:chromedriver"
  # Package test (issue 7): dpkg-deb builds the .deb; the unit is checked with
  # systemd-analyze and started the unit's way with setpriv/prlimit/nsenter.
  "systemd:systemd-analyze"
  "util-linux:setpriv"
  "procps:pgrep"
  "passwd:/usr/sbin/useradd"
  # Fleet tests (issue 16): a 3-node JetStream cluster and a PostgreSQL instance,
  # started by the tests themselves in temporary directories.
  "nats-server:nats-server"
  "postgresql:/usr/lib/postgresql/15/bin/pg_ctl"
)
missing=()
for entry in "${needs[@]}"; do
  package=${entry%%:*}
  probe=${entry#*:}
  if [[ $probe == /* ]]; then
    [[ -e $probe ]] || missing+=("$package")
  else
    command -v "$probe" >/dev/null 2>&1 || missing+=("$package")
  fi
done
# gcc-multilib provides asm/ headers for -target bpf on some layouts; only needed if absent.
if [[ ! -e /usr/include/asm/types.h && ! -e /usr/include/x86_64-linux-gnu/asm/types.h ]]; then
  missing+=("linux-libc-dev")
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "otsensor needs these Debian packages: ${missing[*]}" >&2
  echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
