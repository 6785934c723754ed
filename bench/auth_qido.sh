#!/usr/bin/env bash
# auth_qido.sh - what identity costs a search: QIDO-RS /studies (PS3.18
# 10.6) requests per second from 4 concurrent clients, once with a user's
# session token and once with the service token, against the same server
# and the same studies.
#
# With a session token each request resolves the token in Redis (renewing
# its idle expiry), takes the principal from the profile cache, limits the
# search to the user's institutions and writes an audit record; with the
# service token it is a constant-time compare, no Redis, no limit (the
# audit record is written too). The server is `cloudpacs serve --services
# web` with its embedded redis-server; bench/auth_qido_client.py makes a
# hospital, a technician of it and its API token, stores N studies under
# that token (so the technician sees all of them, as the service does),
# signs in and then drives 4 client processes over keep-alive connections
# for S seconds per round. Rounds alternate (service, session, service,
# session) and the better of each is kept.
#
# Output (bench/README.md): `figure auth_qido.service_token <x> requests/s`,
# `figure auth_qido.session <x> requests/s`, `ratio auth_qido.session_vs_
# service <x>` (session over service: 1 means identity costs nothing), and
# the goal: under 10% lost, a ratio of at least 0.90. --tiny (the test) uses
# 5 studies and half-second rounds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
cloudpacs=${CLOUDPACS_BIN:-${CLOUDPACS_BUILD_ROOT:-$root/build}/src/cli/cloudpacs}
studies=50
seconds=5
clients=4
goal=0.90

while [ $# -gt 0 ]; do
    case $1 in
    --tiny) studies=5; seconds=0.5 ;;
    --studies) studies=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --cloudpacs) cloudpacs=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "auth_qido.sh: unknown option $1" >&2; exit 2 ;;
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
    echo "auth_qido.sh: no answer at $1" >&2
    tail -20 "$work/cloudpacs.log" >&2 || true
    return 1
}

service=bench-auth-service-token-$$
http=$(free_port)
base="http://127.0.0.1:$http"
env -u CLOUDPACS_CONFIG -u CLOUDPACS_REDIS_URL CLOUDPACS_HTTP_PORT="$http" \
    CLOUDPACS_DICOM_PORT="$(free_port)" CLOUDPACS_HTTP_TOKEN="$service" \
    CLOUDPACS_LOG_LEVEL=warn CLOUDPACS_DATA_DIR="$work/cloudpacs" \
    "$cloudpacs" serve --services web > "$work/cloudpacs.out" 2> "$work/cloudpacs.log" &
server_pid=$!
wait_http "$base/api/health"

session=$("$python" "$here/auth_qido_client.py" setup "$base" "$service" "$studies")
path="/dicom-web/studies?limit=20"

best_service=0
best_session=0
for round in 1 2; do
    r=$("$python" "$here/auth_qido_client.py" run "$base" "$service" "$seconds" \
        "$clients" "$path")
    echo "# round $round: service token $r requests/s"
    best_service=$("$python" -c 'import sys; print(max(float(a) for a in sys.argv[1:]))' \
        "$best_service" "$r")
    r=$("$python" "$here/auth_qido_client.py" run "$base" "$session" "$seconds" \
        "$clients" "$path")
    echo "# round $round: session token $r requests/s"
    best_session=$("$python" -c 'import sys; print(max(float(a) for a in sys.argv[1:]))' \
        "$best_session" "$r")
done

kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=

echo "# $studies studies, $clients clients, ${seconds}s per round, GET $path"
echo "figure auth_qido.service_token $best_service requests/s"
echo "figure auth_qido.session $best_session requests/s"
"$python" - "$best_session" "$best_service" "$goal" <<'PY'
import sys
session, service, goal = (float(a) for a in sys.argv[1:4])
ratio = session / service if service > 0 else 0.0
print("ratio auth_qido.session_vs_service %.3f" % ratio)
print("goal auth_qido.session_vs_service >= %.2f: %s (%.3f)" % (
    goal, "met" if ratio >= goal else "missed", ratio))
PY
