#!/usr/bin/python3
"""gen_frames.py - multi-frame native images for bench/decode.sh.

    gen_frames.py --out FILE --kind ct|cr --frames N [--rows R --columns C] [--seed S]

ct: 512 x 512, 12 bits stored in 16, signed (Pixel Representation 1): a
body-like ellipse of soft tissue (about 40 HU) with bone and air, plus
noise, the way CT slices compress. cr: 2500 x 2000 (rows x columns), 12
bits unsigned: a smooth exposure gradient with anatomy-like blobs and
noise. Each frame differs a little. Written as Explicit VR Little Endian
Multi-frame Grayscale Word Secondary Capture, which dcmcjpeg and dcmcrle
accept. Needs pydicom and numpy (/usr/bin/python3).
"""
import argparse

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_CLASS = '1.2.840.10008.5.1.4.1.1.7.3'


def ct_frame(rng, rows, cols, k):
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = rows / 2, cols / 2
    body = ((y - cy) / (0.42 * rows)) ** 2 + ((x - cx) / (0.47 * cols)) ** 2 < 1
    img = np.full((rows, cols), -1000.0)
    img[body] = 40
    bone = ((y - cy - 0.1 * rows) / (0.08 * rows)) ** 2 + ((x - cx) / (0.06 * cols)) ** 2 < 1
    img[bone] = 700 + 5 * k
    lung = (((y - cy + 0.05 * rows) / (0.2 * rows)) ** 2 +
            ((np.abs(x - cx) - 0.2 * cols) / (0.12 * cols)) ** 2) < 1
    img[lung & body] = -850
    img += rng.normal(0, 12, (rows, cols))
    return np.clip(img, -1024, 3071).astype(np.int16)


def cr_frame(rng, rows, cols, k):
    y, x = np.mgrid[0:rows, 0:cols]
    img = 600 + 1800 * (x / cols) * (0.6 + 0.4 * y / rows)
    for i in range(12):
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        r = rng.uniform(0.03, 0.15) * min(rows, cols)
        img += 400 * np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r)))
    img += rng.normal(0, 6 + k % 3, (rows, cols))
    return np.clip(img, 0, 4095).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--kind', choices=('ct', 'cr'), required=True)
    ap.add_argument('--frames', type=int, default=1)
    ap.add_argument('--rows', type=int)
    ap.add_argument('--columns', type=int)
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    rows = a.rows or (512 if a.kind == 'ct' else 2500)
    cols = a.columns or (512 if a.kind == 'ct' else 2000)
    rng = np.random.default_rng(a.seed)
    make = ct_frame if a.kind == 'ct' else cr_frame
    frames = np.stack([make(rng, rows, cols, k) for k in range(a.frames)])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = 'CT' if a.kind == 'ct' else 'CR'
    ds.PatientName = 'BENCH^DECODE'
    ds.PatientID = 'BENCH'
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.NumberOfFrames = a.frames
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1 if a.kind == 'ct' else 0
    ds.PixelData = frames.tobytes()
    ds['PixelData'].VR = 'OW'
    ds.save_as(a.out, write_like_original=False)


if __name__ == '__main__':
    main()
