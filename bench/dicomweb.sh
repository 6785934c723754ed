#!/usr/bin/env bash
# dicomweb.sh - DICOMweb (PS3.18 10.4-10.6) end to end: cloudpacs against
# Orthanc with its DICOMweb plugin (Debian's orthanc-dicomweb), on the same
# data, one server after the other, each started fresh on loopback.
#
# bench/dicomweb_client.py generates the data once: 300 CR studies (tiny
# pixels) for the searches, one CT series of 200 slices 512 x 512 (about
# 105 MB) and a CR of 2500 x 2000 16-bit (10 MB). Each server gets the same
# files through STOW-RS: the search set in batches of 50 (not timed), then
# the CT series in one request (timed: the STOW figure), then the CR. Then,
# over one keep-alive connection of Python's http.client, each case is
# timed after three untimed requests (median and p95):
#
#   qido.patient_id      /studies?PatientID=<exact>, a different patient each time
#   qido.name_wildcard   /studies?PatientName=<FAMILY>*
#   qido.page100         /studies?limit=100&offset=<random>, no filter
#   series_metadata      /studies/{s}/series/{s}/metadata of the CT series
#                        (series_metadata_first: its first request, one sample)
#   retrieve_series      the whole CT series, multipart/related application/dicom,
#                        transfer-syntax=* (GB/s of the answer's bytes)
#   frame.ct, frame.cr   /frames/1 of a CT slice (512 KB) and of the CR (10 MB),
#                        application/octet-stream, transfer-syntax=*
#   stow                 the 200-instance series in one STOW-RS request
#   qido_1m.*            cloudpacs only: the exact Patient ID search and the
#                        page of 100 on an index of a million instances in
#                        10,000 studies, filled by bench_index --keep (the
#                        index module's bulk insert, index_put_instances, no
#                        blobs behind it) and served by `cloudpacs serve`.
#
#   cloudpacs  `cloudpacs serve --services web`, the service token
#   orthanc    Debian's Orthanc, a generated configuration: SQLite index,
#              StorageCompression false, SyncStorageArea true, the DICOMweb
#              plugin with its defaults (root /dicom-web/)
#
# Output (bench/README.md): `figure dicomweb.<case>.<system> <x> <unit>`,
# `ratio dicomweb.<case>.cloudpacs_vs_orthanc <x>` (how many times faster
# cloudpacs is: Orthanc's time over ours, or our rate over Orthanc's),
# `goal dicomweb.<case>.cloudpacs <goal>: met|missed`, and one `case` line
# per case with both figures, the ratio, the goal and the verdict.
# --tiny (the test): 6 studies, a CT of 4 slices, 64 x 64 pixels, an index
# of 5,000 instances, one timed request per case; Orthanc only when installed
# (nothing is installed then).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
build=${CLOUDPACS_BUILD_ROOT:-$root/build}
cloudpacs=${CLOUDPACS_BIN:-$build/src/cli/cloudpacs}
bench_index=$build/bench/bench_index
reps=200
million=1000000
tiny=0
keep=0
systems="cloudpacs orthanc"

usage() {
    cat <<USAGE
usage: bench/dicomweb.sh [options]
  --reps N             timed requests per search, metadata and CT frame case
                       (default 200; the series retrieval does N/10, the CR
                       frame N/4)
  --million N          instances in the big index (default 1000000; 0: skip)
  --systems "A B"      cloudpacs and/or orthanc (default both)
  --tiny               a few tiny instances, one request per case (the test)
  --keep               keep the generated data and the servers' storage
  --cloudpacs PATH     the cloudpacs binary (default \$CLOUDPACS_BIN, else
                       \$CLOUDPACS_BUILD_ROOT/src/cli/cloudpacs)
  --bench-index PATH   bench_index (default \$CLOUDPACS_BUILD_ROOT/bench/bench_index)
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2; shift ;;
    --million) million=$2; shift ;;
    --systems) systems=$2; shift ;;
    --tiny) tiny=1; reps=1; million=5000 ;;
    --keep) keep=1 ;;
    --cloudpacs) cloudpacs=$2; shift ;;
    --bench-index) bench_index=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "dicomweb.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$cloudpacs" ]; then
    echo "dicomweb.sh: no cloudpacs binary at $cloudpacs (build it, or pass --cloudpacs)" >&2
    exit 2
fi
if [ "$million" != 0 ] && [ ! -x "$bench_index" ]; then
    echo "dicomweb.sh: no bench_index at $bench_index (pass --bench-index, or --million 0)" >&2
    exit 2
fi

if [ $tiny = 0 ] && [[ " $systems " == *" orthanc "* ]]; then
    "$here/deps.sh" || echo "# orthanc: bench/deps.sh could not install it"
fi
plugin=
if [[ " $systems " == *" orthanc "* ]] && command -v Orthanc >/dev/null 2>&1; then
    plugin=$(dpkg -L orthanc-dicomweb 2>/dev/null | grep -m1 'libOrthancDicomWeb\.so$' || true)
fi
if [[ " $systems " == *" orthanc "* ]] && [ -z "$plugin" ]; then
    echo "# orthanc: Orthanc or orthanc-dicomweb not installed (bench/deps.sh installs" \
         "them): not measured"
    systems=${systems//orthanc/}
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-dicomweb.XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ $keep = 0 ]; then rm -rf "$work"; else echo "# kept $work"; fi
}
trap cleanup EXIT

free_port() {
    "$python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL LOG [TENTHS]: until the server answers there (default 60 s).
wait_http() {
    local i
    for i in $(seq 1 "${3:-600}"); do
        if "$python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "dicomweb.sh: no answer at $1" >&2
    tail -20 "$2" >&2 || true
    return 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# start_cloudpacs DATA_DIR [TENTHS]: `cloudpacs serve` on a free port, waited
# for (default 60 s); sets $base.
export CLOUDPACS_BENCH_TOKEN=bench-dicomweb-service-token-$$
start_cloudpacs() {
    local http
    http=$(free_port)
    env -u CLOUDPACS_CONFIG -u CLOUDPACS_REDIS_URL CLOUDPACS_HTTP_PORT="$http" \
        CLOUDPACS_DICOM_PORT="$(free_port)" CLOUDPACS_HTTP_TOKEN="$CLOUDPACS_BENCH_TOKEN" \
        CLOUDPACS_LOG_LEVEL=warn CLOUDPACS_DATA_DIR="$1" \
        "$cloudpacs" serve --services web > "$1.out" 2> "$1.log" &
    server_pid=$!
    wait_http "http://127.0.0.1:$http/api/health" "$1.log" "${2:-600}"
    base="http://127.0.0.1:$http/dicom-web"
}

client() { "$python" "$here/dicomweb_client.py" "$@"; }

gen_args=()
[ $tiny = 1 ] && gen_args=(--tiny)
client gen "$work/data" "${gen_args[@]}"
echo "# $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
# The generated files are read once and written back before the first STOW.
cat "$work"/data/ct/*/*/*/*.dcm "$work/data/cr.dcm" > /dev/null
sync

results=()

# --- cloudpacs ---------------------------------------------------------------------------
if [[ " $systems " == *" cloudpacs "* ]]; then
    start_cloudpacs "$work/cloudpacs"
    client load cloudpacs "$base" "$work/data" "$work/cloudpacs.stow.json"
    sync
    client time cloudpacs "$base" "$work/data" "$work/cloudpacs.time.json" --reps "$reps"
    results+=("$work/cloudpacs.stow.json" "$work/cloudpacs.time.json")
    stop_server
fi

# --- Orthanc with its DICOMweb plugin ----------------------------------------------------
if [[ " $systems " == *" orthanc "* ]]; then
    http=$(free_port)
    mkdir -p "$work/orthanc"
    cat > "$work/orthanc/orthanc.json" <<JSON
{
  "Name": "cloudpacs-bench",
  "StorageDirectory": "$work/orthanc/storage",
  "IndexDirectory": "$work/orthanc/index",
  "StorageCompression": false,
  "SyncStorageArea": true,
  "Plugins": ["$plugin"],
  "HttpServerEnabled": true,
  "HttpPort": $http,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "SaveJobs": false,
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
}
JSON
    Orthanc "$work/orthanc/orthanc.json" > "$work/orthanc/stdout" 2> "$work/orthanc/log" &
    server_pid=$!
    wait_http "http://127.0.0.1:$http/system" "$work/orthanc/log"
    echo "# orthanc: $(Orthanc --version 2>/dev/null | head -1)," \
         "orthanc-dicomweb $(dpkg-query -W -f='${Version}' orthanc-dicomweb 2>/dev/null)"
    base="http://127.0.0.1:$http/dicom-web"
    client load orthanc "$base" "$work/data" "$work/orthanc.stow.json"
    sync
    client time orthanc "$base" "$work/data" "$work/orthanc.time.json" --reps "$reps"
    results+=("$work/orthanc.stow.json" "$work/orthanc.time.json")
    stop_server
fi

# --- cloudpacs at a million instances ----------------------------------------------------
if [ "$million" != 0 ] && [[ " $systems " == *" cloudpacs "* ]]; then
    mkdir -p "$work/million"
    t0=$(date +%s.%N)
    "$bench_index" --instances "$million" --runs 1 --keep "$work/million/index.sqlite" \
        > "$work/bench_index.out" 2> "$work/bench_index.err"
    t1=$(date +%s.%N)
    echo "# qido_1m: index of $million instances in $((million / 100)) studies filled by" \
         "bench_index --keep (index_put_instances in batches of 1000, no blobs) in" \
         "$("$python" -c 'import sys; print("%.0f" % (float(sys.argv[2]) - float(sys.argv[1])))' \
         "$t0" "$t1") s; $(grep -m1 '^figure index_insert\.' "$work/bench_index.out" || true)"
    client prep-million "$work/million"
    t0=$(date +%s.%N)
    start_cloudpacs "$work/million" 18000
    t1=$(date +%s.%N)
    echo "# qido_1m: cloudpacs serve answered $("$python" -c 'import sys
print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$t1") s after its start" \
         "(its start-up repair checks every row's blob)"
    client time cloudpacs "$base" "$work/data" "$work/cloudpacs.million.json" \
        --reps "$reps" --million "$((million / 100))"
    results+=("$work/cloudpacs.million.json")
    stop_server
fi

if [ $tiny = 1 ]; then client loopback 10; else client loopback 2000; fi
if [ "$million" = 0 ]; then results+=(--no-million); fi
client report "$work/data" "${results[@]}"
