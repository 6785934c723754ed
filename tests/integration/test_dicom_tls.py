"""DICOM over TLS (PS3.15 B.1) on `cloudpacs serve`'s TLS port.

A CA, a server certificate (localhost, 127.0.0.1) and client certificates
are made with openssl in a temporary directory at test time; one of the
clients is signed by another CA, which the server must not trust. Clients:
DCMTK's echoscu and storescu (+tls, built with OpenSSL), `cloudpacs echo
--tls` and `cloudpacs send --tls`, and raw sockets for what a real client
would not do (plain DICOM to the TLS port, silence).
"""

import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYDICOM_DATA
from test_dicom_service import (ARTIM_S, DCMTK_ENV, Server, associate_rq, echoscu,
                                free_port, wait_log)

CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"
MR_SMALL = PYDICOM_DATA / "test_files" / "MR_small.dcm"


def openssl(*args, cwd):
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
            "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, cn, san, ca):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    (d / (name + ".ext")).write_text("basicConstraints=CA:FALSE\nsubjectAltName=%s\n"
                                     "extendedKeyUsage=serverAuth,clientAuth\n" % san)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
            cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca", "cloudpacs test CA")
    make_ca(d, "rogue-ca", "rogue CA")
    make_leaf(d, "server", "localhost", "DNS:localhost,IP:127.0.0.1", "ca")
    make_leaf(d, "client", "modality-1", "DNS:modality-1", "ca")
    make_leaf(d, "rogue", "modality-1", "DNS:modality-1", "rogue-ca")
    return d


class TlsServer(Server):
    def __init__(self, binary, tmp, certs, mutual=True, extra=""):
        self.tls_port = free_port()
        conf = ("[dicom]\ntls_port = %d\ntls_cert = %s\ntls_key = %s\n"
                % (self.tls_port, certs / "server.pem", certs / "server.key"))
        if mutual:
            conf += "tls_ca = %s\n" % (certs / "ca.pem")
        conf += extra
        super().__init__(binary, tmp, conf, {"CLOUDPACS_HTTP_PORT": str(free_port())})


@pytest.fixture(scope="module")
def tls_server(cloudpacs_bin, tmp_path_factory, certs):
    srv = TlsServer(cloudpacs_bin, tmp_path_factory.mktemp("tls"), certs,
                    extra="[ae.FINDSCU]\nhost = 127.0.0.1\nallow = store,query\n")
    yield srv
    rc = srv.stop()
    assert rc == 0, srv.log_text()[-3000:]


def dcmtk_tls(tool, port, certs, key="client", *extra):
    args = [tool, "-to", "10", "-aec", "CLOUDPACS", "+tls", str(certs / (key + ".key")),
            str(certs / (key + ".pem")), "+cf", str(certs / "ca.pem"), "127.0.0.1", str(port)]
    return subprocess.run(args + [str(e) for e in extra], capture_output=True, env=DCMTK_ENV,
                          timeout=60)


def tls_args(certs, client="client"):
    args = ["--tls", "--ca", certs / "ca.pem"]
    if client is not None:
        args += ["--cert", certs / (client + ".pem"), "--key", certs / (client + ".key")]
    return args


def test_echoscu_tls(tls_server, certs):
    proc = dcmtk_tls("echoscu", tls_server.tls_port, certs)
    assert proc.returncode == 0, proc.stderr.decode() + tls_server.log_text()[-2000:]


def test_storescu_tls(tls_server, certs, run):
    proc = dcmtk_tls("storescu", tls_server.tls_port, certs, "client", CT_SMALL)
    assert proc.returncode == 0, proc.stderr.decode() + tls_server.log_text()[-2000:]
    log = wait_log(tls_server, "sop_instance_uid=1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
    assert "status=0x0000" in log


def test_findscu_tls(tls_server, certs):
    """Query over TLS: the study stored over TLS above is found."""
    proc = dcmtk_tls("storescu", tls_server.tls_port, certs, "client", CT_SMALL)
    assert proc.returncode == 0
    proc = dcmtk_tls("findscu", tls_server.tls_port, certs, "client", "-S", "-k",
                     "QueryRetrieveLevel=STUDY", "-k",
                     "StudyInstanceUID=1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out + tls_server.log_text()[-2000:]
    assert "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322" in out


def test_cloudpacs_echo_and_send_tls(tls_server, certs, run):
    proc = run("echo", *tls_args(certs), "127.0.0.1", tls_server.tls_port)
    assert proc.returncode == 0, proc.stderr
    assert b"success" in proc.stdout
    proc = run("send", *tls_args(certs), "127.0.0.1", tls_server.tls_port, MR_SMALL)
    assert proc.returncode == 0, proc.stderr
    assert b"1 sent, 0 failed" in proc.stdout


def test_client_without_certificate_refused(tls_server, certs, run):
    before = tls_server.log_text().count("dicom.tls.handshake")
    proc = run("echo", *tls_args(certs, client=None), "127.0.0.1", tls_server.tls_port)
    assert proc.returncode == 5, proc.stdout
    log = wait_log(tls_server, "Certificate is required")
    assert log.count("dicom.tls.handshake") > before
    line = [l for l in log.splitlines() if "dicom.tls.handshake" in l][-1]
    assert "peer=127.0.0.1:" in line


def test_untrusted_client_certificate_refused(tls_server, certs, run):
    proc = run("echo", *tls_args(certs, client="rogue"), "127.0.0.1", tls_server.tls_port)
    assert proc.returncode == 5, proc.stdout
    proc = dcmtk_tls("echoscu", tls_server.tls_port, certs, "rogue")
    assert proc.returncode != 0


def test_client_rejects_untrusted_server(tls_server, certs, run):
    proc = run("echo", "--tls", "--ca", certs / "rogue-ca.pem", "--cert", certs / "client.pem",
               "--key", certs / "client.key", "127.0.0.1", tls_server.tls_port)
    assert proc.returncode == 5
    assert b"certificate" in proc.stderr.lower()


def test_plain_dicom_to_tls_port_rejected(tls_server):
    before = tls_server.log_text().count("dicom.tls.handshake")
    with socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=15) as sock:
        sock.sendall(associate_rq())
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    # No A-ASSOCIATE-AC (type 0x02) comes back: at most a TLS alert record.
    assert not data.startswith(b"\x02")
    log = wait_log(tls_server, "An unexpected TLS packet")
    assert log.count("dicom.tls.handshake") > before
    assert tls_server.proc.poll() is None
    assert echoscu(tls_server.port).returncode == 0


def test_silent_client_closed_after_artim(tls_server, certs):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=30) as sock:
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
    elapsed = time.monotonic() - start
    assert data == b""
    assert elapsed < ARTIM_S + 5, elapsed
    # Others were served meanwhile and still are.
    assert dcmtk_tls("echoscu", tls_server.tls_port, certs).returncode == 0


def test_plain_port_still_serving(tls_server, run):
    assert echoscu(tls_server.port).returncode == 0
    proc = run("echo", "127.0.0.1", tls_server.port)
    assert proc.returncode == 0, proc.stderr


def test_server_without_ca_needs_no_client_certificate(cloudpacs_bin, tmp_path, certs, run):
    srv = TlsServer(cloudpacs_bin, tmp_path, certs, mutual=False,
                    extra="tls_min_version = 1.3\n")
    try:
        proc = run("echo", *tls_args(certs, client=None), "127.0.0.1", srv.tls_port)
        assert proc.returncode == 0, proc.stderr + srv.log_text()[-2000:].encode()
        proc = dcmtk_tls("echoscu", srv.tls_port, certs)
        assert proc.returncode == 0, proc.stderr.decode()
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def test_bad_tls_configuration(cloudpacs_bin, tmp_path, certs):
    conf = tmp_path / "bad.conf"
    conf.write_text("[dicom]\nport = %d\ntls_port = %d\ntls_cert = %s\n"
                    % (free_port(), free_port(), tmp_path / "missing.pem"))
    proc = subprocess.run([str(cloudpacs_bin), "serve", "--config", str(conf),
                           "--services", "dicom"], capture_output=True, timeout=30,
                          env={"CLOUDPACS_DATA_DIR": str(tmp_path / "data"),
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 4, proc.stderr
    assert b"TLS" in proc.stderr
