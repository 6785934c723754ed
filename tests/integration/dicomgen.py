"""Small builders of DICOM bytes and files for the integration tests.

Raw builders (explicit VR little endian elements, a Part 10 wrapper) make
inputs pydicom would refuse to write, such as a sequence nested 100 deep;
write_pydicom makes ordinary files with pydicom as the writer.
"""

import io
import struct

import pydicom
from pydicom.dataset import FileMetaDataset

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
UNDEFINED = 0xFFFFFFFF

# VRs whose explicit VR header has two reserved bytes and a 4-byte length.
LONG_HEADER_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR",
                   "UT", "UV"}


def even(value, pad=b" "):
    return value + pad if len(value) % 2 else value


def element(tag, vr, value):
    """One explicit VR little endian element; value is bytes (padded here)."""
    if vr in ("UI", "OB", "UN"):
        value = even(value, b"\0")
    elif vr != "SQ":
        value = even(value)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in LONG_HEADER_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def undefined_sequence(tag, items_bytes):
    """A sequence of undefined length holding already encoded items."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ" + struct.pack("<HI", 0, UNDEFINED)
    return head + items_bytes + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def undefined_item(content):
    return (struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + content
            + struct.pack("<HHI", 0xFFFE, 0xE00D, 0))


def defined_sequence(tag, items_bytes):
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ"
    return head + struct.pack("<HI", 0, len(items_bytes)) + items_bytes


def defined_item(content):
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content


def part10(dataset_bytes, ts_uid=EXPLICIT_LE, sop_instance="1.2.826.0.1.3680043.2.1143.1"):
    """Preamble, DICM and a File Meta Information group, then the data set."""
    meta = (element(0x00020001, "OB", b"\0\1")
            + element(0x00020002, "UI", SECONDARY_CAPTURE.encode())
            + element(0x00020003, "UI", sop_instance.encode())
            + element(0x00020010, "UI", ts_uid.encode())
            + element(0x00020012, "UI", b"1.2.826.0.1.3680043.2.1143"))
    group_length = element(0x00020000, "UL", struct.pack("<I", len(meta)))
    return b"\0" * 128 + b"DICM" + group_length + meta + dataset_bytes


def nested_sequence_bomb(depth, defined_lengths=False):
    """A data set whose first sequence nests `depth` levels of items."""
    tag = 0x0040A730    # Content Sequence: nests in real SR documents too
    inner = element(0x00080100, "SH", b"LEAF")
    for _ in range(depth):
        if defined_lengths:
            inner = defined_sequence(tag, defined_item(inner))
        else:
            inner = undefined_sequence(tag, undefined_item(inner))
    return element(0x00080016, "UI", SECONDARY_CAPTURE.encode()) + inner


def new_dataset(ts_uid=EXPLICIT_LE, sop_instance="1.2.826.0.1.3680043.2.1143.2"):
    """An empty pydicom Dataset with file meta ready for write_pydicom."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
    ds.file_meta.TransferSyntaxUID = ts_uid
    ds.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.2.1143"
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_instance
    return ds


def write_pydicom(ds, path, ts_uid=None):
    """Writes ds with pydicom in the transfer syntax of its file meta."""
    ts_uid = ts_uid or str(ds.file_meta.TransferSyntaxUID)
    ds.file_meta.TransferSyntaxUID = ts_uid
    ds.is_little_endian = ts_uid != EXPLICIT_BE
    ds.is_implicit_VR = ts_uid == IMPLICIT_LE
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, write_like_original=False)
    data = out.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return data


def walk_explicit_le(data, start=132, end=None, depth=0, out=None):
    """(depth, tag, vr, header offset, value offset, length) of every element.

    For explicit VR little endian files whose sequences and items have
    defined lengths (the meta group is walked too); used to cut a real file
    at chosen places.
    """
    out = [] if out is None else out
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        group, elem = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4:pos + 6].decode("ascii")
        if vr in LONG_HEADER_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            value_at = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            value_at = pos + 8
        out.append((depth, (group << 16) | elem, vr, pos, value_at, length))
        if vr == "SQ" and length != UNDEFINED:
            item_at = value_at
            while item_at < value_at + length:
                item_len = struct.unpack_from("<I", data, item_at + 4)[0]
                walk_explicit_le(data, item_at + 8, item_at + 8 + item_len, depth + 1, out)
                item_at += 8 + item_len
        pos = value_at + length
    return out
