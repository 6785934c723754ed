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
"""

BIRTH = "19800214"
IMPRESSION = "Right lower lobe pneumonia."

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "zbarimg")),
    reason="poppler-utils and zbar-tools are needed")


def make_study(patient_id, count=3):
    """count CT_small instances of one new study and series, as Part 10 bytes."""
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(count):
        ds = pydicom.dcmread(str(CT_SMALL))
        ds.Modality = "CR"
        ds.PatientID = patient_id
        ds.PatientName = "WANG^FANG"
        ds.PatientBirthDate = BIRTH
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


def release_study(w, patient_id):
    """Stores a study, orders it read, reports and approves it; (order id, study)."""
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
