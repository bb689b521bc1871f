#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the web page test (tests/web_page.rs), if missing.
#
# Usage: scripts/install-chromium.sh     # prints the path of the chromium binary
# Env:   CHROMIUM  if set and executable, nothing is installed; it is printed
set -euo pipefail

log() { echo "install-chromium: $*" >&2; }

if [[ -n "${CHROMIUM:-}" && -x "${CHROMIUM}" ]]; then
  echo "$CHROMIUM"
  exit 0
fi
for c in chromium chromium-browser; do
  if command -v "$c" >/dev/null 2>&1; then
    command -v "$c"
    exit 0
  fi
done
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { log "chromium is missing and neither root nor sudo is available"; exit 1; }
  sudo="sudo"
fi
log "installing Debian's chromium"
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
