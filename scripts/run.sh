#!/usr/bin/env bash
# Builds cloudpacs and runs it on its embedded defaults.
#
# The network services do not exist yet: for now this builds the release
# binary and shows what the DICOM core reads from a sample study that it
# generates, in the readable dump and as DICOM JSON.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
if ! /usr/bin/python3 -c 'import pydicom, numpy' 2>/dev/null; then
    scripts/deps.sh --test
fi

if [[ ! -d build-release ]]; then
    meson setup build-release --buildtype=release -Dtests=disabled >/dev/null
fi
ninja -C build-release src/cli/cloudpacs >/dev/null

sample=$(mktemp -d)
trap 'rm -rf "$sample"' EXIT
/usr/bin/python3 bench/gen_studies.py --out "$sample" --ct 1 --slices 1 --size tiny \
    --chinese-fraction 1 >/dev/null
file=$(find "$sample" -name '*.dcm' | sort | head -n 1)

echo "== cloudpacs dump of a generated CT slice =="
build-release/src/cli/cloudpacs dump --no-pixel "$file"
echo
echo "== the same as DICOM JSON (PS3.18 Annex F) =="
build-release/src/cli/cloudpacs dump --json --pretty --no-pixel "$file"
echo
echo "cloudpacs is built at $(pwd)/build-release/src/cli/cloudpacs;"
echo "run it with --help to see its commands."
