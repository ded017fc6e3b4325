#!/usr/bin/env bash
# Call set-up benchmark on loopback inside a private network namespace:
# time from dial to established (measured at the callee baresip, when its
# CALL_ESTABLISHED arrives) for N calls per dialer, median and p95, and the
# RSS of the dialer and of the callee during a call, as a Markdown table.
#
#   bench/sip-setup.sh [N]          N calls per row (default 20); run as root
#   HUIS_BENCH_CARGO_FLAGS=--release to build the harness optimised (it only
#   timestamps events, so the default dev profile measures the same)
#
# Rows: baresip → baresip always; a second row when a dialer hook is set
# (see huisd_row below). The harness is tests/src/peers/bench.rs, run
# through the ignored test `bench_sip_setup` in tests/tests/peers_selftest.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HUIS_BENCH_CALLS=${1:-20}

# ---- HOOK: the huisd → baresip row -------------------------------------
# Fill in and call this function to add a row. Every command runs with
# `sh -c` INSIDE the benchmark's network namespace (where the callee
# baresip listens on 127.0.0.1), with this script's environment. The bus
# socket of a dbus-daemon is a file path, so it works across namespaces.
#   HUIS_BENCH_DIALER_SETUP    started in the background first (e.g. huisd)
#   HUIS_BENCH_DIALER_READY    polled every 200 ms until it exits 0
#   HUIS_BENCH_DIALER_CMD      places one call; {uri} is the callee's URI
#   HUIS_BENCH_DIALER_PROCESS  process name whose VmRSS is reported
# The callee hangs up every call, so no hang-up command is needed; the
# dialer must accept the next dial ~0.1 s after the BYE. The time includes
# the dial command's own start-up (checked with a python3 one-shot ctrl_tcp
# client driving a third baresip: ~0.5 s of the ~0.6 s median was python
# starting on a loaded machine), so prefer a quick client (huisctl, busctl).
# The process name must be unique in the namespace (the callee is
# `baresip`).
huisd_row() {
  export HUIS_BENCH_DIALER_LABEL="huisd → baresip"
  export HUIS_BENCH_DIALER_SETUP="$1"    # e.g. 'exec target/release/huisd --session --board sim --config ...'
  export HUIS_BENCH_DIALER_READY="$2"    # e.g. 'target/release/huisctl --session status'
  export HUIS_BENCH_DIALER_CMD="$3"      # e.g. 'target/release/huisctl --session dial {uri}'
  export HUIS_BENCH_DIALER_PROCESS=huisd
}
# huisd_row '...' '...' '...'
# -------------------------------------------------------------------------

if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root, so no network namespace: peers use free ports on the host's 127.0.0.1" >&2
fi
for p in baresip; do
  command -v "$p" >/dev/null || { echo "missing $p: run scripts/deps.sh test" >&2; exit 1; }
done

echo "==> $HUIS_BENCH_CALLS calls per dialer" >&2
out=$(cargo test -q ${HUIS_BENCH_CARGO_FLAGS:-} -p huis-tests --test peers_selftest bench_sip_setup -- --ignored --nocapture --test-threads=1 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo
echo "Call set-up on loopback ($(baresip -h 2>&1 | head -1 | awk '{print $1, $2}'), $(nproc) cores, $(date -u +%Y-%m-%d)); command: bench/sip-setup.sh $HUIS_BENCH_CALLS"
echo
echo "$out" | sed -n '/^<<<TABLE$/,/^TABLE>>>$/p' | sed '1d;$d'
