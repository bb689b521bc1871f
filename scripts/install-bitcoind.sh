#!/usr/bin/env bash
# Build a wallet-less bitcoind + bitcoin-cli from the Bitcoin Core source vendored in the
# `libbitcoinkernel-sys` crate (crates.io), and cache the binaries outside the clone.
#
# Usage: scripts/install-bitcoind.sh        # prints the directory holding bitcoind and bitcoin-cli
# Env:   KRAY_BITCOIND_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kray-guardian)
#        BITCOIND_EXE         if set and executable, nothing is built; its directory is printed
set -euo pipefail

CRATE_VERSION="0.4.1"
cache_root="${KRAY_BITCOIND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kray-guardian}"
dest="$cache_root/bitcoind-libbitcoinkernel-sys-$CRATE_VERSION"

log() { echo "install-bitcoind: $*" >&2; }

if [[ -n "${BITCOIND_EXE:-}" && -x "${BITCOIND_EXE}" ]]; then
  dirname "$BITCOIND_EXE"
  exit 0
fi
if [[ -x "$dest/bitcoind" && -x "$dest/bitcoin-cli" ]]; then
  echo "$dest"
  exit 0
fi

need_pkgs=()
for p in cmake libboost-dev libevent-dev pkg-config g++; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

work="$cache_root/build-$CRATE_VERSION"
mkdir -p "$work"
src="$work/vendor/libbitcoinkernel-sys-$CRATE_VERSION/bitcoin"
if [[ ! -f "$src/CMakeLists.txt" ]]; then
  log "fetching libbitcoinkernel-sys $CRATE_VERSION source with cargo vendor"
  proj="$work/fetch"
  mkdir -p "$proj/src"
  cat >"$proj/Cargo.toml" <<TOML
[package]
name = "fetch-bitcoin-core"
version = "0.0.0"
edition = "2021"
[dependencies]
libbitcoinkernel-sys = "=$CRATE_VERSION"
[workspace]
TOML
  echo "fn main() {}" >"$proj/src/main.rs"
  (cd "$proj" && cargo vendor --versioned-dirs "$work/vendor" >/dev/null)
fi

log "configuring (about 1 minute) and building (about 10 minutes on 2 cores)"
build="$work/build"
cmake -S "$src" -B "$build" \
  -DBUILD_DAEMON=ON -DBUILD_CLI=ON -DENABLE_WALLET=OFF -DWITH_EMBEDDED_ASMAP=OFF \
  -DBUILD_TESTS=OFF -DBUILD_BENCH=OFF -DBUILD_KERNEL_LIB=OFF -DBUILD_TX=OFF -DBUILD_UTIL=OFF \
  -DBUILD_WALLET_TOOL=OFF -DBUILD_BITCOIN_BIN=OFF -DBUILD_FUZZ_BINARY=OFF -DENABLE_IPC=OFF \
  -DWITH_ZMQ=OFF -DENABLE_EXTERNAL_SIGNER=OFF -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$build" -j"$(nproc)" --target bitcoind bitcoin-cli >&2

mkdir -p "$dest.tmp"
cp "$build/bin/bitcoind" "$build/bin/bitcoin-cli" "$dest.tmp/"
strip "$dest.tmp/bitcoind" "$dest.tmp/bitcoin-cli" 2>/dev/null || true
rm -rf "$dest" && mv "$dest.tmp" "$dest"
rm -rf "$build"
log "installed into $dest"
echo "$dest"
