#!/usr/bin/env bash
# decode.sh - frame decoding throughput: cloudpacs against DCMTK.
#
# Generates two multi-frame images with bench/gen_frames.py: CT-like
# (512 x 512, 12 bits signed in 16; --ct-frames frames, default 50) and
# CR-like (2500 x 2000, 12 bits unsigned; --cr-frames, default 8). Each is
# kept native and encoded with dcmcjpeg +e1 (JPEG lossless process 14 SV1,
# 1.2.840.10008.1.2.4.70) and dcmcrle (RLE Lossless). Then, from the page
# cache, single-threaded:
#
#   cloudpacs  bench_decode --passes K on the six files: each frame located
#              and decoded to samples, K times; timed inside the program.
#   dcmtk      dcmdjpeg and dcmdrle on the compressed files, --peer-passes
#              times. A DCMTK tool reads the file, decodes every frame and
#              writes an uncompressed file; to leave the decoding alone, the
#              time of `dcmconv +te` on the native file of the same image
#              (the same reading, parsing and writing of the same bytes, no
#              codec) is subtracted. Many frames per process amortise the
#              start-up. Both the raw and the net times are printed.
#
# Output (bench/README.md): `figure decode.<syntax>.<system> <rate> frames/s`
# per syntax and system (plus megapixels/s for cloudpacs), and
# `ratio decode.<syntax>.cloudpacs_vs_dcmtk <x>` computed over the same
# frames (CT and CR together). --tiny (the test) makes 64 x 64 and 250 x 200
# images of a few frames, one pass, and checks that every frame decodes.
# Rates are per CPU second by default (--clock wall for wall time).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
bench_decode=${CLOUDPACS_BENCH_DECODE:-${CLOUDPACS_BUILD_ROOT:-$root/build}/bench/bench_decode}

ct_frames=50
cr_frames=8
ct_size=(512 512)
cr_size=(2500 2000)
passes=5
peer_passes=3
clock=cpu
keep=0

# The goal of the project's plan: at least as fast as DCMTK's dcmdjpeg.
goal_dcmtk=1

usage() {
    cat <<USAGE
usage: bench/decode.sh [options]
  --ct-frames N        frames of the CT-like image (default 50)
  --cr-frames N        frames of the CR-like image (default 8)
  --passes K           passes of bench_decode (default 5)
  --peer-passes K      runs of each DCMTK tool (default 3)
  --clock C            cpu|wall (default cpu)
  --tiny               small images, one pass (the test)
  --keep               keep the generated files
  --bench-decode PATH  the bench_decode binary (default \$CLOUDPACS_BENCH_DECODE,
                       else \$CLOUDPACS_BUILD_ROOT/bench/bench_decode)
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
    --ct-frames) ct_frames=$2; shift ;;
    --cr-frames) cr_frames=$2; shift ;;
    --passes) passes=$2; shift ;;
    --peer-passes) peer_passes=$2; shift ;;
    --clock) clock=$2; shift ;;
    --tiny) ct_frames=4; cr_frames=2; ct_size=(64 64); cr_size=(250 200)
            passes=1; peer_passes=1 ;;
    --keep) keep=1 ;;
    --bench-decode) bench_decode=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "decode.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$bench_decode" ]; then
    echo "decode.sh: no bench_decode at $bench_decode (build it, or pass --bench-decode)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-bench-decode.XXXXXX")
cleanup() {
    if [ "$keep" = 1 ]; then
        echo "# kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

have_dcmtk=1
for tool in dcmcjpeg dcmcrle dcmdjpeg dcmdrle dcmconv; do
    command -v "$tool" > /dev/null || have_dcmtk=0
done
if [ "$have_dcmtk" = 0 ]; then
    echo "# dcmtk: tools not found; the encoded files cannot be made, nothing measured"
    exit 0
fi

"$python" "$here/gen_frames.py" --out "$work/ct.dcm" --kind ct --frames "$ct_frames" \
    --rows "${ct_size[0]}" --columns "${ct_size[1]}"
"$python" "$here/gen_frames.py" --out "$work/cr.dcm" --kind cr --frames "$cr_frames" \
    --rows "${cr_size[0]}" --columns "${cr_size[1]}"
for img in ct cr; do
    dcmcjpeg +e1 "$work/$img.dcm" "$work/${img}_jpeg_lossless.dcm"
    dcmcrle "$work/$img.dcm" "$work/${img}_rle.dcm"
done
echo "# CT ${ct_size[0]}x${ct_size[1]} x $ct_frames frames, CR ${cr_size[0]}x${cr_size[1]}" \
     "x $cr_frames frames: $(du -sh "$work" | cut -f1) under $work"

rate_of() {
    awk -v name="$1" '$1 == "figure" && $2 == name { print $3 }'
}

# Runs a command with its output discarded; prints its wall and CPU seconds.
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

# Seconds (by the chosen clock) of `peer_passes` runs of a command.
seconds_of() {
    local total=0 w c
    for (( pass = 0; pass < peer_passes; pass++ )); do
        read -r w c <<< "$(timed "$@")"
        total=$(awk -v a="$total" -v w="$w" -v c="$c" -v k="$clock" \
            'BEGIN { print a + (k == "wall" ? w : c) }')
    done
    echo "$total"
}

out=$("$bench_decode" --passes "$passes" --clock "$clock" \
    "$work/ct.dcm" "$work/cr.dcm" \
    "$work/ct_jpeg_lossless.dcm" "$work/cr_jpeg_lossless.dcm" \
    "$work/ct_rle.dcm" "$work/cr_rle.dcm")
echo "$out"

frames=$(( ct_frames + cr_frames ))
for syntax in jpeg_lossless rle; do
    tool=$([ "$syntax" = rle ] && echo dcmdrle || echo dcmdjpeg)
    raw=0
    base=0
    for img in ct cr; do
        s=$(seconds_of "$tool" "$work/${img}_$syntax.dcm" "$work/out.dcm")
        b=$(seconds_of dcmconv +te "$work/$img.dcm" "$work/out.dcm")
        raw=$(awk -v a="$raw" -v s="$s" 'BEGIN { print a + s }')
        base=$(awk -v a="$base" -v s="$b" 'BEGIN { print a + s }')
    done
    n=$(( frames * peer_passes ))
    net=$(awk -v r="$raw" -v b="$base" 'BEGIN { d = r - b; print (d > 1e-6 ? d : 1e-6) }')
    rate_raw=$(awk -v n="$n" -v s="$raw" 'BEGIN { printf "%.1f", n / s }')
    rate=$(awk -v n="$n" -v s="$net" 'BEGIN { printf "%.1f", n / s }')
    echo "figure decode.$syntax.dcmtk $rate frames/s"
    echo "# decode.$syntax.dcmtk: $n frames with $tool in $raw s ($clock), of which" \
         "$base s reading and writing (dcmconv); $rate_raw frames/s including them"

    ours=$(rate_of "decode.$syntax.cloudpacs" <<< "$out")
    if [ -n "$ours" ]; then
        echo "ratio decode.$syntax.cloudpacs_vs_dcmtk" \
             "$(awk -v a="$ours" -v b="$rate" 'BEGIN { printf "%.1f", a / b }')"
        echo "# decode.$syntax: against dcmtk's whole run (file writing included):" \
             "$(awk -v a="$ours" -v b="$rate_raw" 'BEGIN { printf "%.1f", a / b }')"
    fi
    echo "goal decode.$syntax.cloudpacs_vs_dcmtk $goal_dcmtk"
done
