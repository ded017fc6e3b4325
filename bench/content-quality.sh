#!/usr/bin/env bash
# The presentation's glass-to-glass latency and legibility on the sim board, through huisd's own
# code (firmware/examples/content_quality.rs): the slide deck (1080p15, a new page every
# 3.037 s) through the room's content feed and its tap, a slides VideoSession tuned for text at a
# fixed bitrate, RTP over loopback, a second session decoding into the real screen compositor.
#
#   bench/content-quality.sh [SECONDS] [ENCODER] [KBPS] [FPS] [WxH]    defaults: 30 x264enc 1000 15 1920x1080
#
# Prints the page-change -> far-screen latency (p50/p95), the capture side's share of it, the
# SSIM/PSNR of decoded 1080p frames against the page as drawn, and the bitrate received.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${HUIS_BENCH_RELEASE:-}" ]; then profile=release; flags=--release; else profile=debug; flags=; fi
cargo build -q $flags -p huis-firmware --example content_quality
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec target/$profile/examples/content_quality "${1:-30}" "${2:-x264enc}" "${3:-1000}" "${4:-15}" "${5:-1920x1080}"
