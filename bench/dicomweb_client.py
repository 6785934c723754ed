"""dicomweb_client.py - the HTTP side of bench/dicomweb.sh.

  gen DIR [--tiny]              generates the data once under DIR (bench/
                                gen_studies.py: CR studies for the searches,
                                one 200-instance CT series; a 2500 x 2000
                                16-bit CR of 10 MB) and writes DIR/manifest.json
  load SYSTEM ROOT DIR OUT      stores the data through STOW-RS at ROOT (the
                                DICOMweb root URL): the search set in batches
                                (not timed), then the CT series in one request
                                (timed: the STOW figure), then the CR; writes
                                the STOW time as JSON to OUT
  prep-million DATA_DIR         makes bench_index's index at DATA_DIR/index.sqlite
                                servable: every row's blob key gets a file (a
                                hard link to an empty file: `cloudpacs serve`
                                removes rows whose blob is gone at start-up) and
                                every study is marked announced (else the
                                server's completion pass would mark 10,000
                                studies while the searches are timed)
  time SYSTEM ROOT DIR OUT [--reps N] [--million STUDIES]
                                times each case over one keep-alive connection
                                and writes the medians and p95s as JSON to OUT;
                                --million: only the two searches of the
                                million-instance index (bench_index's set of
                                STUDIES studies)
  loopback MB                   the ceiling of this client on loopback: another
                                process sends MB megabytes over TCP, this one
                                reads them into a buffer of a series' size
  report DIR RESULT... [--no-million]
                                prints the figure, ratio and goal lines and one
                                summary line per case from the JSON results

SYSTEM is cloudpacs or orthanc. For cloudpacs every request carries the
service token from CLOUDPACS_BENCH_TOKEN. Timing: time.perf_counter around
the request, from its first byte sent to the body's last byte read, after
three untimed requests; the median and the 95th percentile of the rest.
"""

import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

BOUNDARY = "dicomweb-bench-boundary-7d41"
STOW_BATCH = 50
SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'

# (case, unit, kind, goal): kind "ms" is a latency (lower is better), a rate
# otherwise; goal (op, value) is absolute, ("x", k) k times Orthanc's rate.
CASES = [
    ("qido.patient_id", "ms", (  "<", 1.0)),
    ("qido.name_wildcard", "ms", None),
    ("qido.page100", "ms", ("<", 10.0)),
    ("series_metadata", "ms", ("<", 5.0)),
    ("series_metadata_first", "ms", None),
    ("retrieve_series", "GB/s", (">=", 2.5)),
    ("frame.ct", "ms", ("<", 1.0)),
    ("frame.cr", "ms", ("<", 10.0)),
    ("stow", "instances/s", ("x", 3.0)),
    ("qido_1m.patient_id", "ms", ("<", 1.0)),
    ("qido_1m.page100", "ms", ("<", 10.0)),
]


def die(msg):
    sys.exit("dicomweb_client: " + msg)


# --- data -----------------------------------------------------------------------------


def cr_10mb(path, tiny):
    """A CR of 2500 x 2000 16-bit pixels (10,000,000 bytes), one frame."""
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rows, cols = (64, 64) if tiny else (2500, 2000)
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(y - rows / 2, x - cols / 2) / (min(rows, cols) / 2)
    pixels = (1.0 - np.clip(r, 0, 1)) * 3000 + rng.normal(0, 30, (rows, cols)) + 500
    pixels = np.clip(pixels, 0, 4095).astype("<u2")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["dicomweb-bench-cr-sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["dicomweb-bench-cr-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["dicomweb-bench-cr-series"])
    ds.PatientID = "BENCH-DW-CR"
    ds.PatientName = "BENCH^CR"
    ds.StudyDate = "20260101"
    ds.Modality = "CR"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID,
            "sop": ds.SOPInstanceUID, "frame_bytes": rows * cols * 2}


def files_under(top):
    out = []
    for d, _, names in os.walk(top):
        out += [os.path.join(d, n) for n in names if n.endswith(".dcm")]
    return sorted(out)


def gen(out, tiny):
    import pydicom

    here = os.path.dirname(os.path.abspath(__file__))
    gen_studies = os.path.join(here, "gen_studies.py")
    search_studies, slices, size = (6, 4, "tiny") if tiny else (300, 200, "real")
    # Different seeds: the generator's UIDs come from its seed.
    subprocess.run([sys.executable, gen_studies, "--out", out + "/search", "--cr",
                    str(search_studies), "--ct", "0", "--size", "tiny", "--seed", "11",
                    "--quiet"], check=True)
    subprocess.run([sys.executable, gen_studies, "--out", out + "/ct", "--ct", "1",
                    "--slices", str(slices), "--size", size, "--seed", "12", "--quiet"],
                   check=True)
    search = files_under(out + "/search")
    ct = sorted(files_under(out + "/ct"),
                key=lambda p: int(os.path.basename(p).split(".")[0]))
    patient_ids, families = [], []
    for f in search:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.PatientID not in patient_ids:
            patient_ids.append(ds.PatientID)
        family = str(ds.PatientName).split("^")[0]
        if family.isascii() and family.isalpha() and family not in families:
            families.append(family)
    studies = len({os.path.dirname(os.path.dirname(f)) for f in search})
    mid = pydicom.dcmread(ct[len(ct) // 2], stop_before_pixels=True)
    cr = cr_10mb(out + "/cr.dcm", tiny)
    manifest = {
        "search": search, "search_studies": studies, "patient_ids": patient_ids,
        "families": families, "ct": ct,
        "ct_study": mid.StudyInstanceUID, "ct_series": mid.SeriesInstanceUID,
        "ct_sop": mid.SOPInstanceUID, "ct_frame_bytes": int(mid.Rows) * int(mid.Columns) * 2,
        "ct_bytes": sum(os.path.getsize(f) for f in ct),
        "cr": out + "/cr.dcm", "cr_study": cr["study"], "cr_series": cr["series"],
        "cr_sop": cr["sop"], "cr_frame_bytes": cr["frame_bytes"],
        "total_studies": studies + 2,
    }
    with open(out + "/manifest.json", "w") as f:
        json.dump(manifest, f)
    print("# data: %d search instances in %d studies, CT series of %d instances (%.1f MB),"
          " CR of %.1f MB" % (len(search), studies, len(ct), manifest["ct_bytes"] / 1e6,
                              os.path.getsize(out + "/cr.dcm") / 1e6))


# --- HTTP -----------------------------------------------------------------------------


class Client:
    """One keep-alive connection to a DICOMweb root."""

    def __init__(self, system, root):
        parts = urllib.parse.urlsplit(root)
        self.host, self.port = parts.hostname, parts.port
        self.root = parts.path.rstrip("/")
        self.headers = {}
        token = os.environ.get("CLOUDPACS_BENCH_TOKEN")
        if system == "cloudpacs" and token:
            self.headers["Authorization"] = "Bearer " + token
        self.conn = None
        self.buf = bytearray(1 << 20)

    def connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        self.conn.connect()

    def request(self, method, path, accept=None, body=None, ctype=None):
        """Sends one request; answers (status, body as a memoryview). A keep-alive
        connection the server closed while idle (Orthanc closes them after a
        moment) is opened again once."""
        try:
            return self._request(method, path, accept, body, ctype)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()
            self.conn = None
            return self._request(method, path, accept, body, ctype)

    def fresh(self):
        """Opens a new connection now (before a timed request after a long pause)."""
        if self.conn is not None:
            self.conn.close()
        self.connect()

    def _request(self, method, path, accept, body, ctype):
        if self.conn is None:
            self.connect()
        headers = dict(self.headers)
        if accept:
            headers["Accept"] = accept
        if ctype:
            headers["Content-Type"] = ctype
        self.conn.request(method, self.root + path, body=body, headers=headers)
        r = self.conn.getresponse()
        n = 0
        length = r.getheader("Content-Length")
        if length is not None and int(length) > len(self.buf):
            self.buf = bytearray(int(length))
        while True:
            if n == len(self.buf):
                # A new buffer: the last answer's view may still hold the old one.
                grown = bytearray(2 * len(self.buf))
                grown[:n] = self.buf
                self.buf = grown
            with memoryview(self.buf) as view:
                got = r.readinto(view[n:])
            if not got:
                break
            n += got
        if r.will_close:
            self.conn.close()
            self.conn = None
        return r.status, memoryview(self.buf)[:n]


def multipart(paths):
    parts = []
    for p in paths:
        with open(p, "rb") as f:
            parts += [b"--", BOUNDARY.encode(), b"\r\nContent-Type: application/dicom\r\n\r\n",
                      f.read(), b"\r\n"]
    parts += [b"--", BOUNDARY.encode(), b"--\r\n"]
    return b"".join(parts)


def stow(client, paths):
    body = multipart(paths)
    ctype = 'multipart/related; type="application/dicom"; boundary=' + BOUNDARY
    client.fresh()
    t0 = time.perf_counter()
    status, answer = client.request("POST", "/studies", accept="application/dicom+json",
                                    body=body, ctype=ctype)
    t1 = time.perf_counter()
    if status != 200:
        die("STOW-RS answered %d: %s" % (status, bytes(answer[:300])))
    return t1 - t0


def load(system, root, d, out):
    m = json.load(open(d + "/manifest.json"))
    c = Client(system, root)
    for i in range(0, len(m["search"]), STOW_BATCH):
        stow(c, m["search"][i:i + STOW_BATCH])
    seconds = stow(c, m["ct"])
    stow(c, [m["cr"]])
    rate = len(m["ct"]) / seconds
    json.dump({"stow": {"value": rate, "n": 1,
                        "note": "%d instances, %.1f MB in one request, %.3f s"
                        % (len(m["ct"]), m["ct_bytes"] / 1e6, seconds)}}, open(out, "w"))


def prep_million(d):
    import sqlite3

    db = sqlite3.connect(d + "/index.sqlite")
    db.execute("UPDATE study SET announced = 1")
    db.commit()
    made, n, src = set(), 0, None
    for (key,) in db.execute("SELECT blob_key FROM instance"):
        if n % 50000 == 0:          # ext4 allows 65000 links to one inode
            src = "%s/.bench-empty-%d" % (d, n // 50000)
            open(src, "w").close()
        sub = os.path.dirname(key)
        if sub not in made:
            os.makedirs(os.path.join(d, "blobs", sub), exist_ok=True)
            made.add(sub)
        os.link(src, os.path.join(d, "blobs", key))
        n += 1
    db.close()
    print("# qido_1m: %d blob files linked" % n)


# --- timing ---------------------------------------------------------------------------


def timed(client, reps, make, check):
    """Times reps requests (after 3 untimed); make(i) -> (path, accept)."""
    times, last = [], None
    for i in range(reps + 3):
        path, accept = make(i)
        t0 = time.perf_counter()
        status, body = client.request("GET", path, accept=accept)
        t1 = time.perf_counter()
        if status != 200:
            die("GET %s answered %d: %s" % (path, status, bytes(body[:300])))
        last = check(body)
        if i >= 3:
            times.append(t1 - t0)
    times.sort()
    return times, last


def summary(times, note, rate_bytes=None):
    med = statistics.median(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    if rate_bytes:
        # A rate: the median time gives the median rate; p95 of times the slow rate.
        return {"value": rate_bytes / med / 1e9, "p95": rate_bytes / p95 / 1e9,
                "n": len(times), "note": note}
    return {"value": med * 1e3, "p95": p95 * 1e3, "n": len(times), "note": note}


def json_count(body):
    return len(json.loads(bytes(body)))


def at_least(n, what):
    def check(body):
        if len(body) < n:
            die("%s: %d bytes, expected at least %d" % (what, len(body), n))
        return len(body)
    return check


def time_all(system, root, d, out, reps):
    m = json.load(open(d + "/manifest.json"))
    c = Client(system, root)
    rnd = random.Random(5)
    res = {}
    ids = m["patient_ids"]

    t, n = timed(c, reps, lambda i: ("/studies?PatientID=" + ids[i % len(ids)],
                                     "application/dicom+json"), json_count)
    res["qido.patient_id"] = summary(t, "%d studies per answer (last)" % n)
    if n < 1:
        die("exact Patient ID search found nothing")

    fams = m["families"]
    t, n = timed(c, reps, lambda i: ("/studies?PatientName=%s*" % fams[i % len(fams)],
                                     "application/dicom+json"), json_count)
    res["qido.name_wildcard"] = summary(t, "FAMILY* over %d family names, %d studies in the "
                                        "last answer" % (len(fams), n))

    total = m["total_studies"]
    page = min(100, total)
    counts = []
    t, n = timed(c, reps, lambda i: ("/studies?limit=100&offset=%d"
                                     % rnd.randint(0, max(0, total - page)),
                                     "application/dicom+json"),
                 lambda b: counts.append(json_count(b)) or counts[-1])
    res["qido.page100"] = summary(t, "limit=100 at a random offset of %d studies, %d-%d "
                                  "studies per answer" % (total, min(counts), max(counts)))
    if min(counts) < page:
        die("a page of %d studies had only %d" % (page, min(counts)))

    meta = "/studies/%s/series/%s/metadata" % (m["ct_study"], m["ct_series"])
    t0 = time.perf_counter()
    status, body = c.request("GET", meta, accept="application/dicom+json")
    first = time.perf_counter() - t0
    if status != 200 or json_count(body) != len(m["ct"]):
        die("series metadata answered %d with %s" % (status, bytes(body[:200])))
    res["series_metadata_first"] = {"value": first * 1e3, "n": 1,
                                    "note": "the first request after STOW-RS"}
    t, n = timed(c, reps, lambda i: (meta, "application/dicom+json"), json_count)
    res["series_metadata"] = summary(t, "%d instances, %d bytes of JSON"
                                     % (n, len(body)))

    series = "/studies/%s/series/%s" % (m["ct_study"], m["ct_series"])
    big = max(3, reps // 10)
    t, n = timed(c, big, lambda i: (series, SERIES_ACCEPT), at_least(m["ct_bytes"], "series"))
    res["retrieve_series"] = summary(t, "%d instances, %d bytes per answer, median of %d"
                                     % (len(m["ct"]), n, len(t)), rate_bytes=n)

    for kind, n_bytes, study, ser, sop, k in (
            ("ct", m["ct_frame_bytes"], m["ct_study"], m["ct_series"], m["ct_sop"], reps),
            ("cr", m["cr_frame_bytes"], m["cr_study"], m["cr_series"], m["cr_sop"],
             max(3, reps // 4))):
        path = "/studies/%s/series/%s/instances/%s/frames/1" % (study, ser, sop)
        t, n = timed(c, k, lambda i: (path, FRAME_ACCEPT), at_least(n_bytes, "frame"))
        res["frame." + kind] = summary(t, "%d bytes per answer (frame %d), median of %d"
                                       % (n, n_bytes, len(t)))
    json.dump(res, open(out, "w"))


def time_million(system, root, out, reps, studies):
    """The two searches on bench_index's set: PID%07u per patient, 2 studies each."""
    c = Client(system, root)
    rnd = random.Random(6)
    res = {}
    t, n = timed(c, reps, lambda i: ("/studies?PatientID=PID%07u"
                                     % (rnd.randrange(studies) // 2),
                                     "application/dicom+json"), json_count)
    if n < 1:
        die("million: exact Patient ID search found nothing")
    res["qido_1m.patient_id"] = summary(t, "%d studies per answer (last)" % n)
    page = min(100, studies)
    counts = []
    t, n = timed(c, reps, lambda i: ("/studies?limit=100&offset=%d"
                                     % rnd.randint(0, studies - page),
                                     "application/dicom+json"),
                 lambda b: counts.append(json_count(b)) or counts[-1])
    if min(counts) < page:
        die("million: a page of %d studies had only %d" % (page, min(counts)))
    res["qido_1m.page100"] = summary(t, "limit=100 at a random offset of %d studies"
                                     % studies)
    json.dump(res, open(out, "w"))


def loopback(megabytes):
    """Reads megabytes from a sending child over loopback TCP, as a series is read."""
    total = megabytes * 1000000
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    pid = os.fork()
    if pid == 0:
        conn, _ = lst.accept()
        block = b"\x5a" * (1 << 20)
        left = total
        while left > 0:
            left -= conn.send(block[:min(left, len(block))])
        conn.close()
        os._exit(0)
    sock = socket.create_connection(lst.getsockname())
    buf = memoryview(bytearray(106 * 1000000))
    got, at = 0, 0
    t0 = time.perf_counter()
    while got < total:
        if at + (1 << 20) > len(buf):
            at = 0
        n = sock.recv_into(buf[at:], min(len(buf) - at, total - got))
        if n == 0:
            break
        got += n
        at += n
    seconds = time.perf_counter() - t0
    os.waitpid(pid, 0)
    print("# loopback: this client reads %.2f GB/s from another process over TCP (%d MB),"
          " the ceiling of retrieve_series" % (got / seconds / 1e9, megabytes))


# --- report ---------------------------------------------------------------------------


def report(d, paths, skip_million):
    results = {"cloudpacs": {}, "orthanc": {}}
    for p in paths:
        system = os.path.basename(p).split(".")[0]
        if os.path.exists(p):
            results[system].update(json.load(open(p)))
    ours, theirs = results["cloudpacs"], results["orthanc"]
    missing = 0
    if not theirs:
        print("# orthanc: not measured (not asked for, or Orthanc or its DICOMweb plugin is not"
              " installed)")
    print("# orthanc at a million instances: not measured (qido_1m is cloudpacs only)")
    for name, unit, goal in CASES:
        o = ours.get(name)
        if o is None and name.startswith("qido_1m.") and skip_million:
            print("# %s: not measured (--million 0)" % name)
            continue
        if o is None:
            print("# %s: no cloudpacs figure" % name)
            missing += 1
            continue
        if theirs and not name.startswith("qido_1m.") and name not in theirs:
            print("# %s: no orthanc figure" % name)
            missing += 1
        lower_better = unit == "ms"
        for system, r in (("cloudpacs", o), ("orthanc", theirs.get(name))):
            if r is None:
                continue
            print("figure dicomweb.%s.%s %.3f %s" % (name, system, r["value"], unit))
            extra = (", p95 %.3f %s" % (r["p95"], unit)) if "p95" in r else ""
            print("# dicomweb.%s.%s: %s%s, n=%d" % (name, system, r["note"], extra, r["n"]))
        t = theirs.get(name)
        ratio = None
        if t is not None and o["value"] > 0 and t["value"] > 0:
            ratio = t["value"] / o["value"] if lower_better else o["value"] / t["value"]
            print("ratio dicomweb.%s.cloudpacs_vs_orthanc %.2f" % (name, ratio))
        verdict, goal_text = "-", "none"
        if goal is not None:
            op, v = goal
            if op == "x":
                goal_text = ">= %gx orthanc" % v
                verdict = "n/a" if ratio is None else ("met" if ratio >= v else "missed")
            else:
                goal_text = "%s %g %s" % (op, v, unit)
                ok = o["value"] < v if op == "<" else o["value"] >= v
                verdict = "met" if ok else "missed"
            print("goal dicomweb.%s.cloudpacs %s: %s" % (name, goal_text, verdict))
        print("case %-22s cloudpacs %10.3f  orthanc %10s  ratio %6s  goal %-18s %s  [%s]" % (
            name, o["value"], "-" if t is None else "%.3f" % t["value"],
            "-" if ratio is None else "%.2f" % ratio, goal_text, verdict, unit))
    if missing:
        die("%d figures missing" % missing)


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    reps = 200
    if "--reps" in a:
        i = a.index("--reps")
        reps = int(a[i + 1])
        del a[i:i + 2]
    million = None
    if "--million" in a:
        i = a.index("--million")
        million = int(a[i + 1])
        del a[i:i + 2]
    if a[0] == "gen":
        gen(a[1], "--tiny" in a[2:])
    elif a[0] == "load":
        load(a[1], a[2], a[3], a[4])
    elif a[0] == "prep-million":
        prep_million(a[1])
    elif a[0] == "time" and million is not None:
        time_million(a[1], a[2], a[4], reps, million)
    elif a[0] == "time":
        time_all(a[1], a[2], a[3], a[4], reps)
    elif a[0] == "loopback":
        loopback(int(a[1]))
    elif a[0] == "report":
        report(a[1], [p for p in a[2:] if p != "--no-million"], "--no-million" in a)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
