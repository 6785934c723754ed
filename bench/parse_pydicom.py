#!/usr/bin/python3
"""parse_pydicom.py - the pydicom side of bench/parse.sh.

Does with pydicom what bench_parse does with cloudpacs: reads each Part 10
file (PS3.10 section 7) up to Pixel Data, takes the attributes of one index
row with their text decoded by Specific Character Set (PS3.5 section 6.1),
and splits Patient's Name into its component groups (PS3.5 6.2.1.2). Prints

    figure parse_headers.pydicom <instances/s> instances/s

or, with --print, each row as tab-separated text in the column order of
bench_parse --print, so that the two readers can be compared value by value.
Only the reading loop is timed, not the interpreter's start-up, by process
CPU time unless --clock wall. Run it with /usr/bin/python3 (Debian's
python3-pydicom).
"""

import argparse
import sys
import time

from pydicom import dcmread


def text(ds, keyword):
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else ""
    return str(value).rstrip(" \0")


def number(ds, keyword, absent):
    value = ds.get(keyword)
    if value is None or value == "":
        return absent
    try:
        return int(value)
    except (TypeError, ValueError):
        return absent


def row(path):
    ds = dcmread(path, stop_before_pixels=True)
    name = ds.get("PatientName")
    alphabetic = ideographic = ""
    if name is not None and str(name) != "":
        groups = list(name.components) + ["", ""]
        alphabetic = groups[0].rstrip(" ")
        ideographic = groups[1].rstrip(" ")
    series = number(ds, "SeriesNumber", None)
    instance = number(ds, "InstanceNumber", None)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return [
        path, text(ds, "PatientID"), alphabetic, ideographic,
        text(ds, "PatientBirthDate"), text(ds, "PatientSex"),
        text(ds, "StudyInstanceUID"), text(ds, "SeriesInstanceUID"),
        text(ds, "SOPInstanceUID"), text(ds, "SOPClassUID"),
        text(ds, "AccessionNumber"), text(ds, "StudyDate"), text(ds, "StudyTime"),
        text(ds, "Modality"), text(ds, "BodyPartExamined"),
        "" if series is None else str(series),
        "" if instance is None else str(instance),
        text(ds, "StudyDescription"),
        str(number(ds, "Rows", 0)), str(number(ds, "Columns", 0)),
        str(number(ds, "NumberOfFrames", 1)), ts,
    ]


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files-from", required=True, help="list of paths, one per line")
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--print", action="store_true", help="print rows as TSV")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="rate by process CPU time (default) or wall time")
    opts = p.parse_args(argv)
    with open(opts.files_from, encoding="utf-8") as f:
        paths = sorted(line.rstrip("\n") for line in f if line.strip())
    if not paths:
        print("parse_pydicom: no files", file=sys.stderr)
        return 1

    if opts.print:
        out = sys.stdout
        for path in paths:
            out.write("\t".join(row(path)) + "\n")
        return 0

    checksum = 0
    wall = time.perf_counter()
    cpu = time.process_time()
    for _ in range(opts.passes):
        for path in paths:
            checksum += len(row(path)[2])
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    count = len(paths) * opts.passes
    elapsed = wall if opts.clock == "wall" else cpu
    print("figure parse_headers.pydicom %.0f instances/s" % (count / elapsed))
    print("# parse_headers.pydicom: %d files x %d passes = %d instances in %.3f s wall, "
          "%.3f s cpu (check %d)" % (len(paths), opts.passes, count, wall, cpu, checksum))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
