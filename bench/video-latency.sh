#!/usr/bin/env bash
# Glass-to-glass latency and CPU of call video on the sim board, through huisd's own video code
# (firmware/examples/video_latency.rs): two VideoSessions (sim camera, H.264 encoder, RTP over
# loopback, jitter buffer, decoder) calling each other and the real Screen compositor showing
# the far end. Capture time is written into each captured frame as black/white blocks and read
# back from the frame the screen's sink receives.
#
#   bench/video-latency.sh [SECONDS] [ENCODER] [WxH] [FPS]     defaults: 20 x264enc 1280x720 30
#
# Prints latency p50/p95 (ms) and CPU: the screen alone, the whole call, and per stream
# ((call - screen) / 2: each side encodes one stream and decodes the other's).
set -euo pipefail
cd "$(dirname "$0")/.."
# The media work is GStreamer's (C); the Rust side only builds pipelines and runs pad probes, so
# the dev profile measures the same. HUIS_BENCH_RELEASE=1 builds optimised.
if [ -n "${HUIS_BENCH_RELEASE:-}" ]; then profile=release; flags=--release; else profile=debug; flags=; fi
cargo build -q $flags -p huis-firmware --example video_latency
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec target/$profile/examples/video_latency "${1:-20}" "${2:-x264enc}" "${3:-1280x720}" "${4:-30}"
