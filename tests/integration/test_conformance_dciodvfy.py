"""Conformance of stored files: what cloudpacs keeps is no worse than what it got.

pydicom's test files and a few tiny generated studies (bench/gen_studies.py)
go through C-STORE (`cloudpacs send`) to `cloudpacs serve`; dciodvfy (David
Clunie's dicom3tools, the IOD and module checker of PS3.3) then checks each
stored file and its original. The stored file may not have an Error line that
the original does not have ("no new errors"); warnings are not compared, and
errors the original already had are the sender's.
"""

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from conftest import PYDICOM_DATA, REPO_ROOT
from test_dicom_service import Server, free_port

# rtplan.dcm and rtdose.dcm are left out: their meta group and data set name
# different SOP Instance UIDs, which the archive rightly refuses (A900).
PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "rtstruct.dcm", "JPEG2000.dcm",
                 "MR_small_RLE.dcm", "SC_rgb.dcm", "emri_small.dcm", "waveform_ecg.dcm",
                 "JPEG-lossy.dcm", "US1_J2KR.dcm", "liver.dcm", "mlut_18.dcm"]


def dciodvfy_errors(path):
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, timeout=120)
    text = (proc.stdout + proc.stderr).decode("latin-1")
    return {line.strip() for line in text.splitlines() if line.startswith("Error")}


def has_meta_uids(path):
    """Whether C-STORE can send it: a meta group naming the SOP class and instance."""
    meta = pydicom.dcmread(str(path), stop_before_pixels=True, force=True).file_meta
    return bool(meta.get("MediaStorageSOPClassUID")) and bool(
        meta.get("MediaStorageSOPInstanceUID"))


@pytest.fixture(scope="module")
def dciodvfy():
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy not found: install dicom3tools (scripts/deps.sh --test)",
                    pytrace=False)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    files = [PYDICOM_DATA / "test_files" / n for n in PYDICOM_FILES
             if (PYDICOM_DATA / "test_files" / n).is_file()]
    files = [f for f in files if has_meta_uids(f)]
    gen = tmp_path_factory.mktemp("gen")
    proc = subprocess.run(["/usr/bin/python3", str(REPO_ROOT / "bench" / "gen_studies.py"),
                           "--out", str(gen), "--ct", "1", "--mr", "1", "--cr", "1",
                           "--slices", "2", "--mr-slices", "2", "--size", "tiny",
                           "--transfer-syntax", "mixed", "--quiet"],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    generated = sorted(gen.rglob("*.dcm"))
    assert len(generated) >= 4
    return files + generated


@pytest.fixture(scope="module")
def stored(cloudpacs_bin, tmp_path_factory, originals):
    srv = Server(cloudpacs_bin, tmp_path_factory.mktemp("conform"), "",
                 {"CLOUDPACS_HTTP_PORT": str(free_port())})
    try:
        proc = subprocess.run([str(cloudpacs_bin), "send", "127.0.0.1", str(srv.port)]
                              + [str(f) for f in originals], capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        by_sop = {}
        for path in (srv.data / "blobs").rglob("*.dcm"):
            by_sop[path.stem] = path
        yield by_sop
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_no_new_dciodvfy_errors(dciodvfy, originals, stored):
    problems = []
    for original in originals:
        sop = pydicom.dcmread(str(original), stop_before_pixels=True).SOPInstanceUID
        copy = stored.get(sop)
        if copy is None:
            problems.append("%s: not stored" % original.name)
            continue
        new = dciodvfy_errors(copy) - dciodvfy_errors(original)
        if new:
            problems.append("%s: %s" % (original.name, sorted(new)))
    assert not problems, "\n".join(problems)
    assert len(originals) >= 12
