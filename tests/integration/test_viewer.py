"""The OHIF viewer at /viewer/, in a real browser.

Starts `cloudpacs serve` on free ports with a temporary data directory,
stores a CT through STOW-RS (PS3.18 10.5) in one uncompressed and two
compressed transfer syntaxes (JPEG Lossless SV1 and JPEG-LS Lossless, made
from pydicom's CT_small.dcm with DCMTK), and has tests/browser/viewer.test.js
open /viewer/?StudyInstanceUIDs=... in headless Debian Chromium (driven by
playwright-core) and check that the viewport's canvas holds the image. OHIF
decodes the compressed frames itself, in the browser, from the frames that
WADO-RS returns as stored.

The server has a service token; the module makes an institution, a
technician of it and an API token of it through the REST API, stores with
that token (so the studies are the institution's) and the browser signs in
as the technician with POST /api/session from the page, whose cookie then
carries the viewer's DICOMweb requests.

Needs: Debian's chromium (scripts/deps.sh --test), node and npm (the
browser test's playwright-core is installed here with `npm ci` when
tests/browser/node_modules is missing), and the OHIF build (scripts/viewer.sh,
run here; a no-op once installed). Each case prints its screenshot's path.
"""

import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import PYDICOM_DATA, REPO_ROOT, SERVICE_TOKEN, api_ok, bearer

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
VIEWER_DIR = REPO_ROOT / "web" / "viewer"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"
READY_TIMEOUT = 30
BROWSER_TIMEOUT = 240
VIEWER_USER = "viewer.tech"
VIEWER_PASSWORD = "Viewer-test-1234"

# name: (DCMTK command making the file from CT_small, or None; transfer syntax)
CASES = {
    "explicit-le": (None, "1.2.840.10008.1.2.1"),
    "jpeg-lossless": (["dcmcjpeg", "+e1"], "1.2.840.10008.1.2.4.70"),
    "jpeg-ls": (["dcmcjpls", "+el"], "1.2.840.10008.1.2.4.80"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cloudpacs serve` with the web service and the viewer."""

    def __init__(self, binary, tmp):
        self.http_port = free_port()
        self.log = Path(tmp) / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
        env.update({
            "CLOUDPACS_DICOM_PORT": str(free_port()),
            "CLOUDPACS_HTTP_PORT": str(self.http_port),
            "CLOUDPACS_DATA_DIR": str(Path(tmp) / "data"),
            "CLOUDPACS_HTTP_VIEWER_DIR": str(VIEWER_DIR),
            "CLOUDPACS_HTTP_TOKEN": SERVICE_TOKEN,
        })
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen([str(binary), "serve", "--services", "web"],
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=env)
        line = self._read_line()
        assert "DICOMweb at http://127.0.0.1:%d/dicom-web" % self.http_port in line, (
            "web service did not start: %r\n%s" % (line, self.log.read_text(errors="replace")))
        self.base = "http://127.0.0.1:%d" % self.http_port
        self.store_token = None

    def add_people(self):
        """An institution, its technician (the browser's) and its API token."""
        inst = api_ok(self.base, "POST", "/api/institutions",
                      {"parent_id": 0, "kind": "hospital", "code": "VIEWERTEST",
                       "name": "Viewer test hospital"})
        api_ok(self.base, "POST", "/api/users",
               {"username": VIEWER_USER, "display_name": "Viewer Tech",
                "institution_id": inst["id"], "password": VIEWER_PASSWORD,
                "roles": ["technician"]})
        tok = api_ok(self.base, "POST", "/api/tokens",
                     {"name": "viewer-test-gateway", "institution_id": inst["id"],
                      "roles": ["technician"]})
        self.store_token = tok["token"]

    def _read_line(self):
        box = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline().decode()),
                             daemon=True)
        t.start()
        t.join(READY_TIMEOUT)
        return box[0] if box else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


def require_browser():
    """Chromium, node and playwright-core, or a clear failure."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s not found: install Debian's chromium (scripts/deps.sh --test)"
                    % CHROMIUM, pytrace=False)
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail("%s not found on PATH: the browser test runs on Node.js" % tool,
                        pytrace=False)
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        try:
            proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=600)
        except subprocess.TimeoutExpired:
            pytest.fail("`npm ci` in %s timed out" % BROWSER_DIR, pytrace=False)
        if proc.returncode != 0:
            pytest.fail("npm ci in %s failed:\n%s" % (BROWSER_DIR,
                        proc.stdout.decode(errors="replace")[-3000:]), pytrace=False)


def require_viewer():
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "viewer.sh")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    if proc.returncode != 0 or not (VIEWER_DIR / "index.html").is_file():
        pytest.fail("scripts/viewer.sh did not install the viewer:\n%s"
                    % proc.stdout.decode(errors="replace")[-3000:], pytrace=False)


@pytest.fixture(scope="module")
def server(cloudpacs_bin, tmp_path_factory):
    require_browser()
    require_viewer()
    srv = Server(cloudpacs_bin, tmp_path_factory.mktemp("viewer"))
    srv.add_people()
    yield srv
    assert srv.stop() == 0, srv.log.read_text(errors="replace")[-3000:]


def make_instance(case, tmp):
    """CT_small in the case's transfer syntax, with UIDs of its own."""
    command, ts = CASES[case]
    path = tmp / ("%s.dcm" % case)
    if command is None:
        shutil.copyfile(CT_SMALL, path)
    else:
        if shutil.which(command[0]) is None:
            pytest.fail("%s not found: install dcmtk (scripts/deps.sh --test)" % command[0],
                        pytrace=False)
        subprocess.run(command + [str(CT_SMALL), str(path)], check=True, timeout=60)
    ds = pydicom.dcmread(str(path))
    assert ds.file_meta.TransferSyntaxUID == ts, ds.file_meta.TransferSyntaxUID
    ds.PatientID = "VIEWER-" + case.upper()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(str(path), write_like_original=True)
    return path, ds.StudyInstanceUID


def stow(base, data, token):
    boundary = b"cloudpacs-viewer-test"
    body = (b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + data +
            b"\r\n--" + boundary + b"--\r\n")
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
               + boundary.decode()}
    headers.update(bearer(token))
    req = urllib.request.Request(base + "/dicom-web/studies", data=body, method="POST",
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status


def test_viewer_files(server):
    """index.html for the root and for client-side routes, isolated; codecs as wasm."""
    for path in ("/viewer/", "/viewer/viewer"):
        with urllib.request.urlopen(server.base + path, timeout=30) as resp:
            assert resp.headers["Content-Type"].startswith("text/html")
            assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert resp.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert b"/viewer/app-config.js" in resp.read()
    wasm = sorted(VIEWER_DIR.glob("*.wasm"))[0].name
    with urllib.request.urlopen(server.base + "/viewer/" + wasm, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/wasm"
    req = urllib.request.Request(server.base + "/dicom-web/studies", headers=bearer())
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(server.base + "/dicom-web/studies", timeout=30)
    assert exc.value.code == 401
    for path in ("/viewer/missing.js", "/viewer/%2e%2e/README.md", "/viewer/.cloudpacs-viewer"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(server.base + path, timeout=30)
        assert exc.value.code == 404, path


@pytest.mark.parametrize("case", list(CASES))
def test_viewer_draws_study(server, case, tmp_path):
    path, study = make_instance(case, tmp_path)
    assert stow(server.base, path.read_bytes(), server.store_token) == 200

    shot = tmp_path / ("viewer-%s.png" % case)
    env = dict(os.environ,
               VIEWER_URL="%s/viewer/?StudyInstanceUIDs=%s" % (server.base, study),
               SCREENSHOT=str(shot), CHROMIUM=CHROMIUM,
               VIEWER_LOG=str(tmp_path / "browser.log"),
               VIEWER_USER=VIEWER_USER, VIEWER_PASSWORD=VIEWER_PASSWORD,
               VIEWER_TIMEOUT_MS=str(BROWSER_TIMEOUT * 1000 // 2),
               TRANSFER_SYNTAX=CASES[case][1])
    proc = subprocess.run(["node", "--test", "viewer.test.js"], cwd=BROWSER_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=BROWSER_TIMEOUT)
    out = proc.stdout.decode(errors="replace")
    print("%s: screenshot %s" % (case, shot))
    print(out)
    assert proc.returncode == 0, "%s: the viewer did not draw the study (screenshot %s)\n%s" % (
        case, shot, out[-4000:])
    assert shot.is_file()
