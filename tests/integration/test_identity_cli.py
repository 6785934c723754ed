"""The identity tools end to end: `cloudpacs institution`, `user`, `ae` and
`token` on a fresh data directory, as an operator sets up a reading centre,
a hospital under it and a clinic under that: users of every role, the
separation of the three administrators refused with its exit code and
message, passwords from standard input and from a file, tokens, AEs, the
--json outputs parsed, and the audit trail each change leaves.
"""

import json
import os
import sqlite3
import subprocess

import pytest

from conftest import assert_no_crash

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
ROLES = ("institution_admin", "technician", "radiologist", "reviewer",
         "system_admin", "security_admin", "audit_admin")


class Tool:
    """Runs the binary against one data directory."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir

    def run(self, *args, stdin=None, expect=None):
        env = dict(os.environ)
        env.pop("CLOUDPACS_DATA_DIR", None)
        proc = subprocess.run([str(self.binary)] + [str(a) for a in args] +
                              ["--data-dir", str(self.data_dir)],
                              input=stdin.encode() if stdin is not None else b"",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=60, env=env)
        assert_no_crash(proc, " ".join(str(a) for a in args))
        proc.out = proc.stdout.decode("utf-8")
        proc.err = proc.stderr.decode("utf-8")
        if expect is not None:
            assert proc.returncode == expect, "%s: exit %d\n%s%s" % (
                " ".join(str(a) for a in args), proc.returncode, proc.out, proc.err)
        return proc

    def json(self, *args):
        return json.loads(self.run(*args, "--json", expect=EXIT_OK).out)


@pytest.fixture
def tool(cloudpacs_bin, tmp_path):
    return Tool(cloudpacs_bin, tmp_path / "data")


@pytest.fixture
def tree(tool):
    """A centre, a hospital under it and a clinic under that."""
    tool.run("institution", "add", "--code", "CENTRE", "--name", "Reading Centre",
             "--kind", "centre", expect=EXIT_OK)
    tool.run("institution", "add", "--code", "HOSP", "--name", "City Hospital",
             "--kind", "hospital", "--parent", "CENTRE", expect=EXIT_OK)
    tool.run("institution", "add", "--code", "CLINIC", "--name", "Clinique du Parc",
             "--kind", "clinic", "--parent", "hosp", expect=EXIT_OK)
    return tool


def test_institution_tree(tree):
    rows = tree.json("institution", "list")
    by_code = {r["code"]: r for r in rows}
    assert [r["code"] for r in rows] == ["CENTRE", "HOSP", "CLINIC"]
    assert by_code["CENTRE"]["parent_id"] == 0 and by_code["CENTRE"]["parent"] is None
    assert by_code["HOSP"]["parent_id"] == by_code["CENTRE"]["id"]
    assert by_code["CLINIC"]["parent"] == "HOSP"
    assert by_code["CLINIC"]["kind"] == "clinic"
    assert by_code["CLINIC"]["name"] == "Clinique du Parc"

    dup = tree.run("institution", "add", "--code", "centre", "--name", "Again",
                   "--kind", "centre", expect=EXIT_FAILURE)
    assert "already exists" in dup.err
    missing = tree.run("institution", "add", "--code", "X", "--name", "X", "--kind",
                       "clinic", "--parent", "NOPE", expect=EXIT_FAILURE)
    assert "not found" in missing.err
    tree.run("institution", "add", "--code", "X", "--name", "X", "--kind", "shop",
             expect=EXIT_USAGE)

    # A centre cannot move under its own clinic.
    cycle = tree.run("institution", "update", "CENTRE", "--parent", "CLINIC")
    assert cycle.returncode != EXIT_OK
    assert "subtree" in cycle.err

    tree.run("institution", "update", "CLINIC", "--name", "Parc Clinic", "--disable",
             expect=EXIT_OK)
    clinic = [r for r in tree.json("institution", "list") if r["code"] == "CLINIC"][0]
    assert clinic["disabled"] is True and clinic["name"] == "Parc Clinic"
    tree.run("institution", "update", "CLINIC", "--enable", expect=EXIT_OK)
    tree.run("institution", "update", "NOPE", "--enable", expect=EXIT_FAILURE)


def test_users_of_every_role(tree):
    placed = {"institution_admin": "HOSP", "technician": "CLINIC",
              "radiologist": "CENTRE", "reviewer": "CENTRE", "system_admin": "CENTRE",
              "security_admin": "CENTRE", "audit_admin": "CENTRE"}
    for role in ROLES:
        proc = tree.run("user", "add", "u_" + role, "--institution", placed[role],
                        "--roles", role, "--password-stdin",
                        stdin="Pass-word-%s\n" % role, expect=EXIT_OK)
        assert "password:" not in proc.out

    users = {u["username"]: u for u in tree.json("user", "list")}
    assert set(users) == {"u_" + r for r in ROLES}
    for role in ROLES:
        u = users["u_" + role]
        assert u["roles"] == [role]
        assert u["institution"] == placed[role]
        assert u["disabled"] is False and u["totp_enabled"] is False
        assert u["created"].endswith("Z")

    # The clinic's users, then the hospital's subtree.
    assert [u["username"] for u in tree.json("user", "list", "--institution", "CLINIC")] \
        == ["u_technician"]
    assert {u["username"] for u in tree.json("user", "list", "--institution", "HOSP")} \
        == {"u_technician", "u_institution_admin"}

    # Text listing names every user too.
    text = tree.run("user", "list", expect=EXIT_OK).out
    for role in ROLES:
        assert "u_" + role in text


def test_separation_refused(tree):
    proc = tree.run("user", "add", "mixed", "--institution", "CENTRE", "--roles",
                    "system_admin,radiologist", "--password-stdin", stdin="Pass-word-1\n",
                    expect=EXIT_FAILURE)
    assert "refused" in proc.err
    assert "holds no other role" in proc.err
    proc = tree.run("user", "add", "two", "--institution", "CENTRE", "--roles",
                    "security_admin,audit_admin", "--password-stdin", stdin="Pass-word-1\n",
                    expect=EXIT_FAILURE)
    assert "refused" in proc.err
    assert tree.json("user", "list") == []

    tree.run("user", "add", "dr.li", "--institution", "CENTRE", "--roles", "radiologist",
             "--password-stdin", stdin="Pass-word-1\n", expect=EXIT_OK)
    proc = tree.run("user", "roles", "dr.li", "radiologist,audit_admin", expect=EXIT_FAILURE)
    assert "refused" in proc.err
    tree.run("user", "roles", "dr.li", "radiologist,reviewer", expect=EXIT_OK)
    assert tree.json("user", "list")[0]["roles"] == ["radiologist", "reviewer"]
    bad = tree.run("user", "roles", "dr.li", "radiologist,wizard", expect=EXIT_USAGE)
    assert "wizard" in bad.err
    tree.run("user", "roles", "ghost", "radiologist", expect=EXIT_FAILURE)


def password_of(data_dir, username):
    con = sqlite3.connect("file:%s?mode=ro" % (data_dir / "index.sqlite"), uri=True)
    try:
        return con.execute("SELECT password_hash FROM app_user WHERE username = ?",
                           (username,)).fetchone()[0]
    finally:
        con.close()


def test_passwords(tree, tmp_path):
    # Made and shown once when none is given.
    proc = tree.run("user", "add", "made", "--institution", "CLINIC", "--roles",
                    "technician", expect=EXIT_OK)
    made = [line.split(": ", 1)[1] for line in proc.out.splitlines()
            if line.startswith("password: ")]
    assert len(made) == 1 and len(made[0]) >= 16
    stored = password_of(tree.data_dir, "made")
    assert stored.startswith("$argon2id$") and made[0] not in stored

    # From stdin; a weak one is refused and nothing is created.
    weak = tree.run("user", "add", "weak", "--institution", "CLINIC", "--roles",
                    "technician", "--password-stdin", stdin="short\n", expect=EXIT_USAGE)
    assert "password" in weak.err
    assert "weak" not in {u["username"] for u in tree.json("user", "list")}

    # From a file, then changed from stdin.
    pw = tmp_path / "pw.txt"
    pw.write_text("Correct horse 7\n")
    tree.run("user", "add", "filed", "--institution", "CLINIC", "--roles", "technician",
             "--password-file", pw, expect=EXIT_OK)
    first = password_of(tree.data_dir, "filed")
    proc = tree.run("user", "passwd", "filed", "--password-stdin",
                    stdin="Another horse 8\n", expect=EXIT_OK)
    assert "password:" not in proc.out
    assert password_of(tree.data_dir, "filed") != first
    tree.run("user", "passwd", "ghost", "--password-stdin", stdin="Another horse 8\n",
             expect=EXIT_FAILURE)
    tree.run("user", "add", "nofile", "--institution", "CLINIC", "--roles", "technician",
             "--password-file", tmp_path / "absent", expect=EXIT_FAILURE)

    dup = tree.run("user", "add", "FILED", "--institution", "CLINIC", "--roles",
                   "technician", "--password-stdin", stdin="Correct horse 7\n",
                   expect=EXIT_FAILURE)
    assert "already exists" in dup.err


def test_user_changes(tree):
    tree.run("user", "add", "dr.chen", "--institution", "CENTRE", "--roles", "radiologist",
             "--name", "Chen Jing", "--title", "2", "--password-stdin",
             stdin="Pass-word-1\n", expect=EXIT_OK)
    u = tree.json("user", "list")[0]
    assert u["display_name"] == "Chen Jing" and u["title"] == 2
    version = u["profile_version"]

    tree.run("user", "disable", "dr.chen", expect=EXIT_OK)
    u = tree.json("user", "list")[0]
    assert u["disabled"] is True and u["profile_version"] > version
    tree.run("user", "enable", "dr.chen", expect=EXIT_OK)
    assert tree.json("user", "list")[0]["disabled"] is False

    tree.run("user", "qualify", "dr.chen", "CT:HEAD,cr:*", expect=EXIT_OK)
    tree.run("user", "qualify", "dr.chen", "CT", expect=EXIT_USAGE)
    tree.run("user", "totp-reset", "dr.chen", expect=EXIT_OK)
    assert (tree.data_dir / "secret.key").stat().st_size == 32
    assert oct((tree.data_dir / "secret.key").stat().st_mode & 0o777) == "0o600"
    tree.run("user", "disable", "ghost", expect=EXIT_FAILURE)
    tree.run("user", "frobnicate", "dr.chen", expect=EXIT_USAGE)


def test_aes(tree):
    tree.run("ae", "add", "CT_SCANNER", "--institution", "CLINIC", "--host", "10.1.2.3",
             "--port", "104", "--allow", "store,query", expect=EXIT_OK)
    tree.run("ae", "add", "WORKSTATION", "--institution", "CENTRE", "--allow",
             "store,query,retrieve", expect=EXIT_OK)
    aes = {a["title"]: a for a in tree.json("ae", "list")}
    assert set(aes) == {"CT_SCANNER", "WORKSTATION"}
    assert aes["CT_SCANNER"]["institution"] == "CLINIC"
    assert aes["CT_SCANNER"]["host"] == "10.1.2.3" and aes["CT_SCANNER"]["port"] == 104
    assert aes["CT_SCANNER"]["allow"] == "store,query"

    again = tree.run("ae", "add", "CT_SCANNER", "--institution", "CLINIC", expect=EXIT_FAILURE)
    assert "already exists" in again.err
    tree.run("ae", "add", "CT_SCANNER", "--institution", "HOSP", "--replace", expect=EXIT_OK)
    assert {a["title"]: a for a in tree.json("ae", "list")}["CT_SCANNER"]["institution"] \
        == "HOSP"
    tree.run("ae", "add", "BAD", "--institution", "CLINIC", "--allow", "delete",
             expect=EXIT_USAGE)
    tree.run("ae", "add", "X", "--institution", "CLINIC", "--port", "99999",
             expect=EXIT_USAGE)
    tree.run("ae", "add", "X", "--institution", "NOPE", expect=EXIT_FAILURE)

    tree.run("ae", "remove", "CT_SCANNER", expect=EXIT_OK)
    gone = tree.run("ae", "remove", "CT_SCANNER", expect=EXIT_FAILURE)
    assert "not found" in gone.err
    assert [a["title"] for a in tree.json("ae", "list")] == ["WORKSTATION"]


def test_tokens(tree):
    proc = tree.run("token", "create", "--name", "CT gateway", "--institution", "CLINIC",
                    "--roles", "technician", "--expires-days", "30", expect=EXIT_OK)
    token = proc.out.strip()
    assert token.startswith("cpat_") and len(token) == 48
    tree.run("token", "create", "--name", "HIS", "--institution", "HOSP", "--roles",
             "technician,radiologist", expect=EXIT_OK)

    refused = tree.run("token", "create", "--name", "bad", "--institution", "HOSP",
                       "--roles", "system_admin", expect=EXIT_FAILURE)
    assert "refused" in refused.err

    tokens = tree.json("token", "list")
    assert [t["name"] for t in tokens] == ["CT gateway", "HIS"]
    assert tokens[0]["institution"] == "CLINIC" and tokens[0]["roles"] == ["technician"]
    assert tokens[0]["expires"] is not None and tokens[1]["expires"] is None
    assert all(t["state"] == "active" for t in tokens)
    assert token not in json.dumps(tokens)

    # Only the hash is kept.
    con = sqlite3.connect("file:%s?mode=ro" % (tree.data_dir / "index.sqlite"), uri=True)
    try:
        hashes = [row[0] for row in con.execute("SELECT token_hash FROM api_token")]
    finally:
        con.close()
    assert token not in hashes and all(len(h) == 64 for h in hashes)

    tree.run("token", "revoke", str(tokens[0]["id"]), expect=EXIT_OK)
    assert tree.json("token", "list")[0]["state"] == "revoked"
    missing = tree.run("token", "revoke", "999", expect=EXIT_FAILURE)
    assert "not found" in missing.err
    tree.run("token", "revoke", "abc", expect=EXIT_USAGE)


def test_audit_trail_and_help(tree, cloudpacs_bin):
    tree.run("user", "add", "dr.wu", "--institution", "CENTRE", "--roles", "radiologist",
             "--password-stdin", stdin="Pass-word-1\n", expect=EXIT_OK)
    tree.run("user", "roles", "dr.wu", "reviewer", expect=EXIT_OK)

    con = sqlite3.connect("file:%s?mode=ro" % (tree.data_dir / "index.sqlite"), uri=True)
    try:
        columns = [r[1] for r in con.execute("PRAGMA table_info(audit_record)")]
        rows = [dict(zip(columns, r)) for r in con.execute("SELECT * FROM audit_record")]
    finally:
        con.close()
    text = json.dumps(rows, default=lambda v: v.hex())
    for kind in ("institution_created", "user_created", "roles_changed"):
        assert kind in text
    assert "cli:" in text
    assert "Pass-word-1" not in text
    tree.run("audit", "verify", expect=EXIT_OK)

    for command in ("institution", "user", "ae", "token"):
        proc = subprocess.run([str(cloudpacs_bin), command, "--help"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)
        assert proc.returncode == EXIT_OK
        assert b"--data-dir" in proc.stdout and b"--config" in proc.stdout
        proc = subprocess.run([str(cloudpacs_bin), command, "list", "--help"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert proc.returncode == EXIT_OK and b"usage:" in proc.stdout


def test_config_and_environment(cloudpacs_bin, tmp_path):
    """The data directory comes from --config's [core] data_dir or the environment."""
    data = tmp_path / "from-config"
    conf = tmp_path / "cloudpacs.conf"
    conf.write_text("[core]\ndata_dir = %s\n" % data)
    env = dict(os.environ)
    env.pop("CLOUDPACS_DATA_DIR", None)
    proc = subprocess.run([str(cloudpacs_bin), "institution", "add", "--config", conf,
                           "--code", "C", "--name", "C", "--kind", "centre"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert (data / "index.sqlite").exists()

    env["CLOUDPACS_DATA_DIR"] = str(tmp_path / "from-env")
    proc = subprocess.run([str(cloudpacs_bin), "institution", "list", "--json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert json.loads(proc.stdout) == []
    assert (tmp_path / "from-env" / "index.sqlite").exists()

    proc = subprocess.run([str(cloudpacs_bin), "institution", "list", "--config",
                           tmp_path / "absent.conf"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=60)
    assert proc.returncode == 4
