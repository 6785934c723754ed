"""The patient's download of a whole study (docs/api.md, "Cloud film",
GET /film/api/{token}/download.zip): a released study's link, verified,
gives one ZIP sent chunked; zipfile and `unzip -t` find it sound; every
instance sent in is in it byte for byte under the name its DICOMDIR
record gives; pydicom's FileSet lists them all, dcmdump reads the
DICOMDIR and dciodvfy finds no error in it; REPORT.PDF is the report's
PDF. Without a verified session the answer is the same 404 as for a
forged token, and each download leaves one share_download audit record.
A de-identified child link's ZIP holds none of the patient's name, ID or
UIDs, and no report PDF.
"""

import hashlib
import io
import os
import re
import shutil
import subprocess
import time
import urllib.request
import zipfile

import pydicom
import pytest
from pydicom.fileset import FileSet

from conftest import api_ok
from test_film import (BIRTH, film, film_json, qr_url, release_study, verify,  # noqa: F401
                       world)

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "zbarimg")),
    reason="poppler-utils and zbar-tools are needed")


def open_link(w, tmp_path, patient_id):
    """Releases a study; (token, cookie, link id, study UID, files sent, report PDF)."""
    oid, study, files = release_study(w, patient_id)
    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + w.tokens["tech"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        pdf = r.read()
    url = qr_url(tmp_path, pdf)
    token = url.rsplit("/", 1)[1]
    assert film_json(w.base, "GET", "/film/api/%s" % token)[0] == 200
    status, shown, cookie, _ = verify(w.base, token, BIRTH)
    assert status == 200, shown
    return token, cookie, shown["id"], study, files, pdf


def download(w, token, cookie):
    """(status, body, headers) of the ZIP download."""
    return film(w.base, "GET", "/film/api/%s/download.zip" % token, cookie=cookie)


def unpack(tmp_path, name, body):
    """The archive checked by zipfile (and unzip -t), unpacked; (ZipFile, directory)."""
    path = tmp_path / (name + ".zip")
    path.write_bytes(body)
    z = zipfile.ZipFile(io.BytesIO(body))
    assert z.testzip() is None
    if shutil.which("unzip"):
        proc = subprocess.run(["unzip", "-tq", str(path)], capture_output=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / name
    z.extractall(out)
    return z, out


def check_dicomdir(out, names, empty_ok=()):
    """The DICOMDIR lists exactly the DICOM/ files, each with its own SOP Instance UID.
    dciodvfy finds no error but empty type 1 keys named in empty_ok."""
    fs = FileSet(pydicom.dcmread(str(out / "DICOMDIR")))
    listed = {}
    for inst in fs:
        rel = os.path.relpath(inst.path, str(out)).replace(os.sep, "/")
        listed[rel] = inst.ReferencedSOPInstanceUIDInFile
    assert set(listed) == {n for n in names if n.startswith("DICOM/")}, listed
    for rel, uid in listed.items():
        assert pydicom.dcmread(str(out / rel)).SOPInstanceUID == uid, rel
    if shutil.which("dcmdump"):
        proc = subprocess.run(["dcmdump", "-q", str(out / "DICOMDIR")], capture_output=True)
        assert proc.returncode == 0, proc.stderr
    if shutil.which("dciodvfy"):
        proc = subprocess.run(["dciodvfy", str(out / "DICOMDIR")], capture_output=True)
        text = (proc.stdout + proc.stderr).decode(errors="replace")
        errors = [e for e in re.findall(r"^Error.*$", text, re.M)
                  if not any("Empty attribute (no value) Type 1 Required Element=<%s>" % k in e
                             for k in empty_ok)]
        assert not errors, text
    return listed


def audit_types(w, link_id):
    time.sleep(1.5)     # the audit writer commits in the background
    found = api_ok(w.base, "GET", "/api/audit?actor=share:%d&limit=200" % link_id)
    return [r["type"] for r in found["records"]]


def test_download_zip(world, tmp_path):
    w = world
    token, cookie, link_id, study, files, pdf = open_link(w, tmp_path, "PAT-ZIP-1")

    # No session, a forged cookie, another link's token: all the same 404.
    status, gone, _ = download(w, token, None)
    assert status == 404
    status, forged, _ = download(w, token, "cloudpacs_film=fs_" + "A" * 43 + ".0123456789abcdef")
    assert status == 404 and forged == gone
    status, other, _ = download(w, "cf_" + "B" * 43, cookie)
    assert status == 404 and other == gone
    # A study outside the link's scope.
    status, _, _ = film(w.base, "GET", "/film/api/%s/download.zip?study=1.2.3.4" % token,
                        cookie=cookie)
    assert status == 404

    status, body, headers = download(w, token, cookie)
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"].startswith("attachment; filename=")
    assert headers.get("Transfer-Encoding") == "chunked"
    assert headers.get("Cache-Control") == "no-store"
    z, out = unpack(tmp_path, "study", body)
    names = z.namelist()
    assert names[-1] == "DICOMDIR", names
    assert "REPORT.PDF" in names
    assert z.read("REPORT.PDF").startswith(b"%PDF") and z.read("REPORT.PDF") == pdf
    for n in names:
        assert n in ("DICOMDIR", "REPORT.PDF") or re.fullmatch(
            r"DICOM/PAT00001/STU00001/SER\d{5}/IMG\d{5}", n), n

    # Every instance sent is there as it was sent, the study's own SR and PDF too.
    sent = {hashlib.sha256(f).hexdigest() for f in files}
    got = {hashlib.sha256(z.read(n)).hexdigest() for n in names if n.startswith("DICOM/")}
    assert sent <= got
    listed = check_dicomdir(out, names)
    assert len(listed) >= len(files) + 1      # the images and at least the report's PDF
    for rel in listed:
        assert pydicom.dcmread(str(out / rel)).StudyInstanceUID == study

    # One audit record per download.
    assert audit_types(w, link_id).count("share_download") == 1
    status, again, _ = download(w, token, cookie)
    assert status == 200 and len(again) == len(body)
    assert audit_types(w, link_id).count("share_download") == 2

    # A HEAD asks the same gate and makes no archive.
    req = urllib.request.Request(w.base + "/film/api/%s/download.zip" % token,
                                 headers={"Cookie": cookie}, method="HEAD")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and r.read() == b""


def test_download_deidentified(world, tmp_path):
    w = world
    token, cookie, _, study, files, _ = open_link(w, tmp_path, "PAT-ZIP-2")
    status, child, _ = film_json(w.base, "POST", "/film/api/%s/share" % token,
                                 {"days": 3, "deidentify": True}, cookie=cookie)
    assert status == 201, child
    child_token = child["url"].rsplit("/", 1)[1]
    assert film_json(w.base, "GET", "/film/api/%s" % child_token)[0] == 200
    status, shown, child_cookie, _ = verify(w.base, child_token, BIRTH)
    assert status == 200 and shown["deidentify"] is True, shown

    status, body, _ = download(w, child_token, child_cookie)
    assert status == 200, body[:300]
    z, out = unpack(tmp_path, "deid", body)
    names = z.namelist()
    assert "REPORT.PDF" not in names and names[-1] == "DICOMDIR", names

    originals = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    secrets = {b"WANG", b"PAT-ZIP-2", study.encode()}
    for ds in originals:
        secrets.add(ds.SeriesInstanceUID.encode())
        secrets.add(ds.SOPInstanceUID.encode())
    for n in names:
        data = z.read(n)
        for s in secrets:
            assert s not in data, (n, s)
    # The de-identified files have these empty (PS3.15 E.1-1, Z): the DICOMDIR says the same.
    listed = check_dicomdir(out, names, ("StudyDate", "StudyTime", "StudyID", "ContentDate",
                                         "ContentTime"))
    assert len(listed) >= len(files)
    for rel in listed:
        ds = pydicom.dcmread(str(out / rel))
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName).startswith("ANON-") and ds.PatientID == str(ds.PatientName)
        assert ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.104.1", "no report PDF"
    dicomdir = pydicom.dcmread(str(out / "DICOMDIR"))
    patient = dicomdir.patient_records[0]
    assert patient.PatientID.startswith("ANON-")
