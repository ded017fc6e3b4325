#!/usr/bin/env bash
# Builds and runs the fleet service on its embedded defaults: SQLite and a local mosquitto,
# with a CA, certificates and a first admin token made on first start (`huis-fleet init`).
# Data in $HUIS_FLEET_DIR (default .fleet here). Stop it with Ctrl-C.
#   HUIS_FLEET_HOST   the name or address rooms reach this machine at (default: its first address)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh build
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v mosquitto >/dev/null; then
  echo "==> installing mosquitto"
  $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
fi

echo "==> building huis-fleet (release)"
cargo build --release -q -p huis-fleet
bin=$PWD/target/release/huis-fleet

dir=${HUIS_FLEET_DIR:-$PWD/.fleet}
host=${HUIS_FLEET_HOST:-$(hostname -I 2>/dev/null | awk '{print $1}')}
host=${host:-127.0.0.1}
if [ ! -f "$dir/huis-fleet.toml" ]; then
  "$bin" init --data-dir "$dir" --host "$host" --host 127.0.0.1 --host localhost
fi
# mosquitto started as root drops to its own user: let that user read the broker's key only.
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
  chgrp mosquitto "$dir/pki/broker.key" "$dir/mosquitto"
  chmod 0640 "$dir/pki/broker.key"
  chmod 0770 "$dir/mosquitto"
  chmod o+x "$dir" "$dir/pki"
fi
mosquitto -c "$dir/mosquitto/mosquitto.conf" &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT

cat <<MSG

The fleet service is starting: https://$host:8443 (the API; CA in $dir/pki/ca.crt).
In another terminal:

  $bin --url https://$host:8443 --token-file $dir/admin.token --ca $dir/pki/ca.crt claim room-1
  # on the room, in /etc/huis/huis.toml:
  #   [fleet]
  #   broker = "mqtts://$host:8883"
  #   room_id = "room-1"
  #   enrol_url = "https://$host:8443/api/v1/enrol"
  #   claim_code = "<the code>"
  #   ca_file = "/etc/huis/fleet-ca.crt"     (a copy of $dir/pki/ca.crt)
  $bin --url https://$host:8443 --token-file $dir/admin.token --ca $dir/pki/ca.crt rooms

MSG
"$bin" serve --config "$dir/huis-fleet.toml"
