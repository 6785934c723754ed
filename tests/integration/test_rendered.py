"""Rendered resources, thumbnails and WADO-URI of `cloudpacs serve` (PS3.18
10.4.1.1.3, 10.4.1.1.4 and section 9), over HTTP with Python's urllib.

One server is started for the module (the WebServer of test_dicomweb.py);
pydicom's CT and MR images, the MR image in JPEG-LS, JPEG 2000 and RLE, and
a palette colour image made here are stored with STOW-RS, then rendered as
JPEG and PNG and compared with DCMTK's dcm2pnm for the same window (mean
absolute difference under 2 grey levels for PNG, a little more for JPEG).
"""

import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from conftest import PYDICOM_DATA
from test_dicomweb import WebServer, request, stow, parse_multipart

TEST_FILES = PYDICOM_DATA / "test_files"
# name -> (source file, whether its pixels are those of MR_small.dcm)
SOURCES = {
    "ct": ("CT_small.dcm", False),
    "mr": ("MR_small.dcm", False),
    "jls": ("MR_small_jpeg_ls_lossless.dcm", True),
    "j2k": ("MR_small_jp2klossless.dcm", True),
    "rle": ("MR_small_RLE.dcm", True),
    "rgb": ("SC_rgb_rle.dcm", False),
    "ybr": ("SC_rgb_jpeg_dcmtk.dcm", False),
}
LOSSLESS = ("jls", "j2k", "rle")
WINDOW = {"ct": (40, 400), "mr": (600, 1600), "jls": (600, 1600), "j2k": (600, 1600),
          "rle": (600, 1600), "pal": None}


def palette_dataset(study_uid):
    """A 64 x 48 PALETTE COLOR image with 8-bit entries in 16-bit tables."""
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "RENDER"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = 48, 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for colour, fn in (("Red", lambda i: i), ("Green", lambda i: 255 - i),
                       ("Blue", lambda i: (i * 3) % 256)):
        setattr(ds, colour + "PaletteColorLookupTableDescriptor", [256, 0, 16])
        table = np.array([fn(i) * 257 for i in range(256)], dtype="<u2")
        setattr(ds, colour + "PaletteColorLookupTableData", table.tobytes())
    y, x = np.mgrid[0:48, 0:64]
    ds.PixelData = ((x * 4 + y) % 256).astype(np.uint8).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    return ds


def to_bytes(ds):
    out = io.BytesIO()
    ds.save_as(out, write_like_original=False)
    return out.getvalue()


@pytest.fixture(scope="module")
def web(cloudpacs_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rendered")
    srv = WebServer(cloudpacs_bin, tmp)
    srv.data = Path(tmp) / "data"
    yield srv
    assert srv.stop() == 0
    log = srv.log.read_text(errors="replace")
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in log, log[-3000:]


@pytest.fixture(scope="module")
def stored(web, tmp_path_factory):
    """name -> (dataset as stored, path of an uncompressed copy for dcm2pnm)."""
    tmp = tmp_path_factory.mktemp("sources")
    out, parts = {}, []
    mr_path = TEST_FILES / "MR_small.dcm"
    for name, (fname, same_as_mr) in SOURCES.items():
        ds = pydicom.dcmread(str(TEST_FILES / fname))
        # The MR variants share one SOP Instance UID: give each its own.
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        data = to_bytes(ds)
        ref = mr_path if same_as_mr else tmp / (name + ".dcm")
        if not same_as_mr:
            ref.write_bytes(data)
        out[name] = (pydicom.dcmread(io.BytesIO(data)), ref)
        parts.append((b"application/dicom", data))
    pal = palette_dataset(out["ct"][0].StudyInstanceUID)
    data = to_bytes(pal)
    (tmp / "pal.dcm").write_bytes(data)
    out["pal"] = (pydicom.dcmread(io.BytesIO(data)), tmp / "pal.dcm")
    parts.append((b"application/dicom", data))
    status, _, body = stow(web.base, parts)
    assert status == 200, body[:500]
    return out


def url(base, ds, tail=""):
    return "%s/studies/%s/series/%s/instances/%s%s" % (
        base, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, tail)


def dcm2pnm(path, window, tmp):
    png = Path(tmp) / "ref.png"
    args = ["dcm2pnm", "--write-png"]
    if window is not None:
        args += ["+Ww", str(window[0]), str(window[1])]
    subprocess.run(args + [str(path), str(png)], check=True, capture_output=True)
    return np.asarray(Image.open(png)).astype(float)


def picture(body):
    return np.asarray(Image.open(io.BytesIO(body))).astype(float)


def window_query(name):
    w = WINDOW[name]
    return "" if w is None else "?window=%d,%d,linear" % w


@pytest.mark.parametrize("name", list(WINDOW))
@pytest.mark.parametrize("media,tolerance", [("image/png", 2.0), ("image/jpeg", 3.0)])
def test_rendered_matches_dcm2pnm(web, stored, name, media, tolerance, tmp_path):
    ds, ref_path = stored[name]
    status, hdrs, body = request(url(web.base, ds, "/rendered" + window_query(name)),
                                 headers={"Accept": media})
    assert status == 200, body[:300]
    assert hdrs["Content-Type"] == media
    got = picture(body)
    want = dcm2pnm(ref_path, WINDOW[name], tmp_path)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.abs(got - want).mean() < tolerance


def test_frame_rendered_and_default_jpeg(web, stored):
    ds, _ = stored["ct"]
    status, hdrs, body = request(url(web.base, ds, "/frames/1/rendered"))
    assert status == 200 and hdrs["Content-Type"] == "image/jpeg"
    assert body[:2] == b"\xff\xd8"
    status, _, _ = request(url(web.base, ds, "/frames/2/rendered"))
    assert status == 404


def test_viewport_and_region(web, stored):
    ds, _ = stored["ct"]
    for vp, size in (("64,64", (64, 64)), ("256,100", (100, 100)), ("32,128", (32, 32))):
        status, _, body = request(url(web.base, ds, "/rendered?viewport=" + vp),
                                  headers={"Accept": "image/png"})
        assert status == 200, (vp, body[:200])
        assert Image.open(io.BytesIO(body)).size == size, vp
    status, _, body = request(url(web.base, ds, "/rendered?viewport=64,32,0,0,128,64"),
                              headers={"Accept": "image/png"})
    assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 32)
    status, _, _ = request(url(web.base, ds, "/rendered?viewport=64,32,100,0,128,64"))
    assert status == 400


def test_quality_changes_size(web, stored):
    ds, _ = stored["mr"]
    sizes = []
    for q in (5, 95):
        status, _, body = request(url(web.base, ds, "/rendered?quality=%d" % q))
        assert status == 200
        sizes.append(len(body))
    assert sizes[0] < sizes[1]


def test_series_and_study_rendered(web, stored):
    ds, _ = stored["ct"]
    base = "%s/studies/%s" % (web.base, ds.StudyInstanceUID)
    status, hdrs, body = request(base + "/rendered", headers={"Accept": "image/png"})
    assert status == 200 and hdrs["Content-Type"].startswith("multipart/related")
    parts = parse_multipart(hdrs["Content-Type"], body)
    assert len(parts) == 2      # the CT and the palette image share the study
    for h, data in parts:
        assert h["content-type"] == "image/png"
        Image.open(io.BytesIO(data)).load()
    status, hdrs, body = request(base + "/series/%s/rendered" % ds.SeriesInstanceUID)
    assert status == 200
    assert len(parse_multipart(hdrs["Content-Type"], body)) == 1


def test_thumbnails_cached(web, stored):
    ds, _ = stored["mr"]
    u = url(web.base, ds, "/thumbnail")
    status, hdrs, body = request(u)
    assert status == 200 and hdrs["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(body)).size) <= 128
    etag = hdrs["ETag"]
    cached = [p for p in web.data.rglob("*") if ds.SOPInstanceUID in str(p) and p.is_file()
              and "thumbs" in str(p)]
    assert cached, "no thumbnail blob under %s" % web.data
    status, hdrs2, body2 = request(u)
    assert status == 200 and body2 == body and hdrs2["ETag"] == etag
    assert hdrs2.get("X-Cloudpacs-Cache") == "hit"
    status, _, _ = request(u, headers={"If-None-Match": etag})
    assert status == 304
    status, _, body = request(u + "?viewport=32,32", headers={"Accept": "image/png"})
    assert status == 200 and max(Image.open(io.BytesIO(body)).size) == 32
    for tail in ("", "/series/" + ds.SeriesInstanceUID):
        status, hdrs, _ = request("%s/studies/%s%s/thumbnail" % (
            web.base, ds.StudyInstanceUID, tail))
        assert status == 200 and hdrs["Content-Type"] == "image/jpeg"
    status, _, _ = request(url(web.base, ds, "/frames/1/thumbnail"))
    assert status == 200


def test_wado_uri(web, stored):
    ds, _ = stored["ct"]
    q = "requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s" % (
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    root = web.base[:-len("/dicom-web")]
    for prefix in (root, web.base):
        status, hdrs, body = request(prefix + "/wado?" + q)
        assert status == 200 and hdrs["Content-Type"] == "image/jpeg"
    status, hdrs, body = request(root + "/wado?" + q + "&contentType=application/dicom")
    assert status == 200 and hdrs["Content-Type"] == "application/dicom"
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(back.pixel_array, ds.pixel_array)
    # Explicit VR Little Endian by default (9.1.2.1.7), decoded when compressed.
    rle, _ = stored["rle"]
    q2 = "requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s" % (
        rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID)
    status, _, body = request(root + "/wado?" + q2 + "&contentType=application/dicom")
    assert status == 200
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, stored["mr"][0].pixel_array)
    status, _, body = request(root + "/wado?" + q2 + "&contentType=application/dicom"
                              "&transferSyntax=*")
    assert status == 200
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.file_meta.TransferSyntaxUID == rle.file_meta.TransferSyntaxUID
    status, _, _ = request(root + "/wado?" + q2 + "&contentType=application/dicom"
                           "&transferSyntax=1.2.840.10008.1.2.4.50")
    assert status == 406
    status, _, body = request(root + "/wado?" + q + "&contentType=image/png&rows=64"
                              "&windowCenter=40&windowWidth=400")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 64)
    status, _, body = request(root + "/wado?" + q + "&contentType=image/png"
                              "&region=0,0,0.5,0.25")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 32)
    for bad in ("&windowCenter=40", "&frameNumber=0", "&rows=-1", "&imageQuality=101",
                "&region=0.5,0,0.2,1"):
        status, _, _ = request(root + "/wado?" + q + bad)
        assert status == 400, bad
    status, _, _ = request(root + "/wado?" + q + "&frameNumber=2")
    assert status == 404
    status, _, _ = request(root + "/wado?" + q.replace("WADO", "XADO"))
    assert status == 400
    status, _, _ = request(root + "/wado?" + q + "&contentType=image/gif")
    assert status == 406
    status, _, _ = request(root + "/wado?" + q.replace(ds.SOPInstanceUID, "1.2.3.4"))
    assert status == 404


def test_transcoded_frames(web, stored):
    mr = stored["mr"][0]
    for name in LOSSLESS:
        ds, _ = stored[name]
        accept = ('multipart/related; type="application/octet-stream"; '
                  "transfer-syntax=" + ExplicitVRLittleEndian)
        for headers in ({"Accept": accept}, {}):
            status, hdrs, body = request(url(web.base, ds, "/frames/1"), headers=headers)
            assert status == 200, (name, body[:200])
            parts = parse_multipart(hdrs["Content-Type"], body)
            assert len(parts) == 1
            assert ExplicitVRLittleEndian in parts[0][0]["content-type"]
            assert parts[0][1] == mr.pixel_array.astype("<i2").tobytes(), name


def test_hostile_params(web, stored):
    ds, _ = stored["ct"]
    for q in ("window=", "window=40", "window=40,0", "window=a,b", "window=40,400,cubic",
              "window=nan,400", "window=1e999,400", "viewport=0,10", "viewport=99999,10",
              "viewport=10", "viewport=10,10,1", "viewport=10,10,-1,0,5,5",
              "viewport=10,10,0,0,0,5", "quality=0", "quality=101", "quality=x",
              "viewport=" + "9" * 500):
        status, hdrs, body = request(url(web.base, ds, "/rendered?" + q))
        assert status == 400, (q, status)
        assert hdrs["Content-Type"].startswith("application/json")
        assert json.loads(body)["status"] == 400
    status, _, _ = request(url(web.base, ds, "/rendered"), headers={"Accept": "image/gif"})
    assert status == 406
    status, _, _ = request(url(web.base, ds, "/frames/0/rendered"))
    assert status == 400
    status, _, _ = request(url(web.base, ds, "/rendered").replace(ds.SOPInstanceUID,
                                                                   "1.2.3.4"))
    assert status == 404
    status, _, _ = request(url(web.base, ds, "/rendered").replace(ds.SOPInstanceUID,
                                                                   "x" * 70))
    assert status == 400
    status, _, _ = request(web.base + "/studies/1.2.3/series/4.5/instances/6.7/frames/1,,2"
                           "/rendered")
    assert status == 400


def test_jpeg_frames(web, stored):
    ds, _ = stored["rgb"]
    accept = 'multipart/related; type="image/jpeg"'
    status, hdrs, body = request(url(web.base, ds, "/frames/1"), headers={"Accept": accept})
    assert status == 200, body[:200]
    parts = parse_multipart(hdrs["Content-Type"], body)
    assert parts[0][0]["content-type"].startswith("image/jpeg")
    assert "1.2.840.10008.1.2.4.50" in parts[0][0]["content-type"]
    got = picture(parts[0][1])
    assert got.shape == ds.pixel_array.shape
    assert np.abs(got - ds.pixel_array).mean() < 3
    for name in ("ct", "pal"):
        status, _, _ = request(url(web.base, stored[name][0], "/frames/1"),
                               headers={"Accept": accept})
        assert status == 406, name
    # Stored as JPEG baseline: the stored codestream itself.
    ybr, _ = stored["ybr"]
    status, hdrs, body = request(url(web.base, ybr, "/frames/1"), headers={"Accept": accept})
    assert status == 200
    part = parse_multipart(hdrs["Content-Type"], body)[0][1]
    assert part == pydicom.encaps.generate_pixel_data_frame(ybr.PixelData).__next__()


def test_transcoded_instance(web, stored):
    accept = ('multipart/related; type="application/dicom"; transfer-syntax='
              + ExplicitVRLittleEndian)
    for name in LOSSLESS + ("rgb",):
        ds, _ = stored[name]
        status, hdrs, body = request(url(web.base, ds), headers={"Accept": accept})
        assert status == 200, (name, body[:200])
        parts = parse_multipart(hdrs["Content-Type"], body)
        assert len(parts) == 1
        assert ExplicitVRLittleEndian in parts[0][0]["content-type"]
        back = pydicom.dcmread(io.BytesIO(parts[0][1]))
        assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert back.SOPInstanceUID == ds.SOPInstanceUID
        assert back.PhotometricInterpretation == ds.PhotometricInterpretation
        want = stored["mr"][0] if name in LOSSLESS else ds
        assert np.array_equal(back.pixel_array, want.pixel_array), name
        if "PlanarConfiguration" in back:
            assert back.PlanarConfiguration == 0
        for elem in ds:
            if elem.tag not in (0x7FE00010, 0x00280006):
                assert back[elem.tag].value == elem.value, (name, elem.tag)


def test_transcoded_lossy_instance(web, stored):
    ds, _ = stored["ybr"]
    accept = ('multipart/related; type="application/dicom"; transfer-syntax='
              + ExplicitVRLittleEndian)
    status, hdrs, body = request(url(web.base, ds), headers={"Accept": accept})
    assert status == 200, body[:200]
    back = pydicom.dcmread(io.BytesIO(parse_multipart(hdrs["Content-Type"], body)[0][1]))
    assert ds.PhotometricInterpretation.startswith("YBR")
    assert back.PhotometricInterpretation == "RGB"
    assert back.LossyImageCompression == "01"
    want = pydicom.pixel_data_handlers.util.convert_color_space(
        ds.pixel_array, ds.PhotometricInterpretation, "RGB")
    assert back.pixel_array.shape == want.shape
    assert np.abs(back.pixel_array.astype(float) - want).mean() < 3


def test_rendered_etag_and_cache(web, stored):
    ds, _ = stored["ct"]
    u = url(web.base, ds, "/rendered?window=50,350")
    status, hdrs, body = request(u)
    assert status == 200 and hdrs["ETag"]
    status, hdrs2, body2 = request(u)
    assert status == 200 and body2 == body and hdrs2["ETag"] == hdrs["ETag"]
    status, _, _ = request(u, headers={"If-None-Match": hdrs["ETag"]})
    assert status == 304
    status, hdrs3, body3 = request(u.replace("350", "351"))
    assert status == 200 and hdrs3["ETag"] != hdrs["ETag"]
    status, hdrs4, _ = request(u, headers={"Accept": "image/png"})
    assert status == 200 and hdrs4["ETag"] != hdrs["ETag"]
