#!/usr/bin/env bash
# film_download.sh - throughput of the patient's ZIP download of a whole
# study (GET /film/api/{token}/download.zip: the instances as stored, the
# report PDF and a DICOMDIR, made while sent) beside plain WADO-RS study
# retrieve of the same files (multipart/related, as stored), both fetched
# by curl from the same `cloudpacs serve` on loopback.
#
# Generates one CT study (bench/gen_studies.py; real size: 512 x 512, 16
# bit), sets it up behind a released report's share link
# (bench/film_download_client.py: it reads the QR code with pdftoppm and
# zbarimg), then fetches each answer R times and keeps the best.
#
# Output (bench/README.md): `figure film_download.zip.cloudpacs <MB/s> MB/s`,
# `figure film_download.wado.cloudpacs <MB/s> MB/s`, and `ratio
# film_download.zip_vs_wado <x>` (the ZIP's rate over WADO-RS's: the cost
# of the ZIP and DICOMDIR over plain streaming). --tiny (the test) uses a
# few 64 x 64 slices and one fetch.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
cloudpacs=${CLOUDPACS_BIN:-${CLOUDPACS_BUILD_ROOT:-$root/build}/src/cli/cloudpacs}
slices=500
size=real
repeat=3

while [ $# -gt 0 ]; do
    case $1 in
    --tiny) slices=4; size=tiny; repeat=1 ;;
    --slices) slices=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --cloudpacs) cloudpacs=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "film_download.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

for tool in curl pdftoppm zbarimg; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "# film_download: $tool is not installed: not measured"
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
    echo "film_download.sh: no answer at $1" >&2
    return 1
}

"$python" "$root/bench/gen_studies.py" --out "$work/study" --ct 1 --slices "$slices" \
    --size "$size" --transfer-syntax explicit --quiet
mapfile -t files < <(find "$work/study" -name '*.dcm' | sort)

printf '[film]\nlink_days = 30\n' > "$work/cloudpacs.ini"
token=bench-film-download-service-token
http=$(free_port)
env -u CLOUDPACS_REDIS_URL CLOUDPACS_CONFIG="$work/cloudpacs.ini" CLOUDPACS_HTTP_PORT="$http" \
    CLOUDPACS_DICOM_PORT="$(free_port)" CLOUDPACS_HTTP_TOKEN="$token" \
    CLOUDPACS_DATA_DIR="$work/data" "$cloudpacs" serve --services web,dispatch \
    > "$work/cloudpacs.out" 2> "$work/cloudpacs.log" &
server_pid=$!
base="http://127.0.0.1:$http"
wait_http "$base/api/health"
vars=$("$python" "$here/film_download_client.py" "$base" "$token" "$work" "${files[@]}")
film_token= cookie= study= bearer=
for kv in $vars; do
    case $kv in
    film_token=*) film_token=${kv#film_token=} ;;
    cookie=*) cookie=${kv#cookie=} ;;
    study=*) study=${kv#study=} ;;
    bearer=*) bearer=${kv#bearer=} ;;
    esac
done

# best_rate NAME CURL_ARGS...: the best of $repeat fetches, as "MB/s bytes seconds".
best_rate() {
    local best="" line bytes secs i
    for i in $(seq 1 "$repeat"); do
        line=$(curl -s -f -o /dev/null -w '%{size_download} %{time_total}' "$@")
        read -r bytes secs <<< "$line"
        if [ -z "$best" ] || awk -v a="$secs" -v b="${best#* }" 'BEGIN { exit !(a < b) }'; then
            best="$bytes $secs"
        fi
    done
    read -r bytes secs <<< "$best"
    awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f %d %.3f\n", b / s / 1e6, b, s }'
}

hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo "?"; }
rss_before=$(hwm)
read -r zip_rate zip_bytes zip_secs < <(best_rate -H "Cookie: $cookie" \
    "$base/film/api/$film_token/download.zip")
# The server's peak resident memory before and after: the archive is never held.
rss_after=$(hwm)
read -r wado_rate wado_bytes wado_secs < <(best_rate -H "Authorization: Bearer $bearer" \
    -H 'Accept: multipart/related; type="application/dicom"' "$base/dicom-web/studies/$study")

echo "# film_download: ${#files[@]} CT slices ($size), best of $repeat fetches by curl"
echo "figure film_download.zip.cloudpacs $zip_rate MB/s"
echo "# film_download.zip: $zip_bytes bytes in $zip_secs s (instances, REPORT.PDF, DICOMDIR)"
echo "# film_download.zip: server peak RSS $rss_before kB before the ZIP downloads," \
     "$rss_after kB after"
echo "figure film_download.wado.cloudpacs $wado_rate MB/s"
echo "# film_download.wado: $wado_bytes bytes in $wado_secs s (WADO-RS study, as stored)"
awk -v z="$zip_rate" -v w="$wado_rate" 'BEGIN {
    if (w > 0) printf "ratio film_download.zip_vs_wado %.2f\n", z / w }'
