#!/bin/bash
# bench/deps.sh - the peers the benchmarks compare cloudpacs with, which the
# project itself does not need (so they are not in scripts/deps.sh):
# Orthanc (Debian's orthanc) for bench/ingest.sh and bench/render.sh, and its
# DICOMweb plugin (Debian's orthanc-dicomweb) for bench/dicomweb.sh. DCMTK is
# a project dependency already. Run as root; does nothing when all is installed.
#
# Debian's orthanc package starts a system service on install where an init
# system runs; the benchmark starts its own Orthanc with a generated
# configuration, so the service is stopped and disabled here.
set -euo pipefail

if command -v Orthanc >/dev/null 2>&1 && dpkg -s orthanc-dicomweb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "bench/deps.sh: Orthanc or its DICOMweb plugin is not installed and this is" \
         "not root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y orthanc orthanc-dicomweb >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y orthanc orthanc-dicomweb >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now orthanc >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    service orthanc stop >/dev/null 2>&1 || true
fi
