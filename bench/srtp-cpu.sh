#!/usr/bin/env bash
# CPU cost of SRTP in a call, on loopback inside a private network namespace:
# huisd calls baresip with audio (PCMU) and video (H.264 640×360 at 30
# frames/s both ways) and huisd's CPU time (utime + stime from
# /proc/PID/stat) is read over a window of the established call, for plain
# RTP, SDES-SRTP (SIP over TLS) and DTLS-SRTP (SIP over UDP), the modes
# alternating round by round. The baresip peers differ only in `mediaenc`;
# a fresh huisd is started for each window. Prints Markdown.
#
#   bench/srtp-cpu.sh [SECONDS] [ROUNDS]   window (default 60) and rounds (default 2); run as root
#   HUIS_BENCH_CARGO_FLAGS   cargo flags for the harness and huisd
#                            (default --release: huisd as it ships)
#
# The harness is `cpu_in_call` in tests/src/peers/bench.rs, run through the
# ignored test `bench_srtp_cpu` in tests/tests/peers_selftest.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HUIS_BENCH_CPU_SECS=${1:-60}
export HUIS_BENCH_CPU_ROUNDS=${2:-2}

for p in baresip; do
  command -v "$p" >/dev/null || { echo "missing $p: run scripts/deps.sh test" >&2; exit 1; }
done

echo "==> $HUIS_BENCH_CPU_ROUNDS rounds of 3 modes, $HUIS_BENCH_CPU_SECS s each" >&2
out=$(cargo test -q ${HUIS_BENCH_CARGO_FLAGS---release} -p huis-tests --test peers_selftest bench_srtp_cpu -- --ignored --nocapture --test-threads=1 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo
echo "CPU of huisd in an audio+video call ($(baresip -h 2>&1 | head -1 | awk '{print $1, $2}') as the peer; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)); command: bench/srtp-cpu.sh $HUIS_BENCH_CPU_SECS $HUIS_BENCH_CPU_ROUNDS"
echo
echo "$out" | sed -n '/^<<<TABLE$/,/^TABLE>>>$/p' | sed '1d;$d'
