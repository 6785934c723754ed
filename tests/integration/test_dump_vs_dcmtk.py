"""`cloudpacs dump --json` against DCMTK's dcm2json (Debian 12: DCMTK 3.6.7).

For a selection of pydicom's files that dcm2json converts, the two JSON
documents must have the same tags, recursively through sequences, and the
same VRs, and the same string and number values (the non-ASCII text of the
charset files included). Binary values are not compared here (dcm2json inlines
everything; test_dump_vs_pydicom compares the bytes).

DCMTK's own choices, accepted here:
  - it leaves out group lengths (gggg,0000) like cloudpacs; the meta group
    is only written with +m, which is not used;
  - it knows many vendors' private tags (private.dic) and gives them their
    VR in implicit VR data sets where cloudpacs, without a private
    dictionary, says UN: accepted for private tags other than creators;
  - for ambiguous dictionary VRs ("US or SS", "OB or OW") either choice;
  - it converts text to UTF-8 and says so by rewriting Specific Character
    Set (0008,0005) to "ISO_IR 192": that value is not compared;
  - it prints DS and IS as JSON numbers copied from the text, so they are
    compared as numbers;
  - it refuses compressed pixel data and ISO 2022 IR 87 (its iconv setup),
    so those files are not in the selection.
"""

import json
import math
import shutil
import subprocess

import pytest

from conftest import PYDICOM_DATA, assert_no_crash
from jsoncompare import dictionary_choices, is_private, is_private_creator

DCM2JSON = shutil.which("dcm2json")

SELECTION = [
    "test_files/CT_small.dcm",
    "test_files/MR_small.dcm",
    "test_files/MR_small_implicit.dcm",
    "test_files/MR_small_bigendian.dcm",
    "test_files/MR_small_expb.dcm",
    "test_files/ExplVR_BigEnd.dcm",
    "test_files/image_dfl.dcm",
    "test_files/rtplan.dcm",
    "test_files/rtstruct.dcm",
    "test_files/rtdose.dcm",
    "test_files/test-SR.dcm",
    "test_files/reportsi.dcm",
    "test_files/waveform_ecg.dcm",
    "test_files/liver_1frame.dcm",
    "test_files/UN_sequence.dcm",
    "test_files/nested_priv_SQ.dcm",
    "test_files/priv_SQ.dcm",
    "test_files/dicomdirtests/DICOMDIR",
    "charset_files/chrArab.dcm",
    "charset_files/chrFren.dcm",
    "charset_files/chrGerm.dcm",
    "charset_files/chrGreek.dcm",
    "charset_files/chrHbrw.dcm",
    "charset_files/chrRuss.dcm",
    "charset_files/chrX1.dcm",
    "charset_files/chrX2.dcm",
]

KNOWN_FAILURES = {
}


def _dcm2json(path):
    proc = subprocess.run([DCM2JSON, "-fc", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        return None, proc.stderr.decode("utf-8", "replace")
    try:
        return json.loads(proc.stdout), None
    except ValueError as exc:
        return None, "dcm2json printed no valid JSON: %s" % exc


def _numbers_equal(a, b):
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return a == b


def compare(ours, theirs, path, values, diffs):
    ours_keys = {k for k in ours if not k.endswith("0000")}
    theirs_keys = {k for k in theirs if not k.endswith("0000")}
    for key in sorted(theirs_keys - ours_keys):
        diffs.append("%s%s: missing from cloudpacs (dcm2json: %s)"
                     % (path, key, theirs[key].get("vr")))
    for key in sorted(ours_keys - theirs_keys):
        diffs.append("%s%s: only in cloudpacs" % (path, key))
    for key in sorted(ours_keys & theirs_keys):
        a, b = ours[key], theirs[key]
        tag = int(key, 16)
        here = path + key
        if a.get("vr") != b.get("vr"):
            ambiguous = dictionary_choices(tag)
            if len(ambiguous) > 1 and {a.get("vr"), b.get("vr")} <= ambiguous:
                continue
            if a.get("vr") == "UN" and is_private(tag) and not is_private_creator(tag):
                continue
            diffs.append("%s: VR %s, dcm2json %s" % (here, a.get("vr"), b.get("vr")))
            continue
        if a.get("vr") == "SQ":
            ai, bi = a.get("Value", []), b.get("Value", [])
            if len(ai) != len(bi):
                diffs.append("%s: %d items, dcm2json %d" % (here, len(ai), len(bi)))
            for i, (x, y) in enumerate(zip(ai, bi)):
                compare(x, y, "%s[%d]." % (here, i), values, diffs)
            continue
        if not values or "Value" not in b or key == "00080005":
            continue
        av, bv = a.get("Value", []), b["Value"]
        if a["vr"] in ("DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"):
            same = len(av) == len(bv) and all(_numbers_equal(x, y) for x, y in zip(av, bv))
            if a["vr"] == "FL":
                # DCMTK prints single precision with fewer digits.
                same = len(av) == len(bv) and all(
                    math.isclose(x, y, rel_tol=1e-6) for x, y in zip(av, bv))
        else:
            same = av == bv
        if not same:
            diffs.append("%s: %s %r, dcm2json %r" % (here, a["vr"], av[:6], bv[:6]))


def _params():
    out = []
    for file_id in SELECTION:
        marks = []
        if file_id in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[file_id]))
        out.append(pytest.param(file_id, id=file_id, marks=marks))
    return out


def test_dcm2json_is_installed():
    assert DCM2JSON, "dcm2json not found: install Debian's dcmtk"
    proc = subprocess.run([DCM2JSON, "--version"], stdout=subprocess.PIPE, timeout=30)
    assert b"dcm2json" in proc.stdout


@pytest.mark.parametrize("file_id", _params())
def test_dump_json_matches_dcm2json(file_id, dump_json):
    if not DCM2JSON:
        pytest.fail("dcm2json not found: install Debian's dcmtk")
    path = PYDICOM_DATA / file_id
    theirs, why = _dcm2json(path)
    if theirs is None:
        pytest.skip("dcm2json cannot convert %s: %s" % (file_id, why[:200]))
    res = dump_json(path)
    assert_no_crash(res.proc, file_id)
    assert res.returncode == 0, res.stderr
    # Values too: DCMTK decodes every character set of this selection to
    # UTF-8 (it refuses ISO 2022 IR 87, which is why those files are out).
    diffs = []
    compare(res.json, theirs, "", True, diffs)
    assert not diffs, "\n".join(diffs[:40])
