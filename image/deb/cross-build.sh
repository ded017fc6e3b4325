#!/usr/bin/env bash
# Cross-compile huisd and huisctl for a foreign Debian architecture, with
# Debian's own Rust cross toolchain, in a build chroot.
#
# usage: cross-build.sh ARCH BIN_OUT_DIR
#
# Why a chroot: rustup's standard library for aarch64 is a download that not
# every build machine may make, and Debian bookworm already ships a Rust
# toolchain recent enough for this workspace (rustc-web, kept current for
# Firefox ESR in bookworm-security) together with its standard library for
# every architecture (libstd-rust-web-dev:ARCH, Multi-Arch: same). Installing
# the ARCH -dev libraries on the host would mean `dpkg --add-architecture` on
# the build machine; a chroot made by mmdebstrap keeps the host untouched and
# pins the toolchain to what bookworm ships, like the image itself.
#
# The chroot is kept in $BUILD_ROOT/cross-ARCH/ and rebuilt when the package
# list below changes. Cargo's registry cache and the target directory live
# beside it, so a second build is incremental. Needs root (mmdebstrap
# --mode=root, bind mounts in a private mount namespace).
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

arch=${1:?usage: cross-build.sh ARCH BIN_OUT_DIR} out=${2:?usage: cross-build.sh ARCH BIN_OUT_DIR}
case $arch in
    arm64) rust_target=aarch64-unknown-linux-gnu gnu_triplet=aarch64-linux-gnu ;;
    *) die "no cross toolchain known for Debian architecture $arch" ;;
esac
host_arch=$(dpkg --print-architecture)
[ "$arch" != "$host_arch" ] || die "cross-build.sh: $arch is this machine's own architecture"
[ "$(id -u)" = 0 ] || die "cross-build.sh needs root (mmdebstrap --mode=root, bind mounts)"
command -v mmdebstrap >/dev/null || die "cross-build.sh needs mmdebstrap (apt-get install mmdebstrap)"

# Everything huisd links against (ldd target/debug/huisd), for the target
# architecture, plus the compiler, linker and Rust standard library.
packages=(
    rustc-web cargo-web "libstd-rust-web-dev:$arch"
    "gcc-$gnu_triplet" "libc6-dev:$arch" pkg-config ca-certificates
    "libgstreamer1.0-dev:$arch" "libgstreamer-plugins-base1.0-dev:$arch" "libgstreamer-plugins-bad1.0-dev:$arch"
    "libasound2-dev:$arch"
    # bindgen (v4l2-sys-mit) needs libclang; it finds the arm64 headers by multiarch
    libclang-dev
)
mirrors=(
    "deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    # rustc-web 1.96 is in bookworm-security; bookworm itself has 1.85
    "deb http://deb.debian.org/debian-security bookworm-security main"
)

dir=$BUILD_ROOT/cross-$arch
root=$dir/root
stamp=$(printf '%s\n' "$host_arch" "${packages[@]}" "${mirrors[@]}" | sha256sum | cut -c1-16)
mkdir -p "$dir"
if [ ! -x "$root/usr/bin/cargo" ] || [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "making the $arch cross-build chroot in $root (mmdebstrap; once)" >&2
    rm -rf "$root" "$dir/stamp"
    include=$(IFS=,; echo "${packages[*]}")
    mmdebstrap --quiet --mode=root --variant=apt --format=directory \
        --architectures="$host_arch,$arch" --include="$include" \
        bookworm "$root" "${mirrors[@]}" >&2 \
        || die "could not make the cross-build chroot (mmdebstrap failed; see above)"
    echo "$stamp" > "$dir/stamp"
fi
[ -d "$root/usr/lib/rustlib/$rust_target/lib" ] \
    || die "the chroot has no Rust standard library for $rust_target (libstd-rust-web-dev:$arch)"

mkdir -p "$dir/cargo-home" "$dir/target" "$out"
# Cargo fetches crates inside the chroot: give it the host's resolver and the
# host's trusted CAs (a build machine behind a TLS-inspecting proxy trusts its
# CA there, not in the chroot's Debian bundle).
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-certificates.crt" 2>/dev/null \
    || cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$root/etc/ssl/certs/host-ca-certificates.crt"
mkdir -p "$root/build/huis" "$root/build/cargo-home" "$root/build/target"

env_vars=(
    HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
    CARGO_HOME=/build/cargo-home CARGO_TARGET_DIR=/build/target
    "CARGO_TARGET_$(echo "$rust_target" | tr a-z- A-Z_)_LINKER=$gnu_triplet-gcc"
    "CC_${rust_target//-/_}=$gnu_triplet-gcc"
    "PKG_CONFIG_${rust_target//-/_}=$gnu_triplet-pkg-config"
    PKG_CONFIG_ALLOW_CROSS=1
    CARGO_HTTP_CAINFO=/etc/ssl/certs/host-ca-certificates.crt
    "SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(default_epoch)}"
    # No path of the build machine in the binaries.
    "RUSTFLAGS=--remap-path-prefix=/build/huis=/build/huis --remap-path-prefix=/build/cargo-home=/cargo"
)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -z "${!v:-}" ] || env_vars+=("$v=${!v}")
done
cargo_cmd=(cargo build --quiet --release --locked -p huis-firmware --bins --target "$rust_target")

echo "cross-compiling huisd for $arch in the chroot ($(chroot "$root" rustc --version 2>/dev/null || echo "rustc-web"))" >&2
# A private mount namespace: the bind mounts vanish with the process, even if
# the build fails half-way, and never show on the host.
unshare --mount --propagation private -- bash -euc '
    root=$1 repo=$2 dir=$3; shift 3
    mount --bind "$repo" "$root/build/huis"
    mount -o remount,bind,ro "$root/build/huis"
    mount --bind "$dir/cargo-home" "$root/build/cargo-home"
    mount --bind "$dir/target" "$root/build/target"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i "$@"
' cross "$root" "$REPO_DIR" "$dir" "${env_vars[@]}" \
    sh -c 'cd /build/huis && exec nice -n 10 "$@"' sh "${cargo_cmd[@]}" \
    || die "cross-compiling huisd for $arch failed (see the cargo output above)"

# Strip with the chroot's cross binutils (the host's strip may not read $arch).
rm -rf "$root/tmp/huis-bin" && mkdir -p "$root/tmp/huis-bin"
for b in huisd huisctl; do
    install -m 0755 "$dir/target/$rust_target/release/$b" "$root/tmp/huis-bin/$b"
done
chroot "$root" "$gnu_triplet-strip" --strip-debug /tmp/huis-bin/huisd /tmp/huis-bin/huisctl
install -m 0755 "$root/tmp/huis-bin/huisd" "$root/tmp/huis-bin/huisctl" "$out/"
echo "$out"
