#!/usr/bin/python3
"""A minimal C-STORE SCU for bench/ingest.sh: latencies, and memory under 50 associations.

PS3.8 9.3 (A-ASSOCIATE, P-DATA-TF, A-RELEASE) and PS3.7 9.3.1 (C-STORE),
over plain sockets with TCP_NODELAY, Implicit VR Little Endian only (what
gen_studies.py writes by default). Two modes:

  latency --port P --aec AE --files-from LIST [--count N]
      one association; each instance is timed from its command's first
      byte to its response; prints `latency_ms p50 p90 p99 max n`.
  hold --port P --aec AE --pid PID --file F --assocs K
      K associations each send half of the data set of F and stop there,
      so that the server holds K instances in flight at once; the server's
      VmRSS is read idle and then while they are held; then each finishes
      its instance. Prints `rss_kib idle held`, `stored ok/K`.

Any status other than 0000 (or B000 for a duplicate) exits 1.
"""

import argparse
import socket
import struct
import sys
import time
from pathlib import Path

IMPLICIT_LE = "1.2.840.10008.1.2"
OK_STATUSES = (0x0000, 0xB000)


def item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def element(group, elem, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return bytes(data)


def read_pdu(sock):
    kind, _, length = struct.unpack(">BBI", recv_exact(sock, 6))
    return kind, recv_exact(sock, length)


def file_dataset(path):
    """(sop class, sop instance uid, data set bytes) of a Part 10 file."""
    raw = Path(path).read_bytes()
    if raw[128:132] != b"DICM":
        raise ValueError("%s: not a Part 10 file" % path)
    meta_len = struct.unpack_from("<I", raw, 140)[0]
    meta_end = 144 + meta_len
    meta = {}
    pos = 144
    while pos < meta_end:
        group, elem, vr = struct.unpack_from("<HH2s", raw, pos)
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            length = struct.unpack_from("<I", raw, pos + 8)[0]
            start = pos + 12
        else:
            length = struct.unpack_from("<H", raw, pos + 6)[0]
            start = pos + 8
        meta[(group, elem)] = raw[start:start + length].rstrip(b"\0 ").decode()
        pos = start + length
    if meta.get((2, 0x10)) != IMPLICIT_LE:
        raise ValueError("%s: not Implicit VR Little Endian" % path)
    return meta[(2, 2)], meta[(2, 3)], raw[meta_end:]


class Association:
    def __init__(self, port, called, calling, sop_classes):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16)
        body += bytes(32) + item(0x10, b"1.2.840.10008.3.1.1.1")
        for n, abstract in enumerate(sop_classes):
            sub = item(0x30, abstract.encode()) + item(0x40, IMPLICIT_LE.encode())
            body += item(0x20, struct.pack(">BBBB", 2 * n + 1, 0, 0, 0) + sub)
        body += item(0x50, item(0x51, struct.pack(">I", 65536)) + item(0x52, b"1.2.3.4.5"))
        self.sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        kind, ac = read_pdu(self.sock)
        if kind != 2:
            raise ConnectionError("association refused (PDU type %d)" % kind)
        self.contexts = {}
        self.chunk = 16384 - 6
        pos = 68
        while pos + 4 <= len(ac):
            kind, _, length = struct.unpack_from(">BBH", ac, pos)
            if kind == 0x21 and ac[pos + 6] == 0:
                self.contexts[sop_classes[(ac[pos + 4] - 1) // 2]] = ac[pos + 4]
            if kind == 0x50:
                self._user_info(ac[pos + 4:pos + 4 + length])
            pos += 4 + length
        self.message_id = 0

    def _user_info(self, data):
        pos = 0
        while pos + 4 <= len(data):
            kind, _, length = struct.unpack_from(">BBH", data, pos)
            if kind == 0x51:
                limit = struct.unpack_from(">I", data, pos + 4)[0]
                if limit:
                    self.chunk = min(limit, 1 << 20) - 6
            pos += 4 + length

    def _pdata(self, pc_id, payload, command, last):
        mch = (1 if command else 0) | (2 if last else 0)
        pdv = struct.pack(">IBB", len(payload) + 2, pc_id, mch) + payload
        return struct.pack(">BBI", 4, 0, len(pdv)) + pdv

    def send_command(self, sop_class, uid):
        self.message_id = self.message_id % 65535 + 1
        rest = (element(0, 0x0002, sop_class.encode())
                + element(0, 0x0100, struct.pack("<H", 1))
                + element(0, 0x0110, struct.pack("<H", self.message_id))
                + element(0, 0x0700, struct.pack("<H", 0))
                + element(0, 0x0800, struct.pack("<H", 0))
                + element(0, 0x1000, uid.encode()))
        cmd = element(0, 0x0000, struct.pack("<I", len(rest))) + rest
        self.sock.sendall(self._pdata(self.contexts[sop_class], cmd, True, True))

    def send_data(self, sop_class, data, start, end, final):
        pc_id = self.contexts[sop_class]
        view = memoryview(data)
        for off in range(start, end, self.chunk):
            stop = min(off + self.chunk, end)
            last = final and stop >= end
            self.sock.sendall(self._pdata(pc_id, view[off:stop], False, last))

    def status(self):
        kind, body = read_pdu(self.sock)
        if kind != 4:
            raise ConnectionError("PDU type %d instead of a response" % kind)
        payload = body[6:]
        pos = 0
        while pos + 8 <= len(payload):
            group, elem, length = struct.unpack_from("<HHI", payload, pos)
            if (group, elem) == (0, 0x0900):
                return struct.unpack_from("<H", payload, pos + 8)[0]
            pos += 8 + length
        return None

    def store(self, sop_class, uid, data):
        self.send_command(sop_class, uid)
        self.send_data(sop_class, data, 0, len(data), True)
        return self.status()

    def release(self):
        self.sock.sendall(struct.pack(">BBIL", 5, 0, 4, 0))
        try:
            read_pdu(self.sock)
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def cmd_latency(args):
    paths = [line.strip() for line in open(args.files_from) if line.strip()][:args.count]
    instances = [file_dataset(p) for p in paths]
    classes = sorted({c for c, _, _ in instances})
    assoc = Association(args.port, args.aec, "LATENCY", classes)
    times = []
    for sop_class, uid, data in instances:
        start = time.perf_counter()
        status = assoc.store(sop_class, uid, data)
        times.append((time.perf_counter() - start) * 1000.0)
        if status not in OK_STATUSES:
            print("status %04x for %s" % (status, uid), file=sys.stderr)
            return 1
    assoc.release()
    print("latency_ms %.2f %.2f %.2f %.2f %d" % (
        percentile(times, 50), percentile(times, 90), percentile(times, 99), max(times),
        len(times)))
    return 0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_hold(args):
    sop_class, uid, data = file_dataset(args.file)
    idle = rss_kib(args.pid)
    assocs = []
    half = len(data) // 2
    for i in range(args.assocs):
        assoc = Association(args.port, args.aec, "HOLD%d" % i, [sop_class])
        new_uid = "%s.%d" % (uid[:60], i + 1)
        assoc.data = patched(data, uid, new_uid)
        assoc.send_command(sop_class, new_uid)
        assoc.send_data(sop_class, assoc.data, 0, half, False)
        assocs.append(assoc)
    time.sleep(1.0)
    held = rss_kib(args.pid)
    ok = 0
    for assoc in assocs:
        assoc.send_data(sop_class, assoc.data, half, len(assoc.data), True)
    for assoc in assocs:
        if assoc.status() in OK_STATUSES:
            ok += 1
        assoc.release()
    print("rss_kib %d %d" % (idle, held))
    print("stored %d/%d" % (ok, args.assocs))
    return 0 if ok == args.assocs else 1


def patched(data, uid, new_uid):
    """The data set with its SOP Instance UID (0008,0018) replaced."""
    old = uid.encode() + (b"\0" if len(uid) % 2 else b"")
    new = new_uid.encode() + (b"\0" if len(new_uid) % 2 else b"")
    head = struct.pack("<HHI", 0x0008, 0x0018, len(old))
    at = data.index(head + old)
    return (data[:at] + struct.pack("<HHI", 0x0008, 0x0018, len(new)) + new
            + data[at + len(head) + len(old):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--files-from", required=True)
    lat.add_argument("--count", type=int, default=100)
    hold = sub.add_parser("hold")
    hold.add_argument("--port", type=int, required=True)
    hold.add_argument("--pid", type=int, required=True)
    hold.add_argument("--file", required=True)
    hold.add_argument("--assocs", type=int, default=50)
    for mode in (lat, hold):
        mode.add_argument("--aec", default="ANY-SCP", help="the called AE title")
    args = parser.parse_args()
    return cmd_latency(args) if args.mode == "latency" else cmd_hold(args)


if __name__ == "__main__":
    sys.exit(main())
