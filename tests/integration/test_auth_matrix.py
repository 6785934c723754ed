"""Who may see and do what over HTTP: every DICOMweb route and the REST API
called by every kind of principal, table-driven, one test per cell.

The world: a reading centre, hospital A with its clinic A1, hospital B
(tree of institutions made through the REST API with the service token);
studies stored through STOW-RS with an API token of each institution (so
that each study belongs to the institution that sent it): a CR and a CT of
A, an MR of A1, a CR of B; users of every role, and a radiologist of the
centre contracted with A for CR only. Each principal then calls each route;
the answer must be what the rules (src/auth/policy.h) say: 401 without or
with a wrong token, 403 for a role that reads no studies or may not do the
action, 404 for a study the principal may not see (never 403: an answer
must not tell that a hidden study exists), and filtered search results.
"""

import io
import json
import urllib.parse

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import PYDICOM_DATA, SERVICE_TOKEN, api_call, api_ok
from test_auth_http import PASSWORD, AuthServer, login
from test_dicomweb import multipart_body, request

CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"

# Institutions: code -> (kind, parent code or None).
TREE = {
    "CENTRE": ("centre", None),
    "HOSPA": ("hospital", None),
    "CLINA1": ("clinic", "HOSPA"),
    "HOSPB": ("hospital", None),
}

# The base studies: name -> (institution code, modality).
STUDIES = {
    "A_CR": ("HOSPA", "CR"),
    "A_CT": ("HOSPA", "CT"),
    "A1_MR": ("CLINA1", "MR"),
    "B_CR": ("HOSPB", "CR"),
}

# Users: name -> (institution, roles).
USERS = {
    "admin_a": ("HOSPA", ["institution_admin"]),
    "tech_a": ("HOSPA", ["technician"]),
    "tech_a1": ("CLINA1", ["technician"]),
    "tech_b": ("HOSPB", ["technician"]),
    "radiologist": ("CENTRE", ["radiologist"]),
    "reviewer": ("CENTRE", ["reviewer"]),
    "sys_admin": ("CENTRE", ["system_admin"]),
    "sec_admin": ("CENTRE", ["security_admin"]),
    "audit_admin": ("CENTRE", ["audit_admin"]),
}

# Principals that are not users.
OTHERS = ["service", "token_a1", "anonymous", "wrong_token"]
PRINCIPALS = list(USERS) + OTHERS

# The studies each principal sees; None: it reads no studies (403).
VISIBLE = {
    "service": set(STUDIES),
    "admin_a": {"A_CR", "A_CT", "A1_MR"},
    "tech_a": {"A_CR", "A_CT", "A1_MR"},
    "tech_a1": {"A1_MR"},
    "token_a1": {"A1_MR"},
    "tech_b": {"B_CR"},
    "radiologist": {"A_CR"},
    "reviewer": set(),
    "sys_admin": None,
    "sec_admin": None,
    "audit_admin": None,
}
STORES = {"service", "admin_a", "tech_a", "tech_a1", "token_a1", "tech_b"}


def make_instance(modality, patient_id):
    """CT_small with UIDs of its own, as a Part 10 file's bytes."""
    ds = pydicom.dcmread(str(CT_SMALL))
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, write_like_original=True)
    return out.getvalue(), (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def stow_as(base, token, data):
    body, boundary = multipart_body([(b"application/dicom", data)])
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary='
               + boundary.decode(), "Authorization": None if token is None
               else "Bearer " + token}
    return request(base + "/dicom-web/studies", data=body, headers=headers, method="POST")


class World:
    pass


@pytest.fixture(scope="module")
def world(cloudpacs_bin, tmp_path_factory):
    srv = AuthServer(cloudpacs_bin, tmp_path_factory.mktemp("authmatrix"))
    w = World()
    w.srv = srv
    w.base = srv.base
    try:
        w.inst = {}
        for code, (kind, parent) in TREE.items():
            inst = api_ok(w.base, "POST", "/api/institutions",
                          {"parent_id": w.inst[parent] if parent else 0, "kind": kind,
                           "code": code, "name": "Institution " + code})
            w.inst[code] = inst["id"]

        w.user_ids = {}
        for name, (code, roles) in USERS.items():
            user = api_ok(w.base, "POST", "/api/users",
                          {"username": name, "display_name": name,
                           "institution_id": w.inst[code], "password": PASSWORD,
                           "roles": roles})
            w.user_ids[name] = user["id"]
        api_ok(w.base, "POST", "/api/contracts",
               {"user_id": w.user_ids["radiologist"], "requesting_id": w.inst["HOSPA"],
                "reading_id": w.inst["CENTRE"], "start_date": "", "end_date": "",
                "modalities": ["CR"], "body_parts": []})

        w.store_tokens = {}
        for code in ("HOSPA", "CLINA1", "HOSPB"):
            tok = api_ok(w.base, "POST", "/api/tokens",
                         {"name": "gateway-" + code, "institution_id": w.inst[code],
                          "roles": ["technician"]})
            w.store_tokens[code] = tok["token"]

        w.studies = {}
        for name, (code, modality) in STUDIES.items():
            data, uids = make_instance(modality, "PAT-" + name)
            status, _, body = stow_as(w.base, w.store_tokens[code], data)
            assert status == 200, "STOW of %s for %s: %d %s" % (name, code, status, body[:300])
            w.studies[name] = uids

        w.tokens = {"service": SERVICE_TOKEN, "token_a1": w.store_tokens["CLINA1"],
                    "anonymous": None, "wrong_token": "cps_" + "Q" * 43}
        for name in USERS:
            status, body, _ = login(w.base, name)
            assert status == 200, "login of %s: %d %r" % (name, status, body)
            w.tokens[name] = body["token"]
        yield w
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]


def get(w, who, path, accept=None):
    token = w.tokens[who]
    headers = {"Authorization": None if token is None else "Bearer " + token}
    if accept:
        headers["Accept"] = accept
    return request(w.base + path, headers=headers)


def expected_retrieve(who, study):
    """The status a retrieval of study by who must get."""
    if who in ("anonymous", "wrong_token"):
        return 401
    if VISIBLE[who] is None:
        return 403
    return 200 if study in VISIBLE[who] else 404


# --- DICOMweb ------------------------------------------------------------------------

def study_path(w, name):
    return "/dicom-web/studies/%s" % w.studies[name][0]


def instance_path(w, name):
    study, series, sop = w.studies[name]
    return "/dicom-web/studies/%s/series/%s/instances/%s" % (study, series, sop)


# Retrievals: route name -> (path maker, Accept).
RETRIEVALS = {
    "metadata": (lambda w, s: study_path(w, s) + "/metadata", None),
    "series_metadata": (lambda w, s: "/dicom-web/studies/%s/series/%s/metadata"
                        % w.studies[s][:2], None),
    "study": (lambda w, s: study_path(w, s),
              'multipart/related; type="application/dicom"'),
    "instance": (lambda w, s: instance_path(w, s),
                 'multipart/related; type="application/dicom"'),
    "frames": (lambda w, s: instance_path(w, s) + "/frames/1",
               'multipart/related; type="application/octet-stream"'),
    "rendered": (lambda w, s: instance_path(w, s) + "/rendered", "image/jpeg"),
    "frame_rendered": (lambda w, s: instance_path(w, s) + "/frames/1/rendered", "image/png"),
    "thumbnail": (lambda w, s: study_path(w, s) + "/thumbnail", "image/jpeg"),
    "series_thumbnail": (lambda w, s: "/dicom-web/studies/%s/series/%s/thumbnail"
                         % w.studies[s][:2], "image/jpeg"),
    "wado_uri": (lambda w, s: "/wado?" + urllib.parse.urlencode({
        "requestType": "WADO", "studyUID": w.studies[s][0], "seriesUID": w.studies[s][1],
        "objectUID": w.studies[s][2], "contentType": "application/dicom"}), None),
}


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("route", list(RETRIEVALS))
def test_retrieve(world, who, route):
    make, accept = RETRIEVALS[route]
    wrong = []
    for study in STUDIES:
        status, _, body = get(world, who, make(world, study), accept)
        want = expected_retrieve(who, study)
        if status != want:
            wrong.append("%s: got %d, want %d (%s)" % (study, status, want,
                                                       body[:120].decode(errors="replace")))
    assert not wrong, "%s as %s:\n  %s" % (route, who, "\n  ".join(wrong))


def study_uids_of(answer):
    return {item["0020000D"]["Value"][0] for item in answer if "0020000D" in item}


# Searches: route name -> path maker (None: one search over everything).
SEARCHES = {
    "qido_studies": None,
    "qido_instances_all": None,
    "qido_series_of_study": lambda w, s: study_path(w, s) + "/series",
    "qido_instances_of_study": lambda w, s: study_path(w, s) + "/instances",
    "qido_instances_of_series": lambda w, s: "/dicom-web/studies/%s/series/%s/instances"
                                             % w.studies[s][:2],
}


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("route", list(SEARCHES))
def test_search(world, who, route):
    base_uids = {world.studies[s][0]: s for s in STUDIES}
    paths = ([("*", "/dicom-web/studies" if route == "qido_studies"
               else "/dicom-web/instances")] if SEARCHES[route] is None
             else [(s, SEARCHES[route](world, s)) for s in STUDIES])
    for study, path in paths:
        status, _, body = get(world, who, path)
        if who in ("anonymous", "wrong_token"):
            assert status == 401, "%s as %s: got %d, want 401" % (path, who, status)
            continue
        if VISIBLE[who] is None:
            assert status == 403, "%s as %s: got %d, want 403" % (path, who, status)
            continue
        assert status == 200, "%s as %s: got %d %s" % (path, who, status, body[:200])
        seen = {base_uids[u] for u in study_uids_of(json.loads(body)) if u in base_uids}
        want = VISIBLE[who] if study == "*" else VISIBLE[who] & {study}
        assert seen == want, "%s as %s: sees %s, should see %s" % (
            route, who, sorted(seen), sorted(want))


@pytest.mark.parametrize("who", PRINCIPALS)
def test_stow(world, who):
    data, (study, _, _) = make_instance("OT", "PAT-STOW-" + who)
    token = world.tokens[who]
    status, _, body = stow_as(world.base, token, data)
    want = (401 if who in ("anonymous", "wrong_token") else 200 if who in STORES else 403)
    assert status == want, "STOW as %s: got %d, want %d (%s)" % (
        who, status, want, body[:200].decode(errors="replace"))
    if want != 200 or who == "service":
        return

    # What it stored is its institution's: its own see it, B or A do not.
    own = {"admin_a": "HOSPA", "tech_a": "HOSPA", "tech_a1": "CLINA1", "token_a1": "CLINA1",
           "tech_b": "HOSPB"}[who]
    for other, sees in (("tech_a", own in ("HOSPA", "CLINA1")), ("tech_b", own == "HOSPB"),
                        ("tech_a1", own == "CLINA1")):
        status, _, _ = get(world, other, "/dicom-web/studies/%s/metadata" % study)
        assert status == (200 if sees else 404), (
            "a study stored by %s (%s): metadata as %s got %d" % (who, own, other, status))


# --- the REST API ------------------------------------------------------------------

def body_institution(w, who):
    return {"parent_id": w.inst["HOSPA"], "kind": "clinic",
            "code": "NEW" + who.upper().replace("_", "")[:20], "name": "made by " + who}


def body_user(w, who):
    return {"username": "new." + who, "display_name": "made by " + who,
            "institution_id": w.inst["CLINA1"], "password": PASSWORD,
            "roles": ["technician"]}


def body_token(w, who):
    return {"name": "made-by-" + who, "institution_id": w.inst["HOSPB"],
            "roles": ["technician"]}


ALL_USERS = set(USERS)
SYS = {"service", "sys_admin"}

# name -> (method, path maker, body maker or None, who succeeds, success status).
API_ROUTES = {
    "get_me": ("GET", lambda w, who: "/api/me", None, ALL_USERS, 200),
    "list_institutions": ("GET", lambda w, who: "/api/institutions", None,
                          ALL_USERS | {"service", "token_a1"}, 200),
    "create_institution": ("POST", lambda w, who: "/api/institutions", body_institution,
                           SYS | {"admin_a"}, 201),
    "update_institution": ("PATCH", lambda w, who: "/api/institutions/%d" % w.inst["CLINA1"],
                           lambda w, who: {"name": "Clinic A1 (%s)" % who},
                           SYS | {"admin_a"}, 200),
    "create_user": ("POST", lambda w, who: "/api/users", body_user, SYS | {"admin_a"}, 201),
    "get_user": ("GET", lambda w, who: "/api/users/%d" % w.user_ids["tech_a1"], None,
                 SYS | {"admin_a", "sec_admin", "tech_a1"}, 200),
    "unlock_user": ("POST", lambda w, who: "/api/users/%d/unlock" % w.user_ids["tech_b"],
                    None, {"service", "sec_admin"}, 204),
    "list_tokens": ("GET", lambda w, who: "/api/tokens", None, SYS, 200),
    "create_token": ("POST", lambda w, who: "/api/tokens", body_token, SYS, 201),
    "list_aes": ("GET", lambda w, who: "/api/aes", None, SYS, 200),
    "put_ae": ("PUT", lambda w, who: "/api/aes/AE%s" % who.upper().replace("_", "")[:12],
               lambda w, who: {"institution_id": w.inst["HOSPB"], "host": "127.0.0.1",
                               "port": 104, "allow": "store"}, SYS, 200),
    "audit": ("GET", lambda w, who: "/api/audit", None, {"service", "audit_admin"}, 200),
    "audit_verify": ("GET", lambda w, who: "/api/audit/verify", None,
                     {"service", "audit_admin"}, 200),
}

# Cells the rules leave to the API's reading of who "me" is.
API_SKIP = {("get_me", "service"), ("get_me", "token_a1")}


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("route", list(API_ROUTES))
def test_api(world, who, route):
    if (route, who) in API_SKIP:
        pytest.skip("no user behind this principal")
    method, path_of, body_of, allowed, ok = API_ROUTES[route]
    path = path_of(world, who)
    body = body_of(world, who) if body_of else None
    token = world.tokens[who]
    status, answer, _ = api_call(world.base, method, path, body,
                                 token=token if token is not None else None)
    want = 401 if who in ("anonymous", "wrong_token") else ok if who in allowed else 403
    assert status == want, "%s %s as %s: got %d, want %d (%r)" % (
        method, path, who, status, want, answer)


def test_radiologist_audit_trail(world):
    """A radiologist's look at A's CR study is in the trail, with the Patient ID."""
    status, _, _ = get(world, "radiologist", study_path(world, "A_CR") + "/metadata")
    assert status == 200
    st, body, _ = api_call(world.base, "GET", "/api/audit?study=%s&limit=50"
                           % world.studies["A_CR"][0])
    assert st == 200, (st, body)
    mine = [r for r in body["records"] if r["actor"] == "radiologist"
            and r["event"] == "instances_accessed"]
    assert mine, "no instances_accessed record of the radiologist: %r" % body["records"][:5]
    assert mine[0]["patient_id"] == "PAT-A_CR", mine[0]
    assert mine[0]["object_id"] == world.studies["A_CR"][0], mine[0]


def test_frames_audited_once_per_session(world):
    """Frames, rendered pictures and thumbnails: one record per session and study."""
    name = "A1_MR"
    for _ in range(5):
        for route in ("frames", "rendered", "thumbnail"):
            make, accept = RETRIEVALS[route]
            status, _, _ = get(world, "tech_a1", make(world, name), accept)
            assert status == 200, route
    st, body, _ = api_call(world.base, "GET", "/api/audit?study=%s&actor=tech_a1&limit=100"
                           % world.studies[name][0])
    assert st == 200, (st, body)
    views = [r for r in body["records"] if r["type"] in ("frames", "rendered")]
    assert len(views) == 1, "15 frame/rendered/thumbnail requests made %d records: %r" % (
        len(views), views)


def test_qido_audited(world):
    status, _, _ = get(world, "tech_b", "/dicom-web/studies?PatientID=PAT-B_CR")
    assert status == 200
    st, body, _ = api_call(world.base, "GET", "/api/audit?actor=tech_b&event=query&limit=10")
    assert st == 200, (st, body)
    assert any("PatientID=PAT-B_CR" in r["object_id"] for r in body["records"]), body
