#!/usr/bin/env bash
# Installs every Debian package Steward needs to build, test and benchmark. Idempotent:
# does nothing (and needs no network) when everything is already installed.
set -euo pipefail
PKGS=(build-essential cmake pkg-config git curl
      libsqlite3-dev libmicrohttpd-dev libcjson-dev libssl-dev
      libfaiss-dev libopenblas-dev liblapack-dev libcurl4-openssl-dev
      wrk)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
