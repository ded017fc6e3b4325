# Sourced by run.sh: a real fleet on the host (huis-fleet on SQLite, mosquitto on the
# configuration `huis-fleet init` writes), listening on 127.0.0.1 only. The QEMU room, isolated
# otherwise (restrict=on), reaches it at 10.0.2.100 on the same ports, each connection relayed
# to the host's loopback (run-qemu.sh --to-host).
#
# Uses run.sh's g, ok, bad, $work, $here.

fleet=$work/fleet
fleet_port=18443
fleet_broker_port=18883
fleet_room=qemu-room
fleet_host=10.0.2.100
fleet_guest_url=https://$fleet_host:$fleet_port
# For run-qemu.sh.
fleet_qemu_args=(--to-host "$fleet_port:$fleet_port" --to-host "$fleet_broker_port:$fleet_broker_port")
fleet_pids=()
broker_pid=""

# The huis-fleet binary: beside huisd in --huis-bin-dir (run.sh's bin_dir), else built here.
fleet_bin() {
    local dir=${bin_dir[1]:-}
    if [ -n "$dir" ] && [ -x "$dir/huis-fleet" ]; then
        (cd "$dir" && echo "$(pwd)/huis-fleet")
        return
    fi
    local root
    root=$(cd "$here/../.." && pwd)
    (cd "$root" && timeout 1800 cargo build --release -q -p huis-fleet >&2) || return 1
    echo "$root/target/release/huis-fleet"
}

# hf ARGS: the client, as the admin.
hf() {
    timeout 60 "$HF" --url "https://127.0.0.1:$fleet_port" --token-file "$fleet/admin.token" --ca "$fleet/pki/ca.crt" "$@"
}

# jq-like: fleet_json EXPR ARGS... prints EXPR (Python, on `j`) of `hf ARGS`' JSON, "" on error.
fleet_json() {
    local expr=$1; shift
    hf "$@" 2>/dev/null | python3 -c "
import json, sys
try:
    j = json.load(sys.stdin); v = $expr
    print('' if v is None else v)
except Exception:
    print('')"
}

broker_start() {
    mosquitto -c "$fleet/mosquitto/mosquitto.conf" >> "$fleet/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$fleet_broker_port") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
broker_kill() { [ -n "$broker_pid" ] && kill -9 "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null; broker_pid=""; }

fleet_up() {
    HF=$(fleet_bin) || return 1
    rm -rf "$fleet"
    "$HF" init --data-dir "$fleet" --name "huis image test" --host "$fleet_host" --host 127.0.0.1 \
        --listen "127.0.0.1:$fleet_port" --broker-port "$fleet_broker_port" > "$fleet.init.log" 2>&1 || return 1
    # The service reaches the broker on the host's loopback; rooms at $fleet_host.
    sed -i "s|^broker = .*|broker = \"mqtts://127.0.0.1:$fleet_broker_port\"|" "$fleet/huis-fleet.toml"
    sed -i "s|^listener .*|listener $fleet_broker_port 127.0.0.1|" "$fleet/mosquitto/mosquitto.conf"
    # Started as root, mosquitto would drop to its own user, who cannot read $work.
    echo "user root" >> "$fleet/mosquitto/mosquitto.conf"
    broker_start || return 1
    RUST_LOG=info "$HF" serve --config "$fleet/huis-fleet.toml" >> "$fleet/service.log" 2>&1 &
    fleet_pids+=($!)
    for _ in $(seq 100); do
        hf rooms >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

fleet_down() {
    broker_kill
    for p in "${fleet_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    fleet_pids=()
}

# The room enrols by a one-time claim code: the fleet's CA and its [fleet] settings.
fleet_enrol_room() {
    local code
    code=$(fleet_json "j['claim_code']" claim "$fleet_room")
    [ -n "$code" ] || return 1
    cp "$fleet/pki/ca.crt" "$work/share/fleet-ca.crt"
    g 120 "set -e
        mkdir -p /mnt/share; mountpoint -q /mnt/share || mount -t 9p -o trans=virtio,ro,version=9p2000.L,msize=1048576,cache=loose huis-share /mnt/share
        cp /mnt/share/fleet-ca.crt /etc/huis/fleet-ca.crt
        sed -i -e 's|^broker = \"\"|broker = \"mqtts://$fleet_host:$fleet_broker_port\"|' \
            -e 's|^room_id = \"\"|room_id = \"$fleet_room\"|' \
            -e 's|^enrol_url = \"\"|enrol_url = \"$fleet_guest_url/api/v1/enrol\"|' \
            -e 's|^claim_code = \"\"|claim_code = \"$code\"|' \
            -e 's|^ca_file = \"\"|ca_file = \"/etc/huis/fleet-ca.crt\"|' \
            -e 's|^will_delay_s = .*|will_delay_s = 5|' \
            -e 's|^connect_spread_s = .*|connect_spread_s = 0|' /etc/huis/huis.toml
        grep -q '^claim_code = \"$code\"' /etc/huis/huis.toml
        systemctl restart huisd
        echo enrolling" | grep -q enrolling
}

# fleet_wait SECONDS WHAT EXPR ARGS...: until `fleet_json EXPR ARGS` prints "True".
fleet_wait() {
    local secs=$1 what=$2 expr=$3; shift 3
    local end=$(( $(date +%s) + secs )) v
    while [ "$(date +%s)" -lt "$end" ]; do
        v=$(fleet_json "$expr" "$@")
        [ "$v" = True ] && return 0
        sleep 1
    done
    echo "# waited $secs s for: $what" >&2
    return 1
}

# The room's reported update phase, and its state in campaign $1.
room_phase() { fleet_json "(j['room'].get('reported') or {}).get('update', {}).get('phase', '')" room "$fleet_room"; }
campaign_room() { fleet_json "j['rooms'].get('$fleet_room', '')" campaign-status "$1"; }

# wait_phase SECONDS PHASE...: until the room reports one of the phases; prints it.
wait_phase() {
    local secs=$1; shift
    local end=$(( $(date +%s) + secs )) p want
    while [ "$(date +%s)" -lt "$end" ]; do
        p=$(room_phase)
        for want in "$@"; do [ "$p" = "$want" ] && { echo "$p"; return 0; }; done
        sleep 1
    done
    echo "${p:-none}"
    return 1
}

# The guest's huisd, SIGKILLed: systemd starts it again (Restart=).
kill_huisd() { g 60 "systemctl kill -s KILL huisd; sleep 2; systemctl reset-failed huisd 2>/dev/null; systemctl start huisd; echo killed" | grep -q killed; }

fleet_report() {
    echo "# fleet service log (tail):"; tail -30 "$fleet/service.log"
    echo "# broker log (tail):"; tail -10 "$fleet/broker.log"
    echo "# room: $(hf room "$fleet_room" 2>&1 | head -c 1500)"
    echo "# huisd in the guest:"; g 60 "journalctl -u huisd -n 40 --no-pager" | tail -40
}

# wait_reboot SECONDS: until the room says it reboots, or QEMU saw the guest reset (the room
# may go down before its report leaves). Prints what was seen.
wait_reboot() {
    local end=$(( $(date +%s) + $1 )) resets p
    resets=$(grep -c "the guest reset" "$work/qemu.log" 2>/dev/null)
    while [ "$(date +%s)" -lt "$end" ]; do
        p=$(room_phase)
        [ "$p" = rebooting ] && { echo "the room reported rebooting"; return 0; }
        [ "$(grep -c "the guest reset" "$work/qemu.log" 2>/dev/null)" -gt "$resets" ] && { echo "the guest reset (last phase seen: ${p:-none})"; return 0; }
        sleep 1
    done
    echo "no reboot (last phase seen: ${p:-none})"
    return 1
}
