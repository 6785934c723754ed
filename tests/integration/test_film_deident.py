"""De-identified cloud film links (docs/api.md, "Cloud film", PS3.15 E.1):
a study of a patient with a Chinese name is released; the patient shares it
on with `deidentify`; the doctor's link shows the series, the report, the
report PDF and each instance file without the patient's name, ID, birth
date, sex, accession number, institution, descriptions or any UID of the
archive (searched for in the raw bytes of every answer), while the
patient's own link still gives the file as stored. A forged and a revoked
token get the same 404 as every other film route.
"""

import io
import json
import re
import shutil
import subprocess
import urllib.request

import pydicom
import pytest
from pydicom.uid import generate_uid

from test_dicomweb import multipart_body, request
# world: test_film's module fixture (a server with a centre, a clinic and their users).
from test_film import (BIRTH, CT_SMALL, IMPRESSION, film, film_json, ok, qr_url, verify,
                       world)  # noqa: F401

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "zbarimg")),
    reason="poppler-utils and zbar-tools are needed")

NAME = "张^三"
PATIENT_ID = "PAT-DEID-778899"
ACCESSION = "ACC-DEID-4455"
INSTITUTION = "Harbour Clinic Radiology"
REFERRER = "Li^Referrer"
STUDY_DESCRIPTION = "CHEST CT ZHANG SAN"
SERIES_DESCRIPTION = "AXIAL ZHANG"


def make_study(count=2):
    """count CT_small instances of a new study of 张三, as Part 10 bytes; (files, study)."""
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(count):
        ds = pydicom.dcmread(str(CT_SMALL))
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.Modality = "CR"
        ds.PatientID = PATIENT_ID
        ds.PatientName = NAME
        ds.PatientBirthDate = BIRTH
        ds.PatientSex = "M"
        ds.AccessionNumber = ACCESSION
        ds.InstitutionName = INSTITUTION
        ds.ReferringPhysicianName = REFERRER
        ds.StudyDescription = STUDY_DESCRIPTION
        ds.SeriesDescription = SERIES_DESCRIPTION
        ds.BodyPartExamined = "CHEST"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, write_like_original=True)
        out.append(buf.getvalue())
    return out, study


def release(w, files, study):
    """Stores the files, has the study read and the report approved; the order id."""
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
       {"findings": "Patchy opacity in the right lower lobe.", "impression": IMPRESSION})
    ok(w, "rad1", "POST", "/api/orders/%d/report/submit" % oid, {})
    done = ok(w, "reviewer", "POST", "/api/orders/%d/report/review" % oid, {"approve": True})
    assert done["state"] == "released", done
    return oid


def needles(files, binary=False):
    """
    Every identifying value of the files, as the bytes it could appear as.
    For binary answers (instance files) the name's single characters are
    left out: three bytes could turn up in the pixels by chance.
    """
    values = {NAME, PATIENT_ID, BIRTH, "1980-02-14", ACCESSION, INSTITUTION,
              "Referrer", STUDY_DESCRIPTION, SERIES_DESCRIPTION, "ZHANG",
              # CT_small's own: other patient IDs, institution, station, names.
              "ABCD1234", "1234ABCD", "JFK IMAGING", "CT01_OC0", "CompressedSamples",
              "Dr Rad1", "Dr Reviewer", "Harbour Clinic"}
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        for el in ds.iterall():
            if el.VR == "UI" and el.value and not str(el.value).startswith("1.2.840.10008."):
                values.add(str(el.value))
    if not binary:
        values |= {"张", "三"}
    out = set()
    for v in values:
        out.add(v.encode())
        out.add(json.dumps(v).strip('"').encode())      # a JSON \\u escape
    return out


def assert_clean(what, raw, bad):
    for needle in bad:
        assert needle not in raw, "%s still holds %r" % (what, needle)


def test_deidentified_link(world, tmp_path):
    w = world
    files, study = make_study()
    oid = release(w, files, study)
    bad = needles(files)
    bad_binary = needles(files, binary=True)

    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + w.tokens["tech"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        pdf = r.read()
    token = qr_url(tmp_path, pdf).rsplit("/", 1)[1]
    status, shown, cookie, _ = verify(w.base, token, BIRTH)
    assert status == 200, shown

    # The patient's own link: the file as stored, identity and all.
    status, series, _ = film_json(w.base, "GET", "/film/api/%s/series" % token, cookie=cookie)
    assert status == 200, series
    own_sops = series["series"][0]["instances"]
    status, own_file, headers = film(w.base, "GET", "/film/api/%s/instances/%s/file"
                                     % (token, own_sops[0]), cookie=cookie)
    assert status == 200 and headers["Content-Type"] == "application/dicom", own_file[:200]
    assert own_file in files
    assert NAME.encode() in own_file and PATIENT_ID.encode() in own_file

    # The patient shares it on, de-identified.
    status, child, _ = film_json(w.base, "POST", "/film/api/%s/share" % token,
                                 {"days": 3, "deidentify": True}, cookie=cookie)
    assert status == 201 and child["deidentify"] is True, child
    child_token = re.fullmatch(r".*/film/(cf_[A-Za-z0-9_-]{43})", child["url"]).group(1)
    status, raw, headers = film(w.base, "POST", "/film/api/%s/verify" % child_token,
                                {"answer": BIRTH})
    assert status == 200, raw
    assert_clean("the verify answer", raw, bad)
    child_cookie = headers["Set-Cookie"].split(";")[0]
    shown = json.loads(raw)
    assert shown["deidentify"] is True and shown["study"]["patient_name"] == ""
    assert shown["study"]["sex"] == "" and shown["study"]["description"] == ""
    shown_study = shown["study"]["study_uid"]
    assert shown_study.startswith("2.25.")

    status, raw, _ = film(w.base, "GET", "/film/api/%s/link" % child_token, cookie=child_cookie)
    assert status == 200
    assert_clean("the link", raw, bad)

    # The series: no description, no original UID; thumbnails and pictures by the new UIDs.
    status, raw, _ = film(w.base, "GET", "/film/api/%s/series" % child_token,
                          cookie=child_cookie)
    assert status == 200, raw
    assert_clean("the series list", raw, bad)
    one = json.loads(raw)["series"][0]
    assert one["description"] == "" and one["modality"] == "CR"
    assert one["series_uid"].startswith("2.25.")
    assert len(one["instances"]) == len(files)
    assert all(s.startswith("2.25.") for s in one["instances"])
    # The replacements stay the same from one request to the next.
    assert film_json(w.base, "GET", "/film/api/%s/series" % child_token,
                     cookie=child_cookie)[1]["series"][0] == one
    status, thumb, _ = film(w.base, "GET", one["thumbnail"], cookie=child_cookie)
    assert status == 200 and thumb[:2] == b"\xff\xd8", (status, thumb[:100])
    status, _, _ = film(w.base, "GET", "/film/api/%s/instances/%s/rendered"
                        % (child_token, one["instances"][0]), cookie=child_cookie)
    assert status == 200
    # The archive's own UID is not one the de-identified link knows.
    status, _, _ = film(w.base, "GET", "/film/api/%s/instances/%s/file"
                        % (child_token, own_sops[0]), cookie=child_cookie)
    assert status == 404

    # The report: the clinical texts, nobody's name.
    status, raw, _ = film(w.base, "GET", "/film/api/%s/report" % child_token,
                          cookie=child_cookie)
    assert status == 200, raw
    assert_clean("the report", raw, bad)
    report = json.loads(raw)
    assert report["impression"] == IMPRESSION
    assert report["doctor"] == "" and report["reviewer"] == ""

    # The report PDF, made afresh without the identity.
    status, raw, headers = film(w.base, "GET", "/film/api/%s/report.pdf" % child_token,
                                cookie=child_cookie)
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert raw.startswith(b"%PDF-") and raw != pdf
    (tmp_path / "deid.pdf").write_bytes(raw)
    text = subprocess.run(["pdftotext", str(tmp_path / "deid.pdf"), "-"], check=True,
                          capture_output=True).stdout
    assert IMPRESSION.encode() in text, text
    assert b"ANON-" in text, text
    assert_clean("the report PDF's text", text, bad)

    # Each instance file: de-identified, readable, the pixels as they were.
    pseudonyms = set()
    for i, sop in enumerate(one["instances"]):
        status, raw, headers = film(w.base, "GET", "/film/api/%s/instances/%s/file"
                                    % (child_token, sop), cookie=child_cookie)
        assert status == 200 and headers["Content-Type"] == "application/dicom"
        assert sop in headers["Content-Disposition"]
        assert_clean("instance file %d" % i, raw, bad_binary)
        ds = pydicom.dcmread(io.BytesIO(raw))
        assert ds.SOPInstanceUID == sop and ds.file_meta.MediaStorageSOPInstanceUID == sop
        assert ds.StudyInstanceUID == shown_study
        assert ds.SeriesInstanceUID == one["series_uid"]
        assert re.fullmatch(r"ANON-[0-9A-F]{8}", str(ds.PatientName)), ds.PatientName
        assert ds.PatientID == str(ds.PatientName)
        pseudonyms.add(ds.PatientID)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert not any(el.tag.is_private for el in ds.iterall())
        originals = [pydicom.dcmread(io.BytesIO(f)) for f in files]
        assert any(o.PixelData == ds.PixelData for o in originals)
    assert len(pseudonyms) == 1, "one pseudonym for the link"

    # A forged token, and the revoked link: the same 404 as everywhere.
    forged = "cf_" + "A" * 43
    status, gone, _ = film(w.base, "GET", "/film/api/%s/instances/%s/file"
                           % (forged, one["instances"][0]), cookie=child_cookie)
    assert status == 404
    status, expected, _ = film(w.base, "GET", "/film/api/%s/report" % forged,
                               cookie=child_cookie)
    assert status == 404 and gone == expected
    assert ok(w, "tech", "POST", "/api/orders/%d/film/revoke" % oid, {})["revoked"] == 1
    for t, ck in ((child_token, child_cookie), (token, cookie)):
        status, body, _ = film(w.base, "GET", "/film/api/%s/instances/%s/file"
                               % (t, one["instances"][0]), cookie=ck)
        assert status == 404 and body == expected
