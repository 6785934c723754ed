"""Study completion by quiet time, and `cloudpacs changes`.

A server with [archive] study_quiet_seconds = 1 receives a few instances
over C-STORE (storescu); once a second passes without more, it logs one
`archive.study_complete` line per study and puts a study_complete change on
the change log, after the stored ones, which `cloudpacs changes` lists.
"""

import json
import os
import subprocess

import pydicom
import pytest

from conftest import PYDICOM_DATA
from test_dicom_service import DCMTK_ENV, Server, free_port, wait_log

FILES = [PYDICOM_DATA / "test_files" / name
         for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]


@pytest.fixture
def quiet_server(cloudpacs_bin, tmp_path):
    srv = Server(cloudpacs_bin, tmp_path, "[archive]\nstudy_quiet_seconds = 1\n",
                 {"CLOUDPACS_HTTP_PORT": str(free_port())})
    yield srv
    assert srv.stop() == 0, srv.log_text()[-3000:]


def changes(run, srv, *args):
    env = dict(os.environ, CLOUDPACS_DATA_DIR=str(srv.data))
    proc = subprocess.run([str(run.binary), "changes", "--config", str(srv.conf), *args],
                          capture_output=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


@pytest.fixture
def cli(cloudpacs_bin):
    class Cli:
        binary = cloudpacs_bin
    return Cli


def test_study_complete_after_quiet_time(quiet_server, cli):
    studies = {}
    for path in FILES:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        studies.setdefault(ds.StudyInstanceUID, []).append(ds.SOPInstanceUID)
    proc = subprocess.run(["storescu", "-aec", "CLOUDPACS", "127.0.0.1",
                           str(quiet_server.port)] + [str(f) for f in FILES],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()

    texts = ["archive.study_complete study_uid=%s instances=%d" % (uid, len(sops))
             for uid, sops in studies.items()]
    log = wait_log(quiet_server, *texts, timeout=15)
    for text in texts:
        assert log.count(text) == 1, log[-3000:]
    assert "institution=" in log

    listed = json.loads(changes(cli, quiet_server, "--json"))
    stored = [c for c in listed if c["kind"] == "stored"]
    complete = [c for c in listed if c["kind"] == "study_complete"]
    assert sorted(c["sop_uid"] for c in stored) == sorted(
        sop for sops in studies.values() for sop in sops)
    assert sorted(c["study_uid"] for c in complete) == sorted(studies)
    seqs = [c["seq"] for c in listed]
    assert seqs == sorted(seqs)
    for c in complete:
        last_stored = max(s["seq"] for s in stored if s["study_uid"] == c["study_uid"])
        assert c["seq"] > last_stored

    # From a position, with a limit, and as text.
    after = json.loads(changes(cli, quiet_server, "--json", "--since", str(seqs[0]),
                               "--limit", "2"))
    assert [c["seq"] for c in after] == seqs[1:3]
    text = changes(cli, quiet_server)
    assert text.count("study_complete") == len(studies)
    assert text.count(" stored ") == len(stored)


def test_late_instance_announces_again(quiet_server, cli, tmp_path):
    ct = FILES[0]
    ds = pydicom.dcmread(str(ct))
    uid = ds.StudyInstanceUID
    late = tmp_path / "late.dcm"
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(str(late))
    text = "archive.study_complete study_uid=%s" % uid
    for path, count in ((ct, 1), (late, 2)):
        proc = subprocess.run(["storescu", "-aec", "CLOUDPACS", "127.0.0.1",
                               str(quiet_server.port), str(path)], capture_output=True,
                              env=DCMTK_ENV, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        log = wait_log(quiet_server, "%s instances=%d" % (text, count), timeout=15)
        assert log.count(text) == count, log[-3000:]
    listed = json.loads(changes(cli, quiet_server, "--json"))
    assert [c["kind"] for c in listed] == ["stored", "study_complete", "stored",
                                           "study_complete"]


def test_changes_without_index(cloudpacs_bin, tmp_path):
    proc = subprocess.run([str(cloudpacs_bin), "changes"], capture_output=True, timeout=30,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin",
                                             "CLOUDPACS_DATA_DIR": str(tmp_path / "none")})
    assert proc.returncode == 1
    assert b"no index" in proc.stderr
    proc = subprocess.run([str(cloudpacs_bin), "changes", "--limit", "x"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 2
