#!/usr/bin/env bash
# Builds cloudpacs and runs it on its embedded defaults: the DICOM service on
# 127.0.0.1:11112 (AE title CLOUDPACS), the archive in ./cloudpacs-data
# (SQLite index, files on the local disk). Every setting can be changed in
# cloudpacs.conf or by CLOUDPACS_* variables (see README.md).
#
# The first run also imports a small generated sample study, so that there is
# something to look at. Ctrl-C stops the service.
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
scripts/viewer.sh || echo "cloudpacs: the viewer could not be installed (it needs npm);" \
    "/viewer/ will answer 404" >&2
cloudpacs=build-release/src/cli/cloudpacs
data_dir=${CLOUDPACS_DATA_DIR:-$(pwd)/cloudpacs-data}
export CLOUDPACS_DATA_DIR=$data_dir

if [[ ! -e "$data_dir/index.sqlite" ]]; then
    sample=$(mktemp -d)
    trap 'rm -rf "$sample"' EXIT
    /usr/bin/python3 bench/gen_studies.py --out "$sample" --ct 1 --slices 20 --cr 1 \
        --size small --chinese-fraction 1 --quiet
    "$cloudpacs" import --source SAMPLE "$sample"
    rm -rf "$sample"
    trap - EXIT
fi

cat <<EOT

cloudpacs is starting. Send studies to it with any DICOM sender, for example:
  storescu -aec CLOUDPACS 127.0.0.1 ${CLOUDPACS_DICOM_PORT:-11112} FILE.dcm
  $cloudpacs import FOLDER
and check it with:
  $cloudpacs echo 127.0.0.1 ${CLOUDPACS_DICOM_PORT:-11112}
and look at them in the viewer:
  http://127.0.0.1:${CLOUDPACS_HTTP_PORT:-8042}/viewer/

EOT
exec "$cloudpacs" serve
