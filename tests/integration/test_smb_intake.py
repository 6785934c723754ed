"""SMB and folder intake, and export to shares (src/ingest).

A real smbd runs as root on a free loopback port with a configuration,
passdb (tdbsam), lock, state, cache, pid, ncalrpc and log directories all
in the test's temporary directory; the system's Samba directories are
checked to be untouched, and exactly that smbd (its pid file) is stopped.
`cloudpacs serve` takes files from the share ([intake.NAME]) and writes
completed studies to it ([export.NAME]); what it stored is counted through
QIDO-RS with the service token and through `cloudpacs intake status`.

A report released through the REST API (test_film.release_study) is
exported by a report_released rule (what = both) to the share, read back
with smbclient, and not again after a restart; GET /api/intake answers the
counters (401 without a token, 403 without metrics.read, 503 without the
service), and the console's intake page shows them (tests/browser/intake.mjs).
"""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pydicom
import pytest

from conftest import PYDICOM_DATA, SERVICE_TOKEN, api_call, api_ok, bearer
from dicomgen import new_dataset, write_pydicom
from test_dicom_service import Server, free_port, wait_log

SMB_USER = "root"
SMB_PASSWORD = "cp-smb-Test-7xQ"
SYSTEM_SAMBA_DIRS = ("/var/lib/samba", "/var/cache/samba", "/run/samba", "/var/log/samba",
                     "/etc/samba")
DICOMDIR_TREE = PYDICOM_DATA / "test_files" / "dicomdirtests"
# For a sanitizer build: libsmbclient's own one-time leak (see the file).
LSAN_ENV = {"LSAN_OPTIONS": "suppressions=%s" % (Path(__file__).parent / "lsan_smbclient.supp")}


def samba_snapshot():
    """(path, size, mtime) of everything under the system's Samba directories."""
    seen = []
    for top in SYSTEM_SAMBA_DIRS:
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                p = os.path.join(root, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                seen.append((p, st.st_size, st.st_mtime_ns))
    return sorted(seen)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Smbd:
    """A smbd of our own; start() and stop() may be called again (same port)."""

    def __init__(self, tmp):
        self.dir = Path(tmp) / "samba"
        self.share = Path(tmp) / "share"
        self.port = free_port()
        for sub in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc", "binddns",
                    "usershares"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.share.mkdir(parents=True, exist_ok=True)
        d = self.dir
        self.conf = d / "smb.conf"
        self.conf.write_text(f"""[global]
    workgroup = WORKGROUP
    server role = standalone server
    smb ports = {self.port}
    interfaces = 127.0.0.1
    bind interfaces only = yes
    private dir = {d}/private
    lock directory = {d}/lock
    state directory = {d}/state
    cache directory = {d}/cache
    pid directory = {d}/pid
    ncalrpc dir = {d}/ncalrpc
    binddns dir = {d}/binddns
    usershare path = {d}/usershares
    log file = {d}/log/smbd.log
    passdb backend = tdbsam:{d}/private/passdb.tdb
    server min protocol = SMB2_02
    disable netbios = yes
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    map to guest = never
[share]
    path = {self.share}
    read only = no
    force user = root
    guest ok = no
""")
        proc = subprocess.run(["smbpasswd", "-c", str(self.conf), "-s", "-a", SMB_USER],
                              input=("%s\n%s\n" % (SMB_PASSWORD, SMB_PASSWORD)).encode(),
                              capture_output=True, timeout=30)
        assert proc.returncode == 0, proc.stderr.decode()
        assert (d / "private" / "passdb.tdb").exists()
        self.pid = None

    def start(self):
        proc = subprocess.run(["smbd", "-D", "-s", str(self.conf)], capture_output=True,
                              timeout=30)
        assert proc.returncode == 0, proc.stderr.decode()
        deadline = time.monotonic() + 15
        pidfile = self.dir / "pid" / "smbd.pid"
        while time.monotonic() < deadline:
            if pidfile.exists() and port_open(self.port):
                self.pid = int(pidfile.read_text().split()[0])
                return
            time.sleep(0.05)
        pytest.fail("smbd did not start: %s" % self.log_text()[-2000:])

    def stop(self):
        """SIGTERM to the smbd of our pid file; waits until it and its port are gone."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            alive = Path("/proc/%d" % self.pid).exists() and "Z" not in self._state()
            if not alive and not port_open(self.port):
                break
            time.sleep(0.05)
        self.pid = None

    def _state(self):
        try:
            with open("/proc/%d/stat" % self.pid) as fh:
                return fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "Z"

    def log_text(self):
        p = self.dir / "log" / "smbd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def url(self, folder=""):
        return "smb://127.0.0.1:%d/share%s" % (self.port, "/" + folder if folder else "")

    def client(self, *commands):
        proc = subprocess.run(["smbclient", "//127.0.0.1/share", "-p", str(self.port),
                               "-s", str(self.conf), "-U", "%s%%%s" % (SMB_USER, SMB_PASSWORD),
                               "-c", "; ".join(commands)], capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        return proc.stdout.decode()


@pytest.fixture
def smbd(tmp_path):
    before = samba_snapshot()
    server = Smbd(tmp_path)
    server.start()
    yield server
    server.stop()
    assert samba_snapshot() == before, "the system's Samba directories were touched"


# --- DICOM files and the server ------------------------------------------------

def make_instance(path, study, series, sop, patient="PAT1", accession="ACC1",
                  series_number=1, padding=0):
    ds = new_dataset(sop_instance=sop)
    ds.PatientID = patient
    ds.PatientName = "TEST^PATIENT"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.AccessionNumber = accession
    ds.StudyDate = "20240315"
    ds.Modality = "OT"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    if padding:
        ds.ImageComments = "x" * padding
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_pydicom(ds, path)


def uid(n, kind=1):
    return "1.2.826.0.1.3680043.10.999.%d.%d" % (kind, n)


def start_server(binary, tmp, sections, archive="", name="srv"):
    home = Path(tmp) / name
    home.mkdir(exist_ok=True)
    text = "[core]\nlog_level = debug\n" + archive + sections
    return ready(Server(binary, home, text, dict(LSAN_ENV, CLOUDPACS_HTTP_PORT=str(free_port()),
                                                 CLOUDPACS_HTTP_TOKEN=SERVICE_TOKEN)))


def ready(srv):
    """The server once every service runs (the ingest one says so first)."""
    log = wait_log(srv, "event=serve.ready", "event=serve.web_ready", timeout=30)
    assert "event=serve.ready" in log, log[-3000:]
    return srv


def restart(binary, srv):
    """The same server again (same data directory and configuration)."""
    assert srv.stop() == 0, srv.log_text()[-3000:]
    return ready(Server(binary, srv.conf.parent, srv.conf.read_text(),
                        dict(LSAN_ENV, CLOUDPACS_HTTP_PORT=str(free_port()),
                             CLOUDPACS_HTTP_TOKEN=SERVICE_TOKEN)))


def http_port(srv):
    for line in srv.log_text().splitlines():
        if "serve.web_ready" in line:
            return int(line.split("http_port=")[1].split()[0])
    raise AssertionError("no web service: " + srv.log_text()[-2000:])


def http_get(srv, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (http_port(srv), path),
                                 headers=bearer())
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def qido_instances(srv):
    """Every SOP Instance UID the index holds, with repeats if any (QIDO-RS)."""
    url = "http://127.0.0.1:%d/dicom-web/instances?limit=10000" % http_port(srv)
    req = urllib.request.Request(url, headers=bearer())
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    if not body:
        return []
    return [item["00080018"]["Value"][0] for item in json.loads(body)]


def intake_status(binary, srv):
    proc = subprocess.run([str(binary), "intake", "status", "--json", "--data-dir",
                           str(srv.data)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def source_status(binary, srv, name):
    for s in intake_status(binary, srv)["sources"]:
        if s["name"] == name:
            return s
    return None


def wait_for(check, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.2)


def wait_instances(srv, want, timeout=30):
    want = sorted(want)
    return wait_for(lambda: sorted(qido_instances(srv)) == want, timeout,
                    "instances %s, have %s" % (want, sorted(qido_instances(srv))))


def smb_section(name, smbd, folder="", extra=""):
    return ("\n[intake.%s]\nurl = %s\nuser = %s\npassword = %s\npoll_seconds = 1\n"
            "stable_seconds = 1\n%s" % (name, smbd.url(folder), SMB_USER, SMB_PASSWORD, extra))


# --- the tests -------------------------------------------------------------------

def test_single_files_tree_and_non_dicom(cloudpacs_bin, smbd, tmp_path):
    sops = []
    for i in range(3):
        sops.append(uid(i))
        make_instance(smbd.share / ("IM%d.dcm" % i), uid(1, 2), uid(1, 3), uid(i))
    for i in range(3, 7):
        sops.append(uid(i))
        make_instance(smbd.share / "PAT1" / "ST1" / ("SE%d" % (i % 2)) / ("IM%d" % i),
                      uid(1, 2), uid(i % 2 + 1, 3), uid(i))
    (smbd.share / "readme.txt").write_text("not an image")
    (smbd.share / "PAT1" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)

    srv = start_server(cloudpacs_bin, tmp_path, smb_section("clinic", smbd))
    try:
        wait_instances(srv, sops)
        status = wait_for(lambda: (lambda s: s if s and s["skipped"] == 2 else None)(
            source_status(cloudpacs_bin, srv, "clinic")), what="two skipped")
        assert status["stored"] == 7 and status["failed"] == 0 and status["seen"] == 9
        assert status["state"] == "up" and status["last_success"]
        # Skipped files are logged once, not at every poll, and left in place.
        time.sleep(2.5)
        log = srv.log_text()
        assert log.count("event=intake.file_skipped") == 2, log[-3000:]
        assert (smbd.share / "readme.txt").exists() and (smbd.share / "PAT1/photo.jpg").exists()
        assert SMB_PASSWORD not in log
        metrics = http_get(srv, "/metrics")
        assert 'cloudpacs_intake_files_total{source="clinic",outcome="stored"} 7' in metrics
        assert 'cloudpacs_intake_files_total{source="clinic",outcome="skipped"} 2' in metrics
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_zip_and_dicomdir(cloudpacs_bin, smbd, tmp_path):
    # A ZIP with three instances in folders, a text file and a DICOMDIR entry.
    buf = io.BytesIO()
    zip_sops = [uid(20 + i) for i in range(3)]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, sop in enumerate(zip_sops):
            data = make_instance(tmp_path / "z" / str(i), uid(2, 2), uid(2, 3), sop)
            zf.writestr("STUDY/SERIES/IM%d" % i, data)
        zf.writestr("STUDY/notes.txt", "hello")
        zf.writestr("DICOMDIR", b"\0" * 128 + b"DICM")
    (smbd.share / "upload.zip").write_bytes(buf.getvalue())

    # A DICOMDIR tree as a CD holds it.
    shutil.copytree(DICOMDIR_TREE / "77654033", smbd.share / "CD" / "77654033")
    shutil.copy(DICOMDIR_TREE / "DICOMDIR", smbd.share / "CD" / "DICOMDIR")
    cd_sops = set()
    for p in (smbd.share / "CD" / "77654033").rglob("*"):
        if p.is_file():
            cd_sops.add(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID)

    srv = start_server(cloudpacs_bin, tmp_path, smb_section("cd", smbd))
    try:
        wait_instances(srv, zip_sops + sorted(cd_sops), timeout=60)
        status = wait_for(lambda: (lambda s: s if s and s["seen"] >= len(cd_sops) + 6
                                   else None)(source_status(cloudpacs_bin, srv, "cd")),
                          what="zip and cd counted")
        assert status["failed"] == 0, status
        # notes.txt skipped; the two DICOMDIRs skipped as such, not refused.
        assert status["skipped"] == 3, status
        assert status["stored"] == len(cd_sops) + 3
        assert "DICOMDIR" not in srv.log_text().split("intake.file_refused")[-1] or \
            "intake.file_refused" not in srv.log_text()
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_file_still_being_written(cloudpacs_bin, smbd, tmp_path):
    data = make_instance(tmp_path / "whole.dcm", uid(3, 2), uid(3, 3), uid(30), padding=200000)
    target = smbd.share / "slow.dcm"
    srv = start_server(cloudpacs_bin, tmp_path,
                       smb_section("slow", smbd, extra="stable_seconds = 3\n"))
    try:
        wait_for(lambda: source_status(cloudpacs_bin, srv, "slow"), what="source up")
        with open(target, "wb") as fh:
            fh.write(data[:len(data) // 2])
            fh.flush()
            time.sleep(2)       # less than stable_seconds, across several polls
            assert qido_instances(srv) == []
            s = source_status(cloudpacs_bin, srv, "slow")
            assert s["seen"] == 0 and s["failed"] == 0, s
            fh.write(data[len(data) // 2:])
        wait_instances(srv, [uid(30)])
        time.sleep(3)
        s = source_status(cloudpacs_bin, srv, "slow")
        assert (s["seen"], s["stored"], s["failed"], s["duplicates"]) == (1, 1, 0, 0), s
        assert qido_instances(srv) == [uid(30)]
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_share_down_and_back(cloudpacs_bin, smbd, tmp_path):
    first = [uid(40 + i) for i in range(3)]
    later = [uid(50 + i) for i in range(4)]
    for i, sop in enumerate(first):
        make_instance(smbd.share / "a" / ("IM%d" % i), uid(4, 2), uid(4, 3), sop)
    srv = start_server(cloudpacs_bin, tmp_path, smb_section("flaky", smbd))
    try:
        wait_instances(srv, first)
        smbd.stop()
        wait_for(lambda: source_status(cloudpacs_bin, srv, "flaky")["state"] == "down",
                 what="source down")
        s = source_status(cloudpacs_bin, srv, "flaky")
        assert s["last_error"], s
        # Files arrive while the share is down.
        for i, sop in enumerate(later):
            make_instance(smbd.share / "b" / ("IM%d" % i), uid(4, 2), uid(4, 3), sop)
        time.sleep(2)
        smbd.start()
        wait_instances(srv, first + later, timeout=90)
        s = wait_for(lambda: (lambda x: x if x["state"] == "up" else None)(
            source_status(cloudpacs_bin, srv, "flaky")), what="source up")
        assert (s["seen"], s["stored"], s["duplicates"]) == (7, 7, 0), s
        log = srv.log_text()
        # One line per change of state, and never the password.
        assert log.count("event=intake.source_down") == 1, log[-4000:]
        assert log.count("event=intake.source_up") == 2, log[-4000:]
        assert SMB_PASSWORD not in log
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_cloudpacs_restart_takes_nothing_twice(cloudpacs_bin, smbd, tmp_path):
    sops = [uid(60 + i) for i in range(40)]
    for i, sop in enumerate(sops):
        make_instance(smbd.share / ("S%d" % (i % 4)) / ("IM%d" % i), uid(6, 2),
                      uid(6 + i % 4, 3), sop)
    srv = start_server(cloudpacs_bin, tmp_path, smb_section("batch", smbd))
    wait_for(lambda: (source_status(cloudpacs_bin, srv, "batch") or {}).get("stored", 0) > 0,
             what="first files taken")
    srv = restart(cloudpacs_bin, srv)
    try:
        wait_instances(srv, sops, timeout=60)
        time.sleep(2.5)     # more polls: nothing is taken again
        s = source_status(cloudpacs_bin, srv, "batch")
        assert (s["seen"], s["stored"], s["duplicates"], s["failed"]) == (40, 40, 0, 0), s
        assert sorted(qido_instances(srv)) == sorted(sops)
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]
    db = subprocess.run(["sqlite3", str(srv.data / "index.sqlite"),
                         "SELECT count(*), count(DISTINCT path) FROM intake_ledger "
                         "WHERE source = 'batch'"], capture_output=True, timeout=30)
    if db.returncode == 0:
        assert db.stdout.decode().strip() == "40|40"


def test_after_delete_and_move(cloudpacs_bin, smbd, tmp_path):
    for i in range(3):
        make_instance(smbd.share / "del" / "x" / ("IM%d" % i), uid(7, 2), uid(7, 3), uid(70 + i))
        make_instance(smbd.share / "mv" / "y" / ("IM%d" % i), uid(8, 2), uid(8, 3), uid(80 + i))
    (smbd.share / "del" / "keep.txt").write_text("not DICOM: left alone")
    sections = (smb_section("del", smbd, "del", "after = delete\n")
                + smb_section("mv", smbd, "mv", "after = move\n"))
    srv = start_server(cloudpacs_bin, tmp_path, sections)
    try:
        wait_instances(srv, [uid(70 + i) for i in range(3)] + [uid(80 + i) for i in range(3)])
        wait_for(lambda: not any((smbd.share / "del" / "x").glob("IM*")), what="deleted")
        assert (smbd.share / "del" / "keep.txt").exists()
        done = smbd.share / "mv" / ".cloudpacs-done" / "y"
        wait_for(lambda: sorted(p.name for p in done.glob("IM*")) == ["IM0", "IM1", "IM2"],
                 what="moved")
        assert not any((smbd.share / "mv" / "y").glob("IM*"))
        # A new file of a name already taken (and deleted) is a new file.
        make_instance(smbd.share / "del" / "x" / "IM0", uid(7, 2), uid(7, 3), uid(79))
        wait_for(lambda: uid(79) in qido_instances(srv), what="new file of an old name")
        time.sleep(2)
        moved = source_status(cloudpacs_bin, srv, "mv")
        assert (moved["stored"], moved["seen"]) == (3, 3), moved
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_export_completed_study_to_share(cloudpacs_bin, smbd, tmp_path):
    drop = tmp_path / "drop"
    sources = {}
    for i in range(4):
        sop = uid(90 + i)
        sources[sop] = make_instance(drop / ("IM%d" % i), uid(9, 2), uid(9 + i % 2, 3), sop,
                                     patient="P/9", accession="A:9", series_number=1 + i % 2)
    sections = ("\n[intake.local]\nurl = %s\npoll_seconds = 1\nstable_seconds = 1\n" % drop
                + "\n[export.hospital]\non = study_complete\nwhat = dicom\ntarget = %s\n"
                  "user = %s\npassword = %s\npattern = {PatientID}/{AccessionNumber}_"
                  "{StudyDate}/{SeriesNumber}/{SOPInstanceUID}.dcm\n"
                  % (smbd.url("out"), SMB_USER, SMB_PASSWORD)
                + "\n[export.later]\non = report_released\ntarget = %s\n" % (tmp_path / "r"))
    srv = start_server(cloudpacs_bin, tmp_path, sections,
                       archive="[archive]\nstudy_quiet_seconds = 1\n")
    try:
        wait_log(srv, "event=export.study_done rule=hospital study_uid=%s files=4" % uid(9, 2),
                 timeout=40)
        listing = smbd.client("recurse", "ls out\\*")
        assert ".part" not in listing
        names = sorted(str(p.relative_to(smbd.share / "out"))
                       for p in (smbd.share / "out").rglob("*") if p.is_file())
        want = sorted("P_9/A_9_20240315/%d/%s.dcm" % (1 + i % 2, uid(90 + i)) for i in range(4))
        assert names == want
        for i in range(4):
            assert uid(90 + i) + ".dcm" in listing
        got = tmp_path / "got.dcm"
        smbd.client("get out/P_9/A_9_20240315/1/%s.dcm %s" % (uid(90), got))
        assert got.read_bytes() == sources[uid(90)]
        assert "event=export.started rule=later" in srv.log_text()
        status = intake_status(cloudpacs_bin, srv)
        rule = [e for e in status["exports"] if e["name"] == "hospital"][0]
        assert rule["done"] == 1 and rule["retrying"] == 0 and rule["position"] > 0
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_export_retries_when_share_down(cloudpacs_bin, smbd, tmp_path):
    drop = tmp_path / "drop"
    make_instance(drop / "IM0", uid(11, 2), uid(11, 3), uid(110))
    smbd.stop()
    sections = ("\n[intake.local]\nurl = %s\npoll_seconds = 1\nstable_seconds = 0\n" % drop
                + "\n[export.h]\ntarget = %s\nuser = %s\npassword = %s\n"
                % (smbd.url("out2"), SMB_USER, SMB_PASSWORD))
    srv = start_server(cloudpacs_bin, tmp_path, sections,
                       archive="[archive]\nstudy_quiet_seconds = 1\n")
    try:
        wait_log(srv, "event=export.study_failed rule=h", timeout=30)
        rule = [e for e in intake_status(cloudpacs_bin, srv)["exports"] if e["name"] == "h"][0]
        assert rule["retrying"] == 1 and rule["jobs"][0]["attempts"] >= 1
        assert rule["jobs"][0]["last_error"]
        smbd.start()
        wait_log(srv, "event=export.study_done rule=h study_uid=%s files=1" % uid(11, 2),
                 timeout=90)
        assert list((smbd.share / "out2").rglob("*.part")) == []
        assert len([p for p in (smbd.share / "out2").rglob("*.dcm")]) == 1
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_local_folder_inotify(cloudpacs_bin, tmp_path):
    drop = tmp_path / "watched"
    drop.mkdir()
    # A poll far away: only inotify can make the intake look soon.
    sections = ("\n[intake.watch]\nurl = file://%s\npoll_seconds = 600\n"
                "stable_seconds = 1\n" % drop)
    srv = start_server(cloudpacs_bin, tmp_path, sections)
    try:
        wait_for(lambda: source_status(cloudpacs_bin, srv, "watch"), what="source up")
        time.sleep(0.5)
        make_instance(drop / "sub" / "IM1", uid(12, 2), uid(12, 3), uid(120))
        start = time.monotonic()
        wait_instances(srv, [uid(120)], timeout=20)
        assert time.monotonic() - start < 15
        (drop / "notes.txt").write_text("skip me")
        wait_for(lambda: source_status(cloudpacs_bin, srv, "watch")["skipped"] == 1,
                 timeout=20, what="skipped")
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_bad_configuration(cloudpacs_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[intake.x]\nurl = relative/path\n")
    env = dict(os.environ, CLOUDPACS_DATA_DIR=str(tmp_path / "d"))
    proc = subprocess.run([str(cloudpacs_bin), "serve", "--config", str(conf), "--services",
                           "ingest"], capture_output=True, timeout=60, env=env)
    assert proc.returncode == 4, proc.stderr.decode()
    assert b"intake.x" in proc.stderr
    conf.write_text("[export.y]\ntarget = /tmp/x\npattern = ../{SOPInstanceUID}\n")
    proc = subprocess.run([str(cloudpacs_bin), "serve", "--config", str(conf), "--services",
                           "ingest"], capture_output=True, timeout=60, env=env)
    assert proc.returncode == 4, proc.stderr.decode()


def test_institutions_and_credentials_file(cloudpacs_bin, smbd, tmp_path):
    """Sources send for institutions by code; a rule exports only its institution's studies."""
    data = tmp_path / "srv" / "data"
    data.mkdir(parents=True)
    for code in ("CLIN-A", "CLIN-B"):
        proc = subprocess.run([str(cloudpacs_bin), "institution", "add", "--code", code,
                               "--name", code, "--kind", "clinic", "--data-dir", str(data)],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
    creds = tmp_path / "smb.cred"
    creds.write_text("# smbclient -A format\nusername = %s\npassword = %s\n"
                     "domain = WORKGROUP\n" % (SMB_USER, SMB_PASSWORD))
    make_instance(smbd.share / "a" / "IM0", uid(13, 2), uid(13, 3), uid(130), patient="PA")
    make_instance(smbd.share / "b" / "IM0", uid(14, 2), uid(14, 3), uid(140), patient="PB")
    sections = ("\n[intake.a]\nurl = %s\ncredentials_file = %s\ninstitution = CLIN-A\n"
                "poll_seconds = 1\nstable_seconds = 0\n" % (smbd.url("a"), creds)
                + "\n[intake.b]\nurl = %s\ncredentials_file = %s\ninstitution = CLIN-B\n"
                  "poll_seconds = 1\nstable_seconds = 0\n" % (smbd.url("b"), creds)
                + "\n[export.only_a]\ntarget = %s\ninstitution = CLIN-A\n"
                  "pattern = {PatientID}/{SOPInstanceUID}.dcm\n" % (tmp_path / "out"))
    srv = start_server(cloudpacs_bin, tmp_path, sections,
                       archive="[archive]\nstudy_quiet_seconds = 1\n")
    try:
        wait_instances(srv, [uid(130), uid(140)])
        wait_log(srv, "event=export.study_done rule=only_a study_uid=%s" % uid(13, 2),
                 timeout=30)
        log = wait_log(srv, "study_uid=%s instances=1" % uid(14, 2), timeout=30)
        time.sleep(2)
        files = sorted(str(p.relative_to(tmp_path / "out"))
                       for p in (tmp_path / "out").rglob("*") if p.is_file())
        assert files == ["PA/%s.dcm" % uid(130)], files
        assert "institution=0" not in log.split("event=intake.started source=a")[1][:200]
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


# --- export on report release, and the status over the REST API ---------------------

class ReadingWorld:
    """A clinic with a technician and a gateway token, a centre with a reader and a
    reviewer under contract for CR chest: what test_film.release_study needs."""


def reading_world(base):
    from test_auth_http import PASSWORD, login
    w = ReadingWorld()
    w.base = base
    w.centre = api_ok(base, "POST", "/api/institutions",
                      {"parent_id": 0, "kind": "centre", "code": "CENTRE",
                       "name": "Reading centre"})["id"]
    w.clinic = api_ok(base, "POST", "/api/institutions",
                      {"parent_id": 0, "kind": "clinic", "code": "CLINIC",
                       "name": "Harbour Clinic"})["id"]
    w.ids, w.tokens = {}, {}
    for name, inst, roles, title in (("reviewer", w.centre, ["reviewer"], 3),
                                     ("rad1", w.centre, ["radiologist"], 2),
                                     ("tech", w.clinic, ["technician"], 0)):
        w.ids[name] = api_ok(base, "POST", "/api/users",
                             {"username": name, "display_name": "Dr " + name.title(),
                              "institution_id": inst, "password": PASSWORD,
                              "roles": roles, "title": title})["id"]
    for name in ("rad1", "reviewer"):
        api_ok(base, "PUT", "/api/users/%d/qualifications" % w.ids[name],
               [{"modality": "CR", "body_part": "CHEST"}])
        api_ok(base, "POST", "/api/contracts",
               {"user_id": w.ids[name], "requesting_id": w.clinic, "reading_id": w.centre,
                "start_date": "", "end_date": "", "modalities": ["CR"], "body_parts": []})
    w.clinic_token = api_ok(base, "POST", "/api/tokens",
                            {"name": "gateway", "institution_id": w.clinic,
                             "roles": ["technician"]})["token"]
    for name in w.ids:
        status, body, _ = login(base, name)
        assert status == 200, body
        w.tokens[name] = body["token"]
    return w


def release_server(binary, tmp, sections, extra_env=None):
    from test_auth_http import AuthServer
    config = Path(tmp) / "cloudpacs.ini"
    config.write_text("[archive]\nstudy_quiet_seconds = 1\n" + sections)
    # For a sanitizer build: libsmbclient's leak and the font caches of the report PDF.
    supp = Path(tmp) / "lsan.supp"
    supp.write_text("".join((Path(__file__).parent / name).read_text()
                            for name in ("lsan_smbclient.supp", "lsan_film.supp")))
    return AuthServer(binary, tmp, services="web,dispatch,ingest",
                      extra_env=dict(extra_env or {}, CLOUDPACS_CONFIG=str(config),
                                     LSAN_OPTIONS="suppressions=%s" % supp))


def make_sysadmin(base, institution_id):
    """A system administrator (who holds metrics.read); its session token."""
    from test_auth_http import PASSWORD, session_token
    api_ok(base, "POST", "/api/users",
           {"username": "sysadm", "display_name": "System admin",
            "institution_id": institution_id, "password": PASSWORD,
            "roles": ["system_admin"]})
    return session_token(base, "sysadm")


def wait_text(srv, needle, timeout=60):
    return wait_for(lambda: needle in srv.log_text(), timeout, needle)


def test_export_on_report_release_to_share(cloudpacs_bin, smbd, tmp_path):
    from test_film import release_study
    make_instance(smbd.share / "in" / "IM0", uid(15, 2), uid(15, 3), uid(150))
    sections = (smb_section("clinic", smbd, "in")
                + "\n[export.rel]\non = report_released\nwhat = both\ntarget = %s\n"
                  "user = %s\npassword = %s\nsettle_seconds = 2\n"
                  "pattern = {PatientID}/{OrderID}/{SOPInstanceUID}.dcm\n"
                  "pdf_pattern = {PatientID}/{OrderID}/report-{AccessionNumber}.pdf\n"
                  % (smbd.url("rel"), SMB_USER, SMB_PASSWORD))
    srv = release_server(cloudpacs_bin, tmp_path, sections)
    try:
        w = reading_world(srv.base)
        oid, study, files = release_study(w, "PR-1")
        wait_text(srv, "event=export.release_done rule=rel order=%d study_uid=%s" % (oid, study))
        log = srv.log_text()
        # Every instance of the study: the three images, the report SR, the Encapsulated
        # PDF (and what else the release stored); and the PDF file.
        req = urllib.request.Request("%s/dicom-web/studies/%s/instances" % (srv.base, study),
                                     headers=bearer())
        with urllib.request.urlopen(req, timeout=30) as r:
            in_study = sorted(i["00080018"]["Value"][0] for i in json.loads(r.read()))
        assert len(in_study) >= 5, in_study
        assert "files=%d pdf=1" % len(in_study) in \
            log.split("event=export.release_done rule=rel")[1], log[-3000:]
        listing = smbd.client("recurse", "ls rel\\*")
        assert ".part" not in listing
        folder = smbd.share / "rel" / "PR-1" / str(oid)
        dcm = sorted(folder.glob("*.dcm"))
        pdfs = sorted(folder.glob("*.pdf"))
        assert sorted(p.name[:-4] for p in dcm) == in_study and len(pdfs) == 1, listing
        got = tmp_path / "got.pdf"
        smbd.client("get rel/PR-1/%d/%s %s" % (oid, pdfs[0].name, got))
        assert got.read_bytes().startswith(b"%PDF")
        classes = set()
        for p in dcm:
            back = tmp_path / ("back-" + p.name)
            smbd.client("get rel/PR-1/%d/%s %s" % (oid, p.name, back))
            ds = pydicom.dcmread(str(back))
            assert ds.StudyInstanceUID == study
            classes.add(ds.SOPClassUID)
        assert "1.2.840.10008.5.1.4.1.1.104.1" in classes    # Encapsulated PDF
        assert any(c.startswith("1.2.840.10008.5.1.4.1.1.88.") for c in classes)  # SR
        originals = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID: f for f in files}
        for sop, data in originals.items():
            assert (folder / (sop + ".dcm")).read_bytes() == data

        # GET /api/intake: the counters, for the service token; 401 and 403 otherwise.
        st, body, _ = api_call(srv.base, "GET", "/api/intake")
        assert st == 200, body
        source = [x for x in body["sources"] if x["name"] == "clinic"][0]
        wait_for(lambda: [x for x in api_ok(srv.base, "GET", "/api/intake")["sources"]
                          if x["name"] == "clinic"][0]["stored"] == 1, what="intake stored")
        assert source["state"] == "up" and source["kind"] == "smb", source
        assert "last_error" in source and "last_error_time" in source
        rule = [x for x in body["exports"] if x["name"] == "rel"][0]
        assert rule["on"] == "report_released" and rule["what"] == "both", rule
        assert rule["done"] == 1 and rule["pending"] == 0 and rule["retrying"] == 0, rule
        assert rule["pdfs_written"] == 1 and rule["files_written"] == len(in_study), rule
        assert SMB_PASSWORD not in json.dumps(body)
        st, _, _ = api_call(srv.base, "GET", "/api/intake", token=None)
        assert st == 401
        st, body, _ = api_call(srv.base, "GET", "/api/intake", token=w.tokens["tech"])
        assert st == 403, body
        st, body, _ = api_call(srv.base, "GET", "/api/intake",
                               token=make_sysadmin(srv.base, w.centre))
        assert st == 200 and [x["name"] for x in body["exports"]] == ["rel"], body
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]

    # A restart exports nothing twice: the jobs are in the database, not in memory.
    srv = release_server(cloudpacs_bin, tmp_path, sections)
    try:
        wait_text(srv, "event=export.started rule=rel")
        time.sleep(4)       # several passes over the released orders
        assert "event=export.release_queued" not in srv.log_text()
        assert "event=export.release_done" not in srv.log_text()
        rule = [x for x in api_ok(srv.base, "GET", "/api/intake")["exports"]
                if x["name"] == "rel"][0]
        assert rule["done"] == 1 and rule["pending"] == 0, rule
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_export_pdf_only(cloudpacs_bin, tmp_path):
    """what = pdf to a local folder: the report PDF alone, named by pdf_pattern's default."""
    from test_film import release_study
    out = tmp_path / "out"
    sections = ("\n[export.pdf]\non = report_released\nwhat = pdf\ntarget = %s\n"
                "settle_seconds = 0\n" % out)
    srv = release_server(cloudpacs_bin, tmp_path, sections)
    try:
        w = reading_world(srv.base)
        oid, study, _ = release_study(w, "PR-2")
        wait_text(srv, "event=export.release_done rule=pdf order=%d" % oid)
        pdfs = list(out.rglob("*.pdf"))
        assert [p.name for p in pdfs] == ["report-%d.pdf" % oid], pdfs
        assert pdfs[0].read_bytes().startswith(b"%PDF")
        assert list(out.rglob("*.dcm")) == []
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_intake_api_without_the_service(cloudpacs_bin, tmp_path):
    from test_auth_http import AuthServer
    srv = AuthServer(cloudpacs_bin, tmp_path)
    try:
        # Redis may still be starting on a loaded machine (a 503 of its own).
        st, body, _ = wait_for(lambda: (lambda r: r if (r[1] or {}).get("reason") !=
                                        "unavailable" else None)(
            api_call(srv.base, "GET", "/api/intake")), what="an answer past Redis")
        assert st == 503 and body["reason"] == "ingest_not_running", body
        assert "not running" in body["error"]
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_export_what_configuration(cloudpacs_bin, tmp_path):
    env = dict(os.environ, CLOUDPACS_DATA_DIR=str(tmp_path / "d"))
    conf = tmp_path / "bad.conf"
    for text, words in (
            ("on = study_complete\nwhat = pdf\n", b"report_released"),
            ("on = report_released\nwhat = zip\n", b"dicom, pdf or both"),
            ("on = study_complete\npattern = {OrderID}/{SOPInstanceUID}.dcm\n", b"OrderID"),
            ("on = report_released\nwhat = pdf\npdf_pattern = {SOPInstanceUID}.pdf\n",
             b"pdf_pattern")):
        conf.write_text("[export.y]\ntarget = %s\n%s" % (tmp_path / "x", text))
        proc = subprocess.run([str(cloudpacs_bin), "serve", "--config", str(conf),
                               "--services", "ingest"], capture_output=True, timeout=60,
                              env=env)
        assert proc.returncode == 4, proc.stderr.decode()
        assert b"export.y" in proc.stderr and words in proc.stderr, proc.stderr.decode()


def test_intake_page_in_browser(cloudpacs_bin, smbd, tmp_path):
    """tests/browser/intake.mjs: the console's intake page shows the source and the rule."""
    from test_auth_http import PASSWORD
    from test_console import BROWSER_DIR, CHROMIUM, CONSOLE_DIR, require_browser, \
        require_console
    require_console()
    require_browser()
    for i in range(2):
        make_instance(smbd.share / "in" / ("IM%d" % i), uid(16, 2), uid(16, 3), uid(160 + i))
    sections = (smb_section("clinic", smbd, "in")
                + "\n[export.reports]\non = report_released\nwhat = pdf\ntarget = %s\n"
                % (tmp_path / "out"))
    srv = release_server(cloudpacs_bin, tmp_path, sections,
                         {"CLOUDPACS_HTTP_CONSOLE_DIR": str(CONSOLE_DIR)})
    try:
        centre = api_ok(srv.base, "POST", "/api/institutions",
                        {"parent_id": 0, "kind": "centre", "code": "CENTRE",
                         "name": "Reading centre"})["id"]
        make_sysadmin(srv.base, centre)
        shots = tmp_path / "screenshots"
        shots.mkdir()
        env = dict(os.environ, INTAKE_URL=srv.base, INTAKE_USER="sysadm",
                   INTAKE_PASSWORD=PASSWORD, SOURCE_NAME="clinic", SOURCE_STORED="2",
                   EXPORT_NAME="reports", CHROMIUM=CHROMIUM, SCREENSHOT_DIR=str(shots))
        proc = subprocess.run(["node", "--test", "intake.mjs"], cwd=BROWSER_DIR, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        out = proc.stdout.decode(errors="replace")
        assert proc.returncode == 0, "the intake page test failed (screenshots in %s)\n%s" % (
            shots, out[-6000:])
        assert "# pass 0\n" not in out, out
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]
