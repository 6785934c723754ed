"""DICOMweb (PS3.18) of `cloudpacs serve` driven over HTTP with Python's urllib.

One server is started for the module on 127.0.0.1 with free DICOM and HTTP
ports and a temporary data directory; pydicom's test files are stored with
STOW-RS, searched with QIDO-RS and read back with WADO-RS, and compared with
what pydicom reads from the same files. Hostile bodies follow; after each,
the server must still answer. Only the process started here is stopped.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest

from conftest import PYDICOM_DATA, SERVICE_TOKEN, bearer

TEST_FILES = PYDICOM_DATA / "test_files"
# Distinct SOP Instance UIDs; a mix of syntaxes: explicit and implicit VR,
# no pixels, native multi-frame, RLE.
STORED = ["CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "rtdose.dcm",
          "SC_rgb_rle_2frame.dcm"]
READY_TIMEOUT = 30
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    def __init__(self, binary, tmp):
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.log = Path(tmp) / "serve.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CLOUDPACS_") or k == "CLOUDPACS_BIN"}
        env.update({
            "CLOUDPACS_DICOM_PORT": str(self.dicom_port),
            "CLOUDPACS_HTTP_PORT": str(self.http_port),
            "CLOUDPACS_DATA_DIR": str(Path(tmp) / "data"),
            "CLOUDPACS_HTTP_TOKEN": SERVICE_TOKEN,
        })
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen([str(binary), "serve", "--services", "dicom,web"],
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=env)
        lines = self._read_lines(2)
        assert any("DICOMweb at http://127.0.0.1:%d/dicom-web" % self.http_port in l
                   for l in lines), "web service did not start: %r\n%s" % (
                       lines, self.log.read_text(errors="replace"))
        self.base = "http://127.0.0.1:%d/dicom-web" % self.http_port

    def _read_lines(self, n):
        box = []

        def read():
            for _ in range(n):
                box.append(self.proc.stdout.readline().decode())
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(READY_TIMEOUT)
        return box

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("server did not stop on SIGTERM")
        self.err.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def web(cloudpacs_bin, tmp_path_factory):
    srv = WebServer(cloudpacs_bin, tmp_path_factory.mktemp("dicomweb"))
    yield srv
    assert srv.stop() == 0
    log = srv.log.read_text(errors="replace")
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in log, log[-3000:]


# --- HTTP helpers ---------------------------------------------------------------

def request(url, data=None, headers=None, method=None):
    """(status, headers, body bytes), whatever the status.

    Sent with the service token unless headers carry an Authorization of
    their own (None as its value: none at all).
    """
    headers = dict(headers or {})
    if "Authorization" not in headers:
        headers.update(bearer())
    elif headers["Authorization"] is None:
        del headers["Authorization"]
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url, headers=None):
    status, hdrs, body = request(url, headers=headers)
    assert status == 200, (url, status, body[:300])
    assert hdrs["Content-Type"].startswith("application/dicom+json")
    return json.loads(body)


def multipart_body(parts, boundary=b"cloudpacs-test-boundary"):
    body = b""
    for ctype, data in parts:
        body += b"--" + boundary + b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n", boundary


def stow(base, parts, study=None, boundary=b"cloudpacs-test-boundary", ctype=None):
    body, boundary = multipart_body(parts, boundary)
    url = base + "/studies" + ("/" + study if study else "")
    ctype = ctype or 'multipart/related; type="application/dicom"; boundary=' + boundary.decode()
    return request(url, data=body, headers={"Content-Type": ctype}, method="POST")


def parse_multipart(content_type, body):
    """The parts (headers dict, bytes) of a multipart/related body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    assert m, content_type
    delim = b"--" + m.group(1).encode()
    assert body.startswith(delim), body[:100]
    assert body.rstrip().endswith(delim + b"--"), body[-100:]
    parts = []
    for chunk in body.split(b"\r\n" + delim)[:-1]:
        if chunk.startswith(delim):
            chunk = chunk[len(delim):]
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        hdrs = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            hdrs[name.strip().lower()] = value.strip()
        parts.append((hdrs, data))
    return parts


def value(ds_json, tag):
    return ds_json.get(tag, {}).get("Value", [None])[0]


def datasets():
    return {name: pydicom.dcmread(str(TEST_FILES / name)) for name in STORED}


@pytest.fixture(scope="module")
def stored(web):
    parts = [(b"application/dicom", (TEST_FILES / name).read_bytes()) for name in STORED]
    status, hdrs, body = stow(web.base, parts)
    assert status == 200, body[:500]
    resp = json.loads(body)
    refs = resp["00081199"]["Value"]
    assert len(refs) == len(STORED)
    assert "Value" not in resp["00081198"]
    return datasets()


def instance_url(base, ds):
    return "%s/studies/%s/series/%s/instances/%s" % (base, ds.StudyInstanceUID,
                                                     ds.SeriesInstanceUID, ds.SOPInstanceUID)


# --- STOW-RS ------------------------------------------------------------------

def test_stow_response_references(web, stored):
    ds = stored["CT_small.dcm"]
    status, _, body = stow(web.base, [(b"application/dicom",
                                       (TEST_FILES / "CT_small.dcm").read_bytes())])
    assert status == 200
    resp = json.loads(body)
    item = resp["00081199"]["Value"][0]
    assert value(item, "00081150") == ds.SOPClassUID
    assert value(item, "00081155") == ds.SOPInstanceUID
    assert value(item, "00081190") == instance_url(web.base, ds)
    assert value(resp, "00081190") == web.base + "/studies/" + ds.StudyInstanceUID


def test_stow_non_dicom_part_fails_alone(web, stored):
    parts = [(b"application/dicom", b"this is not DICOM at all" * 10),
             (b"application/dicom", (TEST_FILES / "CT_small.dcm").read_bytes())]
    status, _, body = stow(web.base, parts)
    assert status == 202, body
    resp = json.loads(body)
    failed = resp["00081198"]["Value"]
    assert len(failed) == 1 and value(failed[0], "00081197") is not None
    assert len(resp["00081199"]["Value"]) == 1


def test_stow_study_mismatch_is_a900(web, stored):
    parts = [(b"application/dicom", (TEST_FILES / "CT_small.dcm").read_bytes())]
    status, _, body = stow(web.base, parts, study="1.2.3.4")
    assert status == 409
    failed = json.loads(body)["00081198"]["Value"]
    assert value(failed[0], "00081197") == 0xA900
    assert value(failed[0], "00081155") == stored["CT_small.dcm"].SOPInstanceUID


def test_stow_to_study_path_mixed(web, stored):
    plan = stored["rtplan.dcm"]
    parts = [(b"application/dicom", (TEST_FILES / "rtplan.dcm").read_bytes()),
             (b"application/dicom", (TEST_FILES / "CT_small.dcm").read_bytes())]
    status, _, body = stow(web.base, parts, study=plan.StudyInstanceUID)
    assert status == 202, body
    resp = json.loads(body)
    assert [value(i, "00081155") for i in resp["00081199"]["Value"]] == [plan.SOPInstanceUID]
    assert value(resp["00081198"]["Value"][0], "00081197") == 0xA900


def test_stow_wrong_content_type_is_415(web):
    status, _, _ = request(web.base + "/studies", data=b"{}", method="POST",
                           headers={"Content-Type": "application/json"})
    assert status == 415
    status, _, _ = stow(web.base, [(b"application/dicom", b"x")],
                        ctype='multipart/related; type="application/dicom+json"; boundary=b')
    assert status == 415


def test_stow_truncated_body(web, stored):
    body, boundary = multipart_body([(b"application/dicom",
                                      (TEST_FILES / "rtplan.dcm").read_bytes())])
    status, _, _ = request(web.base + "/studies", data=body[:len(body) // 2], method="POST",
                           headers={"Content-Type": 'multipart/related; type="application/'
                                    'dicom"; boundary=' + boundary.decode()})
    assert status in (400, 409)
    assert_alive(web)


def test_stow_wrong_boundary_is_400(web, stored):
    body, _ = multipart_body([(b"application/dicom",
                               (TEST_FILES / "rtplan.dcm").read_bytes())])
    status, _, _ = request(web.base + "/studies", data=body, method="POST",
                           headers={"Content-Type": 'multipart/related; type="application/'
                                    'dicom"; boundary=not-the-one'})
    assert status == 400
    assert_alive(web)


def test_huge_headers_431(web):
    status, _, _ = request(web.base + "/studies", headers={"X-Big": "a" * 40000})
    assert status == 431
    assert_alive(web)


def assert_alive(web):
    status, _, _ = request(web.base + "/studies?limit=1")
    assert status == 200


# --- QIDO-RS --------------------------------------------------------------------

def test_qido_exact_patient_id(web, stored):
    ds = stored["CT_small.dcm"]
    res = get_json(web.base + "/studies?PatientID=" + ds.PatientID)
    assert [value(r, "0020000D") for r in res] == [ds.StudyInstanceUID]
    r = res[0]
    assert value(r, "00100010") == {"Alphabetic": str(ds.PatientName)}
    assert value(r, "00080061") == "CT"
    assert value(r, "00201208") == 1
    assert list(r) == sorted(r), "tags must be sorted"


def test_qido_wildcard_name_and_tag_key(web, stored):
    res = get_json(web.base + "/studies?PatientName=compressed*")
    ids = sorted(value(r, "00100020") for r in res)
    want = sorted(d.PatientID for d in stored.values()
                  if str(d.PatientName).lower().startswith("compressed"))
    assert ids == want
    res = get_json(web.base + "/studies?00100020=" + stored["rtplan.dcm"].PatientID)
    assert len(res) >= 1


def test_qido_date_range(web, stored):
    res = get_json(web.base + "/studies?StudyDate=20040101-20041231")
    dates = [value(r, "00080020") for r in res]
    want = [d.StudyDate for d in stored.values() if "20040101" <= d.StudyDate <= "20041231"]
    assert sorted(dates) == sorted(set(want)) or sorted(dates) == sorted(want)
    assert all("20040101" <= d <= "20041231" for d in dates)


def test_qido_limit_offset(web, stored):
    all_rows = get_json(web.base + "/instances")
    assert len(all_rows) == len(STORED)
    page = get_json(web.base + "/instances?limit=2&offset=1")
    assert [value(r, "00080018") for r in page] == \
        [value(r, "00080018") for r in all_rows[1:3]]


def test_qido_includefield(web, stored):
    ds = stored["CT_small.dcm"]
    res = get_json(web.base + "/studies?PatientID=%s&includefield=StudyDescription,00100021"
                   % ds.PatientID)
    assert "00081030" in res[0] and "00100021" in res[0]
    res = get_json(web.base + "/studies/%s/series?includefield=all" % ds.StudyInstanceUID)
    assert value(res[0], "00080060") == ds.Modality
    assert value(res[0], "00201209") == 1


def test_qido_instances_of_series(web, stored):
    ds = stored["rtdose.dcm"]
    res = get_json(web.base + "/studies/%s/series/%s/instances" % (ds.StudyInstanceUID,
                                                                  ds.SeriesInstanceUID))
    assert value(res[0], "00080018") == ds.SOPInstanceUID
    assert value(res[0], "00280008") == int(ds.NumberOfFrames)
    assert value(res[0], "00081190") == instance_url(web.base, ds)


def test_qido_no_match_is_200_empty(web, stored):
    status, _, body = request(web.base + "/studies?PatientID=nobody-here")
    assert status == 200 and json.loads(body) == []


def test_qido_bad_parameters_400(web):
    for q in ("limit=-1", "nosuchkeyword=1", "fuzzymatching=maybe",
              "StudyInstanceUID=1.2*", "StudyDate=2020-01-01-x"):
        status, hdrs, body = request(web.base + "/studies?" + q)
        assert status == 400, (q, status)
        assert "error" in json.loads(body)


# --- WADO-RS --------------------------------------------------------------------

def test_retrieve_instance_byte_for_byte(web, stored):
    for name in ("CT_small.dcm", "SC_rgb_rle_2frame.dcm"):
        ds = stored[name]
        status, hdrs, body = request(instance_url(web.base, ds))
        assert status == 200
        parts = parse_multipart(hdrs["Content-Type"], body)
        assert len(parts) == 1
        assert parts[0][1] == (TEST_FILES / name).read_bytes()
        assert ds.file_meta.TransferSyntaxUID in parts[0][0]["content-type"]


def test_retrieve_series_and_study(web, stored):
    ds = stored["rtdose.dcm"]
    status, hdrs, body = request("%s/studies/%s/series/%s" % (web.base, ds.StudyInstanceUID,
                                                             ds.SeriesInstanceUID),
                                 headers={"Accept": 'multipart/related; '
                                          'type="application/dicom"; transfer-syntax=*'})
    assert status == 200
    parts = parse_multipart(hdrs["Content-Type"], body)
    assert [p[1] for p in parts] == [(TEST_FILES / "rtdose.dcm").read_bytes()]


def test_retrieve_converts_to_explicit_le(web, stored):
    ds = stored["MR_small_implicit.dcm"]
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=' + EXPLICIT_LE
    status, hdrs, body = request(instance_url(web.base, ds), headers={"Accept": accept})
    assert status == 200
    data = parse_multipart(hdrs["Content-Type"], body)[0][1]
    got = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert got.PixelData == ds.PixelData


def test_retrieve_unavailable_syntax_406(web, stored):
    ds = stored["CT_small.dcm"]
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    status, _, _ = request(instance_url(web.base, ds), headers={"Accept": accept})
    assert status == 406


def test_unknown_uids_404(web, stored):
    ds = stored["CT_small.dcm"]
    for url in (web.base + "/studies/1.2.3.999",
                web.base + "/studies/%s/series/1.2.3.999" % ds.StudyInstanceUID,
                web.base + "/studies/1.2.3.999/metadata",
                instance_url(web.base, ds).replace(ds.SOPInstanceUID, "1.2.3.999")
                + "/frames/1"):
        status, _, _ = request(url)
        assert status == 404, url
    assert_alive(web)


def test_metadata_matches_pydicom(web, stored):
    for name in ("CT_small.dcm", "rtplan.dcm"):
        ds = stored[name]
        meta = get_json(instance_url(web.base, ds) + "/metadata")
        assert len(meta) == 1
        meta = meta[0]
        for elem in ds:
            tag = "%08X" % elem.tag
            assert tag in meta, (name, tag)
            assert meta[tag]["vr"] in (elem.VR, "UN") or elem.VR in ("US or SS", "OB or OW")
            if elem.VR in ("UI", "CS", "LO", "SH", "DA", "TM") and elem.value not in ("", None):
                want = list(elem.value) if elem.VM > 1 else [elem.value]
                assert meta[tag]["Value"] == [str(v) for v in want], (name, tag)
            if elem.VR in ("US", "UL") and elem.VM == 1:
                assert meta[tag]["Value"] == [elem.value], (name, tag)


def test_series_metadata_etag(web, stored):
    ds = stored["CT_small.dcm"]
    url = "%s/studies/%s/series/%s/metadata" % (web.base, ds.StudyInstanceUID,
                                                ds.SeriesInstanceUID)
    status, hdrs, body = request(url)
    assert status == 200 and hdrs["ETag"]
    status, _, _ = request(url, headers={"If-None-Match": hdrs["ETag"]})
    assert status == 304
    # The second answer comes from the metadata cache: the same bytes and tag.
    status, hdrs2, body2 = request(url)
    assert status == 200 and hdrs2["ETag"] == hdrs["ETag"] and body2 == body
    assert [value(m, "00080018") for m in json.loads(body)] == [ds.SOPInstanceUID]


def test_bulkdata_pixel_value(web, stored):
    ds = stored["CT_small.dcm"]
    meta = get_json(instance_url(web.base, ds) + "/metadata")[0]
    uri = meta["7FE00010"]["BulkDataURI"]
    status, hdrs, body = request(uri)
    assert status == 200
    assert parse_multipart(hdrs["Content-Type"], body)[0][1] == ds.PixelData


def test_frames_native(web, stored):
    ds = stored["rtdose.dcm"]
    size = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    status, hdrs, body = request(instance_url(web.base, ds) + "/frames/1,3")
    assert status == 200
    parts = parse_multipart(hdrs["Content-Type"], body)
    assert [p[1] for p in parts] == [ds.PixelData[:size], ds.PixelData[2 * size:3 * size]]
    ct = stored["CT_small.dcm"]
    status, hdrs, body = request(instance_url(web.base, ct) + "/frames/1")
    assert parse_multipart(hdrs["Content-Type"], body)[0][1] == ct.PixelData


def test_frames_and_series_from_mapped_blobs(web):
    """Pixel data over the bulk data threshold (256 KiB) is not loaded: a single
    frame is sent from the blob's mapped pages, its offset not page-aligned, and
    a retrieve answer too; both tell their length."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "MAPPED", "MAPPED^FRAMES", "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 257, 263, 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = bytes(range(256)) * (257 * 263 * 4 * 2 // 256) + b"\x07" * (
        257 * 263 * 4 * 2 % 256)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    out = io.BytesIO()
    ds.save_as(out, write_like_original=False)
    data = out.getvalue()
    assert stow(web.base, [(b"application/dicom", data)])[0] == 200
    size = 257 * 263 * 2
    for frame in (1, 3):
        status, hdrs, body = request(instance_url(web.base, ds) + "/frames/%d" % frame)
        assert status == 200
        assert int(hdrs["Content-Length"]) == len(body)
        parts = parse_multipart(hdrs["Content-Type"], body)
        assert [p[1] for p in parts] == [ds.PixelData[(frame - 1) * size:frame * size]]
    status, hdrs, body = request(instance_url(web.base, ds)[:-len(ds.SOPInstanceUID) - 11],
                                 headers={"Accept": 'multipart/related; '
                                          'type="application/dicom"; transfer-syntax=*'})
    assert status == 200
    assert int(hdrs["Content-Length"]) == len(body)
    assert [p[1] for p in parse_multipart(hdrs["Content-Type"], body)] == [data]


def test_frames_compressed_as_stored(web, stored):
    ds = stored["SC_rgb_rle_2frame.dcm"]
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    status, hdrs, body = request(instance_url(web.base, ds) + "/frames/2",
                                 headers={"Accept": accept})
    assert status == 200
    frames = pydicom.encaps.generate_pixel_data_frame(ds.PixelData, 2)
    want = list(frames)[1]
    assert parse_multipart(hdrs["Content-Type"], body)[0][1] == want
    status, _, _ = request(instance_url(web.base, ds) + "/frames/3")
    assert status == 404
    status, _, _ = request(instance_url(web.base, ds) + "/frames/0")
    assert status == 400


# --- a real client: dicomweb-client on Node.js ---------------------------------

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_ready():
    """True when node and the pinned packages of node/package-lock.json are there."""
    if subprocess.run(["which", "node"], capture_output=True).returncode != 0:
        return False
    if not (NODE_DIR / "node_modules" / "dicomweb-client").is_dir():
        try:
            proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                  capture_output=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if proc.returncode != 0:
            return False
    return True


def test_dicomweb_client_node(web, stored):
    if not node_ready():
        pytest.skip("node or the npm packages of tests/integration/node are not available")
    # Stored above already: storing it again is an idempotent success.
    name = "MR_small_implicit.dcm"
    ds = stored[name]
    proc = subprocess.run(["node", str(NODE_DIR / "dicomweb_client_test.js"), web.base,
                           str(TEST_FILES / name), ds.StudyInstanceUID, ds.SeriesInstanceUID,
                           ds.SOPInstanceUID, ds.PatientID],
                          capture_output=True, timeout=120,
                          env=dict(os.environ, DICOMWEB_TOKEN=SERVICE_TOKEN))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    assert json.loads(proc.stdout)["ok"] is True
    assert_alive(web)
