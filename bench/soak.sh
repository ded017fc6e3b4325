#!/usr/bin/env bash
# Soak (issue 21): room A calls room B back to back, then holds one call; both are real huisd on
# the simulated board (audio and 640x360 15 fps H.264 video both ways, with the presentation
# channel every video call sets up), on loopback inside a network namespace of their own when
# run as root. Each room's VmRSS, open fds, threads and live GStreamer elements (GStreamer's
# leaks tracer) are measured at idle every few calls and every minute of the long call.
#
#   bench/soak.sh [CALLS] [HOLD_SECONDS]        defaults: 1000 calls, then one call of 8 h
#
# More knobs (environment): HUIS_SOAK_WARMUP (calls before the reference figures, default
# CALLS/10 up to 50), HUIS_SOAK_EVERY (figures every N calls, default CALLS/100),
# HUIS_SOAK_SAMPLE_SECS (figures every N s of the long call, default 60), HUIS_SOAK_ELEMENTS=0
# (no leaks tracer). The table and the summary go to stderr and to
# target/bench-soak/soak-<date>.log. Exits non-zero when a limit is broken: VmRSS growing by
# 1 MiB or more per 1000 calls after warm-up, or fds, threads or elements at idle not back to
# their level after warm-up.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:-1000}
hold=${2:-28800}
case "$calls$hold" in *[!0-9]*) echo "usage: $0 [CALLS] [HOLD_SECONDS]" >&2; exit 2 ;; esac

cd "$root"
cargo build -q -p huis-firmware --bins
cargo test -q -p huis-tests --test soak --no-run
out=$root/target/bench-soak
mkdir -p "$out"
log=$out/soak-$(date +%Y%m%d-%H%M%S).log
echo "soak: $calls calls, then one call held $hold s; log in $log" >&2
HUIS_TESTS_PREBUILT=1 HUIS_SOAK_CALLS=$calls HUIS_SOAK_HOLD_SECS=$hold \
  cargo test -q -p huis-tests --test soak -- --ignored --nocapture --test-threads=1 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
