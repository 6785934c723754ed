#!/usr/bin/env bash
# Builds cloudpacs and runs every test: unit tests (cmocka), the stored fuzz
# corpora, the integration tests against real clients (pytest with pydicom,
# DCMTK), each benchmark once at a tiny size, a warning-clean build under
# clang, and each fuzz target for a short while under libFuzzer.
#
#   scripts/test.sh              everything above
#   scripts/test.sh --sanitize   the unit tests and corpora again under
#                                AddressSanitizer and UndefinedBehaviorSanitizer
#
# FUZZ_SECONDS (default 20) sets how long each fuzz target runs.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh --test || exit 1

passed=0
failed=0
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

# Adds the Ok/Fail counts of a `meson test` run to the totals.
count_meson() {
    local ok fail
    ok=$(awk '/^Ok:/ {print $2}' "$1")
    fail=$(awk '/^(Fail|Unexpected Pass|Timeout):/ {s += $NF} END {print s + 0}' "$1")
    passed=$((passed + ${ok:-0}))
    failed=$((failed + ${fail:-0}))
}

# Adds the counts of a pytest run to the totals.
count_pytest() {
    local line p f e
    line=$(grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$1" | tail -n 1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | awk '{print $1}')
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | awk '{print $1}')
    e=$(grep -oE '[0-9]+ error' <<<"$line" | awk '{print $1}')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0} + ${e:-0}))
}

# Counts a runner's results with $2 over its log $3; a runner that failed
# (status $1) without reporting a failure still counts as one.
runner_status() {
    local status=$1 before=$failed
    "$2" "$3"
    if [[ $status -ne 0 && $failed -eq $before ]]; then
        failed=$((failed + 1))
    fi
}

setup() {
    local dir=$1
    shift
    if [[ -d "$dir" ]]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null || return 1
    else
        meson setup "$dir" "$@" >/dev/null || return 1
    fi
}

step() {
    echo "== $*" >&2
}

if [[ "${1:-}" == "--sanitize" ]]; then
    step "unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
    setup build-sanitize -Dsanitize=true -Db_lundef=false || exit 1
    ninja -C build-sanitize || exit 1
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        meson test -C build-sanitize --suite unit --suite fuzz-corpus --print-errorlogs \
        | tee "$log_dir/sanitize.log"
    runner_status ${PIPESTATUS[0]} count_meson "$log_dir/sanitize.log"
    echo "sanitize: $passed passed, $failed failed"
    [[ $failed -eq 0 ]]
    exit
fi

step "build (gcc)"
setup build || exit 1
ninja -C build || exit 1
scripts/viewer.sh || exit 1
scripts/console.sh || exit 1

step "build (release, as scripts/run.sh builds it)"
setup build-release --buildtype=release -Dtests=disabled || exit 1
ninja -C build-release || exit 1

step "build (clang, warnings are errors)"
CC=clang CXX=clang++ setup build-clang || exit 1
ninja -C build-clang || exit 1

step "unit tests, fuzz corpora, benchmarks at a tiny size"
meson test -C build --print-errorlogs | tee "$log_dir/meson.log"
runner_status ${PIPESTATUS[0]} count_meson "$log_dir/meson.log"

step "integration tests"
CLOUDPACS_BIN="$root/build/src/cli/cloudpacs" /usr/bin/python3 -m pytest -q \
    -p no:cacheprovider tests/integration | tee "$log_dir/pytest.log"
runner_status ${PIPESTATUS[0]} count_pytest "$log_dir/pytest.log"

step "fuzz targets (${FUZZ_SECONDS:-20}s each)"
CC=clang CXX=clang++ setup build-fuzz -Dfuzz=true || exit 1
ninja -C build-fuzz || exit 1
for target in build-fuzz/tests/fuzz/fuzz_*; do
    [[ -f "$target" && -x "$target" && "$target" != *_replay ]] || continue
    name=$(basename "$target")
    corpus="$log_dir/corpus-$name"
    mkdir -p "$corpus"
    if "$target" -max_total_time="${FUZZ_SECONDS:-20}" -print_final_stats=0 \
        -artifact_prefix="$log_dir/" "$corpus" "tests/fuzz/corpus/${name#fuzz_}" \
        >"$log_dir/$name.log" 2>&1; then
        passed=$((passed + 1))
        echo "fuzz $name: ok ($(grep -c . "$log_dir/$name.log") log lines)"
    else
        failed=$((failed + 1))
        echo "fuzz $name: FAILED" >&2
        tail -n 40 "$log_dir/$name.log" >&2
        mkdir -p tests/fuzz/artifacts
        cp "$log_dir"/crash-* "$log_dir"/leak-* "$log_dir"/timeout-* tests/fuzz/artifacts/ \
            2>/dev/null || true
    fi
done

echo "tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
