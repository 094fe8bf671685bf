#!/usr/bin/env bash
# Builds the minimal guest initramfs: static busybox + guest-images/init + the
# tiny minikvm-outb helper (outb.c), as an uncompressed newc cpio at
#   $CACHE/initramfs-minimal.cpio
# $CACHE/initramfs-minimal.cpio.key holds the hash of the inputs (init, the
# busybox binary, outb.c, these scripts); when it matches, nothing is rebuilt.
# No root needed: /dev/console is written straight into the archive.
# Logs go to stderr; the last stdout line is the cpio path.
set -euo pipefail

PROG="build-initramfs"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUSYBOX=/bin/busybox # from busybox-static
INIT="$GUEST_IMAGES_DIR/init"
OUTB_SRC="$GUEST_IMAGES_DIR/outb.c"
# No libc, no PIE, no unwind tables: a few KB static binary.
OUTB_CFLAGS=(-Os -static -nostdlib -ffreestanding -fno-stack-protector
  -fno-pie -no-pie -fno-asynchronous-unwind-tables -fcf-protection=none
  -Wall -Wextra -Werror "-Wl,--build-id=none" -s)
out="$CACHE/initramfs-minimal.cpio"

[ -x "$BUSYBOX" ] || die "$BUSYBOX missing; run scripts/setup (busybox-static)"
[ -r "$INIT" ] || die "missing $INIT"
command -v gcc >/dev/null || die "gcc missing; run scripts/setup"

key=$({
  echo "busybox-static $(pkg_version busybox-static)"
  sha256sum <"$BUSYBOX"
  gcc --version | head -n1
  cat "$INIT" "$OUTB_SRC" "${BASH_SOURCE[0]}" "$GUEST_IMAGES_DIR/lib.sh"
} | short_hash)

if [ -s "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
  log "cache hit: $out"
  echo "$out"
  exit 0
fi

take_lock initramfs-minimal

# The initramfs has no libc, so busybox must be the static build.
if readelf -lW "$BUSYBOX" | grep -q INTERP; then
  die "$BUSYBOX is dynamically linked; install busybox-static"
fi

stage=$(mktemp -d "$CACHE/.initramfs-stage.XXXXXX")
trap 'rm -rf "$stage" "$out.tmp"' EXIT

# Only what /init needs before `busybox --install -s` creates the applet
# links: busybox, /bin/sh for the #! line, and the mount points / link dirs.
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,tmp,run,mnt,root,etc}
chmod 1777 "$stage/tmp"
cp "$BUSYBOX" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
install -m 0755 "$INIT" "$stage/init"
# Port-write fallback for kernels without /dev/port (see outb.c).
gcc "${OUTB_CFLAGS[@]}" -o "$stage/bin/minikvm-outb" "$OUTB_SRC" ||
  die "compiling $OUTB_SRC failed"

# Device nodes first (hand-written archive), then the files (GNU cpio).
{
  cpio_dev_nodes
  cpio_from_dir "$stage"
} >"$out.tmp"
publish_cached "$out" "$key"
echo "$out"
