#!/usr/bin/env bash
# Build a flashable huis image:  image/build.sh TARGET [options]
#
# TARGET: amd64 | arm64 | rpi4 | rpi5   (image/targets/*.conf)
#
# Options:
#   --install-deps      apt-get install the host tools first (implied by CI=true)
#   --dev               development/test image: root autologin on the serial console
#   --version V         image version (default: workspace version + git describe)
#   --keyring PEM       CA certificate(s) the image trusts for bundles (production);
#                       default: the development CA, generated under image/.build/keys
#   --vendor-dir DIR    Raspberry Pi targets: directory with the vendor's kernel and
#                       firmware .deb files (see image/README.md)
#   --no-huisd          build without the huis package (for trying the recipe
#                       alone); the image says so in /usr/lib/huis/NO-HUISD
#   --no-compress       skip the .zst copy of the disk image
#   --huis-bin-dir DIR  take huisd and huisctl from DIR (e.g. target/debug of a test
#                       run) instead of building them with cargo --release: CI uses it
#                       to avoid compiling the workspace twice; never for release images
#   --keep-rootfs       reuse the mmdebstrap tree of an earlier build of this target
#                       when the package list and huis package are unchanged
#                       (for iterating on the recipe; clean builds never use it)
#
# Output: image/.build/TARGET/ (disk.img, disk.img.zst, rootfs.ext4, manifest).
# Needs root (mmdebstrap --mode=root chroots into the tree; no loop mounts, no
# Docker, no vfat in the kernel: filesystems are made with mkfs.ext4 -d and mtools).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$IMAGE_DIR/lib/rootfs.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d;s/^# \{0,1\}//'; exit "${1:-0}"; }

target="" dev=no version="" keyring="" vendor_dir="" with_huisd=yes compress=yes
install_deps=no keep_rootfs=no
[ "${CI:-}" = true ] && install_deps=yes
while [ $# -gt 0 ]; do
    case $1 in
        --install-deps) install_deps=yes ;;
        --dev) dev=yes ;;
        --version) version=$2; shift ;;
        --keyring) keyring=$2; shift ;;
        --vendor-dir) vendor_dir=$2; shift ;;
        --no-huisd) with_huisd=no ;;
        --no-compress) compress=no ;;
        --keep-rootfs) keep_rootfs=yes ;;
        --huis-bin-dir) HUIS_BIN_DIR=$(cd "$2" && pwd) || die "--huis-bin-dir $2: no such directory"; export HUIS_BIN_DIR; shift ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$target" ] || die "one target at a time"; target=$1 ;;
    esac
    shift
done
[ -n "$target" ] || usage 2
load_target "$target"
[ "$(id -u)" = 0 ] || die "build.sh needs root (mmdebstrap --mode=root, file ownership in the images)"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(default_epoch)}
version=${version:-$(default_version)}
export LC_ALL=C.UTF-8 TZ=UTC
umask 022

step_init 11

# ---------------------------------------------------------------------------
step "checking host tools"
host_pkgs=(mmdebstrap genimage mtools dosfstools e2fsprogs grub-common rauc squashfs-tools
           zstd xz-utils openssl dpkg-dev fakeroot)
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
    host_pkgs+=(qemu-user-static binfmt-support arch-test)
fi
missing=()
for p in "${host_pkgs[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$install_deps" = yes ]; then
        note "installing: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
    else
        die "missing host packages: ${missing[*]} (run with --install-deps, or apt-get install them)"
    fi
fi
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
    # Foreign-architecture maintainer scripts run through qemu-user via binfmt_misc.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
            || die "binfmt_misc is not mounted and cannot be mounted here; an $ARCH rootfs needs it to run maintainer scripts under qemu-user"
    fi
    case $ARCH in arm64) qarch=aarch64 ;; *) qarch=$ARCH ;; esac
    if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$qarch" ]; then
        update-binfmts --enable "qemu-$qarch" 2>/dev/null || true
    fi
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$qarch" ] \
        || die "qemu-$qarch is not registered with binfmt_misc (update-binfmts --enable qemu-$qarch failed)"
fi

# Raspberry Pi: the vendor's kernel and firmware are not in Debian.
vendor_debs=()
if [ "$BOOT" = rpi ]; then
    [ -n "$vendor_dir" ] || die "target $TARGET needs the Raspberry Pi vendor packages: pass --vendor-dir DIR with .deb files for: $VENDOR_PACKAGES (from the Raspberry Pi OS bookworm arm64 archive; see image/README.md)"
    [ -d "$vendor_dir" ] || die "--vendor-dir $vendor_dir is not a directory"
    absent=()
    for p in $VENDOR_PACKAGES; do
        f=$(ls "$vendor_dir"/"${p}"_*_arm64.deb "$vendor_dir"/"${p}"_*_all.deb 2>/dev/null | sort | tail -1 || true)
        if [ -n "$f" ]; then vendor_debs+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); else absent+=("$p"); fi
    done
    [ ${#absent[@]} -eq 0 ] || die "missing in $vendor_dir: ${absent[*]} (need NAME_VERSION_arm64.deb or NAME_VERSION_all.deb for each NAME of: $VENDOR_PACKAGES)"
    die "target $TARGET: vendor packages found (${vendor_debs[*]}), but the Raspberry Pi boot partition (config.txt, tryboot A/B) is not written yet; see image/README.md"
fi

out=$TARGET_DIR
tree=$out/rootfs
mkdir -p "$out"
note "target $TARGET ($ARCH), version $version, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
note "output $out"

# ---------------------------------------------------------------------------
step "preparing bundle signing keys"
if [ -n "$keyring" ]; then
    [ -f "$keyring" ] || die "--keyring $keyring: no such file"
    cp "$keyring" "$out/keyring.pem"
    note "image trusts the CA(s) in $keyring"
else
    "$IMAGE_DIR/devca.sh" "$BUILD_ROOT/keys/dev" >/dev/null
    cp "$BUILD_ROOT/keys/dev/ca.cert.pem" "$out/keyring.pem"
    note "image trusts the DEVELOPMENT CA in $BUILD_ROOT/keys/dev (not for rooms)"
fi

# ---------------------------------------------------------------------------
if [ "$ARCH" = "$(dpkg --print-architecture)" ] || [ -n "${HUIS_BIN_DIR:-}" ]; then
    step "building the huis package (cargo build --release -p huis-firmware)"
else
    step "building the huis package (cross-compiled for $ARCH in a Debian build chroot, deb/cross-build.sh)"
fi
debs=()
if [ "$with_huisd" = yes ]; then
    deb=$("$IMAGE_DIR/deb/build-deb.sh" "$ARCH" "$version" "$out" | tail -1)
    debs+=("$deb")
    note "$(basename "$deb")"
else
    note "skipped (--no-huisd)"
fi

# ---------------------------------------------------------------------------
step "building the root filesystem with mmdebstrap (Debian bookworm, $ARCH)"
# Use the Debian mirror the host's apt uses: its sources for bookworm.
mirrors=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -qE '(^|[[:space:]])bookworm([[:space:]-]|$)' "$f" || continue
    grep -qiE 'debian' "$f" || continue
    mirrors+=("$f")
done
[ ${#mirrors[@]} -gt 0 ] || die "no bookworm apt source found in /etc/apt/sources.list{,.d/}"
note "apt sources: ${mirrors[*]}"

pkgs=$(cat "$IMAGE_DIR/packages/common.list" "$IMAGE_DIR/packages/$TARGET.list" \
       | sed 's/#.*//;s/[[:space:]]//g;/^$/d' | sort -u | paste -sd, -)
stamp="$ARCH $pkgs"
if [ "$keep_rootfs" = yes ] && [ -f "$out/rootfs.stamp" ] && [ "$(cat "$out/rootfs.stamp")" = "$stamp" ] && [ -d "$tree/usr" ]; then
    reuse_tree=yes
else
    reuse_tree=no
    rm -rf "$tree" "$out/rootfs.stamp"
fi
hooks=(
    # initramfs: zstd, and the modules a room PC or VM may boot from
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "COMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/huis.conf"'
)
[ "$reuse_tree" = yes ] && note "reusing the tree of an earlier build (--keep-rootfs)" || \
nice -n 10 mmdebstrap --quiet --mode=root --variant=apt --arch="$ARCH" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --include="$pkgs" "${hooks[@]}" \
    bookworm "$tree" "${mirrors[@]}" > "$out/mmdebstrap.log" 2>&1 \
    || { tail -30 "$out/mmdebstrap.log"; die "mmdebstrap failed (log: $out/mmdebstrap.log)"; }
echo "$stamp" > "$out/rootfs.stamp"
note "$(du -sh --apparent-size "$tree" | cut -f1) in $tree"

# ---------------------------------------------------------------------------
step "installing the huis package, laying rootfs-overlay/ and the image's own files over the tree"
for d in "${debs[@]}"; do
    cp "$d" "$tree/tmp/"
    chroot "$tree" dpkg -i "/tmp/$(basename "$d")" >/dev/null 2>&1 || die "dpkg -i $(basename "$d") failed in the tree"
    rm "$tree/tmp/$(basename "$d")"
done
cp -a --no-preserve=ownership "$REPO_DIR/rootfs-overlay/." "$tree/"
cp -a --no-preserve=ownership "$IMAGE_DIR/files/common/." "$tree/"
[ "$dev" = no ] || cp -a --no-preserve=ownership "$IMAGE_DIR/files/dev/." "$tree/"
sed -i "s/@COMPATIBLE@/$COMPATIBLE/" "$tree/etc/rauc/system.conf"
install -m 0644 "$out/keyring.pem" "$tree/etc/rauc/keyring.pem"
[ "$with_huisd" = yes ] || echo "built with --no-huisd: this image has no huisd" > "$tree/usr/lib/huis/NO-HUISD"
install -d "$tree/data" "$tree/boot/efi" "$tree/etc/huis" "$tree/var/lib/huis"
# Units: enable what the appliance runs. huisd.service comes with rootfs-overlay/.
systemctl --root="$tree" set-default multi-user.target >/dev/null 2>&1
systemctl --root="$tree" enable systemd-networkd.service huis-boot-check.service >/dev/null 2>&1
systemctl --root="$tree" enable rauc.service >/dev/null 2>&1 || true
if [ -e "$tree/usr/lib/systemd/system/huisd.service" ] || [ -e "$tree/etc/systemd/system/huisd.service" ]; then
    systemctl --root="$tree" enable huisd.service >/dev/null 2>&1
fi
# Users and groups from sysusers.d (huis, huis-admin) must exist before first boot
# so D-Bus policies naming them load.
chroot "$tree" systemd-sysusers >/dev/null 2>&1 || true
# Root has no password; room images have no login on the console at all.
chroot "$tree" passwd -d root >/dev/null 2>&1 || true
[ "$dev" = yes ] || chroot "$tree" passwd -l root >/dev/null 2>&1
# Never let the clock run behind this build (systemd reads this file's mtime).
touch "$tree/usr/lib/clock-epoch"
stamp_version "$tree" "$version" "$TARGET"

# ---------------------------------------------------------------------------
step "regenerating the initramfs and cleaning the tree"
kver=$(ls "$tree/lib/modules" | sort -V | tail -1)
chroot "$tree" update-initramfs -u -k "$kver" >/dev/null 2>&1 || die "update-initramfs failed in the tree"
# Manifest of what is inside, for comparing two builds.
chroot "$tree" dpkg-query -W -f='${Package} ${Version} ${Architecture}\n' | sort > "$out/packages.txt"
rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/var/cache/apt/archives/*.deb \
       "$tree"/var/log/*.log "$tree"/var/log/apt/* "$tree"/tmp/* "$tree"/var/cache/ldconfig/aux-cache \
       "$tree"/etc/ssh/ssh_host_* "$tree"/var/lib/dbus/machine-id
: > "$tree/etc/machine-id"   # empty: systemd makes one on first boot
# Clamp every time stamp so two builds of one commit give the same filesystems.
find "$tree" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
note "kernel $kver; $(wc -l < "$out/packages.txt") packages; $(du -sh --apparent-size "$tree" | cut -f1)"

# ---------------------------------------------------------------------------
step "making the slot filesystem (mkfs.ext4 -d, no mounts)"
make_ext4 "$tree" "$out/rootfs.ext4" rootfs "$TARGET-$version"
echo "$version" > "$out/rootfs.version"
note "rootfs.ext4 $(du -h --apparent-size "$out/rootfs.ext4" | cut -f1)"

# ---------------------------------------------------------------------------
step "making the data partition (config and state that survive updates)"
data=$out/data-tree
rm -rf "$data"
install -d "$data/etc-huis" "$data/var-lib-huis" "$data/rauc"
cp -a "$tree/etc/huis/." "$data/etc-huis/"
# huisd runs as user huis; its state directory belongs to it.
huis_uid=$(chroot "$tree" id -u huis 2>/dev/null || echo 0)
huis_gid=$(chroot "$tree" id -g huis 2>/dev/null || echo 0)
chown "$huis_uid:$huis_gid" "$data/var-lib-huis"
# The simulated mic array's room recording (QEMU and other machines without
# a mic array), rendered here by the image's own huisd: under TCG emulation
# huisd would spend minutes on it at first start, longer than systemd waits.
# The qemu-x86_64 and qemu-arm64 boards have the sim board's geometry, so one file serves all.
# For another architecture the tree's huisd runs through qemu-user (binfmt_misc,
# checked in step 1), slower but once per build. G_SLICE is set as huisd.service sets it:
# without it huisd executes itself again through /proc, which a bare chroot lacks.
if [ "$with_huisd" = yes ]; then
    rec=$(G_SLICE=always-malloc chroot "$tree" /usr/bin/huisd --render-sim-recording /tmp/sim-recording --board sim) \
        || die "huisd --render-sim-recording failed in the tree"
    mv "$tree$rec" "$data/var-lib-huis/"
    rm -rf "$tree/tmp/sim-recording"; touch -d "@$SOURCE_DATE_EPOCH" "$tree/tmp"
    chown "$huis_uid:$huis_gid" "$data/var-lib-huis/$(basename "$rec")"
    note "sim room recording $(basename "$rec") ($(du -h --apparent-size "$data/var-lib-huis/$(basename "$rec")" | cut -f1))"
fi
find "$data" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
make_ext4 "$data" "$out/data.ext4" data "data-$TARGET" 192

# ---------------------------------------------------------------------------
step "making the EFI system partition (GRUB, A/B grub.cfg, grubenv; mtools)"
esp=$out/esp-tree
rm -rf "$esp"
install -d "$esp/EFI/BOOT"
grub_mods="part_gpt fat ext2 normal configfile loadenv test regexp linux echo search search_fs_uuid gzio zstd serial terminal sleep reboot halt"
[ "$GRUB_PLATFORM" = x86_64-efi ] && grub_mods="$grub_mods efi_gop all_video"
grub-mkimage -d "$tree/usr/lib/grub/$GRUB_PLATFORM" -O "$GRUB_PLATFORM" -p /EFI/BOOT \
    -o "$esp/EFI/BOOT/$GRUB_EFI_NAME" $grub_mods
part_a=$(derived_uuid "partition:rootfs-a")
part_b=$(derived_uuid "partition:rootfs-b")
if [ "$dev" = yes ]; then grub_timeout=1; else grub_timeout=0; fi
grub_serial="serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console"
[ "$GRUB_PLATFORM" = arm64-efi ] && grub_serial="" # the firmware's console is the serial port
cmdline="console=tty0 console=$SERIAL_CONSOLE,115200 quiet loglevel=3 systemd.show_status=auto"
sed -e "s|@GRUB_TIMEOUT@|$grub_timeout|" -e "s|@PARTUUID_A@|$part_a|" -e "s|@PARTUUID_B@|$part_b|" \
    -e "s|@KERNEL_CMDLINE@|$cmdline|" "$IMAGE_DIR/grub/grub.cfg.in" \
    | awk -v s="$grub_serial" '{ if ($0 == "@GRUB_SERIAL@") print s; else print }' > "$esp/EFI/BOOT/grub.cfg"
# The factory state: slot A good and first, slot B empty.
grub-editenv "$esp/EFI/BOOT/grubenv" create
grub-editenv "$esp/EFI/BOOT/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
find "$esp" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

# ---------------------------------------------------------------------------
step "assembling the GPT disk image with genimage"
gen=$out/genimage
rm -rf "$gen" "$out/disk.img"
mkdir -p "$gen/input" "$gen/tmp"
ln -sf "$out/rootfs.ext4" "$gen/input/rootfs.ext4"
ln -sf "$out/data.ext4" "$gen/input/data.ext4"
vol_id=$(derived_uuid "esp:$TARGET" | cut -c1-8)
sed -e "s|@DISK_UUID@|$(derived_uuid "disk:$TARGET")|" \
    -e "s|@PARTUUID_ESP@|$(derived_uuid "partition:efi")|" \
    -e "s|@PARTUUID_A@|$part_a|" -e "s|@PARTUUID_B@|$part_b|" \
    -e "s|@PARTUUID_DATA@|$(derived_uuid "partition:data")|" \
    -e "s|@ESP_DIR@|$esp|" -e "s|@VOL_ID@|$vol_id|" \
    "$IMAGE_DIR/genimage/disk.cfg.in" > "$gen/disk.cfg"
genimage --config "$gen/disk.cfg" --rootpath "$esp" --tmppath "$gen/tmp" \
    --inputpath "$gen/input" --outputpath "$gen" > "$gen/genimage.log" 2>&1 \
    || { tail -20 "$gen/genimage.log"; die "genimage failed (log: $gen/genimage.log)"; }
mv "$gen/disk.img" "$out/disk.img"
rm -rf "$gen/tmp"
note "disk.img $(du -h --apparent-size "$out/disk.img" | cut -f1) raw, $(du -h "$out/disk.img" | cut -f1) allocated"

# ---------------------------------------------------------------------------
step "compressing and writing the manifest"
if [ "$compress" = yes ]; then
    # Level 3 (zstd's default): level 10 took 145 s here on 2 busy cores.
    nice -n 10 zstd -q -f -T0 -3 "$out/disk.img" -o "$out/disk.img.zst"
    note "disk.img.zst $(du -h --apparent-size "$out/disk.img.zst" | cut -f1)"
fi
{
    echo "target=$TARGET"
    echo "arch=$ARCH"
    echo "compatible=$COMPATIBLE"
    echo "version=$version"
    echo "source_date_epoch=$SOURCE_DATE_EPOCH"
    echo "dev=$dev"
    echo "huisd=$with_huisd"
    (cd "$out" && sha256sum rootfs.ext4 data.ext4 disk.img)
} > "$out/manifest"
step_done
echo "built $TARGET image $version in $(( $(date +%s) - BUILD_T0 ))s: $out/disk.img"
