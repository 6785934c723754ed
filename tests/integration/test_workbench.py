"""The reading workbench (web/: the doctor, clinic and centre pages), in a real browser.

Builds nothing: it expects the console's build in web/dist (scripts/console.sh)
and fails with that advice when it is absent. Creates with the CLI, in a
temporary data directory, a reading centre and a clinic under it, a technician of the clinic, a radiologist of the
centre qualified for CR:CHEST (`cloudpacs user qualify`), a reviewer of the
centre (associate chief, without a contract) and an admin of the centre; starts `cloudpacs serve
--services web,dispatch` on free ports with a service token, through which it
records the radiologist's contract with the clinic
(POST /api/contracts) and makes an API token of the clinic, with which it
stores two chest CRs through STOW-RS (so that the studies are the clinic's). Then tests/browser/workbench.mjs drives headless Debian
Chromium (playwright-core):

  - the radiologist, on a phone-sized page, opens the pool (empty);
  - the technician, on a desktop, finds the study in the request form's
    QIDO-RS list, asks for a read (body part, priority, notes) and lands on
    the order's page;
  - the order appears in the radiologist's pool without a reload; they grab
    it, land on the reading page (the viewer a link on a phone), write the
    findings and impression, flag a critical finding, see the draft saved,
    and submit;
  - the reviewer finds it in the review queue, reads the version and
    returns it with a reason; the radiologist finds it returned among their
    orders, sees the reason, changes the impression and submits again; the
    reviewer approves version 2;
  - the technician's page shows the released report with the signature
    badge (valid), the doctor and reviewer; the technician acknowledges the
    critical finding; the print stylesheet leaves the report alone; the
    centre's admin sees the statistics;
  - the second study is requested; the centre's admin sees it on the board,
    offers it to the radiologist and puts them on duty; the radiologist
    accepts the offer in the pool and gives the order back with a reason;
    the technician withdraws it;
  - on a phone, the technician's orders, report and request form fit the
    screen.

Afterwards GET /api/orders/{id} must say released, with the radiologist as
doctor and the reviewer as reviewer, and GET /api/orders/{id}/report must
carry the text the browser typed, "signature_valid": true and the
technician's acknowledgement of the critical finding; the second
order must be cancelled, with the offer and the give-back in its history.

Needs what test_console.py needs: Debian's chromium, node and npm.
"""

import json
import os
import subprocess
import time
import urllib.request

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import PYDICOM_DATA, SERVICE_TOKEN, api_ok, bearer
from test_console import (BROWSER_DIR, BROWSER_TIMEOUT, CHROMIUM, Site, require_browser,
                          require_console)

CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"

CENTRE = "CENTRE-W"
CLINIC = "CLINIC-W1"
TECH = ("clinic.tech", "Workbench-Tech-Pass-1!")
RADIOLOGIST = ("rad.zhang", "Workbench-Rad-Pass-1!")
REVIEWER = ("rev.chen", "Workbench-Rev-Pass-1!")
CENTRE_ADMIN = ("centre.boss", "Workbench-Boss-Pass-1!")
PATIENT_ID = "WB-PAT-0001"
ACCESSION = "WBACC0001"
ACCESSION2 = "WBACC0002"
FINDINGS = "双肺纹理清晰，未见明确实变影。心影大小形态正常。"
IMPRESSION = "胸部正位片未见明显异常。"
GIVE_BACK_REASON = "图像质量不足，请其他医生阅读"
REJECT_REASON = "诊断意见请写明确"


class WorkbenchSite(Site):
    """Site with the dispatch service too (its timers: lapses, fallback, deadlines)."""

    def start(self):
        self.err = open(self.log, "wb")
        self.proc = subprocess.Popen([self.binary, "serve", "--services", "web,dispatch"],
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.tmp)
        line = self._read_line()
        assert "http://127.0.0.1:%d/" % self.http_port in line and "console at /" in line, (
            "the web service did not start with the console: %r\n%s"
            % (line, self.log.read_text(errors="replace")[-3000:]))


def make_chest_cr(tmp, accession=ACCESSION):
    """A chest CR made from pydicom's CT_small: new UIDs, the clinic's patient."""
    ds = pydicom.dcmread(str(CT_SMALL))
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.StudyDescription = "Chest PA"
    ds.PatientID = PATIENT_ID
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp / ("chest-cr-%s.dcm" % accession)
    ds.save_as(str(path), write_like_original=True)
    return path, ds.StudyInstanceUID


def stow(base, data, token):
    boundary = b"cloudpacs-workbench-test"
    body = (b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + data +
            b"\r\n--" + boundary + b"--\r\n")
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
               + boundary.decode()}
    headers.update(bearer(token))
    req = urllib.request.Request(base + "dicom-web/studies", data=body, method="POST",
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status


@pytest.fixture(scope="module")
def site(cloudpacs_bin, tmp_path_factory):
    require_console()
    require_browser()
    tmp = tmp_path_factory.mktemp("workbench")
    s = WorkbenchSite(cloudpacs_bin, tmp, http_token=SERVICE_TOKEN)
    s.cli("institution", "add", "--code", CENTRE, "--name", "远程阅片中心", "--kind", "centre")
    # Under the centre: its admin sees (and may offer) the clinic's open orders.
    s.cli("institution", "add", "--code", CLINIC, "--name", "社区诊所", "--kind", "clinic",
          "--parent", CENTRE)
    for (name, password), code, roles, extra in (
            (TECH, CLINIC, "technician", ["--name", "李技师"]),
            (RADIOLOGIST, CENTRE, "radiologist", ["--name", "张医生", "--title", "2"]),
            (REVIEWER, CENTRE, "reviewer", ["--name", "陈主任", "--title", "3"]),
            (CENTRE_ADMIN, CENTRE, "institution_admin", ["--name", "中心管理员"])):
        s.cli("user", "add", name, "--institution", code, "--roles", roles, *extra,
              "--password-stdin", stdin=(password + "\n").encode())
    s.cli("user", "qualify", RADIOLOGIST[0], "CR:CHEST")
    s.start()

    base = s.base.rstrip("/")
    insts = {i["code"]: i for i in json.loads(s.cli("institution", "list", "--json"))}
    users = {u["username"]: u for u in json.loads(s.cli("user", "list", "--json"))}
    s.ids = {"centre": insts[CENTRE]["id"], "clinic": insts[CLINIC]["id"],
             "radiologist": users[RADIOLOGIST[0]]["id"], "reviewer": users[REVIEWER[0]]["id"],
             "tech": users[TECH[0]]["id"]}
    # The radiologist reads the clinic's studies under a contract; the
    # reviewer needs none: the centre's reviewers review what it reads.
    for who in ("radiologist",):
        api_ok(base, "POST", "/api/contracts", {
            "user_id": s.ids[who], "requesting_id": s.ids["clinic"],
            "reading_id": s.ids["centre"],
            "start_date": time.strftime("%Y%m%d", time.gmtime()), "end_date": "",
            "modalities": ["CR"], "body_parts": ["CHEST"], "revoked": False})
    tok = api_ok(base, "POST", "/api/tokens", {
        "name": "clinic-gateway", "institution_id": s.ids["clinic"], "roles": ["technician"]})
    path, s.study_uid = make_chest_cr(tmp)
    assert stow(s.base, path.read_bytes(), tok["token"]) == 200
    path, s.study2_uid = make_chest_cr(tmp, ACCESSION2)
    assert stow(s.base, path.read_bytes(), tok["token"]) == 200
    yield s
    assert s.stop() == 0, s.log.read_text(errors="replace")[-3000:]


def run_driver(tmp_path, **settings):
    """Runs tests/browser/workbench.mjs with settings; fails with its output."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    log = tmp_path / "browser.log"
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_URL"}
    env.update(settings, CHROMIUM=CHROMIUM, SCREENSHOT_DIR=str(shots), CONSOLE_LOG=str(log))
    proc = subprocess.run(["node", "--test", "workbench.mjs"], cwd=BROWSER_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=BROWSER_TIMEOUT)
    out = proc.stdout.decode(errors="replace")
    print("screenshots in %s" % shots)
    print(out)
    assert proc.returncode == 0, "the workbench test failed (screenshots in %s)\n%s\n%s" % (
        shots, out[-6000:], log.read_text(errors="replace")[-4000:] if log.exists() else "")
    assert "# pass 0\n" not in out, out
    return log


def test_workbench_in_browser(site, tmp_path):
    log = run_driver(tmp_path, WORKBENCH_URL=site.base, STUDY_UID=site.study_uid,
                     STUDY2_UID=site.study2_uid,
                     PATIENT_ID=PATIENT_ID, FINDINGS=FINDINGS, IMPRESSION=IMPRESSION,
                     GIVE_BACK_REASON=GIVE_BACK_REASON, REJECT_REASON=REJECT_REASON,
                     TECH_USER=TECH[0], TECH_PASSWORD=TECH[1],
                     RAD_USER=RADIOLOGIST[0], RAD_PASSWORD=RADIOLOGIST[1],
                     REVIEWER_USER=REVIEWER[0], REVIEWER_PASSWORD=REVIEWER[1],
                     CENTRE_USER=CENTRE_ADMIN[0], CENTRE_PASSWORD=CENTRE_ADMIN[1],
                     RAD_NAME="张医生", REVIEWER_NAME="陈主任", CENTRE_NAME="远程阅片中心")

    # What the browser did, as the API has it.
    base = site.base.rstrip("/")
    found = api_ok(base, "GET", "/api/orders?study=" + site.study_uid)
    orders = found if isinstance(found, list) else found["orders"]
    assert len(orders) == 1, (orders, log.read_text(errors="replace")[-2000:])
    order = api_ok(base, "GET", "/api/orders/%d" % orders[0]["id"])
    assert order["state"] == "released", order
    assert order["doctor_id"] == site.ids["radiologist"], order
    assert order["reviewer_id"] == site.ids["reviewer"], order
    assert order["doctor_name"] == "张医生" and order["reviewer_name"] == "陈主任", order
    assert order["requesting_institution_name"] == "社区诊所", order
    assert order["reading_institution_name"] == "远程阅片中心", order
    assert order["modality"] == "CR" and order["body_part"] == "CHEST", order
    events = [h["event"] for h in order["history"]]
    for event in ("submitted", "grabbed", "opened", "reported", "rejected", "approved",
                  "released"):
        assert event in events, events
    assert order["rejections"] == 1, order
    report = api_ok(base, "GET", "/api/orders/%d/report" % order["id"])
    assert report["findings"] == FINDINGS, report
    assert report["impression"] == IMPRESSION, report
    assert report["signature_valid"] is True, report
    assert report["critical"] is True, report
    assert report["critical_ack_by"] == site.ids["tech"], report
    assert report["version"] == 2, report

    # The second order: offered from the board, accepted, given back, withdrawn.
    found = api_ok(base, "GET", "/api/orders?study=" + site.study2_uid)
    orders = found if isinstance(found, list) else found["orders"]
    assert len(orders) == 1, orders
    order = api_ok(base, "GET", "/api/orders/%d" % orders[0]["id"])
    assert order["state"] == "cancelled", order
    assert order["returns"] >= 1, order
    events = [(h["event"], h["reason"]) for h in order["history"]]
    for event in ("offered", "given_back", "cancelled"):
        assert event in [e for e, _ in events], events
    assert ("given_back", GIVE_BACK_REASON) in events, events
