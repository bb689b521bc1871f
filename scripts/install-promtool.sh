#!/usr/bin/env bash
# Make sure `promtool` (Prometheus rule/unit-test checker) is installed, and print its path.
#
# Usage: scripts/install-promtool.sh     # prints the absolute path of promtool on stdout
# Env:   PROMTOOL   if set and executable, nothing is installed; it is printed as is
#
# promtool comes from Debian's `prometheus` package. When it is missing the package is installed with
# apt-get (as root, or through sudo). The server the package ships is not started: only promtool is used,
# by `cargo test -p kray-guardian --test dashboards`.
set -euo pipefail

log() { echo "install-promtool: $*" >&2; }

if [[ -n "${PROMTOOL:-}" && -x "${PROMTOOL}" ]]; then
  echo "$PROMTOOL"
  exit 0
fi
if path=$(command -v promtool 2>/dev/null); then
  echo "$path"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    log "promtool is missing and this is not root (and there is no sudo): run 'apt-get install -y prometheus' as root"
    exit 1
  fi
fi

log "installing Debian package: prometheus (for promtool)"
$SUDO apt-get update -qq >&2
# policy-rc.d 101 keeps the package's post-install from starting the Prometheus server where invoke-rc.d is used.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  made_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2 || status=$?
if ((made_policy)); then
  $SUDO rm -f "$policy"
fi
if ((status != 0)); then
  log "apt-get install prometheus failed (exit $status)"
  exit "$status"
fi

if path=$(command -v promtool 2>/dev/null); then
  echo "$path"
  exit 0
fi
log "the prometheus package is installed but promtool is not on PATH"
exit 1
