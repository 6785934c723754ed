#!/usr/bin/env bash
# Builds cloudpacs and runs it on its embedded defaults: the DICOM service on
# 127.0.0.1:11112 (AE title CLOUDPACS), the archive in ./cloudpacs-data
# (SQLite index, files on the local disk). Every setting can be changed in
# cloudpacs.conf or by CLOUDPACS_* variables (see README.md).
#
# The first run (no users yet) makes an institution DEMO (a hospital), a user
# `admin` who administers it (the password is generated, printed once and
# kept in <data_dir>/first-login.txt, mode 0600), and imports a small
# generated sample study under DEMO, so that there is something to look at.
# Sessions live in a redis-server cloudpacs starts itself in the data
# directory (or the one CLOUDPACS_REDIS_URL names). Ctrl-C stops the service.
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
scripts/console.sh || echo "cloudpacs: the admin console could not be built (it needs" \
    "Node.js 18 or newer and npm); / will answer 404" >&2
cloudpacs=build-release/src/cli/cloudpacs
data_dir=${CLOUDPACS_DATA_DIR:-$(pwd)/cloudpacs-data}
export CLOUDPACS_DATA_DIR=$data_dir

first_login=$data_dir/first-login.txt
http_base=http://127.0.0.1:${CLOUDPACS_HTTP_PORT:-8042}
new_index=0
[[ -e "$data_dir/index.sqlite" ]] || new_index=1
mkdir -p "$data_dir"

if [[ "$("$cloudpacs" user list --json | tr -d ' \n')" == "[]" ]]; then
    "$cloudpacs" institution add --code DEMO --name "Demo hospital" --kind hospital \
        >/dev/null
    demo_id=$("$cloudpacs" institution list --json | /usr/bin/python3 -c \
        'import json, sys; print(next(i["id"] for i in json.load(sys.stdin)
                                     if i["code"] == "DEMO"))')
    password=$(/usr/bin/python3 -c 'import secrets; print("Cp-" + secrets.token_urlsafe(12))')
    printf '%s\n' "$password" | "$cloudpacs" user add admin --institution DEMO \
        --roles institution_admin --name "Demo administrator" --password-stdin >/dev/null
    (umask 077 && printf 'console: %s/\nusername: admin\npassword: %s\n' \
        "$http_base" "$password" > "$first_login")
    chmod 600 "$first_login"
    if [[ $new_index == 1 ]]; then
        sample=$(mktemp -d)
        trap 'rm -rf "$sample"' EXIT
        /usr/bin/python3 bench/gen_studies.py --out "$sample" --ct 1 --slices 20 --cr 1 \
            --size small --chinese-fraction 1 --quiet
        "$cloudpacs" import --source SAMPLE --institution "$demo_id" "$sample"
        rm -rf "$sample"
        trap - EXIT
    fi
    cat <<EOT

First login (printed this once; also in $first_login, readable by you only):
  username: admin
  password: $password
EOT
elif [[ -e "$first_login" ]]; then
    echo
    echo "The first login is in $first_login."
fi

# Senders on this machine that are not registered AEs store into DEMO.
demo_id=$("$cloudpacs" institution list --json | /usr/bin/python3 -c \
    'import json, sys; print(next((i["id"] for i in json.load(sys.stdin)
                                  if i["code"] == "DEMO"), ""))')
if [[ -n "$demo_id" ]]; then
    export CLOUDPACS_DICOM_DEFAULT_INSTITUTION=${CLOUDPACS_DICOM_DEFAULT_INSTITUTION:-DEMO}
fi

cat <<EOT

cloudpacs is starting. Send studies to it with any DICOM sender, for example:
  storescu -aec CLOUDPACS 127.0.0.1 ${CLOUDPACS_DICOM_PORT:-11112} FILE.dcm
  $cloudpacs import --institution ${demo_id:-ID} FOLDER
and check it with:
  $cloudpacs echo 127.0.0.1 ${CLOUDPACS_DICOM_PORT:-11112}
and open, once signed in:
  the console  $http_base/
  the viewer   $http_base/viewer/

EOT
exec "$cloudpacs" serve
