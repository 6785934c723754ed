"""Identity over HTTP: sessions, idle expiry, lockout, stale profiles, and
a Redis that goes away and comes back, against `cloudpacs serve`.

Most tests run against a real redis-server the module starts itself on a
free loopback port (with an append-only file, so that sessions outlive its
restart) and hands to cloudpacs by CLOUDPACS_REDIS_URL; one runs on the
embedded default (no URL: cloudpacs starts a redis-server of its own in the
data directory) and checks that none of it is left once serve has stopped.
Users are made through the REST API with the service token. Only processes
started here are stopped, each by its own handle.
"""

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import SERVICE_TOKEN, api_call, api_ok

READY_TIMEOUT = 30
IDLE_S = 3
LOCK_AFTER = 3
PASSWORD = "Correct-horse-9"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of the test's own on 127.0.0.1, persisting to dir."""

    def __init__(self, tmp):
        self.dir = Path(tmp) / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--logfile", str(self.dir / "log")],
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


class AuthServer:
    """`cloudpacs serve --services web` with a service token; redis_url None: embedded."""

    def __init__(self, binary, tmp, redis_url=None, extra_env=None, services="web"):
        self.tmp = Path(tmp)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.data = self.tmp / "data"
        self.log = self.tmp / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
        env.update({
            "CLOUDPACS_DICOM_PORT": str(self.dicom_port),
            "CLOUDPACS_HTTP_PORT": str(self.http_port),
            "CLOUDPACS_DATA_DIR": str(self.data),
            "CLOUDPACS_HTTP_TOKEN": SERVICE_TOKEN,
        })
        if redis_url is not None:
            env["CLOUDPACS_REDIS_URL"] = redis_url
        env.update(extra_env or {})
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen([str(binary), "serve", "--services", services],
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=env)
        line = self._read_ready()
        assert "DICOMweb at http://127.0.0.1:%d/dicom-web" % self.http_port in line, (
            "web service did not start: %r\n%s" % (line, self.log_text()))
        self.base = "http://127.0.0.1:%d" % self.http_port

    def _read_ready(self):
        box = []

        def read():
            for _ in range(4):
                line = self.proc.stdout.readline().decode()
                box.append(line)
                if not line or "DICOMweb at" in line:
                    return
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(READY_TIMEOUT)
        return "".join(box)

    def log_text(self):
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


def make_user(base, code, username, roles, kind="hospital", parent_id=0):
    """An institution (made when new) and a user of it; (institution id, user id)."""
    st, insts, _ = api_call(base, "GET", "/api/institutions")
    assert st == 200, insts
    inst = next((i for i in insts if i["code"] == code), None)
    if inst is None:
        inst = api_ok(base, "POST", "/api/institutions",
                      {"parent_id": parent_id, "kind": kind, "code": code,
                       "name": "Institution " + code})
    user = api_ok(base, "POST", "/api/users",
                  {"username": username, "display_name": username,
                   "institution_id": inst["id"], "password": PASSWORD, "roles": roles})
    return inst["id"], user["id"]


def login(base, username, password=PASSWORD):
    """(status, answer) of POST /api/session."""
    st, body, hdrs = api_call(base, "POST", "/api/session",
                              {"username": username, "password": password}, token=None)
    return st, body, hdrs


def session_token(base, username):
    st, body, _ = login(base, username)
    assert st == 200, "login of %s: %d %r" % (username, st, body)
    return body["token"]


def me(base, token):
    return api_call(base, "GET", "/api/me", token=token)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(cloudpacs_bin, redis, tmp_path_factory):
    srv = AuthServer(cloudpacs_bin, tmp_path_factory.mktemp("authhttp"), redis.url, {
        "CLOUDPACS_AUTH_IDLE_SECONDS": str(IDLE_S),
        "CLOUDPACS_AUTH_LOCK_AFTER": str(LOCK_AFTER),
        "CLOUDPACS_AUTH_LOCK_MINUTES": "1",
    })
    yield srv
    assert srv.stop() == 0, srv.log_text()[-3000:]


def test_ready_line_names_redis_without_secret(server):
    log = server.log_text()
    assert "event=serve.auth_ready" in log or "serve.auth_ready" in log, log[-2000:]
    line = next(l for l in log.splitlines() if "serve.auth_ready" in l)
    assert "redis=url" in line, line
    assert "127.0.0.1" not in line and SERVICE_TOKEN not in line, line


def test_session_lifecycle(server):
    make_user(server.base, "HOSPA", "alice", ["technician"])
    token = session_token(server.base, "alice")
    assert token.startswith("cps_"), token
    st, body, _ = me(server.base, token)
    assert st == 200 and body["username"] == "alice", (st, body)
    assert "studies.read" in body["permissions"], body

    st, body, _ = api_call(server.base, "DELETE", "/api/session", token=token)
    assert st == 204, (st, body)
    st, body, _ = me(server.base, token)
    assert st == 401, "a session ended by logout still works: %d %r" % (st, body)


def test_anonymous_and_wrong_tokens(server):
    assert me(server.base, None)[0] == 401
    assert me(server.base, "cps_" + "A" * 43)[0] == 401
    assert me(server.base, SERVICE_TOKEN + "x")[0] == 401
    st, body, _ = api_call(server.base, "GET", "/api/health", token=None)
    assert st == 200 and body["redis"] == "ok", (st, body)


def test_idle_expiry(server):
    make_user(server.base, "HOSPA", "idler", ["technician"])
    token = session_token(server.base, "idler")
    # Use renews the idle timer: three uses over more than IDLE_S keep it alive.
    for _ in range(3):
        time.sleep(IDLE_S * 0.5)
        assert me(server.base, token)[0] == 200, "a session in use expired"
    time.sleep(IDLE_S + 1.5)
    st, body, _ = me(server.base, token)
    assert st == 401, "a session idle for %ds still works: %d %r" % (IDLE_S + 1, st, body)


def test_lockout_and_unlock(server):
    _, uid = make_user(server.base, "HOSPA", "bob", ["technician"])
    for i in range(LOCK_AFTER):
        st, body, _ = login(server.base, "bob", "Wrong-password-%d" % i)
        assert st == 401 and body["reason"] == "bad_credentials", (i, st, body)
    st, body, hdrs = login(server.base, "bob")
    assert st == 423 and body["reason"] == "locked", (
        "the right password after %d failures: %d %r" % (LOCK_AFTER, st, body))
    assert int(hdrs["Retry-After"]) > 0, dict(hdrs)

    api_ok(server.base, "POST", "/api/users/%d/unlock" % uid)
    st, body, _ = login(server.base, "bob")
    assert st == 200, "still locked after unlock: %d %r" % (st, body)


def test_role_change_seen_by_next_request(server):
    inst, uid = make_user(server.base, "HOSPA", "carol", ["technician"])
    token = session_token(server.base, "carol")
    st, body, _ = me(server.base, token)
    assert st == 200 and body["roles"] == ["technician"], body
    assert "studies.store" in body["permissions"], body

    api_ok(server.base, "PUT", "/api/users/%d/roles" % uid, {"roles": ["radiologist"]})
    st, body, _ = me(server.base, token)
    assert st == 200 and body["roles"] == ["radiologist"], (
        "the cached profile was not dropped: %r" % body)
    assert "studies.store" not in body["permissions"], body

    api_ok(server.base, "PATCH", "/api/users/%d" % uid, {"disabled": True})
    st, body, _ = me(server.base, token)
    assert st in (401, 403), "a disabled user's session still works: %d %r" % (st, body)


def test_metrics_need_metrics_read(server):
    make_user(server.base, "HOSPA", "dave", ["technician"])
    make_user(server.base, "SYSADM", "sysadm", ["system_admin"], kind="centre")
    st, _, _ = api_call(server.base, "GET", "/metrics", token=None)
    assert st == 401
    st, _, _ = api_call(server.base, "GET", "/metrics", token=session_token(server.base,
                                                                             "dave"))
    assert st == 403, "a technician read /metrics: %d" % st
    for token in (SERVICE_TOKEN, session_token(server.base, "sysadm")):
        st, _, _ = api_call(server.base, "GET", "/metrics", token=token)
        assert st == 200, st


def wait_status(fn, want, timeout=20):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = fn()
        if got[0] == want:
            return got
        time.sleep(0.25)
    return got


def test_redis_away_and_back(server, redis):
    make_user(server.base, "HOSPA", "erin", ["technician"])
    token = session_token(server.base, "erin")
    assert me(server.base, token)[0] == 200

    redis.stop()
    try:
        st, body, _ = wait_status(lambda: me(server.base, token), 503)
        assert st == 503, "Redis away, a session request got %d %r" % (st, body)
        st, body, _ = api_call(server.base, "GET", "/api/health", token=None)
        assert st == 503 and body["redis"] == "unavailable", (st, body)
        assert body["status"] == "degraded", body
        st, body, _ = login(server.base, "erin")
        assert st == 503, "Redis away, a login got %d %r" % (st, body)
    finally:
        redis.start()

    # The append-only file kept the session; cloudpacs reconnects by itself.
    st, body, _ = wait_status(lambda: me(server.base, token), 200)
    assert st == 200, "Redis back, the session got %d %r" % (st, body)
    st, body, _ = api_call(server.base, "GET", "/api/health", token=None)
    assert st == 200 and body["redis"] == "ok", (st, body)
    assert login(server.base, "erin")[0] == 200
    assert server.proc.poll() is None


def redis_processes_for(conf_dir):
    """Pids of processes whose command line names a file under conf_dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(conf_dir) in cmd and "redis" in cmd:
            pids.append(int(entry.name))
    return pids


def test_embedded_redis(cloudpacs_bin, tmp_path):
    srv = AuthServer(cloudpacs_bin, tmp_path)
    try:
        line = next(l for l in srv.log_text().splitlines() if "serve.auth_ready" in l)
        assert "redis=embedded" in line, line
        redis_dir = srv.data / "redis"
        assert redis_processes_for(redis_dir), "no redis-server runs for %s" % redis_dir
        mode = (redis_dir.stat().st_mode & 0o777)
        assert mode == 0o700, oct(mode)

        make_user(srv.base, "HOSPE", "frank", ["technician"])
        token = session_token(srv.base, "frank")
        assert me(srv.base, token)[0] == 200
        st, body, _ = api_call(srv.base, "GET", "/api/health", token=None)
        assert st == 200 and body["redis"] == "ok", (st, body)
    finally:
        rc = srv.stop()
    assert rc == 0, srv.log_text()[-3000:]
    left = redis_processes_for(srv.data / "redis")
    assert not left, "redis-server still running after serve stopped: %r" % left
