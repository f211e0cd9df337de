#!/bin/bash
# iso/build.sh — builds iso/out/minik-<version>.iso (+ .sha256, packages.txt)
# from Debian packages only.
#
# Owns: the guest operating system of the minik VM. Everything comes from
# `apt-get download` + `dpkg-deb -x` (no root needed for the build itself):
#   - kernel: linux-image-cloud-amd64 (bzImage, plus the modules we load)
#   - userland: busybox-static, dash (/bin/sh), crun, iproute2 (ip, bridge, ss), nftables,
#     dropbear-bin, e2fsprogs (mkfs.ext4, e2fsck), ca-certificates, and the
#     shared-library closure of those binaries (resolved from ELF NEEDED
#     entries against the Depends closure of the packages)
#   - the glibc/libgcc libraries the dynamically linked `minik` agent needs
#     (and, when target/{release,debug}/minik exists, its own NEEDED closure)
#   - iso/rootfs/: /init and the scripts it uses (see iso/README.md)
# The root filesystem is one initramfs; isolinux boots it from the ISO.
#
# Usage: iso/build.sh [--version V] [--no-boot-test]
#   MINIK_ISO_COMPRESS=gzip|zstd|lz4|none  initramfs compression (default lz4: fastest boot measured)
# Host tools: apt-get, dpkg-deb, xorriso, isolinux, syslinux-common, cpio,
# binutils (readelf, objcopy), lz4. Missing ones are installed with apt-get
# when running as root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BUILD="$HERE/build"
OUT="$HERE/out"
COMPRESS="${MINIK_ISO_COMPRESS:-lz4}"
BOOT_TEST=1
VERSION=""

while [ $# -gt 0 ]; do
    case "$1" in
    --version) VERSION="$2"; shift 2 ;;
    --no-boot-test) BOOT_TEST=0; shift ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$VERSION" ]; then
    VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$REPO/Cargo.toml" | head -1)"
fi
[ -n "$VERSION" ] || { echo "build.sh: cannot read the version from $REPO/Cargo.toml; pass --version" >&2; exit 2; }

log() { printf '[iso] %s\n' "$*" >&2; }
die() { printf '[iso] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- host tools
need_pkgs=()
command -v xorriso >/dev/null || need_pkgs+=(xorriso)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v readelf >/dev/null || need_pkgs+=(binutils)
command -v objcopy >/dev/null || need_pkgs+=(binutils)
[ -f /usr/lib/ISOLINUX/isolinux.bin ] || need_pkgs+=(isolinux)
[ -f /usr/lib/ISOLINUX/isohdpfx.bin ] || need_pkgs+=(isolinux)
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need_pkgs+=(syslinux-common)
[ "$COMPRESS" != zstd ] || command -v zstd >/dev/null || need_pkgs+=(zstd)
[ "$COMPRESS" != lz4 ] || command -v lz4 >/dev/null || need_pkgs+=(lz4)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        log "installing host tools: ${need_pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    else
        die "missing host tools; run: sudo apt-get install ${need_pkgs[*]}"
    fi
fi

T0=$(date +%s.%N)
mkdir -p "$BUILD/debs" "$OUT"

# ---------------------------------------------------------------- packages
KPKG="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)"
[ -n "$KPKG" ] || die "apt-cache does not know linux-image-cloud-amd64; run apt-get update"
KVER="${KPKG#linux-image-}"

# What we take files from. Their Depends closure is downloaded too so that
# every shared library can be found; only packages that contribute a file
# end up in packages.txt.
TOP_PKGS=(busybox-static dash crun iproute2 nftables dropbear-bin e2fsprogs ca-certificates libc6 libgcc-s1 kmod)
# Libraries the minik agent needs beyond the tools' closure (glibc's set).
AGENT_LIBS=(libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libutil.so.1)

mapfile -t ALL_PKGS < <(
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${TOP_PKGS[@]}" 2>/dev/null |
        grep -v '^ ' | grep -v '^<' | sort -u
)
ALL_PKGS+=("$KPKG")

log "downloading ${#ALL_PKGS[@]} packages into $BUILD/debs"
(
    cd "$BUILD/debs"
    missing=()
    for p in "${ALL_PKGS[@]}"; do
        ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get download "${missing[@]}" 2>&1 | grep -v -e 'unsandboxed' -e '^Get:' -e '^Fetched' >&2 || true
    fi
    for p in "${missing[@]}"; do
        ls "${p}"_*.deb >/dev/null 2>&1 || die "apt-get download $p failed"
    done
)

# Extract each package into its own directory so we know who shipped what.
POOL="$BUILD/pool"
rm -rf "$POOL"
mkdir -p "$POOL"
for p in "${ALL_PKGS[@]}"; do
    deb="$(ls "$BUILD/debs/${p}"_*.deb | head -1)"
    mkdir -p "$POOL/$p"
    dpkg-deb -x "$deb" "$POOL/$p"
    dpkg-deb -f "$deb" Version >"$POOL/$p.version"
done

# ---------------------------------------------------------------- rootfs
ROOT="$BUILD/rootfs"
rm -rf "$ROOT"
mkdir -p "$ROOT"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64} "$ROOT"/{etc,proc,sys,dev,run,tmp,root,mnt,var/lib/minik,var/log}
ln -s usr/bin "$ROOT/bin"
ln -s usr/sbin "$ROOT/sbin"
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib64 "$ROOT/lib64"
ln -s ../run "$ROOT/var/run"
chmod 1777 "$ROOT/tmp"
chmod 700 "$ROOT/root"

declare -A USED_PKGS=()

# usr-merged destination of a package path: bin/x -> usr/bin/x, lib/x -> usr/lib/x
dest_of() {
    case "$1" in
    bin/* | sbin/* | lib/* | lib64/*) echo "usr/$1" ;;
    *) echo "$1" ;;
    esac
}

# take PKG PATH [DEST]: copy a file (dereferencing symlinks) from a package.
take() {
    local pkg="$1" path="$2" dest="${3:-}"
    [ -e "$POOL/$pkg/$path" ] || die "$pkg does not ship $path"
    [ -n "$dest" ] || dest="$(dest_of "$path")"
    mkdir -p "$ROOT/$(dirname "$dest")"
    cp -L "$POOL/$pkg/$path" "$ROOT/$dest"
    USED_PKGS[$pkg]=1
}

take busybox-static bin/busybox
# /bin/sh is dash: busybox-static's ash runs its own applets before PATH
# (FEATURE_PREFER_APPLETS), so `ip` in a shell would be busybox's, without netns.
take dash bin/dash
ln -s dash "$ROOT/usr/bin/sh"
take crun usr/bin/crun
take iproute2 bin/ip
take iproute2 bin/ss
take iproute2 sbin/bridge
cp -r "$POOL/iproute2/etc/iproute2" "$ROOT/etc/"
take nftables usr/sbin/nft
take dropbear-bin usr/sbin/dropbear
take dropbear-bin usr/bin/dropbearkey
take e2fsprogs sbin/mke2fs
take e2fsprogs sbin/e2fsck
take e2fsprogs etc/mke2fs.conf
ln -s mke2fs "$ROOT/usr/sbin/mkfs.ext4"
ln -s e2fsck "$ROOT/usr/sbin/fsck.ext4"

# CA bundle (what update-ca-certificates would write).
mkdir -p "$ROOT/etc/ssl/certs"
find "$POOL/ca-certificates/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat >"$ROOT/etc/ssl/certs/ca-certificates.crt"
USED_PKGS[ca-certificates]=1

# Shared-library closure from ELF NEEDED entries.
declare -A LIB_SRC=()
for p in "${ALL_PKGS[@]}"; do
    for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
        [ -d "$POOL/$p/$d" ] || continue
        for f in "$POOL/$p/$d"/*.so*; do
            [ -e "$f" ] || continue
            n="$(basename "$f")"
            [ -n "${LIB_SRC[$n]:-}" ] || LIB_SRC[$n]="$p|$d/$n"
        done
    done
done
# the dynamic loader
take libc6 lib64/ld-linux-x86-64.so.2 usr/lib64/ld-linux-x86-64.so.2
take libc6 lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2

declare -A HAVE_LIB=()
needed_of() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
add_lib() {
    local n="$1"
    [ -z "${HAVE_LIB[$n]:-}" ] || return 0
    local src="${LIB_SRC[$n]:-}"
    [ -n "$src" ] || die "no package in the closure ships $n"
    HAVE_LIB[$n]=1
    take "${src%%|*}" "${src#*|}" "usr/lib/x86_64-linux-gnu/$n"
    local d
    for d in $(needed_of "$ROOT/usr/lib/x86_64-linux-gnu/$n"); do add_lib "$d"; done
}
for n in "${AGENT_LIBS[@]}"; do add_lib "$n"; done
AGENT_BIN=""
for cand in "$REPO/target/release/minik" "$REPO/target/debug/minik"; do
    if [ -x "$cand" ]; then AGENT_BIN="$cand"; break; fi
done
if [ -n "$AGENT_BIN" ]; then
    log "adding the shared libraries of $AGENT_BIN"
    for n in $(needed_of "$AGENT_BIN"); do add_lib "$n"; done
fi
for f in "$ROOT"/usr/bin/* "$ROOT"/usr/sbin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    for n in $(needed_of "$f"); do add_lib "$n"; done
done

# busybox applets for everything not provided by a real binary
for a in $("$ROOT/usr/bin/busybox" --list-full); do
    case "$a" in
    bin/* | sbin/*) d="usr/$a" ;;
    *) d="$a" ;;
    esac
    n="$(basename "$d")"
    if [ ! -e "$ROOT/usr/bin/$n" ] && [ ! -e "$ROOT/usr/sbin/$n" ] && [ ! -L "$ROOT/usr/sbin/$n" ] && [ ! -L "$ROOT/usr/bin/$n" ]; then
        ln -s /usr/bin/busybox "$ROOT/$d"
    fi
done

# ---------------------------------------------------------------- modules
KROOT="$POOL/$KPKG"
KMODS="lib/modules/$KVER"
# Names (or directories under kernel/) of the modules to ship; their
# dependencies are added from the .modinfo "depends" entries.
MOD_NAMES=(
    virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
    failover net_failover virtio_net virtio_blk virtio_rng qemu_fw_cfg
    button evdev
    veth bridge stp llc br_netfilter overlay tun
)
MOD_DIRS=(net/netfilter net/ipv4/netfilter net/ipv6/netfilter net/bridge/netfilter)
declare -A MOD_PATH=()
while IFS= read -r f; do
    n="$(basename "$f" .ko)"
    MOD_PATH[$n]="${f#"$KROOT/$KMODS/"}"
    MOD_PATH[${n//-/_}]="${f#"$KROOT/$KMODS/"}"
done < <(find "$KROOT/$KMODS/kernel" -name '*.ko')
declare -A HAVE_MOD=()
modinfo_field() { objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null | tr '\0' '\n' | sed -n "s/^$2=//p"; }
add_mod() {
    local n="${1//-/_}"
    [ -z "${HAVE_MOD[$n]:-}" ] || return 0
    local rel="${MOD_PATH[$n]:-}"
    [ -n "$rel" ] || die "kernel $KVER has no module $n"
    HAVE_MOD[$n]=1
    mkdir -p "$ROOT/$KMODS/$(dirname "$rel")"
    cp "$KROOT/$KMODS/$rel" "$ROOT/$KMODS/$rel"
    local d
    for d in $(modinfo_field "$KROOT/$KMODS/$rel" depends | tr ',' ' '); do add_mod "$d"; done
}
for n in "${MOD_NAMES[@]}"; do add_mod "$n"; done
for d in "${MOD_DIRS[@]}"; do
    while IFS= read -r f; do
        n="$(basename "$f" .ko)"
        case "$n" in
        # legacy iptables/ebtables/ipvs: not used, nft only
        xt_* | ipt_* | ip6t_* | ebt_* | ebtable* | arpt_* | arp_tables | ip_tables | ip6_tables | iptable_* | ip6table_* | x_tables | ip_vs* | ip_set*) continue ;;
        esac
        add_mod "$n"
    done < <(find "$KROOT/$KMODS/kernel/$d" -name '*.ko' 2>/dev/null)
done
cp "$KROOT/$KMODS/modules.builtin" "$KROOT/$KMODS/modules.order" "$ROOT/$KMODS/"
[ -f "$KROOT/$KMODS/modules.builtin.modinfo" ] && cp "$KROOT/$KMODS/modules.builtin.modinfo" "$ROOT/$KMODS/"
USED_PKGS[$KPKG]=1
# depmod from the kmod package, run from the pool (no root, no host kmod).
# In the guest busybox modprobe reads modules.dep and modules.alias, which is
# enough for the kernel's request_module ("nft-chain-2-nat", "rtnl-link-veth").
POOL_LD="$(for p in "${ALL_PKGS[@]}"; do for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do if [ -d "$POOL/$p/$d" ]; then printf '%s:' "$POOL/$p/$d"; fi; done; done)"
ln -sf kmod "$POOL/kmod/bin/depmod"
LD_LIBRARY_PATH="$POOL_LD" "$POOL/kmod/bin/depmod" -b "$ROOT" "$KVER" ||
    die "depmod failed"

# ---------------------------------------------------------------- our files
cp -r "$HERE/rootfs/." "$ROOT/"
chmod 755 "$ROOT/init" "$ROOT"/etc/minik/*.sh "$ROOT/etc/acpi/PWRF/00000080"
printf '%s\n' "$VERSION" >"$ROOT/etc/minik/version"
printf '%s\n' "$KVER" >"$ROOT/etc/minik/kernel"

# ---------------------------------------------------------------- initramfs
STAGE="$BUILD/iso"
rm -rf "$STAGE"
mkdir -p "$STAGE/isolinux" "$STAGE/boot"
cp "$KROOT/boot/vmlinuz-$KVER" "$STAGE/boot/vmlinuz"
cp /usr/lib/ISOLINUX/isolinux.bin "$STAGE/isolinux/"
cp /usr/lib/syslinux/modules/bios/ldlinux.c32 "$STAGE/isolinux/"
cat >"$STAGE/isolinux/isolinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT minik
PROMPT 0
TIMEOUT 0
LABEL minik
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd
  APPEND console=ttyS0,115200 quiet panic=5 net.ifnames=0 rw
EOF
case "$COMPRESS" in
gzip) COMP=(gzip -6) ;;
zstd) COMP=(zstd -19 -T0 -q) ;;
lz4) COMP=(lz4 -l -9 -q) ;;
none) COMP=(cat) ;;
*) die "MINIK_ISO_COMPRESS must be gzip, zstd, lz4 or none" ;;
esac
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet | "${COMP[@]}") >"$STAGE/boot/initrd"
isz=$(stat -c %s "$STAGE/boot/initrd")
[ "$isz" -gt 1000000 ] || die "initramfs is only $isz bytes: cpio failed"

ISO="$OUT/minik-$VERSION.iso"
rm -f "$ISO" "$ISO.sha256"
xorriso -as mkisofs -quiet -o "$ISO" -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
    -c isolinux/boot.cat -b isolinux/isolinux.bin -no-emul-boot -boot-load-size 4 \
    -boot-info-table -R -J -V "MINIK_$(echo "$VERSION" | tr . _)" "$STAGE" 2>&1 | grep -v '^$' >&2 || true
[ -s "$ISO" ] || die "xorriso did not write $ISO"
(cd "$OUT" && sha256sum "$(basename "$ISO")" >"$(basename "$ISO").sha256")

{
    echo "# minik ISO $VERSION — Debian packages that contributed files"
    for p in $(printf '%s\n' "${!USED_PKGS[@]}" | sort); do
        printf '%s %s\n' "$p" "$(cat "$POOL/$p.version")"
    done
    echo "# build-time only (not in the ISO): kmod $(cat "$POOL/kmod.version") (depmod)"
} >"$OUT/packages.txt"

T1=$(date +%s.%N)
log "built $ISO"
log "  size:      $(stat -c %s "$ISO") bytes ($(du -m "$ISO" | cut -f1) MiB); kernel $(stat -c %s "$STAGE/boot/vmlinuz"), initramfs $isz ($COMPRESS)"
log "  packages:  ${#USED_PKGS[@]} (see $OUT/packages.txt)"
log "  sha256:    $(cut -d' ' -f1 "$ISO.sha256")"
log "  took:      $(printf '%.1f' "$(echo "$T1 - $T0" | bc 2>/dev/null || echo 0)") s"

# ---------------------------------------------------------------- boot test
if [ "$BOOT_TEST" = 1 ]; then
    if ! command -v qemu-system-x86_64 >/dev/null; then
        log "boot test skipped: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
        exit 0
    fi
    CON="$BUILD/boot-test.console"
    rm -f "$CON"
    B0=$(date +%s%N)
    qemu-system-x86_64 -M pc -accel tcg -m 512 -smp 1 -cdrom "$ISO" -display none -vga none \
        -no-reboot -serial "file:$CON" -monitor none -nic none 2>/dev/null &
    QPID=$!
    ok=0
    for _ in $(seq 1 300); do
        if grep -q 'minik-init: started' "$CON" 2>/dev/null; then ok=1; break; fi
        sleep 0.05
    done
    B1=$(date +%s%N)
    kill "$QPID" 2>/dev/null || true
    wait "$QPID" 2>/dev/null || true
    if [ $ok = 1 ]; then
        up="$(sed -n 's/.*minik-init: started.*uptime \([0-9.]*\).*/\1/p' "$CON" | head -1)"
        log "boot test (TCG, -cdrom): kernel to /init ${up} s (guest uptime); qemu start to /init $(((B1 - B0) / 1000000)) ms (SeaBIOS + isolinux + kernel)"
    else
        tail -20 "$CON" >&2 || true
        die "boot test: /init did not start within 15 s (console above)"
    fi
fi
