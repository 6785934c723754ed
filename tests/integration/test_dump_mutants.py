"""Damaged copies of real files: `cloudpacs dump` never crashes on them.

Each of a dozen varied files (explicit and implicit VR, big endian,
deflated, encapsulated pixel data, deep sequences, ISO 2022 text, a
DICOMDIR) is cut at random places, has random bytes flipped, and has random
4-byte runs set to 0xFFFFFFFF (undefined or huge lengths). Every copy must
give exit 0 or 3, never a signal or a sanitizer report (run the suite with
a -Dsanitize=true build to make that check bite); a JSON dump, whole or
partial, must still be valid JSON; exit 3 comes with a message naming the
offset. Seeds are fixed, so a failure is reproducible.
"""

import io
import random
import zlib

import pytest
from pydicom.filereader import data_element_generator

from conftest import PYDICOM_DATA, assert_no_crash
from dicomgen import EXPLICIT_BE, IMPLICIT_LE, write_pydicom
from jsoncompare import load_json
from test_roundtrip_pydicom import SYNTAXES, build_dataset

SOURCES = [
    "test_files/CT_small.dcm",
    "test_files/MR_small_implicit.dcm",
    "test_files/MR_small_bigendian.dcm",
    "test_files/image_dfl.dcm",
    "test_files/JPEG2000.dcm",
    "test_files/SC_rgb_rle.dcm",
    "test_files/rtplan.dcm",
    "test_files/test-SR.dcm",
    "test_files/UN_sequence.dcm",
    "test_files/nested_priv_SQ.dcm",
    "test_files/dicomdirtests/DICOMDIR",
    "charset_files/chrH31.dcm",
    "charset_files/chrSQEncoding.dcm",
]
MUTANTS_PER_FILE = 24


def _mutants(data, seed):
    rng = random.Random(seed)
    out = []
    for i in range(MUTANTS_PER_FILE):
        kind = i % 3
        if kind == 0:
            cut = rng.randrange(1, len(data))
            out.append(("cut@%d" % cut, data[:cut]))
        elif kind == 1:
            raw = bytearray(data)
            spots = [rng.randrange(132, len(raw)) for _ in range(4)]
            for spot in spots:
                raw[spot] ^= 1 << rng.randrange(8)
            out.append(("flip@%s" % spots, bytes(raw)))
        else:
            raw = bytearray(data)
            spot = rng.randrange(132, max(133, min(len(raw) - 4, 4096)))
            raw[spot:spot + 4] = b"\xff\xff\xff\xff"
            out.append(("ffff@%d" % spot, bytes(raw)))
    return out


@pytest.mark.parametrize("source", SOURCES)
def test_damaged_copies_never_crash(run, tmp_path, source):
    data = (PYDICOM_DATA / source).read_bytes()
    failures = []
    for n, (what, mutant) in enumerate(_mutants(data, zlib.crc32(source.encode()))):
        path = tmp_path / ("m%02d.dcm" % n)
        path.write_bytes(mutant)
        for args in (("dump", "--json", str(path)), ("dump", str(path))):
            proc = run(*args)       # run() asserts no signal, no sanitizer report
            assert_no_crash(proc, "%s %s" % (what, args))
            err = proc.stderr.decode("utf-8", "replace")
            if proc.returncode not in (0, 3):
                failures.append("%s %s: exit %d %s" % (what, args[1], proc.returncode, err))
                continue
            if proc.returncode == 3 and "offset" not in err:
                failures.append("%s: exit 3 without an offset: %r" % (what, err))
            if args[1] == "--json" and proc.stdout.strip():
                try:
                    load_json(proc.stdout)
                except ValueError as exc:
                    failures.append("%s: invalid JSON (%s)" % (what, exc))
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("syntax", ["explicit_le", "implicit_le", "explicit_be"])
def test_cuts_inside_elements_are_reported(run, tmp_path, syntax):
    """A file cut anywhere but between two top-level elements is malformed.

    The file (every VR, nested sequences and items of undefined length) is
    cut at every 11th byte of its data set; pydicom's element generator gives
    the top-level boundaries, where the cut file is a valid shorter one.
    """
    ts_uid = SYNTAXES[syntax]
    data = write_pydicom(build_dataset(ts_uid), tmp_path / "full.dcm")
    start = 144 + int.from_bytes(data[140:144], "little")
    stream = io.BytesIO(data)
    stream.seek(start)
    bounds = {start}
    for _ in data_element_generator(stream, ts_uid == IMPLICIT_LE, ts_uid != EXPLICIT_BE):
        bounds.add(stream.tell())

    wrong = []
    path = tmp_path / "cut.dcm"
    for cut in range(start + 1, len(data), 11):
        path.write_bytes(data[:cut])
        proc = run("dump", "--json", str(path))
        want = 0 if cut in bounds else 3
        if proc.returncode != want:
            wrong.append("cut at %d: exit %d, want %d" % (cut, proc.returncode, want))
    assert not wrong, "\n".join(wrong[:20])
