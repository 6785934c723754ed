"""Cloud film end to end (docs/api.md, "Cloud film"): a report released
through the remote-reading flow gets a printable PDF whose QR code holds a
share link; the patient opens it, answers the birth date (a wrong answer is
refused, several are throttled), reads the report, lists the series, gets
rendered pictures and the PDF, shares on with another doctor, and sees who
looked. A forged token and a revoked link get one and the same 404.
"""

import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import PYDICOM_DATA, REPO_ROOT, api_call, api_ok
from test_auth_http import PASSWORD, AuthServer, login
from test_dicomweb import multipart_body, request

CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"

CONFIG = """
[archive]
study_quiet_seconds = 1

[film]
delay_ms = 500
link_days = 30
factor = birth_date

[film.PHONECLINIC]
factor = phone_last4
"""

BIRTH = "19800214"
IMPRESSION = "Right lower lobe pneumonia."

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "zbarimg")),
    reason="poppler-utils and zbar-tools are needed")


def make_study(patient_id, count=3, series_count=1):
    """count CT_small instances of one new study in each of series_count series, as Part 10."""
    study = generate_uid()
    out = []
    for i in range(count * series_count):
        if i % count == 0:
            series = generate_uid()
        ds = pydicom.dcmread(str(CT_SMALL))
        ds.Modality = "CR"
        ds.PatientID = patient_id
        ds.PatientName = "WANG^FANG"
        ds.PatientBirthDate = BIRTH
        ds.BodyPartExamined = "CHEST"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = i // count + 1
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i % count + 1
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, write_like_original=True)
        out.append(buf.getvalue())
    return out, study


def film(base, method, path, body=None, cookie=None):
    """(status, raw body, headers) of a public /film call, with the film cookie if any."""
    headers = {}
    data = None
    if cookie:
        headers["Cookie"] = cookie
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def film_json(base, method, path, body=None, cookie=None):
    status, raw, headers = film(base, method, path, body, cookie)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, headers


def verify(base, token, answer):
    """(status, parsed, cookie for later calls or None, headers)."""
    status, parsed, headers = film_json(base, "POST", "/film/api/%s/verify" % token,
                                        {"answer": answer})
    cookie = None
    set_cookie = headers.get("Set-Cookie")
    if set_cookie:
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        assert "Path=/film/" in set_cookie
        cookie = set_cookie.split(";")[0]
    return status, parsed, cookie, headers


class World:
    pass


@pytest.fixture(scope="module")
def world(cloudpacs_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("film")
    config = tmp / "cloudpacs.ini"
    config.write_text(CONFIG)
    # Under a sanitizer build: the font caches of fontconfig and cairo live on.
    lsan = "suppressions=%s" % (Path(__file__).parent / "lsan_film.supp")
    srv = AuthServer(cloudpacs_bin, tmp, services="web,dispatch",
                     extra_env={"CLOUDPACS_CONFIG": str(config), "LSAN_OPTIONS": lsan})
    w = World()
    w.srv, w.base, w.tmp = srv, srv.base, tmp
    try:
        w.centre = api_ok(w.base, "POST", "/api/institutions",
                          {"parent_id": 0, "kind": "centre", "code": "CENTRE",
                           "name": "Reading centre"})["id"]
        w.clinic = api_ok(w.base, "POST", "/api/institutions",
                          {"parent_id": 0, "kind": "clinic", "code": "CLINIC",
                           "name": "Harbour Clinic"})["id"]
        w.ids, w.tokens = {}, {}
        for name, inst, roles, title in (("reviewer", w.centre, ["reviewer"], 3),
                                         ("rad1", w.centre, ["radiologist"], 2),
                                         ("tech", w.clinic, ["technician"], 0)):
            w.ids[name] = api_ok(w.base, "POST", "/api/users",
                                 {"username": name, "display_name": "Dr " + name.title(),
                                  "institution_id": inst, "password": PASSWORD,
                                  "roles": roles, "title": title})["id"]
        for name in ("rad1", "reviewer"):
            api_ok(w.base, "PUT", "/api/users/%d/qualifications" % w.ids[name],
                   [{"modality": "CR", "body_part": "CHEST"}])
            api_ok(w.base, "POST", "/api/contracts",
                   {"user_id": w.ids[name], "requesting_id": w.clinic,
                    "reading_id": w.centre, "start_date": "", "end_date": "",
                    "modalities": ["CR"], "body_parts": []})
        w.clinic_token = api_ok(w.base, "POST", "/api/tokens",
                                {"name": "gateway", "institution_id": w.clinic,
                                 "roles": ["technician"]})["token"]
        for name in w.ids:
            status, body, _ = login(w.base, name)
            assert status == 200, body
            w.tokens[name] = body["token"]
        yield w
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def ok(w, who, method, path, body=None):
    status, parsed, _ = api_call(w.base, method, path, body, token=w.tokens[who])
    assert status in (200, 201, 204), "%s %s: %d %r" % (method, path, status, parsed)
    return parsed


def release_study(w, patient_id, clinic_token=None, phone=None, series_count=1):
    """Stores a study, orders it read, reports and approves it; (order id, study)."""
    files, study = make_study(patient_id, series_count=series_count)
    for data in files:
        body, boundary = multipart_body([(b"application/dicom", data)])
        headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
                   + boundary.decode(),
                   "Authorization": "Bearer " + (clinic_token or w.clinic_token)}
        status, _, raw = request(w.base + "/dicom-web/studies", data=body, headers=headers,
                                 method="POST")
        assert status == 200, raw[:300]
    order = {"study_uid": study, "body_part": "CHEST", "priority": "routine"}
    if phone is not None:
        order["patient_phone"] = phone
    if clinic_token:
        status, made, _ = api_call(w.base, "POST", "/api/orders", order, token=clinic_token)
        assert status == 201, made
        oid = made["id"]
    else:
        oid = ok(w, "tech", "POST", "/api/orders", order)["id"]
    assert ok(w, "rad1", "POST", "/api/orders/%d/grab" % oid)["state"] == "claimed"
    ok(w, "rad1", "PUT", "/api/orders/%d/report/draft" % oid,
       {"findings": "Patchy opacity in the right lower lobe.", "impression": IMPRESSION})
    ok(w, "rad1", "POST", "/api/orders/%d/report/submit" % oid, {})
    done = ok(w, "reviewer", "POST", "/api/orders/%d/report/review" % oid, {"approve": True})
    assert done["state"] == "released", done
    return oid, study, files


def qr_url(tmp, pdf):
    """The URL the PDF's QR code holds (pdftoppm, then zbarimg)."""
    (tmp / "film.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "150", "-f", "1", "-l", "1",
                    str(tmp / "film.pdf"), str(tmp / "page")], check=True)
    page = sorted(tmp.glob("page*.png"))[0]
    proc = subprocess.run(["zbarimg", "--raw", "-q", str(page)], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip()


def test_film_flow(world, tmp_path):
    w = world
    oid, study, files = release_study(w, "PAT-FILM-1")

    # The clinic prints the PDF; the QR code holds the link.
    status, _, _ = api_call(w.base, "GET", "/api/orders/%d/film" % oid, token=None)
    assert status == 401
    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + w.tokens["tech"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/pdf"
        pdf = r.read()
    assert pdf.startswith(b"%PDF-")
    (tmp_path / "text.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(tmp_path / "text.pdf"), "-"], check=True,
                          capture_output=True).stdout.decode()
    assert "WANG FANG" in text, text
    assert IMPRESSION in text, text
    # One series: its middle image is the key image, below the impression.
    assert "Key images" in text and "Series 1 Image 2" in text, text
    assert pdf.count(b"/Subtype /Image") == 1
    url = qr_url(tmp_path, pdf)
    m = re.fullmatch(re.escape(w.base) + r"/film/(cf_[A-Za-z0-9_-]{43})", url)
    assert m, url
    token = m.group(1)

    # The Encapsulated PDF is in the study.
    status, _, raw = request(w.base + "/dicom-web/studies/%s/series?Modality=DOC" % study,
                             headers={"Authorization": "Bearer " + w.tokens["tech"],
                                      "Accept": "application/dicom+json"})
    assert status == 200, raw[:300]
    found = json.loads(raw)
    assert any(s.get("00080060", {}).get("Value") == ["DOC"] for s in found), found

    # The patient's page is served for the link's path (when the web build exists).
    status, page, headers = film(w.base, "GET", "/film/%s" % token)
    assert status == 200 or b"not built" in page, (status, page[:200])
    if status == 200:
        assert b'id="film"' in page and headers["Content-Type"].startswith("text/html")

    status, _, headers = film(w.base, "GET", "/film/api/%s/nothing/here" % token)
    assert status == 404 and headers["Content-Type"].startswith("application/json")

    # The page opens; its answer is asked for. Nothing is shown without a session.
    status, opened, _ = film_json(w.base, "GET", "/film/api/%s" % token)
    assert status == 200 and opened["factor"] == "birth_date", opened
    status, gone, _ = film_json(w.base, "GET", "/film/api/%s/report" % token)
    assert status == 404

    # Wrong answers are refused, then throttled.
    throttled = None
    for i in range(8):
        status, body, cookie, headers = verify(w.base, token, "19990101")
        assert cookie is None
        if status == 429:
            throttled = headers
            break
        assert status == 403 and body["reason"] == "wrong_answer", (i, status, body)
    assert throttled is not None, "no throttling after several wrong answers"
    retry = int(throttled["Retry-After"])
    assert 1 <= retry <= 60
    time.sleep(retry + 0.2)

    status, shown, cookie, _ = verify(w.base, token, "1980-02-14")
    assert status == 200, shown
    assert cookie and cookie.startswith("cloudpacs_film=fs_")
    assert shown["study"]["patient_name"].replace("^", " ") == "WANG FANG"
    assert shown["can_share"] is True

    status, report, _ = film_json(w.base, "GET", "/film/api/%s/report" % token, cookie=cookie)
    assert status == 200, report
    assert report["impression"] == IMPRESSION
    assert report["doctor"] == "Dr Rad1" and report["reviewer"] == "Dr Reviewer"
    assert report["signature_valid"] is True

    status, series, _ = film_json(w.base, "GET", "/film/api/%s/series" % token, cookie=cookie)
    assert status == 200, series
    assert len(series["series"]) == 1, series
    one = series["series"][0]
    assert one["instance_count"] == len(files) and len(one["instances"]) == len(files)
    status, thumb, headers = film(w.base, "GET", one["thumbnail"], cookie=cookie)
    assert status == 200 and thumb[:2] == b"\xff\xd8", (status, thumb[:100])
    status, img, headers = film(w.base, "GET", "/film/api/%s/instances/%s/rendered"
                                % (token, one["instances"][1]), cookie=cookie)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    status, img, _ = film(w.base, "GET", "/film/api/%s/instances/%s/rendered?window=40,400"
                          % (token, one["instances"][0]), cookie=cookie)
    assert status == 200 and img[:2] == b"\xff\xd8"
    status, _, _ = film(w.base, "GET", "/film/api/%s/instances/1.2.3.4/rendered" % token,
                        cookie=cookie)
    assert status == 404

    status, again, _ = film(w.base, "GET", "/film/api/%s/report.pdf" % token, cookie=cookie)
    assert status == 200 and again == pdf

    # The cookie belongs to its token: another path gets the same 404 as a forged token.
    forged = "cf_" + "A" * 43
    answers = []
    for path, ck in (("/film/api/%s/report" % forged, cookie),
                     ("/film/api/%s" % forged, None)):
        status, body, _ = film(w.base, "GET", path, cookie=ck)
        answers.append((status, body))
    status, body, _, _ = verify(w.base, forged, BIRTH)
    answers.append((status, body))
    assert [a[0] for a in answers] == [404, 404, 404], answers
    assert answers[0][1] == answers[1][1]

    # Sharing on with another doctor.
    status, child, _ = film_json(w.base, "POST", "/film/api/%s/share" % token,
                                 {"days": 3, "deidentify": True}, cookie=cookie)
    assert status == 201, child
    m = re.fullmatch(re.escape(w.base) + r"/film/(cf_[A-Za-z0-9_-]{43})", child["url"])
    assert m, child
    child_token = m.group(1)
    assert film_json(w.base, "GET", "/film/api/%s" % child_token)[0] == 200
    status, shown, child_cookie, _ = verify(w.base, child_token, BIRTH)
    assert status == 200, shown
    assert shown["deidentify"] is True and shown["study"]["patient_name"] == ""
    assert shown["can_share"] is False
    status, report, _ = film_json(w.base, "GET", "/film/api/%s/report" % child_token,
                                  cookie=child_cookie)
    assert status == 200 and report["impression"] == IMPRESSION
    status, _, _ = film_json(w.base, "POST", "/film/api/%s/share" % child_token,
                             {"days": 1}, cookie=child_cookie)
    assert status == 403

    # Who looked: the link's own opens and the child's.
    status, views, _ = film_json(w.base, "GET", "/film/api/%s/views" % token, cookie=cookie)
    assert status == 200, views
    before = len(views["views"])
    assert any(v["by"] == "shared_link" for v in views["views"]), views
    assert film_json(w.base, "GET", "/film/api/%s" % token)[0] == 200
    time.sleep(1.5)     # the audit writer commits in the background
    status, views, _ = film_json(w.base, "GET", "/film/api/%s/views" % token, cookie=cookie)
    assert len(views["views"]) > before, views

    # Revoked: the same 404 as a forged token, the session closes at once.
    status, _, _ = api_call(w.base, "POST", "/api/orders/%d/film/revoke" % oid, {},
                            token=w.tokens["rad1"])
    assert status == 403, "the clinic manages its film, not the doctor"
    assert ok(w, "tech", "POST", "/api/orders/%d/film/revoke" % oid, {})["revoked"] == 1
    status, revoked, _ = film(w.base, "GET", "/film/api/%s/report" % token, cookie=cookie)
    assert status == 404 and revoked == answers[0][1]
    status, revoked, _ = film(w.base, "GET", "/film/api/%s" % token)
    assert status == 404 and revoked == answers[0][1]
    status, _, _, _ = verify(w.base, token, BIRTH)
    assert status == 404
    status, _, _ = film(w.base, "GET", "/film/api/%s/report" % child_token,
                        cookie=child_cookie)
    assert status == 404, "a child of a revoked link closes too"

    # A lost paper: the clinic makes a new link and PDF; the new QR code works.
    assert ok(w, "tech", "POST", "/api/orders/%d/film" % oid, {})["revoked"] == 0
    with urllib.request.urlopen(req, timeout=60) as r:
        reissued = r.read()
    again = tmp_path / "again"
    again.mkdir()
    new_url = qr_url(again, reissued)
    new_token = new_url.rsplit("/", 1)[1]
    assert new_token != token
    assert film_json(w.base, "GET", "/film/api/%s" % new_token)[0] == 200


def audit_of(w, actor, type_):
    """The audit records of one type with one actor, newest first (the writer commits late)."""
    found = []
    for _ in range(20):
        status, body, _ = api_call(w.base, "GET", "/api/audit?actor=%s&limit=500" % actor)
        assert status == 200, body
        found = [r for r in body["records"] if r["type"] == type_]
        if found:
            time.sleep(1.0)     # and whatever else was still queued
            status, body, _ = api_call(w.base, "GET", "/api/audit?actor=%s&limit=500" % actor)
            return [r for r in body["records"] if r["type"] == type_]
        time.sleep(0.3)
    return found


def test_film_child_revoke_and_picture_audit(world):
    """The patient lists and revokes the links they made; pictures are audited once a series."""
    w = world
    oid, study, files = release_study(w, "PAT-FILM-3", series_count=2)
    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + w.tokens["tech"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        pdf = r.read()
    tmp = w.tmp / "revoke"
    tmp.mkdir()
    # The key images: the middle one of each series.
    assert pdf.count(b"/Subtype /Image") == 2
    token = qr_url(tmp, pdf).rsplit("/", 1)[1]
    status, shown, cookie, _ = verify(w.base, token, BIRTH)
    assert status == 200, shown
    link_id = shown["id"]

    # Pictures: one record per (session, series), however many are looked at.
    status, series, _ = film_json(w.base, "GET", "/film/api/%s/series" % token, cookie=cookie)
    assert len(series["series"]) == 2, series
    one = series["series"][0]
    for sop in one["instances"] * 3:
        status, _, _ = film(w.base, "GET", "/film/api/%s/instances/%s/rendered" % (token, sop),
                            cookie=cookie)
        assert status == 200
    assert film(w.base, "GET", one["thumbnail"], cookie=cookie)[0] == 200
    reads = audit_of(w, "share:%d" % link_id, "share_images_read")
    assert len(reads) == 1, reads
    uids = [pydicom.dcmread(io.BytesIO(f)).SeriesInstanceUID for f in files]
    assert reads[0]["detail"]["series_uid"] == one["series_uid"] in uids
    # Another series: another record, once again however many pictures.
    two = series["series"][1]
    for sop in two["instances"] * 2:
        assert film(w.base, "GET", "/film/api/%s/instances/%s/rendered" % (token, sop),
                    cookie=cookie)[0] == 200
    time.sleep(1.0)
    reads = audit_of(w, "share:%d" % link_id, "share_images_read")
    assert sorted(r["detail"]["series_uid"] for r in reads) == \
        sorted([one["series_uid"], two["series_uid"]]), reads

    # No links made yet; two made; one revoked by the patient.
    status, shares, _ = film_json(w.base, "GET", "/film/api/%s/shares" % token, cookie=cookie)
    assert status == 200 and shares["shares"] == [], shares
    kids = []
    for days in (3, 7):
        status, child, _ = film_json(w.base, "POST", "/film/api/%s/share" % token,
                                     {"days": days}, cookie=cookie)
        assert status == 201, child
        kids.append((child["id"], child["url"].rsplit("/", 1)[1]))
    status, shares, _ = film_json(w.base, "GET", "/film/api/%s/shares" % token, cookie=cookie)
    assert [s["id"] for s in shares["shares"]] == [kids[1][0], kids[0][0]], shares
    first = shares["shares"][1]
    assert first["revoked"] is False and first["views"] == 0 and first["deidentify"] is False
    assert first["created"] and first["expires"] and first["revoked_at"] is None

    # The doctor given the first child looks at another series' pictures: its own record.
    status, _, kid_cookie, _ = verify(w.base, kids[0][1], BIRTH)
    assert status == 200
    sop = one["instances"][0]
    assert film(w.base, "GET", "/film/api/%s/instances/%s/rendered" % (kids[0][1], sop),
                cookie=kid_cookie)[0] == 200
    assert len(audit_of(w, "share:%d" % kids[0][0], "share_images_read")) == 1

    # Unknown ids, the link's own id and a child of another link: one and the same 404.
    answers = []
    for bad in (999999, link_id, "abc"):
        status, body, _ = film(w.base, "POST", "/film/api/%s/share/%s/revoke" % (token, bad),
                               {}, cookie=cookie)
        answers.append((status, body))
    status, body, _ = film(w.base, "POST", "/film/api/%s/share/%d/revoke"
                           % (kids[0][1], kids[1][0]), {}, cookie=kid_cookie)
    answers.append((status, body))
    assert {a for a in answers} == {answers[0]} and answers[0][0] == 404, answers
    # Without the session: the gate's 404.
    assert film(w.base, "POST", "/film/api/%s/share/%d/revoke" % (token, kids[0][0]),
                {})[0] == 404

    status, done, _ = film_json(w.base, "POST", "/film/api/%s/share/%d/revoke"
                                % (token, kids[0][0]), {}, cookie=cookie)
    assert status == 200 and done == {"id": kids[0][0], "revoked": True}, done
    assert film(w.base, "GET", "/film/api/%s/report" % kids[0][1], cookie=kid_cookie)[0] == 404
    assert film_json(w.base, "GET", "/film/api/%s" % kids[0][1])[0] == 404
    assert film_json(w.base, "GET", "/film/api/%s" % kids[1][1])[0] == 200
    status, shares, _ = film_json(w.base, "GET", "/film/api/%s/shares" % token, cookie=cookie)
    assert [s["revoked"] for s in shares["shares"]] == [False, True], shares
    assert shares["shares"][1]["revoked_at"] and shares["shares"][1]["views"] == 0
    # Twice is fine; the parent's session goes on.
    assert film(w.base, "POST", "/film/api/%s/share/%d/revoke" % (token, kids[0][0]), {},
                cookie=cookie)[0] == 200
    assert film(w.base, "GET", "/film/api/%s/report" % token, cookie=cookie)[0] == 200
    revs = audit_of(w, "share:%d" % link_id, "share_child_revoked")
    assert revs and all(r["detail"]["child_id"] == kids[0][0] for r in revs), revs


PHONE = "+86 138-0013-9427"


def test_film_phone_factor(world, tmp_path):
    """An institution configured for phone_last4: the link asks for the phone's last digits."""
    w = world
    clinic = api_ok(w.base, "POST", "/api/institutions",
                    {"parent_id": 0, "kind": "clinic", "code": "PHONECLINIC",
                     "name": "Phone Clinic"})["id"]
    for name in ("rad1", "reviewer"):
        api_ok(w.base, "POST", "/api/contracts",
               {"user_id": w.ids[name], "requesting_id": clinic, "reading_id": w.centre,
                "start_date": "", "end_date": "", "modalities": ["CR"], "body_parts": []})
    gateway = api_ok(w.base, "POST", "/api/tokens",
                     {"name": "phone-gateway", "institution_id": clinic,
                      "roles": ["technician"]})["token"]

    # A number without four digits, or with letters, is refused.
    files, study = make_study("PAT-FILM-PHONE-0")
    for bad in ("12-3", "call me"):
        status, body, _ = api_call(w.base, "POST", "/api/orders",
                                   {"study_uid": study, "patient_phone": bad}, token=gateway)
        assert status == 400, body

    oid, _, _ = release_study(w, "PAT-FILM-PHONE-1", clinic_token=gateway, phone=PHONE)
    status, order, _ = api_call(w.base, "GET", "/api/orders/%d" % oid, token=gateway)
    assert status == 200 and "9427" not in json.dumps(order), order
    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + gateway})
    with urllib.request.urlopen(req, timeout=60) as r:
        pdf = r.read()
    (tmp_path / "p.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(tmp_path / "p.pdf"), "-"], check=True,
                          capture_output=True).stdout.decode()
    assert "手机号码后四位" in text, text
    token = qr_url(tmp_path, pdf).rsplit("/", 1)[1]
    status, opened, _ = film_json(w.base, "GET", "/film/api/%s" % token)
    assert status == 200 and opened["factor"] == "phone_last4", opened
    status, body, cookie, _ = verify(w.base, token, "1234")
    assert status == 403 and cookie is None, body
    status, body, cookie, _ = verify(w.base, token, BIRTH)
    assert status in (403, 429) and cookie is None, body
    for _ in range(4):
        status, shown, cookie, headers = verify(w.base, token, "9427")
        if status != 429:
            break
        time.sleep(int(headers["Retry-After"]) + 0.2)
    assert status == 200 and cookie, shown
    assert shown["factor"] == "phone_last4"

    # Without a phone, the same institution's link falls back to the birth date.
    oid, _, _ = release_study(w, "PAT-FILM-PHONE-2", clinic_token=gateway)
    with urllib.request.urlopen(urllib.request.Request(
            w.base + "/api/orders/%d/film" % oid,
            headers={"Authorization": "Bearer " + gateway}), timeout=60) as r:
        pdf = r.read()
    again = tmp_path / "again"
    again.mkdir()
    token = qr_url(again, pdf).rsplit("/", 1)[1]
    assert film_json(w.base, "GET", "/film/api/%s" % token)[1]["factor"] == "birth_date"

    # The number is in no log line or audit record, not even its last digits with it.
    time.sleep(1.0)
    status, audit, _ = api_call(w.base, "GET", "/api/audit?limit=500")
    assert status == 200
    for text in (json.dumps(audit), w.srv.log_text()):
        for secret in (PHONE, "13800139427", "138-0013-9427", "0013-9427"):
            assert secret not in text


def test_film_factor_config_refused(cloudpacs_bin, tmp_path):
    """serve does not start with a second factor it does not know, for one institution too."""
    for text in ("[film]\nfactor = sms\n", "[film]\nfactor = birth_date\n\n"
                 "[film.SOMECLINIC]\nfactor = email\n"):
        config = tmp_path / "bad.ini"
        config.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
        env.update({"CLOUDPACS_CONFIG": str(config), "CLOUDPACS_DATA_DIR": str(tmp_path / "d"),
                    "CLOUDPACS_HTTP_PORT": "0", "CLOUDPACS_DICOM_PORT": "0"})
        proc = subprocess.run([str(cloudpacs_bin), "serve", "--services", "web"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        assert proc.returncode == 4, proc.stderr[-2000:]
        assert b"factor: birth_date or phone_last4" in proc.stderr, proc.stderr[-2000:]


BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def test_film_page(world, tmp_path):
    """tests/browser/film.mjs on a phone-sized screen, against a new released report."""
    if not (REPO_ROOT / "web" / "dist" / "film.html").is_file():
        pytest.skip("the patient's page is not built (scripts/console.sh)")
    if not os.access(CHROMIUM, os.X_OK) or not shutil.which("node") or \
            not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("chromium, node and tests/browser's playwright-core are needed")
    w = world
    oid, _, _ = release_study(w, "PAT-FILM-2")
    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + w.tokens["tech"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        pdf = r.read()
    url = qr_url(tmp_path, pdf)
    assert "/film/cf_" in url, url

    shots = tmp_path / "screenshots"
    shots.mkdir()
    env = dict(os.environ, FILM_URL=url, BIRTH_DATE="1980-02-14", WRONG_DATE="1990-01-01",
               IMPRESSION=IMPRESSION, CHROMIUM=CHROMIUM, SCREENSHOT_DIR=str(shots))
    proc = subprocess.run(["node", "--test", "film.mjs"], cwd=BROWSER_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = proc.stdout.decode(errors="replace")
    print("screenshots in %s" % shots)
    print(out)
    assert proc.returncode == 0, "the film page test failed\n%s" % out[-6000:]
    assert "# pass 0\n" not in out, out
