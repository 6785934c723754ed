#!/usr/bin/env bash
# session.sh - the session layer's throughput (src/auth/session.h): bearer
# tokens resolved to principals per second from one thread and from four,
# API tokens resolved per second, and logins per second.
#
# Starts its own redis-server (no TCP port, a Unix socket in a temporary
# directory, no persistence), runs bench_session against it with a fresh
# directory database in the same temporary directory, then stops exactly
# that server and removes the directory. There is no peer to compare with:
# the figures are cloudpacs's own.
#
# Output (bench/README.md):
#   figure session_resolve.1thread.cloudpacs <n> resolves/s
#   figure session_resolve.4threads.cloudpacs <n> resolves/s
#   figure session_resolve_token.1thread.cloudpacs <n> resolves/s
#   figure session_login.cloudpacs <n> logins/s
#   figure session_password_verify.cloudpacs <n> verifies/s
# Logins are bound by Argon2id by design (libsodium's interactive limits,
# 64 MiB per verify): the verify rate alone is printed beside them.
# --tiny (the test) resolves for 0.2 s per figure and logs in twice.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
bench_session=${CLOUDPACS_BENCH_SESSION:-${CLOUDPACS_BUILD_ROOT:-$root/build}/bench/bench_session}
seconds=3
logins=20
tiny=0
keep=0

usage() {
    cat <<USAGE
usage: bench/session.sh [options]
  --seconds S            seconds of resolving per figure (default 3)
  --logins N             logins timed (default 20)
  --tiny                 0.2 s per figure, 2 logins (the test)
  --keep                 keep the temporary directory
  --bench-session PATH   the bench_session binary (default \$CLOUDPACS_BENCH_SESSION,
                         else \$CLOUDPACS_BUILD_ROOT/bench/bench_session)
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift ;;
    --logins) logins=$2; shift ;;
    --tiny) tiny=1 ;;
    --keep) keep=1 ;;
    --bench-session) bench_session=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "session.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$bench_session" ]; then
    echo "session.sh: no bench_session at $bench_session (build it, or pass --bench-session)" >&2
    exit 2
fi
if ! command -v redis-server > /dev/null; then
    echo "# redis-server: not installed; nothing measured"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-bench-session.XXXXXX")
sock="$work/redis.sock"
redis_pid=
cleanup() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2> /dev/null || true
        wait "$redis_pid" 2> /dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "# kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no --dir "$work" \
    > "$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 200); do
    [ -S "$sock" ] && break
    sleep 0.05
done
if [ ! -S "$sock" ]; then
    echo "session.sh: redis-server did not start:" >&2
    tail -5 "$work/redis.log" >&2
    exit 1
fi
echo "# $(redis-server --version | cut -d' ' -f1-3), Unix socket, no persistence;" \
     "$(nproc) cores"

args=(--redis "unix://$sock" --work "$work")
if [ "$tiny" = 1 ]; then
    args+=(--tiny)
else
    args+=(--seconds "$seconds" --logins "$logins")
fi
out=$("$bench_session" "${args[@]}")
echo "$out"

missing=0
for name in session_resolve.1thread session_resolve.4threads session_resolve_token.1thread \
            session_login session_password_verify; do
    if ! awk -v n="$name.cloudpacs" '$1 == "figure" && $2 == n { found = 1 }
                                       END { exit !found }' <<< "$out"; then
        echo "session.sh: no figure $name.cloudpacs" >&2
        missing=1
    fi
done
exit "$missing"
