"""Values at the edges of the DICOM JSON model (PS3.18 F.2), in hand-made
files: the output must stay valid JSON and carry the value exactly.

DS and IS are copied from text that may not be a JSON number ("+1.0",
".5", "007"), so they must be rewritten; text with quotes, control
characters and backslashes must be escaped; doubles must survive the trip
(shortest round-trip digits); empty values in a list are null (F.2.5).
"""

import math
import struct

import pytest

from dicomgen import element, part10
from jsoncompare import load_json

CASES = {
    "ds_forms": (element(0x00280030, "DS", b"+1.0\\.5\\-.5\\1.\\1e3\\ 2.5\\007\\1E+02"),
                 [1.0, 0.5, -0.5, 1.0, 1000.0, 2.5, 7.0, 100.0]),
    "ds_negative_zero": (element(0x00280030, "DS", b"-0\\0"), [-0.0, 0.0]),
    "ds_empty_values": (element(0x00280030, "DS", b"1\\\\3"), [1, None, 3]),
    "is_forms": (element(0x00200013, "IS", b"+5\\007\\ 12\\-3"), [5, 7, 12, -3]),
    "is_above_32_bits": (element(0x00200013, "IS", b"99999999999"), [99999999999]),
    "fd_round_trip": (element(0x00186054, "FD", struct.pack(
        "<5d", 0.1 + 0.2, 1 / 3, 2.0 ** -1074, 1.7976931348623157e308, -2.2250738585072014e-308)),
        [0.1 + 0.2, 1 / 3, 2.0 ** -1074, 1.7976931348623157e308, -2.2250738585072014e-308]),
    "lo_escapes": (element(0x00080080, "LO", b'say "hi"\tto\x01you'), ['say "hi"\tto\x01you']),
    "lt_backslash_kept": (element(0x00324000, "LT", b"a\\b\r\nc"), ["a\\b\r\nc"]),
    "pn_empty_values": (element(0x00081070, "PN", b"A^B\\\\C"),
                        [{"Alphabetic": "A^B"}, None, {"Alphabetic": "C"}]),
    "pn_only_ideographic": (element(0x00100010, "PN", b"=Yamada"), [{"Ideographic": "Yamada"}]),
    "cs_empty_first_value": (element(0x00080008, "CS", b"\\SECONDARY"), [None, "SECONDARY"]),
    "ui_nul_padding": (element(0x00080018, "UI", b"1.2.3\x00"), ["1.2.3"]),
    "at_tags": (element(0x00280009, "AT", struct.pack("<4H", 0x0018, 0x1063, 0x7FE0, 0x0010)),
                ["00181063", "7FE00010"]),
}


def _dump(run, tmp_path, data_set):
    path = tmp_path / "edge.dcm"
    path.write_bytes(part10(data_set))
    proc = run("dump", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    return load_json(proc.stdout)        # raises on invalid JSON


def _same(got, want):
    if isinstance(want, float):
        return isinstance(got, (int, float)) and got == want and \
            math.copysign(1, got) == math.copysign(1, want)
    return got == want


@pytest.mark.parametrize("case", sorted(CASES))
def test_edge_value(run, tmp_path, case):
    raw, want = CASES[case]
    obj = _dump(run, tmp_path, raw)
    (key, jel), = obj.items()
    got = jel.get("Value")
    assert got is not None and len(got) == len(want), got
    assert all(_same(g, w) for g, w in zip(got, want)), "%r, want %r" % (got, want)


@pytest.mark.parametrize("raw", [b"abc\\1.5", b"1A"], ids=["ds_text", "is_text"])
def test_invalid_number_stays_valid_json(run, tmp_path, raw):
    """A DS or IS that is no number cannot be a JSON number: given as text."""
    obj = _dump(run, tmp_path, element(0x00280030, "DS", raw) +
                element(0x00200013, "IS", raw))
    for key in ("00280030", "00200013"):
        values = obj[key]["Value"]
        assert raw.decode().split("\\")[0] in values, values


def test_float_nan_and_infinity_stay_valid_json(run, tmp_path):
    """JSON has no NaN: whatever the spelling, the document must parse and
    finite neighbours keep their values."""
    obj = _dump(run, tmp_path, element(0x0018605A, "FL", struct.pack(
        "<4f", math.nan, math.inf, -math.inf, 1.5)))
    values = obj["0018605A"]["Value"]
    assert len(values) == 4 and values[3] == 1.5
    assert all(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values[:3])
