"""Query/retrieve of `cloudpacs serve` (PS3.4 Annex C) against DCMTK.

findscu in the Patient Root (-P) and Study Root (-S) models at every level,
with wildcards, date ranges and character sets (GB18030, ISO_IR 192);
movescu to a storescp started here (several studies in one C-MOVE, an
unknown destination answered A801); getscu (C-GET on one association);
C-CANCEL (findscu --cancel); a caller not allowed to query is refused.
Instances retrieved are compared element by element with what was sent.
The server fixtures come from test_dicom_service.py.
"""

import json
import struct
import subprocess
import time
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from test_dicom_service import (DCMTK_ENV, Server, command_status, element, free_port, pdata,
                                raw_associate, read_pdu, wait_log)

ROOT = "1.2.826.0.1.3680043.8.498.77"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

# (patient id, name, charset, study number, study date, modality)
STUDIES = [
    ("P1", "Wang^Wei", None, 1, "20200315", "CT"),
    ("P1", "Wang^Wei", None, 2, "20210610", "MR"),
    ("P2", "Wang^Fang", None, 3, "20201120", "CT"),
    ("P3", "Smith^John", None, 4, "20190101", "CT"),
    ("P4", "Zhang^San=张^三", "GB18030", 5, "20220202", "CT"),
]
SERIES_PER_STUDY = 1
INSTANCES_PER_SERIES = 2


def study_uid(n):
    return "%s.%d" % (ROOT, n)


def make_instance(path, pid, name, charset, n, date, modality, k, syntax):
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid(n)
    ds.StudyDate = date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC%d" % n
    ds.StudyID = "S%d" % n
    ds.StudyDescription = "study %d" % n
    ds.SeriesInstanceUID = study_uid(n) + ".1"
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = study_uid(n) + ".1.%d" % k
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
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.is_little_endian = True
    ds.is_implicit_VR = syntax == ImplicitVRLittleEndian
    ds.save_as(str(path), write_like_original=False)


@pytest.fixture(scope="module")
def qr_env(cloudpacs_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qr")
    dest_port = free_port()
    conf = ("[dicom]\nae_title = CPQR\n"
            "[ae.FINDER]\nhost = 127.0.0.1\nport = 104\nallow = store,query,retrieve\n"
            "[ae.DEST]\nhost = 127.0.0.1\nport = %d\nallow = store\n"
            "[ae.STOREONLY]\nhost = 127.0.0.1\nallow = store\n" % dest_port)
    srv = Server(cloudpacs_bin, tmp, conf)
    files = []
    src = tmp / "src"
    src.mkdir()
    for pid, name, charset, n, date, modality in STUDIES:
        for k in range(1, INSTANCES_PER_SERIES + 1):
            path = src / ("s%d_%d.dcm" % (n, k))
            syntax = ImplicitVRLittleEndian if k == 2 else ExplicitVRLittleEndian
            make_instance(path, pid, name, charset, n, date, modality, k, syntax)
            files.append(path)
    proc = subprocess.run(["storescu", "-aet", "FINDER", "-aec", "CPQR", "127.0.0.1",
                           str(srv.port)] + [str(f) for f in files],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    yield {"server": srv, "tmp": tmp, "files": files, "dest_port": dest_port}
    assert srv.stop() == 0, srv.log_text()[-3000:]


def findscu(env, keys, model="-S", aet="FINDER", extra=(), subdir="find"):
    out = env["tmp"] / ("%s_%d" % (subdir, time.monotonic_ns()))
    out.mkdir()
    args = ["findscu", "-aet", aet, "-aec", "CPQR", model, "-X"] + list(extra)
    for k in keys:
        args += ["-k", k]
    args += ["127.0.0.1", str(env["server"].port)]
    proc = subprocess.run(args, capture_output=True, env=DCMTK_ENV, cwd=out, timeout=60)
    rsps = [pydicom.dcmread(str(p), force=True) for p in sorted(out.glob("rsp*.dcm"))]
    return proc, rsps


def values(rsps, keyword):
    return sorted(str(getattr(r, keyword, "")) for r in rsps)


# --- C-FIND ------------------------------------------------------------------------

def test_find_study_root_study_level(qr_env):
    proc, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                  "PatientName", "StudyDate", "ModalitiesInStudy",
                                  "NumberOfStudyRelatedInstances"])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert values(rsps, "StudyInstanceUID") == sorted(study_uid(s[3]) for s in STUDIES)
    for r in rsps:
        assert r.QueryRetrieveLevel == "STUDY"
        assert str(r.NumberOfStudyRelatedInstances) == str(INSTANCES_PER_SERIES)


def test_find_wildcard_and_date_range(qr_env):
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                               "PatientName=Wang*"])
    assert values(rsps, "StudyInstanceUID") == [study_uid(1), study_uid(2), study_uid(3)]
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                               "StudyDate=20200101-20201231"])
    assert values(rsps, "StudyInstanceUID") == [study_uid(1), study_uid(3)]
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                               "StudyDate=-20191231"])
    assert values(rsps, "StudyInstanceUID") == [study_uid(4)]
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                               "PatientName=w?ng^f*"])
    assert values(rsps, "StudyInstanceUID") == [study_uid(3)]


def test_find_series_and_image_levels(qr_env):
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=SERIES", "StudyInstanceUID=" +
                               study_uid(2), "SeriesInstanceUID", "Modality",
                               "NumberOfSeriesRelatedInstances"])
    assert values(rsps, "SeriesInstanceUID") == [study_uid(2) + ".1"]
    assert rsps[0].Modality == "MR"
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=IMAGE", "StudyInstanceUID=" +
                               study_uid(2), "SeriesInstanceUID=" + study_uid(2) + ".1",
                               "SOPInstanceUID", "InstanceNumber", "SOPClassUID"])
    assert values(rsps, "SOPInstanceUID") == [study_uid(2) + ".1.1", study_uid(2) + ".1.2"]
    assert all(r.SOPClassUID == CT_STORAGE for r in rsps)


def test_find_series_level_without_study_uid_is_refused(qr_env):
    proc, rsps = findscu(qr_env, ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"])
    assert rsps == []
    wait_log(qr_env["server"], "op=C-FIND-RQ status=0xa900")


def test_find_patient_root_every_level(qr_env):
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
                               "NumberOfPatientRelatedStudies"], model="-P")
    assert values(rsps, "PatientID") == ["P1", "P2", "P3", "P4"]
    p1 = [r for r in rsps if r.PatientID == "P1"][0]
    assert str(p1.NumberOfPatientRelatedStudies) == "2"
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "PatientID=P1",
                               "StudyInstanceUID"], model="-P")
    assert values(rsps, "StudyInstanceUID") == [study_uid(1), study_uid(2)]
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=SERIES", "PatientID=P2",
                               "StudyInstanceUID=" + study_uid(3), "SeriesInstanceUID"],
                      model="-P")
    assert values(rsps, "SeriesInstanceUID") == [study_uid(3) + ".1"]
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=IMAGE", "PatientID=P2",
                               "StudyInstanceUID=" + study_uid(3),
                               "SeriesInstanceUID=" + study_uid(3) + ".1", "SOPInstanceUID"],
                      model="-P")
    assert len(rsps) == INSTANCES_PER_SERIES


def test_find_gb18030_chinese_name(qr_env):
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "SpecificCharacterSet=GB18030",
                               "PatientName=张*", "StudyInstanceUID"])
    assert len(rsps) == 1
    r = rsps[0]
    assert r.SpecificCharacterSet == "GB18030"
    raw = r.get_item(0x00100010).value
    assert "张".encode("gb18030") in raw
    assert str(r.PatientName) == "Zhang^San=张^三"


def test_find_utf8_query_and_default_answer(qr_env):
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 192",
                               "PatientName=*=张^三", "StudyInstanceUID"])
    assert len(rsps) == 1 and str(rsps[0].PatientName) == "Zhang^San=张^三"
    assert rsps[0].SpecificCharacterSet == "ISO_IR 192"
    # A query naming no set gets UTF-8 answers, labelled, when they are not ASCII.
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "PatientID=P4", "PatientName",
                               "StudyInstanceUID"])
    assert len(rsps) == 1 and rsps[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(rsps[0].PatientName) == "Zhang^San=张^三"


def test_find_cancel(qr_env):
    proc, rsps = findscu(qr_env, ["QueryRetrieveLevel=IMAGE", "StudyInstanceUID=" +
                                  study_uid(1), "SeriesInstanceUID=" + study_uid(1) + ".1",
                                  "SOPInstanceUID"], extra=["--cancel", "1"])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert 1 <= len(rsps) <= INSTANCES_PER_SERIES
    # The association still serves the next query.
    _, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    assert len(rsps) == len(STUDIES)


STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def command(fields):
    rest = b"".join(element(0, e, v) for e, v in fields)
    return element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def test_find_cancel_answers_fe00(qr_env):
    """A C-CANCEL-RQ right behind the C-FIND-RQ: the final status is FE00."""
    sock, kind, _ = raw_associate(qr_env["server"].port, called="CPQR", calling="FINDER",
                                  contexts=((1, STUDY_ROOT_FIND),))
    assert kind == 2
    find = command([(0x0002, STUDY_ROOT_FIND.encode()), (0x0100, struct.pack("<H", 0x20)),
                    (0x0110, struct.pack("<H", 7)), (0x0700, struct.pack("<H", 0)),
                    (0x0800, struct.pack("<H", 0))])
    ident = element(0x0008, 0x0052, b"STUDY ") + element(0x0020, 0x000D, b"")
    cancel = command([(0x0100, struct.pack("<H", 0x0FFF)), (0x0120, struct.pack("<H", 7)),
                      (0x0800, struct.pack("<H", 0x0101))])
    sock.sendall(pdata(1, find) + pdata(1, ident, command=False) + pdata(1, cancel))
    pending = 0
    while True:
        kind, body = read_pdu(sock)
        assert kind == 4, kind
        if not body[5] & 1:
            continue                        # a data set fragment
        status = command_status(body)
        if status in (0xFF00, 0xFF01):
            pending += 1
            continue
        break
    assert status == 0xFE00, hex(status)
    assert pending < len(STUDIES)
    sock.close()
    wait_log(qr_env["server"], "op=C-FIND-RQ status=0xfe00")


def test_find_refused_for_an_ae_not_allowed(qr_env):
    for aet in ("STOREONLY", "SOMEONE"):
        proc, rsps = findscu(qr_env, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
                             aet=aet)
        assert proc.returncode != 0 and rsps == []
    wait_log(qr_env["server"], "dicom.assoc.refused", "calling_ae=STOREONLY")


def test_many_finds_on_one_association(qr_env):
    """101 C-FINDs on one open association are each answered (findscu --repeat).

    How fast they are is for bench/, not for this test.
    """
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + study_uid(1), "PatientName"]
    proc, rsps = findscu(qr_env, keys, extra=["--repeat", "101"])
    assert proc.returncode == 0
    assert len(rsps) == 101


# --- C-MOVE and C-GET ---------------------------------------------------------------

def same_dataset(sent, got):
    a = pydicom.dcmread(str(sent))
    b = pydicom.dcmread(str(got))
    tags_a = [el.tag for el in a]
    assert tags_a == [el.tag for el in b]
    for el in a:
        assert b[el.tag].value == el.value, el


@pytest.fixture
def storescp(qr_env, tmp_path):
    out = tmp_path / "dest"
    out.mkdir()
    proc = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(out),
                             str(qr_env["dest_port"])], env=DCMTK_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield out
    proc.terminate()
    proc.wait(timeout=10)


def sent_file(env, sop_uid):
    for f in env["files"]:
        if pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID == sop_uid:
            return f
    raise AssertionError(sop_uid)


def test_move_several_studies(qr_env, storescp):
    uids = "\\".join([study_uid(1), study_uid(3), study_uid(5)])
    proc = subprocess.run(["movescu", "-aet", "FINDER", "-aec", "CPQR", "-aem", "DEST", "-S",
                           "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + uids,
                           "127.0.0.1", str(qr_env["server"].port)],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = sorted(storescp.glob("*"))
    assert len(got) == 3 * INSTANCES_PER_SERIES
    for g in got:
        same_dataset(sent_file(qr_env, pydicom.dcmread(str(g)).SOPInstanceUID), g)


def test_move_to_unknown_destination(qr_env):
    proc = subprocess.run(["movescu", "-aet", "FINDER", "-aec", "CPQR", "-aem", "NOWHERE",
                           "-S", "-k", "QueryRetrieveLevel=STUDY",
                           "-k", "StudyInstanceUID=" + study_uid(1),
                           "127.0.0.1", str(qr_env["server"].port)],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    text = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
    assert "MoveDestinationUnknown" in text or "a801" in text.lower()
    wait_log(qr_env["server"], "status=0xa801", "uid=NOWHERE")


def test_get_on_the_same_association(qr_env, tmp_path):
    proc = subprocess.run(["getscu", "-aet", "FINDER", "-aec", "CPQR", "-S",
                           "-k", "QueryRetrieveLevel=SERIES",
                           "-k", "StudyInstanceUID=" + study_uid(2),
                           "-k", "SeriesInstanceUID=" + study_uid(2) + ".1",
                           "-od", str(tmp_path), "127.0.0.1", str(qr_env["server"].port)],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = sorted(tmp_path.glob("*"))
    assert len(got) == INSTANCES_PER_SERIES
    for g in got:
        same_dataset(sent_file(qr_env, pydicom.dcmread(str(g)).SOPInstanceUID), g)


def test_retrieve_refused_for_an_ae_not_allowed(qr_env, tmp_path):
    proc = subprocess.run(["getscu", "-aet", "STOREONLY", "-aec", "CPQR", "-S",
                           "-k", "QueryRetrieveLevel=STUDY",
                           "-k", "StudyInstanceUID=" + study_uid(2),
                           "-od", str(tmp_path), "127.0.0.1", str(qr_env["server"].port)],
                          capture_output=True, env=DCMTK_ENV, timeout=60)
    assert proc.returncode != 0
    assert list(tmp_path.glob("*")) == []


# --- cloudpacs send and find ---------------------------------------------------------

def blobs_by_sop(data_dir):
    out = {}
    for p in Path(data_dir).rglob("*.dcm"):
        out[pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID] = p
    return out


def test_cloudpacs_send_files_to_a_second_instance(qr_env, cloudpacs_bin, tmp_path):
    second = Server(cloudpacs_bin, tmp_path, "[dicom]\nae_title = SECOND\n")
    try:
        src = qr_env["tmp"] / "src"
        proc = subprocess.run([str(cloudpacs_bin), "send", "--aet", "SENDER", "--aec",
                               "SECOND", "127.0.0.1", str(second.port), str(src)],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert b"%d sent, 0 failed" % len(qr_env["files"]) in proc.stdout
        stored = blobs_by_sop(second.data)
        assert len(stored) == len(qr_env["files"])
        for f in qr_env["files"]:
            uid = pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID
            same_dataset(f, stored[uid])
    finally:
        assert second.stop() == 0


def test_cloudpacs_send_stored_study(qr_env, cloudpacs_bin, tmp_path):
    second = Server(cloudpacs_bin, tmp_path, "[dicom]\nae_title = SECOND\n")
    try:
        conf = tmp_path / "send.conf"
        conf.write_text("[core]\ndata_dir = %s\n[dicom]\nae_title = CPQR\n"
                        "[ae.OTHER]\nhost = 127.0.0.1\nport = %d\ntitle = SECOND\n"
                        % (qr_env["server"].data, second.port))
        proc = subprocess.run([str(cloudpacs_bin), "send", "--config", str(conf),
                               "--study", study_uid(2), "--to", "OTHER"],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        stored = blobs_by_sop(second.data)
        assert sorted(stored) == [study_uid(2) + ".1.1", study_uid(2) + ".1.2"]
        for uid, path in stored.items():
            same_dataset(sent_file(qr_env, uid), path)
    finally:
        assert second.stop() == 0


def test_cloudpacs_find_json(qr_env, cloudpacs_bin):
    proc = subprocess.run([str(cloudpacs_bin), "find", "--aet", "FINDER", "--aec", "CPQR",
                           "--json", "127.0.0.1", str(qr_env["server"].port),
                           "-k", "PatientName=Zhang*", "-k", "StudyInstanceUID"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    rows = json.loads(proc.stdout)
    assert len(rows) == 1
    assert rows[0]["0020000D"]["Value"] == [study_uid(5)]
    assert rows[0]["00100010"]["Value"][0]["Ideographic"] == "张^三"
    proc = subprocess.run([str(cloudpacs_bin), "find", "--aet", "FINDER", "--aec", "CPQR",
                           "--patient-root", "--level", "patient", "127.0.0.1",
                           str(qr_env["server"].port), "-k", "PatientID", "-k",
                           "NumberOfPatientRelatedStudies"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1 + 4 and "PATIENT\tP1\t2" in lines


def test_move_compressed_instance_the_destination_refuses(cloudpacs_bin, tmp_path):
    """storescp takes no JPEG 2000: that sub-operation fails, the rest goes, B000."""
    dest_port = free_port()
    srv = Server(cloudpacs_bin, tmp_path, "[dicom]\nae_title = CPQR\n[ae.FINDER]\n"
                 "host = 127.0.0.1\nallow = all\n[ae.DEST]\nhost = 127.0.0.1\nport = %d\n"
                 % dest_port)
    out = tmp_path / "dest"
    out.mkdir()
    scp = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(out), str(dest_port)],
                           env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        data = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
        files = [data / "JPEG2000.dcm", data / "CT_small.dcm"]
        proc = subprocess.run([str(cloudpacs_bin), "send", "--aet", "FINDER", "--aec", "CPQR",
                               "127.0.0.1", str(srv.port)] + [str(f) for f in files],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        uids = "\\".join(pydicom.dcmread(str(f)).StudyInstanceUID for f in files)
        time.sleep(0.3)
        proc = subprocess.run(["movescu", "-v", "-aet", "FINDER", "-aec", "CPQR", "-aem",
                               "DEST", "-S", "-k", "QueryRetrieveLevel=STUDY",
                               "-k", "StudyInstanceUID=" + uids,
                               "127.0.0.1", str(srv.port)],
                              capture_output=True, env=DCMTK_ENV, timeout=60)
        text = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
        assert "SubOperationsCompleteOneOrMoreFailures" in text, text
        assert len(list(out.glob("*"))) == 1
        wait_log(srv, "op=C-MOVE-RQ status=0x0122")
    finally:
        scp.terminate()
        scp.wait(timeout=10)
        assert srv.stop() == 0
