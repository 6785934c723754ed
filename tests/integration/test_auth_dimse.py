"""Authorisation and audit of the DICOM service of `cloudpacs serve`.

Two clinics, A and B, and a reading centre C: AE CLINIC_A belongs to A
through the directory (PUT /api/aes), CLINIC_B to B through its [ae.NAME]
section (`institution = B`, read at start, so the server is restarted once
the institutions exist). Each clinic stores its own studies with DCMTK's
storescu; C-FIND (findscu) from one clinic sees only its own studies, and
C-MOVE (movescu) and C-GET (getscu) of the other clinic's study yield no
sub-operation and no instance. An unknown calling AE is rejected
(accept_unknown off). A radiologist of C contracted with A for CR, named by
a User Identity (PS3.7 D.3.3.7, username and passcode: storescu --user and
a small C-FIND client written here, since DCMTK's findscu cannot send one),
sees only A's CR study; a wrong passcode is rejected, and with Redis away
the association is rejected as transient. The audit trail (GET /api/audit
with the service token, else the audit_record table) holds the c-store,
c-find, c-move and c-get records with the AE titles.

The module starts its own redis-server on a free loopback port and stops
exactly it; every other process is stopped by the handle that started it.
"""

import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian

from conftest import SERVICE_TOKEN, api_call, api_ok

READY_TIMEOUT = 30
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")
PASSWORD = "Correct-horse-9"
ROOT = "1.2.826.0.1.3680043.8.498.91"
CALLED = "CPAUTH"
IMPLICIT_LE = "1.2.840.10008.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"

# (key, clinic, modality, instances)
STUDIES = [("A1", "A", "CT", 2), ("A2", "A", "CR", 1), ("B1", "B", "CR", 2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study_uid(key):
    return "%s.%d" % (ROOT, 1 + [s[0] for s in STUDIES].index(key))


class Redis:
    """A redis-server of the module's own on a free loopback port."""

    def __init__(self, tmp):
        self.dir = Path(tmp)
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", str(self.dir / "log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + READY_TIMEOUT
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not start on port %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Serve:
    """`cloudpacs serve` (DICOM and web) on free ports over data_dir."""

    def __init__(self, binary, tmp, data, conf_text, redis_url, name="serve"):
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.data = Path(data)
        self.conf = Path(tmp) / (name + ".conf")
        self.conf.write_text(conf_text)
        self.log = Path(tmp) / (name + ".log")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CLOUDPACS_") or k == "CLOUDPACS_BIN"}
        env.update({
            "CLOUDPACS_DICOM_PORT": str(self.dicom_port),
            "CLOUDPACS_HTTP_PORT": str(self.http_port),
            "CLOUDPACS_DATA_DIR": str(self.data),
            "CLOUDPACS_HTTP_TOKEN": SERVICE_TOKEN,
            "CLOUDPACS_REDIS_URL": redis_url,
            "CLOUDPACS_DICOM_IDLE_TIMEOUT": "30",
        })
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(self.conf)], stdout=subprocess.PIPE,
            stderr=self.err, stdin=subprocess.DEVNULL, env=env)
        text = self._read_ready()
        assert "DICOM service ready" in text, "serve did not start: %r\n%s" % (
            text, self.log_text()[-3000:])
        self.base = "http://127.0.0.1:%d" % self.http_port

    def _read_ready(self):
        box = []

        def read():
            for _ in range(6):
                line = self.proc.stdout.readline().decode()
                box.append(line)
                if not line or "DICOM service ready" in line:
                    return
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(READY_TIMEOUT)
        return "".join(box)

    def log_text(self):
        if not self.err.closed:
            self.err.flush()
        return self.log.read_text(errors="replace")

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


class StoreSCP:
    """DCMTK's storescp as a C-MOVE destination, writing into a directory."""

    def __init__(self, tmp, name, port):
        self.dir = Path(tmp) / ("recv_" + name)
        self.dir.mkdir()
        self.port = port
        self.proc = subprocess.Popen(
            ["storescp", "-aet", name, "-od", str(self.dir), str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
        deadline = time.time() + READY_TIMEOUT
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("storescp did not start")

    def files(self):
        return sorted(self.dir.iterdir())

    def clear(self):
        for f in self.files():
            f.unlink()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_instance(path, key, modality, k):
    uid = study_uid(key)
    ds = Dataset()
    ds.PatientName = "Patient^%s" % key
    ds.PatientID = "PID-" + key
    ds.StudyInstanceUID = uid
    ds.StudyDate = "20240101"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC" + key
    ds.StudyID = key
    ds.SeriesInstanceUID = uid + ".1"
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.SOPClassUID = CT_STORAGE if modality == "CT" else CR_STORAGE
    ds.SOPInstanceUID = uid + ".1.%d" % k
    ds.InstanceNumber = k
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(str(path), write_like_original=False)


def config(dest_ports, clinic_b_institution=True):
    text = "[dicom]\nae_title = %s\naccept_unknown = false\n" % CALLED
    for name, port in dest_ports.items():
        text += ("[ae.%s]\nhost = 127.0.0.1\nport = %d\nallow = store,query,retrieve\n"
                 % (name, port))
        if name == "CLINIC_B" and clinic_b_institution:
            text += "institution = CLB\n"
    return text


def run(args, cwd=None):
    return subprocess.run(args, capture_output=True, env=DCMTK_ENV, cwd=cwd, timeout=60)


def institution(base, code, kind, parent_id=0):
    return api_ok(base, "POST", "/api/institutions",
                  {"parent_id": parent_id, "kind": kind, "code": code,
                   "name": "Institution " + code})


@pytest.fixture(scope="module")
def env(cloudpacs_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authdimse")
    redis = Redis(tmp_path_factory.mktemp("redis"))
    ports = {"CLINIC_A": free_port(), "CLINIC_B": free_port()}
    data = tmp / "data"
    dests = {}
    srv = None
    try:
        # The directory first, on a server whose configuration names none of it.
        first = Serve(cloudpacs_bin, tmp, data, config(ports, False), redis.url, "setup")
        try:
            base = first.base
            a = institution(base, "CLA", "clinic")
            b = institution(base, "CLB", "clinic")
            c = institution(base, "RCC", "centre")
            api_ok(base, "PUT", "/api/aes/CLINIC_A",
                   {"institution_id": a["id"], "host": "127.0.0.1",
                    "port": ports["CLINIC_A"], "allow": "store,query,retrieve"})
            rad = api_ok(base, "POST", "/api/users",
                         {"username": "rad1", "display_name": "Rad One",
                          "institution_id": c["id"], "password": PASSWORD,
                          "roles": ["radiologist"]})
            api_ok(base, "POST", "/api/contracts",
                   {"user_id": rad["id"], "requesting_id": a["id"], "reading_id": c["id"],
                    "start_date": "20000101", "end_date": "", "modalities": ["CR"],
                    "body_parts": []})
        finally:
            assert first.stop() == 0, first.log_text()[-3000:]

        srv = Serve(cloudpacs_bin, tmp, data, config(ports), redis.url)
        for name, port in ports.items():
            dests[name] = StoreSCP(tmp, name, port)

        src = tmp / "src"
        src.mkdir()
        for key, clinic, modality, count in STUDIES:
            files = []
            for k in range(1, count + 1):
                path = src / ("%s_%d.dcm" % (key, k))
                make_instance(path, key, modality, k)
                files.append(str(path))
            proc = run(["storescu", "-aet", "CLINIC_" + clinic, "-aec", CALLED,
                        "127.0.0.1", str(srv.dicom_port)] + files)
            assert proc.returncode == 0, proc.stderr.decode(errors="replace") + \
                srv.log_text()[-3000:]
        yield {"srv": srv, "redis": redis, "tmp": tmp, "dests": dests,
               "inst": {"A": a["id"], "B": b["id"], "C": c["id"]}, "src": src}
    finally:
        for d in dests.values():
            d.stop()
        if srv is not None:
            rc = srv.stop()
            assert rc == 0, srv.log_text()[-3000:]
        redis.stop()


def findscu(env, aet, keys):
    out = env["tmp"] / ("find_%d" % time.monotonic_ns())
    out.mkdir()
    args = ["findscu", "-aet", aet, "-aec", CALLED, "-S", "-X"]
    for k in keys:
        args += ["-k", k]
    args += ["127.0.0.1", str(env["srv"].dicom_port)]
    proc = run(args, cwd=out)
    rsps = [pydicom.dcmread(str(p), force=True) for p in sorted(out.glob("rsp*.dcm"))]
    return proc, rsps


def studies_seen(rsps):
    return sorted(str(r.StudyInstanceUID) for r in rsps)


# --- C-FIND by AE ---------------------------------------------------------------

def test_clinic_a_finds_only_its_studies(env):
    proc, rsps = findscu(env, "CLINIC_A", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                           "ModalitiesInStudy"])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert studies_seen(rsps) == sorted([study_uid("A1"), study_uid("A2")])


def test_clinic_b_finds_only_its_studies(env):
    proc, rsps = findscu(env, "CLINIC_B", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert studies_seen(rsps) == [study_uid("B1")]


def test_hidden_study_does_not_match_by_uid(env):
    """Asking for B's study by its UID answers nothing, not an error."""
    proc, rsps = findscu(env, "CLINIC_A", ["QueryRetrieveLevel=IMAGE",
                                           "StudyInstanceUID=" + study_uid("B1"),
                                           "SeriesInstanceUID=" + study_uid("B1") + ".1",
                                           "SOPInstanceUID"])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert rsps == []


def test_instances_stored_under_their_institution(env):
    db = sqlite3.connect(str(env["srv"].data / "index.sqlite"))
    try:
        rows = db.execute("SELECT sop_uid, institution_id FROM instance").fetchall()
    except sqlite3.Error:
        pytest.skip("index schema without instance.sop_uid")
    finally:
        db.close()
    got = {sop: inst for sop, inst in rows}
    for key, clinic, _, count in STUDIES:
        for k in range(1, count + 1):
            assert got[study_uid(key) + ".1.%d" % k] == env["inst"][clinic], (key, got)


# --- C-MOVE and C-GET -------------------------------------------------------------

def movescu(env, aet, dest, key):
    return run(["movescu", "-aet", aet, "-aec", CALLED, "-aem", dest, "-S",
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study_uid(key),
                "127.0.0.1", str(env["srv"].dicom_port)])


def test_move_of_other_clinics_study_sends_nothing(env):
    dest = env["dests"]["CLINIC_A"]
    dest.clear()
    proc = movescu(env, "CLINIC_A", "CLINIC_A", "B1")
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out
    time.sleep(0.3)
    assert dest.files() == []
    assert "Completed Suboperations       : 0" in out or "Number of Completed" not in out, out


def test_move_of_own_study_sends_it(env):
    dest = env["dests"]["CLINIC_A"]
    dest.clear()
    proc = movescu(env, "CLINIC_A", "CLINIC_A", "A1")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    deadline = time.time() + 10
    while len(dest.files()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(dest.files()) == 2


def getscu(env, aet, key):
    out = env["tmp"] / ("get_%d" % time.monotonic_ns())
    out.mkdir()
    proc = run(["getscu", "-aet", aet, "-aec", CALLED, "-S", "-od", str(out),
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study_uid(key),
                "127.0.0.1", str(env["srv"].dicom_port)])
    return proc, sorted(out.iterdir())


def test_get_of_other_clinics_study_gets_nothing(env):
    proc, files = getscu(env, "CLINIC_A", "B1")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert files == []


def test_get_of_own_study_gets_it(env):
    proc, files = getscu(env, "CLINIC_B", "B1")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert len(files) == 2


# --- who may associate ------------------------------------------------------------

def test_unknown_ae_is_rejected(env):
    proc = run(["echoscu", "-aet", "STRANGER", "-aec", CALLED, "127.0.0.1",
                str(env["srv"].dicom_port)])
    assert proc.returncode != 0
    err = proc.stderr.decode(errors="replace")
    assert "Rejected" in err or "rejected" in err, err


def test_unknown_institution_code_is_a_config_error(cloudpacs_bin, env, tmp_path):
    conf = "[dicom]\nae_title = X\n[ae.ODD]\nhost = 127.0.0.1\ninstitution = NOPE\n"
    (tmp_path / "bad.conf").write_text(conf)
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
    e.update({"CLOUDPACS_DATA_DIR": str(env["srv"].data),
              "CLOUDPACS_DICOM_PORT": str(free_port()),
              "CLOUDPACS_HTTP_PORT": str(free_port()),
              "CLOUDPACS_HTTP_TOKEN": SERVICE_TOKEN,
              "CLOUDPACS_REDIS_URL": env["redis"].url})
    proc = subprocess.run([str(cloudpacs_bin), "serve", "--config", str(tmp_path / "bad.conf")],
                          capture_output=True, env=e, timeout=60)
    assert proc.returncode == 4, proc.stderr.decode(errors="replace")
    assert b"NOPE" in proc.stderr


# --- user identity: a minimal C-FIND requestor (PS3.8 9.3, PS3.7 D.3.3.7) ----------

def _item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _associate_rq(calling, identity, kind=2):
    body = struct.pack(">HH", 1, 0) + CALLED.encode().ljust(16) + calling.encode().ljust(16)
    body += bytes(32) + _item(0x10, b"1.2.840.10008.3.1.1.1")
    sub = _item(0x30, STUDY_FIND.encode()) + _item(0x40, IMPLICIT_LE.encode())
    body += _item(0x20, struct.pack(">BBBB", 1, 0, 0, 0) + sub)
    user = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4.5")
    if identity is not None:
        name, passcode = identity
        ident = struct.pack(">BBH", kind, 1, len(name)) + name.encode()
        ident += struct.pack(">H", len(passcode)) + passcode.encode()
        user += _item(0x58, ident)
    body += _item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _read_pdu(sock):
    hdr = _recv_exact(sock, 6)
    if len(hdr) < 6:
        return None, b""
    kind, _, length = struct.unpack(">BBI", hdr)
    return kind, _recv_exact(sock, length)


def _element(group, elem, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def _find_command():
    rest = (_element(0, 0x0002, STUDY_FIND.encode()) + _element(0, 0x0100, struct.pack("<H", 0x20))
            + _element(0, 0x0110, struct.pack("<H", 1)) + _element(0, 0x0700, struct.pack("<H", 0))
            + _element(0, 0x0800, struct.pack("<H", 0)))
    return _element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def _pdata(payload, command):
    pdv = struct.pack(">IBB", len(payload) + 2, 1, (1 if command else 0) | 2) + payload
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def _implicit(ds):
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


def _command_fields(raw):
    out, pos = {}, 0
    while pos + 8 <= len(raw):
        group, elem, length = struct.unpack_from("<HHI", raw, pos)
        if length == 2:
            out[elem] = struct.unpack_from("<H", raw, pos + 8)[0]
        pos += 8 + length
    return out


def identity_find(port, calling, identity, keys, kind=2):
    """('rejected', (result, source, reason)) or ('ok', [identifiers], final status)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        sock.sendall(_associate_rq(calling, identity, kind))
        kind, body = _read_pdu(sock)
        if kind == 3:
            return "rejected", (body[1], body[2], body[3])
        assert kind == 2, kind
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for k, v in keys.items():
            setattr(ds, k, v)
        sock.sendall(_pdata(_find_command(), True) + _pdata(_implicit(ds), False))
        found, cmd, data = [], b"", b""
        while True:
            kind, body = _read_pdu(sock)
            assert kind == 4, kind
            pos = 0
            while pos < len(body):
                length, _, mch = struct.unpack_from(">IBB", body, pos)
                frag = body[pos + 6:pos + 4 + length]
                pos += 4 + length
                if mch & 1:
                    cmd += frag
                    if not mch & 2:
                        continue
                    fields = _command_fields(cmd)
                    cmd = b""
                    status = fields.get(0x0900)
                    if status not in (0xFF00, 0xFF01):
                        sock.sendall(struct.pack(">BBIL", 5, 0, 4, 0))
                        _read_pdu(sock)
                        return "ok", found, status
                else:
                    data += frag
                    if mch & 2:
                        found.append(read_dataset(DicomBytesIO(data), True, True))
                        data = b""
    finally:
        sock.close()


def test_radiologist_sees_only_contracted_cr_studies(env):
    res, found, status = identity_find(env["srv"].dicom_port, "RADWS", ("rad1", PASSWORD),
                                       {"StudyInstanceUID": "", "ModalitiesInStudy": ""})
    assert res == "ok" and status == 0, (res, found, status)
    assert sorted(str(d.StudyInstanceUID) for d in found) == [study_uid("A2")]


def test_wrong_passcode_is_rejected(env):
    res, why, *_ = identity_find(env["srv"].dicom_port, "RADWS", ("rad1", "wrong-one"),
                                 {"StudyInstanceUID": ""})
    assert res == "rejected"
    assert why == (1, 1, 1), why


def test_username_only_identity_refused_by_default(env):
    res, why, *_ = identity_find(env["srv"].dicom_port, "CLINIC_A", ("rad1", ""),
                                 {"StudyInstanceUID": ""}, kind=1)
    assert res == "rejected"
    assert why == (1, 1, 1), why


def test_storescu_with_user_identity(env):
    """storescu --user/--password: a radiologist may not store (0124), a wrong one is rejected."""
    f = str(env["src"] / "A2_1.dcm")
    bad = run(["storescu", "-aet", "RADWS", "-aec", CALLED, "--user", "rad1",
               "--password", "nope", "127.0.0.1", str(env["srv"].dicom_port), f])
    assert bad.returncode != 0
    assert b"Rejected" in bad.stderr or b"rejected" in bad.stderr, bad.stderr
    # -rsp: DCMTK insists on the positive response it asks for (PS3.7 D.3.3.7.2).
    ok = run(["storescu", "-v", "-aet", "RADWS", "-aec", CALLED, "--user", "rad1",
              "--password", PASSWORD, "-rsp", "127.0.0.1", str(env["srv"].dicom_port), f])
    text = ok.stdout.decode(errors="replace") + ok.stderr.decode(errors="replace")
    assert "Association Accepted" in text, text
    assert "Status: 0x124)" in text or "0x0124" in text, text


# --- the audit trail ---------------------------------------------------------------

def audit_records(env):
    st, body, _ = api_call(env["srv"].base, "GET", "/api/audit?limit=500")
    if st == 200 and isinstance(body, dict):
        return body["records"]
    db = sqlite3.connect(str(env["srv"].data / "index.sqlite"))
    try:
        cur = db.execute("SELECT event, type, actor, object_id, detail, outcome "
                         "FROM audit_record")
        return [dict(zip(("event", "type", "actor", "object_id", "detail", "outcome"), r))
                for r in cur.fetchall()]
    finally:
        db.close()


def wait_records(env, pred, timeout=10):
    deadline = time.time() + timeout
    while True:
        recs = audit_records(env)
        if pred(recs) or time.time() > deadline:
            return recs
        time.sleep(0.2)


def test_audit_trail_has_store_find_move_get(env):
    # Each of these ran above in this module; run one more of each, to be order-free.
    findscu(env, "CLINIC_B", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    movescu(env, "CLINIC_A", "CLINIC_A", "B1")
    getscu(env, "CLINIC_A", "A2")

    def has_all(recs):
        types = {(r["type"], r["actor"]) for r in recs}
        return {("c-store", "CLINIC_A"), ("c-store", "CLINIC_B"), ("c-find", "CLINIC_B"),
                ("c-move", "CLINIC_A"), ("c-get", "CLINIC_A")} <= types
    recs = wait_records(env, has_all)
    assert has_all(recs), [(r["type"], r["actor"]) for r in recs]

    stores = [r for r in recs if r["type"] == "c-store" and r["actor"] == "CLINIC_A"]
    assert {r["object_id"] for r in stores} >= {study_uid("A1"), study_uid("A2")}
    finds = [r for r in recs if r["type"] == "c-find"]
    assert all("Patient^" not in r["object_id"] for r in finds)
    moves = [r for r in recs if r["type"] == "c-move" and r["object_id"] == study_uid("B1")]
    assert moves, recs
    for r in moves:
        detail = r["detail"] if isinstance(r["detail"], dict) else json.loads(r["detail"])
        assert detail["destination"] == "CLINIC_A" and detail["sent"] == 0, r
    assert any(r["actor"] == "rad1" and r["type"] == "c-find" for r in recs)
    refused = [r for r in recs if r["type"] == "c-store" and r["actor"] == "rad1"]
    assert refused, recs
    detail = refused[0]["detail"]
    detail = detail if isinstance(detail, dict) else json.loads(detail)
    assert detail["refused"] == 1, refused


# --- unknown AEs and [dicom] default_institution --------------------------------------

def test_unknown_ae_acts_for_default_institution(cloudpacs_bin, env, tmp_path):
    """accept_unknown on loopback: an unknown modality stores for default_institution."""
    data = tmp_path / "data"
    setup = Serve(cloudpacs_bin, tmp_path, data, "[dicom]\nae_title = %s\n" % CALLED,
                  env["redis"].url, "dsetup")
    try:
        inst = institution(setup.base, "CLD", "clinic")
        institution(setup.base, "CLE", "clinic")
    finally:
        assert setup.stop() == 0, setup.log_text()[-3000:]

    conf = ("[dicom]\nae_title = %s\naccept_unknown = true\ndefault_institution = CLD\n"
            % CALLED)
    srv = Serve(cloudpacs_bin, tmp_path, data, conf, env["redis"].url, "default")
    try:
        f = tmp_path / "x.dcm"
        make_instance(f, "A1", "CT", 7)
        proc = run(["storescu", "-aet", "MODX", "-aec", CALLED, "127.0.0.1",
                    str(srv.dicom_port), str(f)])
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        proc = run(["echoscu", "-aet", "OTHER", "-aec", CALLED, "127.0.0.1",
                    str(srv.dicom_port)])
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]
    db = sqlite3.connect(str(data / "index.sqlite"))
    try:
        rows = db.execute("SELECT institution_id FROM instance WHERE sop_uid = ?",
                          (study_uid("A1") + ".1.7",)).fetchall()
    finally:
        db.close()
    assert rows == [(inst["id"],)], rows


# --- Redis away: last, since it stops the module's Redis ---------------------------

def test_zz_redis_away_rejects_identity_transiently(env):
    env["redis"].stop()
    try:
        res, why, *_ = identity_find(env["srv"].dicom_port, "RADWS", ("rad1", PASSWORD),
                                     {"StudyInstanceUID": ""})
        assert res == "rejected"
        assert why[0] == 2, why
        # An AE needs no Redis: CLINIC_A still queries.
        proc, rsps = findscu(env, "CLINIC_A", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
        assert proc.returncode == 0 and len(rsps) == 2
    finally:
        env["redis"].start()
