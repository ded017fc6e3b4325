#!/usr/bin/env bash
# How huisd's memory moves over a long run, idle or in a call: RssAnon of /proc/PID/status
# (heap, stacks, GStreamer's buffers) every 30 s, and the growth per hour fitted after warm-up.
#
#   bench/memory.sh idle|call [--minutes N] [--display sim|wayland] [--out DIR]
#   bench/memory.sh breakdown [--out DIR]
#   bench/memory.sh cpu [--minutes N]
#
# idle: one huisd on the simulated board, no call, no client.
# call: room A calls room B (both huisd on the simulated board, on loopback, audio and
#       720p30 H.264 video both ways); A's memory is watched for the whole call.
# breakdown: huisd's resident memory by component (bench/py/smaps.py: its own code, GStreamer,
#       TLS, codecs, fonts, heap, stacks, large anonymous mappings) in room A idle, in an
#       audio-only call (room B has no camera) and in a video call, as a Markdown table.
# cpu: room A in a video call with room B for N minutes (default 1): huisd A's CPU (share of
#       one core, from /proc/PID/stat) and its RssAnon at the end. HUISD_ENV="VAR=value ..."
#       is put in both rooms' environment (e.g. MALLOC_ARENA_MAX=2, to compare allocators).
# --display wayland runs the screen into waylandsink under a headless weston (Debian package
#       weston), the sink used on boards with a Wayland kiosk. kmssink needs a DRM device,
#       which a machine without a GPU (or vkms) does not have.
# HUISD_BIN_DIR picks other huisd/huisctl binaries (to measure an older build); by default the
# release build of this tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?"usage: $0 idle|call|breakdown|cpu [--minutes N] [--display sim|wayland] [--out DIR]"}
shift
minutes=60 display=sim out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --display) display=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$mode" in idle|call|breakdown|cpu) ;; *) echo "mode must be idle, call, breakdown or cpu" >&2; exit 2 ;; esac
[ "$mode" = cpu ] && [ "$minutes" = 60 ] && minutes=1
case "$display" in sim|wayland) ;; *) echo "display must be sim or wayland" >&2; exit 2 ;; esac

if [ -z "${HUISD_BIN_DIR:-}" ]; then
  (cd "$root" && cargo build --release -q -p huis-firmware --bins)
  HUISD_BIN_DIR=$root/target/release
fi
work=$(mktemp -d /tmp/huis-memory.XXXXXX)
out=${out:-$root/target/bench-memory/$mode-$display-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# One private session bus per room; sets room_bus.
start_bus() {
  local sock=$work/$1.bus
  dbus-daemon --session --address="unix:path=$sock" --nofork --nopidfile >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  room_bus="unix:path=$sock"
}

board=sim
if [ "$display" = wayland ]; then
  export XDG_RUNTIME_DIR=$work/xdg
  mkdir -m 700 "$XDG_RUNTIME_DIR"
  weston --backend=headless-backend.so --socket=wayland-huis --idle-time=0 >"$out/weston.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [ -S "$XDG_RUNTIME_DIR/wayland-huis" ] && break; sleep 0.1; done
  export WAYLAND_DISPLAY=wayland-huis
  # The simulated board with a Wayland screen.
  sed 's/^kind = "sim"/kind = "wayland"/' "$root/board/boards/sim.toml" >"$work/sim-wayland.toml"
  board=$work/sim-wayland.toml
fi

# start_room NAME SIP_PORT RTP_MIN EXTRA_TOML -> sets room_pid, room_bus
start_room() {
  local name=$1 port=$2 rtp=$3 extra=$4 dir=$work/$1
  mkdir -p "$dir/state"
  printf '[room]\nname = "%s"\n[sip]\nlisten = "127.0.0.1:%s"\nrtp_port_min = %s\nrtp_port_max = %s\n%b' \
    "$name" "$port" "$rtp" "$((rtp + 40))" "$extra" >"$dir/huis.toml"
  start_bus "$name"
  # shellcheck disable=SC2086 # HUISD_ENV is a list of VAR=value words
  env ${HUISD_ENV:-} DBUS_SESSION_BUS_ADDRESS=$room_bus "$HUISD_BIN_DIR/huisd" --session --board "$board" \
    --config "$dir/huis.toml" --state-dir "$dir/state" >"$out/huisd-$name.log" 2>&1 &
  room_pid=$!
  pids+=("$room_pid")
  for _ in $(seq 600); do
    DBUS_SESSION_BUS_ADDRESS=$room_bus "$HUISD_BIN_DIR/huisctl" --session status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "huisd $name did not come up; log: $out/huisd-$name.log" >&2
  exit 1
}

port_a=$((20000 + RANDOM % 20000))
start_room a "$port_a" 30000 ""
pid_a=$room_pid bus_a=$room_bus

# huisctl of room A.
ctl_a() { DBUS_SESSION_BUS_ADDRESS=$bus_a "$HUISD_BIN_DIR/huisctl" --session "$@"; }

# wait_state BUS STATE: until that room's state is STATE (20 s at most).
wait_state() {
  local state=""
  for _ in $(seq 100); do
    state=$(DBUS_SESSION_BUS_ADDRESS=$1 "$HUISD_BIN_DIR/huisctl" --session --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$state" = "$2" ] && return 0
    sleep 0.2
  done
  echo "a room is $state, not $2; logs in $out" >&2
  exit 1
}

if [ "$mode" = breakdown ]; then
  smaps() { python3 "$root/bench/py/smaps.py" "$pid_a" "$1" >"$out/$2.json"; }
  sleep 20; smaps "idle (20 s after start)" 1-idle
  # Room B without a camera: the call is audio only.
  start_room b $((port_a + 1)) 31000 '[call]\nauto_answer = true\n[video]\nenable = false\n'
  pid_b=$room_pid
  ctl_a dial "sip:room@127.0.0.1:$((port_a + 1))" >/dev/null
  wait_state "$bus_a" in-call; sleep 10; smaps "audio-only call (10 s in)" 2-audio
  ctl_a hangup >/dev/null
  wait_state "$bus_a" idle; sleep 5; smaps "idle after it" 3-idle-after
  kill "$pid_b"; wait "$pid_b" 2>/dev/null || true
  start_room c $((port_a + 2)) 32000 '[call]\nauto_answer = true\n'
  ctl_a dial "sip:room@127.0.0.1:$((port_a + 2))" >/dev/null
  wait_state "$bus_a" in-call; sleep 10; smaps "video call, 720p30 both ways (10 s in)" 4-video
  ctl_a hangup >/dev/null
  wait_state "$bus_a" idle; sleep 5; smaps "idle after it" 5-idle-after
  echo "==> huisd's resident memory by component ($HUISD_BIN_DIR/huisd), tables in $out"
  python3 "$root/bench/py/smaps.py" --table "$out"/[1-5]-*.json | tee "$out/breakdown.md"
  exit 0
fi
if [ "$mode" = cpu ]; then
  start_room b $((port_a + 1)) 31000 '[call]\nauto_answer = true\n'
  ctl_a dial "sip:room@127.0.0.1:$((port_a + 1))" >/dev/null
  wait_state "$bus_a" in-call; sleep 5
  ticks() { awk '{print $14 + $15}' "/proc/$pid_a/stat"; }
  hz=$(getconf CLK_TCK); t0=$(date +%s.%N); c0=$(ticks)
  sleep $((minutes * 60))
  c1=$(ticks); t1=$(date +%s.%N)
  python3 -c "import sys; print(f'cpu: huisd A {100*($c1-$c0)/$hz/($t1-$t0):.1f} % of one core over {$t1-$t0:.0f} s in a video call, RssAnon {$(awk '/^RssAnon:/ {print $2}' /proc/$pid_a/status)/1024:.1f} MiB; HUISD_ENV=\"${HUISD_ENV:-}\"')"
  exit 0
fi
if [ "$mode" = call ]; then
  port_b=$((port_a + 1))
  start_room b "$port_b" 31000 '[call]\nauto_answer = true\n'
  pid_b=$room_pid
  ctl_a dial "sip:room@127.0.0.1:$port_b"
  wait_state "$bus_a" in-call
fi

rss() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
csv=$out/rss.csv
echo "seconds,rss_anon_kib" >"$csv"
echo "==> $mode, screen on $display, $minutes min; RssAnon of huisd every 30 s in $csv"
t0=$(date +%s)
end=$((t0 + minutes * 60))
while [ "$(date +%s)" -le "$end" ]; do
  kill -0 "$pid_a" 2>/dev/null || { echo "huisd exited; log: $out/huisd-a.log" >&2; exit 1; }
  if [ "$mode" = call ]; then
    kill -0 "$pid_b" 2>/dev/null || { echo "room B exited; log: $out/huisd-b.log" >&2; exit 1; }
  fi
  echo "$(($(date +%s) - t0)),$(rss "$pid_a")" >>"$csv"
  sleep 30
done
if [ "$mode" = call ]; then
  ctl_a --json status >"$out/status-end.json" || true
  grep -q '"in-call"' "$out/status-end.json" || echo "warning: the call had ended before the last sample" >&2
fi

python3 - "$csv" "$mode" "$display" "$minutes" <<'PY' | tee "$out/summary.txt"
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_anon_kib"])) for r in csv.DictReader(open(sys.argv[1]))]
warm = [r for r in rows if r[0] >= 120] or rows  # the first 2 minutes are warm-up
n = len(warm)
mx = sum(t for t, _ in warm) / n
my = sum(v for _, v in warm) / n
den = sum((t - mx) ** 2 for t, _ in warm) or 1
slope = sum((t - mx) * (v - my) for t, v in warm) / den  # KiB per second
print(f"{sys.argv[2]}, screen on {sys.argv[3]}, {sys.argv[4]} min: RssAnon {rows[0][1]/1024:.1f} MiB at start, "
      f"{warm[0][1]/1024:.1f} MiB after warm-up, {rows[-1][1]/1024:.1f} MiB at the end "
      f"(peak {max(v for _, v in rows)/1024:.1f} MiB); fitted growth after warm-up {slope*3600/1024:+.2f} MiB/h")
PY
