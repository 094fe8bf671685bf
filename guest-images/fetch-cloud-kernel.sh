#!/usr/bin/env bash
# Fetches Debian's stock cloud kernel (newest linux-image-6.1.*-cloud-amd64,
# the signed one) with apt-get download, unpacks it with dpkg -x into
#   $CACHE/cloud-kernel-<kernel release>_<package version>/
# and produces there:
#   vmlinuz         the package's bzImage
#   initramfs.cpio  the minimal initramfs (build-initramfs.sh) plus the virtio
#                   modules in /lib/modules/minikvm/ with a modules.order that
#                   the guest /init loads in order, and the test-only
#                   provoke module (see below) in
#                   /lib/modules/minikvm/test-only/, outside modules.order
#   kernel.release  e.g. 6.1.0-56-cloud-amd64
#   headers/        the kernel's headers packages (linux-headers-<release>,
#                   its -common and linux-kbuild-<x.y>, all at the image's
#                   package version), unpacked with dpkg-deb -x, never
#                   installed: what the provoke module is built against
#
# The provoke module (guest-images/provoke/, minikvm_provoke.ko) stands in
# for LKDTM, which this kernel lacks: the guest /init's warn and oops tests
# insmod it to get a WARNING or an oops on demand. It is rebuilt whenever
# the initramfs is (its sources are part of the cache key).
#
# Usage: fetch-cloud-kernel.sh [--refresh]
#   Without --refresh a complete cached kernel is reused without asking apt
#   (instant, and tests do not change kernels behind your back); --refresh
#   looks for a newer package first.
# Logs go to stderr; the last stdout line is the output directory.
set -euo pipefail

PROG="fetch-cloud-kernel"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Modules the guest needs, as module names. Their dependencies (e.g.
# net_failover and failover for virtio_net) come from modules.dep. Modules
# that are built into the kernel (modules.builtin) are skipped.
REQUIRED_MODULES=(virtio virtio_ring virtio_pci virtio_blk virtio_net virtio_console virtio_rng)
# Split out of virtio_pci only in some kernel versions.
OPTIONAL_MODULES=(virtio_pci_legacy_dev virtio_pci_modern_dev)
# pvpanic (ISA/ACPI variant): how the kernel tells minikvm it panicked.
REQUIRED_MODULES+=(pvpanic_mmio)

refresh=0
case "${1:-}" in
  --refresh) refresh=1 ;;
  '') ;;
  *) die "usage: $0 [--refresh]" ;;
esac

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Newest signed cloud kernel package name known to apt (empty if none).
newest_cloud_package() {
  apt-cache pkgnames linux-image-6.1. |
    grep -E '^linux-image-6\.1\.[0-9]+-[0-9]+-cloud-amd64$' | sort -V | tail -n1 || true
}

# --- Pick the kernel -----------------------------------------------------
dir=
if ((!refresh)); then
  # Newest already unpacked one, if any (sort -V: 6.1.0-9 before 6.1.0-10).
  while IFS= read -r d; do
    if [ -f "$d/.extracted" ]; then dir=$d; fi
  done < <(printf '%s\n' "$CACHE"/cloud-kernel-* | sort -V)
fi

if [ -z "$dir" ]; then
  pkg=$(newest_cloud_package)
  if [ -z "$pkg" ]; then
    log "no linux-image-6.1.*-cloud-amd64 known to apt; running apt-get update"
    as_root apt-get update -qq >&2 || log "warning: apt-get update reported errors"
    pkg=$(newest_cloud_package)
  fi
  [ -n "$pkg" ] || die "apt knows no linux-image-6.1.*-cloud-amd64 package"
  ver=$(apt-cache show --no-all-versions "$pkg" | sed -n 's/^Version: //p' | head -n1)
  [ -n "$ver" ] || die "no candidate version for $pkg"
  krel=${pkg#linux-image-}
  dir="$CACHE/cloud-kernel-${krel}_$(printf '%s' "$ver" | tr -c 'A-Za-z0-9.+_-' '_')"

  if [ ! -f "$dir/.extracted" ]; then
    take_lock cloud-kernel
  fi
  if [ ! -f "$dir/.extracted" ]; then
    log "downloading $pkg $ver"
    tmp=$(mktemp -d "$CACHE/.cloud-kernel.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # As root, apt drops to the _apt user, which cannot write into our
    # private temp dir (harmless but noisy warning): download as ourselves.
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
      "$pkg=$ver" >&2)
    mkdir "$tmp/root"
    dpkg -x "$tmp"/*.deb "$tmp/root"
    # The package does not ship modules.dep (its postinst runs depmod).
    depmod -b "$tmp/root" "$krel"
    echo "$krel" >"$tmp/root/kernel.release"
    echo "$pkg $ver" >"$tmp/root/package"
    rm -rf "$dir"
    mv "$tmp/root" "$dir"
    touch "$dir/.extracted"
    rm -rf "$tmp"
    trap - EXIT
  fi
fi

krel=$(cat "$dir/kernel.release")
moddir="$dir/lib/modules/$krel"
if [ ! -f "$moddir/modules.dep" ]; then # unpacked by an older version
  take_lock cloud-kernel
  depmod -b "$dir" "$krel"
fi
[ -f "$moddir/modules.dep" ] || die "depmod did not create $moddir/modules.dep"

# --- vmlinuz ---------------------------------------------------------------
if [ ! -s "$dir/vmlinuz" ]; then
  cp "$dir/boot/vmlinuz-$krel" "$dir/vmlinuz.tmp"
  mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
fi

# --- initramfs: minimal initramfs + modules --------------------------------
minimal=$(tail -n1 < <("$GUEST_IMAGES_DIR/build-initramfs.sh"))
# The test-only provoke module's sources (copied to a scratch dir to build).
PROVOKE_SOURCES=("$GUEST_IMAGES_DIR/provoke/Kbuild" "$GUEST_IMAGES_DIR/provoke/minikvm_provoke.c")
key=$({
  cat "$minimal.key" "${BASH_SOURCE[0]}" "$GUEST_IMAGES_DIR/lib.sh" "${PROVOKE_SOURCES[@]}"
  echo "$krel"
} | short_hash)
out="$dir/initramfs.cpio"
if [ -s "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
  log "cache hit: $dir"
  echo "$dir"
  exit 0
fi
take_lock cloud-kernel-initramfs

# Tell the user which boot-relevant features this stock kernel has built in.
cfg="$dir/boot/config-$krel"
for opt in X86_MPPARSE ACPI DEVPORT SERIAL_8250 SERIAL_8250_CONSOLE \
  KVM_GUEST BLK_DEV_INITRD DEVTMPFS VIRTIO_PCI VIRTIO_PCI_LEGACY; do
  log "stock config: CONFIG_$opt=$(sed -n "s/^CONFIG_$opt=//p" "$cfg" | grep . || echo n)"
done

# Module name as the kernel sees it: file name without .ko*, '-' -> '_'.
modname() {
  REPLY=${1##*/}
  REPLY=${REPLY%%.ko*}
  REPLY=${REPLY//-/_}
}

declare -A mod_path=() mod_deps=() builtin=() state=()
# modules.dep lines: "path/a.ko.xz: path/b.ko.xz path/c.ko.xz"
while IFS= read -r line; do
  modname "${line%%:*}"
  name=$REPLY
  mod_path[$name]=${line%%:*}
  deps=
  for p in ${line#*:}; do
    modname "$p"
    deps+=" $REPLY"
  done
  mod_deps[$name]=$deps
done <"$moddir/modules.dep"
if [ -f "$moddir/modules.builtin" ]; then
  while IFS= read -r line; do
    modname "$line"
    builtin[$REPLY]=1
  done <"$moddir/modules.builtin"
fi

# Depth-first walk: a module is appended after all of its dependencies.
order=()
skipped=()
visit() {
  local m=$1 d
  case "${state[$m]:-}" in
    done) return ;;
    active) die "module dependency cycle at $m" ;;
  esac
  if [ -n "${builtin[$m]:-}" ]; then
    state[$m]="done"
    skipped+=("$m")
    return
  fi
  [ -n "${mod_path[$m]:-}" ] || die "module $m is neither in modules.dep nor built in"
  state[$m]=active
  for d in ${mod_deps[$m]}; do visit "$d"; done
  state[$m]="done"
  order+=("$m")
}
for m in "${REQUIRED_MODULES[@]}"; do visit "$m"; done
for m in "${OPTIONAL_MODULES[@]}"; do
  if [ -n "${mod_path[$m]:-}${builtin[$m]:-}" ]; then visit "$m"; fi
done
((${#skipped[@]} == 0)) || log "built into the kernel, skipped: ${skipped[*]}"
log "modules in load order: ${order[*]:-(none)}"

# --- Kernel headers, for the provoke module --------------------------------
# The three packages a `make -C .../build M=...` needs, at exactly the
# image's package version, unpacked once into $dir/headers/ (no root, no
# system install). Their Makefiles and symlinks are relative except one: the
# flavour Makefile says `include /usr/src/linux-headers-<x>-common/Makefile`,
# rewritten here to the unpacked copy (kbuild takes the source tree from the
# included Makefile's own path, so the rest follows).
pkgver=$(cut -d' ' -f2 "$dir/package")
[ -n "$pkgver" ] || die "no package version in $dir/package"
hdir="$dir/headers"
kbuild_dir="$hdir/usr/src/linux-headers-$krel"
if [ ! -f "$hdir/.extracted" ]; then
  common="linux-headers-${krel%-cloud-amd64}-common"
  kbuild_pkg="linux-kbuild-$(cut -d. -f1,2 <<<"$krel")" # linux-kbuild-6.1
  hpkgs=("linux-headers-$krel=$pkgver" "$common=$pkgver" "$kbuild_pkg=$pkgver")
  log "downloading ${hpkgs[*]}"
  htmp=$(mktemp -d "$CACHE/.cloud-headers.XXXXXX")
  trap 'rm -rf "$htmp"' EXIT
  (cd "$htmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
    "${hpkgs[@]}" >&2) ||
    die "cannot download ${hpkgs[*]}: the headers must match the kernel's" \
      "package version exactly (run apt-get update, or move to a newer kernel with --refresh)"
  mkdir "$htmp/root"
  for deb in "$htmp"/*.deb; do
    dpkg-deb -x "$deb" "$htmp/root" || die "dpkg-deb -x $deb failed"
  done
  mk="$htmp/root/usr/src/linux-headers-$krel/Makefile"
  grep -q "^include /usr/src/$common/Makefile\$" "$mk" ||
    die "$mk does not include /usr/src/$common/Makefile; the fix-up below needs updating"
  sed -i "s|^include /usr/src/$common/|include \$(dir \$(realpath \$(lastword \$(MAKEFILE_LIST))))../$common/|" "$mk"
  [ -f "$htmp/root/usr/src/$common/Makefile" ] || die "$common has no Makefile"
  [ -f "$htmp/root/usr/src/linux-headers-$krel/scripts/Makefile.build" ] ||
    die "linux-headers-$krel/scripts does not lead to $kbuild_pkg's scripts"
  rm -rf "$hdir"
  mv "$htmp/root" "$hdir"
  touch "$hdir/.extracted"
  rm -rf "$htmp"
  trap - EXIT
  log "unpacked the headers to $hdir ($(du -sh "$hdir" | cut -f1))"
fi

stage=$(mktemp -d "$CACHE/.cloud-initramfs-stage.XXXXXX")
# Always the same path (we hold the lock): the module's build ID hashes it.
pbuild="$dir/.provoke-build"
trap 'rm -rf "$stage" "$out.tmp" "$pbuild"' EXIT
mkdir -p "$stage/lib/modules/minikvm"

# --- The test-only provoke module ------------------------------------------
# Built out of tree in a scratch copy (kbuild writes next to the sources),
# debug info stripped; it goes beside the virtio modules but not into
# modules.order: only /init's warn and oops tests insmod it.
rm -rf "$pbuild"
mkdir "$pbuild"
cp "${PROVOKE_SOURCES[@]}" "$pbuild/"
log "building the provoke module against $kbuild_dir"
make -C "$kbuild_dir" M="$pbuild" modules >&2 ||
  die "building guest-images/provoke/ against linux-headers-$krel failed (see above)"
ko="$pbuild/minikvm_provoke.ko"
[ -s "$ko" ] || die "the provoke module build made no $ko"
# (grep -q would quit early: SIGPIPE for tr, a failure under pipefail.)
tr '\0' '\n' <"$ko" | grep -a "^vermagic=$krel " >/dev/null ||
  die "minikvm_provoke.ko's vermagic is not for $krel"
mkdir "$stage/lib/modules/minikvm/test-only"
strip --strip-debug -o "$stage/lib/modules/minikvm/test-only/minikvm_provoke.ko" "$ko"
rm -rf "$pbuild"

for m in "${order[@]}"; do
  src="$moddir/${mod_path[$m]}"
  dst="$stage/lib/modules/minikvm/$m.ko"
  # busybox insmod only takes plain .ko files.
  case "$src" in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) die "unknown module format: $src" ;;
  esac
  echo "$m.ko" >>"$stage/lib/modules/minikvm/modules.order"
done
touch "$stage/lib/modules/minikvm/modules.order" # exists even if all built in

# The kernel unpacks concatenated archives: minimal image, then the modules.
{
  cat "$minimal"
  cpio_from_dir "$stage"
} >"$out.tmp"
publish_cached "$out" "$key"
echo "$dir"
