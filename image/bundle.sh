#!/usr/bin/env bash
# Make a signed RAUC update bundle (verity format) for a target built with build.sh.
#
#   image/bundle.sh TARGET [options]
#
# Options:
#   --version V          version the bundle installs (default: the built image's).
#                        Another version restamps the built tree's version files
#                        (/usr/lib/os-release, /usr/lib/huis/image-version) for
#                        the bundle only.
#   --cert PEM --key PEM signing certificate and key (production: pass them in,
#                        e.g. from a token or a CI secret; never commit them).
#                        Default: the development CA's signing pair.
#   --keyring PEM        verify the new bundle against this CA after signing
#                        (default: the image's keyring when no --cert is given)
#   --out FILE           bundle path (default: image/.build/TARGET/huis-TARGET-V.raucb)
#   --test-fail-health   TEST ONLY: the slot in this bundle fails its boot health
#                        check (tests/run.sh uses this to prove rollback)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$IMAGE_DIR/lib/rootfs.sh"

target="" version="" cert="" key="" keyring="" out="" fail=""
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift ;;
        --cert) cert=$2; shift ;;
        --key) key=$2; shift ;;
        --keyring) keyring=$2; shift ;;
        --out) out=$2; shift ;;
        --test-fail-health) fail=fail-health ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d;s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) target=$1 ;;
    esac
    shift
done
[ -n "$target" ] || die "usage: bundle.sh TARGET [--version V] [--cert PEM --key PEM] [--out FILE]"
load_target "$target"
[ -f "$TARGET_DIR/manifest" ] || die "no built $TARGET image in $TARGET_DIR: run image/build.sh $TARGET first"
command -v rauc >/dev/null || die "rauc is not installed on this machine (apt-get install rauc squashfs-tools)"

built_version=$(sed -n 's/^version=//p' "$TARGET_DIR/manifest")
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(sed -n 's/^source_date_epoch=//p' "$TARGET_DIR/manifest")}
version=${version:-$built_version}

if [ -z "$cert$key" ]; then
    dev=$BUILD_ROOT/keys/dev
    [ -f "$dev/signing.key.pem" ] || die "no development keys in $dev (build.sh makes them) and no --cert/--key given"
    cert=$dev/signing.cert.pem key=$dev/signing.key.pem
    keyring=${keyring:-$TARGET_DIR/keyring.pem}
    echo "bundle.sh: signing with the DEVELOPMENT key (only development images trust it)"
fi
[ -f "$cert" ] && [ -f "$key" ] || die "--cert and --key must both name files"
out=${out:-$TARGET_DIR/huis-$TARGET-$version${fail:+-failhealth}.raucb}

work=$(mktemp -d "$TARGET_DIR/bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"

# The slot image: the built one when nothing changes, else the tree restamped.
if [ "$version" = "$built_version" ] && [ -z "$fail" ]; then
    cp --reflink=auto "$TARGET_DIR/rootfs.ext4" "$work/content/rootfs.ext4"
else
    tree=$TARGET_DIR/rootfs
    [ -d "$tree/usr/lib" ] || die "the built tree $tree is gone; rebuild with build.sh $TARGET"
    exec 9> "$TARGET_DIR/.tree.lock"
    flock 9
    stamp_version "$tree" "$version" "$TARGET" "$fail"
    make_ext4 "$tree" "$work/content/rootfs.ext4" rootfs "$TARGET-$version${fail:+-$fail}" \
        || { stamp_version "$tree" "$built_version" "$TARGET"; die "mkfs.ext4 failed"; }
    stamp_version "$tree" "$built_version" "$TARGET"
    find "$tree/usr/lib/os-release" "$tree/usr/lib/huis" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
    flock -u 9
fi

cat > "$work/content/manifest.raucm" <<EOF
[update]
compatible=$COMPATIBLE
version=$version
description=huis $version for $TARGET${fail:+ (TEST: fails its health check)}
build=$SOURCE_DATE_EPOCH

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
EOF

rm -f "$out"
args=(bundle --cert="$cert" --key="$key" --mksquashfs-args="-comp zstd -Xcompression-level 6")
[ -z "$keyring" ] || args+=(--keyring="$keyring")
nice -n 10 rauc "${args[@]}" "$work/content" "$out" > "$work/rauc.log" 2>&1 \
    || { cat "$work/rauc.log"; die "rauc bundle failed"; }
echo "$out"
