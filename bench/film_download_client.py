#!/usr/bin/env python3
"""film_download_client.py - sets up bench/film_download.sh's study behind a
cloud film link: a reading centre and a clinic, a radiologist and a
reviewer under contract, the generated files stored by the clinic (STOW-RS),
an order read, reported and approved (the release makes the link and its
report PDF), the link's token read from the PDF's QR code (pdftoppm,
zbarimg), and the patient's answer given. Prints the shell variables the
timing needs:

    film_token=cf_...  cookie=cloudpacs_film=...  study=<uid>  bearer=<clinic token>

Usage: film_download_client.py BASE SERVICE_TOKEN WORKDIR FILE...
"""

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pydicom

PASSWORD = "Correct-horse-9"


def call(base, method, path, body=None, token=None, headers=None, raw=False):
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = "Bearer " + token
    data = body
    if body is not None and not isinstance(body, bytes):
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            status, out, rh = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, out, rh = e.code, e.read(), e.headers
    if status not in (200, 201, 204):
        sys.exit("film_download_client: %s %s: %d %r" % (method, path, status, out[:300]))
    if raw:
        return out, rh
    return json.loads(out) if out else None


def stow(base, token, files):
    boundary = b"cloudpacs-bench-film-download"
    for path in files:
        data = Path(path).read_bytes()
        body = (b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + data
                + b"\r\n--" + boundary + b"--\r\n")
        call(base, "POST", "/dicom-web/studies", body, token,
             {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
              + boundary.decode()})


def main(argv):
    base, service, work, files = argv[1], argv[2], Path(argv[3]), argv[4:]
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    modality, part = first.Modality, first.get("BodyPartExamined", "") or "CHEST"
    centre = call(base, "POST", "/api/institutions",
                  {"parent_id": 0, "kind": "centre", "code": "CENTRE", "name": "Centre"},
                  service)["id"]
    clinic = call(base, "POST", "/api/institutions",
                  {"parent_id": 0, "kind": "clinic", "code": "CLINIC", "name": "Clinic"},
                  service)["id"]
    ids, tokens = {}, {}
    for name, inst, roles in (("reviewer", centre, ["reviewer"]),
                              ("rad1", centre, ["radiologist"]),
                              ("tech", clinic, ["technician"])):
        ids[name] = call(base, "POST", "/api/users",
                         {"username": name, "display_name": name, "institution_id": inst,
                          "password": PASSWORD, "roles": roles,
                          "title": 3 if name == "reviewer" else 2}, service)["id"]
    for name in ("rad1", "reviewer"):
        call(base, "PUT", "/api/users/%d/qualifications" % ids[name],
             [{"modality": modality, "body_part": part}], service)
        call(base, "POST", "/api/contracts",
             {"user_id": ids[name], "requesting_id": clinic, "reading_id": centre,
              "start_date": "", "end_date": "", "modalities": [modality],
              "body_parts": []}, service)
    bearer = call(base, "POST", "/api/tokens",
                  {"name": "gateway", "institution_id": clinic, "roles": ["technician"]},
                  service)["token"]
    for name in ids:
        tokens[name] = call(base, "POST", "/api/session",
                            {"username": name, "password": PASSWORD})["token"]

    stow(base, bearer, files)
    study = first.StudyInstanceUID
    oid = call(base, "POST", "/api/orders",
               {"study_uid": study, "body_part": part, "priority": "routine"},
               tokens["tech"])["id"]
    call(base, "POST", "/api/orders/%d/grab" % oid, None, tokens["rad1"])
    call(base, "PUT", "/api/orders/%d/report/draft" % oid,
         {"findings": "Bench.", "impression": "Bench."}, tokens["rad1"])
    call(base, "POST", "/api/orders/%d/report/submit" % oid, {}, tokens["rad1"])
    call(base, "POST", "/api/orders/%d/report/review" % oid, {"approve": True},
         tokens["reviewer"])

    pdf, _ = call(base, "GET", "/api/orders/%d/film" % oid, None, tokens["tech"], raw=True)
    (work / "report.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "150", "-f", "1", "-l", "1",
                    str(work / "report.pdf"), str(work / "page")], check=True)
    page = sorted(work.glob("page*.png"))[0]
    url = subprocess.run(["zbarimg", "--raw", "-q", str(page)], check=True,
                         capture_output=True).stdout.decode().strip()
    token = re.search(r"/film/(cf_[A-Za-z0-9_-]{43})$", url).group(1)
    call(base, "GET", "/film/api/%s" % token)
    _, headers = call(base, "POST", "/film/api/%s/verify" % token,
                      {"answer": first.PatientBirthDate}, raw=True)
    cookie = headers["Set-Cookie"].split(";")[0]
    print("film_token=%s cookie=%s study=%s bearer=%s" % (token, cookie, study, bearer))


if __name__ == "__main__":
    main(sys.argv)
