#!/usr/bin/env bash
# Builds huis and runs huisd on the simulated board, on a private D-Bus
# session bus, so you can poke it with huisctl from another terminal.
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh run

echo "==> building huisd and huisctl (release)"
cargo build --release -q -p huis-firmware --bins

dir=${HUIS_SIM_DIR:-$PWD/.sim}
mkdir -p "$dir/state"
[ -f "$dir/huis.toml" ] || cp rootfs-overlay/etc/huis/huis.toml "$dir/huis.toml"

# Use the desktop's session bus when there is one, otherwise start our own.
if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  sock="$dir/bus"
  rm -f "$sock"
  dbus-daemon --session --address="unix:path=$sock" --nofork --nopidfile &
  bus_pid=$!
  trap 'kill $bus_pid 2>/dev/null || true' EXIT
  export DBUS_SESSION_BUS_ADDRESS="unix:path=$sock"
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
fi

cat <<MSG

huisd is starting on the simulated board. In another terminal:

  export DBUS_SESSION_BUS_ADDRESS='$DBUS_SESSION_BUS_ADDRESS'
  export PATH="$PWD/target/release:\$PATH"
  huisctl --session status
  huisctl --session watch                # state changes as they happen
  huisctl --session mute on
  huisctl --session press-button call
  huisctl --session config set room.name "Room 4.12"
  busctl --user introspect org.huis.Room1 /org/huis/Room1   # (with your desktop's bus)

Configuration: $dir/huis.toml   State and the loudspeaker recording: $dir/state
MSG

exec target/release/huisd --session --board sim --config "$dir/huis.toml" --state-dir "$dir/state"
