"""A second, independent DICOM client: dcmjs-dimse (JavaScript, npm).

tests/integration/node_dimse/dimse_client_test.js does a C-ECHO, a C-STORE
of a few pydicom test files and a study-level C-FIND for each of their
studies against `cloudpacs serve`; this test starts the server, checks what
the client saw, and that `cloudpacs find` finds the stored studies too.

The npm packages are installed with `npm ci` from the committed lock file
when node_modules is missing; when node or npm fails the test FAILS with
the reason (it is a required check, not an optional one).
"""

import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from conftest import PYDICOM_DATA
from test_dicom_service import Server, free_port

NODE_DIR = Path(__file__).resolve().parent / "node_dimse"
FILES = [PYDICOM_DATA / "test_files" / name
         for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")]
SUCCESS = 0x0000
PENDING = 0xFF00


@pytest.fixture(scope="module")
def node_ready():
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed (scripts/deps.sh --test installs them)",
                    pytrace=False)
    if not (NODE_DIR / "node_modules" / "dcmjs-dimse").is_dir():
        try:
            proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                  capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            pytest.fail("`npm ci` in %s timed out" % NODE_DIR, pytrace=False)
        if proc.returncode != 0:
            pytest.fail("`npm ci` in %s failed (exit %d):\n%s" % (
                NODE_DIR, proc.returncode, proc.stderr.decode(errors="replace")[-3000:]),
                pytrace=False)
    return node


@pytest.fixture(scope="module")
def dimse_server(cloudpacs_bin, tmp_path_factory):
    conf = ("[ae.DCMJS_DIMSE]\nhost = 127.0.0.1\nport = 104\nallow = store,query\n")
    srv = Server(cloudpacs_bin, tmp_path_factory.mktemp("dcmjs"), conf,
                 {"CLOUDPACS_HTTP_PORT": str(free_port())})
    yield srv
    assert srv.stop() == 0, srv.log_text()[-3000:]


def studies_of(files):
    found = {}
    for path in files:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        found.setdefault(ds.StudyInstanceUID, []).append(ds.SOPInstanceUID)
    return found


def test_dcmjs_dimse_echo_store_find(node_ready, dimse_server, cloudpacs_bin):
    studies = studies_of(FILES)
    proc = subprocess.run([node_ready, "dimse_client_test.js", "127.0.0.1",
                           str(dimse_server.port), "CLOUDPACS", ",".join(studies)]
                          + [str(f) for f in FILES], cwd=NODE_DIR, capture_output=True,
                          timeout=120)
    out = proc.stdout.decode(errors="replace")
    lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (out[-2000:] + proc.stderr.decode()[-2000:]
                                            + dimse_server.log_text()[-2000:])
    result = json.loads(lines[-1][len("RESULT "):])

    assert result["echo"]["outcome"]["accepted"], result["echo"]
    assert result["echo"]["statuses"] == [SUCCESS]

    assert result["store"]["outcome"]["accepted"], result["store"]
    assert result["store"]["outcome"]["error"] is None
    assert {Path(k).name: v for k, v in result["store"]["statuses"].items()} == {
        f.name: SUCCESS for f in FILES}

    assert result["find"]["outcome"]["accepted"], result["find"]
    for uid, sops in studies.items():
        got = result["find"]["found"][uid]
        assert got["final"] == SUCCESS, got
        assert len(got["matches"]) == 1, got
        match = got["matches"][0]
        assert match["StudyInstanceUID"] == uid
        assert int(match["NumberOfStudyRelatedInstances"]) == len(sops)

    # What dcmjs-dimse stored, cloudpacs's own SCU finds as well.
    for uid, sops in studies.items():
        proc = subprocess.run([str(cloudpacs_bin), "find", "--json", "--aet", "DCMJS_DIMSE",
                               "127.0.0.1", str(dimse_server.port),
                               "-k", "StudyInstanceUID=" + uid,
                               "-k", "NumberOfStudyRelatedInstances"],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        matches = json.loads(proc.stdout)
        assert len(matches) == 1, matches
        assert matches[0]["0020000D"]["Value"] == [uid]
        assert matches[0]["00201208"]["Value"] == [len(sops)]
