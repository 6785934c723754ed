#!/usr/bin/env bash
# ingest.sh - C-STORE ingest: cloudpacs against Orthanc and DCMTK's storescp.
#
# Generates a study set with bench/gen_studies.py (real size by default:
# CT 512x512, MR, CR about 2500x2000; Implicit VR Little Endian as
# modalities send) and stores it, from the page cache, into each system
# started fresh on loopback with an empty storage directory:
#
#   cloudpacs  `cloudpacs serve`: blob written to a temporary, fsynced,
#              renamed, directory fsynced, SQLite index row committed (WAL,
#              synchronous=FULL), then the success status.
#   orthanc    Debian's Orthanc with a generated configuration: its default
#              SQLite index, StorageCompression false, SyncStorageArea true
#              (fsync of each file), no plugins.
#   storescp   DCMTK's storescp in its default form (the data set parsed and
#              written again as a file, no fsync, no index): one process for
#              one association; --fork (a process per association) for four,
#              since a single storescp serves one association at a time.
#
# The sender is DCMTK's storescu (TCP_NODELAY=1, -xi: Implicit VR Little
# Endian only, so every server receives and stores the same bytes): the whole
# set over one association, then split in four and sent by four storescu at
# once. Each run is timed on the wall clock; the server's CPU is read from
# /proc/<pid>/stat (utime + stime, and cutime + cstime for storescp's
# children) before and after. Each system's stored count is checked.
# Latencies: bench/ingest_client.py stores a sample one instance at a time
# over one association and times each from its command to its response.
# Memory: 50 associations each hold a large instance half sent while the
# cloudpacs server's VmRSS is read, against its RSS idle; then all 50 finish
# and must be stored (at least 50 concurrent associations served).
#
# Output (bench/README.md): `figure ingest.<n>assoc.<system> <x> instances/s`,
# `figure ingest_mbs.<n>assoc.<system> <x> MB/s`,
# `figure ingest_cpu.<n>assoc.<system> <x> us/instance` (server CPU),
# `figure ingest_latency.<system> <p50> ms` (+ p90/p99 in commentary),
# `ratio ingest.<n>assoc.cloudpacs_vs_<peer> <x>`, `goal ...` lines, and
# `figure ingest_mem_per_assoc.cloudpacs <x> KiB`. --tiny (the test) uses a
# few dozen 64x64 instances, cloudpacs and storescp, and Orthanc only when it
# is installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
cloudpacs=${CLOUDPACS_BIN:-${CLOUDPACS_BUILD_ROOT:-$root/build}/src/cli/cloudpacs}

ct=5
slices=200
mr=1
mr_slices=24
cr=10
size=real
tiny=0
keep=0
latency_count=100
repeat=2
hold_assocs=50
systems="cloudpacs orthanc storescp"

# The goals of issue 3: 3.5 times Orthanc's rate, 85% of storescp's, with
# fsync and indexing on; under 8 MiB per association; 50 associations.
goal_orthanc=3.5
goal_storescp=0.85
goal_mem_kib=8192
goal_assocs=50

usage() {
    cat <<USAGE
usage: bench/ingest.sh [options]
  --ct N --slices N    CT studies and slices per series (default 5 x 200)
  --mr N --mr-slices N MR studies and slices per series (default 1 x 24)
  --cr N               CR studies (default 10)
  --size S             real|small|tiny (default real)
  --systems "A B"      which of cloudpacs orthanc storescp (default all)
  --repeat R           runs of each ingest, the fastest kept (default 2)
  --tiny               a few dozen tiny instances (the test)
  --keep               keep the generated files and storage
  --cloudpacs PATH     the cloudpacs binary (default \$CLOUDPACS_BIN, else
                       \$CLOUDPACS_BUILD_ROOT/src/cli/cloudpacs)
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
    --ct) ct=$2; shift ;;
    --slices) slices=$2; shift ;;
    --mr) mr=$2; shift ;;
    --mr-slices) mr_slices=$2; shift ;;
    --cr) cr=$2; shift ;;
    --size) size=$2; shift ;;
    --systems) systems=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --tiny) tiny=1; ct=1; slices=20; mr=1; mr_slices=4; cr=4; size=tiny
            latency_count=20; repeat=1 ;;
    --keep) keep=1 ;;
    --cloudpacs) cloudpacs=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ingest.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$cloudpacs" ]; then
    echo "ingest.sh: no cloudpacs binary at $cloudpacs (build it, or pass --cloudpacs)" >&2
    exit 2
fi
for tool in storescu storescp echoscu; do
    command -v $tool >/dev/null || { echo "ingest.sh: $tool (DCMTK) not found" >&2; exit 2; }
done
if [ $tiny = 0 ] && [[ " $systems " == *" orthanc "* ]]; then
    "$here/deps.sh" || echo "# orthanc: bench/deps.sh could not install it"
fi
if [[ " $systems " == *" orthanc "* ]] && ! command -v Orthanc >/dev/null; then
    echo "# orthanc: not installed (bench/deps.sh installs it): not measured"
    systems=${systems//orthanc/}
fi

export TCP_NODELAY=1
work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-ingest.XXXXXX")
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
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# utime+stime (+ cutime+cstime: reaped children) of a process, in ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

wait_echo() {
    local port=$1 aec=$2 i
    for i in $(seq 1 200); do
        if echoscu -to 2 -aec "$aec" 127.0.0.1 "$port" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "ingest.sh: the server on port $port did not answer" >&2
    return 1
}

# --- the study set -------------------------------------------------------------

"$python" "$here/gen_studies.py" --out "$work/studies" --ct "$ct" --slices "$slices" \
    --mr "$mr" --mr-slices "$mr_slices" --cr "$cr" --size "$size" --quiet
find "$work/studies" -name '*.dcm' | sort > "$work/all.list"
count=$(wc -l < "$work/all.list")
bytes=$(xargs -a "$work/all.list" stat -c %s | awk '{ s += $1 } END { print s }')
for q in 0 1 2 3; do
    awk -v q=$q 'NR % 4 == q' "$work/all.list" > "$work/quarter$q.list"
done
awk -v n="$count" -v k="$latency_count" \
    'BEGIN { step = int(n / k); if (step < 1) step = 1 } (NR - 1) % step == 0' \
    "$work/all.list" | head -n "$latency_count" > "$work/latency.list"
largest=$(xargs -a "$work/all.list" stat -c '%s %n' | sort -n | tail -1 | cut -d' ' -f2-)
xargs -a "$work/all.list" cat > /dev/null
# The generated files are still being written back: the first system's
# fsyncs would wait behind them.
sync
echo "# $count instances, $((bytes / 1048576)) MiB ($size: ct $ct x $slices, mr $mr," \
     "cr $cr), in $work"

# --- the servers -----------------------------------------------------------------

# start_server SYSTEM MODE DIR: starts SYSTEM on a free port, storing in DIR;
# sets server_pid, port, aec. MODE is 1 or 4 (storescp forks for 4).
start_server() {
    local system=$1 mode=$2 dir=$3
    port=$(free_port)
    mkdir -p "$dir"
    case $system in
    cloudpacs)
        aec=CLOUDPACS
        env -u CLOUDPACS_CONFIG CLOUDPACS_DICOM_PORT="$port" CLOUDPACS_DATA_DIR="$dir/data" \
            "$cloudpacs" serve --services dicom > "$dir/stdout" 2> "$dir/serve.log" &
        ;;
    orthanc)
        aec=ORTHANC
        cat > "$dir/orthanc.json" <<JSON
{
  "Name": "cloudpacs-bench",
  "StorageDirectory": "$dir/storage",
  "IndexDirectory": "$dir/index",
  "StorageCompression": false,
  "SyncStorageArea": true,
  "Plugins": [],
  "HttpServerEnabled": true,
  "HttpPort": $(free_port),
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": true,
  "DicomAet": "ORTHANC",
  "DicomCheckCalledAet": false,
  "DicomPort": $port,
  "SaveJobs": false
}
JSON
        Orthanc "$dir/orthanc.json" > "$dir/stdout" 2> "$dir/orthanc.log" &
        ;;
    storescp)
        aec=STORESCP
        mkdir -p "$dir/files"
        local fork=()
        [ "$mode" = 4 ] && fork=(--fork)
        storescp "${fork[@]}" -aet STORESCP -od "$dir/files" "$port" \
            > "$dir/stdout" 2> "$dir/storescp.log" &
        ;;
    esac
    server_pid=$!
    wait_echo "$port" "$aec"
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# stored_count SYSTEM DIR: how many instances the system holds.
stored_count() {
    local system=$1 dir=$2
    case $system in
    cloudpacs)
        "$python" -c 'import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT count(*) FROM instance").fetchone()[0])' "$dir/data/index.sqlite" ;;
    orthanc)
        local http
        http=$(sed -n 's/.*"HttpPort": \([0-9]*\).*/\1/p' "$dir/orthanc.json")
        "$python" -c 'import json, sys, urllib.request
url = "http://127.0.0.1:%s/statistics" % sys.argv[1]
print(json.load(urllib.request.urlopen(url, timeout=30))["CountInstances"])' "$http" ;;
    storescp)
        find "$dir/files" -type f | wc -l ;;
    esac
}

# --- the runs ------------------------------------------------------------------------

declare -A rate mbs cpu lat
fail=0

# run_ingest SYSTEM MODE: one fresh server, the set sent over MODE associations.
run_ingest() {
    local system=$1 mode=$2 dir="$work/$1-$2assoc" t0 t1 c0 c1 stored q
    local -a pids=()
    start_server "$system" "$mode" "$dir"
    c0=$(cpu_ticks "$server_pid")
    t0=$(now)
    if [ "$mode" = 1 ]; then
        xargs -a "$work/all.list" storescu -xi -R -aec "$aec" 127.0.0.1 "$port" \
            2> "$dir/storescu.log" || true
    else
        for q in 0 1 2 3; do
            xargs -a "$work/quarter$q.list" storescu -xi -R -aet "SCU$q" -aec "$aec" \
                127.0.0.1 "$port" 2> "$dir/storescu$q.log" &
            pids+=($!)
        done
        for q in "${pids[@]}"; do wait "$q" || true; done
    fi
    t1=$(now)
    # storescp --fork reaps its children when the next association comes.
    echoscu -aec "$aec" 127.0.0.1 "$port" >/dev/null 2>&1 || true
    sleep 0.3
    c1=$(cpu_ticks "$server_pid")
    stored=$(stored_count "$system" "$dir")
    stop_server
    if [ "$stored" != "$count" ]; then
        echo "# $system ${mode}assoc: stored $stored of $count instances"
        fail=1
    fi
    local key="${mode}assoc.$system" r
    r=$(awk -v n="$count" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
    awk -v a="$t0" -v b="$t1" -v c=$((c1 - c0)) -v hz="$hz" -v s="$stored" -v r="$r" \
        -v k="$key" 'BEGIN { printf "# %s: %s instances/s, %.2f s wall, %.2f s server CPU," \
        " %d stored\n", k, r, b - a, c / hz, s }'
    if [ -z "${rate[$key]:-}" ] || awk -v a="$r" -v b="${rate[$key]}" 'BEGIN { exit !(a > b) }'
    then
        rate[$key]=$r
        mbs[$key]=$(awk -v s="$bytes" -v a="$t0" -v b="$t1" \
            'BEGIN { printf "%.1f", s / 1048576 / (b - a) }')
        cpu[$key]=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v n="$count" \
            'BEGIN { printf "%.0f", c * 1e6 / hz / n }')
    fi
    [ $keep = 1 ] || rm -rf "$dir"
    sync
}

run_latency() {
    local system=$1 dir="$work/$1-latency" out
    start_server "$system" 1 "$dir"
    if out=$("$python" "$here/ingest_client.py" latency --port "$port" --aec "$aec" \
            --files-from "$work/latency.list" --count "$latency_count"); then
        set -- $out
        lat[$system]=$2
        echo "figure ingest_latency.$system $2 ms"
        echo "# $system latency over one association: p50 $2 ms, p90 $3 ms, p99 $4 ms," \
             "max $5 ms ($6 instances)"
    else
        echo "# $system latency: the client failed"
        fail=1
    fi
    stop_server
    [ $keep = 1 ] || rm -rf "$dir"
}

run_memory() {
    local dir="$work/cloudpacs-memory" out idle held
    start_server cloudpacs 1 "$dir"
    if out=$("$python" "$here/ingest_client.py" hold --port "$port" --aec "$aec" \
            --pid "$server_pid" --file "$largest" --assocs "$hold_assocs"); then
        idle=$(echo "$out" | awk '/^rss_kib/ { print $2 }')
        held=$(echo "$out" | awk '/^rss_kib/ { print $3 }')
        echo "figure ingest_mem_per_assoc.cloudpacs" \
             "$(( (held > idle ? held - idle : 0) / hold_assocs )) KiB"
        echo "figure ingest_concurrent_assocs.cloudpacs $hold_assocs associations"
        echo "goal ingest_mem_per_assoc.cloudpacs $goal_mem_kib"
        echo "goal ingest_concurrent_assocs.cloudpacs $goal_assocs"
        echo "# goals above: memory per association at most, associations at least"
        echo "# memory: VmRSS $idle KiB idle, $held KiB with $hold_assocs associations each" \
             "holding half of a $(( $(stat -c %s "$largest") / 1024 )) KiB instance;" \
             "$(echo "$out" | awk '/^stored/ { print $2 }') stored"
    else
        echo "# memory: $hold_assocs concurrent associations failed: $out"
        fail=1
    fi
    stop_server
    [ $keep = 1 ] || rm -rf "$dir"
}

for run in $(seq 1 "$repeat"); do
    for mode in 1 4; do
        for system in $systems; do
            run_ingest "$system" "$mode"
        done
    done
done
for mode in 1 4; do
    for system in $systems; do
        key="${mode}assoc.$system"
        echo "figure ingest.$key ${rate[$key]} instances/s"
        echo "figure ingest_mbs.$key ${mbs[$key]} MB/s"
        echo "figure ingest_cpu.$key ${cpu[$key]} us/instance"
    done
done
for system in $systems; do
    run_latency "$system"
done
run_memory

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'
}
for mode in 1 4; do
    key="${mode}assoc"
    for peer in orthanc storescp; do
        [ -n "${rate[$key.$peer]:-}" ] || continue
        goal=$goal_orthanc
        [ $peer = storescp ] && goal=$goal_storescp
        echo "ratio ingest.$key.cloudpacs_vs_$peer $(ratio "${rate[$key.cloudpacs]}" \
            "${rate[$key.$peer]}")"
        echo "goal ingest.$key.cloudpacs_vs_$peer $goal"
        echo "# MB/s ratio $(ratio "${mbs[$key.cloudpacs]}" "${mbs[$key.$peer]}")," \
             "server CPU per instance $peer / cloudpacs" \
             "$(ratio "${cpu[$key.$peer]}" "${cpu[$key.cloudpacs]}")"
    done
done
exit $fail
