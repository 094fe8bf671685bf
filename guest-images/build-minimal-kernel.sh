#!/usr/bin/env bash
# Builds the minimal minikvm guest kernel from Debian's linux-source-6.1:
# tinyconfig + minimal-kernel.config, outputs bzImage and a stripped vmlinux in
#   $CACHE/minimal-kernel-<hash>/
# where <hash> covers the fragment, the linux-source version and the recipe
# below. A complete output directory is reused as is (cache hit: no make run).
# Logs go to stderr; the last stdout line is the output directory.
set -euo pipefail

PROG="build-minimal-kernel"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bump when the way the kernel is built changes (base config, make flags, ...)
# so old cache entries are not reused.
RECIPE="tinyconfig+fragment v1"
SRC_PKG=linux-source-6.1
SRC_TAR=/usr/src/linux-source-6.1.tar.xz
FRAGMENT="$GUEST_IMAGES_DIR/minimal-kernel.config"

[ -r "$FRAGMENT" ] || die "missing $FRAGMENT"
src_version=$(pkg_version "$SRC_PKG")
key=$({
  printf 'recipe=%s\nsource=%s %s\n' "$RECIPE" "$SRC_PKG" "$src_version"
  cat "$FRAGMENT"
} | short_hash)
out="$CACHE/minimal-kernel-$key"

is_complete() { [ -s "$out/bzImage" ] && [ -s "$out/vmlinux" ]; }

if is_complete; then
  log "cache hit: $out"
  echo "$out"
  exit 0
fi

take_lock minimal-kernel
if is_complete; then # another process built it while we waited
  echo "$out"
  exit 0
fi

[ -r "$SRC_TAR" ] || die "$SRC_TAR missing; run scripts/setup"

# --- Source: extracted once per package version, never modified (we build
# with O=), so it can be shared by builds of different fragments.
src_tag=$(printf '%s' "$src_version" | tr -c 'A-Za-z0-9.+_-' '_')
src="$CACHE/src/linux-source-6.1_$src_tag"
if [ ! -f "$src/Makefile" ]; then
  log "extracting $SRC_TAR"
  mkdir -p "$CACHE/src"
  tmp=$(mktemp -d "$CACHE/src/.extract.XXXXXX")
  tar -xJf "$SRC_TAR" -C "$tmp" --strip-components=1
  rm -rf "$src"
  mv "$tmp" "$src"
fi

# --- Build tree: one per source version and reused across fragment changes,
# so editing the fragment only rebuilds what the change affects.
build="$CACHE/build/minimal-kernel_$src_tag"
mkdir -p "$build"
kmake() {
  make -C "$src" O="$build" ARCH=x86_64 \
    KBUILD_BUILD_USER=minikvm KBUILD_BUILD_HOST=minikvm "$@" >&2
}

log "configuring (tinyconfig + $(basename "$FRAGMENT"))"
# Kconfig chatter (expected "override" notes) goes to a log, shown on error.
kconfig_log="$build/kconfig.log"
{
  make -C "$src" O="$build" ARCH=x86_64 -s tinyconfig &&
    "$src/scripts/kconfig/merge_config.sh" -m -O "$build" \
      "$build/.config" "$FRAGMENT" &&
    make -C "$src" O="$build" ARCH=x86_64 -s olddefconfig
} >"$kconfig_log" 2>&1 || {
  cat "$kconfig_log" >&2
  die "kernel configuration failed"
}

# Kconfig silently drops options whose dependencies are not met; check that
# every assignment in the fragment survived, and list all that did not.
verify_config() {
  local cfg=$1 bad=() name want got line
  while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
      name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      name=${BASH_REMATCH[1]} want=n
    else
      continue
    fi
    got=$(grep -m1 "^$name=" "$cfg" | cut -d= -f2- || true)
    [ -n "$got" ] || got=n
    [ "$got" = "$want" ] || bad+=("$name: wanted $want, got $got")
  done <"$FRAGMENT"
  if ((${#bad[@]})); then
    log "these fragment options did not end up in $cfg:"
    printf '  %s\n' "${bad[@]}" >&2
    die "kernel config does not match $(basename "$FRAGMENT")"
  fi
}
verify_config "$build/.config"

log "building bzImage + vmlinux with -j$(nproc) (takes a few minutes)"
start=$SECONDS
kmake -j"$(nproc)" bzImage
log "kernel built in $((SECONDS - start)) s"
verify_config "$build/.config" # the build must not have changed the config

# --- Publish: fill a temp dir, check it, then rename it into place, so an
# interrupted build never leaves a directory that looks like a cache hit.
tmp=$(mktemp -d "$CACHE/.minimal-kernel-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # mktemp makes it 0700
cp "$build/arch/x86/boot/bzImage" "$tmp/bzImage"
# Debug info is off already; --strip-debug keeps the symbol table (handy for
# addr2line/gdb) and the program headers the VMM's ELF loader needs.
objcopy --strip-debug "$build/vmlinux" "$tmp/vmlinux"
cp "$build/.config" "$tmp/config"
cp "$build/System.map" "$tmp/System.map"
cat "$build/include/config/kernel.release" >"$tmp/kernel.release"

# Boot protocol header: "HdrS" magic at 0x202 of a bzImage.
[ "$(dd if="$tmp/bzImage" bs=1 skip=$((0x202)) count=4 status=none)" = HdrS ] ||
  die "bzImage has no HdrS boot header"
readelf -lW "$tmp/vmlinux" | grep -q '^ *LOAD ' ||
  die "vmlinux has no PT_LOAD segments"

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
log "kernel $(cat "$out/kernel.release"): bzImage $(stat -c %s "$out/bzImage") bytes," \
  "vmlinux $(stat -c %s "$out/vmlinux") bytes"
echo "$out"
