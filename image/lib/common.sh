# shellcheck shell=bash
# Helpers shared by build.sh, bundle.sh, run-qemu.sh and tests/run.sh.
# Sourced, never executed.

IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$IMAGE_DIR/.." && pwd)
BUILD_ROOT=${HUIS_BUILD_DIR:-$IMAGE_DIR/.build}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
note() { printf '      %s\n' "$*"; }

# Step-by-step progress: `step_init 9`, then `step "building rootfs"`.
STEP_N=0
STEP_TOTAL=0
STEP_T0=0
step_init() { STEP_TOTAL=$1; STEP_N=0; BUILD_T0=$(date +%s); }
step_done() {
    if [ "$STEP_N" -gt 0 ]; then
        printf '      ... %ss\n' "$(( $(date +%s) - STEP_T0 ))"
    fi
}
step() {
    step_done
    STEP_N=$((STEP_N + 1))
    STEP_T0=$(date +%s)
    printf '[%d/%d] %s ...\n' "$STEP_N" "$STEP_TOTAL" "$*"
}

# Targets: image/targets/NAME.conf sets ARCH, COMPATIBLE, BOOT (grub|rpi), ...
load_target() {
    local t=$1
    [ -f "$IMAGE_DIR/targets/$t.conf" ] || die "unknown target '$t' (known: $(cd "$IMAGE_DIR/targets" && ls ./*.conf | sed 's|./||;s|\.conf||' | tr '\n' ' '))"
    TARGET=$t
    # shellcheck source=/dev/null
    . "$IMAGE_DIR/targets/$t.conf"
    TARGET_DIR=$BUILD_ROOT/$t
}

# The version stamped into the image: from git unless given.
default_version() {
    local d
    d=$(git -C "$REPO_DIR" describe --tags --always --dirty=-dirty 2>/dev/null || echo unknown)
    local base
    base=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO_DIR/Cargo.toml" | head -1)
    echo "${base:-0.0.0}+g${d#v}"
}

# SOURCE_DATE_EPOCH from the last commit, so two builds of one commit agree.
default_epoch() {
    git -C "$REPO_DIR" log -1 --format=%ct 2>/dev/null || echo 0
}

# A UUID that is a pure function of its input (sha256, formatted as a v4-shaped UUID).
derived_uuid() {
    local h
    h=$(printf '%s' "$1" | sha256sum | cut -c1-32)
    printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}
