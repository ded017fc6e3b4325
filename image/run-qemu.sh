#!/usr/bin/env bash
# Boot a built huis image in QEMU (TCG; KVM when --kvm and usable).
#
#   image/run-qemu.sh TARGET [options]
#
# Options:
#   --disk FILE        disk to boot (default: a throw-away qcow2 overlay on
#                      image/.build/TARGET/disk.img, so the image stays pristine)
#   --vars FILE        UEFI variable store to use (default: a fresh copy per run)
#   --serial SPEC      QEMU -serial value (default mon:stdio; tests use unix:PATH,server=on,wait=off)
#   --share DIR        export DIR read-only to the guest over virtio-9p, tag "huis-share"
#                      (mount -t 9p -o trans=virtio,ro,msize=1048576 huis-share /mnt;
#                      without a large msize 9p reads at ~4 MB/s under TCG)
#   --fwd HOST:GUEST   forward 127.0.0.1:HOST to the guest's TCP port GUEST
#                      (default 10022:22; loopback only)
#   --to-host GUEST_PORT:HOST_PORT
#                      let the guest open TCP connections to 10.0.2.100:GUEST_PORT,
#                      each relayed (socat) to the host's 127.0.0.1:HOST_PORT (repeat;
#                      the image tests' fleet service and broker)
#   --mem MB           guest memory (default 1024)
#   --kvm              use KVM if /dev/kvm works (default: TCG, as in CI)
#   --pidfile FILE     write QEMU's pid (tests use it to stop the guest)
#   --no-reboot        exit when the guest reboots instead of resetting it (the
#                      tests then power the guest on again: a cold boot)
#
# Networking is QEMU user mode with restrict=on: the guest reaches nothing
# outside but the --to-host ports, the host reaches the guest only through the
# forwarded port.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

target="" disk="" vars="" serial="mon:stdio" share="" fwd="10022:22" mem=1024 accel=tcg pidfile="" no_reboot=no to_host=""
while [ $# -gt 0 ]; do
    case $1 in
        --disk) disk=$2; shift ;;
        --vars) vars=$2; shift ;;
        --serial) serial=$2; shift ;;
        --share) share=$2; shift ;;
        --fwd) fwd=$2; shift ;;
        --to-host)
            [[ $2 =~ ^[0-9]+:[0-9]+$ ]] || die "--to-host $2: want GUEST_PORT:HOST_PORT"
            command -v socat >/dev/null || die "--to-host needs socat"
            to_host+=",guestfwd=tcp:10.0.2.100:${2%%:*}-cmd:socat STDIO TCP:127.0.0.1:${2##*:}"; shift ;;
        --mem) mem=$2; shift ;;
        --kvm) accel=kvm ;;
        --pidfile) pidfile=$2; shift ;;
        --no-reboot) no_reboot=yes ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d;s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) target=$1 ;;
    esac
    shift
done
[ -n "$target" ] || die "usage: run-qemu.sh TARGET [options] (see --help)"
load_target "$target"

run=$TARGET_DIR/run
mkdir -p "$run"
temps=()
trap 'rm -f "${temps[@]}"' EXIT
if [ -z "$disk" ]; then
    [ -f "$TARGET_DIR/disk.img" ] || die "no $TARGET_DIR/disk.img: run image/build.sh $TARGET first"
    disk=$run/disk-$$.qcow2
    qemu-img create -q -f qcow2 -b "$TARGET_DIR/disk.img" -F raw "$disk"
    temps+=("$disk")
fi
case $disk in *.qcow2) fmt=qcow2 ;; *) fmt=raw ;; esac

case $ARCH in
    amd64)
        qemu=qemu-system-x86_64
        code=/usr/share/OVMF/OVMF_CODE_4M.fd
        vars_template=/usr/share/OVMF/OVMF_VARS_4M.fd
        machine=(-machine q35 -cpu max)
        pkg="ovmf qemu-system-x86"
        ;;
    arm64)
        qemu=qemu-system-aarch64
        code=/usr/share/AAVMF/AAVMF_CODE.fd
        vars_template=/usr/share/AAVMF/AAVMF_VARS.fd
        machine=(-machine virt -cpu max)
        pkg="qemu-efi-aarch64 qemu-system-arm"
        ;;
    *) die "no QEMU machine for $ARCH" ;;
esac
command -v "$qemu" >/dev/null && [ -f "$code" ] || die "QEMU or its UEFI firmware is missing (apt-get install $pkg)"
if [ -z "$vars" ]; then
    tmpvars=$run/vars-$$.fd
    cp "$vars_template" "$tmpvars"
    vars=$tmpvars
    temps+=("$tmpvars")
fi

if [ "$accel" = kvm ] && ! [ -w /dev/kvm ]; then
    echo "run-qemu.sh: /dev/kvm is not usable, falling back to TCG" >&2
    accel=tcg
fi
if [ "$accel" = tcg ]; then accel_args=(-accel tcg,thread=multi); else accel_args=(-accel kvm); fi

host_port=${fwd%%:*} guest_port=${fwd##*:}
args=(
    "${machine[@]}" "${accel_args[@]}" -smp 2 -m "$mem"
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
    -drive "if=pflash,format=raw,unit=1,file=$vars"
    -drive "if=virtio,format=$fmt,file=$disk,discard=unmap"
    -nic "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:$host_port-:$guest_port$to_host"
    -device virtio-rng-pci
    -display none -vga none -serial "$serial" -monitor none
)
[ -z "$share" ] || args+=(-virtfs "local,path=$share,mount_tag=huis-share,security_model=none,readonly=on")
[ -z "$pidfile" ] || args+=(-pidfile "$pidfile")
[ "$no_reboot" = no ] || args+=(-no-reboot)
[ "$ARCH" = arm64 ] && args+=(-device virtio-gpu-pci)   # harmless; arm64 virt has no VGA
"$qemu" "${args[@]}"
