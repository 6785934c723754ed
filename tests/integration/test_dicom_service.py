"""The DICOM service of `cloudpacs serve` against real clients and hostile peers.

Clients: DCMTK's echoscu and storescu, `cloudpacs echo`, and a minimal
A-ASSOCIATE-RQ / C-ECHO written here with struct (pynetdicom is not
available), as a second independent implementation of PS3.8. Stored
instances are read back with pydicom and compared element by element with
what was sent. Hostile peers (truncated, oversized, unknown PDUs, garbage,
silence, unknown or wrong AE titles, too many associations) each leave the
server serving the next caller.

Each server is started on 127.0.0.1 with a free port and a temporary data
directory, and stopped (SIGTERM, then the exit status is checked) by the
fixture that started it.
"""

import os
import signal
import socket
import struct
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pydicom
import pytest

from conftest import PYDICOM_DATA, is_malformed_name, pydicom_files

ARTIM_S = 2
READY_TIMEOUT = 20
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


# --- servers ------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, tmp, config_text="", extra_env=None):
        self.port = free_port()
        self.data = Path(tmp) / "data"
        self.conf = Path(tmp) / "cloudpacs.conf"
        self.conf.write_text(config_text)
        self.log = Path(tmp) / "serve.log"
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("CLOUDPACS_") and key != "CLOUDPACS_BIN":
                del env[key]
        env.update({
            "CLOUDPACS_DICOM_PORT": str(self.port),
            "CLOUDPACS_DATA_DIR": str(self.data),
            "CLOUDPACS_DICOM_ARTIM_TIMEOUT": str(ARTIM_S),
            "CLOUDPACS_DICOM_IDLE_TIMEOUT": "30",
        })
        env.update(extra_env or {})
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(self.conf)], stdout=subprocess.PIPE,
            stderr=self.err, stdin=subprocess.DEVNULL, env=env)
        line = self._ready_line()
        assert "ready" in line, "server did not start: %r\n%s" % (line, self.log_text())

    def _ready_line(self):
        box = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(READY_TIMEOUT)
        return box[0].decode() if box else ""

    def log_text(self):
        if not self.err.closed:
            self.err.flush()
        return self.log.read_text(errors="replace")

    def stop(self):
        """SIGTERM to the process we started; it must exit 0 after a clean shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("server did not stop on SIGTERM")
        self.err.close()
        log = self.log_text()
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            assert marker not in log, log[-3000:]
        return self.proc.returncode

    def rss_kib(self, field="VmRSS"):
        with open("/proc/%d/status" % self.proc.pid) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0


@pytest.fixture(scope="module")
def server(cloudpacs_bin, tmp_path_factory):
    srv = Server(cloudpacs_bin, tmp_path_factory.mktemp("dicom"))
    yield srv
    rc = srv.stop()
    log = srv.log_text()
    assert rc == 0, log[-3000:]
    assert "serve.stopped" in log


@pytest.fixture
def fresh_server(cloudpacs_bin, tmp_path):
    """A server of its own, for tests whose instances share SOP Instance UIDs."""
    srv = Server(cloudpacs_bin, tmp_path)
    yield srv
    assert srv.stop() == 0, srv.log_text()[-3000:]


@pytest.fixture(scope="module")
def strict_server(cloudpacs_bin, tmp_path_factory):
    """Unknown callers refused; KNOWN may store; at most 4 associations."""
    conf = ("[dicom]\nae_title = STRICT\naccept_unknown = false\nmax_associations = 4\n"
            "[ae.KNOWN]\nhost = 127.0.0.1\nport = 104\nallow = store\n"
            "[ae.ECHOONLY]\nhost = 127.0.0.1\nallow = none\n")
    srv = Server(cloudpacs_bin, tmp_path_factory.mktemp("strict"), conf)
    yield srv
    assert srv.stop() == 0, srv.log_text()[-3000:]


def wait_log(srv, *texts, timeout=10):
    """The server's log once it holds every text (it logs after answering)."""
    deadline = time.monotonic() + timeout
    while True:
        log = srv.log_text()
        if all(t in log for t in texts) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def echoscu(port, aec="CLOUDPACS", aet="ECHOSCU"):
    return subprocess.run(["echoscu", "-to", "10", "-aet", aet, "-aec", aec, "127.0.0.1",
                           str(port)], capture_output=True, env=DCMTK_ENV, timeout=60)


def assert_serving(srv, aec="CLOUDPACS", aet="ECHOSCU"):
    proc = echoscu(srv.port, aec, aet)
    assert proc.returncode == 0, proc.stderr.decode() + srv.log_text()[-2000:]


# --- a minimal upper layer in Python (PS3.8 9.3) ---------------------------

def ae16(title):
    return title.encode().ljust(16)


def item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(called="CLOUDPACS", calling="PYRAW", contexts=((1, VERIFICATION),)):
    body = struct.pack(">HH", 1, 0) + ae16(called) + ae16(calling) + bytes(32)
    body += item(0x10, b"1.2.840.10008.3.1.1.1")
    for pc_id, abstract in contexts:
        sub = item(0x30, abstract.encode()) + item(0x40, IMPLICIT_LE.encode())
        body += item(0x20, struct.pack(">BBBB", pc_id, 0, 0, 0) + sub)
    user = item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4.5")
    body += item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def element(group, elem, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def echo_command(message_id=1):
    rest = (element(0, 0x0002, VERIFICATION.encode()) + element(0, 0x0100, struct.pack("<H", 0x30))
            + element(0, 0x0110, struct.pack("<H", message_id))
            + element(0, 0x0800, struct.pack("<H", 0x0101)))
    return element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def store_command(sop_class, sop_instance, message_id=1):
    rest = (element(0, 0x0002, sop_class.encode()) + element(0, 0x0100, struct.pack("<H", 1))
            + element(0, 0x0110, struct.pack("<H", message_id))
            + element(0, 0x0700, struct.pack("<H", 0))
            + element(0, 0x0800, struct.pack("<H", 0))
            + element(0, 0x1000, sop_instance.encode()))
    return element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def implicit_bytes(ds):
    """The data set (no meta) in Implicit VR Little Endian, as pydicom writes it."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


def pdata(pc_id, payload, command=True, last=True):
    mch = (1 if command else 0) | (2 if last else 0)
    pdv = struct.pack(">IBB", len(payload) + 2, pc_id, mch) + payload
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def read_pdu(sock):
    """(type, body) or (None, b'') when the server closed."""
    hdr = recv_exact(sock, 6)
    if len(hdr) < 6:
        return None, b""
    kind, _, length = struct.unpack(">BBI", hdr)
    return kind, recv_exact(sock, length)


def command_status(body):
    """The Status (0000,0900) of the command set in a P-DATA-TF body."""
    payload = body[6:]
    pos = 0
    while pos + 8 <= len(payload):
        group, elem, length = struct.unpack_from("<HHI", payload, pos)
        if (group, elem) == (0, 0x0900):
            return struct.unpack_from("<H", payload, pos + 8)[0]
        pos += 8 + length
    return None


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def raw_associate(port, **kw):
    sock = connect(port)
    sock.sendall(associate_rq(**kw))
    kind, body = read_pdu(sock)
    return sock, kind, body


def raw_echo(sock, message_id=1):
    sock.sendall(pdata(1, echo_command(message_id)))
    kind, body = read_pdu(sock)
    assert kind == 4, kind
    return command_status(body)


def raw_release(sock):
    sock.sendall(struct.pack(">BBIL", 5, 0, 4, 0))
    kind, _ = read_pdu(sock)
    assert kind == 6
    sock.close()


# --- echo --------------------------------------------------------------------

def test_echoscu(server):
    assert_serving(server)
    assert "dicom.assoc.accepted" in wait_log(server, "dicom.assoc.accepted")


def test_cloudpacs_echo(server, run):
    proc = run("echo", "127.0.0.1", server.port)
    assert proc.returncode == 0, proc.stderr
    assert b"success" in proc.stdout
    proc = run("echo", "--count", "3", "--aet", "ME", "127.0.0.1", server.port)
    assert proc.returncode == 0, proc.stderr


def test_cloudpacs_echo_failures(server, run):
    proc = run("echo", "--aec", "WRONG", "127.0.0.1", server.port)
    assert proc.returncode == 5
    assert b"rejected" in proc.stderr
    proc = run("echo", "--timeout", "2", "127.0.0.1", free_port())
    assert proc.returncode == 5
    proc = run("echo", "127.0.0.1")
    assert proc.returncode == 2


def test_raw_python_echo(server):
    sock, kind, body = raw_associate(server.port)
    assert kind == 2, (kind, body)
    assert raw_echo(sock, 1) == 0
    assert raw_echo(sock, 2) == 0
    raw_release(sock)


def test_echoscu_against_our_echo_path(server, run):
    """cloudpacs echo also talks to DCMTK's own SCP (storescp), not only to us."""
    port = free_port()
    scp = subprocess.Popen(["storescp", "-aet", "DCMTKSCP", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        proc = run("echo", "--aec", "DCMTKSCP", "127.0.0.1", port)
        assert proc.returncode == 0, proc.stderr
    finally:
        scp.terminate()
        scp.wait(timeout=10)


# --- storage -------------------------------------------------------------------

def storage_samples(per_syntax=2):
    """Up to per_syntax well-formed pydicom files for each transfer syntax."""
    chosen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for file_id, path in pydicom_files():
            if is_malformed_name(file_id):
                continue
            try:
                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
                ts = str(ds.file_meta.TransferSyntaxUID)
                str(ds.SOPClassUID), str(ds.SOPInstanceUID)
            except Exception:
                continue
            if len(chosen.setdefault(ts, [])) < per_syntax:
                chosen[ts].append((file_id, path))
    return [pytest.param(path, id=file_id) for files in chosen.values() for file_id, path in files]


# storescu's option that proposes each transfer syntax, so that it sends
# the file as it is (no conversion) and we store it as received.
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def find_blob(data_dir, sop_uid):
    hits = list((Path(data_dir) / "blobs").rglob(sop_uid + ".dcm"))
    return hits[0] if hits else None


def compare_datasets(a, b, where=""):
    """Element by element: same tags, VRs and values (pixel data bytes included).

    Data Set Trailing Padding (FFFC,FFFC) and group lengths are left out:
    storescu drops them before sending (PS3.5 7.2 makes group lengths
    optional; padding has no meaning).
    """
    def kept(ds):
        return [e for e in ds if e.tag != 0xFFFCFFFC and e.tag.element != 0]
    a, b = kept(a), kept(b)
    tags_a = [e.tag for e in a]
    tags_b = [e.tag for e in b]
    assert tags_a == tags_b, "%s: tags differ: %s" % (where, set(tags_a) ^ set(tags_b))
    for ea, eb in zip(a, b):
        if ea.tag == 0x7FE00010 and {ea.VR, eb.VR} <= {"OB", "OW"}:
            # Encapsulated pixel data is OB (PS3.5 A.4); DCMTK sends it so
            # whatever the file said.
            assert ea.value == eb.value, "%s pixel data" % where
            continue
        assert ea.VR == eb.VR or "UN" in (ea.VR, eb.VR), "%s %s VR" % (where, ea.tag)
        if ea.VR == "SQ":
            assert len(ea.value) == len(eb.value), "%s %s items" % (where, ea.tag)
            for i, (ia, ib) in enumerate(zip(ea.value, eb.value)):
                compare_datasets(ia, ib, "%s %s[%d]" % (where, ea.tag, i))
        else:
            assert ea.value == eb.value, "%s %s value" % (where, ea.tag)


@pytest.mark.parametrize("sample", storage_samples())
def test_storescu_every_transfer_syntax(fresh_server, sample):
    """Sent as it is, stored as received: the data set reads back the same.

    Several of pydicom's files share a SOP Instance UID, so each gets a
    fresh server (and data directory).
    """
    server = fresh_server
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(str(sample))
    ts = str(original.file_meta.TransferSyntaxUID)
    proc = subprocess.run(["storescu", "-R", STORESCU_PROPOSE[ts], "-to", "20", "-aec",
                           "CLOUDPACS", "127.0.0.1", str(server.port), str(sample)],
                          capture_output=True, env=DCMTK_ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode() + server.log_text()[-2000:]
    blob = find_blob(server.data, str(original.SOPInstanceUID))
    assert blob is not None, "not stored: %s\n%s" % (sample, server.log_text()[-2000:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = pydicom.dcmread(str(blob))
    assert str(stored.file_meta.TransferSyntaxUID) == ts, "stored as received"
    compare_datasets(original, stored, sample.name)
    assert_serving(server)


def raw_store_sample():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(PYDICOM_DATA / "test_files" / "CT_small.dcm"))
    return ds, str(ds.SOPClassUID)


def test_raw_python_store(fresh_server):
    """A second, independent client: C-STORE in 1000-byte PDVs, read back identical."""
    ds, sop_class = raw_store_sample()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1234567"
    data = implicit_bytes(ds)
    sock, kind, _ = raw_associate(fresh_server.port, contexts=((1, sop_class),))
    assert kind == 2
    sock.sendall(pdata(1, store_command(sop_class, ds.SOPInstanceUID)))
    for off in range(0, len(data), 1000):
        last = off + 1000 >= len(data)
        sock.sendall(pdata(1, data[off:off + 1000], command=False, last=last))
    kind, body = read_pdu(sock)
    assert kind == 4 and command_status(body) == 0
    raw_release(sock)
    blob = find_blob(fresh_server.data, ds.SOPInstanceUID)
    assert blob is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = pydicom.dcmread(str(blob))
    assert str(stored.file_meta.TransferSyntaxUID) == IMPLICIT_LE
    compare_datasets(ds, stored, "raw store")


def raw_store_status(port, context_class, command_class, command_uid, data):
    sock, kind, _ = raw_associate(port, contexts=((1, context_class),))
    assert kind == 2
    sock.sendall(pdata(1, store_command(command_class, command_uid)))
    sock.sendall(pdata(1, data, command=False, last=True))
    kind, body = read_pdu(sock)
    assert kind == 4
    raw_release(sock)
    return command_status(body)


def test_store_failure_statuses(fresh_server):
    """PS3.4 B.2.3: A900 when the data set is not the command's, 0122 for a class
    that is not the context's; each leaves a log line with the UIDs."""
    ds, sop_class = raw_store_sample()
    data = implicit_bytes(ds)
    status = raw_store_status(fresh_server.port, sop_class, sop_class, "1.2.3.4.5.6.7", data)
    assert status == 0xA900, hex(status)
    mr = "1.2.840.10008.5.1.4.1.1.4"
    status = raw_store_status(fresh_server.port, sop_class, mr, str(ds.SOPInstanceUID), data)
    assert status == 0x0122, hex(status)
    log = wait_log(fresh_server, "status=0xa900", "status=0x0122")
    assert "status=0xa900" in log and "sop_instance_uid=1.2.3.4.5.6.7" in log
    assert "status=0x0122" in log
    assert find_blob(fresh_server.data, str(ds.SOPInstanceUID)) is None
    assert_serving(fresh_server)


def test_store_interrupted(fresh_server):
    """An A-ABORT inside the data set: nothing stored, one log line, still serving."""
    ds, sop_class = raw_store_sample()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.7654321"
    data = implicit_bytes(ds)
    sock, kind, _ = raw_associate(fresh_server.port, contexts=((1, sop_class),))
    assert kind == 2
    sock.sendall(pdata(1, store_command(sop_class, ds.SOPInstanceUID)))
    sock.sendall(pdata(1, data[:len(data) // 2], command=False, last=False))
    sock.sendall(struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 0, 0))
    sock.close()
    log = wait_log(fresh_server, "dicom.store.incomplete")
    assert "dicom.store.incomplete" in log and ds.SOPInstanceUID in log
    assert find_blob(fresh_server.data, ds.SOPInstanceUID) is None
    assert_serving(fresh_server)


def test_user_identity_positive_response(server):
    """storescu insists on a positive response when it asks for one (PS3.7 D.3.3.7)."""
    ct = PYDICOM_DATA / "test_files" / "CT_small.dcm"
    proc = subprocess.run(["storescu", "-aec", "CLOUDPACS", "--user", "alice", "--password",
                           "secret", "--pos-response", "127.0.0.1", str(server.port), str(ct)],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


def test_concurrent_storescu(server):
    files = [PYDICOM_DATA / "test_files" / name for name in
             ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm",
                          "MR_small_bigendian.dcm")]
    results = []

    def one(i):
        proc = subprocess.run(["storescu", "-to", "30", "-aet", "CONC%d" % i, "-aec", "CLOUDPACS",
                               "127.0.0.1", str(server.port)] + [str(f) for f in files],
                              capture_output=True, env=DCMTK_ENV, timeout=180)
        results.append((i, proc.returncode, proc.stderr.decode()))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert len(results) == 8
    for i, rc, err in results:
        assert rc == 0, "storescu %d: %s" % (i, err)
    assert_serving(server)


def test_fifty_concurrent_associations_and_memory(server):
    base = server.rss_kib()
    socks = []
    try:
        for i in range(50):
            sock, kind, _ = raw_associate(server.port, calling="MANY%d" % i)
            assert kind == 2, "association %d refused" % i
            socks.append(sock)
        for i, sock in enumerate(socks):
            assert raw_echo(sock, i + 1) == 0
        held = server.rss_kib()
        per_assoc_kib = max(0, held - base) / 50.0
        print("rss base %d KiB, with 50 associations %d KiB, %.0f KiB each"
              % (base, held, per_assoc_kib))
        assert per_assoc_kib < 8 * 1024
    finally:
        for sock in socks:
            raw_release(sock)
    assert_serving(server)


def test_large_instance_memory_bounded(fresh_server, tmp_path):
    """A 64 MiB instance is streamed: the server's peak memory grows by far less."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(PYDICOM_DATA / "test_files" / "CT_small.dcm"))
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77777777777777"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4096, 4096, 2
    ds.PixelData = bytes(range(256)) * (4096 * 4096 * 2 * 2 // 256)
    big = tmp_path / "big.dcm"
    ds.save_as(str(big), write_like_original=False)
    peak_before = fresh_server.rss_kib("VmHWM")
    proc = subprocess.run(["storescu", "-aec", "CLOUDPACS", "127.0.0.1", str(fresh_server.port),
                           str(big)], capture_output=True, env=DCMTK_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode() + fresh_server.log_text()[-2000:]
    assert find_blob(fresh_server.data, ds.SOPInstanceUID) is not None
    growth = fresh_server.rss_kib("VmHWM") - peak_before
    print("peak memory growth for a %d MiB instance: %d KiB"
          % (big.stat().st_size >> 20, growth))
    assert growth < 8 * 1024, growth


def test_graceful_shutdown_with_open_association(cloudpacs_bin, tmp_path):
    """SIGTERM: no new callers; an idle association is closed at the deadline."""
    srv = Server(cloudpacs_bin, tmp_path)
    sock, kind, _ = raw_associate(srv.port)
    assert kind == 2
    assert raw_echo(sock) == 0
    start = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    assert srv.proc.wait(timeout=40) == 0
    took = time.monotonic() - start
    sock.settimeout(5)
    assert sock.recv(10) == b"", "the association was closed"
    sock.close()
    assert srv.stop() == 0
    log = srv.log_text()
    assert "dicom.shutdown" in log and "serve.stopped" in log
    assert took < 30, took


# --- hostile peers ------------------------------------------------------------------

def expect_abort_or_close(sock):
    kind, body = read_pdu(sock)
    assert kind in (7, None), "got PDU type %r" % kind
    sock.close()
    return kind, body


def test_truncated_pdu(server):
    sock = connect(server.port)
    rq = associate_rq()
    sock.sendall(rq[:40])
    sock.close()
    assert_serving(server)


def test_oversized_pdu_length(server):
    sock, kind, _ = raw_associate(server.port)
    assert kind == 2
    sock.sendall(struct.pack(">BBI", 4, 0, 0x7FFFFFF0) + b"\0" * 64)
    kind, body = expect_abort_or_close(sock)
    assert kind == 7
    assert body[2] == 2 and body[3] == 6, "provider abort, invalid parameter"
    assert_serving(server)


def test_oversized_associate_rq(server):
    sock = connect(server.port)
    sock.sendall(struct.pack(">BBI", 1, 0, 0x7FFFFFF0) + b"\0" * 64)
    expect_abort_or_close(sock)
    assert_serving(server)


def test_wrong_pdu_type(server):
    sock = connect(server.port)
    sock.sendall(struct.pack(">BBI", 0x55, 0, 4) + b"\0" * 4)
    kind, _ = expect_abort_or_close(sock)
    assert kind == 7
    sock, kind, _ = raw_associate(server.port)
    sock.sendall(struct.pack(">BBI", 0x09, 0, 4) + b"\0" * 4)
    kind, body = expect_abort_or_close(sock)
    assert kind == 7 and body[3] == 1, "unrecognized PDU"
    assert_serving(server)


def test_garbage_after_handshake(server):
    sock, kind, _ = raw_associate(server.port)
    assert kind == 2
    sock.sendall(os.urandom(3000))
    expect_abort_or_close(sock)
    assert_serving(server)


def test_data_set_without_command(server):
    sock, kind, _ = raw_associate(server.port)
    assert kind == 2
    sock.sendall(pdata(1, b"\x08\x00\x18\x00\x02\x00\x00\x001\x00", command=False))
    kind, _ = expect_abort_or_close(sock)
    assert kind == 7
    assert_serving(server)


def test_silent_peer_closed_after_artim(server):
    sock = connect(server.port)
    start = time.monotonic()
    sock.settimeout(ARTIM_S + 15)
    assert sock.recv(1) == b""
    took = time.monotonic() - start
    assert ARTIM_S - 0.5 <= took <= ARTIM_S + 10, took
    sock.close()
    assert "dicom.assoc.artim" in wait_log(server, "dicom.assoc.artim")
    assert_serving(server)


def test_wrong_called_ae(server):
    sock, kind, body = raw_associate(server.port, called="NOTUS")
    assert kind == 3, kind
    assert tuple(body[1:4]) == (1, 1, 7), tuple(body[1:4])
    sock.close()
    log = wait_log(server, "dicom.assoc.rejected", "called_ae=NOTUS")
    assert "dicom.assoc.rejected" in log and "called_ae=NOTUS" in log
    assert_serving(server)


def test_unknown_calling_ae_refused(strict_server):
    sock, kind, body = raw_associate(strict_server.port, called="STRICT", calling="STRANGER")
    assert kind == 3, kind
    assert tuple(body[1:4]) == (1, 1, 3), tuple(body[1:4])
    sock.close()
    proc = echoscu(strict_server.port, "STRICT", "STRANGER")
    assert proc.returncode != 0
    assert_serving(strict_server, "STRICT", "KNOWN")
    assert_serving(strict_server, "STRICT", "ECHOONLY")


def test_store_not_authorized(strict_server):
    ct = PYDICOM_DATA / "test_files" / "CT_small.dcm"
    proc = subprocess.run(["storescu", "-v", "-aet", "ECHOONLY", "-aec", "STRICT", "127.0.0.1",
                           str(strict_server.port), str(ct)], capture_output=True,
                          env=DCMTK_ENV, timeout=60)
    out = (proc.stdout + proc.stderr).decode()
    assert "0x124" in out or "Not Authorized" in out, out
    assert "status=0x0124" in wait_log(strict_server, "status=0x0124")
    proc = subprocess.run(["storescu", "-aet", "KNOWN", "-aec", "STRICT", "127.0.0.1",
                           str(strict_server.port), str(ct)], capture_output=True,
                          env=DCMTK_ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


def test_association_limit(strict_server):
    socks = []
    try:
        for i in range(4):
            sock, kind, _ = raw_associate(strict_server.port, called="STRICT", calling="KNOWN")
            assert kind == 2
            socks.append(sock)
        sock, kind, body = raw_associate(strict_server.port, called="STRICT", calling="KNOWN")
        assert kind == 3
        assert tuple(body[1:4]) == (2, 3, 2), "transient, presentation, local limit"
        sock.close()
    finally:
        for sock in socks:
            raw_release(sock)
    time.sleep(0.5)
    assert_serving(strict_server, "STRICT", "KNOWN")
