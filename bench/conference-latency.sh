#!/usr/bin/env bash
# Glass-to-glass latency of conference video through a Janus SFU, beside the SIP call's figure,
# in one session so both come from the same machine state. Janus side: the ignored test
# `bench_conference_latency` in tests/tests/conference_latency.rs (two ConferenceMedia publish
# and subscribe to each other in a Janus VideoRoom in a private network namespace; B shows A on
# the real Screen, which reads A's capture-time stamps back). SIP side: bench/video-latency.sh
# (two VideoSessions over loopback, same stamp, same screen). Both at 1280x720 and 640x360,
# x264enc, 30 fps; prints a Markdown table. Needs root (network namespaces) and janus.
#
#   bench/conference-latency.sh [SECONDS]        seconds measured per run (default 20)
#   HUIS_BENCH_RUNS                               runs per path and size (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
[ "$(id -u)" -eq 0 ] || { echo "run as root: the benchmark needs a network namespace" >&2; exit 1; }
command -v janus >/dev/null || { echo "missing janus: run scripts/deps.sh test" >&2; exit 1; }
cargo build -q --workspace --all-targets
cargo build -q -p huis-firmware --example video_latency

sizes="1280x720 640x360"
runs=${HUIS_BENCH_RUNS:-3}
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
# Each run lands on its own phase of the 30 fps clocks (camera, compositors), which moves p50 by
# up to a frame or two between runs while p95 - p50 stays small: several runs, SIP and Janus in
# turn, so both see the same machine state.
for r in $(seq "$runs"); do
  for s in $sizes; do
    out=$(bench/video-latency.sh "$secs" x264enc "$s" 30 2>&1) || { echo "$out" >&2; exit 1; }
    # "latency ms: n=N p50=A p95=B min=C max=D  (frames without a readable stamp: U)"
    echo "$out" | sed -n "s/.*n=\([0-9]*\) p50=\([0-9]*\) p95=\([0-9]*\) min=\([0-9]*\) max=\([0-9]*\) .*stamp: \([0-9]*\)).*/SIP|$s|\1|\2|\3|\4|\5|\6/p" >>"$rows"
    out=$(HUIS_BENCH_SECS=$secs HUIS_BENCH_SIZES=$s HUIS_TESTS_PREBUILT=1 \
      cargo test -q --workspace --test conference_latency -- --ignored --nocapture --test-threads=1 2>&1) || {
      echo "$out" >&2
      exit 1
    }
    # ROW|WxH|n|p50|p95|min|max|unreadable|decoded|lost|jitter
    echo "$out" | awk -F'|' '$1 == "ROW" { print "Janus|" $2 "|" $3 "|" $4 "|" $5 "|" $6 "|" $7 "|" $8 }' >>"$rows"
    echo "$out" | awk -F'|' '$1 == "ROW" { print "NOTE|" $2 "|" $9 "|" $10 "|" $11 }' >>"$rows"
  done
done

echo
echo "Glass-to-glass video, x264enc 30 fps, $runs runs of $secs s a row ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg); Janus $(janus --version 2>/dev/null | awk '/version/{print $4; exit}' | tr -d '()'); $(date -u +%Y-%m-%d)); command: bench/conference-latency.sh $secs"
echo
echo "| path | size | p50 of each run, ms | median p50 | worst p95 | min–max ms | frames (unreadable) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for s in $sizes; do
  for path in SIP Janus; do
    awk -F'|' -v s="$s" -v path="$path" '
      $1 == path && $2 == s { p[++k] = $4; list = list (k > 1 ? ", " : "") $4
        if ($5 > w) w = $5; if (mn == "" || $6 < mn) mn = $6; if ($7 > mx) mx = $7; n += $3; u += $8 }
      END {
        if (!k) exit
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (p[j] < p[i]) { t = p[i]; p[i] = p[j]; p[j] = t }
        med = (k % 2) ? p[(k + 1) / 2] : (p[k / 2] + p[k / 2 + 1]) / 2
        name = (path == "SIP") ? "SIP call (RTP on loopback)" : "conference through Janus (WebRTC)"
        printf "| %s | %s | %s | **%s** | %s | %s–%s | %d (%d) |\n", name, s, list, med, w, mn, mx, n, u }' "$rows"
  done
done
echo
awk -F'|' '$1 == "NOTE" { printf "Janus %s run: B decoded %s frames of A while measuring, %s packets lost, jitter %s ms.\n", $2, $3, $4, $5 }' "$rows"
