#!/usr/bin/env bash
# Installs the system packages otsensor needs, when they are missing.
#   scripts/deps.sh          everything the test suite needs (what CI runs)
#   scripts/deps.sh build    only what building otsensor and running the demo need
# As root it runs apt-get, waiting for the dpkg lock when another apt run holds it;
# otherwise it prints the exact command and fails.
set -euo pipefail

set_name=${1:-test}
case $set_name in
build | demo) set_name=build ;;
test) ;;
*)
  echo "usage: scripts/deps.sh [build|test]" >&2
  exit 2
  ;;
esac

# package:command-or-file that proves it is installed
# Build (and the demo, which is a build plus a replay): clang compiles the XDP program.
needs=(
  "clang:clang"
  "llvm:llvm-strip"
  "libbpf-dev:/usr/include/bpf/bpf_helpers.h"
  "linux-libc-dev:/usr/include/linux/bpf.h"
)
if [[ $set_name == test ]]; then
  needs+=(
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
    # Independent oracle for generated captures and the differential test:
    # ../shared/tools/oracle.py runs tshark (Python 3, standard library only).
    "tshark:tshark"
    "python3:python3"
    # Fleet tests (issue 16): a 3-node JetStream cluster and a PostgreSQL instance,
    # started by the tests themselves in temporary directories.
    "nats-server:nats-server"
    "postgresql:/usr/lib/postgresql/15/bin/pg_ctl"
  )
fi
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

# apt-get, waiting (up to 15 minutes) while another apt or dpkg run holds its locks
# instead of failing: DPkg::Lock::Timeout covers the dpkg lock, the loop the lists lock
# of `apt-get update`.
apt_wait() {
  local deadline=$((SECONDS + 900)) output
  while true; do
    if output=$(apt-get -o DPkg::Lock::Timeout=60 "$@" 2>&1); then
      return 0
    fi
    if grep -qiE 'could not get lock|unable to acquire|is held by process' <<<"$output" &&
      ((SECONDS < deadline)); then
      echo "deps.sh: another apt run holds the package lock; waiting..." >&2
      sleep 5
      continue
    fi
    echo "$output" >&2
    return 1
  done
}

echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_wait update -qq
apt_wait install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
