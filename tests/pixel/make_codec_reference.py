#!/usr/bin/python3
"""Makes the reference pixels test_pixel_codecs compares its decoders with.

Usage: make_codec_reference.py OUTDIR

For every file of pydicom's test_files in a JPEG baseline/extended, JPEG-LS
or JPEG 2000 transfer syntax, and for files made here with DCMTK's dcmcjpls
(JPEG-LS) and OpenJPH's ojph_compress (HTJ2K), the pixels are decoded by an
independent decoder (dcmdjpeg, dcmdjpls, opj_decompress, ojph_expand) and
written raw: every frame in turn, samples pixel-interleaved, each in the
little-endian container cloudpacs uses (uint8/int8 up to 8 bits allocated,
uint16/int16 above). OUTDIR/manifest.tsv lists the cases, one a line:

    name  dicom  reference  tolerance  expect

where tolerance is the largest difference allowed per sample and expect is
"ok", "unsupported" (12-bit JPEG, which libjpeg-turbo 2.1 cannot decode) or
"any" (no reference decoder could read the file: any status, no crash).
Needs /usr/bin/python3 with pydicom and numpy, DCMTK, opj_decompress
(libopenjp2-tools) and ojph_compress/ojph_expand (openjph-tools).

With --render OUTDIR it makes instead what test_pixel_render compares its
renderer with: pictures by DCMTK's dcm2pnm (8-bit PGM/PPM, natural size)
of a few files, listed in OUTDIR/render.tsv as

    name  dicom  picture  center  width

where center and width are the window given to dcm2pnm ("-" when the
file's own first window, or for colour none, was used).
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_pixel_data_frame
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")

JPEG = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
JPEGLS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K = "1.2.840.10008.1.2.4.203"

# Lossy decoders may differ by their IDCT, upsampling and rounding; measured
# against the reference decoders the differences are 0, these bounds leave room.
JPEG_TOLERANCE = 2
J2K_LOSSY_TOLERANCE = 1


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def container(ds):
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if int(ds.BitsAllocated) <= 8:
        return np.int8 if signed else np.uint8
    return np.int16 if signed else np.uint16


def frames_of(ds):
    return int(ds.get("NumberOfFrames", 1) or 1)


def write_array(path, arr, dtype):
    np.ascontiguousarray(arr).astype(np.dtype(dtype).newbyteorder("<")).tofile(path)


def native_pixels(path):
    """The pixels of an uncompressed file as (frames, rows, cols, samples)."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = frames_of(ds)
    spp = int(ds.SamplesPerPixel)
    return arr.reshape(frames, int(ds.Rows), int(ds.Columns), spp), ds


class Manifest:
    def __init__(self, outdir):
        self.outdir = outdir
        self.lines = []

    def add(self, name, dicom, ref, tolerance, expect="ok"):
        self.lines.append("\t".join([name, dicom, ref or "-", str(tolerance), expect]))

    def write(self):
        with open(os.path.join(self.outdir, "manifest.tsv"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def ref_via_dcmtk(tool, src, outdir, name, extra=()):
    """Decompresses src with a DCMTK tool and writes its pixels as the reference."""
    plain = os.path.join(outdir, name + ".plain.dcm")
    run(tool, *extra, src, plain)
    arr, ds = native_pixels(plain)
    ref = os.path.join(outdir, name + ".raw")
    write_array(ref, arr, container(pydicom.dcmread(src, stop_before_pixels=True)))
    return ref


def ref_via_opj(src, outdir, name):
    """Decodes each frame's codestream with opj_decompress (planar raw, little endian)."""
    ds = pydicom.dcmread(src)
    frames = frames_of(ds)
    rows, cols, spp = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    bits = int(ds.BitsStored)
    out = []
    for i, data in enumerate(generate_pixel_data_frame(ds.PixelData, frames)):
        j2k = os.path.join(outdir, "%s.%d.j2k" % (name, i))
        if data[:4] != b"\xff\x4f\xff\x51":
            j2k = j2k[:-4] + ".jp2"
        with open(j2k, "wb") as f:
            f.write(data)
        raw = os.path.join(outdir, "%s.%d.rawl" % (name, i))
        run("opj_decompress", "-quiet", "-i", j2k, "-o", raw)
        size = os.path.getsize(raw)
        per = size // (rows * cols * spp)
        # opj writes each component as the codestream declares its precision and sign.
        info = subprocess.run(["opj_dump", "-i", j2k], capture_output=True, text=True).stdout
        sgnd = "sgnd=1" in info
        prec = bits
        for token in info.split():
            if token.startswith("prec="):
                prec = int(token[5:])
                break
        kind = ("<i" if sgnd else "<u") + str(per)
        planes = np.fromfile(raw, dtype=kind).astype(np.int64)
        planes = planes.reshape(spp, rows, cols)
        # A signed image coded unsigned (or the reverse) keeps its bit pattern.
        if signed and not sgnd:
            planes = np.where(planes >= (1 << (prec - 1)), planes - (1 << prec), planes)
        elif not signed and sgnd:
            planes = np.where(planes < 0, planes + (1 << prec), planes)
        lo = -(1 << (bits - 1)) if signed else 0
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        out.append(np.clip(planes, lo, hi).transpose(1, 2, 0))
    ref = os.path.join(outdir, name + ".raw")
    write_array(ref, np.stack(out), container(ds))
    return ref


def pydicom_cases(m, outdir):
    for fname in sorted(os.listdir(TEST_FILES)):
        if not fname.endswith(".dcm"):
            continue
        path = os.path.join(TEST_FILES, fname)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ts = str(ds.file_meta.TransferSyntaxUID)
        except Exception:
            continue
        if "BitsStored" not in ds:
            continue
        name = "pyd_" + fname[:-4].replace("+", "_")
        try:
            if ts in JPEG:
                ref = ref_via_dcmtk("dcmdjpeg", path, outdir, name)
                if int(ds.BitsStored) > 8:
                    m.add(name, path, ref, 0, "unsupported")
                else:
                    m.add(name, path, ref, JPEG_TOLERANCE)
            elif ts in JPEGLS:
                ref = ref_via_dcmtk("dcmdjpls", path, outdir, name)
                m.add(name, path, ref, 0)
            elif ts in J2K:
                ref = ref_via_opj(path, outdir, name)
                m.add(name, path, ref, 0 if ts == J2K[0] else J2K_LOSSY_TOLERANCE)
        except subprocess.CalledProcessError:
            # No reference: the file is still decoded, to show it fails cleanly or works.
            print("reference decoder failed on", fname, file=sys.stderr)
            m.add(name, path, None, 0, "any")


def make_source(path, arr, bits_stored, signed=False, photometric=None):
    """Writes an uncompressed Explicit VR Little Endian image of arr (frames, r, c, s)."""
    frames, rows, cols, spp = arr.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName = "Test^Codec"
    ds.PatientID = "CODEC"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, spp
    ds.PhotometricInterpretation = photometric or ("MONOCHROME2" if spp == 1 else "RGB")
    if spp == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    alloc = 8 if bits_stored <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = alloc, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = {(8, False): np.uint8, (8, True): np.int8,
             (16, False): np.uint16, (16, True): np.int16}[(alloc, signed)]
    ds.PixelData = np.ascontiguousarray(arr.astype(dtype)).astype(
        np.dtype(dtype).newbyteorder("<")).tobytes()
    ds.save_as(path, write_like_original=False)
    return ds


def synthetic(rows, cols, spp, bits, frames=1, seed=7):
    """Smooth gradients plus noise, so codecs have both structure and entropy."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    top = (1 << bits) - 1
    planes = []
    for f in range(frames):
        for s in range(spp):
            base = ((x * (s + 1) + y * (2 - s % 2) + 17 * f) / (rows + cols) * top * 0.8)
            noise = rng.integers(0, max(2, top // 20), size=(rows, cols))
            planes.append(np.clip(base + noise, 0, top))
    arr = np.array(planes).reshape(frames, spp, rows, cols).transpose(0, 2, 3, 1)
    return arr.astype(np.int64)


def jpegls_cases(m, outdir):
    gen = os.path.join(outdir, "gen")
    os.makedirs(gen, exist_ok=True)
    sources = {
        "gray8": (synthetic(61, 77, 1, 8), 8, False),
        "gray12": (synthetic(64, 50, 1, 12, frames=2), 12, False),
        "gray16": (synthetic(40, 33, 1, 16), 16, False),
        "rgb8": (synthetic(45, 38, 3, 8, frames=2), 8, False),
    }
    for key, (arr, bits, signed) in sources.items():
        src = os.path.join(gen, key + ".dcm")
        make_source(src, arr, bits, signed)
        variants = [("lossless", ["+el"], 0), ("near2", ["+en", "+md", "2"], 2)]
        if arr.shape[3] == 3:
            variants = [("line", ["+el", "+il"], 0), ("sample", ["+el", "+is"], 0),
                        ("none", ["+el", "+in"], 0), ("near2", ["+en", "+md", "2", "+is"], 2)]
        for tag, opts, tol in variants:
            name = "jls_%s_%s" % (key, tag)
            out = os.path.join(gen, name + ".dcm")
            try:
                run("dcmcjpls", *opts, src, out)
                ref = ref_via_dcmtk("dcmdjpls", out, gen, name)
            except subprocess.CalledProcessError:
                print("dcmcjpls/dcmdjpls failed on", name, file=sys.stderr)
                continue
            m.add(name, out, ref, tol)
            if tol:
                # Near-lossless keeps every sample within NEAR of the source.
                src_ref = os.path.join(gen, name + ".source.raw")
                write_array(src_ref, arr, np.uint8 if bits <= 8 else np.uint16)
                m.add(name + "_vs_source", out, src_ref, tol)

    # A signed image: CT_small (16-bit, Pixel Representation 1).
    ct = os.path.join(TEST_FILES, "CT_small.dcm")
    out = os.path.join(gen, "jls_ct_signed.dcm")
    try:
        run("dcmcjpls", "+el", ct, out)
        ref = os.path.join(gen, "jls_ct_signed.raw")
        arr, ds = native_pixels(ct)
        write_array(ref, arr, container(ds))
        m.add("jls_ct_signed", out, ref, 0)
    except subprocess.CalledProcessError:
        print("dcmcjpls failed on CT_small", file=sys.stderr)


def register_htj2k_uids():
    """pydicom 2.3 predates HTJ2K: teach its UID table the three syntaxes."""
    from pydicom._uid_dict import UID_dictionary
    for uid, name in (("1.2.840.10008.1.2.4.201", "HTJ2K Lossless"),
                      ("1.2.840.10008.1.2.4.202", "HTJ2K RPCL Lossless"),
                      ("1.2.840.10008.1.2.4.203", "HTJ2K")):
        UID_dictionary.setdefault(uid, (name, "Transfer Syntax", "", "", name))


def wrap_codestreams(path, template, codestreams, ts, photometric=None):
    ds = pydicom.dcmread(template)
    ds.file_meta.TransferSyntaxUID = ts
    if photometric:
        ds.PhotometricInterpretation = photometric
    ds.PixelData = encapsulate(codestreams)
    ds["PixelData"].VR = "OB"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)


def htj2k_cases(m, outdir):
    gen = os.path.join(outdir, "gen")
    os.makedirs(gen, exist_ok=True)
    register_htj2k_uids()
    sources = [
        ("gray8", synthetic(53, 71, 1, 8, seed=3), 8),
        ("gray12", synthetic(64, 80, 1, 12, seed=4), 12),
        ("gray16", synthetic(48, 40, 1, 16, seed=5), 16),
        ("rgb8", synthetic(40, 56, 3, 8, seed=6), 8),
    ]
    for key, arr, bits in sources:
        src = os.path.join(gen, "h_" + key + ".dcm")
        make_source(src, arr, bits)
        _, rows, cols, spp = arr.shape
        if spp == 3:
            inp = os.path.join(gen, "h_" + key + ".ppm")
            with open(inp, "wb") as f:
                f.write(b"P6\n%d %d\n255\n" % (cols, rows))
                f.write(arr[0].astype(np.uint8).tobytes())
            fmt = []
        else:
            inp = os.path.join(gen, "h_" + key + ".yuv")
            dtype = "<u1" if bits <= 8 else "<u2"
            arr[0, :, :, 0].astype(dtype).tofile(inp)
            fmt = ["-dims", "{%d,%d}" % (cols, rows), "-num_comps", "1",
                   "-signed", "false", "-bit_depth", str(bits), "-downsamp", "{1,1}"]
        for tag, ts, opts in (("lossless", HTJ2K_LOSSLESS, ["-reversible", "true"]),
                              ("lossy", HTJ2K, ["-qstep", "0.002"])):
            name = "htj2k_%s_%s" % (key, tag)
            j2c = os.path.join(gen, name + ".j2c")
            try:
                run("ojph_compress", "-i", inp, "-o", j2c, *fmt, *opts)
            except subprocess.CalledProcessError:
                print("ojph_compress failed on", name, file=sys.stderr)
                continue
            with open(j2c, "rb") as f:
                code = f.read()
            out = os.path.join(gen, name + ".dcm")
            wrap_codestreams(out, src, [code], ts)
            if tag == "lossless":
                ref = os.path.join(gen, name + ".raw")
                write_array(ref, arr, np.uint8 if bits <= 8 else np.uint16)
                m.add(name, out, ref, 0)
                continue
            # The lossy reference is OpenJPH's own decoder.
            dec = os.path.join(gen, name + (".ppm" if spp == 3 else ".yuv"))
            try:
                run("ojph_expand", "-i", j2c, "-o", dec)
            except subprocess.CalledProcessError:
                print("ojph_expand failed on", name, file=sys.stderr)
                continue
            if spp == 3:
                with open(dec, "rb") as f:
                    data = f.read()
                pix = np.frombuffer(data[len(data) - rows * cols * 3:], dtype=np.uint8)
            else:
                pix = np.fromfile(dec, dtype="<u1" if bits <= 8 else "<u2")
            ref = os.path.join(gen, name + ".raw")
            write_array(ref, pix.reshape(1, rows, cols, spp),
                        np.uint8 if bits <= 8 else np.uint16)
            m.add(name, out, ref, 1)


def render_cases(outdir):
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    lines = []

    def add(name, dicom, opts, center="-", width="-", ext=".pgm"):
        pic = os.path.join(outdir, name + ext)
        run("dcm2pnm", "+op", *opts, dicom, pic)
        lines.append("\t".join([name, dicom, pic, str(center), str(width)]))

    ct = os.path.join(TEST_FILES, "CT_small.dcm")
    mr = os.path.join(TEST_FILES, "MR_small.dcm")
    add("ct_small_40_400", ct, ["+Ww", "40", "400"], 40, 400)
    add("ct_small_300_1500", ct, ["+Ww", "300", "1500"], 300, 1500)
    add("mr_small_own_window", mr, ["+Wi", "1"])

    # MONOCHROME1: MR_small's pixels and window, shown inverted.
    ds = pydicom.dcmread(mr)
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = os.path.join(outdir, "mono1.dcm")
    ds.save_as(mono1)
    add("mr_small_monochrome1", mono1, ["+Wi", "1"])

    # PALETTE COLOR: 8-bit indices through 16-bit red, green and blue tables.
    rows, cols = 48, 64
    y, x = np.mgrid[0:rows, 0:cols]
    idx = ((x * 4 + y * 2) % 256).astype(np.uint8).reshape(1, rows, cols, 1)
    pal = os.path.join(outdir, "palette.dcm")
    pds = make_source(pal, idx, 8, photometric="PALETTE COLOR")
    ramp = np.arange(256)
    for colour, table in (("Red", ramp * 257), ("Green", (255 - ramp) * 257),
                          ("Blue", ((ramp * 3) % 256) * 257)):
        setattr(pds, colour + "PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(pds, colour + "PaletteColorLookupTableData",
                table.astype("<u2").tobytes())
    pds.save_as(pal, write_like_original=False)
    add("palette_color", pal, [], ext=".ppm")

    # YBR_FULL_422, uncompressed: converted to RGB.
    ybr = os.path.join(TEST_FILES, "SC_ybr_full_422_uncompressed.dcm")
    add("ybr_full_422", ybr, [], ext=".ppm")

    with open(os.path.join(outdir, "render.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        return render_cases(sys.argv[2])
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    m = Manifest(outdir)
    pydicom_cases(m, outdir)
    jpegls_cases(m, outdir)
    htj2k_cases(m, outdir)
    m.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
