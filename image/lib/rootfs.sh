# shellcheck shell=bash
# Turning a root filesystem tree into a slot image. Shared by build.sh (the
# factory image) and bundle.sh (update bundles), so both produce the same kind
# of filesystem. Sourced after lib/common.sh.

# The files that say which version a tree is. Everything version-specific in a
# slot goes through here, so a bundle for another version is the same tree
# with these few files rewritten.
#   stamp_version TREE VERSION TARGET [fail-health]
stamp_version() {
    local tree=$1 version=$2 target=$3 fail=${4:-}
    local osr=$tree/usr/lib/os-release
    # Debian's lines first, then ours; drop any earlier stamp.
    sed -i '/^IMAGE_ID=/d;/^IMAGE_VERSION=/d;/^HUIS_TARGET=/d;/^VARIANT=/d;/^VARIANT_ID=/d' "$osr"
    {
        echo "VARIANT=\"huis room appliance\""
        echo "VARIANT_ID=huis"
        echo "IMAGE_ID=huis-$target"
        echo "IMAGE_VERSION=$version"
        echo "HUIS_TARGET=$target"
    } >> "$osr"
    install -d "$tree/usr/lib/huis"
    echo "$version" > "$tree/usr/lib/huis/image-version"
    # Test hook: a slot that must fail its boot health check (tests/run.sh
    # uses it to prove rollback). Never present in real builds.
    if [ "$fail" = fail-health ]; then
        echo "this slot was built to fail its health check (test only)" > "$tree/usr/lib/huis/test-fail-health-check"
    else
        rm -f "$tree/usr/lib/huis/test-fail-health-check"
    fi
    touch -h -d "@$SOURCE_DATE_EPOCH" "$osr" "$tree/usr/lib/huis" "$tree/usr/lib/huis/image-version"
    [ ! -e "$tree/usr/lib/huis/test-fail-health-check" ] || touch -d "@$SOURCE_DATE_EPOCH" "$tree/usr/lib/huis/test-fail-health-check"
}

# make_ext4 TREE OUT LABEL UUID_SEED [EXTRA_MB]
# An ext4 image sized to its content plus headroom, built with mkfs.ext4 -d
# (no loop mount). Reproducible: fixed UUID and hash seed from UUID_SEED,
# fake creation time from SOURCE_DATE_EPOCH.
make_ext4() {
    local tree=$1 out=$2 label=$3 seed=$4 extra=${5:-128}
    local used_kb size_mb uuid hash
    used_kb=$(du -s --apparent-size -k "$tree" | cut -f1)
    # ext4 metadata and block rounding take ~10%; keep room for logs and
    # package state written at run time.
    size_mb=$(( used_kb * 12 / 10 / 1024 + extra ))
    uuid=$(derived_uuid "fs:$seed")
    hash=$(derived_uuid "hash:$seed")
    rm -f "$out"
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L "$label" -U "$uuid" \
        -E "hash_seed=$hash,root_owner=0:0" -T default -I 256 \
        -d "$tree" "$out" "${size_mb}M" >/dev/null
    # mke2fs -d (1.47.0) copies each file's atime and ctime from the tree and
    # stamps crtime with the clock; mtimes are already clamped. Set all three
    # to SOURCE_DATE_EPOCH so one tree always gives the same bytes (checked:
    # two runs, identical sha256).
    local ts cmds
    ts=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)
    cmds=$(mktemp)
    {
        printf 'sif / atime %s\nsif / ctime %s\nsif / crtime %s\n' "$ts" "$ts" "$ts"
        (cd "$tree" && find . -mindepth 1 -printf '%P\n') | awk -v ts="$ts" '{
            printf "sif \"/%s\" atime %s\nsif \"/%s\" ctime %s\nsif \"/%s\" crtime %s\n", $0, ts, $0, ts, $0, ts }'
    } > "$cmds"
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$cmds" "$out" >/dev/null 2>&1 || true
    rm -f "$cmds"
}
