#!/usr/bin/env bash
# Installs the Debian 12 packages cloudpacs needs to build, run and test.
# Safe to run again: it installs only what is missing. Needs root (or sudo).
#
#   scripts/deps.sh          build and run dependencies
#   scripts/deps.sh --test   also what the tests and benchmarks use
set -euo pipefail

build_pkgs=(
    meson ninja-build pkg-config gcc
    zlib1g-dev libjansson-dev libsqlite3-dev
    libturbojpeg0-dev libopenjp2-7-dev libcharls-dev libpng-dev
    g++ libopenjph-dev
    libsodium-dev
    libmicrohttpd-dev
    libgnutls28-dev
    redis-server libhiredis-dev
    libsmbclient-dev libzip-dev
    libcairo2-dev libpango1.0-dev libqrencode-dev fonts-noto-cjk
)
test_pkgs=(
    clang libclang-rt-14-dev
    libcmocka-dev
    dcmtk
    python3 python3-pydicom python3-pytest python3-numpy python3-pil
    libopenjp2-tools openjph-tools
    dicom3tools openssl
    chromium
    fonts-wqy-microhei
    samba smbclient
    poppler-utils zbar-tools
)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
    want+=("${test_pkgs[@]}")
fi

missing=()
for pkg in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

# Node.js and npm fetch the viewer and run the Node clients in the tests.
# Machines often carry their own Node.js (with npm inside it); Debian's npm
# package would pull Debian's older nodejs over it, so it is installed only
# when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
