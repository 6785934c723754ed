"""render_client.py - the HTTP side of bench/render.sh.

  gen DIR [--tiny]      writes ct.dcm (512 x 512, 16-bit signed) and cr.dcm
                        (2500 x 2000, 12 bits in 16) with a window each;
                        --tiny makes both 64 x 64.
  stow URL FILE...      stores the files with STOW-RS at URL (.../dicom-web)
                        and prints each one's rendered URL path.
  orthanc URL FILE...   uploads the files to Orthanc at URL and prints each
                        one's /instances/{id}/frames/0/rendered path.
  time URL N [cold]     GETs URL N times over one keep-alive connection
                        (after 3 untimed) and prints the median in ms, then
                        p90 and the body size. cold: each request asks for
                        another window width, so that no answer is cached.
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request

import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def image(path, rows, cols, modality, bits, signed, center, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(y - rows / 2, x - cols / 2) / (min(rows, cols) / 2)
    if signed:
        base = np.where(r < 0.9, 40.0, -1000.0) + 300.0 * (r < 0.3)
        pixels = base + rng.normal(0, 20, (rows, cols)) + 1024.0
    else:
        pixels = (1.0 - np.clip(r, 0, 1)) * 3000 + rng.normal(0, 30, (rows, cols)) + 500
    pixels = np.clip(pixels, 0, (1 << bits) - 1).astype("<u2")

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ("1.2.840.10008.5.1.4.1.1.2" if modality == "CT"
                                            else "1.2.840.10008.5.1.4.1.1.1")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BENCH-RENDER"
    ds.PatientName = "Bench^Render"
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if signed:
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
    ds.WindowCenter = str(center)
    ds.WindowWidth = str(width)
    ds.PixelData = pixels.tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)


def gen(out, tiny):
    ct = (64, 64) if tiny else (512, 512)
    cr = (64, 64) if tiny else (2500, 2000)
    image(out + "/ct.dcm", ct[0], ct[1], "CT", 12, True, 40, 400, 1)
    image(out + "/cr.dcm", cr[0], cr[1], "CR", 12, False, 2000, 3000, 2)


def stow(base, files):
    boundary = "render-bench-boundary"
    body = b""
    for f in files:
        body += (b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                 + open(f, "rb").read() + b"\r\n")
    body += b"--" + boundary.encode() + b"--\r\n"
    req = urllib.request.Request(base + "/studies", data=body, method="POST", headers=dict(
        auth(), **{"Content-Type": 'multipart/related; type="application/dicom"; boundary='
                   + boundary}))
    urllib.request.urlopen(req, timeout=120).read()
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        print("%s/studies/%s/series/%s/instances/%s/rendered" % (
            urllib.parse.urlsplit(base).path, ds.StudyInstanceUID, ds.SeriesInstanceUID,
            ds.SOPInstanceUID))


def auth():
    """The bearer of CLOUDPACS_BENCH_TOKEN (cloudpacs's service token), if set."""
    token = os.environ.get("CLOUDPACS_BENCH_TOKEN")
    return {"Authorization": "Bearer " + token} if token else {}


def orthanc(base, files):
    for f in files:
        req = urllib.request.Request(base + "/instances", data=open(f, "rb").read(),
                                     method="POST",
                                     headers={"Content-Type": "application/dicom"})
        answer = json.load(urllib.request.urlopen(req, timeout=120))
        print("/instances/%s/frames/0/rendered" % answer["ID"])


def timed(url, n, cold):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    path = parts.path + ("?" + parts.query if parts.query else "")
    times, size = [], 0
    for i in range(n + 3):
        t0 = time.perf_counter()
        asked = path
        if cold:
            asked += ("&" if "?" in path else "?") + "window=40,%d" % (400 + i)
        conn.request("GET", asked, headers=dict(auth(), Accept="image/jpeg"))
        r = conn.getresponse()
        body = r.read()
        t1 = time.perf_counter()
        if r.status != 200 or body[:2] != b"\xff\xd8":
            sys.exit("render_client: %s answered %d" % (url, r.status))
        size = len(body)
        if i >= 3:
            times.append((t1 - t0) * 1000.0)
    times.sort()
    print("%.3f %.3f %d" % (statistics.median(times), times[int(0.9 * (len(times) - 1))],
                            size))


def main():
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2], "--tiny" in sys.argv[3:])
    elif cmd == "stow":
        stow(sys.argv[2], sys.argv[3:])
    elif cmd == "orthanc":
        orthanc(sys.argv[2], sys.argv[3:])
    elif cmd == "time":
        timed(sys.argv[2], int(sys.argv[3]), "cold" in sys.argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
