#!/usr/bin/env bash
# render.sh - latency of one rendered frame (PS3.18 10.4.1.1.3) through the
# web service, end to end: cloudpacs against Orthanc when it is installed.
#
# Generates (bench/render_client.py gen) a CT frame of 512 x 512 and a CR
# frame of 2500 x 2000, 16-bit Explicit VR Little Endian with a window in
# the data set, stores them (STOW-RS for cloudpacs, POST /instances for
# Orthanc), then GETs the rendered JPEG of each N times over one keep-alive
# connection from Python's http.client, after three untimed requests, and
# takes the median. What is timed is the whole request as a viewer makes it:
# index lookup, then either the answer from the service's memory cache (a
# frame asked again with the same parameters, as a viewer does when the
# user scrolls back; Orthanc keeps its parsed files in memory likewise) or,
# for render_cold, blob read, parse, decode, window, JPEG encoding: each
# request then asks for another window width.
#
#   cloudpacs  `cloudpacs serve --services web`, .../instances/{i}/rendered
#   orthanc    Debian's Orthanc with a generated configuration (no plugins),
#              /instances/{id}/frames/0/rendered
#
# Orthanc is measured only when installed (bench/deps.sh installs it; this
# script never does): otherwise a '#' line says so.
#
# Output (bench/README.md): `figure render.ct.<system> <median> ms`,
# `figure render.cr.<system> <median> ms`, `figure render_cold.<ct|cr>.
# cloudpacs <median> ms`, `ratio render.<ct|cr>.
# cloudpacs_vs_orthanc <x>` (Orthanc's time over ours), and `goal` lines
# for issue 5: a rendered CT frame under 10 ms end to end, and 3 times
# faster than Orthanc's. --tiny (the test) uses 64 x 64 frames and a few
# requests.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
cloudpacs=${CLOUDPACS_BIN:-${CLOUDPACS_BUILD_ROOT:-$root/build}/src/cli/cloudpacs}
count=200
tiny=0
goal_ms=10
goal_orthanc=3

while [ $# -gt 0 ]; do
    case $1 in
    --tiny) tiny=1; count=5 ;;
    --count) count=$2; shift ;;
    --cloudpacs) cloudpacs=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "render.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: until the server answers there.
wait_http() {
    local i
    for i in $(seq 1 300); do
        if "$python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "render.sh: no answer at $1" >&2
    return 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

gen_args=()
[ $tiny = 1 ] && gen_args=(--tiny)
"$python" "$here/render_client.py" gen "$work" "${gen_args[@]}"
files=("$work/ct.dcm" "$work/cr.dcm")
declare -A ms

# --- cloudpacs ---------------------------------------------------------------------
# Every request carries the service token (render_client.py reads it).
export CLOUDPACS_BENCH_TOKEN=bench-render-service-token
http=$(free_port)
env -u CLOUDPACS_CONFIG CLOUDPACS_HTTP_PORT="$http" CLOUDPACS_DICOM_PORT="$(free_port)" \
    CLOUDPACS_HTTP_TOKEN="$CLOUDPACS_BENCH_TOKEN" \
    CLOUDPACS_DATA_DIR="$work/cloudpacs" "$cloudpacs" serve --services web \
    > "$work/cloudpacs.out" 2> "$work/cloudpacs.log" &
server_pid=$!
wait_http "http://127.0.0.1:$http/api/health"
mapfile -t paths < <("$python" "$here/render_client.py" stow \
    "http://127.0.0.1:$http/dicom-web" "${files[@]}")
i=0
for kind in ct cr; do
    read -r med p90 size < <("$python" "$here/render_client.py" time \
        "http://127.0.0.1:$http${paths[$i]}" "$count")
    ms[$kind.cloudpacs]=$med
    echo "figure render.$kind.cloudpacs $med ms"
    echo "# render.$kind.cloudpacs: p90 $p90 ms, $size bytes of JPEG, median of $count"
    read -r med p90 size < <("$python" "$here/render_client.py" time \
        "http://127.0.0.1:$http${paths[$i]}" "$count" cold)
    ms[$kind.cold]=$med
    echo "figure render_cold.$kind.cloudpacs $med ms"
    echo "# render_cold.$kind.cloudpacs: p90 $p90 ms, a new window each request" \
         "(no cached answer)"
    i=$((i + 1))
done
stop_server

# --- Orthanc -----------------------------------------------------------------------
if command -v Orthanc >/dev/null 2>&1; then
    http=$(free_port)
    cat > "$work/orthanc.json" <<JSON
{
  "Name": "cloudpacs-bench",
  "StorageDirectory": "$work/orthanc/storage",
  "IndexDirectory": "$work/orthanc/index",
  "StorageCompression": false,
  "Plugins": [],
  "HttpServerEnabled": true,
  "HttpPort": $http,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "SaveJobs": false
}
JSON
    Orthanc "$work/orthanc.json" > "$work/orthanc.out" 2> "$work/orthanc.log" &
    server_pid=$!
    wait_http "http://127.0.0.1:$http/system"
    mapfile -t paths < <("$python" "$here/render_client.py" orthanc \
        "http://127.0.0.1:$http" "${files[@]}")
    i=0
    for kind in ct cr; do
        read -r med p90 size < <("$python" "$here/render_client.py" time \
            "http://127.0.0.1:$http${paths[$i]}" "$count")
        ms[$kind.orthanc]=$med
        echo "figure render.$kind.orthanc $med ms"
        echo "# render.$kind.orthanc: p90 $p90 ms, $size bytes of JPEG, median of $count"
        "$python" -c 'import sys; print("ratio render.%s.cloudpacs_vs_orthanc %.2f"
      % (sys.argv[1], float(sys.argv[3]) / float(sys.argv[2])))' \
            "$kind" "${ms[$kind.cloudpacs]}" "$med"
        "$python" -c 'import sys; print("ratio render_cold.%s.cloudpacs_vs_orthanc %.2f"
      % (sys.argv[1], float(sys.argv[3]) / float(sys.argv[2])))' \
            "$kind" "${ms[$kind.cold]}" "$med"
        i=$((i + 1))
    done
    stop_server
else
    echo "# orthanc: not installed (bench/deps.sh installs it): not measured"
fi

# --- goals -------------------------------------------------------------------------
"$python" - "${ms[ct.cloudpacs]}" "${ms[ct.cold]}" "${ms[ct.orthanc]:-}" "$goal_ms" \
    "$goal_orthanc" <<'PY'
import sys
warm, cold, theirs, goal_ms, goal_ratio = sys.argv[1:6]
for name, ours in (("render", warm), ("render_cold", cold)):
    ok = float(ours) < float(goal_ms)
    print("goal %s.ct.cloudpacs < %s ms: %s (%s ms)" % (
        name, goal_ms, "met" if ok else "missed", ours))
    if theirs:
        r = float(theirs) / float(ours)
        print("goal %s.ct.cloudpacs_vs_orthanc >= %s: %s (%.2f)" % (
            name, goal_ratio, "met" if r >= float(goal_ratio) else "missed", r))
PY
