#!/usr/bin/env python3
"""film_first_image_client.py - the driver of bench/film_first_image.sh.

Sets the generated CT study up behind a cloud film link through the real
REST API (a centre and a clinic, a radiologist and a reviewer under
contract, the files stored by the clinic's gateway over STOW-RS, an order
read, reported and approved: the release makes the link and the report PDF,
whose QR code is read with pdftoppm and zbarimg), then times what the
patient's page does from the moment the link is opened to the first picture:

    GET  /film/api/{token}                      the link opened (its factor)
    POST /film/api/{token}/verify               the birth date (the session cookie)
    GET  /film/api/{token}/series               the series and their instances
    GET  /film/api/{token}/instances/{sop}/rendered   the first picture, whole

over one keep-alive connection per run, a new share session each run.

Two profiles: "loopback" as measured, and "slow" (a slow 3G/4G link) as a
model on the client's side: each request costs one round trip (RTT) more,
the connection one more (its handshake), and every byte of a request and its
answer its time at RATE. The machine is shared, so loopback's queueing is
not touched (no tc): the model adds the link's costs to the server's real
times, one request after the other, as a page would wait for them.

Usage: film_first_image_client.py BASE SERVICE_TOKEN WORKDIR RUNS RTT_MS RATE_KBIT FILE...
Prints `figure` and `goal` lines (bench/README.md).
"""

import http.client
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pydicom

PASSWORD = "Correct-horse-9"
GOAL_MS = 2000


def call(base, method, path, body=None, token=None, headers=None, raw=False):
    """One REST call that must succeed: its parsed JSON (or bytes and headers with raw)."""
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
        sys.exit("film_first_image: %s %s: %d %r" % (method, path, status, out[:300]))
    if raw:
        return out, rh
    return json.loads(out) if out else None


def setup(base, service, work, files):
    """A released report of the study behind a link: (link token, birth date)."""
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    modality = first.Modality
    part = first.get("BodyPartExamined", "") or "CHEST"
    inst = {}
    for kind, code in (("centre", "CENTRE"), ("clinic", "CLINIC")):
        inst[kind] = call(base, "POST", "/api/institutions",
                          {"parent_id": 0, "kind": kind, "code": code, "name": code}, service)["id"]
    users = {}
    for name, where, role in (("rad", "centre", "radiologist"), ("rev", "centre", "reviewer"),
                              ("tech", "clinic", "technician")):
        uid = call(base, "POST", "/api/users",
                   {"username": name, "display_name": name, "institution_id": inst[where],
                    "password": PASSWORD, "roles": [role], "title": 3}, service)["id"]
        if where == "centre":
            call(base, "PUT", "/api/users/%d/qualifications" % uid,
                 [{"modality": modality, "body_part": part}], service)
            call(base, "POST", "/api/contracts",
                 {"user_id": uid, "requesting_id": inst["clinic"], "reading_id": inst["centre"],
                  "start_date": "", "end_date": "", "modalities": [modality],
                  "body_parts": []}, service)
        users[name] = call(base, "POST", "/api/session",
                           {"username": name, "password": PASSWORD})["token"]
    gateway = call(base, "POST", "/api/tokens",
                   {"name": "gateway", "institution_id": inst["clinic"],
                    "roles": ["technician"]}, service)["token"]
    boundary = b"bench-film-first-image"
    for path in files:
        body = (b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n"
                + Path(path).read_bytes() + b"\r\n--" + boundary + b"--\r\n")
        call(base, "POST", "/dicom-web/studies", body, gateway,
             {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
              + boundary.decode()})
    oid = call(base, "POST", "/api/orders",
               {"study_uid": first.StudyInstanceUID, "body_part": part, "priority": "routine"},
               users["tech"])["id"]
    call(base, "POST", "/api/orders/%d/grab" % oid, None, users["rad"])
    call(base, "PUT", "/api/orders/%d/report/draft" % oid,
         {"findings": "Bench.", "impression": "Bench."}, users["rad"])
    call(base, "POST", "/api/orders/%d/report/submit" % oid, {}, users["rad"])
    call(base, "POST", "/api/orders/%d/report/review" % oid, {"approve": True}, users["rev"])
    pdf, _ = call(base, "GET", "/api/orders/%d/film" % oid, None, users["tech"], raw=True)
    (work / "report.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "150", "-f", "1", "-l", "1",
                    str(work / "report.pdf"), str(work / "page")], check=True)
    page = sorted(work.glob("page*.png"))[0]
    url = subprocess.run(["zbarimg", "--raw", "-q", str(page)], check=True,
                         capture_output=True).stdout.decode().strip()
    token = re.search(r"/film/(cf_[A-Za-z0-9_-]{43})$", url).group(1)
    return token, first.PatientBirthDate


class Link:
    """One keep-alive connection, and the modelled cost of each exchange on it."""

    def __init__(self, base, rtt_s, rate_bps):
        u = urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.rtt_s, self.rate_bps = rtt_s, rate_bps
        self.model_s = rtt_s if rate_bps else 0.0     # the handshake
        self.cookie = None

    def exchange(self, method, path, body=None):
        headers = {}
        data = None
        if self.cookie:
            headers["Cookie"] = self.cookie
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        out = resp.read()
        if resp.status != 200:
            sys.exit("film_first_image: %s %s: %d %r" % (method, path, resp.status, out[:200]))
        set_cookie = resp.getheader("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";")[0]
        if self.rate_bps:
            # Headers both ways: about 400 bytes up and 300 down besides the bodies.
            sent = 400 + len(path) + (len(data) if data else 0)
            self.model_s += self.rtt_s + (sent + 300 + len(out)) * 8 / self.rate_bps
        return out

    def close(self):
        self.conn.close()


def first_image(base, token, answer, rtt_s, rate_bps):
    """Seconds from opening the link to the whole first picture, and its bytes."""
    link = Link(base, rtt_s, rate_bps)
    t0 = time.perf_counter()
    link.exchange("GET", "/film/api/%s" % token)
    link.exchange("POST", "/film/api/%s/verify" % token, {"answer": answer})
    series = json.loads(link.exchange("GET", "/film/api/%s/series" % token))["series"]
    sop = series[0]["instances"][0]
    img = link.exchange("GET", "/film/api/%s/instances/%s/rendered" % (token, sop))
    real = time.perf_counter() - t0
    link.close()
    return real + link.model_s, len(img)


def p95(values):
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def main(argv):
    base, service, work = argv[1], argv[2], Path(argv[3])
    runs, rtt_ms, rate_kbit = int(argv[4]), float(argv[5]), float(argv[6])
    files = argv[7:]
    token, answer = setup(base, service, work, files)
    # The very first open reads the file from the store; the runs after it may find it cached.
    cold, _ = first_image(base, token, answer, 0, 0)
    print("figure film_first_image.cold.cloudpacs %.0f ms" % (cold * 1000))
    for profile, rtt_s, rate_bps in (("loopback", 0.0, 0.0),
                                     ("slow", rtt_ms / 1000, rate_kbit * 1000)):
        times, size = [], 0
        for _ in range(runs):
            secs, size = first_image(base, token, answer, rtt_s, rate_bps)
            times.append(secs * 1000)
        med, top = statistics.median(times), p95(times)
        what = "as measured" if profile == "loopback" else \
            "modelled: %g ms RTT, %g kbit/s" % (rtt_ms, rate_kbit)
        print("# film_first_image.%s: %d runs, %s; first picture %d bytes"
              % (profile, runs, what, size))
        print("figure film_first_image.%s.p50.cloudpacs %.0f ms" % (profile, med))
        print("figure film_first_image.%s.p95.cloudpacs %.0f ms" % (profile, top))
        print("goal film_first_image.%s.p95.cloudpacs < %d ms: %s"
              % (profile, GOAL_MS, "met" if top < GOAL_MS else "missed"))


if __name__ == "__main__":
    main(sys.argv)
