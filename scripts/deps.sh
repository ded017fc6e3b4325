#!/usr/bin/env bash
# Installs what huis needs on Debian 12 (bookworm). Sourced by run-sim.sh and
# run-tests.sh; safe to run again (apt and rustup skip what is there).
#   scripts/deps.sh build   toolchain and libraries to build huisd
#   scripts/deps.sh run     + GStreamer plugins and D-Bus to run it
#   scripts/deps.sh test    + the real peers the tests talk to
set -euo pipefail

want=${1:-run}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

BUILD_PKGS=(build-essential pkg-config curl ca-certificates git
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev libasound2-dev libclang-dev clang)
RUN_PKGS=(dbus-daemon dbus-bin systemd util-linux
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-tools gstreamer1.0-x openssl fonts-symbola)
TEST_PKGS=(iproute2 coturn baresip baresip-ffmpeg sip-tester kamailio kamailio-tls-modules dnsmasq-base openssl
  python3 python3-numpy sox nftables janus chromium
  python3-aiortc python3-aiohttp python3-av libre-dev mosquitto postgresql)

pkgs=("${BUILD_PKGS[@]}")
case "$want" in
  build) ;;
  run) pkgs+=("${RUN_PKGS[@]}") ;;
  test) pkgs+=("${RUN_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: huis uses edition 2024 (Rust 1.85 or newer); Debian 12's rustc is older.
need_rust=1
if command -v cargo >/dev/null 2>&1; then
  v=$(rustc --version | awk '{print $2}')
  if [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -1)" = "1.85.0" ]; then need_rust=0; fi
fi
if [ $need_rust -eq 1 ]; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    echo "==> installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  }
  export PATH="$HOME/.cargo/bin:$PATH"
fi
