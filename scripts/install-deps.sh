#!/usr/bin/env bash
# Installs every Debian package Steward needs to build, test and benchmark. Idempotent:
# does nothing (and needs no network) when everything is already installed.
#
#   scripts/install-deps.sh          what the build, the tests, CI and the benchmarks need
#   scripts/install-deps.sh --fuzz   also clang and its libFuzzer runtime, for scripts/fuzz.sh
#                                    (not needed by CI; left out by default to keep it quick)
set -euo pipefail
PKGS=(build-essential cmake pkg-config git curl
      libsqlite3-dev libmicrohttpd-dev libcjson-dev libssl-dev
      libfaiss-dev libopenblas-dev liblapack-dev libcurl4-openssl-dev
      wrk)
for arg in "$@"; do
  case "$arg" in
    # libclang-rt-dev holds libFuzzer and the sanitizer runtimes: clang only recommends it,
    # and recommends are not installed below
    --fuzz) PKGS+=(clang libclang-rt-dev) ;;
    -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install-deps: unknown argument '$arg' (known: --fuzz)" >&2; exit 2 ;;
  esac
done
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
