#!/usr/bin/env bash
# film_pdf.sh - what cloud film's documents cost to make (src/film/pdf.h,
# src/film/sheet.h): report PDFs per second (pdf_render: one A4 page with
# a Chinese name, the findings, the impression and the QR code of a share
# link) and electronic film sheets per second (14x17 in, 4x5 grid, 150
# dpi: twenty 512x512 CT slices decoded, windowed, scaled and annotated),
# as PDF pages and as PNGs. One thread, from memory: no store, no index,
# no HTTP. There is no peer to compare with and no goal ratio: the figures
# are cloudpacs's own.
#
# Output (bench/README.md):
#   figure film_pdf.report.cloudpacs <n> pdfs/s          (per CPU second)
#   figure film_pdf.sheet_pdf.cloudpacs <n> sheets/s
#   figure film_pdf.sheet_png.cloudpacs <n> sheets/s
# each also as <name>.cloudpacs_wall (per wall second) and <name>.bytes
# (one document's size). --tiny (the test): 64x64 slices, 0.2 s each.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=${CLOUDPACS_BUILD_ROOT:-$root/build}
bench_film_pdf=${CLOUDPACS_BENCH_FILM_PDF:-$build/bench/bench_film_pdf}
seconds=3
tiny=0

usage() {
    cat <<USAGE
usage: bench/film_pdf.sh [options]
  --seconds S            seconds per figure (default 3)
  --tiny                 64x64 slices, 0.2 s per figure (the test)
  --bench-film-pdf PATH  the bench_film_pdf binary (default \$CLOUDPACS_BENCH_FILM_PDF,
                         else \$CLOUDPACS_BUILD_ROOT/bench/bench_film_pdf)
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift ;;
    --tiny) tiny=1 ;;
    --bench-film-pdf) bench_film_pdf=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "film_pdf.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$bench_film_pdf" ]; then
    echo "film_pdf.sh: no bench_film_pdf at $bench_film_pdf" \
         "(build it, or pass --bench-film-pdf)" >&2
    exit 2
fi
fonts=$(fc-list : family 2> /dev/null || true)
if ! grep -q "Noto Sans CJK" <<< "$fonts"; then
    echo "# fonts-noto-cjk is not installed: Chinese text falls back to another font"
fi
echo "# $(nproc) cores"

if [ "$tiny" = 1 ]; then
    out=$("$bench_film_pdf" --tiny)
else
    out=$("$bench_film_pdf" --seconds "$seconds")
fi
echo "$out"

missing=0
for name in report sheet_pdf sheet_png; do
    if ! awk -v n="film_pdf.$name.cloudpacs" '$1 == "figure" && $2 == n { found = 1 }
                                              END { exit !found }' <<< "$out"; then
        echo "film_pdf.sh: no figure film_pdf.$name.cloudpacs" >&2
        missing=1
    fi
done
exit "$missing"
