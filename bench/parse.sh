#!/usr/bin/env bash
# parse.sh - header parsing throughput: cloudpacs against DCMTK and pydicom.
#
# Generates a study set with bench/gen_studies.py (CT, MR and CR studies with
# real-size headers; the pixel data is 64x64 unless --pixels full, because
# only headers are read), then reads the same files, from the page cache,
# with each system, single-threaded:
#
#   cloudpacs  bench_parse --passes K: dcm_file_read_path up to Pixel Data,
#              the attributes of an index row extracted, Patient's Name,
#              Patient ID, Accession Number and Study Description decoded to
#              UTF-8. Timed inside the program, over K passes.
#   dcmtk      dcmdump -q -s +U8 +sb 7fe0,0010 +P <tag> ... for the same
#              attributes: reading stops before Pixel Data, text is converted
#              to UTF-8, only the searched attributes are printed (to
#              /dev/null). xargs hands dcmdump up to 10000 files (2 MB of
#              arguments) per process: its start-up (about 20 ms of CPU,
#              mostly loading the data dictionary) is paid once per batch,
#              a few microseconds a file. The whole xargs run is timed.
#   pydicom    bench/parse_pydicom.py: dcmread(stop_before_pixels=True) and
#              the same attributes; only the reading loop is timed, not the
#              interpreter's start-up.
#
# Rates are per CPU second of the process (and, for dcmtk, its children) by
# default, so that other work on the machine disturbs them less; --clock wall
# uses wall time instead. Both times are printed as commentary. Each system
# is measured --repeat times and its fastest run kept.
#
# Output (bench/README.md): `figure parse_headers.<system> <rate> instances/s`
# per system, `ratio parse_headers.cloudpacs_vs_<peer> <x>` per peer measured,
# and the goals as `goal parse_headers.cloudpacs_vs_<peer> <x>`. With --check
# (implied by --tiny) the rows bench_parse extracts are compared with
# pydicom's, value by value, and any difference fails the run.
#
# The data is generated into a temporary directory and removed afterwards
# (unless --keep); nothing is committed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
bench_parse=${CLOUDPACS_BENCH_PARSE:-${CLOUDPACS_BUILD_ROOT:-$root/build}/bench/bench_parse}

count=3000
clock=cpu
tiny=0
keep=0
check=0
passes=5
peer_passes=1
repeat=3
size=real
pixels=tiny
syntax=implicit
seed=1
data_dir=

# The goals of the project's plan: cloudpacs at least this many times faster.
goal_dcmtk=10
goal_pydicom=50

usage() {
    cat <<EOF
usage: bench/parse.sh [options]
  --count N           about N instances (default 3000)
  --tiny              a few dozen instances, one pass, rows checked (the test)
  --passes K          passes of bench_parse over the files (default 5)
  --peer-passes K     passes of dcmdump and pydicom (default 1)
  --repeat R          measure each system R times, keep the fastest (default 3)
  --size S            tiny|small|real header sizes (default real)
  --pixels P          tiny|full pixel data (default tiny: headers only matter)
  --transfer-syntax T implicit|explicit|mixed (default implicit, as modalities
                      send; --tiny uses mixed)
  --seed N            generator seed (default 1)
  --dir DIR           read the files already in DIR instead of generating
  --clock C           cpu|wall: rates per CPU second (default) or wall second
  --check             compare cloudpacs's rows with pydicom's
  --keep              keep the generated files and print where they are
  --bench-parse PATH  the bench_parse binary (default \$CLOUDPACS_BENCH_PARSE,
                      else \$CLOUDPACS_BUILD_ROOT/bench/bench_parse)
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2; shift ;;
    --tiny) tiny=1 ;;
    --passes) passes=$2; shift ;;
    --peer-passes) peer_passes=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --size) size=$2; shift ;;
    --pixels) pixels=$2; shift ;;
    --transfer-syntax) syntax=$2; shift ;;
    --seed) seed=$2; shift ;;
    --dir) data_dir=$2; shift ;;
    --check) check=1 ;;
    --clock) clock=$2; shift ;;
    --keep) keep=1 ;;
    --bench-parse) bench_parse=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "parse.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$bench_parse" ]; then
    echo "parse.sh: no bench_parse at $bench_parse (build it, or pass --bench-parse)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-bench-parse.XXXXXX")
cleanup() {
    if [ "$keep" = 1 ]; then
        echo "# kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# The study mix: about 60% of the instances in CT series, 30% in MR (3 or 4
# series a study), 10% in CR (1 or 2 images a study, so many patients).
if [ "$tiny" = 1 ]; then
    passes=1
    repeat=1
    check=1
    syntax=mixed
    gen_counts=(--ct 1 --slices 10 --mr 1 --mr-slices 4 --cr 8)
else
    slices=200
    mr_slices=24
    ct=$(( (count * 6 / 10 + slices / 2) / slices ))
    mr=$(( (count * 3 / 10 * 3 + 10 * mr_slices / 2) / (10 * mr_slices) ))
    cr=$(( (count / 10 * 10 + 17 / 2) / 17 ))
    gen_counts=(--ct $(( ct > 0 ? ct : 1 )) --slices $slices --mr $mr
                --mr-slices $mr_slices --cr $cr)
fi

if [ -z "$data_dir" ]; then
    data_dir=$work/studies
    "$python" "$here/gen_studies.py" --out "$data_dir" --seed "$seed" --size "$size" \
        --pixels "$pixels" --transfer-syntax "$syntax" "${gen_counts[@]}" | sed 's/^/# /'
fi

list=$work/files.txt
find "$data_dir" -type f -name '*.dcm' | LC_ALL=C sort > "$list"
files=$(wc -l < "$list")
if [ "$files" -eq 0 ]; then
    echo "parse.sh: no .dcm files under $data_dir" >&2
    exit 1
fi
echo "# $files files, $(du -sh "$data_dir" | cut -f1) under $data_dir"

# The rate of a figure line, or nothing when the line is missing.
rate_of() {
    awk -v name="$1" '$1 == "figure" && $2 == name { print $3 }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b }'
}

# Runs a command with its output discarded; prints its wall and CPU seconds
# (user and system, of the command and all its descendants).
timed() {
    "$python" -c '
import resource, subprocess, sys, time
wall = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.perf_counter() - wall
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.6f %.6f" % (wall, r.ru_utime + r.ru_stime))
' "$@"
}

status=0
have_pydicom=0
if "$python" -c 'import pydicom' 2> /dev/null; then
    have_pydicom=1
fi

if [ "$check" = 1 ] && [ "$have_pydicom" = 0 ]; then
    echo "# check: pydicom not importable by $python, rows not checked"
elif [ "$check" = 1 ]; then
    "$bench_parse" --print --files-from "$list" > "$work/rows.cloudpacs.tsv"
    "$python" "$here/parse_pydicom.py" --print --files-from "$list" \
        > "$work/rows.pydicom.tsv"
    if cmp -s "$work/rows.cloudpacs.tsv" "$work/rows.pydicom.tsv"; then
        echo "# check: cloudpacs and pydicom extract the same $files rows"
    else
        echo "parse.sh: cloudpacs and pydicom rows differ (< cloudpacs, > pydicom):" >&2
        diff "$work/rows.cloudpacs.tsv" "$work/rows.pydicom.tsv" | head -20 >&2 || true
        status=1
    fi
fi

# dcmdump over the file list, printing a figure line like the others do.
run_dcmtk() {
    local tags=(0010,0020 0010,0010 0010,0030 0010,0040 0020,000d 0020,000e
                0008,0018 0008,0016 0008,0050 0008,0020 0008,0030 0008,0060
                0018,0015 0020,0011 0020,0013 0008,1030 0028,0010 0028,0011
                0028,0008 0002,0010)
    local search=() tag times w c wall=0 cpu=0 seconds pass
    local n=$(( files * peer_passes ))

    for tag in "${tags[@]}"; do
        search+=(+P "$tag")
    done
    for (( pass = 0; pass < peer_passes; pass++ )); do
        times=$(timed xargs -a "$list" -n 10000 -s 2000000 \
            dcmdump -q -s +U8 +sb 7fe0,0010 "${search[@]}")
        read -r w c <<< "$times"
        wall=$(awk -v a="$wall" -v b="$w" 'BEGIN { print a + b }')
        cpu=$(awk -v a="$cpu" -v b="$c" 'BEGIN { print a + b }')
    done
    seconds=$([ "$clock" = wall ] && echo "$wall" || echo "$cpu")
    awk -v n="$n" -v s="$seconds" \
        'BEGIN { printf "figure parse_headers.dcmtk %.0f instances/s\n", n / s }'
    printf '# parse_headers.dcmtk: %d files x %d passes = %d instances' \
        "$files" "$peer_passes" "$n"
    printf ' in %.3f s wall, %.3f s cpu\n' "$wall" "$cpu"
}

# Runs a measuring command --repeat times and keeps the fastest run, the one
# least disturbed by other work on the machine; sets `best` to its rate.
measure() {
    local name=$1 out rate run rates=() best_out=
    shift

    best=
    for (( run = 0; run < repeat; run++ )); do
        out=$("$@")
        rate=$(rate_of "$name" <<< "$out")
        if [ -z "$rate" ]; then
            echo "parse.sh: no figure line for $name" >&2
            exit 1
        fi
        rates+=("$rate")
        if [ -z "$best" ] || [ "$rate" -gt "$best" ]; then
            best=$rate
            best_out=$out
        fi
    done
    echo "$best_out"
    if [ "$repeat" -gt 1 ]; then
        echo "# $name: fastest of $repeat runs: ${rates[*]} instances/s"
    fi
}

measure parse_headers.cloudpacs \
    "$bench_parse" --passes "$passes" --clock "$clock" --files-from "$list"
rate_cloudpacs=$best

rate_dcmtk=
if command -v dcmdump > /dev/null; then
    measure parse_headers.dcmtk run_dcmtk
    rate_dcmtk=$best
else
    echo "# dcmtk: dcmdump not found, not measured"
fi

rate_pydicom=
if [ "$have_pydicom" = 1 ]; then
    measure parse_headers.pydicom "$python" "$here/parse_pydicom.py" \
        --passes "$peer_passes" --clock "$clock" --files-from "$list"
    rate_pydicom=$best
else
    echo "# pydicom: not importable by $python, not measured"
fi

if [ -n "$rate_dcmtk" ]; then
    echo "ratio parse_headers.cloudpacs_vs_dcmtk $(ratio "$rate_cloudpacs" "$rate_dcmtk")"
fi
if [ -n "$rate_pydicom" ]; then
    echo "ratio parse_headers.cloudpacs_vs_pydicom $(ratio "$rate_cloudpacs" "$rate_pydicom")"
fi
echo "goal parse_headers.cloudpacs_vs_dcmtk $goal_dcmtk"
echo "goal parse_headers.cloudpacs_vs_pydicom $goal_pydicom"

exit $status
