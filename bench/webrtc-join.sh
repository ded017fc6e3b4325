#!/usr/bin/env bash
# Joining a web conference: from the button to the first far-end frame decoded, for huisd
# beside headless Chromium joining the same Janus VideoRoom (where a Chromium already
# publishes), N runs each, median and p95; then huisd's CPU and RSS in the conference with one
# and with three far ends. Everything runs in a private network namespace (run as root).
#
#   bench/webrtc-join.sh [N]        N joins per participant (default 10)
#   HUIS_BENCH_CARGO_FLAGS          cargo flags (default --release: huisd as it ships)
#
# The harness is the ignored test `bench_webrtc_join` in tests/tests/webrtc_janus.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HUIS_BENCH_JOINS=${1:-10}
[ "$(id -u)" -eq 0 ] || { echo "run as root: the benchmark needs a network namespace" >&2; exit 1; }
for p in janus chromium; do
  command -v "$p" >/dev/null || { echo "missing $p: run scripts/deps.sh test" >&2; exit 1; }
done
out=$(cargo test -q ${HUIS_BENCH_CARGO_FLAGS---release} --workspace --test webrtc_janus bench_webrtc_join -- --ignored --nocapture --test-threads=1 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo
echo "Joining a Janus room on loopback (Janus $(janus --version 2>/dev/null | awk '/version/{print $4; exit}'), $(chromium --version 2>/dev/null | awk '{print $1, $2}'); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)); command: bench/webrtc-join.sh $HUIS_BENCH_JOINS"
echo
echo "$out" | sed -n '/^<<<TABLE$/,/^TABLE>>>$/p' | sed '1d;$d'
echo "$out" | sed -n 's/^NOTE //p'
