"""Remote reading end to end over HTTP: orders, the pool, grab, review,
release with a signature, the report SR, live events, the audit trail,
cancellation and automatic orders (docs/api.md, "Orders and reports").

The world: a reading centre with a reviewer (title 3), two radiologists
qualified for CR CHEST and contracted with the clinic, and the centre's
admin; a clinic with a technician and an API token. The technician's study
(stored with the clinic's token) is asked to be read; both radiologists see
it in the pool and grab it at once: one wins, the other gets 409 "gone" and
loses sight of the study while the winner reads it; the reviewer sends the
first version back, approves the second; the clinic then reads the
released report, whose Ed25519 signature is checked here independently of
the server, and finds the SR in its study. A server-sent event stream of
the technician's sees the order move. Then: a cancelled order, an order
made by an [order_rule] when a DX study completes, the centre's admin
offering it to a radiologist who accepts, the roster, statistics, paging.
"""

import base64
import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import PYDICOM_DATA, api_call, api_ok
from test_auth_http import PASSWORD, AuthServer, login
from test_dicomweb import multipart_body, request

CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"

CONFIG = """
[archive]
study_quiet_seconds = 1

[order_rule.clinic_dx]
institution = CLINIC
modality = DX
priority = urgent
body_part = CHEST
"""

# The DER header of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def make_instance(modality, patient_id, body_part="CHEST"):
    """CT_small with UIDs of its own, as a Part 10 file's bytes."""
    ds = pydicom.dcmread(str(CT_SMALL))
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.BodyPartExamined = body_part
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, write_like_original=True)
    return out.getvalue(), ds.StudyInstanceUID


def stow_as(base, token, data):
    body, boundary = multipart_body([(b"application/dicom", data)])
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
               + boundary.decode(), "Authorization": "Bearer " + token}
    return request(base + "/dicom-web/studies", data=body, headers=headers, method="POST")


def dweb_get(base, token, path):
    return request(base + "/dicom-web" + path,
                   headers={"Authorization": "Bearer " + token,
                            "Accept": "application/dicom+json"})


class Events:
    """A server-sent event stream read on a thread of its own."""

    def __init__(self, base, token, last_id=None):
        headers = {"Authorization": "Bearer " + token, "Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        req = urllib.request.Request(base + "/api/events", headers=headers)
        self.resp = urllib.request.urlopen(req, timeout=120)
        assert self.resp.status == 200
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.events = []
        self.ids = []       # the id of each event (None without one)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        name, data, eid = None, [], None
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("id:"):
                    eid = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    with self.lock:
                        self.events.append((name, json.loads("\n".join(data))))
                        self.ids.append(eid)
                    name, data, eid = None, [], None
        except (OSError, ValueError, AttributeError):
            pass    # closed by close(): http.client drops its file object

    def wait_for(self, pred, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                found = [e for e in self.events if pred(e)]
            if found:
                return found
            time.sleep(0.1)
        with self.lock:
            return [e for e in self.events if pred(e)]

    def close(self):
        # Shut the socket first: the reader thread holds the response's
        # buffer while it waits for the next line (a keep-alive, 15 s).
        try:
            self.resp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        try:
            self.resp.close()
        except OSError:
            pass


class World:
    pass


@pytest.fixture(scope="module")
def world(cloudpacs_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("consult")
    config = tmp / "cloudpacs.ini"
    config.write_text(CONFIG)
    srv = AuthServer(cloudpacs_bin, tmp, services="web,dispatch",
                     extra_env={"CLOUDPACS_CONFIG": str(config)})
    w = World()
    w.srv = srv
    w.base = srv.base
    try:
        centre = api_ok(w.base, "POST", "/api/institutions",
                        {"parent_id": 0, "kind": "centre", "code": "CENTRE",
                         "name": "Reading centre"})
        clinic = api_ok(w.base, "POST", "/api/institutions",
                        {"parent_id": 0, "kind": "clinic", "code": "CLINIC",
                         "name": "Clinic"})
        w.centre, w.clinic = centre["id"], clinic["id"]
        users = {
            "reviewer": (w.centre, ["reviewer"], 3),
            "rad1": (w.centre, ["radiologist"], 2),
            "rad2": (w.centre, ["radiologist"], 2),
            "boss": (w.centre, ["institution_admin"], 0),
            "tech": (w.clinic, ["technician"], 0),
        }
        w.ids = {}
        for name, (inst, roles, title) in users.items():
            u = api_ok(w.base, "POST", "/api/users",
                       {"username": name, "display_name": name.title(),
                        "institution_id": inst, "password": PASSWORD, "roles": roles,
                        "title": title})
            w.ids[name] = u["id"]
        for name in ("rad1", "rad2", "reviewer"):
            api_ok(w.base, "PUT", "/api/users/%d/qualifications" % w.ids[name],
                   [{"modality": "CR", "body_part": "CHEST"},
                    {"modality": "DX", "body_part": "CHEST"}])
            api_ok(w.base, "POST", "/api/contracts",
                   {"user_id": w.ids[name], "requesting_id": w.clinic,
                    "reading_id": w.centre, "start_date": "", "end_date": "",
                    "modalities": ["CR", "DX"], "body_parts": []})
        w.clinic_token = api_ok(w.base, "POST", "/api/tokens",
                                {"name": "clinic-gateway", "institution_id": w.clinic,
                                 "roles": ["technician"]})["token"]
        w.tokens = {}
        for name in users:
            status, body, _ = login(w.base, name)
            assert status == 200, "login of %s: %d %r" % (name, status, body)
            w.tokens[name] = body["token"]
        yield w
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def call(w, who, method, path, body=None):
    return api_call(w.base, method, path, body, token=w.tokens[who])


def ok(w, who, method, path, body=None, want=(200, 201, 204)):
    status, parsed, _ = call(w, who, method, path, body)
    assert status in want, "%s %s as %s: %d %r" % (method, path, who, status, parsed)
    return parsed


def verify_ed25519(public_b64, text, signature_b64, tmp):
    """Checks the signature outside the server: PyNaCl when installed, and openssl."""
    key = base64.b64decode(public_b64)
    sig = base64.b64decode(signature_b64)
    assert len(key) == 32 and len(sig) == 64
    checked = 0
    try:
        import nacl.signing
        nacl.signing.VerifyKey(key).verify(text, sig)
        checked += 1
    except ImportError:
        pass
    if shutil.which("openssl"):
        der = ED25519_SPKI_PREFIX + key
        pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der)
               + b"-----END PUBLIC KEY-----\n")
        (tmp / "pub.pem").write_bytes(pem)
        (tmp / "msg").write_bytes(text)
        (tmp / "sig").write_bytes(sig)
        proc = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                               str(tmp / "pub.pem"), "-rawin", "-in", str(tmp / "msg"),
                               "-sigfile", str(tmp / "sig")], capture_output=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        checked += 1
        (tmp / "msg").write_bytes(text + b"x")
        proc = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                               str(tmp / "pub.pem"), "-rawin", "-in", str(tmp / "msg"),
                               "-sigfile", str(tmp / "sig")], capture_output=True)
        assert proc.returncode != 0, "a changed text must not verify"
    return checked


def wait_order(w, study_uid, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        found = api_ok(w.base, "GET", "/api/orders?study=" + study_uid)["orders"]
        if found:
            return found[0]
        time.sleep(0.3)
    return None


def test_read_review_release(world, tmp_path):
    w = world
    events = Events(w.base, w.tokens["tech"])
    try:
        data, study = make_instance("CR", "PAT-CONSULT-1")
        status, _, body = stow_as(w.base, w.clinic_token, data)
        assert status == 200, body[:300]

        order = ok(w, "tech", "POST", "/api/orders",
                   {"study_uid": study, "body_part": "CHEST", "priority": "routine",
                    "clinical_notes": "cough for three weeks"})
        oid = order["id"]
        assert order["state"] == "pooled" and order["modality"] == "CR"
        assert order["requesting_id"] == w.clinic
        status, again, _ = call(w, "tech", "POST", "/api/orders",
                                {"study_uid": study, "priority": "routine"})
        assert status == 409 and again["reason"] == "exists"

        for rad in ("rad1", "rad2"):
            pool = ok(w, rad, "GET", "/api/pool")["orders"]
            assert oid in [o["id"] for o in pool], (rad, pool)

        results = {}
        barrier = threading.Barrier(2)

        def grab(rad):
            barrier.wait()
            results[rad] = call(w, rad, "POST", "/api/orders/%d/grab" % oid)

        threads = [threading.Thread(target=grab, args=(r,)) for r in ("rad1", "rad2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results.values())
        assert statuses == [200, 409], results
        winner = next(r for r, v in results.items() if v[0] == 200)
        loser = "rad2" if winner == "rad1" else "rad1"
        assert results[loser][1]["reason"] == "gone"
        assert results[winner][1]["state"] == "claimed"
        assert results[winner][1]["doctor_id"] == w.ids[winner]

        assert ok(w, winner, "POST", "/api/orders/%d/open" % oid)["state"] == "claimed"
        status, _, _ = dweb_get(w.base, w.tokens[winner], "/studies/%s/metadata" % study)
        assert status == 200
        status, _, _ = dweb_get(w.base, w.tokens[winner], "/studies/%s/series" % study)
        assert status == 200
        status, _, _ = dweb_get(w.base, w.tokens[loser], "/studies/%s/metadata" % study)
        assert status == 404
        status, _, _ = call(w, loser, "GET", "/api/orders/%d" % oid)
        assert status == 404

        draft = {"findings": "Patchy opacity in the right lower lobe.",
                 "impression": "Pneumonia."}
        ok(w, winner, "PUT", "/api/orders/%d/report/draft" % oid, draft)
        assert ok(w, winner, "GET", "/api/orders/%d/report/draft" % oid)["impression"] == \
            "Pneumonia."
        status, _, _ = call(w, loser, "PUT", "/api/orders/%d/report/draft" % oid, draft)
        assert status in (403, 404)
        status, other, _ = login(w.base, winner)
        assert status == 200
        status, locked, _ = api_call(w.base, "PUT", "/api/orders/%d/report/draft" % oid, draft,
                                     token=other["token"])
        assert status == 423 and locked["reason"] == "locked", locked
        assert locked["holder"] == w.ids[winner]
        assert ok(w, winner, "POST", "/api/orders/%d/report/submit" % oid, {})["state"] == \
            "reported"

        status, _, _ = call(w, "tech", "GET", "/api/orders/%d/report" % oid)
        assert status == 404, "the clinic reads nothing before the release"
        back = ok(w, "reviewer", "POST", "/api/orders/%d/report/review" % oid,
                  {"approve": False, "reason": "Describe the heart size too."})
        assert back["state"] == "returned"

        draft["findings"] += " Heart size normal."
        ok(w, winner, "PUT", "/api/orders/%d/report/draft" % oid, draft)
        ok(w, winner, "POST", "/api/orders/%d/report/submit" % oid, {})
        done = ok(w, "reviewer", "POST", "/api/orders/%d/report/review" % oid,
                  {"approve": True})
        assert done["state"] == "released", done

        seen = ok(w, "tech", "GET", "/api/orders/%d" % oid)
        assert seen["state"] == "released"
        events_named = [h["event"] for h in seen["history"]]
        for e in ("submitted", "grabbed", "opened", "reported", "rejected", "approved",
                  "released"):
            assert e in events_named, (e, events_named)

        report = ok(w, "tech", "GET", "/api/orders/%d/report" % oid)
        assert report["status"] == "released" and report["version"] == 2
        assert report["findings"].endswith("Heart size normal.")
        assert report["signature_valid"] is True
        key = ok(w, "tech", "GET", "/api/report-key")
        assert key["public_key"] == report["public_key"]
        assert "findings: " + report["findings"] in report["signed_text"]
        assert verify_ed25519(key["public_key"], report["signed_text"].encode(),
                              report["signature"], tmp_path) >= 1
        versions = ok(w, winner, "GET", "/api/orders/%d/report/versions" % oid)["versions"]
        assert [v["status"] for v in versions] == ["rejected", "released"]

        end = time.time() + 15
        modalities = []
        while time.time() < end:
            status, _, body = dweb_get(w.base, w.tokens["tech"], "/studies/%s/series" % study)
            assert status == 200
            modalities = [s["00080060"]["Value"][0] for s in json.loads(body)]
            if "SR" in modalities:
                break
            time.sleep(0.3)
        assert "SR" in modalities, modalities

        got = events.wait_for(lambda e: e[0] == "status" and e[1]["order"] == oid
                              and e[1]["state"] == "released")
        assert got, events.events
        states = {e[1]["state"] for e in events.events if e[1]["order"] == oid}
        assert {"pooled", "claimed", "released"} <= states, states
        assert all(e[1]["requesting"] == w.clinic for e in events.events)

        end = time.time() + 10
        types = set()
        while time.time() < end:
            recs = api_ok(w.base, "GET", "/api/audit?event=order_record&limit=500")
            recs = recs["records"] if isinstance(recs, dict) else recs
            types = {r["type"] for r in recs if r.get("object_id") == str(oid)}
            if {"submitted", "grabbed", "rejected", "released"} <= types:
                break
            time.sleep(0.3)
        assert {"submitted", "grabbed", "opened", "reported", "rejected", "approved",
                "released"} <= types, types
    finally:
        events.close()


def test_cancel(world):
    w = world
    data, study = make_instance("CR", "PAT-CONSULT-2")
    status, _, body = stow_as(w.base, w.clinic_token, data)
    assert status == 200, body[:300]
    order = ok(w, "tech", "POST", "/api/orders",
               {"study_uid": study, "body_part": "CHEST", "priority": "urgent",
                "clinical_notes": "fall"})
    status, _, _ = call(w, "tech", "POST", "/api/orders/%d/cancel" % order["id"], {})
    assert status == 400, "a cancellation needs a reason"
    gone = ok(w, "tech", "POST", "/api/orders/%d/cancel" % order["id"],
              {"reason": "sent to another hospital"})
    assert gone["state"] == "cancelled"
    status, body, _ = call(w, "rad1", "POST", "/api/orders/%d/grab" % order["id"])
    assert status in (404, 409), body
    pool = ok(w, "rad1", "GET", "/api/pool")["orders"]
    assert order["id"] not in [o["id"] for o in pool]


def test_automatic_order(world):
    w = world
    data, study = make_instance("DX", "PAT-CONSULT-3")
    status, _, body = stow_as(w.base, w.clinic_token, data)
    assert status == 200, body[:300]
    order = wait_order(w, study)
    assert order is not None, w.srv.log_text()[-3000:]
    assert order["priority"] == "urgent" and order["body_part"] == "CHEST"
    assert order["modality"] == "DX" and order["requested_by"] is None
    assert order["state"] == "pooled"

    other, other_study = make_instance("MR", "PAT-CONSULT-4")
    status, _, body = stow_as(w.base, w.clinic_token, other)
    assert status == 200, body[:300]
    time.sleep(3)
    assert not api_ok(w.base, "GET", "/api/orders?study=" + other_study)["orders"]


def test_roles_and_stats(world):
    w = world
    status, body, _ = call(w, "tech", "GET", "/api/pool")
    assert status == 403, body
    status, body, _ = call(w, "rad1", "PUT", "/api/duty/%d" % w.ids["rad1"],
                           {"until": "2099-01-01T00:00:00Z"})
    assert status == 403, body
    ok(w, "boss", "PUT", "/api/duty/%d" % w.ids["rad1"], {"until": "2099-01-01T00:00:00Z"})
    roster = ok(w, "boss", "GET", "/api/duty")["duty"]
    assert [(d["doctor_id"], d["doctor_name"]) for d in roster] == [(w.ids["rad1"], "Rad1")]
    assert roster[0]["until"].startswith("2099-01-01"), roster
    status, body, _ = call(w, "tech", "GET", "/api/duty")
    assert status == 403, body
    stats = ok(w, "boss", "GET", "/api/stats?group=doctor")
    assert isinstance(stats, list)
    status, _, hdrs = call(w, "boss", "GET", "/api/stats?group=doctor&format=csv")
    assert status == 200 and hdrs["Content-Type"].startswith("text/csv")
    status, _, _ = call(w, "tech", "GET", "/api/stats")
    assert status == 403
    mine = ok(w, "tech", "GET", "/api/orders")["orders"]
    assert mine and all(o["requesting_id"] == w.clinic for o in mine)
    assert ok(w, "boss", "GET", "/api/orders")["orders"]
    page = ok(w, "boss", "GET", "/api/orders?limit=1")
    assert len(page["orders"]) == 1 and page["next_after"] == page["orders"][0]["id"]
    later = ok(w, "boss", "GET", "/api/orders?limit=1&after=%d" % page["next_after"])
    assert later["orders"][0]["id"] > page["orders"][0]["id"]

    pooled = ok(w, "boss", "GET", "/api/orders?state=pooled")["orders"]
    assert pooled, "the automatic order waits in the pool"
    oid = pooled[0]["id"]
    status, _, _ = call(w, "tech", "POST", "/api/orders/%d/assign" % oid,
                        {"doctor_id": w.ids["rad1"]})
    assert status == 403
    offered = ok(w, "boss", "POST", "/api/orders/%d/assign" % oid, {"doctor_id": w.ids["rad1"]})
    assert offered["state"] == "offered" and offered["doctor_id"] == w.ids["rad1"]
    # The answer window (ack_minutes, 2 by default) ends well before the deadline.
    assert offered["offer_expires"] and offered["offer_expires"] < offered["deadline"], offered
    mine = ok(w, "rad1", "GET", "/api/orders?mine=1&state=offered")["orders"]
    assert [o["offer_expires"] for o in mine if o["id"] == oid] == [offered["offer_expires"]]
    status, _, _ = call(w, "rad2", "POST", "/api/orders/%d/answer" % oid, {"accept": True})
    assert status in (403, 404, 409)
    taken = ok(w, "rad1", "POST", "/api/orders/%d/answer" % oid, {"accept": True})
    assert taken["state"] == "claimed" and taken["doctor_id"] == w.ids["rad1"]


def qido_uids(w, token, path, study):
    """The studies a QIDO-RS search of path (limited to study) answers."""
    sep = "&" if "?" in path else "?"
    status, _, body = dweb_get(w.base, token, path + sep + "StudyInstanceUID=" + study)
    assert status == 200, (path, status, body[:300])
    return [r["0020000D"]["Value"][0] for r in json.loads(body)]


def searches(w, token, study):
    """How many rows each level's search answers for the study: studies, series, instances."""
    return (len(qido_uids(w, token, "/studies", study)),
            len(qido_uids(w, token, "/series", study)),
            len(qido_uids(w, token, "/instances", study)))


def test_order_opens_search_and_review(world):
    """
    A reviewer of the centre without a contract with the clinic finds, opens
    and reviews the study of an order awaiting review; a contracted doctor
    who is not the order's reader finds it no more than they may retrieve it.
    """
    w = world
    rev = api_ok(w.base, "POST", "/api/users",
                 {"username": "rev-nocontract", "display_name": "Rev Nocontract",
                  "institution_id": w.centre, "password": PASSWORD, "roles": ["reviewer"],
                  "title": 3})
    status, body, _ = login(w.base, "rev-nocontract")
    assert status == 200, body
    w.tokens["rev-nocontract"], w.ids["rev-nocontract"] = body["token"], rev["id"]

    data, study = make_instance("CR", "PAT-CONSULT-5")
    status, _, body = stow_as(w.base, w.clinic_token, data)
    assert status == 200, body[:300]
    oid = ok(w, "tech", "POST", "/api/orders",
             {"study_uid": study, "body_part": "CHEST", "priority": "routine"})["id"]
    assert searches(w, w.tokens["rad2"], study) == (1, 1, 1), "pooled: the contract shows it"
    assert searches(w, w.tokens["rev-nocontract"], study) == (0, 0, 0)
    assert ok(w, "rad1", "POST", "/api/orders/%d/grab" % oid)["state"] == "claimed"

    assert searches(w, w.tokens["rad1"], study) == (1, 1, 1)
    # rad2 holds a contract but not the order: no search result it could not open.
    assert searches(w, w.tokens["rad2"], study) == (0, 0, 0)
    status, _, _ = dweb_get(w.base, w.tokens["rad2"], "/studies/%s/metadata" % study)
    assert status == 404

    ok(w, "rad1", "PUT", "/api/orders/%d/report/draft" % oid,
       {"findings": "Clear lungs.", "impression": "Normal chest."})
    ok(w, "rad1", "POST", "/api/orders/%d/report/submit" % oid, {})

    reviewer = w.tokens["rev-nocontract"]
    assert searches(w, reviewer, study) == (1, 1, 1), "the order awaiting review opens it"
    status, _, _ = dweb_get(w.base, reviewer, "/studies/%s/metadata" % study)
    assert status == 200
    assert oid in [o["id"] for o in ok(w, "rev-nocontract", "GET",
                                       "/api/orders?state=reported")["orders"]]
    done = ok(w, "rev-nocontract", "POST", "/api/orders/%d/report/review" % oid,
              {"approve": True})
    assert done["state"] == "released", done
    assert done["reviewer_id"] == w.ids["rev-nocontract"]
    # Names beside the ids: the clinic's report names its author and reviewer.
    assert done["doctor_name"] == "Rad1" and done["reviewer_name"] == "Rev Nocontract", done
    assert done["requesting_institution_name"] == "Clinic", done
    assert done["reading_institution_name"] == "Reading centre", done
    report = ok(w, "tech", "GET", "/api/orders/%d/report" % oid)
    assert report["author_name"] == "Rad1" and report["reviewer_name"] == "Rev Nocontract"
    assert report["requesting_institution_name"] == "Clinic", report
    listed = ok(w, "tech", "GET", "/api/orders?study=" + study)["orders"]
    assert listed[0]["doctor_name"] == "Rad1", listed
    # Released, the order opens nothing: without a contract the study is not theirs.
    assert searches(w, reviewer, study) == (0, 0, 0)
    status, _, _ = dweb_get(w.base, reviewer, "/studies/%s/metadata" % study)
    assert status == 404


def test_reconnect_with_last_event_id(world):
    """
    A stream that reconnects with the id of the last event it got is sent
    the events it missed meanwhile, in order, then the live ones; an id the
    stream no longer holds gets one "resync" (reload) instead.
    """
    w = world
    first = Events(w.base, w.tokens["tech"])
    try:
        data, study = make_instance("CR", "PAT-CONSULT-6")
        status, _, body = stow_as(w.base, w.clinic_token, data)
        assert status == 200, body[:300]
        oid = ok(w, "tech", "POST", "/api/orders",
                 {"study_uid": study, "body_part": "CHEST", "priority": "routine"})["id"]
        got = first.wait_for(lambda e: e[0] == "status" and e[1]["order"] == oid)
        assert got, first.events
        with first.lock:
            last_id = [i for e, i in zip(first.events, first.ids)
                       if e[1].get("order") == oid][-1]
        assert last_id and "-" in last_id, first.ids
    finally:
        first.close()

    # While nobody listens: the order is grabbed and given back.
    ok(w, "rad1", "POST", "/api/orders/%d/grab" % oid)
    ok(w, "rad1", "POST", "/api/orders/%d/give-back" % oid, {"reason": "wrong protocol"})

    again = Events(w.base, w.tokens["tech"], last_id=last_id)
    try:
        got = again.wait_for(lambda e: e[0] == "status" and e[1]["order"] == oid
                             and e[1]["event"] == "given_back")
        assert got, again.events
        with again.lock:
            mine = [(e[1]["event"], i) for e, i in zip(again.events, again.ids)
                    if e[1].get("order") == oid]
        events_seen = [e for e, _ in mine]
        assert events_seen.index("grabbed") < events_seen.index("given_back"), mine
        assert last_id not in [i for _, i in mine], "the event it had is not sent again"
    finally:
        again.close()

    stale = Events(w.base, w.tokens["tech"], last_id="1-0")
    try:
        got = stale.wait_for(lambda e: e[0] == "resync")
        assert got, stale.events
    finally:
        stale.close()
    ok(w, "tech", "POST", "/api/orders/%d/cancel" % oid, {"reason": "done testing"})
