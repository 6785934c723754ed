"""`cloudpacs dump --json` against pydicom, for every file pydicom ships.

For each DICOM file in pydicom's test_files and charset_files (DICOMDIRs and
the images under dicomdirtests included), the JSON that cloudpacs prints is
compared element by element, through every sequence and item, with what
pydicom 2.3.1 reads: the same tags, the same VR, the same values (text as
pydicom decodes it, in every character set of charset_files). See
jsoncompare.py for the rules.

Files whose name says they are malformed (truncated, bad, no_meta, ...) may
end in exit 3, with a message naming the offset and the tag, and a partial
dump whose elements must still agree with pydicom; or in exit 0 with a full
match. No file may crash the binary.

Known mismatches are listed in KNOWN_FAILURES (file id: the precise
difference); they run as xfail(strict=True) and fail once fixed.
"""

import warnings

from conftest import (COMPARISON_REPORT, PYDICOM_DATA, TAG_RE, assert_no_crash,
                      is_malformed_name, read_pydicom)
from jsoncompare import FileContext, compare_file

KNOWN_FAILURES = {}

# Files that are malformed although their names do not say so, with the fault.
# Exit 3 with a partial dump is right for them (as for the *truncated* ones).
MALFORMED_IN_FACT = {
    "test_files/dicomdirtests/DICOMDIR-nooffset":
        "the last Directory Record item (FFFE,E000) at offset 10860 declares 248 "
        "bytes but 224 remain: elements were removed without fixing the item "
        "length; pydicom and DCMTK stop quietly at the end of the file",
}


def _file_id(path):
    return str(path.relative_to(PYDICOM_DATA))


def test_dump_json_matches_pydicom(pydicom_file, dump_json):
    file_id = _file_id(pydicom_file)
    res = dump_json(pydicom_file)
    assert_no_crash(res.proc, "dump --json " + file_id)

    ds, exc, warns = read_pydicom(pydicom_file)
    entry = COMPARISON_REPORT.setdefault(file_id, {"status": "match", "diffs": []})
    entry["pydicom"] = warns + (["cannot read: %r" % exc] if exc else [])
    assert ds is not None, "pydicom cannot read %s: %r" % (file_id, exc)

    partial = False
    malformed = is_malformed_name(file_id) or file_id in MALFORMED_IN_FACT
    if res.returncode == 3 and malformed:
        assert "offset" in res.stderr.lower() and TAG_RE.search(res.stderr), \
            "exit 3 without an offset and a tag in the message: %r" % res.stderr
        partial = True
        entry["status"] = "malformed: exit 3, partial dump agrees"
        entry["diffs"] = [res.stderr.strip()]
    elif res.returncode != 0:
        entry["status"] = "exit %d" % res.returncode
        entry["diffs"] = [res.stderr.strip()[:300]]
        raise AssertionError("exit %d on a file pydicom reads: %s"
                             % (res.returncode, res.stderr.strip()))

    assert res.json is not None, "stdout is not one JSON object (%s): %r" \
        % (res.json_error, res.stdout[:300])
    assert isinstance(res.json, dict), "stdout is JSON but not an object"

    ctx = FileContext(pydicom_file, little_endian=bool(ds.is_little_endian))
    with warnings.catch_warnings(record=True) as caught:
        # pydicom converts values lazily and warns about invalid ones then.
        warnings.simplefilter("always")
        diffs = compare_file(res.json, ds, ctx, partial=partial)
    entry["notes"] = ctx.notes
    entry["elements"] = ctx.compared
    for w in caught:
        if str(w.message) not in entry["pydicom"]:
            entry["pydicom"].append(str(w.message))
    if diffs:
        entry["status"] = "%d differences" % len(diffs)
        entry["diffs"] = diffs + entry["diffs"]
    assert not diffs, "%d differences with pydicom:\n%s" % (len(diffs), "\n".join(diffs[:40]))
