"""Files written by pydicom, read back by `cloudpacs dump --json`.

One data set holds an element of every VR of PS3.5 Table 6.2-1 (the 34 of
pydicom 2.3.1, which writes OV, SV and UV too), empty elements, and nested
sequences of undefined length with undefined-length items (and an empty
sequence and an empty item). It is written in implicit VR little endian,
explicit VR little endian, explicit VR big endian and deflated explicit VR
little endian, and the JSON must give back exactly the values put in:
EXPECTED below is written by hand, not computed by pydicom.
"""

import base64
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from conftest import assert_no_crash
from dicomgen import (DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, new_dataset,
                      write_pydicom)
from jsoncompare import FileContext, compare_file, load_json, swap_bytes

BIG_OB = bytes(range(256)) * 300          # 76800 bytes: above the 64 KiB inline limit
OW_BYTES = bytes([0x01, 0x02, 0x03, 0x04, 0xFE, 0xFF])
OF_BYTES = struct.pack("<3f", 1.5, -2.0, 0.25)
OD_BYTES = struct.pack("<2d", 3.141592653589793, -1e300)
OL_BYTES = struct.pack("<2I", 1, 0xFFFFFFFE)
OV_BYTES = struct.pack("<2Q", 1, 0xFFFFFFFFFFFFFFFE)
OB_BYTES = b"\x00\x01\x02\xfe\xff\x80"
UN_BYTES = b"\x10\x20\x30\x40"

# tag: (VR, value given to pydicom, expected JSON Value, or bytes for binary VRs).
ELEMENTS = {
    0x00080054: ("AE", ["STORESCP", "ARCHIVE1"], ["STORESCP", "ARCHIVE1"]),
    0x00101010: ("AS", "042Y", ["042Y"]),
    0x00280009: ("AT", [Tag(0x00181063), Tag(0x7FE00010)], ["00181063", "7FE00010"]),
    0x00080008: ("CS", ["ORIGINAL", "PRIMARY", "AXIAL"], ["ORIGINAL", "PRIMARY", "AXIAL"]),
    0x00080020: ("DA", "20240131", ["20240131"]),
    0x00280030: ("DS", ["0.5", "-1.25E3"], [0.5, -1250.0]),
    0x0008002A: ("DT", "20240131123456.789+0100", ["20240131123456.789+0100"]),
    0x00186054: ("FD", [1.5, -2.25e100, 1.0 / 3.0], [1.5, -2.25e100, 1.0 / 3.0]),
    0x0018605A: ("FL", [1.5, -0.1, 3.0e38], [1.5, -0.1, 3.0e38]),
    0x00081160: ("IS", ["1", "-2", "30"], [1, -2, 30]),
    0x00081080: ("LO", ["first diagnosis", "second"], ["first diagnosis", "second"]),
    0x001021B0: ("LT", "line one\r\nline two \\ with a backslash",
                 ["line one\r\nline two \\ with a backslash"]),
    0x0016002B: ("OB", OB_BYTES, OB_BYTES),
    0x00660022: ("OD", OD_BYTES, OD_BYTES),
    0x00640009: ("OF", OF_BYTES, OF_BYTES),
    0x00660040: ("OL", OL_BYTES, OL_BYTES),
    0x00720081: ("OV", OV_BYTES, OV_BYTES),
    0x00281201: ("OW", OW_BYTES, OW_BYTES),
    0x00100010: ("PN", "Doe^John^Q^Dr^Jr", [{"Alphabetic": "Doe^John^Q^Dr^Jr"}]),
    0x00081050: ("PN", ["Smith^Ann", "Lee^Bo"],
                 [{"Alphabetic": "Smith^Ann"}, {"Alphabetic": "Lee^Bo"}]),
    0x00080050: ("SH", "ACC-0001", ["ACC-0001"]),
    0x0040A162: ("SL", [-5, 2147483647, -2147483648], [-5, 2147483647, -2147483648]),
    0x00189442: ("SS", [-1, 32767, -32768, 0], [-1, 32767, -32768, 0]),
    0x00080081: ("ST", "Main Street 1, Springfield", ["Main Street 1, Springfield"]),
    0x00720082: ("SV", [-9007199254740993, 5, -(2 ** 63)], [-9007199254740993, 5, -(2 ** 63)]),
    0x00080030: ("TM", "123456.789", ["123456.789"]),
    0x00189908: ("UC", ["reason one", "reason two"], ["reason one", "reason two"]),
    0x00080018: ("UI", "1.2.826.0.1.3680043.2.1143.2", ["1.2.826.0.1.3680043.2.1143.2"]),
    0x00081161: ("UL", [1, 4294967295], [1, 4294967295]),
    0x0072006D: ("UN", UN_BYTES, UN_BYTES),
    0x00081190: ("UR", "http://example.org/wado?study=1.2.3",
                 ["http://example.org/wado?study=1.2.3"]),
    0x00080304: ("US", [0, 65535, 512], [0, 65535, 512]),
    0x0008030E: ("UT", "unlimited text \\ not split", ["unlimited text \\ not split"]),
    0x00720083: ("UV", [2 ** 64 - 1, 0, 2 ** 53 + 1], [2 ** 64 - 1, 0, 2 ** 53 + 1]),
    # Empty values: the JSON has "vr" and no "Value" (PS3.18 F.2.5).
    0x00080090: ("PN", "", None),
    0x00181030: ("LO", "", None),
    0x00280034: ("IS", None, None),
}

SEQ_OUTER = 0x00081115     # Referenced Series Sequence
SEQ_INNER = 0x0008114A     # Referenced Instance Sequence
SEQ_EMPTY = 0x00081140     # Referenced Image Sequence
SEQ_EMPTY_ITEM = 0x00081199  # Referenced SOP Sequence


def _item(**values):
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    item.is_undefined_length_sequence_item = True
    return item


def build_dataset(ts_uid):
    ds = new_dataset(ts_uid, ELEMENTS[0x00080018][1])
    for tag, (vr, value, _) in ELEMENTS.items():
        ds.add_new(tag, vr, value)

    inner = [_item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2",
                   ReferencedSOPInstanceUID="1.2.3.%d" % i) for i in (1, 2)]
    outer = _item(SeriesInstanceUID="1.2.3.4")
    outer.ReferencedInstanceSequence = Sequence(inner)
    outer["ReferencedInstanceSequence"].is_undefined_length = True
    outer2 = _item(SeriesInstanceUID="1.2.3.5", RetrieveAETitle="NESTED")
    ds.ReferencedSeriesSequence = Sequence([outer, outer2])
    ds["ReferencedSeriesSequence"].is_undefined_length = True
    ds.ReferencedImageSequence = Sequence([])
    ds["ReferencedImageSequence"].is_undefined_length = True
    empty = Dataset()
    empty.is_undefined_length_sequence_item = True
    ds.ReferencedSOPSequence = Sequence([empty])
    ds["ReferencedSOPSequence"].is_undefined_length = True
    return ds


EXPECTED_SEQUENCES = {
    "%08X" % SEQ_OUTER: [
        {"0020000E": ["1.2.3.4"],
         "%08X" % SEQ_INNER: [
             {"00081150": ["1.2.840.10008.5.1.4.1.1.2"], "00081155": ["1.2.3.1"]},
             {"00081150": ["1.2.840.10008.5.1.4.1.1.2"], "00081155": ["1.2.3.2"]}]},
        {"0020000E": ["1.2.3.5"], "00080054": ["NESTED"]},
    ],
    "%08X" % SEQ_EMPTY: [],
    "%08X" % SEQ_EMPTY_ITEM: [{}],
}

SYNTAXES = {"implicit_le": IMPLICIT_LE, "explicit_le": EXPLICIT_LE,
            "explicit_be": EXPLICIT_BE, "deflated": DEFLATED_LE}

SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _binary(jel, path):
    if "InlineBinary" in jel:
        return base64.b64decode(jel["InlineBinary"])
    uri = jel["BulkDataURI"]
    assert uri.startswith("file://")
    off = int(uri.split("#offset=")[1].split("&")[0])
    length = int(uri.split("&length=")[1])
    with open(path, "rb") as fh:
        fh.seek(off)
        return fh.read(length)


def _checkSequence(got, want, where):
    problems = []
    values = got.get("Value", [])
    if len(values) != len(want):
        return ["%s: %d items, want %d" % (where, len(values), len(want))]
    for i, (gitem, witem) in enumerate(zip(values, want)):
        if set(gitem) != set(witem):
            problems.append("%s[%d]: tags %s, want %s" % (where, i, sorted(gitem),
                                                           sorted(witem)))
            continue
        for key, wval in witem.items():
            if isinstance(wval, list) and wval and isinstance(wval[0], dict):
                problems += _checkSequence(gitem[key], wval, "%s[%d].%s" % (where, i, key))
            elif gitem[key].get("Value") != wval:
                problems.append("%s[%d].%s: %r, want %r" % (where, i, key,
                                                            gitem[key].get("Value"), wval))
    return problems


def _value_matches(vr, got, want):
    if vr == "FL":
        return len(got) == len(want) and all(
            struct.pack("<f", g) == struct.pack("<f", w) for g, w in zip(got, want))
    if vr in ("SV", "UV"):
        # PS3.18 lets 64-bit integers beyond 2^53 be strings; the number
        # must be exact either way.
        return [int(g) for g in got] == want and all(
            isinstance(g, int) or (isinstance(g, str) and abs(int(g)) > 2 ** 53) for g in got)
    return got == want


def check_expected(obj, path, big_endian):
    problems = []
    for tag, (vr, _, want) in ELEMENTS.items():
        key = "%08X" % tag
        jel = obj.get(key)
        if jel is None:
            problems.append("%s missing" % key)
            continue
        if jel.get("vr") != vr:
            problems.append("%s vr %r, want %s" % (key, jel.get("vr"), vr))
        if want is None:
            if "Value" in jel or "InlineBinary" in jel:
                problems.append("%s empty, but JSON has %r" % (key, jel))
        elif isinstance(want, bytes):
            got = _binary(jel, path)
            if big_endian and "InlineBinary" in jel:
                # pydicom writes these bytes as they are: in a big endian
                # file they are big endian words, which InlineBinary gives
                # little endian (PS3.18 F.2.7).
                want = swap_bytes(want, SWAP.get(vr, 1))
            if got != want:
                problems.append("%s %s bytes %s, want %s" % (key, vr, got[:24].hex(),
                                                             want[:24].hex()))
        elif not _value_matches(vr, jel.get("Value"), want):
            problems.append("%s %s %r, want %r" % (key, vr, jel.get("Value"), want))
    for key, want in EXPECTED_SEQUENCES.items():
        if key not in obj:
            problems.append("%s missing" % key)
            continue
        if obj[key].get("vr") != "SQ":
            problems.append("%s vr %r" % (key, obj[key].get("vr")))
        problems += _checkSequence(obj[key], want, key)
    return problems


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_roundtrip(run, tmp_path, syntax):
    path = tmp_path / ("every-vr-%s.dcm" % syntax)
    ds = build_dataset(SYNTAXES[syntax])
    write_pydicom(ds, path)

    proc = run("dump", "--json", str(path))
    assert_no_crash(proc)
    assert proc.returncode == 0, proc.stderr
    obj = load_json(proc.stdout)

    problems = check_expected(obj, path, syntax == "explicit_be")
    assert not problems, "\n".join(problems)

    # And the element-by-element comparison the pydicom test files get.
    back = pydicom.dcmread(str(path))
    ctx = FileContext(path, little_endian=syntax != "explicit_be")
    diffs = compare_file(obj, back, ctx)
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_roundtrip_large_binary(run, tmp_path, syntax):
    """A value above the inline limit comes back through its BulkDataURI.

    Except in a deflated file, where no offset into the file addresses the
    value: there it is inline, whatever its size.
    """
    ds = new_dataset(SYNTAXES[syntax])
    ds.add_new(0x00420011, "OB", BIG_OB)        # Encapsulated Document
    ds.add_new(0x00281201, "OW", BIG_OB)        # Red Palette Color LUT Data
    path = tmp_path / ("big-%s.dcm" % syntax)
    write_pydicom(ds, path)

    proc = run("dump", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    obj = load_json(proc.stdout)
    for key, vr in (("00420011", "OB"), ("00281201", "OW")):
        assert obj[key]["vr"] == vr
        if syntax == "deflated":
            assert "InlineBinary" in obj[key], "a deflated file's values are inline"
            assert _binary(obj[key], path) == BIG_OB, key
            continue
        assert "BulkDataURI" in obj[key], "76800 bytes are above the inline limit"
        # A BulkDataURI gives the bytes as stored (big endian stays big endian).
        assert _binary(obj[key], path) == BIG_OB, key


def test_roundtrip_files_are_what_pydicom_wrote(tmp_path):
    """Guards the test itself: pydicom reads back what it was given."""
    for syntax, ts_uid in SYNTAXES.items():
        path = tmp_path / ("%s.dcm" % syntax)
        write_pydicom(build_dataset(ts_uid), path)
        back = pydicom.dcmread(str(path))
        assert str(back.file_meta.TransferSyntaxUID) == ts_uid
        assert back.SelectorUVValue == [2 ** 64 - 1, 0, 2 ** 53 + 1]
        assert back.SelectorSVValue == [-9007199254740993, 5, -(2 ** 63)]
        assert len(back.ReferencedSeriesSequence) == 2
        assert back.ReferencedSeriesSequence[0].ReferencedInstanceSequence[1] \
            .ReferencedSOPInstanceUID == "1.2.3.2"
        raw = path.read_bytes()
        if syntax == "deflated":
            assert b"1.2.3.4" not in raw, "the data set is really deflated"
            continue
        # The sequences and items really have undefined lengths.
        delims = [b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0"]
        if syntax == "explicit_be":
            delims = [b"\xff\xfe\xe0\xdd", b"\xff\xfe\xe0\x0d"]
        assert raw.count(delims[0]) == 4, "four sequence delimiters"
        assert raw.count(delims[1]) == 5, "five item delimiters"
