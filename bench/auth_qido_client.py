"""auth_qido_client.py - the HTTP side of bench/auth_qido.sh.

  setup BASE SERVICE_TOKEN N   makes a hospital, a technician of it and an API
                               token of it (REST API, service token), stores N
                               studies of one CT_small-like instance each with
                               STOW-RS under that token (so they are the
                               hospital's), signs the technician in and prints
                               the session token.
  run BASE TOKEN SECONDS CLIENTS PATH
                               CLIENTS processes, each over one keep-alive
                               connection, GET PATH with the bearer TOKEN for
                               SECONDS (after a short warm-up), every answer
                               checked for 200; prints requests per second.

Processes, not threads: Python's threads share one interpreter lock, which
would cap the client instead of the server.
"""

import http.client
import io
import json
import multiprocessing
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

PASSWORD = "Bench-auth-1234"
USERNAME = "bench.tech"
WARMUP_S = 0.5


def call(base, method, path, body, token):
    headers = {"Authorization": "Bearer " + token}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit("auth_qido_client: %s %s: %d %s" % (method, path, e.code, e.read()[:200]))


def instance_bytes(template, n):
    ds = template.copy()
    ds.PatientID = "BENCH-AUTH-%05d" % n
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, write_like_original=True)
    return out.getvalue()


def setup(base, service, count):
    inst = call(base, "POST", "/api/institutions",
                {"parent_id": 0, "kind": "hospital", "code": "BENCH", "name": "Bench"},
                service)
    call(base, "POST", "/api/users",
         {"username": USERNAME, "display_name": "Bench", "institution_id": inst["id"],
          "password": PASSWORD, "roles": ["technician"]}, service)
    tok = call(base, "POST", "/api/tokens",
               {"name": "bench-gateway", "institution_id": inst["id"],
                "roles": ["technician"]}, service)["token"]

    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    boundary = "cloudpacs-bench-auth"
    for n in range(count):
        body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                + instance_bytes(template, n) + b"\r\n--" + boundary.encode() + b"--\r\n")
        req = urllib.request.Request(base + "/dicom-web/studies", data=body, method="POST",
                                     headers={"Authorization": "Bearer " + tok,
                                              "Content-Type": 'multipart/related; '
                                              'type="application/dicom"; boundary='
                                              + boundary})
        urllib.request.urlopen(req, timeout=120).read()

    req = urllib.request.Request(base + "/api/session", method="POST",
                                 data=json.dumps({"username": USERNAME,
                                                  "password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})
    print(json.load(urllib.request.urlopen(req, timeout=60))["token"])


def client(args):
    base, token, seconds, path = args
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": "Bearer " + token, "Accept": "application/dicom+json"}
    start = time.perf_counter()
    counted_from = start + WARMUP_S
    end = counted_from + seconds
    done = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("auth_qido_client: %s answered %d" % (path, r.status))
        if now >= counted_from:
            done += 1
    conn.close()
    return done


def run(base, token, seconds, clients, path):
    with multiprocessing.Pool(clients) as pool:
        counts = pool.map(client, [(base, token, seconds, path)] * clients)
    print("%.1f" % (sum(counts) / seconds))


def main():
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "run":
        run(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        sys.exit("auth_qido_client: unknown command %s" % cmd)


if __name__ == "__main__":
    main()
