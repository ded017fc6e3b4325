#!/usr/bin/env bash
# Call set-up benchmark on loopback inside a private network namespace:
# time from dial to established (measured at the callee baresip, when its
# CALL_ESTABLISHED arrives) for N calls per dialer, median and p95, and the
# RSS of the dialer and of the callee during a call, as a Markdown table.
#
#   bench/sip-setup.sh [N]          N calls per row (default 20); run as root
#   HUIS_BENCH_CARGO_FLAGS   cargo flags for the harness and huisd
#                            (default --release: huisd as it ships)
#
# Three cases, each with a baresip row and a huisd row against the same
# auto-answering callee baresip: plain SIP/UDP and RTP straight to the callee
# (huisd also dialing with `huisctl dial`); SIP over TLS with SDES-SRTP
# through Kamailio, every party registered over TLS and calling over its
# registration's connection; DTLS-SRTP with SIP/UDP straight to the callee.
# The harness is tests/src/peers/bench.rs, run through the ignored test
# `bench_sip_setup` in tests/tests/peers_selftest.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HUIS_BENCH_CALLS=${1:-20}

if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root, so no network namespace: peers use free ports on the host's 127.0.0.1" >&2
fi
for p in baresip kamailio; do
  command -v "$p" >/dev/null || { echo "missing $p: run scripts/deps.sh test" >&2; exit 1; }
done

echo "==> $HUIS_BENCH_CALLS calls per dialer" >&2
out=$(cargo test -q ${HUIS_BENCH_CARGO_FLAGS---release} -p huis-tests --test peers_selftest bench_sip_setup -- --ignored --nocapture --test-threads=1 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo
echo "Call set-up on loopback ($(baresip -h 2>&1 | head -1 | awk '{print $1, $2}'), $(kamailio -v 2>/dev/null | head -1 | awk '{print $2, $3}'); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)); command: bench/sip-setup.sh $HUIS_BENCH_CALLS"
echo
echo "$out" | sed -n '/^<<<TABLE$/,/^TABLE>>>$/p' | sed '1d;$d'
echo "$out" | sed -n 's/^NOTE //p'
