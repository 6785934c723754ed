"""GET /metrics of `cloudpacs serve` running both services: the Prometheus
text exposition format (0.0.4) with the DICOM service's and the archive's
counters next to the HTTP layer's.

One server is started for the module (the WebServer of test_dicomweb.py).
DCMTK's storescu stores two files, echoscu verifies (once released, once
aborted, once to a wrong called AE title, which is rejected), a STOW-RS
stores a third file and sends one again; then /metrics is read, parsed
line by line and its counters checked against what was done.
"""

import os
import re
import subprocess
import time

import pytest

from test_dicomweb import TEST_FILES, WebServer, request, stow

DCMTK_ENV = {"TCP_NODELAY": "1"}
STORED_DIMSE = ["CT_small.dcm", "MR_small_implicit.dcm"]
STORED_STOW = "rtplan.dcm"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE_RE = re.compile(r"^(%s)(\{(?:%s(?:,%s)*)?\})? (\S+)$" % (NAME, LABEL, LABEL))
TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)


def dcmtk(args):
    env = dict(os.environ, **DCMTK_ENV)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def served(cloudpacs_bin, tmp_path_factory):
    srv = WebServer(cloudpacs_bin, tmp_path_factory.mktemp("metrics"))
    port = str(srv.dicom_port)
    try:
        proc = dcmtk(["storescu", "-to", "30", "-aec", "CLOUDPACS", "127.0.0.1", port]
                     + [str(TEST_FILES / f) for f in STORED_DIMSE])
        assert proc.returncode == 0, proc.stderr
        proc = dcmtk(["echoscu", "-to", "10", "-aec", "CLOUDPACS", "127.0.0.1", port])
        assert proc.returncode == 0, proc.stderr
        proc = dcmtk(["echoscu", "--abort", "-to", "10", "-aec", "CLOUDPACS", "127.0.0.1",
                      port])
        assert proc.returncode == 0, proc.stderr
        proc = dcmtk(["echoscu", "-to", "10", "-aec", "NOTUS", "127.0.0.1", port])
        assert proc.returncode != 0, "a wrong called AE title was accepted"
        data = (TEST_FILES / STORED_STOW).read_bytes()
        status, _, body = stow(srv.base, [(b"application/dicom", data)])
        assert status == 200, body[:300]
        status, _, body = stow(srv.base, [(b"application/dicom", data)])
        assert status == 200, body[:300]
        yield srv
    finally:
        assert srv.stop() == 0


def parse_exposition(text):
    """{(name, labels text): value}, asserting the format as it goes."""
    types = {}
    samples = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("#"):
            if line.startswith("# TYPE"):
                m = TYPE_RE.match(line)
                assert m, line
                assert m.group(1) not in types, "TYPE twice: " + line
                types[m.group(1)] = m.group(2)
            else:
                assert line.startswith("# HELP ") or line.startswith("# "), line
            continue
        assert line.strip(), "empty line in the exposition"
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        float(value)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, "sample before its TYPE: " + line
        assert (name, labels) not in samples, "sample twice: " + line
        samples[(name, labels)] = float(value)
    return types, samples


@pytest.fixture(scope="module")
def metrics(served):
    # An association's thread counts its end just after the peer has gone.
    deadline = time.monotonic() + 10
    while True:
        status, hdrs, body = request("http://127.0.0.1:%d/metrics" % served.http_port)
        assert status == 200, body[:300]
        assert hdrs["Content-Type"].startswith("text/plain")
        types, samples = parse_exposition(body.decode("utf-8"))
        if samples.get(("cloudpacs_dicom_associations_open", "")) == 0 or \
                time.monotonic() > deadline:
            return types, samples
        time.sleep(0.1)


def test_exposition_parses(metrics):
    types, samples = metrics
    assert types["cloudpacs_dicom_associations_total"] == "counter"
    assert types["cloudpacs_dicom_associations_open"] == "gauge"
    assert types["cloudpacs_dicom_operations_total"] == "counter"
    assert types["cloudpacs_dicom_received_bytes_total"] == "counter"
    assert types["cloudpacs_archive_instances_total"] == "counter"
    assert samples


def test_associations(metrics):
    _, samples = metrics
    name = "cloudpacs_dicom_associations_total"
    assert samples[(name, '{result="accepted"}')] == 3
    assert samples[(name, '{result="aborted"}')] == 1
    assert samples[(name, '{result="rejected"}')] == 1
    assert samples[("cloudpacs_dicom_associations_open", "")] == 0


def test_dimse_operations(metrics):
    _, samples = metrics
    name = "cloudpacs_dicom_operations_total"
    assert samples[(name, '{command="C-STORE",status="success"}')] == len(STORED_DIMSE)
    assert samples[(name, '{command="C-ECHO",status="success"}')] == 2
    assert not [k for k in samples if k[0] == name and "failure" in k[1]]


def test_bytes_received(metrics):
    _, samples = metrics
    files = sum((TEST_FILES / f).stat().st_size for f in STORED_DIMSE)
    got = samples[("cloudpacs_dicom_received_bytes_total", "")]
    # The data sets without their File Meta Information, plus the commands.
    assert files * 0.8 < got < files * 1.2


def test_archive_outcomes(metrics):
    _, samples = metrics
    name = "cloudpacs_archive_instances_total"
    assert samples[(name, '{source="dicom",outcome="stored"}')] == len(STORED_DIMSE)
    assert samples[(name, '{source="dicomweb",outcome="stored"}')] == 1
    assert samples[(name, '{source="dicomweb",outcome="duplicate"}')] == 1


def test_http_metrics_still_there(metrics):
    types, _ = metrics
    assert types["http_requests_total"] == "counter"
    assert types["http_request_duration_seconds"] == "histogram"
