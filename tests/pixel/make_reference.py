#!/usr/bin/python3
"""make_reference.py - reference pixel values for tests/unit/test_pixel_decode.c.

Writes into OUTDIR (the first argument, else $CLOUDPACS_PIXEL_REF_DIR):

  manifest.txt   one line per image: `<id> <frames> <frame bytes> <path>`;
                 <id>.bin holds every frame's decoded samples, concatenated,
                 in cloudpacs's layout (pixel.h): interleaved samples in the
                 smallest native-endian container, unsigned values masked to
                 Bits Stored and signed ones sign-extended from it, 1-bit
                 pixels one byte each, YBR_FULL_422 upsampled to YBR_FULL.
  gen/*.dcm      JPEG lossless files made with DCMTK's dcmcjpeg from the
                 native test files: process 14 SV1 (+e1), every predictor
                 (+el +sv 1..7), a point transform, at 8, 12 and 16 bits,
                 grey and RGB, single and multi-frame. Their reference is
                 what pydicom reads from dcmdjpeg's decompressed copy.
  palettes.txt   pydicom's palette files and <id>.bin, each channel's table
                 as pydicom expands it (segmented ones included).

The images are pydicom's test files in the uncompressed, RLE Lossless and
JPEG Lossless transfer syntaxes; pydicom (its numpy handlers) decodes the
native and RLE ones, dcmdjpeg the JPEG lossless ones. Files pydicom cannot
decode are left out of the manifest. Run with /usr/bin/python3 (pydicom
2.3 and numpy).
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pydicom

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files')

NATIVE = {'1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2',
          '1.2.840.10008.1.2.1.99'}
RLE = {'1.2.840.10008.1.2.5'}
JPEG_LOSSLESS = {'1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70'}


def fix_bits(arr, ds):
    """pixel.h's rule: mask unsigned samples, sign-extend signed ones."""
    if arr.dtype.kind == 'f' or ds.BitsAllocated == 1:
        return arr
    width = arr.dtype.itemsize * 8
    stored = int(ds.BitsStored)
    if stored >= width:
        return arr
    unsigned = arr.astype(np.dtype('u%d' % arr.dtype.itemsize)).astype(np.int64)
    mask = (1 << stored) - 1
    v = unsigned & mask
    if arr.dtype.kind == 'i':
        sign = 1 << (stored - 1)
        v = (v ^ sign) - sign
    return v.astype(arr.dtype)


def frames_of(ds):
    """Every frame, (frames, rows, columns[, samples]); pydicom's numpy
    handler already upsamples YBR_FULL_422 and interleaves planar data."""
    arr = ds.pixel_array
    n = int(getattr(ds, 'NumberOfFrames', 1) or 1)
    if n == 1:
        arr = arr[np.newaxis]
    return fix_bits(np.ascontiguousarray(arr), ds), n


def write_ref(out, manifest, ident, path, ds):
    arr, n = frames_of(ds)
    native = arr.astype(arr.dtype.newbyteorder('='))
    data = native.tobytes()
    with open(os.path.join(out, ident + '.bin'), 'wb') as f:
        f.write(data)
    manifest.append('%s %d %d %s' % (ident, n, len(data) // n, path))


def dcmtk(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ts_of(ds):
    meta = getattr(ds, 'file_meta', None)
    if meta is None or 'TransferSyntaxUID' not in meta:
        return None
    return str(meta.TransferSyntaxUID)


def library_files(out, manifest):
    tmp = os.path.join(out, 'tmp')
    os.makedirs(tmp, exist_ok=True)
    count = 0
    for root, _, names in os.walk(TEST_FILES):
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                ds = pydicom.dcmread(path)
            except Exception:
                continue
            ts = ts_of(ds)
            if 'PixelData' not in ds or ts not in NATIVE | RLE | JPEG_LOSSLESS:
                continue
            ident = 'lib%03d' % count
            try:
                if ts in JPEG_LOSSLESS:
                    plain = os.path.join(tmp, ident + '.dcm')
                    dcmtk('dcmdjpeg', path, plain)
                    ref = pydicom.dcmread(plain)
                else:
                    ref = ds
                write_ref(out, manifest, ident, path, ref)
                count += 1
            except Exception as e:  # pydicom cannot decode it: no reference
                print('# skipped %s: %s' % (path, e), file=sys.stderr)


def generated_files(out, manifest):
    """JPEG lossless files made by dcmcjpeg, with dcmdjpeg's decoding as reference."""
    gen = os.path.join(out, 'gen')
    os.makedirs(gen, exist_ok=True)
    t = lambda name: os.path.join(TEST_FILES, name)  # noqa: E731

    # Native inputs: 16-bit signed, 12-in-16 unsigned, 8-bit grey, RGB, multi-frame RGB.
    sources = {'ct16': t('CT_small.dcm'), 'mr16': t('MR_small.dcm'),
               'cr12': t('dicomdirtests/77654033/CR1/6154'),
               'rgb8': t('SC_rgb_jpeg_dcmd.dcm'), 'rgbodd': t('SC_rgb_small_odd.dcm')}

    # 8-bit grey: deflated file inflated by DCMTK; RGB multi-frame and 16-bit from RLE.
    grey8 = os.path.join(gen, 'grey8_native.dcm')
    dcmtk('dcmconv', '+te', t('image_dfl.dcm'), grey8)
    sources['grey8'] = grey8
    for key, name in (('rgb8x2', 'SC_rgb_rle_2frame.dcm'), ('rgb16', 'SC_rgb_rle_16bit.dcm')):
        plain = os.path.join(gen, key + '_native.dcm')
        dcmtk('dcmdrle', t(name), plain)
        sources[key] = plain

    variants = [('sv1', ['+e1'])]
    variants += [('p%d' % p, ['+el', '+sv', str(p)]) for p in range(1, 8)]
    variants += [('pt2', ['+el', '+sv', '1', '+pt', '2'])]
    plans = {
        'ct16': variants,
        'mr16': [v for v in variants if v[0] in ('sv1', 'p4', 'p7')],
        'cr12': variants,
        'grey8': [v for v in variants if v[0] in ('sv1', 'p2', 'p5', 'p6')],
        'rgb8': [v for v in variants if v[0] in ('sv1', 'p3', 'p7')],
        'rgbodd': [v for v in variants if v[0] in ('sv1',)],
        'rgb8x2': [v for v in variants if v[0] in ('sv1', 'p6')],
        'rgb16': [v for v in variants if v[0] in ('sv1', 'p4')],
    }
    for key, plan in plans.items():
        for vname, opts in plan:
            ident = 'gen_%s_%s' % (key, vname)
            enc = os.path.join(gen, ident + '.dcm')
            dec = os.path.join(gen, ident + '_dec.dcm')
            try:
                dcmtk('dcmcjpeg', *opts, sources[key], enc)
                dcmtk('dcmdjpeg', enc, dec)
                write_ref(out, manifest, ident, enc, pydicom.dcmread(dec))
            except Exception as e:
                print('# skipped %s: %s' % (ident, e), file=sys.stderr)


def palettes(out):
    """pydicom's palettes (PS3.6 Annex B): each channel as pydicom expands it.

    palettes.txt lists `<id> <entries of each channel> <path>`; <id>.bin
    holds red, green and blue, uint16 native-endian each.
    """
    from struct import unpack
    from pydicom.pixel_data_handlers.util import _expand_segmented_lut

    folder = os.path.join(os.path.dirname(pydicom.__file__), 'data', 'palettes')
    lines = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith('.dcm'):
            continue
        path = os.path.join(folder, name)
        ds = pydicom.dcmread(path)
        entries = ds.RedPaletteColorLookupTableDescriptor[0] or 65536
        depth = ds.RedPaletteColorLookupTableDescriptor[2]
        luts = []
        for colour in ('Red', 'Green', 'Blue'):
            plain = colour + 'PaletteColorLookupTableData'
            if plain in ds:
                data = ds[plain].value
                dtype = 'uint%d' % (len(data) // entries * 8)
                luts.append(np.frombuffer(data, dtype=dtype).astype(np.uint16))
            else:
                data = ds['Segmented' + plain].value
                fmt = ('<' if ds.is_little_endian else '>') + (
                    '%dB' % len(data) if depth == 8 else '%dH' % (len(data) // 2))
                luts.append(np.asarray(_expand_segmented_lut(unpack(fmt, data), fmt),
                                       dtype=np.uint16))
        if len({len(x) for x in luts}) != 1:
            continue
        ident = 'palette_' + name[:-4]
        with open(os.path.join(out, ident + '.bin'), 'wb') as f:
            f.write(np.concatenate(luts).astype('=u2').tobytes())
        lines.append('%s %d %s' % (ident, len(luts[0]), path))
    with open(os.path.join(out, 'palettes.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('CLOUDPACS_PIXEL_REF_DIR')
    if not out:
        print('usage: make_reference.py OUTDIR', file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    warnings.simplefilter('ignore')
    manifest = []
    library_files(out, manifest)
    generated_files(out, manifest)
    palettes(out)
    with open(os.path.join(out, 'manifest.txt'), 'w') as f:
        f.write('\n'.join(manifest) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
