#!/usr/bin/env bash
# smb_intake.sh - intake throughput from an SMB share: cloudpacs's
# [intake.*] source taking files off a share (read over SMB2/3 in chunks,
# parsed, blob fsynced, index row committed, ledger row written) beside
# `smbclient ... mget *` copying the same files off the same share, the
# floor it should approach. A smbd of its own serves the generated files
# on a free loopback port from the work directory (bench/smb_intake_driver.py
# has the details). Needs root (smbd), samba and smbclient.
#
# Output (bench/README.md): `figure smb_intake.<system> <x> files/s`,
# `figure smb_intake_mbs.<system> <x> MB/s`,
# `ratio smb_intake.cloudpacs_vs_smbclient_mget <x>` and its goal.
# --tiny (the test) uses a dozen 64x64 instances and one run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${CLOUDPACS_BENCH_PYTHON:-/usr/bin/python3}
cloudpacs=${CLOUDPACS_BIN:-${CLOUDPACS_BUILD_ROOT:-$root/build}/src/cli/cloudpacs}

ct=1
slices=200
cr=5
size=real
repeat=2
jobs=4
keep=0

usage() {
    cat <<USAGE
usage: bench/smb_intake.sh [options]
  --ct N --slices N    CT studies and slices per series (default 1 x 200)
  --cr N               CR studies (default 5)
  --size S             real|small|tiny (default real)
  --repeat R           runs of each, the fastest kept (default 2)
  --jobs N             files the intake source takes at once (default 4)
  --tiny               a dozen tiny instances, one run (the test)
  --keep               keep the work directory
  --cloudpacs PATH     the cloudpacs binary (default \$CLOUDPACS_BIN, else
                       \$CLOUDPACS_BUILD_ROOT/src/cli/cloudpacs)
USAGE
}

while (($#)); do
    case "$1" in
        --ct) ct=$2; shift ;;
        --slices) slices=$2; shift ;;
        --cr) cr=$2; shift ;;
        --size) size=$2; shift ;;
        --repeat) repeat=$2; shift ;;
        --jobs) jobs=$2; shift ;;
        --tiny) ct=1; slices=10; cr=2; size=tiny; repeat=1 ;;
        --keep) keep=1 ;;
        --cloudpacs) cloudpacs=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

for tool in smbd smbclient smbpasswd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "# $tool: not installed, not measured (scripts/deps.sh --test)"
        exit 0
    fi
done
if [[ $(id -u) -ne 0 ]]; then
    echo "# smbd needs root here: not measured"
    exit 0
fi
if [[ ! -x "$cloudpacs" ]]; then
    echo "smb_intake.sh: no cloudpacs binary at $cloudpacs" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudpacs-smb-intake.XXXXXX")
cleanup() {
    if ((keep)); then
        echo "# kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

"$python" "$here/gen_studies.py" --out "$work/share" --ct "$ct" --slices "$slices" \
    --cr "$cr" --size "$size" --quiet >/dev/null
"$python" "$here/smb_intake_driver.py" --cloudpacs "$cloudpacs" --share "$work/share" \
    --work "$work" --repeat "$repeat" --jobs "$jobs"
