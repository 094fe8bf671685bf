# shellcheck shell=bash disable=SC2034
# Shared helpers for the guest-images scripts. Source it; don't run it.
# The sourcing script must set PROG (used as the log prefix) first.

# Image cache: outside git, shared by all minikvm checkouts of this user.
CACHE="${MINIKVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/minikvm}"
GUEST_IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Logs go to stderr; stdout is reserved for the result path(s).
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Short content hash of stdin (16 hex digits is plenty for a cache key).
short_hash() { sha256sum | cut -c1-16; }

# Version of an installed Debian package, or die with a hint.
pkg_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null ||
    die "package $1 is not installed; run scripts/setup"
}

# Serialise concurrent builds of the same artefact (e.g. two test runs).
# Usage: take_lock NAME  (holds the lock until the script exits; taking the
# same lock again is a no-op, a second flock on a new fd would deadlock)
_locks_held=" "
take_lock() {
  case $_locks_held in *" $1 "*) return 0 ;; esac
  mkdir -p "$CACHE"
  local fd
  exec {fd}>"$CACHE/.$1.lock"
  flock "$fd"
  _locks_held+="$1 "
}

# --- cpio (newc) helpers ------------------------------------------------------
# The kernel unpacks concatenated newc archives, so device nodes are written as
# a tiny hand-made archive (no root, mknod or fakeroot needed) and the regular
# files come from GNU cpio; the two are simply concatenated.

_newc_ino=1000

# newc_entry NAME MODE [RDEV_MAJOR RDEV_MINOR]: header of a data-less entry
# (directory or device node), owned by root, mtime 0. MODE includes the type.
newc_entry() {
  local name=$1 mode=$2 rmaj=${3:-0} rmin=${4:-0}
  local namesize=$((${#name} + 1))
  _newc_ino=$((_newc_ino + 1))
  # magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
  # rdevmajor, rdevminor, namesize, check; then the NUL-terminated name.
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
    "$_newc_ino" "$mode" 0 0 1 0 0 0 0 "$rmaj" "$rmin" "$namesize" 0 "$name"
  # Header (110 bytes) + name must end on a 4-byte boundary.
  local pad=$(((4 - (110 + namesize) % 4) % 4))
  head -c "$pad" /dev/zero
}

newc_trailer() {
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
    0 0 0 0 1 0 0 0 0 0 0 11 0 "TRAILER!!!"
  head -c $(((4 - (110 + 11) % 4) % 4)) /dev/zero
}

# Archive with /dev and /dev/console (c 5:1), so the kernel can open the
# console for /init before devtmpfs is mounted (otherwise early output is lost).
cpio_dev_nodes() {
  newc_entry dev $((0040755))
  newc_entry dev/console $((0020600)) 5 1
  newc_trailer
}

# cpio_from_dir DIR: newc archive of DIR's contents on stdout; every file owned
# by root, sorted and with mtime 0 so the same inputs give the same bytes.
cpio_from_dir() {
  (
    cd "$1" || exit 1
    find . -mindepth 1 -exec touch -h -d @0 {} +
    find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
      cpio --quiet -o -H newc -R 0:0 --reproducible
  )
}

# publish_cached OUT KEY: moves OUT.tmp into place and records the cache
# key beside it, each step atomic, so a half-built image is never a hit.
publish_cached() {
  mv "$1.tmp" "$1"
  echo "$2" >"$1.key.tmp"
  mv "$1.key.tmp" "$1.key"
  log "built $1 ($(stat -c %s "$1") bytes)"
}
