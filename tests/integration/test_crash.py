"""Crash safety of C-STORE: `cloudpacs serve` killed with SIGKILL mid-ingest.

DESIGN.md, "Durability rules" and docs/storage.md: an instance is
acknowledged (C-STORE status 0000) only once its blob is fsynced, renamed,
its directory fsynced and its index row committed, so a crash at any moment
loses nothing that was acknowledged, and the start-up repair removes what a
crash left half done.

The test generates a small study set (bench/gen_studies.py), then, over many
cycles, starts the server on one data directory, lets several senders store
concurrently, and kills the server with SIGKILL at a random moment. The
senders are a minimal C-STORE client written here (PS3.8 upper layer, PS3.7
C-STORE), which knows exactly which SOP Instance UIDs got status 0000.
After every restart each acknowledged instance must be in the index
(DATA/index.sqlite, table `instance`) with a blob that exists; at the end
every such blob is read with pydicom and must carry the same SOP Instance
UID and the same pixel data as the original, and after a clean stop and
start no temporary (".tmp-" name) remains in the blob store.
"""

import os
import random
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pydicom
import pytest

from conftest import REPO_ROOT

READY_TIMEOUT = 20
CYCLES = 14
SENDERS = 4
KILL_AFTER = (0.3, 1.5)
IMPLICIT_LE = "1.2.840.10008.1.2"
PDV_CHUNK = 16000
TMP_MARK = ".tmp-"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CrashServer:
    """`cloudpacs serve` on one data directory, started again after each kill."""

    def __init__(self, binary, tmp):
        self.binary = binary
        self.data = Path(tmp) / "data"
        self.log = Path(tmp) / "serve.log"
        self.port = free_port()
        self.proc = None
        self.starts = 0

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
        env.update({
            "CLOUDPACS_DICOM_PORT": str(self.port),
            "CLOUDPACS_DATA_DIR": str(self.data),
            "CLOUDPACS_DICOM_ARTIM_TIMEOUT": "5",
            "CLOUDPACS_DICOM_IDLE_TIMEOUT": "30",
        })
        with open(self.log, "ab") as err:
            err.write(b"--- start %d\n" % self.starts)
            self.proc = subprocess.Popen(
                [str(self.binary), "serve", "--services", "dicom"],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env)
        self.starts += 1
        box = []

        def read_until_ready():
            for raw in self.proc.stdout:
                box.append(raw.decode(errors="replace"))
                if "DICOM service ready" in box[-1]:
                    return

        reader = threading.Thread(target=read_until_ready, daemon=True)
        reader.start()
        reader.join(READY_TIMEOUT)
        line = "".join(box)
        if "DICOM service ready" not in line:
            self.kill()
            pytest.fail("server did not start: %r\n%s" % (line, self.tail()))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc is not None:
            self.proc.stdout.close()

    def stop(self):
        """SIGTERM and a clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("server did not stop on SIGTERM")
        self.proc.stdout.close()
        return rc

    def tail(self):
        return self.log.read_text(errors="replace")[-3000:]


# --- a minimal C-STORE SCU (PS3.8 9.3, PS3.7 9.3.1) ---------------------------

def item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(calling, sop_classes):
    body = struct.pack(">HH", 1, 0) + b"CLOUDPACS".ljust(16) + calling.encode().ljust(16)
    body += bytes(32) + item(0x10, b"1.2.840.10008.3.1.1.1")
    for n, abstract in enumerate(sop_classes):
        sub = item(0x30, abstract.encode()) + item(0x40, IMPLICIT_LE.encode())
        body += item(0x20, struct.pack(">BBBB", 2 * n + 1, 0, 0, 0) + sub)
    user = item(0x51, struct.pack(">I", 65536)) + item(0x52, b"1.2.3.4.5")
    body += item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def element(group, elem, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def store_command(sop_class, sop_instance, message_id):
    rest = (element(0, 0x0002, sop_class.encode()) + element(0, 0x0100, struct.pack("<H", 1))
            + element(0, 0x0110, struct.pack("<H", message_id))
            + element(0, 0x0700, struct.pack("<H", 0))
            + element(0, 0x0800, struct.pack("<H", 0))
            + element(0, 0x1000, sop_instance.encode()))
    return element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def pdata(pc_id, payload, command, last):
    mch = (1 if command else 0) | (2 if last else 0)
    pdv = struct.pack(">IBB", len(payload) + 2, pc_id, mch) + payload
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_pdu(sock):
    kind, _, length = struct.unpack(">BBI", recv_exact(sock, 6))
    return kind, recv_exact(sock, length)


def accepted_contexts(body, sop_classes):
    """{sop class: context id} of the contexts the A-ASSOCIATE-AC accepted."""
    out = {}
    pos = 68
    while pos + 4 <= len(body):
        kind, _, length = struct.unpack_from(">BBH", body, pos)
        if kind == 0x21 and body[pos + 6] == 0:
            pc_id = body[pos + 4]
            out[sop_classes[(pc_id - 1) // 2]] = pc_id
        pos += 4 + length
    return out


def command_status(body):
    payload = body[6:]
    pos = 0
    while pos + 8 <= len(payload):
        group, elem, length = struct.unpack_from("<HHI", payload, pos)
        if (group, elem) == (0, 0x0900):
            return struct.unpack_from("<H", payload, pos + 8)[0]
        pos += 8 + length
    return None


def dataset_bytes(path):
    """The data set after the File Meta Information, as it is in the file."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM"
    group_len = struct.unpack_from("<I", raw, 132 + 8)[0]
    return raw[132 + 12 + group_len:]


def variant(data, uid, n):
    """The data set with a SOP Instance UID of the same length, new for each n.

    A few hundred generated files keep the senders busy through every
    cycle: variant n > 0 of an instance differs only in (0008,0018), whose
    last digits become n (same length, so no length field changes).
    """
    if n == 0:
        return data, uid
    new_uid = uid[:-6] + "9%05d" % n
    raw = uid.encode() + (b"\0" if len(uid) % 2 else b"")
    rep = new_uid.encode() + (b"\0" if len(uid) % 2 else b"")
    head = struct.pack("<HHI", 0x0008, 0x0018, len(raw))
    at = data.index(head + raw)
    return data[:at] + head + rep + data[at + len(head) + len(raw):], new_uid


class Sender:
    """Stores its instances, round after round; remembers which got status 0000."""

    def __init__(self, index, instances, sop_classes):
        self.name = "CRASH%d" % index
        self.index = index
        self.instances = instances
        self.sop_classes = sop_classes
        self.next = 0
        self.acked = {}
        self.other = []

    def current(self):
        path, sop_class, uid = self.instances[self.next % len(self.instances)]
        data = dataset_bytes(path)
        rnd = self.next // len(self.instances)
        data, uid = variant(data, uid, rnd * 10 + self.index if rnd else 0)
        return path, sop_class, uid, data

    def run(self, port, stop):
        """Associates and stores until the server goes away or stop is set."""
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(associate_rq(self.name, self.sop_classes))
            kind, body = read_pdu(sock)
            if kind != 2:
                return
            contexts = accepted_contexts(body, self.sop_classes)
            message_id = 1
            while not stop.is_set():
                path, sop_class, uid, data = self.current()
                pc_id = contexts[sop_class]
                sock.sendall(pdata(pc_id, store_command(sop_class, uid, message_id),
                                   True, True))
                for off in range(0, len(data), PDV_CHUNK):
                    last = off + PDV_CHUNK >= len(data)
                    sock.sendall(pdata(pc_id, data[off:off + PDV_CHUNK], False, last))
                kind, body = read_pdu(sock)
                if kind != 4:
                    return
                status = command_status(body)
                if status == 0:
                    self.acked[uid] = path
                else:
                    self.other.append((uid, status))
                self.next += 1
                message_id = message_id % 65535 + 1
            sock.sendall(struct.pack(">BBIL", 5, 0, 4, 0))
            read_pdu(sock)
        except (OSError, ConnectionError, struct.error):
            return
        finally:
            sock.close()


# --- the study set and the checks ------------------------------------------------

def generate(out):
    proc = subprocess.run(
        ["/usr/bin/python3", str(REPO_ROOT / "bench" / "gen_studies.py"), "--out", str(out),
         "--ct", "2", "--slices", "80", "--mr", "2", "--mr-slices", "12", "--cr", "20",
         "--size", "small", "--seed", "7", "--quiet"],
        capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    instances = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(Path(out).rglob("*.dcm")):
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            assert str(ds.file_meta.TransferSyntaxUID) == IMPLICIT_LE
            instances[str(ds.SOPInstanceUID)] = (path, str(ds.SOPClassUID))
    return instances


def indexed_blobs(data):
    """{sop uid: blob key} of every row in the instance table."""
    db = sqlite3.connect("file:%s?mode=ro" % (data / "index.sqlite"), uri=True)
    try:
        return dict(db.execute("SELECT sop_uid, blob_key FROM instance"))
    finally:
        db.close()


def blob_path(data, key):
    path = data / "blobs" / key
    return path if path.exists() else data / key


def temporaries(data):
    return [p for p in (data / "blobs").rglob("*") if TMP_MARK in p.name]


def check_acknowledged(data, acked, cycle):
    rows = indexed_blobs(data)
    missing = sorted(set(acked) - set(rows))
    assert not missing, "cycle %d: %d acknowledged instances not indexed, e.g. %s" % (
        cycle, len(missing), missing[:3])
    gone = [uid for uid in acked if not blob_path(data, rows[uid]).is_file()]
    assert not gone, "cycle %d: indexed blobs missing: %s" % (cycle, gone[:3])
    return rows


def all_acked(senders):
    out = {}
    for s in senders:
        out.update(s.acked)
    return out


def test_sigkill_during_concurrent_stores(cloudpacs_bin, tmp_path):
    started = time.monotonic()
    instances = generate(tmp_path / "studies")
    assert len(instances) >= 200, len(instances)
    sop_classes = sorted({cls for _, cls in instances.values()})
    items = [(path, cls, uid) for uid, (path, cls) in instances.items()]
    random.Random(11).shuffle(items)
    senders = [Sender(i, items[i::SENDERS], sop_classes) for i in range(SENDERS)]

    rng = random.Random(int(os.environ.get("CLOUDPACS_CRASH_SEED", "5")))
    server = CrashServer(cloudpacs_bin, tmp_path)
    kills = 0
    try:
        for cycle in range(CYCLES):
            server.start()
            check_acknowledged(server.data, all_acked(senders), cycle)
            stop = threading.Event()
            threads = [threading.Thread(target=s.run, args=(server.port, stop))
                       for s in senders]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*KILL_AFTER))
            server.kill()
            kills += 1
            stop.set()
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a sender hung after the kill"

        server.start()
        acked = all_acked(senders)
        rows = check_acknowledged(server.data, acked, CYCLES)
        assert server.stop() == 0, server.tail()
        server.start()
        assert server.stop() == 0, server.tail()
    finally:
        server.kill()

    others = [o for s in senders for o in s.other]
    assert not others, "unexpected statuses: %s" % others[:5]
    assert len(acked) > 0
    assert not temporaries(server.data), temporaries(server.data)[:5]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        originals = {}
        for uid, path in sorted(acked.items()):
            stored = pydicom.dcmread(str(blob_path(server.data, rows[uid])))
            if path not in originals:
                originals[path] = pydicom.dcmread(str(path)).PixelData
            assert str(stored.SOPInstanceUID) == uid
            assert stored.PixelData == originals[path], uid
    log = server.log.read_text(errors="replace")
    cut_short = re.findall(r"event=archive\.repair temporaries=(\d+) reindexed=(\d+)", log)
    assert sum(int(t) + int(r) for t, r in cut_short) > 0, "no kill landed mid-store"
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in log, log[-3000:]
    print("%d kills, %d instances acknowledged (%d files), %.1f s"
          % (kills, len(acked), len(instances), time.monotonic() - started), file=sys.stderr)
