"""Shared fixtures for the integration tests of the `cloudpacs` binary.

The tests drive the real binary, never the library: they find it (env
CLOUDPACS_BIN, else $CLOUDPACS_BUILD_ROOT/src/cli/cloudpacs, else
build/src/cli/cloudpacs under the repository root) and fail, not skip, when
it is absent. Reference readers are pydicom (Debian's python3-pydicom, run
with /usr/bin/python3) and DCMTK.

Run: /usr/bin/python3 -m pytest tests/integration
"""

import os
import re
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest

from jsoncompare import load_json

REPO_ROOT = Path(__file__).resolve().parents[2]
PYDICOM_DATA = Path(pydicom.__file__).resolve().parent / "data"
PYDICOM_DIRS = ("test_files", "charset_files")

# Files in pydicom's data directories that are not DICOM.
NON_DICOM_SUFFIXES = {".txt", ".py", ".pyc", ".json", ".gz", ".bz2", ".dump", ".md"}

# Names that say the file is malformed on purpose.
MALFORMED_MARKERS = ("truncated", "bad", "no_meta", "too_short", "invalid")

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:", "MemorySanitizer")
TAG_RE = re.compile(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)")
RUN_TIMEOUT = 60

# The service token the web tests give `cloudpacs serve` (CLOUDPACS_HTTP_TOKEN):
# every web route but the static files, POST /api/session and /api/health
# needs a principal, and this one has every right.
SERVICE_TOKEN = "cloudpacs-test-service-token-7Jq2xW9v"


def bearer(token=SERVICE_TOKEN):
    """The Authorization header for a token."""
    return {"Authorization": "Bearer " + token}


def api_call(base, method, path, body=None, token=SERVICE_TOKEN, headers=None):
    """(status, parsed JSON or None, headers) of a REST API call (docs/api.md).

    base is "http://host:port"; token None sends no Authorization.
    """
    import json
    import urllib.error
    import urllib.request

    hdrs = dict(headers or {})
    if token is not None:
        hdrs.update(bearer(token))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw, rh = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, rh = e.code, e.read(), e.headers
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, rh


def api_ok(base, method, path, body=None, token=SERVICE_TOKEN, want=(200, 201, 204)):
    """api_call that must succeed; returns the parsed answer."""
    status, parsed, _ = api_call(base, method, path, body, token)
    assert status in want, "%s %s: %d %r" % (method, path, status, parsed)
    return parsed


def find_cloudpacs():
    """The path of the binary, or None with the places looked at."""
    candidates = []
    if os.environ.get("CLOUDPACS_BIN"):
        candidates.append(Path(os.environ["CLOUDPACS_BIN"]))
    else:
        if os.environ.get("CLOUDPACS_BUILD_ROOT"):
            candidates.append(Path(os.environ["CLOUDPACS_BUILD_ROOT"]) / "src/cli/cloudpacs")
        candidates.append(REPO_ROOT / "build/src/cli/cloudpacs")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path, candidates
    return None, candidates


@pytest.fixture(scope="session")
def cloudpacs_bin():
    path, looked = find_cloudpacs()
    if path is None:
        pytest.fail("cloudpacs binary not found (looked at %s); build it with "
                    "`meson setup build && ninja -C build` or set CLOUDPACS_BIN"
                    % ", ".join(str(p) for p in looked), pytrace=False)
    return path


def run_cloudpacs(binary, args, timeout=RUN_TIMEOUT, cwd=None):
    """Runs the binary; returns the CompletedProcess (bytes out and err)."""
    return subprocess.run([str(binary)] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=timeout, cwd=cwd)


def assert_no_crash(proc, what=""):
    """No signal, no exit code of a killed process, no sanitizer report."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode >= 0, "%s killed by signal %d\n%s" % (what, -proc.returncode, err)
    assert proc.returncode < 128, "%s exit %d\n%s" % (what, proc.returncode, err)
    for marker in SANITIZER_MARKERS:
        assert marker not in err, "%s sanitizer report:\n%s" % (what, err[:4000])


def assert_malformed_message(proc, what=""):
    """Exit 3, and stderr names a byte offset and a (gggg,eeee) tag."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 3, "%s: exit %d, want 3\nstderr: %s" % (what, proc.returncode, err)
    assert "offset" in err.lower(), "%s: stderr names no offset: %r" % (what, err)
    assert TAG_RE.search(err), "%s: stderr names no (gggg,eeee) tag: %r" % (what, err)


@pytest.fixture(scope="session")
def run(cloudpacs_bin):
    def _run(*args, **kw):
        proc = run_cloudpacs(cloudpacs_bin, args, **kw)
        assert_no_crash(proc, "cloudpacs " + " ".join(str(a) for a in args))
        return proc
    return _run


# --- pydicom's test files ----------------------------------------------------

def _looks_like_dicom(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def pydicom_files():
    """(id, path) for every DICOM file in pydicom's test data, sorted.

    All *.dcm files (some have no preamble on purpose), and the files without
    an extension that carry the DICM magic (DICOMDIR and the images it
    indexes). Text, JSON, dumps and compressed archives are left out by
    name; so are extensionless files without the magic (README).
    """
    found = []
    for sub in PYDICOM_DIRS:
        for path in sorted((PYDICOM_DATA / sub).rglob("*")):
            if not path.is_file() or path.suffix.lower() in NON_DICOM_SUFFIXES:
                continue
            if "__pycache__" in path.parts:
                continue
            if path.suffix.lower() == ".dcm" or (path.suffix == "" and _looks_like_dicom(path)):
                found.append((str(path.relative_to(PYDICOM_DATA)), path))
    return found


def is_malformed_name(file_id):
    name = Path(file_id).name.lower()
    return any(marker in name for marker in MALFORMED_MARKERS)


def read_pydicom(path):
    """(dataset or None, exception or None, [warning texts])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(str(path), force=True)
            exc = None
        except Exception as e:  # recorded, not raised: pydicom is the reference
            ds, exc = None, e
    texts = [str(w.message) for w in caught
             if "DicomDir' class is deprecated" not in str(w.message)]
    return ds, exc, texts


def pytest_generate_tests(metafunc):
    """Parametrises `pydicom_file` over every file, with the module's xfails.

    A test module may define KNOWN_FAILURES = {file id: reason}; those cases
    are marked xfail(strict=True), so they flip to a failure once fixed.
    """
    if "pydicom_file" not in metafunc.fixturenames:
        return
    known = getattr(metafunc.module, "KNOWN_FAILURES", {})
    params = []
    for file_id, path in pydicom_files():
        marks = []
        if file_id in known:
            marks.append(pytest.mark.xfail(strict=True, reason=known[file_id]))
        params.append(pytest.param(path, id=file_id, marks=marks))
    metafunc.parametrize("pydicom_file", params)


class DumpResult:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr.decode("utf-8", "replace")
        self.proc = proc
        self.json = None
        self.json_error = None
        try:
            self.json = load_json(proc.stdout)
        except (ValueError, UnicodeDecodeError) as exc:
            self.json_error = exc


@pytest.fixture(scope="session")
def dump_json(cloudpacs_bin):
    """cloudpacs dump --json FILE, run once per file for the whole session."""
    cache = {}

    def _dump(path, *extra):
        key = (str(path),) + tuple(extra)
        if key not in cache:
            proc = run_cloudpacs(cloudpacs_bin, ["dump", "--json", *extra, str(path)])
            cache[key] = DumpResult(proc)
        return cache[key]
    return _dump


# --- the report at the end of the run ---------------------------------------

# Filled by the tests: one entry per compared file.
COMPARISON_REPORT = {}


def pytest_terminal_summary(terminalreporter):
    if not COMPARISON_REPORT:
        return
    tr = terminalreporter
    tr.section("cloudpacs vs pydicom")
    matched = [k for k, v in COMPARISON_REPORT.items() if v["status"] == "match"]
    elements = sum(v.get("elements", 0) for v in COMPARISON_REPORT.values())
    notes = [n for v in COMPARISON_REPORT.values() for n in v.get("notes", [])]
    malformed = [k for k, v in COMPARISON_REPORT.items() if v["status"].startswith("malformed")]
    tr.write_line("files compared: %d, matching fully: %d, malformed with an agreeing "
                  "partial dump: %d, elements compared: %d"
                  % (len(COMPARISON_REPORT), len(matched), len(malformed), elements))
    kinds = {}
    for note in notes:
        kind = note.split(" ", 1)[1].split(":")[0] if " " in note else note
        kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in sorted(kinds.items()):
        tr.write_line("  accepted %d times: %s" % (count, kind))
    for key, entry in sorted(COMPARISON_REPORT.items()):
        if entry["status"] != "match":
            tr.write_line("  %s: %s" % (key, entry["status"]))
            for line in entry.get("diffs", [])[:5]:
                tr.write_line("      " + line)
        for note in entry.get("pydicom", []):
            tr.write_line("  %s: pydicom: %s" % (key, note[:150]))
