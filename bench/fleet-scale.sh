#!/usr/bin/env bash
# The fleet at scale on this machine (issue 20): ROOMS copies of huisd's fleet agent in one
# simulator process (tests/src/bin/huis-fleet-sim.rs), each with its own key, certificate and
# mutual-TLS connection, against one mosquitto on the shipped configuration and the real
# huis-fleet service on SQLite. Prints each figure beside its goal: connect time, broker memory,
# commands at RATE/s (acknowledged, latency, none lost), recovery after a broker crash, and how
# soon a room that is cut off is shown offline.
#
#   bench/fleet-scale.sh [ROOMS] [RATE]      (default 10000 rooms, 500 commands/s; needs root)
#
# Runs in a network namespace of its own (fixed ports on its loopback), with the build the tests
# use (dependencies optimised, `[profile.dev.package."*"]`), and the rooms' state in /dev/shm (the
# agents' saved state; nothing there needs a disk). The broker, not the simulator, is the limit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rooms=${1:-10000}
rate=${2:-500}
cd "$root"
command -v mosquitto >/dev/null || { echo "mosquitto is needed (Debian package mosquitto)" >&2; exit 2; }
cargo build -q -p huis-fleet -p huis-tests --bin huis-fleet --bin huis-fleet-sim
work=${HUIS_FLEET_SIM_DIR:-/dev/shm/huis-fleet-sim}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); work in $work"
# Each room is one connection on either side: the broker and the simulator each need ROOMS
# descriptors and a few more.
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((rooms + 1024)) ]; then
  echo "open files: the hard limit $(ulimit -Hn) is too low for $rooms rooms" >&2
  exit 2
fi
unshare --net -- bash -c "
  set -e
  ip link set lo up
  ulimit -n \$(ulimit -Hn)
  exec '$root/target/debug/huis-fleet-sim' --fleet-bin '$root/target/debug/huis-fleet' \
    --rooms $rooms --rate $rate --work '$work'
"
