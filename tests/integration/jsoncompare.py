"""Compare a DICOM JSON object (PS3.18 Annex F) with a pydicom data set.

The integration tests use this to hold `cloudpacs dump --json` against an
independent reader. The comparison is element by element, recursively
through sequences and items, and yields a list of human-readable differences,
each prefixed with the path of the element ("(300A,00B0)[0].(300A,00C0)").

Rules (the reasons are in the comments where they are applied):
  - group length elements (gggg,0000) are left out on both sides (PS3.18
    F.2 says the JSON model does not carry them);
  - the File Meta Information (group 0002) is compared with pydicom's
    file_meta only when the JSON holds it;
  - strings are compared after removing the padding that PS3.5 6.2 calls
    insignificant, and nothing else: the text must be the same characters;
  - DS and IS are compared as numbers, FL at single precision, FD exactly;
  - binary values are compared as bytes, from InlineBinary (base64) or from
    the file range a BulkDataURI names.
"""

import base64
import json
import math
import re
import struct
import urllib.parse

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import Tag

BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
# VRs whose leading spaces are significant (PS3.5 6.2): only trailing
# padding may be dropped from them.
LEADING_SPACE_KEPT = {"LT", "ST", "UT", "UR"}
SINGLE_VALUED_TEXT = {"LT", "ST", "UT", "UR"}
TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM",
            "UC", "UI", "UR", "UT"}
INT_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "SV": "q",
               "UV": "Q"}
FLOAT_FORMATS = {"FL": "f", "FD": "d"}
# Element size for byte swapping of binary VRs in big endian data sets.
SWAP_WIDTH = {"OB": 1, "UN": 1, "OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
SEQ_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
BULK_RE = re.compile(r"^file://(?P<path>[^#]*)#offset=(?P<off>\d+)&length=(?P<len>\d+)$")


def _parse_int(text):
    # Python reads the JSON number -0 as the integer 0 and loses the sign
    # that a float value (FL, FD, DS) of negative zero carries.
    return -0.0 if text == "-0" else int(text)


def load_json(data):
    """json.loads for cloudpacs output: bytes or str, -0 kept as -0.0."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json.loads(data, parse_int=_parse_int)


def tag_str(tag):
    return "(%04X,%04X)" % (tag >> 16, tag & 0xFFFF)


def is_group_length(tag):
    return tag & 0xFFFF == 0


def is_private(tag):
    return (tag >> 16) & 1 == 1


def is_private_creator(tag):
    return is_private(tag) and 0x10 <= (tag & 0xFFFF) <= 0xFF


def vr_name(vr):
    """pydicom 2.3 mixes plain strings and its VR enum (whose str() differs)."""
    return str(getattr(vr, "value", vr))


def ambiguous_choices(vr):
    """'US or SS' -> {'US', 'SS'}; a plain VR -> {vr}."""
    if vr is None:
        return set()
    return {part.strip() for part in vr_name(vr).split(" or ")}


def dictionary_choices(tag):
    try:
        return ambiguous_choices(dictionary_VR(tag))
    except KeyError:
        return set()


def swap_bytes(data, width):
    if width <= 1 or len(data) % width:
        return data
    out = bytearray(len(data))
    for i in range(0, len(data), width):
        out[i:i + width] = data[i:i + width][::-1]
    return bytes(out)


def as_list(value):
    """pydicom gives a single value bare and several as a MultiValue."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    if isinstance(value, (str, bytes)) and len(value) == 0:
        return []
    return [value]


def norm_text(text, vr):
    if text is None:
        return ""
    text = str(text).rstrip("\0 ")
    if vr not in LEADING_SPACE_KEPT:
        text = text.lstrip(" ")
    return text


class FileContext:
    """What the comparison needs to know about the file being compared."""

    def __init__(self, path, little_endian=True):
        self.path = str(path)
        self.little_endian = little_endian
        self.notes = []         # accepted differences, for the report
        self.compared = 0       # elements compared, for the report


class Comparer:
    """Walks a JSON object and a pydicom Dataset side by side."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.diffs = []

    def diff(self, path, message):
        self.diffs.append("%s: %s" % (path or "<top>", message))

    # --- data sets ---------------------------------------------------------

    def dataset(self, jobj, ds, path="", skip_meta=True):
        if not isinstance(jobj, dict):
            self.diff(path, "JSON item is %s, not an object" % type(jobj).__name__)
            return
        jtags = {}
        for key, value in jobj.items():
            if not re.fullmatch(r"[0-9A-F]{8}", key):
                self.diff(path, "bad JSON key %r (want 8 upper-case hex digits)" % key)
                continue
            jtags[int(key, 16)] = value

        def wanted(tag):
            if is_group_length(tag):
                return False
            return not (skip_meta and tag >> 16 == 0x0002)

        ptags = {int(t) for t in ds.keys() if wanted(int(t))}
        jkeys = {t for t in jtags if wanted(t)}
        for tag in sorted(ptags - jkeys):
            self.diff(path + tag_str(tag), "missing from cloudpacs (pydicom has %s)"
                      % self._describe_pydicom(ds, tag))
        for tag in sorted(jkeys - ptags):
            self.diff(path + tag_str(tag), "only in cloudpacs: %s" % _short(jtags[tag]))
        for tag in sorted(ptags & jkeys):
            self.element(jtags[tag], ds, tag, path + tag_str(tag))

    def _describe_pydicom(self, ds, tag):
        try:
            elem = ds[tag]
            return "%s %s" % (vr_name(elem.VR), _short(elem.value))
        except Exception as exc:  # pydicom could not convert it either
            return "an element pydicom cannot convert (%s)" % exc

    # --- elements ----------------------------------------------------------

    def element(self, jel, ds, tag, path):
        self.ctx.compared += 1
        if not isinstance(jel, dict) or "vr" not in jel:
            self.diff(path, "JSON element has no \"vr\": %s" % _short(jel))
            return
        jvr = jel["vr"]
        raw = ds.get_item(tag)
        try:
            elem = ds[tag]
        except Exception as exc:
            self.diff(path, "pydicom cannot convert the element (%s)" % exc)
            return
        pvr = vr_name(elem.VR)
        choices = ambiguous_choices(pvr) | dictionary_choices(tag)
        if jvr == pvr or (len(choices) > 1 and jvr in choices):
            pass
        elif jvr == "UN" and is_private(tag) and not is_private_creator(tag):
            # pydicom knows many vendors' private tags; a reader without a
            # private dictionary rightly says UN in implicit VR data sets.
            self.ctx.notes.append("%s private tag: cloudpacs UN, pydicom %s" % (path, pvr))
            self.binary(jel, self.pydicom_raw(raw, elem, jvr), path, "UN")
            return
        else:
            self.diff(path, "VR %s, pydicom says %s" % (jvr, pvr))
            return

        if jvr != pvr:
            # The same bytes read under the other choice of an ambiguous VR.
            self.same_bytes(jel, jvr, self.pydicom_raw(raw, elem, jvr), path)
            return
        self.value(jel, jvr, elem, raw, path)

    def value(self, jel, vr, elem, raw, path):
        if vr == "SQ":
            self.sequence(jel, elem.value, path)
        elif vr == "PN":
            self.person_names(jel, elem.value, path)
        elif vr in ("DS", "IS"):
            self.decimal_strings(jel, vr, elem.value, path)
        elif vr in TEXT_VRS:
            self.strings(jel, vr, elem.value, path)
        elif vr in INT_FORMATS:
            self.integers(jel, elem.value, path)
        elif vr in FLOAT_FORMATS:
            self.floats(jel, vr, elem.value, path)
        elif vr == "AT":
            self.tags(jel, elem.value, path)
        elif vr in BINARY_VRS:
            self.binary(jel, self.pydicom_raw(raw, elem, vr), path, vr)
        else:
            self.diff(path, "unknown VR %r" % vr)

    # --- values ------------------------------------------------------------

    def json_values(self, jel, path):
        """The "Value" array, or [] when the element is empty."""
        for key in ("InlineBinary", "BulkDataURI"):
            if key in jel:
                self.diff(path, "has %s where Value was expected" % key)
        if "Value" not in jel:
            return []
        values = jel["Value"]
        if not isinstance(values, list):
            self.diff(path, "Value is not an array: %s" % _short(values))
            return []
        return values

    def sequence(self, jel, items, path):
        items = list(items or [])
        jitems = self.json_values(jel, path)
        if len(jitems) != len(items):
            self.diff(path, "%d items, pydicom has %d" % (len(jitems), len(items)))
        for i, (jitem, item) in enumerate(zip(jitems, items)):
            self.dataset(jitem, item, "%s[%d]." % (path, i))

    def strings(self, jel, vr, value, path):
        if vr in SINGLE_VALUED_TEXT and not isinstance(value, (list, Sequence)):
            pvals = [] if value in (None, "") else [value]
        else:
            pvals = as_list(value)
        pvals = [norm_text(v, vr) for v in pvals]
        if pvals and all(v == "" for v in pvals) and len(pvals) == 1:
            pvals = []
        jvals = self.json_values(jel, path)
        if not all(v is None or isinstance(v, str) for v in jvals):
            self.diff(path, "non-string in a %s Value: %s" % (vr, _short(jvals)))
            return
        jvals = [norm_text(v, vr) for v in jvals]
        if jvals != pvals:
            self.diff(path, "%s %r, pydicom %r" % (vr, jvals, pvals))

    def person_names(self, jel, value, path):
        pnames = as_list(value)
        if len(pnames) == 1 and str(pnames[0]) == "":
            pnames = []
        jnames = self.json_values(jel, path)
        if len(jnames) != len(pnames):
            self.diff(path, "%d names, pydicom has %d: %s vs %r"
                      % (len(jnames), len(pnames), _short(jnames),
                         [str(p) for p in pnames]))
            return
        for i, (jpn, ppn) in enumerate(zip(jnames, pnames)):
            pgroups = list(ppn.components) if hasattr(ppn, "components") \
                else str(ppn).split("=")
            pgroups = [g.rstrip(" ") for g in pgroups] + [""] * (3 - len(pgroups))
            if jpn is None:
                jgroups = ["", "", ""]
            elif isinstance(jpn, dict):
                unknown = set(jpn) - {"Alphabetic", "Ideographic", "Phonetic"}
                if unknown:
                    self.diff(path, "PN object has keys %s" % sorted(unknown))
                jgroups = [str(jpn.get(k, "")).rstrip(" ")
                           for k in ("Alphabetic", "Ideographic", "Phonetic")]
            else:
                self.diff(path, "PN value %d is not an object: %s" % (i, _short(jpn)))
                continue
            if jgroups != pgroups[:3]:
                self.diff(path, "PN[%d] %r, pydicom %r" % (i, jgroups, pgroups[:3]))

    def decimal_strings(self, jel, vr, value, path):
        pvals = [None if v is None or str(v).strip() == "" else v for v in as_list(value)]
        if pvals == [None]:
            pvals = []
        jvals = self.json_values(jel, path)
        if len(jvals) != len(pvals):
            self.diff(path, "%s %s, pydicom %r" % (vr, _short(jvals), [str(v) for v in pvals]))
            return
        for i, (jv, pv) in enumerate(zip(jvals, pvals)):
            if not numbers_match(jv, pv, vr):
                self.diff(path, "%s[%d] %r, pydicom %r" % (vr, i, jv, str(pv)))

    def integers(self, jel, value, path):
        pvals = as_list(value)
        if isinstance(value, bytes):
            self.diff(path, "pydicom left the value as bytes")
            return
        jvals = self.json_values(jel, path)
        if len(jvals) != len(pvals) or \
                not all(integer_matches(j, int(p)) for j, p in zip(jvals, pvals)):
            self.diff(path, "%s, pydicom %s" % (_short(jvals), _short(pvals)))

    def floats(self, jel, vr, value, path):
        pvals = as_list(value)
        jvals = self.json_values(jel, path)
        if len(jvals) != len(pvals):
            self.diff(path, "%s, pydicom %s" % (_short(jvals), _short(pvals)))
            return
        for i, (jv, pv) in enumerate(zip(jvals, pvals)):
            if not floats_match(jv, pv, vr):
                self.diff(path, "%s[%d] %r, pydicom %r" % (vr, i, jv, pv))

    def tags(self, jel, value, path):
        pvals = [int(Tag(v)) for v in as_list(value)]
        jvals = self.json_values(jel, path)
        bad = [v for v in jvals if not (isinstance(v, str) and re.fullmatch(r"[0-9A-F]{8}", v))]
        if bad:
            self.diff(path, "AT values not 'GGGGEEEE': %s" % _short(bad))
            return
        if [int(v, 16) for v in jvals] != pvals:
            self.diff(path, "AT %s, pydicom %s" % (jvals, [tag_str(v) for v in pvals]))

    # --- bytes -------------------------------------------------------------

    def pydicom_raw(self, raw, elem, vr):
        """The element's value bytes as they are in the file."""
        if isinstance(raw, RawDataElement):
            return raw.value or b""
        value = elem.value
        if isinstance(value, bytes):
            return value
        endian = "<" if self.ctx.little_endian else ">"
        pvr = vr_name(elem.VR)
        if pvr in INT_FORMATS or pvr in FLOAT_FORMATS:
            fmt = INT_FORMATS.get(pvr) or FLOAT_FORMATS[pvr]
            vals = as_list(value)
            return struct.pack(endian + fmt * len(vals), *vals)
        if pvr == "AT":
            out = b""
            for tag in as_list(value):
                out += struct.pack(endian + "HH", tag >> 16, tag & 0xFFFF)
            return out
        if isinstance(value, str):
            return value.encode("latin-1", "replace")
        return b""

    def json_bytes(self, jel, path):
        """(bytes or None, how) from InlineBinary or BulkDataURI."""
        if "Value" in jel:
            self.diff(path, "binary element has a Value array")
        if "InlineBinary" in jel:
            try:
                return base64.b64decode(jel["InlineBinary"], validate=True), "inline"
            except Exception as exc:
                self.diff(path, "InlineBinary is not base64 (%s)" % exc)
                return None, "bad"
        if "BulkDataURI" in jel:
            uri = jel["BulkDataURI"]
            m = BULK_RE.match(uri)
            if not m:
                self.diff(path, "BulkDataURI %r is not file://PATH#offset=O&length=L" % uri)
                return None, "bad"
            target = urllib.parse.unquote(m.group("path"))
            off, length = int(m.group("off")), int(m.group("len"))
            try:
                with open(target, "rb") as fh:
                    fh.seek(off)
                    data = fh.read(length)
            except OSError as exc:
                self.diff(path, "BulkDataURI %r cannot be read (%s)" % (uri, exc))
                return None, "bad"
            if len(data) != length:
                self.diff(path, "BulkDataURI %r runs past the end of the file" % uri)
            return data, "bulk"
        return b"", "absent"

    def binary(self, jel, pbytes, path, vr):
        jbytes, how = self.json_bytes(jel, path)
        if jbytes is None:
            return
        if how == "absent" and pbytes:
            self.diff(path, "%s value (%d bytes) left out of the JSON" % (vr, len(pbytes)))
            return
        want = pbytes
        if how == "inline" and not self.ctx.little_endian:
            # PS3.18 F.2.7: InlineBinary is in the transfer syntax of the
            # JSON, explicit VR little endian unless the media type says
            # otherwise; a BulkDataURI gives the bytes as stored.
            want = swap_bytes(pbytes, SWAP_WIDTH.get(vr, 1))
        if jbytes == want:
            return
        if want != pbytes and jbytes == pbytes:
            self.diff(path, "big endian %s InlineBinary left big endian" % vr)
            return
        for tail in (SEQ_DELIMITER, SEQ_DELIMITER_BE):
            if jbytes == pbytes + tail:
                # Encapsulated data given with its Sequence Delimitation Item.
                self.ctx.notes.append("%s encapsulated value includes the delimiter" % path)
                return
        self.diff(path, "%s %s bytes differ: %d bytes %s, pydicom %d bytes %s"
                  % (vr, how, len(jbytes), jbytes[:16].hex(), len(pbytes), pbytes[:16].hex()))

    def same_bytes(self, jel, jvr, pbytes, path):
        """Compares a value read under another choice of an ambiguous VR."""
        if jvr in BINARY_VRS:
            self.binary(jel, pbytes, path, jvr)
            return
        endian = "<" if self.ctx.little_endian else ">"
        jvals = self.json_values(jel, path)
        try:
            if jvr in INT_FORMATS or jvr in FLOAT_FORMATS:
                fmt = INT_FORMATS.get(jvr) or FLOAT_FORMATS[jvr]
                jbytes = struct.pack(endian + fmt * len(jvals), *jvals)
            else:
                self.diff(path, "cannot compare %s with pydicom's bytes" % jvr)
                return
        except (struct.error, TypeError) as exc:
            self.diff(path, "%s values %s do not pack (%s)" % (jvr, _short(jvals), exc))
            return
        if jbytes != pbytes:
            self.diff(path, "%s %s, pydicom's bytes %s" % (jvr, _short(jvals), pbytes[:16].hex()))


def integer_matches(jv, pv):
    """A JSON integer, or for 64-bit values beyond 2^53 the exact decimal
    string (a JSON number that large would not survive IEEE doubles)."""
    if isinstance(jv, bool):
        return False
    if isinstance(jv, int):
        return jv == pv
    if isinstance(jv, str) and abs(pv) > 2 ** 53:
        return re.fullmatch(r"-?[0-9]+", jv) is not None and int(jv) == pv
    return False


def numbers_match(jv, pv, vr):
    if pv is None:
        return jv is None
    if jv is None:
        return False
    if isinstance(jv, str):
        # Not a number in the file: the string itself is the honest value.
        return jv.strip() == str(pv).strip()
    if isinstance(jv, bool) or not isinstance(jv, (int, float)):
        return False
    try:
        want = float(pv)
    except (TypeError, ValueError):
        return False
    if vr == "IS" and float(jv) != want:
        return False
    return math.isclose(float(jv), want, rel_tol=1e-12, abs_tol=1e-300)


def floats_match(jv, pv, vr):
    pv = float(pv)
    if math.isnan(pv) or math.isinf(pv):
        # JSON has no NaN or infinity; PS3.18 says nothing: accept a string
        # spelling or null, never a number.
        return jv is None or isinstance(jv, str)
    if isinstance(jv, bool) or not isinstance(jv, (int, float)):
        return False
    if vr == "FL":
        return struct.pack("<f", float(jv)) == struct.pack("<f", pv)
    return float(jv) == pv


def _short(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def compare_file(jobj, ds, ctx, partial=False):
    """All differences between the JSON object and the pydicom data set.

    The meta group is compared with ds.file_meta when the JSON holds any
    group 0002 element. With partial=True (a malformed file, partial dump),
    elements missing from the JSON are accepted, and so are differences in
    the last top-level element, which is the one the input broke in.
    """
    cmp = Comparer(ctx)
    cmp.dataset(jobj, ds, "")
    has_meta = any(k.startswith("0002") for k in jobj) if isinstance(jobj, dict) else False
    if has_meta:
        meta = getattr(ds, "file_meta", None) or pydicom.Dataset()
        mobj = {k: v for k, v in jobj.items() if k.startswith("0002")}
        saved = ctx.little_endian
        ctx.little_endian = True    # the meta group is always explicit VR LE
        cmp.dataset(mobj, meta, "meta", skip_meta=False)
        ctx.little_endian = saved
        ctx.notes.append("meta group included and compared")
    if not partial:
        return cmp.diffs
    chain = last_element_chain(jobj)
    kept = []
    for d in cmp.diffs:
        where = d.split(": ", 1)[0]
        if "missing from cloudpacs" in d:
            continue
        if chain and (chain.startswith(where) or where.startswith(chain)):
            continue
        kept.append(d)
    return kept


def last_element_chain(jobj):
    """The path of the last element read: the last key, down through the
    last item of each sequence. A partial dump may differ there, and only
    there, from the whole file.
    """
    path, node = "", jobj
    while isinstance(node, dict):
        keys = sorted(k for k in node if not (path == "" and k.startswith("0002")))
        if not keys:
            break
        key = keys[-1]
        path += tag_str(int(key, 16))
        items = node[key].get("Value") if node[key].get("vr") == "SQ" else None
        if not items:
            break
        path += "[%d]." % (len(items) - 1)
        node = items[-1]
    return path
