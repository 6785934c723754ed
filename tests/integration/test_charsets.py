"""Every Specific Character Set (0008,0005) cloudpacs claims to decode
(src/dicom/charset.h), through `cloudpacs dump --json`.

The encoded bytes are written here by hand or by Python's codecs, and the
expected text is the Python string they came from: pydicom is not the
judge here (its ISO 2022 IR 58 encoder, for one, leaves out the escape
sequences). The ISO 2022 byte strings follow the examples of PS3.5 Annexes
H (Japanese), I (Korean) and J (Chinese).
"""

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from dicomgen import new_dataset, write_pydicom
from jsoncompare import load_json

# Defined Term, Python codec, person name, a longer text for LO.
SINGLE_BYTE = [
    ("ISO_IR 100", "latin_1", "Müller^Jürgen", "Hôpital Saint-Louis, Genève"),
    ("ISO_IR 101", "iso8859_2", "Dvořák^Antonín", "Łódź, Świętokrzyska"),
    ("ISO_IR 109", "iso8859_3", "Ħaġar^Ġużè", "Ħal Qormi"),
    ("ISO_IR 110", "iso8859_4", "Ģirts^Ķēniņš", "Rīgas slimnīca"),
    ("ISO_IR 144", "iso8859_5", "Иванов^Иван", "Городская больница"),
    ("ISO_IR 127", "iso8859_6", "قباني^نزار", "مستشفى"),
    ("ISO_IR 126", "iso8859_7", "Παπαδόπουλος^Γιώργος", "Νοσοκομείο Αθηνών"),
    ("ISO_IR 138", "iso8859_8", "שרון^דבורה", "בית חולים"),
    ("ISO_IR 148", "iso8859_9", "Şahin^Ömer", "İstanbul Üniversitesi"),
    ("ISO_IR 166", "tis_620", "สมชาย^ใจดี", "โรงพยาบาล"),
    ("ISO_IR 13", "shift_jis", "ﾔﾏﾀﾞ^ﾀﾛｳ", "ｿｳｺﾞｳ ﾋﾞｮｳｲﾝ"),
    ("ISO_IR 192", "utf-8", "山田^太郎", "Clinic 😀 Ünïcode"),
    ("GB18030", "gb18030", "张^小明", "北京医院 ¢𠀀"),
    ("GBK", "gbk", "张^小明", "北京协和医院"),
]

# (0008,0005) values, raw PN bytes, expected groups (alphabetic, ideographic, phonetic).
ISO_2022 = {
    "ir87": (["", "ISO 2022 IR 87"],
             b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B="
             b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
             ("Yamada^Tarou", "山田^太郎", "やまだ^たろう")),
    "ir13_ir87": (["ISO 2022 IR 13", "ISO 2022 IR 87"],
                  b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J="
                  b"\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
                  ("ﾔﾏﾀﾞ^ﾀﾛｳ", "山田^太郎", "やまだ^たろう")),
    "ir159": (["", "ISO 2022 IR 87", "ISO 2022 IR 159"],
              b"Test^\x1b$(D0!\x1b$B;3\x1b(B", ("Test^丂山", "", "")),
    "ir149": (["", "ISO 2022 IR 149"],
              b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7="
              b"\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
              ("Hong^Gildong", "洪^吉洞", "홍^길동")),
    "ir58": (["", "ISO 2022 IR 58"],
             b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=",
             ("Zhang^XiaoDong", "张^小东", "")),
    "ir100_extension": (["ISO 2022 IR 100"], b"M\xfcller^J\xfcrgen", ("Müller^Jürgen", "", "")),
}


def _dump(run, ds, path):
    write_pydicom(ds, path)
    proc = run("dump", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    return load_json(proc.stdout), proc.stderr.decode("utf-8", "replace")


def _groups(pn_json):
    return tuple(pn_json.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic"))


@pytest.mark.parametrize("term,codec,name,text", SINGLE_BYTE, ids=[c[0] for c in SINGLE_BYTE])
def test_declared_charset_decodes(run, tmp_path, term, codec, name, text):
    ds = new_dataset()
    ds.SpecificCharacterSet = term
    ds.add(DataElement(0x00100010, "PN", PersonName(name.encode(codec))))
    ds.add(DataElement(0x00080080, "LO", text.encode(codec)))
    ds.add(DataElement(0x00081040, "LO", (text + "\\" + name.replace("^", " ")).encode(codec)))
    ds.add(DataElement(0x00324000, "LT", ("1. " + text + "\r\n2. \\").encode(codec)))
    obj, err = _dump(run, ds, tmp_path / "cs.dcm")
    assert obj["00100010"]["Value"] == [{"Alphabetic": name}]
    assert obj["00080080"]["Value"] == [text]
    assert obj["00081040"]["Value"] == [text, name.replace("^", " ")]
    assert obj["00324000"]["Value"] == ["1. " + text + "\r\n2. \\"]
    assert obj["00080005"]["Value"] == [term]
    assert "mislabel" not in err and "guess" not in err, err


# pydicom looks into raw PN bytes on writing and warns about the escapes.
@pytest.mark.filterwarnings("ignore:Found unknown escape sequence")
@pytest.mark.parametrize("case", sorted(ISO_2022))
def test_iso2022_person_names(run, tmp_path, case):
    terms, raw, groups = ISO_2022[case]
    ds = new_dataset()
    ds.SpecificCharacterSet = terms
    ds.add(DataElement(0x00100010, "PN", PersonName(raw)))
    obj, _ = _dump(run, ds, tmp_path / "iso2022.dcm")
    assert raw in (tmp_path / "iso2022.dcm").read_bytes(), "pydicom wrote the bytes as given"
    assert _groups(obj["00100010"]["Value"][0]) == groups


def test_iso2022_multivalued_lo_resets_at_backslash(run, tmp_path):
    """PS3.5 6.1.2.5.3: each value starts in the initial code element."""
    ds = new_dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.add(DataElement(0x00081040, "LO", b"\x1b$B;3ED\x1b(B\\\x1b$BB@O:\x1b(B\\ASCII"))
    obj, _ = _dump(run, ds, tmp_path / "lo.dcm")
    assert obj["00081040"]["Value"] == ["山田", "太郎", "ASCII"]


def test_gbk_trail_bytes_5c_and_5e_are_not_delimiters(run, tmp_path):
    """GBK trail bytes include 0x5C (backslash) and 0x5E (caret): a value is
    decoded before it is split (charset.h)."""
    ds = new_dataset()
    ds.SpecificCharacterSet = "GBK"
    # 乗 is 81 5C and 僜 is 83 5C; 乛 is 81 5E and 區 is 85 5E in GBK.
    assert "乗".encode("gbk")[1] == 0x5C and "乛".encode("gbk")[1] == 0x5E
    ds.add(DataElement(0x00081040, "LO", "乗俓\\僜".encode("gbk")))
    ds.add(DataElement(0x00100010, "PN", PersonName("乛^區乗".encode("gbk"))))
    ds.add(DataElement(0x00081070, "PN", PersonName("乗^乛\\區^僜".encode("gbk"))))
    obj, _ = _dump(run, ds, tmp_path / "trail.dcm")
    assert obj["00081040"]["Value"] == ["乗俓", "僜"]
    assert obj["00100010"]["Value"] == [{"Alphabetic": "乛^區乗"}]
    assert obj["00081070"]["Value"] == [{"Alphabetic": "乗^乛"}, {"Alphabetic": "區^僜"}]


def test_charset_of_a_sequence_item_applies_inside_it(run, tmp_path):
    """PS3.3 C.12.1.1.2: an item's own (0008,0005) wins inside the item."""
    ds = new_dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.add(DataElement(0x00100010, "PN", PersonName("山田^太郎".encode("utf-8"))))
    item = Dataset()
    item.SpecificCharacterSet = "GB18030"
    item.add(DataElement(0x00100010, "PN", PersonName("张^小明".encode("gb18030"))))
    inherit = Dataset()
    inherit.add(DataElement(0x00100010, "PN", PersonName("李^四".encode("utf-8"))))
    ds.OtherPatientIDsSequence = Sequence([item, inherit])
    obj, _ = _dump(run, ds, tmp_path / "seq.dcm")
    items = obj["00101002"]["Value"]
    assert obj["00100010"]["Value"] == [{"Alphabetic": "山田^太郎"}]
    assert items[0]["00100010"]["Value"] == [{"Alphabetic": "张^小明"}]
    assert items[1]["00100010"]["Value"] == [{"Alphabetic": "李^四"}]


@pytest.mark.parametrize("name", [
    pytest.param("Müller^Jürgen", id="mueller"),
    pytest.param("Müßig^Jörg", id="muessig"),
    pytest.param("Åsa^Öström", id="ostrom"),
    pytest.param("Bjørn^Dæhlie", id="daehlie"),
    pytest.param("José^Peña", id="pena"),
    pytest.param("François^Lefèvre", id="lefevre"),
    pytest.param("Guðmundsdóttir^Sóley", id="gudmundsdottir"),
    pytest.param("Gonçalves^João", id="goncalves"),
    pytest.param("Ødegård^Åse", id="odegard"),
    pytest.param("Ñúñez^Íñigo", id="nunez"),
])
def test_correct_latin1_is_not_taken_for_chinese(run, tmp_path, name):
    ds = new_dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.add(DataElement(0x00100010, "PN", PersonName(name.encode("latin-1"))))
    obj, err = _dump(run, ds, tmp_path / "latin1.dcm")
    assert obj["00100010"]["Value"] == [{"Alphabetic": name}], err
