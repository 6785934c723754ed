"""`cloudpacs import` end to end: pydicom's test files into a fresh data
directory, the summary's counts, a second import that finds only duplicates,
the blobs read back byte for byte, and the index rows checked in the SQLite
file (opened read-only).
"""

import hashlib
import sqlite3
from pathlib import Path

import pydicom
import pytest

from conftest import PYDICOM_DATA, pydicom_files

TEST_FILES = PYDICOM_DATA / "test_files"
COUNTS = ("files", "stored", "duplicates", "replaced", "kept", "rejected", "not_dicom",
          "dicomdirs_skipped", "errors")


def summary(proc):
    """The "name: value" lines of the summary on stdout, as numbers."""
    out = {}
    for line in proc.stdout.decode("utf-8").splitlines():
        name, _, value = line.partition(":")
        value = value.strip().split(" ")[0]
        try:
            out[name] = float(value) if "." in value else int(value)
        except ValueError:
            pass
    for name in COUNTS:
        assert name in out, "summary lacks %s:\n%s" % (name, proc.stdout.decode())
    return out


def index_rows(data_dir):
    uri = "file:%s?mode=ro" % (data_dir / "index.sqlite")
    con = sqlite3.connect(uri, uri=True)
    try:
        return {sop: (key, size) for sop, key, size in
                con.execute("SELECT sop_uid, blob_key, size FROM instance")}
    finally:
        con.close()


def is_part10(data):
    return len(data) >= 132 and data[128:132] == b"DICM"


@pytest.fixture(scope="module")
def imported(tmp_path_factory, cloudpacs_bin):
    """Imports the test files twice into one data directory."""
    from conftest import run_cloudpacs, assert_no_crash
    data_dir = tmp_path_factory.mktemp("import") / "data"
    runs = []
    for _ in range(2):
        proc = run_cloudpacs(cloudpacs_bin, ["import", "--data-dir", data_dir, "--jobs", "4",
                                             TEST_FILES], timeout=300)
        assert_no_crash(proc, "cloudpacs import")
        runs.append(proc)
    return data_dir, runs


def test_first_import_counts(imported):
    data_dir, (first, _) = imported
    s = summary(first)
    err = first.stderr.decode("utf-8", "replace")
    files = sum(1 for p in TEST_FILES.rglob("*") if p.is_file())

    # Some of pydicom's files are malformed on purpose: exit 3, never 1.
    assert first.returncode in (0, 3), err
    assert s["errors"] == 0, err
    assert s["files"] == files
    assert s["files"] == sum(s[n] for n in COUNTS if n not in ("files", "errors"))
    assert s["stored"] >= 50
    assert s["replaced"] == 0
    assert "not DICOM" in err
    assert len(index_rows(data_dir)) == s["stored"]


def test_reimport_gives_duplicates(imported):
    _, (first, second) = imported
    a, b = summary(first), summary(second)

    assert b["stored"] == 0
    assert b["duplicates"] == a["stored"] + a["duplicates"]
    assert b["kept"] == a["kept"]
    assert b["rejected"] == a["rejected"]
    assert b["not_dicom"] == a["not_dicom"]
    assert second.returncode == first.returncode


def test_blobs_match_originals(imported):
    """Every indexed blob is one of the originals: byte for byte for a Part 10
    file, and for a bare data set its bytes behind a meta group built for it."""
    data_dir, _ = imported
    rows = index_rows(data_dir)
    blobs = {}
    for sop, (key, size) in rows.items():
        data = (data_dir / "blobs" / key).read_bytes()
        assert len(data) == size, key
        assert is_part10(data), key
        blobs[sop] = data

    matched = set()
    for _, path in pydicom_files():
        if TEST_FILES not in path.parents:
            continue
        original = path.read_bytes()
        for sop, data in blobs.items():
            if data == original or (not is_part10(original) and data.endswith(original)):
                matched.add(sop)
    assert matched == set(blobs), "blobs matching no original: %s" % (set(blobs) - matched)


def test_index_rows_agree_with_pydicom(imported):
    data_dir, _ = imported
    uri = "file:%s?mode=ro" % (data_dir / "index.sqlite")
    con = sqlite3.connect(uri, uri=True)
    try:
        rows = list(con.execute(
            "SELECT i.sop_uid, i.blob_key, se.uid, st.uid FROM instance i "
            "JOIN series se ON i.series_pk = se.pk JOIN study st ON se.study_pk = st.pk"))
    except sqlite3.OperationalError:
        rows = [(sop, key, None, None) for sop, (key, _) in index_rows(data_dir).items()]
    finally:
        con.close()
    assert rows
    for sop, key, series, study in rows:
        ds = pydicom.dcmread(str(data_dir / "blobs" / key), stop_before_pixels=True,
                             force=True)
        assert ds.SOPInstanceUID == sop
        if series is not None:
            assert ds.SeriesInstanceUID == series
            assert ds.StudyInstanceUID == study
        assert "/%s/%s/%s" % (ds.StudyInstanceUID, ds.SeriesInstanceUID, sop) in key


def test_no_temporaries_left(imported):
    data_dir, _ = imported
    leftovers = [p for p in (data_dir / "blobs").rglob(".tmp-*")]
    assert leftovers == []


def test_policy_overwrite_and_reject(tmp_path, run):
    """Two files with one SOP Instance UID and different bytes, under each policy."""
    a = TEST_FILES / "CT_small.dcm"
    ds = pydicom.dcmread(str(a))
    ds.StudyDescription = "changed for the test"
    b = tmp_path / "CT_small_changed.dcm"
    ds.save_as(str(b), write_like_original=True)

    data = tmp_path / "data"
    assert run("import", "--data-dir", data, a).returncode == 0
    proc = run("import", "--data-dir", data, "--policy", "reject", b)
    assert proc.returncode == 3
    assert summary(proc)["rejected"] == 1
    proc = run("import", "--data-dir", data, "--policy", "overwrite", b)
    assert proc.returncode == 0
    assert summary(proc)["replaced"] == 1
    key, size = index_rows(data)[ds.SOPInstanceUID]
    assert hashlib.sha256((data / "blobs" / key).read_bytes()).digest() == \
        hashlib.sha256(b.read_bytes()).digest()
    blobs = [p for p in (data / "blobs").rglob("*.dcm")]
    assert len(blobs) == 1


def test_usage_errors(run, tmp_path):
    assert run("import").returncode == 2
    assert run("import", "--policy", "sometimes", TEST_FILES / "CT_small.dcm").returncode == 2
    assert run("import", "--help").returncode == 0
    proc = run("import", "--data-dir", tmp_path / "d", tmp_path / "does-not-exist")
    assert proc.returncode == 1
