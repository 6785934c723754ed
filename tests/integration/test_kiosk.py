"""The self-service print kiosk, the patient's follow-up read and patient-scope
share links (docs/api.md, "Kiosk" and "Cloud film").

A kiosk is an API token whose only role is kiosk: it identifies a patient by
the QR code's token or by accession number and birth date (a wrong answer is
refused, several are throttled), lists the released reports to print, fetches
the PDF and records each print, which the hospital's admin counts per day and
kiosk (JSON and CSV). Any other principal gets 403. The patient's own link
asks for a follow-up read (an order in the pool; a second one is 409; a
doctor's child link may not). A patient-scope link shows the patient's two
studies; a study-scope link only its own.
"""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import REPO_ROOT, api_call, api_ok
from test_auth_http import PASSWORD, login
from test_dicomweb import multipart_body, request
from test_film import (BIRTH, CT_SMALL, IMPRESSION, film, film_json, ok, qr_url, verify,
                       world)  # noqa: F401  (world is the shared server fixture)

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "zbarimg")),
    reason="poppler-utils and zbar-tools are needed")


def make_study(patient_id, accession, study_date, count=2):
    """count CT_small instances of one new study, with its accession and date."""
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(count):
        ds = pydicom.dcmread(str(CT_SMALL))
        ds.Modality = "CR"
        ds.PatientID = patient_id
        ds.PatientName = "LI^NA"
        ds.PatientBirthDate = BIRTH
        ds.BodyPartExamined = "CHEST"
        ds.AccessionNumber = accession
        ds.StudyDate = study_date
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, write_like_original=True)
        out.append(buf.getvalue())
    return out, study


def release(w, patient_id, accession, study_date="20261201"):
    """A stored, read, approved and released study: (order id, study uid)."""
    files, study = make_study(patient_id, accession, study_date)
    for data in files:
        body, boundary = multipart_body([(b"application/dicom", data)])
        headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
                   + boundary.decode(), "Authorization": "Bearer " + w.clinic_token}
        status, _, raw = request(w.base + "/dicom-web/studies", data=body, headers=headers,
                                 method="POST")
        assert status == 200, raw[:300]
    oid = ok(w, "tech", "POST", "/api/orders",
             {"study_uid": study, "body_part": "CHEST", "priority": "routine"})["id"]
    read(w, oid)
    return oid, study


def read(w, oid):
    """rad1 grabs, reports and the reviewer approves: the order is released."""
    assert ok(w, "rad1", "POST", "/api/orders/%d/grab" % oid)["state"] == "claimed"
    ok(w, "rad1", "PUT", "/api/orders/%d/report/draft" % oid,
       {"findings": "Patchy opacity in the right lower lobe.", "impression": IMPRESSION})
    ok(w, "rad1", "POST", "/api/orders/%d/report/submit" % oid, {})
    done = ok(w, "reviewer", "POST", "/api/orders/%d/report/review" % oid, {"approve": True})
    assert done["state"] == "released", done


def order_pdf(w, oid):
    req = urllib.request.Request(w.base + "/api/orders/%d/film" % oid,
                                 headers={"Authorization": "Bearer " + w.tokens["tech"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def link_token(w, oid, tmp_path, name="qr"):
    """The share token the QR code of the order's PDF holds."""
    d = tmp_path / name
    d.mkdir()
    url = qr_url(d, order_pdf(w, oid))
    m = re.fullmatch(re.escape(w.base) + r"/film/(cf_[A-Za-z0-9_-]{43})", url)
    assert m, url
    return m.group(1)


def kiosk(w, method, path, body=None, session=None, token=None):
    """(status, raw body, headers) of a kiosk call."""
    headers = {"Authorization": "Bearer " + (token or w.kiosk_token)}
    if session:
        headers["X-Kiosk-Session"] = session
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(w.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def kiosk_json(w, method, path, body=None, session=None, token=None):
    status, raw, headers = kiosk(w, method, path, body, session, token)
    return status, (json.loads(raw) if raw else None), headers


@pytest.fixture(scope="module")
def kw(world):  # noqa: F811
    """The film world with a kiosk of the clinic and the admins who count and look."""
    w = world
    w.kiosk_token = api_ok(w.base, "POST", "/api/tokens",
                           {"name": "lobby-1", "institution_id": w.clinic,
                            "roles": ["kiosk"]})["token"]
    status, body, _ = api_call(w.base, "POST", "/api/tokens",
                               {"name": "lobby-x", "institution_id": w.clinic,
                                "roles": ["kiosk", "technician"]})
    assert status == 403, "a kiosk holds no other role: %r" % body
    for name, inst, roles in (("clinicadmin", w.clinic, ["institution_admin"]),
                              ("centreadmin", w.centre, ["institution_admin"])):
        w.ids[name] = api_ok(w.base, "POST", "/api/users",
                             {"username": name, "display_name": name, "institution_id": inst,
                              "password": PASSWORD, "roles": roles})["id"]
        status, body, _ = login(w.base, name)
        assert status == 200, body
        w.tokens[name] = body["token"]
    return w


def audit_types(w, actor):
    time.sleep(1.5)     # the audit writer commits in the background
    found = api_ok(w.base, "GET", "/api/audit?actor=%s&limit=200" % actor)
    return [r["type"] for r in found["records"]]


def test_kiosk(kw, tmp_path):
    w = kw
    oid, study = release(w, "PAT-KIOSK-1", "ACC-K1")
    token = link_token(w, oid, tmp_path)
    pdf = order_pdf(w, oid)

    # Only a kiosk: the clinic's gateway and a person get 403.
    for who in (w.clinic_token, w.tokens["tech"], w.tokens["clinicadmin"]):
        status, body, _ = kiosk_json(w, "POST", "/api/kiosk/identify", {"token": token},
                                     token=who)
        assert status == 403, body
    status, _, _ = api_call(w.base, "POST", "/api/kiosk/identify", {"token": token}, token=None)
    assert status == 401
    # And the kiosk can do nothing else: no studies, no orders.
    for path in ("/dicom-web/studies?PatientID=PAT-KIOSK-1", "/api/orders/%d" % oid,
                 "/api/orders/%d/film" % oid):
        status, _, _ = kiosk(w, "GET", path)
        assert status == 403, path
    status, _, _ = kiosk(w, "POST", "/api/orders", {"study_uid": study})
    assert status == 403

    # The QR code scanned.
    status, got, _ = kiosk_json(w, "POST", "/api/kiosk/identify", {"token": token})
    assert status == 200, got
    assert got["session"].startswith("ks_")
    items = {i["order_id"]: i for i in got["items"]}
    assert oid in items, got
    item = items[oid]
    assert item["report"] is True and item["printed"] == 0 and item["modality"] == "CR"
    assert item["study_date"] == "20261201"
    session = got["session"]

    status, raw, headers = kiosk(w, "GET", "/api/kiosk/items/%d/report.pdf" % oid,
                                 session=session)
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert raw == pdf
    status, _, _ = kiosk(w, "GET", "/api/kiosk/items/%d/report.pdf" % oid)
    assert status == 404, "no session, nothing to print"
    status, _, _ = kiosk(w, "GET", "/api/kiosk/items/%d/report.pdf" % oid, session=session,
                         token=w.clinic_token)
    assert status == 403
    # The electronic film, when the server makes one (film_pages says how many sheets).
    status, raw, _ = kiosk(w, "GET", "/api/kiosk/items/%d/film.pdf" % oid, session=session)
    if item["film_pages"] > 0:
        assert status == 200 and raw.startswith(b"%PDF-"), (status, raw[:100])
        status, printed, _ = kiosk_json(w, "POST", "/api/kiosk/items/%d/printed" % oid,
                                        {"what": "film", "pages": item["film_pages"]},
                                        session=session)
        assert status == 201 and printed["printed"] == 1, printed
        films, film_pages = 1, item["film_pages"]
    else:
        assert status == 404
        films, film_pages = 0, 0

    status, printed, _ = kiosk_json(w, "POST", "/api/kiosk/items/%d/printed" % oid,
                                    {"what": "report", "pages": 1}, session=session)
    assert status == 201 and printed["printed"] == 1 + films, printed
    status, bad, _ = kiosk_json(w, "POST", "/api/kiosk/items/%d/printed" % oid,
                                {"what": "poster"}, session=session)
    assert status == 400, bad

    # Accession number and birth date.
    status, got, _ = kiosk_json(w, "POST", "/api/kiosk/identify",
                                {"accession": "ACC-K1", "answer": "1980-02-14"})
    assert status == 200, got
    items = {i["order_id"]: i for i in got["items"]}
    assert items[oid]["printed"] == 1 + films
    status, printed, _ = kiosk_json(w, "POST", "/api/kiosk/items/%d/printed" % oid,
                                    {"what": "report", "pages": 2}, session=got["session"])
    assert status == 201 and printed["printed"] == 2 + films
    status, again, _ = kiosk_json(w, "GET", "/api/kiosk/items", session=got["session"])
    assert status == 200 and {i["order_id"]: i for i in again["items"]}[oid]["printed"] == \
        2 + films
    assert kiosk(w, "POST", "/api/kiosk/logout", {}, session=got["session"])[0] == 204
    status, _, _ = kiosk(w, "GET", "/api/kiosk/items", session=got["session"])
    assert status == 404

    # The counts: per day and kiosk, JSON and CSV; for the hospital's admin only.
    for who in ("tech", "rad1"):
        status, _, _ = api_call(w.base, "GET", "/api/kiosk/prints", token=w.tokens[who])
        assert status == 403
    status, _, _ = kiosk(w, "GET", "/api/kiosk/prints")
    assert status == 403
    counts = ok(w, "clinicadmin", "GET", "/api/kiosk/prints?from=2026-01-01")
    rows = [d for d in counts["days"] if d["kiosk"] == "lobby-1"]
    assert len(rows) == 1 and rows[0]["reports"] == 2 and rows[0]["films"] == films, counts
    assert rows[0]["pages"] == 3 + film_pages, counts
    assert rows[0]["institution_id"] == w.clinic
    assert ok(w, "centreadmin", "GET", "/api/kiosk/prints")["days"] == []
    req = urllib.request.Request(w.base + "/api/kiosk/prints?format=csv",
                                 headers={"Authorization": "Bearer " + w.tokens["clinicadmin"]})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/csv")
        text = r.read().decode()
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["day", "institution_id", "kiosk_kind", "kiosk_id", "kiosk", "reports",
                        "films", "pages"], table
    assert [r[4:] for r in table[1:]] == \
        [["lobby-1", "2", str(films), str(3 + film_pages)]], table

    # Wrong answers are refused, then throttled (the same throttle as the patient's page).
    status, body, _ = kiosk_json(w, "POST", "/api/kiosk/identify",
                                 {"accession": "NO-SUCH", "answer": BIRTH})
    assert status == 403 and body["reason"] == "wrong_answer", body
    throttled = None
    for i in range(8):
        status, body, headers = kiosk_json(w, "POST", "/api/kiosk/identify",
                                           {"accession": "ACC-K1", "answer": "19990101"})
        if status == 429:
            throttled = headers
            break
        assert status == 403 and body["reason"] == "wrong_answer", (i, status, body)
    assert throttled is not None, "no throttling after several wrong answers"
    time.sleep(int(throttled["Retry-After"]) + 0.2)
    status, got, _ = kiosk_json(w, "POST", "/api/kiosk/identify",
                                {"token": token, "answer": BIRTH})
    assert status == 200, got

    # Every step is in the audit trail, with the kiosk as the actor; no name in it.
    types = audit_types(w, "lobby-1")
    for t in ("kiosk_identified", "kiosk_report_read", "kiosk_printed",
              "kiosk_identify_refused", "kiosk_identify_throttled"):
        assert t in types, (t, types)
    found = api_ok(w.base, "GET", "/api/audit?actor=lobby-1&limit=200")
    assert "LI^NA" not in json.dumps(found) and "LI NA" not in json.dumps(found)
    log = w.srv.log_text()
    assert "PAT-KIOSK-1" not in log and "LI^NA" not in log


def test_followup(kw, tmp_path):
    w = kw
    oid, study = release(w, "PAT-FOLLOW-1", "ACC-F1")
    token = link_token(w, oid, tmp_path)
    status, shown, cookie, _ = verify(w.base, token, BIRTH)
    assert status == 200, shown

    status, listed, _ = film_json(w.base, "GET", "/film/api/%s/followup" % token, cookie=cookie)
    assert status == 200 and listed == {"followups": [], "may_ask": True}, listed
    status, asked, _ = film_json(w.base, "POST", "/film/api/%s/followup" % token,
                                 {"question": "Is the opacity still there?"}, cookie=cookie)
    assert status == 201, asked
    assert asked["question"] == "Is the opacity still there?"
    assert asked["state"] in ("submitted", "pooled"), asked
    fid = asked["order_id"]
    assert fid != oid

    status, again, _ = film_json(w.base, "POST", "/film/api/%s/followup" % token,
                                 {"question": "And now?"}, cookie=cookie)
    assert status == 409, again
    status, empty, _ = film_json(w.base, "POST", "/film/api/%s/followup" % token,
                                 {"question": "  "}, cookie=cookie)
    assert status == 400, empty
    status, listed, _ = film_json(w.base, "GET", "/film/api/%s/followup" % token, cookie=cookie)
    assert [f["order_id"] for f in listed["followups"]] == [fid], listed

    # An order like any other: the centre sees it, with the patient's question.
    orders = ok(w, "centreadmin", "GET", "/api/orders")
    mine = [o for o in orders["orders"] if o["id"] == fid]
    assert mine, orders
    assert mine[0]["study_uid"] == study and mine[0]["priority"] == "routine"
    assert mine[0]["clinical_notes"] == \
        "Follow-up requested by the patient: Is the opacity still there?"
    assert mine[0]["state"] == "pooled"

    # A doctor's child link may not ask.
    status, child, _ = film_json(w.base, "POST", "/film/api/%s/share" % token, {"days": 1},
                                 cookie=cookie)
    assert status == 201, child
    child_token = child["url"].rsplit("/", 1)[1]
    status, _, child_cookie, _ = verify(w.base, child_token, BIRTH)
    assert status == 200
    status, refused, _ = film_json(w.base, "POST", "/film/api/%s/followup" % child_token,
                                   {"question": "Me too"}, cookie=child_cookie)
    assert status == 403, refused
    status, listed, _ = film_json(w.base, "GET", "/film/api/%s/followup" % child_token,
                                  cookie=child_cookie)
    assert status == 200 and listed["may_ask"] is False

    # Read and released, it is shown as such; then another may be asked.
    read(w, fid)
    status, listed, _ = film_json(w.base, "GET", "/film/api/%s/followup" % token, cookie=cookie)
    assert listed["followups"][0]["state"] == "released", listed
    types = audit_types(w, "share:%d" % shown["id"])
    assert "share_followup_requested" in types, types


def test_patient_scope(kw, tmp_path):
    w = kw
    old_oid, old_study = release(w, "PAT-SCOPE-1", "ACC-S1", "20250301")
    new_oid, new_study = release(w, "PAT-SCOPE-1", "ACC-S2", "20261115")
    release(w, "PAT-SCOPE-OTHER", "ACC-S3", "20261116")
    study_token = link_token(w, old_oid, tmp_path, "old")

    # The clinic reissues the newer study's paper with a patient link.
    status, body, _ = api_call(w.base, "POST", "/api/orders/%d/film" % new_oid,
                               {"scope": "everything"}, token=w.tokens["tech"])
    assert status == 400, body
    made = ok(w, "tech", "POST", "/api/orders/%d/film" % new_oid, {"scope": "patient"})
    assert made["scope"] == "patient" and made["revoked"] == 1, made
    token = link_token(w, new_oid, tmp_path, "patient")
    status, shown, cookie, _ = verify(w.base, token, BIRTH)
    assert status == 200 and shown["scope"] == "patient", shown

    status, studies, _ = film_json(w.base, "GET", "/film/api/%s/studies" % token, cookie=cookie)
    assert status == 200, studies
    assert [s["study_uid"] for s in studies["studies"]] == [new_study, old_study], studies
    assert [s["own"] for s in studies["studies"]] == [True, False]
    assert all(s["report"] for s in studies["studies"])

    status, series, _ = film_json(w.base, "GET", "/film/api/%s/series?study=%s"
                                  % (token, old_study), cookie=cookie)
    assert status == 200 and len(series["series"]) == 1, series
    one = series["series"][0]
    assert one["thumbnail"].endswith("?study=" + old_study), one
    status, thumb, _ = film(w.base, "GET", one["thumbnail"], cookie=cookie)
    assert status == 200 and thumb[:2] == b"\xff\xd8"
    status, img, _ = film(w.base, "GET", "/film/api/%s/instances/%s/rendered?study=%s"
                          % (token, one["instances"][0], old_study), cookie=cookie)
    assert status == 200 and img[:2] == b"\xff\xd8"
    status, report, _ = film_json(w.base, "GET", "/film/api/%s/report?study=%s"
                                  % (token, old_study), cookie=cookie)
    assert status == 200 and report["impression"] == IMPRESSION
    status, _, _ = film_json(w.base, "GET", "/film/api/%s/report?study=1.2.3.4" % token,
                             cookie=cookie)
    assert status == 404

    # The study link of the older study shows that study only.
    status, _, study_cookie, _ = verify(w.base, study_token, BIRTH)
    assert status == 200
    status, studies, _ = film_json(w.base, "GET", "/film/api/%s/studies" % study_token,
                                   cookie=study_cookie)
    assert [s["study_uid"] for s in studies["studies"]] == [old_study], studies
    status, _, _ = film_json(w.base, "GET", "/film/api/%s/series?study=%s"
                             % (study_token, new_study), cookie=study_cookie)
    assert status == 404

    # With priors: the older study's link shows no later study.
    made = ok(w, "tech", "POST", "/api/orders/%d/film" % old_oid,
              {"scope": "patient_with_prior"})
    prior_token = link_token(w, old_oid, tmp_path, "prior")
    status, _, prior_cookie, _ = verify(w.base, prior_token, BIRTH)
    status, studies, _ = film_json(w.base, "GET", "/film/api/%s/studies" % prior_token,
                                   cookie=prior_cookie)
    assert [s["study_uid"] for s in studies["studies"]] == [old_study], studies
    ok(w, "tech", "POST", "/api/orders/%d/film" % new_oid, {"scope": "patient_with_prior"})
    prior_token = link_token(w, new_oid, tmp_path, "prior2")
    status, _, prior_cookie, _ = verify(w.base, prior_token, BIRTH)
    status, studies, _ = film_json(w.base, "GET", "/film/api/%s/studies" % prior_token,
                                   cookie=prior_cookie)
    assert [s["study_uid"] for s in studies["studies"]] == [new_study, old_study], studies


BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def test_kiosk_page(kw, tmp_path):
    """tests/browser/kiosk.mjs on a kiosk-sized screen: identify, list, print."""
    if not (REPO_ROOT / "web" / "dist" / "kiosk.html").is_file():
        pytest.skip("the kiosk page is not built (scripts/console.sh)")
    if not os.access(CHROMIUM, os.X_OK) or not shutil.which("node") or \
            not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("chromium, node and tests/browser's playwright-core are needed")
    w = kw
    oid, _ = release(w, "PAT-KIOSK-PAGE", "ACC-KP")
    scan = "%s/film/%s" % (w.base, link_token(w, oid, tmp_path))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    env = dict(os.environ, KIOSK_URL=w.base + "/kiosk.html", KIOSK_TOKEN=w.kiosk_token,
               ACCESSION="ACC-KP", BIRTH_DATE="1980-02-14", SCAN_TEXT=scan, CHROMIUM=CHROMIUM,
               SCREENSHOT_DIR=str(shots))
    proc = subprocess.run(["node", "--test", "kiosk.mjs"], cwd=BROWSER_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = proc.stdout.decode(errors="replace")
    print(out)
    assert proc.returncode == 0, "the kiosk page test failed\n%s" % out[-6000:]
    assert "# pass 0\n" not in out, out


def test_film_page_studies_and_followup(kw, tmp_path):
    """tests/browser/film_followup.mjs: a patient link's two studies, a follow-up asked."""
    if not (REPO_ROOT / "web" / "dist" / "film.html").is_file():
        pytest.skip("the patient's page is not built (scripts/console.sh)")
    if not os.access(CHROMIUM, os.X_OK) or not shutil.which("node") or \
            not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("chromium, node and tests/browser's playwright-core are needed")
    w = kw
    release(w, "PAT-PAGE-2", "ACC-P1", "20250101")
    oid, _ = release(w, "PAT-PAGE-2", "ACC-P2", "20261101")
    ok(w, "tech", "POST", "/api/orders/%d/film" % oid, {"scope": "patient"})
    url = "%s/film/%s" % (w.base, link_token(w, oid, tmp_path))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    env = dict(os.environ, FILM_URL=url, BIRTH_DATE="1980-02-14", QUESTION="Is it still there",
               CHROMIUM=CHROMIUM, SCREENSHOT_DIR=str(shots))
    proc = subprocess.run(["node", "--test", "film_followup.mjs"], cwd=BROWSER_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = proc.stdout.decode(errors="replace")
    print(out)
    assert proc.returncode == 0, "the follow-up page test failed\n%s" % out[-6000:]
    assert "# pass 0\n" not in out, out
