"""The behaviour of `cloudpacs dump` as a command: options, exit codes,
messages, malformed and hostile inputs, and text from the field whose
character set is wrong or missing.

Exit codes (src/cli/cli.h): 0 ok, 1 cannot open or read, 2 usage, 3 a file
was malformed (the partial data set is still printed, and stderr names the
byte offset and the tag).
"""

import random
import re

import pytest
from pydicom.dataelem import DataElement
from pydicom.valuerep import PersonName

from conftest import PYDICOM_DATA, TAG_RE, assert_malformed_message
from dicomgen import nested_sequence_bomb, new_dataset, part10, walk_explicit_le, write_pydicom
from jsoncompare import load_json

TEST_FILES = PYDICOM_DATA / "test_files"
# Explicit VR little endian, sequences of defined length: easy to cut.
CUT_SOURCE = TEST_FILES / "test-SR.dcm"

NAME = "王^小明"
INSTITUTION = "北京协和医院"
GUESS_RE = re.compile(r"guess|mislabel|detect", re.IGNORECASE)


def _json_lines(stdout):
    return [load_json(line) for line in stdout.decode("utf-8").splitlines() if line.strip()]


# --- options and exit codes ----------------------------------------------

def test_help_exits_0(run):
    for args in (("--help",), ("dump", "--help"), ("dump", "-h")):
        proc = run(*args)
        assert proc.returncode == 0, args
        assert b"usage" in proc.stdout.lower(), args
    assert b"--json" in run("dump", "--help").stdout


def test_no_arguments_exit_2(run):
    proc = run()
    assert proc.returncode == 2
    assert proc.stderr.strip(), "a usage error says something on stderr"


def test_dump_without_file_exits_2(run):
    proc = run("dump")
    assert proc.returncode == 2
    assert proc.stderr.strip()


def test_unknown_option_exits_2(run):
    proc = run("dump", "--no-such-option", str(CUT_SOURCE))
    assert proc.returncode == 2
    assert b"--no-such-option" in proc.stderr


def test_unknown_charset_exits_2(run):
    proc = run("dump", "--charset", "NO-SUCH-SET", str(CUT_SOURCE))
    assert proc.returncode == 2
    assert b"NO-SUCH-SET" in proc.stderr


def test_missing_file_exits_1(run, tmp_path):
    missing = tmp_path / "does-not-exist.dcm"
    proc = run("dump", "--json", str(missing))
    assert proc.returncode == 1
    assert str(missing).encode() in proc.stderr
    assert proc.stdout == b""


def test_directory_exits_1(run, tmp_path):
    proc = run("dump", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert str(tmp_path).encode() in proc.stderr


def test_empty_file_exits_3(run, tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    for args in (("dump", str(empty)), ("dump", "--json", str(empty))):
        proc = run(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert proc.stderr.strip(), "a malformed file is reported on stderr"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage_exits_3(run, tmp_path, seed):
    rng = random.Random(seed)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    path = tmp_path / "garbage.bin"
    path.write_bytes(garbage)
    proc = run("dump", "--json", str(path))
    assert proc.returncode == 3, proc.stderr
    assert_malformed_message(proc, "garbage")

    # The same garbage behind a valid preamble and DICM.
    path.write_bytes(b"\0" * 128 + b"DICM" + garbage)
    proc = run("dump", "--json", str(path))
    assert_malformed_message(proc, "garbage after DICM")


def test_pretty_is_the_same_json(run):
    compact = run("dump", "--json", str(CUT_SOURCE))
    pretty = run("dump", "--json", "--pretty", str(CUT_SOURCE))
    assert compact.returncode == pretty.returncode == 0
    assert len(compact.stdout.strip().splitlines()) == 1, "compact JSON is one line"
    assert len(pretty.stdout.strip().splitlines()) > 10, "pretty JSON is indented"
    assert load_json(compact.stdout) == load_json(pretty.stdout)


def test_several_files_one_json_line_each(run):
    files = [TEST_FILES / "CT_small.dcm", TEST_FILES / "MR_small.dcm", CUT_SOURCE]
    proc = run("dump", "--json", *files)
    assert proc.returncode == 0, proc.stderr
    objs = _json_lines(proc.stdout)
    assert len(objs) == 3
    for obj, path in zip(objs, files):
        single = run("dump", "--json", path)
        assert obj == load_json(single.stdout), path


def test_malformed_file_among_good_ones(run, tmp_path):
    cut = tmp_path / "cut.dcm"
    data = CUT_SOURCE.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    proc = run("dump", "--json", str(TEST_FILES / "CT_small.dcm"), str(cut),
               str(TEST_FILES / "MR_small.dcm"))
    assert_malformed_message(proc, "good, cut, good")
    objs = _json_lines(proc.stdout)
    assert len(objs) == 3, "every file gets its object, the cut one partial"
    assert "00100010" in objs[0] and "00100010" in objs[2]


def test_no_pixel_leaves_pixel_data_out(run):
    """Reading stops before (7FE0,0010): it and what follows are left out."""
    path = TEST_FILES / "CT_small.dcm"
    full = load_json(run("dump", "--json", path).stdout)
    proc = run("dump", "--json", "--no-pixel", path)
    assert proc.returncode == 0, proc.stderr
    cut = load_json(proc.stdout)
    assert "7FE00010" in full and "7FE00010" not in cut
    assert set(full) - set(cut) == {k for k in full if k >= "7FE00010"}
    assert all(cut[k] == full[k] for k in cut)


def test_text_dump_of_every_kind_of_file(run):
    """The listing runs on very different files and shows their elements."""
    for name in ("CT_small.dcm", "ExplVR_BigEnd.dcm", "image_dfl.dcm", "rtplan.dcm",
                 "MR_small_implicit.dcm", "UN_sequence.dcm", "JPEG2000.dcm"):
        proc = run("dump", TEST_FILES / name)
        assert proc.returncode == 0, (name, proc.stderr)
        listing = proc.stdout.decode("utf-8")
        assert len(TAG_RE.findall(listing)) >= 5, (name, listing[:500])


# --- cut files ---------------------------------------------------------------

def _cut_points():
    """Where to cut CUT_SOURCE: name -> (offset, tags wholly before the cut)."""
    data = CUT_SOURCE.read_bytes()
    elements = walk_explicit_le(data)
    top = [e for e in elements if e[0] == 0 and e[1] >> 16 != 0x0002]
    meta = [e for e in elements if e[1] >> 16 == 0x0002]
    seq = next(e for e in top if e[2] == "SQ" and e[5] > 0)
    inner = next(e for e in elements if e[0] == 1 and e[4] > seq[4] and e[5] >= 4)
    long_value = next(e for e in top[4:] if e[2] != "SQ" and e[5] >= 10)
    header = top[6]
    points = {
        "meta_group": meta[2][4] + 3,
        "element_header": header[3] + 5,
        "value": long_value[4] + long_value[5] // 2,
        "sequence": inner[4] + 1,
    }
    before = {}
    for name, cut in points.items():
        before[name] = [e[1] for e in top if e[4] + e[5] <= cut and e[2] != "SQ"]
    return data, points, before, seq[1]


@pytest.mark.parametrize("where", ["meta_group",
                                   "element_header",
                                   "value", "sequence"])
def test_cut_file_exits_3_with_partial_dump(run, tmp_path, where):
    data, points, before, seq_tag = _cut_points()
    path = tmp_path / ("cut-%s.dcm" % where)
    path.write_bytes(data[:points[where]])

    proc = run("dump", "--json", str(path))
    assert_malformed_message(proc, "cut in the " + where)
    if where == "meta_group":
        if proc.stdout.strip():
            load_json(proc.stdout)
        return
    obj = load_json(proc.stdout)
    want = {"%08X" % t for t in before[where] if t & 0xFFFF}
    assert want, "the cut leaves whole elements before it"
    assert want <= set(obj), "partial dump lacks %s" % sorted(want - set(obj))
    if where == "sequence":
        assert "%08X" % seq_tag in obj, "the sequence the cut is in is printed"

    text = run("dump", str(path))
    assert_malformed_message(text, "text dump cut in the " + where)
    assert b"0008,0016" in text.stdout.upper(), "the text dump is partial, not empty"


# --- hostile nesting -----------------------------------------------------------

@pytest.mark.parametrize("defined", [False, True], ids=["undefined_length", "defined_length"])
def test_sequence_bomb_100_levels(run, tmp_path, defined):
    path = tmp_path / "bomb.dcm"
    path.write_bytes(part10(nested_sequence_bomb(100, defined_lengths=defined)))
    for args in (("dump", "--json", str(path)), ("dump", str(path))):
        proc = run(*args)
        assert_malformed_message(proc, "100-level sequence")
        assert re.search(r"depth|nest|limit", proc.stderr.decode(), re.IGNORECASE), \
            "the message says a limit was hit: %r" % proc.stderr


def test_sequence_depth_60_is_fine(run, tmp_path):
    """Deep but within the limit (DCM_SEQUENCE_DEPTH_MAX is 64)."""
    path = tmp_path / "deep.dcm"
    path.write_bytes(part10(nested_sequence_bomb(60)))
    proc = run("dump", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    node, depth = load_json(proc.stdout), 0
    while "0040A730" in node:
        node = node["0040A730"]["Value"][0]
        depth += 1
    assert depth == 60
    assert node["00080100"]["Value"] == ["LEAF"]


# --- character sets from the field ---------------------------------------------

def _chinese_file(tmp_path, name, charset, encoding):
    ds = new_dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.add(DataElement(0x00100010, "PN", PersonName(NAME.encode(encoding))))
    ds.add(DataElement(0x00080080, "LO", INSTITUTION.encode(encoding)))
    ds.add(DataElement(0x00081030, "LO", "CT 胸部平扫".encode(encoding)))
    path = tmp_path / name
    write_pydicom(ds, path)
    return path


def _assert_chinese(obj):
    assert obj["00100010"]["Value"] == [{"Alphabetic": NAME}]
    assert obj["00080080"]["Value"] == [INSTITUTION]
    assert obj["00081030"]["Value"] == ["CT 胸部平扫"]


CHINESE_CASES = {
    "gbk_as_latin1": ("ISO_IR 100", "gbk"),
    "gb18030_as_utf8": ("ISO_IR 192", "gb18030"),
    "gb18030_no_charset": (None, "gb18030"),
}


@pytest.mark.parametrize("case", sorted(CHINESE_CASES))
def test_mislabelled_chinese_is_decoded(run, tmp_path, case):
    charset, encoding = CHINESE_CASES[case]
    path = _chinese_file(tmp_path, case + ".dcm", charset, encoding)

    proc = run("dump", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    _assert_chinese(load_json(proc.stdout))
    assert GUESS_RE.search(proc.stderr.decode()), \
        "--json notes the guess on stderr: %r" % proc.stderr

    text = run("dump", str(path))
    assert text.returncode == 0, text.stderr
    listing = text.stdout.decode("utf-8")
    assert INSTITUTION in listing
    assert GUESS_RE.search(listing), "the listing mentions the guess"


def test_utf8_without_charset_is_utf8(run, tmp_path):
    path = _chinese_file(tmp_path, "utf8.dcm", None, "utf-8")
    proc = run("dump", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    _assert_chinese(load_json(proc.stdout))


def test_correct_labels_are_not_second_guessed(run, tmp_path):
    for name, charset, encoding in (("utf8.dcm", "ISO_IR 192", "utf-8"),
                                    ("gb.dcm", "GB18030", "gb18030"),
                                    ("gbk.dcm", "GBK", "gbk")):
        path = _chinese_file(tmp_path, name, charset, encoding)
        proc = run("dump", "--json", str(path))
        assert proc.returncode == 0, proc.stderr
        _assert_chinese(load_json(proc.stdout))
        assert not GUESS_RE.search(proc.stderr.decode()), (name, proc.stderr)


@pytest.mark.parametrize("option", ["--charset", "--default-charset"])
def test_charset_options(run, tmp_path, option):
    path = _chinese_file(tmp_path, "none.dcm", None, "gb18030")
    proc = run("dump", "--json", option, "GB18030", str(path))
    assert proc.returncode == 0, proc.stderr
    _assert_chinese(load_json(proc.stdout))
    proc = run("dump", "--json", "%s=GB18030" % option, str(path))
    assert proc.returncode == 0, proc.stderr
    _assert_chinese(load_json(proc.stdout))


def test_charset_override_beats_the_label(run, tmp_path):
    """--charset wins over what 0008,0005 says, detection or not."""
    path = _chinese_file(tmp_path, "latin1.dcm", "ISO_IR 100", "gbk")
    proc = run("dump", "--json", "--charset", "GB18030", str(path))
    assert proc.returncode == 0, proc.stderr
    _assert_chinese(load_json(proc.stdout))

    # Latin-1 text forced through GB18030 is no longer the Latin-1 reading.
    ds = new_dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.add(DataElement(0x00100010, "PN", PersonName("Müller^Jürgen".encode("latin-1"))))
    latin = tmp_path / "german.dcm"
    write_pydicom(ds, latin)
    plain = load_json(run("dump", "--json", str(latin)).stdout)
    assert plain["00100010"]["Value"] == [{"Alphabetic": "Müller^Jürgen"}]
    forced = load_json(run("dump", "--json", "--charset", "GB18030", str(latin)).stdout)
    assert forced["00100010"]["Value"] != plain["00100010"]["Value"]


def test_stderr_message_format_names_offset_and_tag(run, tmp_path):
    """One line per fault: the path, then offset and tag in (gggg,eeee) form."""
    data = CUT_SOURCE.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:len(data) - 7])
    proc = run("dump", "--json", str(path))
    assert_malformed_message(proc)
    err = proc.stderr.decode()
    assert str(path) in err
    assert TAG_RE.search(err)
    assert re.search(r"offset\D{0,3}\d+", err), err
