#!/usr/bin/env bash
# A call through network faults, held 5 minutes (issue 21): two huisd rooms (sim board, 640×360
# at 30 fps H.264 and Opus both ways) in two network namespaces joined by the test harness's
# impaired link (TUN devices; 10 % random loss and 0–50 ms random delay per packet, both ways).
# Runs the test `a_call_through_loss_and_jitter_stays_up_intelligible_and_decoding` of
# tests/tests/net_faults.rs with HUIS_FAULT_SECS seconds under the faults and prints its figures:
# share of 1 s windows in which room B hears room A's tone, frames decoded per second, loss
# seen by the receivers, interarrival jitter and RTT from RTCP, and the link's own counters.
#
#   bench/net-faults.sh [SECONDS]     (default 300; needs root, like the tests)
#
# Builds huisd, huisctl and the test first (debug profile, as the tests run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-300}
cd "$root"
cargo build -q -p huis-firmware --bins
cargo test -q -p huis-tests --test net_faults --no-run
out=$(mktemp /tmp/huis-net-faults.XXXXXX)
trap 'rm -f "$out"' EXIT
echo "holding the call ${secs} s under 10 % loss + 0-50 ms jitter both ways (machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
status=0
HUIS_TESTS_PREBUILT=1 HUIS_FAULT_SECS=$secs cargo test -q -p huis-tests --test net_faults \
  a_call_through_loss_and_jitter_stays_up_intelligible_and_decoding -- --exact --nocapture >"$out" 2>&1 || status=$?
# The figures block the test prints, once (it repeats it in a failure message).
awk '/^net-faults figures:/ { on = 1; next } on && /^room A call stats/ { exit } on { print }' "$out"
if [ "$status" -ne 0 ]; then
  echo "the test failed (exit $status); its output:" >&2
  grep -v '^[0-9-]*T[0-9:.]*Z ' "$out" | tail -80 >&2
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
