"""`cloudpacs audit`: verify, export and list the audit trail (auth/audit.h).

Nothing else writes audit records from the command line yet, so the trail
is made of the records the command writes about itself (event
audit_log_used, actor cli:<login name>): each run of `audit list` adds one.
The tests then export it as JSON lines in the IHE ATNA shape (DICOM PS3.15
A.5), verify it, and change the database behind its back as someone
holding the file would (triggers dropped first) to see verify fail with
exit 1 naming the record.
"""

import json
import sqlite3

from conftest import assert_no_crash, run_cloudpacs


def audit(binary, data_dir, *args):
    proc = run_cloudpacs(binary, ["audit"] + list(args) + ["--data-dir", data_dir])
    assert_no_crash(proc, "audit %s" % " ".join(args))
    return proc


def make_trail(binary, data_dir, runs=4):
    """Runs `audit list` `runs` times: one record each."""
    for _ in range(runs):
        proc = audit(binary, data_dir, "list")
        assert proc.returncode == 0, proc.stderr.decode()


def export(binary, data_dir, *args):
    proc = audit(binary, data_dir, "export", *args)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def tamper(data_dir, *statements):
    db = sqlite3.connect(str(data_dir / "index.sqlite"))
    triggers = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_record'")]
    assert triggers, "the trail has no triggers to drop"
    for name in triggers:
        db.execute('DROP TRIGGER "%s"' % name)
    for sql in statements:
        db.execute(sql)
    db.commit()
    db.close()


def test_export_is_atna_json_lines(cloudpacs_bin, tmp_path):
    make_trail(cloudpacs_bin, tmp_path, 4)
    records = export(cloudpacs_bin, tmp_path)

    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    hashes = set()
    for r in records:
        ev = r["EventIdentification"]
        assert ev["EventID"] == {"csd-code": "110101", "codeSystemName": "DCM",
                                 "originalText": "Audit Log Used"}
        assert ev["EventActionCode"] == "R"
        assert ev["EventOutcomeIndicator"] == 0
        assert ev["EventDateTime"].endswith("Z") and len(ev["EventDateTime"]) == 27
        assert ev["EventTypeCode"][0]["csd-code"] == "list"
        assert ev["EventTypeCode"][0]["codeSystemName"] == "99CLOUDPACS"
        who = r["ActiveParticipant"][0]
        assert who["UserID"].startswith("cli:")
        assert who["UserIsRequestor"] is True
        assert r["AuditSourceIdentification"]["AuditSourceID"] == "cloudpacs"
        obj = r["ParticipantObjectIdentification"][0]
        assert obj["ParticipantObjectTypeCode"] == 2
        assert obj["ParticipantObjectID"].endswith("index.sqlite")
        assert len(r["hash"]) == 64
        hashes.add(r["hash"])
    assert len(hashes) == 4
    # Each list run reports how many records it showed: 0, 1, 2, 3.
    assert [r["cloudpacs"]["detail"]["records"] for r in records] == [0, 1, 2, 3]

    # The export was recorded too, after it ran.
    again = export(cloudpacs_bin, tmp_path)
    assert len(again) == 5
    assert again[4]["EventIdentification"]["EventTypeCode"][0]["csd-code"] == "export"
    assert again[4]["EventIdentification"]["EventID"]["csd-code"] == "110101"


def test_export_filters(cloudpacs_bin, tmp_path):
    make_trail(cloudpacs_bin, tmp_path, 3)
    assert len(export(cloudpacs_bin, tmp_path, "--from", "2000-01-01")) == 3
    assert export(cloudpacs_bin, tmp_path, "--to", "2000-01-01") == []
    assert export(cloudpacs_bin, tmp_path, "--event", "study_deleted") == []
    assert export(cloudpacs_bin, tmp_path, "--actor", "nobody") == []

    # Seven records now: three lists and four exports, each recorded after it ran.
    used = export(cloudpacs_bin, tmp_path, "--event", "audit_log_used")
    assert [r["seq"] for r in used] == list(range(1, 8))
    actor = used[0]["ActiveParticipant"][0]["UserID"]
    assert len(export(cloudpacs_bin, tmp_path, "--actor", actor)) == 8

    # A run about a patient names the patient in the trail.
    assert export(cloudpacs_bin, tmp_path, "--patient", "PID-1") == []
    about = export(cloudpacs_bin, tmp_path, "--patient", "PID-1")
    assert len(about) == 1
    patient = about[0]["ParticipantObjectIdentification"][1]
    assert patient["ParticipantObjectTypeCode"] == 1
    assert patient["ParticipantObjectTypeCodeRole"] == 1
    assert patient["ParticipantObjectIDTypeCode"]["csd-code"] == "2"
    assert patient["ParticipantObjectID"] == "PID-1"


def test_list_newest_first(cloudpacs_bin, tmp_path):
    make_trail(cloudpacs_bin, tmp_path, 5)
    proc = audit(cloudpacs_bin, tmp_path, "list", "--limit", "3")
    assert proc.returncode == 0
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split()[0] == "SEQ"
    assert [int(line.split()[0]) for line in lines[1:]] == [5, 4, 3]
    assert all("audit_log_used" in line for line in lines[1:])


def test_verify_intact(cloudpacs_bin, tmp_path):
    make_trail(cloudpacs_bin, tmp_path, 3)
    proc = audit(cloudpacs_bin, tmp_path, "verify")
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert "intact: 3 records" in proc.stdout.decode()

    # The verification itself is in the trail.
    last = export(cloudpacs_bin, tmp_path)[3]
    assert last["EventIdentification"]["EventTypeCode"][0]["csd-code"] == "verify"
    assert last["EventIdentification"]["EventActionCode"] == "E"
    assert audit(cloudpacs_bin, tmp_path, "verify").returncode == 0


def test_verify_finds_changed_record(cloudpacs_bin, tmp_path):
    make_trail(cloudpacs_bin, tmp_path, 5)
    tamper(tmp_path, "UPDATE audit_record SET actor = 'cli:someone-else' WHERE seq = 3")
    proc = audit(cloudpacs_bin, tmp_path, "verify")
    out = proc.stdout.decode()
    assert proc.returncode == 1, out
    assert "seq 3" in out and "changed" in out

    # The broken chain was recorded as a security alert as well.
    alerts = export(cloudpacs_bin, tmp_path, "--event", "security_alert")
    assert len(alerts) == 1
    assert alerts[0]["cloudpacs"]["detail"]["first_bad_seq"] == 3


def test_verify_finds_removed_records(cloudpacs_bin, tmp_path):
    make_trail(cloudpacs_bin, tmp_path, 5)
    tamper(tmp_path, "DELETE FROM audit_record WHERE seq = 2")
    proc = audit(cloudpacs_bin, tmp_path, "verify")
    assert proc.returncode == 1
    assert "seq 2" in proc.stdout.decode() and "missing" in proc.stdout.decode()

    other = tmp_path / "other"
    other.mkdir()
    make_trail(cloudpacs_bin, other, 5)
    tamper(other, "DELETE FROM audit_record WHERE seq = 5")
    proc = audit(cloudpacs_bin, other, "verify")
    assert proc.returncode == 1
    assert "seq 5" in proc.stdout.decode() and "tail" in proc.stdout.decode()


def test_bad_usage(cloudpacs_bin, tmp_path):
    assert audit(cloudpacs_bin, tmp_path, "frobnicate").returncode == 2
    assert audit(cloudpacs_bin, tmp_path, "export", "--event", "nonsense").returncode == 2
    assert audit(cloudpacs_bin, tmp_path, "export", "--from", "yesterday").returncode == 2
    assert audit(cloudpacs_bin, tmp_path, "list", "--limit", "0").returncode == 2
    assert audit(cloudpacs_bin, tmp_path, "verify", "--actor", "x").returncode == 2
    assert audit(cloudpacs_bin, tmp_path / "absent", "verify").returncode == 1
    proc = run_cloudpacs(cloudpacs_bin, ["audit", "--help"])
    assert proc.returncode == 0 and b"verify" in proc.stdout
