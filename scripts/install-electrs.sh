#!/usr/bin/env bash
# Build electrs (the Electrum server, from crates.io) and cache the binary outside the clone, for the
# Electrum chain-source tests (watcher/tests/electrum_regtest.rs).
#
# By default electrs is linked dynamically against Debian's librocksdb-dev (7.8.3 on bookworm), which
# avoids compiling RocksDB; electrs 0.10.x is the last line built for RocksDB 7.8 (0.11+ wants 9.10).
# If the dynamic build fails, the bundled RocksDB is compiled instead (much slower).
#
# Usage: scripts/install-electrs.sh        # prints the directory holding electrs
# Env:   KRAY_ELECTRS_CACHE    cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kray-guardian)
#        KRAY_ELECTRS_VERSION  electrs version (default 0.10.10)
#        KRAY_ELECTRS_ROCKSDB  system (default) or bundled
#        ELECTRS_EXE           if set and executable, nothing is built; its directory is printed
set -euo pipefail

VERSION="${KRAY_ELECTRS_VERSION:-0.10.10}"
ROCKSDB="${KRAY_ELECTRS_ROCKSDB:-system}"
cache_root="${KRAY_ELECTRS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kray-guardian}"
dest="$cache_root/electrs-$VERSION"

log() { echo "install-electrs: $*" >&2; }

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
apt_updated=0
ensure_pkgs() {
  local need=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if ((${#need[@]})); then
    log "installing Debian packages: ${need[*]}"
    if ((apt_updated == 0)); then
      $SUDO apt-get update -qq >&2
      apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
  fi
}

# A cached binary linked against the system RocksDB needs the library at run time too.
usable() {
  [[ -x "$1" ]] || return 1
  if ldd "$1" 2>/dev/null | grep -q 'librocksdb.*not found'; then
    ensure_pkgs librocksdb-dev
  fi
  ! ldd "$1" 2>/dev/null | grep -q 'not found'
}

if [[ -n "${ELECTRS_EXE:-}" && -x "${ELECTRS_EXE}" ]]; then
  dirname "$ELECTRS_EXE"
  exit 0
fi
if usable "$dest/electrs"; then
  echo "$dest"
  exit 0
fi

ensure_pkgs libclang-dev clang g++ pkg-config
work="$cache_root/electrs-build-$VERSION"
mkdir -p "$work"
build() {
  # $1: system | bundled
  local env_args=()
  if [[ "$1" == system ]]; then
    ensure_pkgs librocksdb-dev
    env_args=(ROCKSDB_INCLUDE_DIR=/usr/include ROCKSDB_LIB_DIR="/usr/lib/$(gcc -print-multiarch)")
  fi
  log "building electrs $VERSION with $1 RocksDB (see the time this takes in the log below)"
  local start=$SECONDS
  env "${env_args[@]}" CARGO_TARGET_DIR="$work/target-$1" \
    cargo install --locked --no-default-features --root "$work/root-$1" "electrs@$VERSION" >&2 || return 1
  log "built electrs $VERSION ($1 RocksDB) in $((SECONDS - start)) s"
  mkdir -p "$dest.tmp" || return 1
  cp "$work/root-$1/bin/electrs" "$dest.tmp/electrs" || return 1
}

if [[ "$ROCKSDB" == system ]] && build system; then
  :
else
  [[ "$ROCKSDB" == system ]] && log "dynamic build failed; falling back to the bundled RocksDB"
  build bundled
fi
strip "$dest.tmp/electrs" 2>/dev/null || true
rm -rf "$dest" && mv "$dest.tmp" "$dest"
rm -rf "$work"
log "installed into $dest"
echo "$dest"
