#!/usr/bin/env bash
# dispatch_day.sh - a simulated day of remote reading through the dispatch
# engine (src/consult/dispatch.h) and the report workflow (report.h), in
# accelerated time, at several utilisation levels (bench/README.md).
#
# Starts its own redis-server (no TCP port, a Unix socket in a temporary
# directory, no persistence), runs bench_dispatch_day against it with fresh
# SQLite databases (directory, orders and reports) in the same temporary
# directory, then stops exactly that server and removes the directory.
# There is no peer to compare with: the figures are cloudpacs's own.
#
# Output, per level L (percent utilisation):
#   figure dispatch_day.uL.<what>.cloudpacs <value> <unit>
#   goal dispatch_day.reported_in_deadline.cloudpacs >= 1.00 up to u85: met|missed
#   goal dispatch_day.system_part.cloudpacs < 1000 ms: met|missed
# --tiny (the test): a two-hour morning of 30 orders at one level.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build_root=${CLOUDPACS_BUILD_ROOT:-$root/build}
bench_bin=${CLOUDPACS_BENCH_DISPATCH_DAY:-$build_root/bench/bench_dispatch_day}
orders=300
levels=50,70,85,95
tick=2
seed=1
tiny=0
duty_all=0
keep=0

usage() {
    cat <<USAGE
usage: bench/dispatch_day.sh [options]
  --orders N                 orders in the day (default 300)
  --levels L,L,...           utilisation levels in percent (default 50,70,85,95)
  --tick S                   simulated seconds between engine ticks (default 2)
  --seed N                   the day's random seed (default 1)
  --duty-all                 every doctor on shift on the fallback roster (default:
                             the night doctors, one day and one late doctor)
  --tiny                     a two-hour morning, 30 orders, level 70 (the test)
  --keep                     keep the temporary directory
  --bench-dispatch-day PATH  the binary (default \$CLOUDPACS_BENCH_DISPATCH_DAY,
                             else \$CLOUDPACS_BUILD_ROOT/bench/bench_dispatch_day)
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
    --orders) orders=$2; shift ;;
    --levels) levels=$2; shift ;;
    --tick) tick=$2; shift ;;
    --seed) seed=$2; shift ;;
    --tiny) tiny=1 ;;
    --duty-all) duty_all=1 ;;
    --keep) keep=1 ;;
    --bench-dispatch-day) bench_bin=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "dispatch_day.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$bench_bin" ]; then
    echo "dispatch_day.sh: no bench_dispatch_day at $bench_bin" \
         "(build it, or pass --bench-dispatch-day)" >&2
    exit 2
fi
if ! command -v redis-server > /dev/null; then
    echo "# redis-server: not installed; nothing measured"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-bench-dispatch.XXXXXX")
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
    echo "dispatch_day.sh: redis-server did not start:" >&2
    tail -5 "$work/redis.log" >&2
    exit 1
fi
echo "# $(redis-server --version | cut -d' ' -f1-3), Unix socket, no persistence;" \
     "SQLite in $work ($(df -P "$work" | awk 'NR == 2 { print $1 }')); $(nproc) cores"

args=(--redis "unix://$sock" --work "$work" --tick "$tick" --seed "$seed")
if [ "$duty_all" = 1 ]; then
    args+=(--duty-all)
fi
if [ "$tiny" = 1 ]; then
    args+=(--tiny --levels 70)
    expect=(70)
else
    args+=(--orders "$orders" --levels "$levels")
    IFS=, read -r -a expect <<< "$levels"
fi
out=$("$bench_bin" "${args[@]}")
echo "$out"

missing=0
for level in "${expect[@]}"; do
    for what in in_deadline in_30min turnaround_median turnaround_p95 fallback \
                orders_read_max units_per_shift_hour_cv grab_latency_p99 system_part_median; do
        name="dispatch_day.u$level.$what.cloudpacs"
        if ! awk -v n="$name" '$1 == "figure" && $2 == n { found = 1 }
                                END { exit !found }' <<< "$out"; then
            echo "dispatch_day.sh: no figure $name" >&2
            missing=1
        fi
    done
done
if ! grep -q '^goal dispatch_day.system_part.cloudpacs' <<< "$out"; then
    echo "dispatch_day.sh: no goal line" >&2
    missing=1
fi
exit "$missing"
