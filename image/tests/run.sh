#!/usr/bin/env bash
# The image test group (issue 6): build the amd64 image, boot it in QEMU (TCG),
# update it with signed RAUC bundles and check A/B switching and rollback.
#
#   image/tests/run.sh [--reuse] [--kvm] [--install-deps] [--huis-bin-dir DIR]
#
#   --reuse   keep an already built image/.build/amd64 (default: build afresh)
#   --kvm     boot with KVM when usable (CI: TCG)
#   --huis-bin-dir DIR   build the image with huisd/huisctl from DIR (CI: the
#             test run's target/debug) instead of a second, release, compile
#
# Every step has a hard timeout. The last line is "N passed, N failed".
# Figures (build time, sizes, boot-to-ready) go to image/.build/amd64/bench.txt.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"

reuse=no kvm=() install_deps=no bin_dir=()
while [ $# -gt 0 ]; do
    case $1 in
        --reuse) reuse=yes ;;
        --install-deps) install_deps=yes ;;
        --kvm) kvm=(--kvm) ;;
        --huis-bin-dir) bin_dir=(--huis-bin-dir "$2"); shift ;;
        *) die "unknown option $1" ;;
    esac
    shift
done

load_target amd64
out=$TARGET_DIR
work=$out/test
bench=$out/bench.txt
passed=0 failed=0
qemu_pid=""

# The fleet on the host that the room reaches (image/tests/fleet.sh).
. "$here/fleet.sh"

ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL - $*"; }
finish() {
    stop_guest
    declare -F fleet_down >/dev/null && fleet_down
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
bench() { echo "$*" | tee -a "$bench"; }

# --- the guest -------------------------------------------------------------
sock=$work/console.sock
log=$work/console.log
# Every guest reboot is a power cycle: QEMU runs with -no-reboot and exits on
# the guest's reset, and this loop starts it again on the same disk and UEFI
# variables (GRUB's try flags live on the disk, so A/B selection is the same).
# A warm reset under TCG once hung QEMU before the firmware printed anything
# (BENCHMARKS.md); a cold start has not.
start_guest() {
    rm -f "$sock" "$work/stop"
    (
        while [ ! -e "$work/stop" ]; do
            t0=$(date +%s) rc=0
            timeout 3600 "$IMAGE_DIR/run-qemu.sh" amd64 "${kvm[@]}" --disk "$work/disk.qcow2" --vars "$work/vars.fd" \
                --serial "unix:$sock,server=on,wait=off" --share "$work/share" --fwd 10022:22 "${fleet_qemu_args[@]}" \
                --pidfile "$work/qemu.pid" --no-reboot >> "$work/qemu.log" 2>&1 || rc=$?
            [ -e "$work/stop" ] && break
            # -no-reboot: a guest reset ends QEMU with status 0. Anything else this
            # soon is QEMU failing to start (e.g. the forwarded port is taken).
            if [ "$rc" -ne 0 ] && [ $(( $(date +%s) - t0 )) -lt 15 ]; then
                echo "qemu: failed to start (exit $rc); not trying again" >> "$work/qemu.log"
                break
            fi
            echo "qemu: the guest reset; powering it on again ($(date -u +%T))" >> "$work/qemu.log"
        done
    ) &
    qemu_pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
}
stop_guest() {
    if [ -n "$qemu_pid" ]; then
        touch "$work/stop"
        # A QEMU started just before may not have written its pid file yet: keep
        # killing what the file names until the power-on loop has ended.
        for _ in $(seq 100); do
            kill -0 "$qemu_pid" 2>/dev/null || break
            [ -f "$work/qemu.pid" ] && kill "$(cat "$work/qemu.pid")" 2>/dev/null
            sleep 0.2
        done
        wait "$qemu_pid" 2>/dev/null
        qemu_pid=""
    fi
}
# g TIMEOUT CMD...: run a shell command in the guest, its output on stdout.
g() {
    local t=$1; shift
    timeout $((t + 40)) python3 "$here/guest.py" "$sock" run "$t" "$log" -- "$@"
}
# wait_ready TIMEOUT: wait for the boot check's verdict; prints "SECONDS VERDICT".
wait_ready() {
    timeout $(($1 + 60)) python3 "$here/guest.py" "$sock" wait-ready "$1" "$log"
}
rauc_field() { # rauc_field NAME: from `rauc status --output-format=shell`
    # Asked again when empty: on a starved host the serial console once returned nothing.
    local v="" i
    for i in 1 2 3; do
        v=$(g 60 "rauc status --detailed --output-format=shell" | sed -n "s/^$1=//p" | tr -d "'\"")
        [ -n "$v" ] && break
    done
    printf '%s\n' "$v"
}
slot_state() { # boot status of the slot with bootname $1
    # Asked again when empty, as rauc_field is: right after RAUC refused the damaged bundle,
    # `rauc status` once timed out on RAUC's D-Bus (GetSlotStatus) and printed nothing
    # (2026-12-08), though RAUC had just listed both slots.
    local v="" i
    for i in 1 2 3; do
        v=$(g 60 "rauc status --detailed --output-format=shell" | tr -d '\r' | awk -F= -v want="$1" '
            { gsub(/['\''"]/, "", $2) }
            $1 ~ /^RAUC_SLOT_BOOTNAME_/ { n = substr($1, 19); bn[n] = $2 }
            $1 ~ /^RAUC_SLOT_BOOT_STATUS_/ { n = substr($1, 22); bs[n] = $2 }
            END { for (i in bn) if (bn[i] == want) print bs[i] }')
        [ -n "$v" ] && break
    done
    printf '%s\n' "$v"
}
grubenv() { g 30 "grub-editenv /boot/efi/EFI/BOOT/grubenv list | sort | tr '\n' ' '"; }

# Host tools for booting (build.sh installs its own with --install-deps / CI=true).
# Checked by package and by command: installing qemu-system-x86 can remove a newer
# qemu-utils from backports, so the check runs again after each install.
missing_tools() {
    for p in qemu-system-x86 qemu-utils ovmf python3 mosquitto socat; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"
    done
    command -v qemu-img >/dev/null || echo qemu-utils
    command -v qemu-system-x86_64 >/dev/null || echo qemu-system-x86
}
for attempt in 1 2; do
    mapfile -t need < <(missing_tools | sort -u)
    [ ${#need[@]} -eq 0 ] && break
    if [ "${CI:-}" = true ] || [ "$install_deps" = yes ]; then
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need[@]}" >/dev/null \
            || die "could not install ${need[*]}"
    else
        die "missing host packages: ${need[*]} (run with --install-deps)"
    fi
done
mapfile -t need < <(missing_tools | sort -u)
[ ${#need[@]} -eq 0 ] || die "still missing after installing: ${need[*]}"
[ "$(id -u)" = 0 ] || die "the image tests need root (build.sh uses mmdebstrap --mode=root)"

mkdir -p "$out"
: > "$bench"

# --- 1. build ----------------------------------------------------------------
if [ "$reuse" = yes ] && [ -f "$out/disk.img" ] && [ -d "$out/rootfs/usr" ]; then
    echo "# reusing the image in $out"
    ok "build amd64 image (reused)"
else
    t0=$(date +%s)
    deps=(); [ "$install_deps" = yes ] && deps=(--install-deps)
    if timeout 3000 "$IMAGE_DIR/build.sh" amd64 --dev "${deps[@]}" "${bin_dir[@]}" > "$out/../build-amd64.log" 2>&1; then
        t=$(( $(date +%s) - t0 ))
        ok "build amd64 image (${t}s)"
        bench "build_seconds=$t"
    else
        bad "build amd64 image (log: $out/../build-amd64.log)"; tail -30 "$out/../build-amd64.log"
        finish
    fi
fi
v1=$(sed -n 's/^version=//p' "$out/manifest")
bench "disk_raw_bytes=$(stat -c %s "$out/disk.img")"
bench "disk_allocated_bytes=$(( $(stat -c %b "$out/disk.img") * 512 ))"
[ -f "$out/disk.img.zst" ] && bench "disk_zst_bytes=$(stat -c %s "$out/disk.img.zst")"
bench "rootfs_ext4_bytes=$(stat -c %s "$out/rootfs.ext4")"

# --- 2. bundles ----------------------------------------------------------------
rm -rf "$work"; mkdir -p "$work/share"
v2="${v1%%+*}.1+test"
v3="${v1%%+*}.2+test"
t0=$(date +%s)
if b2=$(timeout 900 "$IMAGE_DIR/bundle.sh" amd64 --version "$v2" --out "$work/share/v2.raucb" | tail -1) \
   && timeout 900 "$IMAGE_DIR/bundle.sh" amd64 --version "$v3" --test-fail-health --out "$work/share/v3-fail.raucb" >/dev/null \
   && "$IMAGE_DIR/devca.sh" "$work/other-ca" "huis OTHER test" >/dev/null \
   && timeout 900 "$IMAGE_DIR/bundle.sh" amd64 --version "$v2" --cert "$work/other-ca/signing.cert.pem" \
        --key "$work/other-ca/signing.key.pem" --keyring "$work/other-ca/ca.cert.pem" --out "$work/share/other-ca.raucb" >/dev/null; then
    ok "signed verity bundles: $v2, $v3 (fails health), $v2 by another CA ($(( $(date +%s) - t0 ))s)"
    bench "bundle_bytes=$(stat -c %s "$b2")"
    bench "bundle_seconds=$(( ($(date +%s) - t0) / 3 ))"
else
    bad "making bundles"; finish
fi
# A copy of the good bundle with one byte flipped in its middle: the signature
# (over the manifest) still verifies; the payload fails dm-verity where it was hit.
python3 - "$work/share/v2.raucb" "$work/share/v2-damaged.raucb" <<'PY'
import shutil, sys
shutil.copyfile(sys.argv[1], sys.argv[2])
with open(sys.argv[2], "r+b") as f:
    f.seek(0, 2); mid = f.tell() // 2
    f.seek(mid); b = f.read(1); f.seek(mid); f.write(bytes([b[0] ^ 0xFF]))
PY
info=$(rauc info --keyring "$out/keyring.pem" "$work/share/v2.raucb" 2>&1)
if printf '%s\n' "$info" | grep -q "Bundle Format:.*verity"; then
    ok "bundle is in verity format and verifies against the image's keyring"
else
    bad "bundle format/verification: $(printf '%s\n' "$info" | tail -3)"
fi

# --- 3. first boot -------------------------------------------------------------
qemu-img create -q -f qcow2 -b "$out/disk.img" -F raw "$work/disk.qcow2"
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
start_guest
if r=$(wait_ready 900); then
    bench "boot_to_ready_seconds_first_boot=${r%% *}"
    case $r in
        *"slot A marked good (version $v1)"*) ok "first boot: slot A, version $v1, marked good (${r%% *}s)" ;;
        *) bad "first boot verdict: $r" ;;
    esac
else
    bad "first boot did not reach the boot check (console: $log)"; tail -40 "$log"; finish
fi
osv=$(g 30 ". /etc/os-release; echo \$IMAGE_VERSION" | tr -d '\r\n ')
[ "$osv" = "$v1" ] && ok "/etc/os-release IMAGE_VERSION=$v1" || bad "/etc/os-release says '$osv', want $v1"
booted=$(rauc_field RAUC_SYSTEM_BOOTED_BOOTNAME)
[ "$booted" = A ] && ok "rauc status: booted slot A" || bad "rauc status booted '$booted', want A"
compat=$(rauc_field RAUC_SYSTEM_COMPATIBLE)
[ "$compat" = huis-amd64 ] && ok "rauc compatible huis-amd64" || bad "rauc compatible '$compat'"
# huisctl status shows the image version; huisctl update --status the slots.
hs=$(g 30 "huisctl status 2>&1")
if printf '%s' "$hs" | grep -q "Version *$v1"; then
    ok "huisctl status reports version $v1"
else
    bad "huisctl status: $(printf '%s' "$hs" | head -c 400 | tr '\n' ' ')"
fi
us=$(g 30 "huisctl update --status --json 2>&1")
if printf '%s' "$us" | python3 -c '
import json, sys
s = json.load(sys.stdin)
a = [x for x in s["slots"] if x["slot"] == "A"][0]
assert s["boot_slot"] == "A" and s["compatible"] == "huis-amd64", s
assert a["state"] == "booted" and a["boot_status"] == "good" and a["version"] == sys.argv[1], a
' "$v1" 2>/dev/null; then
    ok "huisctl update --status: slot A booted, good, $v1"
else
    bad "huisctl update --status: $(printf '%s' "$us" | head -c 600 | tr '\n' ' ')"
fi
if g 60 "mountpoint -q /data && mountpoint -q /etc/huis && mountpoint -q /var/lib/huis" >/dev/null; then
    ok "/data, /etc/huis and /var/lib/huis are mounted from the data partition"
else
    bad "data partition mounts: $(g 30 'findmnt -rn -o TARGET,SOURCE | grep -E "data|huis"')"
fi
# D-Bus policy: an ordinary user may read RAUC's state but not install.
pol=$(g 60 "setpriv --reuid=nobody --regid=nogroup --clear-groups busctl call de.pengutronix.rauc / de.pengutronix.rauc.Installer InstallBundle 'sa{sv}' /nonexistent 0 2>&1; setpriv --reuid=nobody --regid=nogroup --clear-groups busctl get-property de.pengutronix.rauc / de.pengutronix.rauc.Installer Compatible 2>&1")
if printf '%s' "$pol" | grep -qi "access denied" && printf '%s' "$pol" | grep -q huis-amd64; then
    ok "D-Bus policy: nobody can read RAUC state but not call InstallBundle"
else
    bad "D-Bus policy for RAUC: $pol"
fi

# --- 4. a bundle from another CA is refused, nothing changes --------------------
before=$(grubenv)
g 30 "mkdir -p /mnt/share && mount -t 9p -o trans=virtio,ro,version=9p2000.L,msize=1048576,cache=loose huis-share /mnt/share" >/dev/null
msg=$(g 300 "huisctl update /mnt/share/other-ca.raucb 2>&1; echo rc=\$?")
after=$(grubenv)
if printf '%s' "$msg" | grep -q 'rc=[1-9]' && printf '%s' "$msg" | grep -q '^huisctl: update failed: .*signature'; then
    ok "bundle signed by another CA refused: $(printf '%s' "$msg" | grep '^huisctl:' | tail -1 | cut -c1-200)"
else
    bad "bundle from another CA: $msg"
fi
[ -n "$before" ] && [ "$before" = "$after" ] && ok "slot state unchanged after the refused bundle ($after)" || bad "grubenv changed: '$before' -> '$after'"

# --- 5. an update from the fleet, through kills of the room's agent and the broker ---
# A real fleet on the host (image/tests/fleet.sh); the room enrols by claim code and a
# campaign brings it $v2. huisd (the room's fleet agent) is SIGKILLed while it downloads and
# while RAUC writes the slot; the broker is SIGKILLed while RAUC writes and again from the
# reboot until the new slot has passed its health check. The room must still end succeeded.
if fleet_up; then ok "fleet service and broker on the host (huis-fleet $(basename "$(dirname "$HF")"), mosquitto)"
else bad "fleet service: $(tail -5 "$fleet.init.log" "$fleet/service.log" 2>/dev/null)"; finish; fi
ln -f "$work/share/v2.raucb" "$fleet/bundles/v2.raucb"; ln -f "$work/share/v3-fail.raucb" "$fleet/bundles/v3-fail.raucb"
if fleet_enrol_room && fleet_wait 240 "the room online with version $v1" \
    "j['room']['online'] and (j['room'].get('reported') or {}).get('version') == '$v1'" room "$fleet_room"; then
    ok "the QEMU room enrolled by claim code and reports version $v1 to the fleet"
else
    bad "the QEMU room did not enrol"; fleet_report; finish
fi
t0=$(date +%s)
if ! hf campaign --id c-v2 --version "$v2" --bundle-url "$fleet_guest_url/bundles/v2.raucb" \
    --first-group 1 --room-timeout-s 3000 "$fleet_room" > /dev/null; then
    bad "campaign c-v2 refused"; fleet_report; finish
fi
if p=$(wait_phase 300 downloading) && kill_huisd; then ok "huisd SIGKILLed while the room downloaded the bundle"
else bad "huisd not killed while downloading (phase: $p)"; fi
if p=$(wait_phase 900 installing); then
    broker_kill; sleep 20
    broker_start && ok "broker SIGKILLed for 20 s while RAUC wrote the slot" || bad "broker did not start again"
    sleep 20
    if [ "$(room_phase)" = installing ] && kill_huisd; then ok "huisd SIGKILLed while RAUC wrote the slot"
    else bad "huisd not killed while installing (phase: $(room_phase))"; fi
else
    bad "the room never reported installing (phase: $p)"; fleet_report
fi
if w=$(wait_reboot 1500); then
    broker_kill; ok "broker SIGKILLed as the room rebooted into the new slot ($w)"
else
    bad "the room did not reboot into the new slot: $w"; fleet_report; finish
fi
if r=$(wait_ready 900); then
    case $r in
        *"slot B marked good (version $v2)"*) ok "after the update: slot B runs $v2 and is marked good (${r%% *}s)" ;;
        *) bad "after the update: $r" ;;
    esac
else
    bad "no boot after the update"; tail -40 "$log"; finish
fi
sleep 10; broker_start || bad "broker did not start again"
if fleet_wait 300 "campaign c-v2 completed, the room succeeded" "j['phase'] == 'completed' and j['rooms']['$fleet_room'] == 'succeeded'" campaign-status c-v2; then
    t=$(( $(date +%s) - t0 ))
    ok "campaign c-v2 completed: the room succeeded after its health check (${t}s)"; bench "fleet_campaign_seconds=$t"
else
    bad "campaign c-v2: $(hf campaign-status c-v2 2>&1 | head -c 800)"; fleet_report
fi
st=$(slot_state B)
[ "$st" = good ] && ok "rauc: slot B boot status good" || bad "rauc: slot B boot status '$st'"
hs=$(g 30 "huisctl status 2>&1")
printf '%s' "$hs" | grep -q "Version *$v2" && ok "huisctl status reports version $v2" || bad "huisctl status after the update: $(printf '%s' "$hs" | head -c 300 | tr '\n' ' ')"

# --- 5b. a damaged bundle is refused before a slot is touched -----------------
# Slot B runs, slot A (the factory image) is the good fallback: the damaged
# bundle would go to A. Every boot flag, RAUC's view of both slots and the first
# 64 MiB of slot A must be the same afterwards.
slots_now() { g 60 "rauc status --detailed --output-format=shell 2>/dev/null" | grep -E '^RAUC_SLOT_(BOOTNAME|STATE|BOOT_STATUS)_' | tr -d "'\"\r" | sort | tr '\n' ' '; }
slot_a_hash() { g 300 "head -c 64M /dev/disk/by-partlabel/rootfs-a | sha256sum" | tr -d '\r' | cut -c1-64; }
g 30 "mkdir -p /mnt/share && mount -t 9p -o trans=virtio,ro,version=9p2000.L,msize=1048576,cache=loose huis-share /mnt/share" >/dev/null
env_before=$(grubenv); slots_before=$(slots_now); hash_before=$(slot_a_hash)
msg=$(g 1500 "huisctl update /mnt/share/v2-damaged.raucb 2>&1 | tail -3; echo rc=\${PIPESTATUS[0]}")
env_after=$(grubenv); slots_after=$(slots_now); hash_after=$(slot_a_hash)
if printf '%s' "$msg" | grep -q 'rc=[1-9]' && printf '%s' "$msg" | grep -q 'the bundle is damaged.*nothing was changed'; then
    ok "damaged bundle refused: $(printf '%s' "$msg" | grep '^huisctl:' | tail -1 | cut -c1-200)"
else
    bad "damaged bundle: $msg"
fi
if [ -n "$env_before" ] && [ "$env_before" = "$env_after" ] && [ -n "$slots_before" ] && [ "$slots_before" = "$slots_after" ] \
   && [ ${#hash_before} -eq 64 ] && [ "$hash_before" = "$hash_after" ]; then
    ok "after the damaged bundle: boot flags, both slots' states and slot A's data unchanged ($env_after; $slots_after)"
else
    bad "the damaged bundle changed the slots: grubenv '$env_before' -> '$env_after'; rauc '$slots_before' -> '$slots_after'; slot A sha256 ${hash_before:-?} -> ${hash_after:-?}"
fi
st=$(slot_state A)
[ "$st" = good ] && ok "rauc: slot A still good, the room keeps its fallback" || bad "rauc: slot A boot status '$st' after the damaged bundle"

# --- 6. a campaign whose slot fails its health check: counted failed, rolled back ----
# The broker is down from the reboot into the bad slot until the room is back on the old one.
g 30 "echo kept > /var/lib/huis/marker" >/dev/null
if ! hf campaign --id c-v3 --version "$v3" --bundle-url "$fleet_guest_url/bundles/v3-fail.raucb" \
    --first-group 1 --room-timeout-s 3000 "$fleet_room" > /dev/null; then
    bad "campaign c-v3 refused"; fleet_report; finish
fi
if w=$(wait_reboot 1500); then broker_kill; ok "campaign c-v3 installed $v3 (fails its health check); broker SIGKILLed at the reboot ($w)"
else bad "campaign c-v3: the room did not reboot: $w"; fleet_report; finish; fi
if r=$(timeout 960 python3 "$here/guest.py" "$sock" wait-for 900 "$log" "huis health check: slot A .*failed its health check"); then
    ok "slot A with $v3 failed its health check and was marked bad"
else
    bad "slot A ($v3) did not report a failed health check"
fi
if r=$(wait_ready 900); then
    case $r in
        *"slot B marked good (version $v2)"*) ok "rolled back: slot B runs $v2 again (${r%% *}s)" ;;
        *) bad "after rollback: $r" ;;
    esac
else
    bad "no boot after the failed slot"; tail -40 "$log"; finish
fi
sleep 10; broker_start || bad "broker did not start again"
if fleet_wait 300 "campaign c-v3 halted, the room counted failed" \
    "j['phase'] == 'halted' and j['rooms']['$fleet_room'].split(':')[0] in ('rolled_back', 'failed')" campaign-status c-v3; then
    ok "campaign c-v3 halted; the room is counted $(campaign_room c-v3 | cut -c1-160), not updated"
else
    bad "campaign c-v3: $(hf campaign-status c-v3 2>&1 | head -c 800)"; fleet_report
fi
v=$(fleet_json "(j['room'].get('reported') or {}).get('version')" room "$fleet_room")
[ "$v" = "$v2" ] && ok "the fleet sees the room on $v2 again" || bad "the fleet sees version '$v', want $v2"
st=$(slot_state A)
[ "$st" = bad ] && ok "rauc: slot A boot status bad" || bad "rauc: slot A boot status '$st'"
m=$(g 30 "cat /var/lib/huis/marker" | tr -d '\r\n')
[ "$m" = kept ] && ok "state in /var/lib/huis survived update and rollback" || bad "/var/lib/huis/marker: '$m'"

finish
