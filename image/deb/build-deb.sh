#!/usr/bin/env bash
# Build the `huis` Debian package from the workspace: /usr/bin/huisd and
# /usr/bin/huisctl from `cargo build --release -p huis-firmware` (for another
# architecture: cross-build.sh).
# Hand-rolled dpkg-deb tree (no cargo-deb download needed), reproducible:
# file times clamped to SOURCE_DATE_EPOCH, root:root ownership, sorted tar.
#
# usage: build-deb.sh ARCH VERSION OUTDIR
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

arch=$1 version=$2 out=$3
: "${SOURCE_DATE_EPOCH:=$(default_epoch)}"
export SOURCE_DATE_EPOCH

case $arch in
    amd64) rust_target=x86_64-unknown-linux-gnu ;;
    arm64) rust_target=aarch64-unknown-linux-gnu ;;
    *) die "no Rust target known for Debian architecture $arch" ;;
esac

# With HUIS_BIN_DIR (prebuilt binaries for this machine's architecture) no
# Rust toolchain is needed here at all.
[ -z "${HUIS_BIN_DIR:-}" ] || [ "$arch" = "$(dpkg --print-architecture)" ] \
    || die "HUIS_BIN_DIR holds binaries for $(dpkg --print-architecture), not $arch"
host_target=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p' || true)
target_dir=${CARGO_TARGET_DIR:-$BUILD_ROOT/target}
if [ -n "${HUIS_BIN_DIR:-}" ]; then
    # Binaries built already (CI: the test run's target/debug, so the image
    # group does not compile the workspace a second time). Not reproducible
    # like the release build below; release images never use this.
    bin_dir=$HUIS_BIN_DIR
    for b in huisd huisctl; do
        [ -x "$bin_dir/$b" ] || die "HUIS_BIN_DIR=$bin_dir has no executable $b (cargo build -p huis-firmware --bins first)"
    done
    echo "using prebuilt huisd and huisctl from $bin_dir" >&2
elif [ "$arch" != "$(dpkg --print-architecture)" ]; then
    # Another architecture: Debian's Rust cross toolchain in a build chroot
    # (see cross-build.sh for why not rustup).
    bin_dir=$BUILD_ROOT/cross-$arch/bin
    "$IMAGE_DIR/deb/cross-build.sh" "$arch" "$bin_dir" >/dev/null
else
    [ "$rust_target" = "$host_target" ] || die "cannot build huisd: no Rust toolchain for $rust_target here (install Rust with rustup, or pass --huis-bin-dir)"
    bin_dir=$target_dir/release
    # Deterministic Rust output: no absolute paths of this machine in the binaries.
    export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$REPO_DIR=/build/huis --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
    (cd "$REPO_DIR" && CARGO_TARGET_DIR=$target_dir nice -n 10 cargo build --quiet --release -p huis-firmware --bins --locked)
fi

# Debian versions may not contain '+g<hash>-dirty' oddities at the start; ours start with a digit.
deb_version=${version//_/.}
pkg=$out/huis-pkg
rm -rf "$pkg"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/doc/huis" "$pkg/usr/lib/sysusers.d"
install -m 0755 "$bin_dir/huisd" "$bin_dir/huisctl" "$pkg/usr/bin/"
# (cross-built binaries come stripped by the cross binutils already)
strip --strip-debug "$pkg/usr/bin/huisd" "$pkg/usr/bin/huisctl" 2>/dev/null || true
cat > "$pkg/usr/lib/sysusers.d/huis.conf" <<'CONF'
# huis: the daemon's user, and the group allowed to change the room
# (D-Bus policy for org.huis.Room1 and de.pengutronix.rauc).
g huis-admin -
u huis - "huis room daemon" /var/lib/huis
m huis huis-admin
CONF
printf 'huis firmware %s\nLicense: GPL-3.0-or-later\n' "$version" > "$pkg/usr/share/doc/huis/copyright"
# huisd runs the boot health check and marks the RAUC slot itself; this file
# makes the image's shell stand-in (huis-boot-check.service) stand down.
install -d "$pkg/usr/lib/huis"
printf 'huisd marks the booted RAUC slot good or bad (see ARCHITECTURE.md)\n' > "$pkg/usr/lib/huis/huisd-marks-slot"

installed_kb=$(du -sk "$pkg/usr" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: huis
Version: $deb_version
Architecture: $arch
Maintainer: huis developers <huis@example.invalid>
Installed-Size: $installed_kb
Depends: libc6, libgcc-s1, libglib2.0-0, libgstreamer1.0-0 (>= 1.22), libgstreamer-plugins-base1.0-0 (>= 1.22), libgstreamer-plugins-bad1.0-0 (>= 1.22), gstreamer1.0-nice, libasound2, dbus, systemd
Recommends: rauc-service
Section: misc
Priority: optional
Description: huis meeting-room appliance daemon and CLI
 huisd runs the room (calls, media, audio, updates); huisctl is its
 D-Bus command-line client.
CONTROL
cat > "$pkg/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ] && command -v systemd-sysusers >/dev/null; then
    systemd-sysusers huis.conf || true
fi
POST
chmod 0755 "$pkg/DEBIAN/postinst"

find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb=$out/huis_${deb_version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
