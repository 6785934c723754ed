#!/usr/bin/env bash
# film_first_image.sh - time to the first picture on the patient's cloud
# film page: from opening the share link (GET /film/api/{token}, the birth
# date verified, the series listed) to the first rendered picture received
# whole, through the real `cloudpacs serve` on loopback, for a generated CT
# study; then the same under a "slow 3G/4G" profile (150 ms RTT, 1.6
# Mbit/s) modelled on the client's side (bench/film_first_image_client.py
# says how; tc is not used: loopback is shared by everything on the host).
#
# Output (bench/README.md): `figure film_first_image.<profile>.p50.cloudpacs
# <ms> ms`, the same for p95, and `goal film_first_image.<profile>.p95.cloudpacs
# < 2000 ms: met|missed` for the profiles loopback and slow.
# --tiny (the test) uses a few 64 x 64 slices and three runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
cloudpacs=${CLOUDPACS_BIN:-${CLOUDPACS_BUILD_ROOT:-$root/build}/src/cli/cloudpacs}
slices=200
size=real
runs=20
rtt_ms=150
rate_kbit=1600

while [ $# -gt 0 ]; do
    case $1 in
    --tiny) slices=4; size=tiny; runs=3 ;;
    --slices) slices=$2; shift ;;
    --runs) runs=$2; shift ;;
    --rtt-ms) rtt_ms=$2; shift ;;
    --rate-kbit) rate_kbit=$2; shift ;;
    --cloudpacs) cloudpacs=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "film_first_image.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

for tool in curl pdftoppm zbarimg; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "# film_first_image: $tool is not installed: not measured"
        exit 0
    fi
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

wait_http() {
    local i
    for i in $(seq 1 300); do
        if curl -s -o /dev/null "$1"; then
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "film_first_image.sh: no answer at $1" >&2
    tail -20 "$work/cloudpacs.log" >&2 || true
    return 1
}

"$python" "$root/bench/gen_studies.py" --out "$work/study" --ct 1 --slices "$slices" \
    --size "$size" --transfer-syntax explicit --quiet
mapfile -t files < <(find "$work/study" -name '*.dcm' | sort)

printf '[film]\nlink_days = 30\n' > "$work/cloudpacs.ini"
token=bench-film-first-image-service-token
http=$(free_port)
env -u CLOUDPACS_REDIS_URL CLOUDPACS_CONFIG="$work/cloudpacs.ini" CLOUDPACS_HTTP_PORT="$http" \
    CLOUDPACS_DICOM_PORT="$(free_port)" CLOUDPACS_HTTP_TOKEN="$token" \
    CLOUDPACS_DATA_DIR="$work/data" "$cloudpacs" serve --services web,dispatch \
    > "$work/cloudpacs.out" 2> "$work/cloudpacs.log" &
server_pid=$!
wait_http "http://127.0.0.1:$http/api/health"

echo "# film_first_image: ${#files[@]} CT slices ($size), $runs runs per profile"
"$python" "$here/film_first_image_client.py" "http://127.0.0.1:$http" "$token" "$work" \
    "$runs" "$rtt_ms" "$rate_kbit" "${files[@]}"
