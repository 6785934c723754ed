"""Electronic film end to end (docs/api.md, "Cloud film"): a study of two
series for a patient with a Chinese name is released through the
remote-reading flow; the film PDF made at release is stored into the study
as a second Encapsulated PDF; the clinic asks for film sheets on demand
(PDF and PNG, with size, layout, preset and resolution) and the patient
gets film.pdf and film.png through the share session. pdfinfo reads the
page size and count, pdftotext the annotations, the PNG header the size.
"""

import io
import json
import re
import shutil
import struct
import subprocess
import urllib.error
import urllib.request

import pydicom
import pytest
from pydicom.uid import generate_uid

from test_dicomweb import multipart_body, request
from test_film import BIRTH, CT_SMALL, film, ok, qr_url, verify, world  # noqa: F401

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
PATIENT_ID = "PAT-SHEET-1"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pdfinfo", "pdftotext", "pdftoppm", "zbarimg")),
    reason="poppler-utils and zbar-tools are needed")


def make_study(patient_id):
    """Two series (3 and 2 instances) of one new study, as Part 10 bytes; (files, study)."""
    study = generate_uid()
    out = []
    for number, count in ((1, 3), (2, 2)):
        series = generate_uid()
        for i in range(count):
            ds = pydicom.dcmread(str(CT_SMALL))
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.Modality = "CR"
            ds.PatientID = patient_id
            ds.PatientName = "ZHANG^WEI=张^伟"
            ds.PatientBirthDate = BIRTH
            ds.PatientSex = "M"
            ds.BodyPartExamined = "CHEST"
            ds.StudyDate = "20260304"
            ds.StudyTime = "101500"
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.SeriesNumber = number
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = i + 1
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            buf = io.BytesIO()
            ds.save_as(buf, write_like_original=True)
            out.append(buf.getvalue())
    return out, study


def release(w, patient_id):
    """Stores the study, has it read and approved; (order id, study)."""
    files, study = make_study(patient_id)
    for data in files:
        body, boundary = multipart_body([(b"application/dicom", data)])
        headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
                   + boundary.decode(), "Authorization": "Bearer " + w.clinic_token}
        status, _, raw = request(w.base + "/dicom-web/studies", data=body, headers=headers,
                                 method="POST")
        assert status == 200, raw[:300]
    oid = ok(w, "tech", "POST", "/api/orders",
             {"study_uid": study, "body_part": "CHEST", "priority": "routine"})["id"]
    assert ok(w, "rad1", "POST", "/api/orders/%d/grab" % oid)["state"] == "claimed"
    ok(w, "rad1", "PUT", "/api/orders/%d/report/draft" % oid,
       {"findings": "Clear lungs.", "impression": "No acute finding."})
    ok(w, "rad1", "POST", "/api/orders/%d/report/submit" % oid, {})
    done = ok(w, "reviewer", "POST", "/api/orders/%d/report/review" % oid, {"approve": True})
    assert done["state"] == "released", done
    return oid, study


def clinic_get(w, who, path):
    """(status, body, headers) of a GET with who's session token."""
    req = urllib.request.Request(w.base + path,
                                 headers={"Authorization": "Bearer " + w.tokens[who]})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def pdf_facts(tmp, name, pdf):
    """(pdfinfo text, pdftotext text) of pdf."""
    path = tmp / name
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], check=True,
                          capture_output=True).stdout.decode()
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True,
                          capture_output=True).stdout.decode()
    return info, text


def pages(info):
    return int(re.search(r"^Pages:\s+(\d+)$", info, re.M).group(1))


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_film_sheet(world, tmp_path):
    w = world
    oid, study = release(w, PATIENT_ID)

    # The film made at release, as the clinic would print it: 14x17 in, a sheet per series.
    status, pdf, headers = clinic_get(w, "tech", "/api/orders/%d/film/sheet" % oid)
    assert status == 200 and headers["Content-Type"] == "application/pdf", pdf[:300]
    info, text = pdf_facts(tmp_path, "clinic.pdf", pdf)
    assert "1008 x 1224 pts" in info, info
    assert pages(info) == 2, info
    assert PATIENT_ID in text and "张伟" in text, text
    assert "Harbour Clinic" in text and "2026-03-04 10:15" in text, text
    assert "Se: 2" in text and "Im: 3" in text, text

    # On demand: 8x10 in landscape, 3x4, the CT lung preset is refused for nothing.
    status, pdf, _ = clinic_get(w, "tech", "/api/orders/%d/film/sheet?size=8x10in&layout=3x4"
                                "&orientation=landscape&preset=lung&dpi=100" % oid)
    assert status == 200, pdf[:300]
    info, text = pdf_facts(tmp_path, "small.pdf", pdf)
    assert "720 x 576 pts" in info, info
    assert "3x4" in text, text

    # One sheet as a PNG: the film's size at the resolution asked for.
    status, png, headers = clinic_get(w, "tech", "/api/orders/%d/film/sheet?format=png&page=2"
                                      "&size=8x10in&dpi=100&layout=2x2" % oid)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png_size(png) == (800, 1000)
    status, body, _ = clinic_get(w, "tech", "/api/orders/%d/film/sheet?format=png&page=3" % oid)
    assert status == 404, body
    for bad in ("size=13x17in", "layout=7x7", "preset=liver", "dpi=5", "format=tiff",
                "page=0", "orientation=up", "format=png&dpi=600"):
        status, body, _ = clinic_get(w, "tech", "/api/orders/%d/film/sheet?%s" % (oid, bad))
        assert status == 400, (bad, body)

    # Who may not see the order does not get its film.
    status, _, _ = clinic_get(w, "rad1", "/api/orders/999999/film/sheet")
    assert status == 404

    # The study holds two Encapsulated PDFs now: the report and the film.
    status, _, raw = request(w.base + "/dicom-web/studies/%s/instances?SOPClassUID=%s"
                             % (study, ENCAPSULATED_PDF),
                             headers={"Authorization": "Bearer " + w.tokens["tech"],
                                      "Accept": "application/dicom+json"})
    assert status == 200, raw[:300]
    assert len(json.loads(raw)) == 2, raw[:600]

    # The patient: the link in the report's QR code, the birth date, then the film.
    status, report, _ = clinic_get(w, "tech", "/api/orders/%d/film" % oid)
    assert status == 200
    token = qr_url(tmp_path, report).rsplit("/", 1)[1]
    status, _, _ = film(w.base, "GET", "/film/api/%s/film.pdf" % token)
    assert status == 404
    status, shown, cookie, _ = verify(w.base, token, BIRTH)
    assert status == 200, shown
    status, pdf, headers = film(w.base, "GET", "/film/api/%s/film.pdf" % token, cookie=cookie)
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    info, text = pdf_facts(tmp_path, "patient.pdf", pdf)
    assert "1008 x 1224 pts" in info and pages(info) == 2, info
    assert PATIENT_ID in text and "张伟" in text, text
    status, png, headers = film(w.base, "GET", "/film/api/%s/film.png?page=2" % token,
                                cookie=cookie)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png_size(png) == (14 * 150, 17 * 150)
    status, _, _ = film(w.base, "GET", "/film/api/%s/film.png?page=9" % token, cookie=cookie)
    assert status == 400

    # A de-identified link shared on gets a film without the patient's name and ID.
    status, child, _ = film(w.base, "POST", "/film/api/%s/share" % token,
                            {"days": 1, "deidentify": True}, cookie=cookie)
    assert status == 201, child
    child_token = json.loads(child)["url"].rsplit("/", 1)[1]
    status, _, child_cookie, _ = verify(w.base, child_token, BIRTH)
    assert status == 200
    status, pdf, _ = film(w.base, "GET", "/film/api/%s/film.pdf" % child_token,
                          cookie=child_cookie)
    assert status == 200
    info, text = pdf_facts(tmp_path, "deid.pdf", pdf)
    assert PATIENT_ID not in text and "张伟" not in text, text
    assert pages(info) == 2, info
