"""The admin console at /, in a real browser.

Builds nothing: it expects the console's build in web/dist (scripts/console.sh,
which scripts/test.sh runs before these tests) and fails with that advice when
it is absent. Creates with the CLI, in a temporary data directory, a reading
centre, a system admin, an admin of the centre and an audit admin; starts
`cloudpacs serve --services web` on free ports with the console from web/dist;
and has tests/browser/console.mjs drive headless Debian Chromium
(playwright-core): the system admin signs in (one wrong password first: the
form shows the API's message), creates a clinic under the centre and a
radiologist in the centre, creates and revokes an API token, adds and removes
an application entity, switches to English; the centre's admin records the
radiologist's qualifications and a contract with the clinic; then, on a
phone-sized screen, the audit admin (the system admin may not read the audit
trail) finds the institution_created and user_created records those actions
made, filters, verifies the chain and fetches the export. Afterwards the CLI
must list the clinic under the centre and the radiologist with that role.

A second server ([auth] mfa_admins = true, lock_after = 2) checks the rest of
signing in: a disabled user is told so, a technician is locked out by wrong
passwords, a security admin enrols a TOTP second factor at first sign-in,
unlocks the technician from the console and grants them a second role, and
signs in again with a code.

Needs: Debian's chromium (scripts/deps.sh --test), node and npm (the browser
test's playwright-core is installed with `npm ci` in tests/browser when
missing). Prints where the screenshots went.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO_ROOT

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CONSOLE_DIR = REPO_ROOT / "web" / "dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
READY_TIMEOUT = 30
BROWSER_TIMEOUT = 300
CLI_TIMEOUT = 60

CENTRE = "CENTRE-T"
CLINIC = "CLINIC-T1"
RADIOLOGIST = "wang.rad"
ADMIN = ("sysadmin", "Console-Admin-Pass-1!")
AUDITOR = ("auditor", "Console-Audit-Pass-1!")
INST_ADMIN = ("centre.admin", "Console-Centre-Pass-1!")
SECURITY = ("secadmin", "Console-Security-Pass-1!")
TECH = ("tech.li", "Console-Tech-Pass-1!")
DISABLED = ("tech.gone", "Console-Gone-Pass-1!")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_console():
    if not (CONSOLE_DIR / "index.html").is_file():
        pytest.fail("the admin console is not built: %s/index.html is missing; build it with "
                    "scripts/console.sh (scripts/test.sh does before the integration tests)"
                    % CONSOLE_DIR, pytrace=False)


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


class Site:
    """A data directory set up with the CLI, and `cloudpacs serve` on it."""

    def __init__(self, binary, tmp, **settings):
        self.binary = str(binary)
        self.tmp = Path(tmp)
        self.http_port = free_port()
        self.log = self.tmp / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPACS_")}
        self.env.update({
            "CLOUDPACS_DICOM_PORT": str(free_port()),
            "CLOUDPACS_HTTP_PORT": str(self.http_port),
            "CLOUDPACS_DATA_DIR": str(self.tmp / "data"),
            "CLOUDPACS_HTTP_CONSOLE_DIR": str(CONSOLE_DIR),
        })
        self.env.update({"CLOUDPACS_" + k.upper(): v for k, v in settings.items()})
        self.proc = None
        self.err = None
        self.base = "http://127.0.0.1:%d/" % self.http_port

    def cli(self, *args, stdin=None):
        proc = subprocess.run([self.binary] + list(args), input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.env, cwd=self.tmp,
                              timeout=CLI_TIMEOUT)
        assert proc.returncode == 0, "cloudpacs %s: exit %d\n%s" % (
            " ".join(args), proc.returncode, proc.stderr.decode(errors="replace"))
        return proc.stdout.decode()

    def start(self):
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen([self.binary, "serve", "--services", "web"],
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.tmp)
        line = self._read_line()
        assert "http://127.0.0.1:%d/" % self.http_port in line and "console at /" in line, (
            "the web service did not start with the console: %r\n%s"
            % (line, self.log.read_text(errors="replace")[-3000:]))

    def _read_line(self):
        box = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline().decode()),
                             daemon=True)
        t.start()
        t.join(READY_TIMEOUT)
        return box[0] if box else ""

    def stop(self):
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def site(cloudpacs_bin, tmp_path_factory):
    require_console()
    require_browser()
    s = Site(cloudpacs_bin, tmp_path_factory.mktemp("console"))
    s.cli("institution", "add", "--code", CENTRE, "--name", "第一阅片中心", "--kind", "centre")
    for (name, password), role, display in ((ADMIN, "system_admin", "系统管理员"),
                                            (AUDITOR, "audit_admin", "审计管理员"),
                                            (INST_ADMIN, "institution_admin", "中心管理员")):
        s.cli("user", "add", name, "--institution", CENTRE, "--roles", role,
              "--name", display, "--password-stdin", stdin=(password + "\n").encode())
    s.start()
    yield s
    assert s.stop() == 0, s.log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def mfa_site(cloudpacs_bin, tmp_path_factory):
    """Admins must enrol a second factor; two wrong passwords lock an account."""
    require_console()
    require_browser()
    s = Site(cloudpacs_bin, tmp_path_factory.mktemp("console-mfa"), auth_mfa_admins="true",
             auth_lock_after="2")
    s.cli("institution", "add", "--code", CENTRE, "--name", "第一阅片中心", "--kind", "centre")
    for (name, password), role in ((SECURITY, "security_admin"), (TECH, "technician"),
                                   (DISABLED, "technician")):
        s.cli("user", "add", name, "--institution", CENTRE, "--roles", role,
              "--password-stdin", stdin=(password + "\n").encode())
    s.cli("user", "disable", DISABLED[0])
    s.start()
    yield s
    assert s.stop() == 0, s.log.read_text(errors="replace")[-3000:]


def run_driver(tmp_path, **settings):
    """Runs tests/browser/console.mjs with settings; fails with its output."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    log = tmp_path / "browser.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONSOLE_URL", "MFA_URL")}
    env.update(settings, CHROMIUM=CHROMIUM, SCREENSHOT_DIR=str(shots), CONSOLE_LOG=str(log))
    proc = subprocess.run(["node", "--test", "console.mjs"], cwd=BROWSER_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=BROWSER_TIMEOUT)
    out = proc.stdout.decode(errors="replace")
    print("screenshots in %s" % shots)
    print(out)
    assert proc.returncode == 0, "the console test failed (screenshots in %s)\n%s\n%s" % (
        shots, out[-6000:], log.read_text(errors="replace")[-3000:] if log.exists() else "")
    assert "# pass 0\n" not in out, out


def test_console_files(site):
    """index.html at / (and for any path the API and viewer do not take), its assets."""
    with urllib.request.urlopen(site.base, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/html")
        page = resp.read().decode()
    assert '<div id="app">' in page
    assets = [p for p in page.split('"') if p.startswith("/assets/")]
    assert any(p.endswith(".js") for p in assets), page
    assert any(p.endswith(".css") for p in assets), page
    for path in assets:
        with urllib.request.urlopen(site.base.rstrip("/") + path, timeout=30) as resp:
            assert resp.status == 200, path
            assert resp.read(), path
    with urllib.request.urlopen(site.base + "some/client/route", timeout=30) as resp:
        assert b'<div id="app">' in resp.read()


def test_console_in_browser(site, tmp_path):
    run_driver(tmp_path, CONSOLE_URL=site.base,
               ADMIN_USER=ADMIN[0], ADMIN_PASSWORD=ADMIN[1],
               AUDITOR_USER=AUDITOR[0], AUDITOR_PASSWORD=AUDITOR[1],
               INST_ADMIN_USER=INST_ADMIN[0], INST_ADMIN_PASSWORD=INST_ADMIN[1],
               CENTRE_CODE=CENTRE, CLINIC_CODE=CLINIC, RADIOLOGIST_USER=RADIOLOGIST)

    # What the browser did, as the directory has it.
    institutions = {i["code"]: i for i in json.loads(site.cli("institution", "list", "--json"))}
    assert CLINIC in institutions, institutions
    assert institutions[CLINIC]["parent_id"] == institutions[CENTRE]["id"]
    assert institutions[CLINIC]["kind"] == "clinic"
    users = {u["username"]: u for u in json.loads(site.cli("user", "list", "--json"))}
    assert RADIOLOGIST in users, users
    assert users[RADIOLOGIST]["roles"] == ["radiologist"]
    assert users[RADIOLOGIST]["institution_id"] == institutions[CENTRE]["id"]


def test_console_second_factor(mfa_site, tmp_path):
    run_driver(tmp_path, MFA_URL=mfa_site.base,
               SECURITY_USER=SECURITY[0], SECURITY_PASSWORD=SECURITY[1],
               TECH_USER=TECH[0], TECH_PASSWORD=TECH[1],
               DISABLED_USER=DISABLED[0], DISABLED_PASSWORD=DISABLED[1])
    users = {u["username"]: u for u in json.loads(mfa_site.cli("user", "list", "--json"))}
    assert users[SECURITY[0]]["totp_enabled"] is True, users[SECURITY[0]]
    assert sorted(users[TECH[0]]["roles"]) == ["reviewer", "technician"], users[TECH[0]]
