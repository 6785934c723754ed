"""SMB intake throughput: cloudpacs taking files off a share, beside smbclient.

Run by bench/smb_intake.sh. The files (bench/gen_studies.py output) sit in
the folder of a share served by a smbd of our own on a free loopback port
(configuration, passdb, lock, state, cache, pid and log directories in the
work directory; the system's Samba directories are not used). Measured, one
after the other, each repeated and the fastest run kept:

  smbclient_mget  `smbclient -c 'prompt off; recurse on; mget *'`: every
                  file copied off the share into a local folder (no fsync,
                  no parsing): the floor of reading the share.
  cloudpacs       `cloudpacs serve --services ingest` with one
                  [intake.bench] source (stable_seconds = 0, after = keep,
                  jobs = --jobs, 4 by default: files taken at once):
                  each file read over SMB in chunks through the archive
                  pipeline (parsed, blob fsynced, index row committed) and
                  recorded in the ledger. Timed from the source's
                  `intake.started` log line to the last ledger row.

Prints bench/README.md's `figure`, `ratio` and `goal` lines.
"""

import argparse
import datetime
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

USER = "root"
PASSWORD = "cp-bench-smb-5Kd"

# Reading a share through the archive pipeline (fsync and index per file)
# should reach at least this fraction of a plain copy's rate.
GOAL = 0.5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Smbd:
    def __init__(self, work, share):
        self.dir = work / "samba"
        self.port = free_port()
        for sub in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc", "binddns",
                    "usershares"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        d = self.dir
        self.conf = d / "smb.conf"
        self.conf.write_text(f"""[global]
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
[share]
    path = {share}
    read only = no
    force user = root
""")
        subprocess.run(["smbpasswd", "-c", str(self.conf), "-s", "-a", USER],
                       input=("%s\n%s\n" % (PASSWORD, PASSWORD)).encode(),
                       capture_output=True, check=True, timeout=30)
        self.pid = None

    def start(self):
        subprocess.run(["smbd", "-D", "-s", str(self.conf)], check=True, timeout=30)
        pidfile = self.dir / "pid" / "smbd.pid"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pidfile.exists() and port_open(self.port):
                self.pid = int(pidfile.read_text().split()[0])
                return
            time.sleep(0.05)
        sys.exit("smbd did not start")

    def stop(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and port_open(self.port):
            time.sleep(0.05)
        self.pid = None


def tree_size(root):
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run_mget(smbd, dest):
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir()
    start = time.monotonic()
    subprocess.run(["smbclient", "//127.0.0.1/share", "-p", str(smbd.port), "-s",
                    str(smbd.conf), "-U", "%s%%%s" % (USER, PASSWORD), "-c",
                    "prompt off; recurse on; lcd %s; mget *" % dest],
                   check=True, capture_output=True, timeout=3600)
    secs = time.monotonic() - start
    return secs, tree_size(dest)[0]


def log_time(log, event):
    for line in log.read_text(errors="replace").splitlines():
        if "event=" + event in line:
            stamp = line.split()[0]
            when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
            return when.replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def ledger(db):
    try:
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        row = con.execute("SELECT count(*), sum(outcome = 'stored'), max(time) "
                          "FROM intake_ledger WHERE source = 'bench'").fetchone()
        con.close()
        return row
    except sqlite3.Error:
        return (0, 0, None)


def run_cloudpacs(binary, smbd, work, files, jobs):
    data = work / "cp-data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir()
    conf = work / "cloudpacs.conf"
    conf.write_text("[intake.bench]\nurl = smb://127.0.0.1:%d/share\nuser = %s\n"
                    "password = %s\npoll_seconds = 1\nstable_seconds = 0\njobs = %d\n"
                    % (smbd.port, USER, PASSWORD, jobs))
    log = work / "cloudpacs.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
    env["CLOUDPACS_DATA_DIR"] = str(data)
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(binary), "serve", "--config", str(conf), "--services",
                                 "ingest"], stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + 3600
            row = (0, 0, None)
            while time.monotonic() < deadline:
                row = ledger(data / "index.sqlite")
                if row[0] >= files:
                    break
                if proc.poll() is not None:
                    sys.exit("cloudpacs exited: " + log.read_text()[-2000:])
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    started = log_time(log, "intake.started")
    if row[0] < files or started is None or row[2] is None:
        sys.exit("cloudpacs took %d of %d files" % (row[0], files))
    return row[2] / 1e6 - started, row[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cloudpacs", required=True)
    ap.add_argument("--share", required=True, help="the folder with the files")
    ap.add_argument("--work", required=True)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=4, help="the source's jobs key")
    args = ap.parse_args()
    work = Path(args.work)
    files, size = tree_size(args.share)
    mb = size / 1e6
    print("# %d files, %.1f MB on the share; cloudpacs jobs = %d" % (files, mb, args.jobs))

    smbd = Smbd(work, Path(args.share).resolve())
    smbd.start()
    try:
        mget, cp = [], []
        for _ in range(args.repeat):
            secs, copied = run_mget(smbd, work / "mget")
            if copied != files:
                sys.exit("smbclient copied %d of %d files" % (copied, files))
            mget.append(secs)
            secs, stored = run_cloudpacs(args.cloudpacs, smbd, work, files, args.jobs)
            if stored != files:
                sys.exit("cloudpacs stored %d of %d files" % (stored, files))
            cp.append(secs)
    finally:
        smbd.stop()

    print("# seconds: smbclient_mget %s, cloudpacs %s" % (
        " ".join("%.2f" % s for s in mget), " ".join("%.2f" % s for s in cp)))
    best_mget, best_cp = min(mget), min(cp)
    print("figure smb_intake.cloudpacs %.1f files/s" % (files / best_cp))
    print("figure smb_intake.smbclient_mget %.1f files/s" % (files / best_mget))
    print("figure smb_intake_mbs.cloudpacs %.1f MB/s" % (mb / best_cp))
    print("figure smb_intake_mbs.smbclient_mget %.1f MB/s" % (mb / best_mget))
    print("ratio smb_intake.cloudpacs_vs_smbclient_mget %.2f" % (best_mget / best_cp))
    print("goal smb_intake.cloudpacs_vs_smbclient_mget %.2f" % GOAL)


if __name__ == "__main__":
    main()
