"""Checks the checker: jsoncompare must pass pydicom's own DICOM JSON of a
file and must catch each kind of difference planted in it. Without this, a
comparator that compared nothing would pass every file.
"""

import base64
import copy

import pydicom
import pytest

from conftest import PYDICOM_DATA
from jsoncompare import FileContext, compare_file

CT = PYDICOM_DATA / "test_files" / "CT_small.dcm"
JAPANESE = PYDICOM_DATA / "charset_files" / "chrH31.dcm"
SR = PYDICOM_DATA / "test_files" / "test-SR.dcm"


def _reference(path):
    ds = pydicom.dcmread(str(path), force=True)
    obj = ds.to_json_dict(bulk_data_threshold=10 ** 9)
    return ds, obj


def _diffs(path, obj):
    ds = pydicom.dcmread(str(path), force=True)
    return compare_file(obj, ds, FileContext(path, bool(ds.is_little_endian)))


@pytest.mark.parametrize("path", [CT, JAPANESE, SR], ids=lambda p: p.name)
def test_pydicom_json_matches(path):
    _, obj = _reference(path)
    assert _diffs(path, obj) == []


def _mutations():
    def text(o):
        o["00080060"]["Value"] = ["MR"]

    def pn_group(o):
        o["00100010"]["Value"][0]["Alphabetic"] += "X"

    def ds_number(o):
        o["00180050"]["Value"] = [o["00180050"]["Value"][0] + 1e-6]

    def vr(o):
        o["00080060"]["vr"] = "LO"

    def missing(o):
        del o["00200013"]

    def extra(o):
        o["00091234"] = {"vr": "UN", "InlineBinary": "AAAA"}

    def pixel(o):
        raw = bytearray(base64.b64decode(o["7FE00010"]["InlineBinary"]))
        raw[100] ^= 1
        o["7FE00010"]["InlineBinary"] = base64.b64encode(bytes(raw)).decode()

    def us_value(o):
        o["00280010"]["Value"] = [o["00280010"]["Value"][0] + 1]

    def item_value(o):
        o["00101002"]["Value"][0]["00100020"]["Value"] = ["other"]

    return [text, pn_group, ds_number, vr, missing, extra, pixel, us_value, item_value]


@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_planted_difference_is_caught(mutate):
    _, obj = _reference(CT)
    bad = copy.deepcopy(obj)
    mutate(bad)
    assert len(_diffs(CT, bad)) == 1


def test_japanese_ideographic_group_is_compared():
    _, obj = _reference(JAPANESE)
    bad = copy.deepcopy(obj)
    name = bad["00100010"]["Value"][0]
    assert name.get("Ideographic"), "chrH31 has an ideographic group"
    name["Ideographic"] = name["Ideographic"][:-1]
    assert len(_diffs(JAPANESE, bad)) == 1
