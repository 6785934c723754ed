/*
 * test_pixel_decode.c - the pixel core: the Image Pixel module read from a
 * data set (PS3.3 C.7.6.3), frames located in native and encapsulated pixel
 * data (PS3.5 8.1.1, A.4), and the decoders of uncompressed data, RLE
 * Lossless (PS3.5 Annex G) and JPEG Lossless (ITU T.81 Annex H).
 *
 * Three kinds of tests:
 *   - hand-built data sets, checked value by value: bit-packed frames that
 *     do not start on a byte, 12 bits signed in 16, colour-by-plane RGB,
 *     YBR_FULL_422, big endian, float pixels, multi-frame, odd lengths,
 *     segmented palettes, frames found by BOT, EOT and fragment scanning,
 *     Deflated Image Frame Compression, hand-coded JPEG lossless streams
 *     (restart intervals, three components in one or three scans, every
 *     predictor, point transform, SSSS 16);
 *   - every file of pydicom's test_files in an uncompressed, RLE or JPEG
 *     lossless syntax, plus JPEG lossless files made by dcmcjpeg (every
 *     predictor, point transform, 8/12/16 bits, grey and RGB), every frame
 *     compared with references tests/pixel/make_reference.py writes at run
 *     time (pydicom's numpy handlers; dcmdjpeg for JPEG lossless), read
 *     with a tiny bulk threshold so that every frame comes through pread;
 *     and pydicom's palettes, segmented ones expanded as pydicom does;
 *   - the same codestreams cut short and with flipped bytes: an error for
 *     the frame or a frame, never a crash (run under ASan to see).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/dict_tags.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/vr.h"
#include "pixel/codec.h"
#include "pixel/pixel.h"

/* --- building data sets by hand ------------------------------------------------------- */

typedef struct builder {
    cp_buf b;
    bool be;
} builder;

static void put16(builder *d, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    if (d->be) {
        x[0] = (uint8_t)(v >> 8);
        x[1] = (uint8_t)v;
    }
    assert_int_equal(cp_buf_append(&d->b, x, 2), CP_OK);
}

static void put32(builder *d, uint32_t v)
{
    if (d->be) {
        put16(d, (uint16_t)(v >> 16));
        put16(d, (uint16_t)v);
    } else {
        put16(d, (uint16_t)v);
        put16(d, (uint16_t)(v >> 16));
    }
}

static bool long_vr(const char *vr)
{
    return strstr("OB OW OF OD OL OV SQ UN UT UC UR", vr) != NULL;
}

static void header(builder *d, uint32_t tag, const char *vr, uint32_t len)
{
    put16(d, DCM_TAG_GROUP(tag));
    put16(d, DCM_TAG_ELEMENT(tag));
    assert_int_equal(cp_buf_append(&d->b, vr, 2), CP_OK);
    if (long_vr(vr)) {
        put16(d, 0);
        put32(d, len);
    } else {
        put16(d, (uint16_t)len);
    }
}

/* An element whose value bytes are given as they must appear (already in order). */
static void el_raw(builder *d, uint32_t tag, const char *vr, const void *v, size_t len)
{
    header(d, tag, vr, (uint32_t)(len + len % 2));
    assert_int_equal(cp_buf_append(&d->b, v, len), CP_OK);
    if (len % 2)
        assert_int_equal(cp_buf_append_byte(&d->b, 0), CP_OK);
}

static void el_us(builder *d, uint32_t tag, uint16_t v)
{
    header(d, tag, "US", 2);
    put16(d, v);
}

static void el_str(builder *d, uint32_t tag, const char *vr, const char *s)
{
    size_t len = strlen(s);

    header(d, tag, vr, (uint32_t)(len + len % 2));
    assert_int_equal(cp_buf_append(&d->b, s, len), CP_OK);
    if (len % 2)
        assert_int_equal(cp_buf_append_byte(&d->b, ' '), CP_OK);
}

/* Rows, Columns and the rest of the Image Pixel module, in tag order up to (0028,0103). */
typedef struct geometry {
    uint16_t rows, columns, samples, bits, stored, sign, planar;
    const char *photometric;
    const char *frames;
} geometry;

static void image_module(builder *d, const geometry *g)
{
    el_us(d, DCM_SamplesPerPixel, g->samples);
    el_str(d, DCM_PhotometricInterpretation, "CS", g->photometric);
    if (g->samples > 1)
        el_us(d, DCM_PlanarConfiguration, g->planar);
    if (g->frames != NULL)
        el_str(d, DCM_NumberOfFrames, "IS", g->frames);
    el_us(d, DCM_Rows, g->rows);
    el_us(d, DCM_Columns, g->columns);
    el_us(d, DCM_BitsAllocated, g->bits);
    el_us(d, DCM_BitsStored, g->stored);
    el_us(d, DCM_HighBit, (uint16_t)(g->stored - 1));
    el_us(d, DCM_PixelRepresentation, g->sign);
}

/* A read data set, its source and its px_image. */
typedef struct fixture {
    builder d;
    dcm_source *src;
    dcm_file *file;
    px_image img;
} fixture;

static cp_status fixture_read(fixture *f, const char *ts_uid)
{
    dcm_read_options opts = { 0 };
    cp_error err;

    opts.no_meta = true;
    opts.assume_ts = dcm_ts_lookup(ts_uid, strlen(ts_uid));
    opts.bulk_threshold = UINT32_MAX;
    assert_non_null(opts.assume_ts);
    f->src = dcm_source_from_memory(f->d.b.data, f->d.b.len);
    assert_non_null(f->src);
    assert_int_equal(dcm_file_read(f->src, &opts, &f->file, &err), CP_OK);
    return px_image_init(&f->img, f->file, f->src, &err);
}

static void fixture_clear(fixture *f)
{
    px_image_clear(&f->img);
    dcm_file_destroy(f->file);
    dcm_source_destroy(f->src);
    cp_buf_free(&f->d.b);
}

/* Decodes frame `index` of the fixture's image. */
static cp_status decode(fixture *f, uint32_t index, px_frame *frame)
{
    cp_buf bytes = CP_BUF_INIT;
    cp_error err;
    cp_status st = px_frame_bytes(&f->img, f->src, index, &bytes, &err);

    memset(frame, 0, sizeof *frame);
    if (st == CP_OK)
        st = px_decode_frame(&f->img, bytes.data, bytes.len, frame, &err);
    cp_buf_free(&bytes);
    return st;
}

#define EXPLICIT_LE "1.2.840.10008.1.2.1"
#define EXPLICIT_BE "1.2.840.10008.1.2.2"

/* --- native layouts ------------------------------------------------------------------ */

static void test_photometric_names(void **state)
{
    (void)state;
    assert_int_equal(px_photometric_parse("MONOCHROME2 ", 12), PX_MONOCHROME2);
    assert_int_equal(px_photometric_parse("PALETTE COLOR", 13), PX_PALETTE_COLOR);
    assert_int_equal(px_photometric_parse("YBR_FULL_422", 12), PX_YBR_FULL_422);
    assert_int_equal(px_photometric_parse("YBR_FULL", 8), PX_YBR_FULL);
    assert_int_equal(px_photometric_parse("RGBA", 4), PX_PHOTOMETRIC_UNKNOWN);
    assert_string_equal(px_photometric_name(PX_YBR_RCT), "YBR_RCT");
    assert_int_equal(px_sample_size(PX_F64), 8);
    assert_int_equal(px_sample_size(PX_S16), 2);
}

/* Three 3x3 frames of one bit: frames 2 and 3 start at bits 9 and 18. */
static void test_one_bit_frames(void **state)
{
    fixture f = { 0 };
    geometry g = { 3, 3, 1, 1, 1, 0, 0, "MONOCHROME2", "3" };
    uint8_t bits[27] = { 1, 0, 1, 1, 0, 0, 1, 1, 1,  0, 1, 0, 0, 1, 1, 0, 0, 1,
                         1, 1, 0, 1, 0, 1, 1, 0, 0 };
    uint8_t packed[4] = { 0 };
    px_frame frame;

    (void)state;
    for (int i = 0; i < 27; i++)
        packed[i / 8] |= (uint8_t)(bits[i] << (i % 8));
    image_module(&f.d, &g);
    el_raw(&f.d, DCM_PixelData, "OB", packed, sizeof packed);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_int_equal(f.img.frames, 3);
    assert_int_equal(px_image_native_frame_size(&f.img), 2);

    for (uint32_t k = 0; k < 3; k++) {
        assert_int_equal(decode(&f, k, &frame), CP_OK);
        assert_int_equal(frame.type, PX_U8);
        assert_int_equal(frame.size, 9);
        assert_memory_equal(frame.data, bits + 9 * k, 9);
        px_frame_clear(&frame);
    }
    assert_int_equal(decode(&f, 3, &frame), CP_ERR_NOT_FOUND);
    fixture_clear(&f);
}

/* 12 bits stored, signed, in 16: the bits above the high bit are junk. */
static void test_signed_12_in_16(void **state)
{
    fixture f = { 0 };
    geometry g = { 1, 4, 1, 16, 12, 1, 0, "MONOCHROME2", NULL };
    uint16_t raw[4] = { 0x0FFF, 0xF800, 0x37FF, 0xA001 };
    int16_t want[4] = { -1, -2048, 2047, 1 };
    px_frame frame;

    (void)state;
    image_module(&f.d, &g);
    el_raw(&f.d, DCM_PixelData, "OW", raw, sizeof raw);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_true(f.img.is_signed);
    assert_int_equal(decode(&f, 0, &frame), CP_OK);
    assert_int_equal(frame.type, PX_S16);
    assert_int_equal(frame.bits_stored, 12);
    assert_memory_equal(frame.data, want, sizeof want);
    px_frame_clear(&frame);
    fixture_clear(&f);
}

static void test_planar_rgb(void **state)
{
    fixture f = { 0 };
    geometry g = { 1, 2, 3, 8, 8, 0, 1, "RGB", NULL };
    uint8_t planes[6] = { 10, 11, 20, 21, 30, 31 };
    uint8_t want[6] = { 10, 20, 30, 11, 21, 31 };
    px_frame frame;

    (void)state;
    image_module(&f.d, &g);
    el_raw(&f.d, DCM_PixelData, "OB", planes, sizeof planes);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_int_equal(decode(&f, 0, &frame), CP_OK);
    assert_int_equal(frame.photometric, PX_RGB);
    assert_memory_equal(frame.data, want, sizeof want);
    px_frame_clear(&frame);
    fixture_clear(&f);
}

static void test_ybr_full_422(void **state)
{
    fixture f = { 0 };
    geometry g = { 2, 2, 3, 8, 8, 0, 0, "YBR_FULL_422", NULL };
    uint8_t raw[8] = { 1, 2, 100, 200, 3, 4, 110, 210 };
    uint8_t want[12] = { 1, 100, 200, 2, 100, 200, 3, 110, 210, 4, 110, 210 };
    px_frame frame;

    (void)state;
    image_module(&f.d, &g);
    el_raw(&f.d, DCM_PixelData, "OB", raw, sizeof raw);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_int_equal(px_image_native_frame_size(&f.img), 8);
    assert_int_equal(decode(&f, 0, &frame), CP_OK);
    assert_int_equal(frame.photometric, PX_YBR_FULL);
    assert_int_equal(frame.size, 12);
    assert_memory_equal(frame.data, want, sizeof want);
    px_frame_clear(&frame);
    fixture_clear(&f);
}

/* Big endian OW, three frames: frame 2 picked by index. */
static void test_big_endian_frames(void **state)
{
    fixture f = { .d = { CP_BUF_INIT, true } };
    geometry g = { 1, 2, 1, 16, 16, 0, 0, "MONOCHROME2", "3" };
    uint8_t raw[12] = { 0x01, 0x02, 0x03, 0x04, 0x10, 0x20, 0x30, 0x40, 0xFF, 0xFE,
                        0x00, 0x01 };
    uint16_t want[3][2] = { { 0x0102, 0x0304 }, { 0x1020, 0x3040 }, { 0xFFFE, 0x0001 } };
    px_frame frame;

    (void)state;
    image_module(&f.d, &g);
    el_raw(&f.d, DCM_PixelData, "OW", raw, sizeof raw);
    assert_int_equal(fixture_read(&f, EXPLICIT_BE), CP_OK);
    assert_true(f.img.big_endian);
    for (uint32_t k = 0; k < 3; k++) {
        assert_int_equal(decode(&f, k, &frame), CP_OK);
        assert_memory_equal(frame.data, want[k], 4);
        px_frame_clear(&frame);
    }
    fixture_clear(&f);
}

/* A 3x3 frame of 9 bytes: the element is padded to 10, the frame is 9. */
static void test_odd_length(void **state)
{
    fixture f = { 0 };
    geometry g = { 3, 3, 1, 8, 8, 0, 0, "MONOCHROME2", NULL };
    uint8_t raw[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    cp_buf bytes = CP_BUF_INIT;
    px_frame frame;
    cp_error err;

    (void)state;
    image_module(&f.d, &g);
    el_raw(&f.d, DCM_PixelData, "OB", raw, sizeof raw);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_int_equal(px_frame_bytes(&f.img, f.src, 0, &bytes, &err), CP_OK);
    assert_int_equal(bytes.len, 9);
    assert_int_equal(px_native_decode(&f.img, bytes.data, 9, &frame, &err), CP_OK);
    assert_memory_equal(frame.data, raw, 9);
    px_frame_clear(&frame);
    assert_int_equal(px_native_decode(&f.img, bytes.data, 8, &frame, &err), CP_ERR_MALFORMED);
    assert_null(frame.data);
    cp_buf_free(&bytes);
    fixture_clear(&f);
}

static void test_float_pixels(void **state)
{
    fixture f = { 0 };
    float raw[2] = { 1.5f, -2.25f };
    px_frame frame;

    (void)state;
    el_us(&f.d, DCM_SamplesPerPixel, 1);
    el_str(&f.d, DCM_PhotometricInterpretation, "CS", "MONOCHROME2");
    el_us(&f.d, DCM_Rows, 1);
    el_us(&f.d, DCM_Columns, 2);
    el_us(&f.d, DCM_BitsAllocated, 32);
    el_raw(&f.d, DCM_FloatPixelData, "OF", raw, sizeof raw);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_true(f.img.float_pixels);
    assert_int_equal(decode(&f, 0, &frame), CP_OK);
    assert_int_equal(frame.type, PX_F32);
    assert_memory_equal(frame.data, raw, sizeof raw);
    px_frame_clear(&frame);
    fixture_clear(&f);
}

static void test_inconsistent_attributes(void **state)
{
    static const geometry bad[] = {
        { 2, 2, 1, 16, 17, 0, 0, "MONOCHROME2", NULL },    /* stored > allocated */
        { 2, 2, 2, 8, 8, 0, 0, "MONOCHROME2", NULL },      /* 2 samples */
        { 2, 2, 3, 8, 8, 0, 0, "MONOCHROME2", NULL },      /* grey with 3 samples */
        { 0, 2, 1, 8, 8, 0, 0, "MONOCHROME2", NULL },      /* no rows */
        { 2, 2, 1, 12, 12, 0, 0, "MONOCHROME2", NULL },    /* 12 allocated */
        { 2, 2, 1, 8, 8, 0, 0, "MONOCHROME2", "0" },       /* no frames */
        { 2, 2, 1, 8, 8, 0, 0, "MONOCHROME2", "5" },       /* frames past the data */
        { 2, 2, 1, 8, 8, 0, 0, "MONOCHROME2", "1A" },      /* not an IS */
        { 2, 2, 3, 1, 1, 0, 0, "RGB", NULL },              /* bit-packed colour */
    };
    uint8_t raw[8] = { 0 };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fixture f = { 0 };

        image_module(&f.d, &bad[i]);
        el_raw(&f.d, DCM_PixelData, "OB", raw, sizeof raw);
        assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_ERR_MALFORMED);
        fixture_clear(&f);
    }
}

/* --- palettes (PS3.3 C.7.9) ---------------------------------------------------------- */

static void le_words(uint8_t *out, const uint16_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = (uint8_t)w[i];
        out[2 * i + 1] = (uint8_t)(w[i] >> 8);
    }
}

static void test_segmented_palette(void **state)
{
    fixture f = { 0 };
    geometry g = { 1, 1, 1, 8, 8, 0, 0, "PALETTE COLOR", NULL };
    /* discrete 3 values, linear to 1000 over 4, indirect: 2 segments from entry 0. */
    uint16_t seg[] = { 0, 3, 0, 100, 200, 1, 4, 1000, 2, 2, 0, 0 };
    uint16_t want[] = { 0, 100, 200, 400, 600, 800, 1000, 0, 100, 200, 400, 600, 800,
                        1000 };
    uint16_t plain[14];
    uint16_t desc[3] = { 14, 0, 16 };
    uint8_t seg_bytes[sizeof seg], plain_bytes[sizeof plain], desc_bytes[6];
    uint8_t px = 0;

    (void)state;
    for (int i = 0; i < 14; i++)
        plain[i] = (uint16_t)(i * 0x1111u);
    le_words(seg_bytes, seg, sizeof seg / 2);
    le_words(plain_bytes, plain, 14);
    le_words(desc_bytes, desc, 3);

    image_module(&f.d, &g);
    for (int c = 0; c < 3; c++)
        el_raw(&f.d, DCM_RedPaletteColorLookupTableDescriptor + (uint32_t)c, "US", desc_bytes,
               6);
    el_raw(&f.d, DCM_RedPaletteColorLookupTableData, "OW", plain_bytes, sizeof plain_bytes);
    el_raw(&f.d, DCM_GreenPaletteColorLookupTableData, "OW", plain_bytes, sizeof plain_bytes);
    el_raw(&f.d, DCM_SegmentedBluePaletteColorLookupTableData, "OW", seg_bytes,
           sizeof seg_bytes);
    el_raw(&f.d, DCM_PixelData, "OB", &px, 1);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_true(f.img.has_palette);
    assert_int_equal(f.img.palette.entries, 14);
    assert_int_equal(f.img.palette.bits, 16);
    assert_memory_equal(f.img.palette.red, plain, sizeof plain);
    assert_memory_equal(f.img.palette.blue, want, sizeof want);
    fixture_clear(&f);
}

/* An 8-bit descriptor over 16-bit words keeps the words, as pydicom does. */
static void test_palette_8bit_words(void **state)
{
    fixture f = { 0 };
    geometry g = { 1, 1, 1, 8, 8, 0, 0, "PALETTE COLOR", NULL };
    uint16_t words[4] = { 0x0000, 0x5500, 0xAA00, 0xFF00 };
    uint16_t desc[3] = { 4, 0, 8 };
    uint8_t wb[8], db[6], bytes[4] = { 0, 85, 170, 255 };
    uint16_t bytes16[4] = { 0, 85, 170, 255 };
    uint8_t px = 0;

    (void)state;
    le_words(wb, words, 4);
    le_words(db, desc, 3);
    image_module(&f.d, &g);
    for (int c = 0; c < 3; c++)
        el_raw(&f.d, DCM_RedPaletteColorLookupTableDescriptor + (uint32_t)c, "US", db, 6);
    el_raw(&f.d, DCM_RedPaletteColorLookupTableData, "OW", wb, 8);
    el_raw(&f.d, DCM_GreenPaletteColorLookupTableData, "OW", wb, 8);
    el_raw(&f.d, DCM_BluePaletteColorLookupTableData, "OB", bytes, 4);
    el_raw(&f.d, DCM_PixelData, "OB", &px, 1);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_memory_equal(f.img.palette.red, words, sizeof words);
    assert_memory_equal(f.img.palette.blue, bytes16, sizeof bytes16);
    assert_int_equal(f.img.palette.bits, 16);
    fixture_clear(&f);
}

static void test_bad_segmented_palettes(void **state)
{
    static const uint16_t cases[][9] = {
        { 1, 4, 100, 0, 0, 0 },      /* linear first */
        { 2, 1, 0, 0, 0, 0 },        /* indirect first */
        { 0, 40, 1, 2, 0, 0 },       /* discrete past the end */
        { 7, 1, 0, 0, 0, 0 },        /* unknown opcode */
        { 0, 1, 5, 1, 65535, 9, 0, 1, 7 },    /* past 65536 entries */
    };
    uint16_t desc[3] = { 4, 0, 16 };
    uint8_t db[6], sb[18];
    uint8_t px = 0;

    (void)state;
    le_words(db, desc, 3);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f = { 0 };
        geometry g = { 1, 1, 1, 8, 8, 0, 0, "PALETTE COLOR", NULL };

        le_words(sb, cases[i], 9);
        image_module(&f.d, &g);
        for (int c = 0; c < 3; c++)
            el_raw(&f.d, DCM_RedPaletteColorLookupTableDescriptor + (uint32_t)c, "US", db, 6);
        for (int c = 0; c < 3; c++)
            el_raw(&f.d, DCM_SegmentedRedPaletteColorLookupTableData + (uint32_t)c, "OW", sb,
                   18);
        el_raw(&f.d, DCM_PixelData, "OB", &px, 1);
        assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_ERR_MALFORMED);
        fixture_clear(&f);
    }
}

/* --- encapsulated frames (PS3.5 A.4) ------------------------------------------------- */

static void item(builder *d, const void *data, uint32_t len)
{
    put16(d, 0xFFFE);
    put16(d, 0xE000);
    put32(d, len);
    assert_int_equal(cp_buf_append(&d->b, data, len), CP_OK);
}

static void encapsulated(builder *d, const uint32_t *bot, uint32_t nbot,
                         const uint8_t *const *frags, const uint32_t *lens, uint32_t n)
{
    header(d, DCM_PixelData, "OB", DCM_UNDEFINED_LENGTH);
    put16(d, 0xFFFE);
    put16(d, 0xE000);
    put32(d, nbot * 4);
    for (uint32_t i = 0; i < nbot; i++)
        put32(d, bot[i]);
    for (uint32_t i = 0; i < n; i++)
        item(d, frags[i], lens[i]);
    put16(d, 0xFFFE);
    put16(d, 0xE0DD);
    put32(d, 0);
}

/* Two frames in three fragments, found by BOT, by start markers and by EOT. */
static void test_fragments(void **state)
{
    static const uint8_t a[4] = { 0xFF, 0xD8, 1, 2 }, b[2] = { 3, 4 };
    static const uint8_t c[6] = { 0xFF, 0xD8, 5, 6, 7, 8 };
    const uint8_t *frags[3] = { a, b, c };
    uint32_t lens[3] = { 4, 2, 6 };
    uint32_t bot[2] = { 0, 8 + 4 + 8 + 2 };
    static const uint8_t want0[6] = { 0xFF, 0xD8, 1, 2, 3, 4 };

    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        fixture f = { 0 };
        geometry g = { 1, 1, 1, 8, 8, 0, 0, "MONOCHROME2", "2" };
        cp_buf out = CP_BUF_INIT;
        cp_error err;

        image_module(&f.d, &g);
        if (mode == 2) {
            uint64_t eot[2] = { bot[0], bot[1] }, eotl[2] = { 5, 6 };

            el_raw(&f.d, DCM_ExtendedOffsetTable, "OV", eot, sizeof eot);
            el_raw(&f.d, DCM_ExtendedOffsetTableLengths, "OV", eotl, sizeof eotl);
        }
        encapsulated(&f.d, bot, mode == 0 ? 2 : 0, frags, lens, 3);
        assert_int_equal(fixture_read(&f, "1.2.840.10008.1.2.4.70"), CP_OK);

        assert_int_equal(px_frame_bytes(&f.img, f.src, 0, &out, &err), CP_OK);
        assert_int_equal(out.len, mode == 2 ? 5 : 6);
        assert_memory_equal(out.data, want0, out.len);
        cp_buf_reset(&out);
        assert_int_equal(px_frame_bytes(&f.img, f.src, 1, &out, &err), CP_OK);
        assert_int_equal(out.len, 6);
        assert_memory_equal(out.data, c, 6);
        cp_buf_free(&out);
        fixture_clear(&f);
    }
}

/* Deflated Image Frame Compression: each fragment is a raw deflate stream. */
static void test_deflated_frames(void **state)
{
    fixture f = { 0 };
    geometry g = { 4, 4, 1, 16, 16, 0, 0, "MONOCHROME2", "2" };
    uint16_t pixels[2][16];
    uint8_t packed[2][256];
    const uint8_t *frags[2] = { packed[0], packed[1] };
    uint32_t lens[2];
    px_frame frame;

    (void)state;
    for (int k = 0; k < 2; k++) {
        z_stream z;

        for (int i = 0; i < 16; i++)
            pixels[k][i] = (uint16_t)(1000 * k + 37 * i);
        memset(&z, 0, sizeof z);
        assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        z.next_in = (Bytef *)pixels[k];
        z.avail_in = sizeof pixels[k];
        z.next_out = packed[k];
        z.avail_out = sizeof packed[k];
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        lens[k] = (uint32_t)z.total_out + (uint32_t)(z.total_out % 2);
        deflateEnd(&z);
    }
    image_module(&f.d, &g);
    encapsulated(&f.d, NULL, 0, frags, lens, 2);
    assert_int_equal(fixture_read(&f, "1.2.840.10008.1.2.8.1"), CP_OK);
    assert_true(px_can_decode(f.img.transfer_syntax));
    for (uint32_t k = 0; k < 2; k++) {
        assert_int_equal(decode(&f, k, &frame), CP_OK);
        assert_memory_equal(frame.data, pixels[k], sizeof pixels[k]);
        px_frame_clear(&frame);
    }
    fixture_clear(&f);
}

/* --- RLE and JPEG lossless by hand ----------------------------------------------------- */

static px_image small_image(uint32_t rows, uint32_t cols, uint16_t spp, uint16_t bits,
                            const char *ts)
{
    px_image img;

    memset(&img, 0, sizeof img);
    img.rows = rows;
    img.columns = cols;
    img.frames = 1;
    img.samples_per_pixel = spp;
    img.bits_allocated = bits;
    img.bits_stored = bits;
    img.high_bit = (uint16_t)(bits - 1);
    img.photometric = spp == 3 ? PX_RGB : PX_MONOCHROME2;
    img.transfer_syntax = dcm_ts_lookup(ts, strlen(ts));
    return img;
}

static void test_rle_segments(void **state)
{
    px_image img = small_image(2, 3, 1, 16, "1.2.840.10008.1.2.5");
    uint8_t data[64 + 16] = { 0 };
    uint16_t want[6] = { 0x0102, 0x0102, 0x0102, 0x0304, 0x0305, 0x0306 };
    px_frame frame;
    cp_error err;

    (void)state;
    data[0] = 2;
    data[4] = 64;
    data[8] = 64 + 6;
    /* MSB plane: run of 3 x 01, literal 03 03 03; LSB plane: literal 02 02 02 04 05 06. */
    memcpy(data + 64, (uint8_t[]){ 0xFE, 0x01, 0x02, 0x03, 0x03, 0x03 }, 6);
    memcpy(data + 70, (uint8_t[]){ 0x05, 0x02, 0x02, 0x02, 0x04, 0x05, 0x06 }, 7);
    assert_int_equal(px_rle_decode(&img, data, 77, &frame, &err), CP_OK);
    assert_memory_equal(frame.data, want, sizeof want);
    px_frame_clear(&frame);

    /* One byte short of the LSB plane is padded; a whole row short fails. */
    assert_int_equal(px_rle_decode(&img, data, 76, &frame, &err), CP_OK);
    assert_int_equal(((uint16_t *)(void *)frame.data)[5], 0x0300);
    px_frame_clear(&frame);
    assert_int_equal(px_rle_decode(&img, data, 73, &frame, &err), CP_ERR_MALFORMED);
    data[0] = 3;
    assert_int_equal(px_rle_decode(&img, data, 77, &frame, &err), CP_ERR_MALFORMED);
    data[0] = 2;
    data[8] = 200;
    assert_int_equal(px_rle_decode(&img, data, 77, &frame, &err), CP_ERR_MALFORMED);
    assert_null(frame.data);
}

/* A minimal bit writer for hand-made JPEG lossless streams (with byte stuffing). */
typedef struct bitw {
    cp_buf b;
    uint32_t acc;
    int n;
} bitw;

static void bw_put(bitw *w, uint32_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        w->acc = w->acc << 1 | ((v >> i) & 1);
        if (++w->n == 8) {
            assert_int_equal(cp_buf_append_byte(&w->b, (uint8_t)w->acc), CP_OK);
            if ((w->acc & 0xFF) == 0xFF)
                assert_int_equal(cp_buf_append_byte(&w->b, 0), CP_OK);
            w->acc = 0;
            w->n = 0;
        }
    }
}

static void bw_flush(bitw *w)
{
    while (w->n != 0)
        bw_put(w, 1, 1);
}

static void bw_bytes(bitw *w, const uint8_t *p, size_t n)
{
    assert_int_equal(cp_buf_append(&w->b, p, n), CP_OK);
}

/*
 * A table with every SSSS 0-16 coded as 4 bits plus one of 5 bits: code k
 * (k < 15) is k in 4 bits, SSSS 15 is 11110 and 16 is 11111.
 */
static void put_dht(bitw *w)
{
    uint8_t seg[] = { 0xFF, 0xC4, 0, 2 + 17 + 17, 0x00,
                      0, 0, 0, 15, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

    bw_bytes(w, seg, sizeof seg);
}

static void put_diff(bitw *w, int32_t d)
{
    uint32_t mag = (uint32_t)(d < 0 ? -d : d);
    int s = 0;

    if (d == 32768) {
        bw_put(w, 31, 5);
        return;
    }
    while (mag >> s)
        s++;
    if (s < 15)
        bw_put(w, (uint32_t)s, 4);
    else
        bw_put(w, 30, 5);
    if (s > 0)
        bw_put(w, d < 0 ? (uint32_t)(d + (1 << s) - 1) : (uint32_t)d, s);
}

/* How the hand encoder codes a stream. */
typedef struct ll_plan {
    uint32_t rows, cols;
    unsigned ncomp;
    unsigned precision;
    unsigned predictor;
    unsigned pt;
    uint32_t ri;            /* restart interval in MCUs, 0 for none */
    bool interleaved;       /* one scan of every component, or one scan each */
} ll_plan;

/* The prediction of T.81 H.1.2.1 for sample c of (y, x); v holds shifted samples. */
static int32_t ll_predict(const ll_plan *p, const uint16_t *v, uint32_t y, uint32_t x,
                          unsigned c, bool reset, bool line1)
{
    size_t stride = p->ncomp, rowlen = (size_t)p->cols * stride;
    size_t at = (size_t)y * rowlen + (size_t)x * stride + c;
    int32_t ra, rb, rc;

    if (reset)
        return 1 << (p->precision - p->pt - 1);
    if (line1)
        return v[at - stride];
    if (x == 0)
        return v[at - rowlen];
    ra = v[at - stride];
    rb = v[at - rowlen];
    rc = v[at - rowlen - stride];
    switch (p->predictor) {
    case 1: return ra;
    case 2: return rb;
    case 3: return rc;
    case 4: return ra + rb - rc;
    case 5: return ra + ((rb - rc) >> 1);
    case 6: return rb + ((ra - rc) >> 1);
    default: return (ra + rb) >> 1;
    }
}

/* One scan over the components [c0, c0 + ns). */
static void ll_scan(bitw *w, const ll_plan *p, const uint16_t *v, unsigned c0, unsigned ns)
{
    uint8_t sos[4 + 2 * 4 + 3] = { 0xFF, 0xDA, 0, (uint8_t)(6 + 2 * ns), (uint8_t)ns };
    uint32_t count = 0, rst = 0;
    bool reset = true, line1 = true;

    for (unsigned i = 0; i < ns; i++) {
        sos[5 + 2 * i] = (uint8_t)(c0 + i + 1);
        sos[6 + 2 * i] = 0x00;
    }
    sos[5 + 2 * ns] = (uint8_t)p->predictor;
    sos[6 + 2 * ns] = 0;
    sos[7 + 2 * ns] = (uint8_t)p->pt;
    bw_bytes(w, sos, 8 + 2 * ns);

    for (uint32_t y = 0; y < p->rows; y++) {
        line1 = reset;
        for (uint32_t x = 0; x < p->cols; x++) {
            for (unsigned c = c0; c < c0 + ns; c++) {
                size_t at = ((size_t)y * p->cols + x) * p->ncomp + c;
                int32_t pred = ll_predict(p, v, y, x, c, reset, line1);
                int32_t d = (int32_t)((uint32_t)(v[at] - pred) & 0xFFFF);

                if (d > 32768)
                    d -= 65536;
                put_diff(w, d);
            }
            reset = false;
            if (p->ri && ++count == p->ri && !(y + 1 == p->rows && x + 1 == p->cols)) {
                uint8_t m[2] = { 0xFF, (uint8_t)(0xD0 + (rst++ & 7)) };

                bw_flush(w);
                bw_bytes(w, m, 2);
                count = 0;
                reset = true;
                line1 = true;
            }
        }
    }
    bw_flush(w);
}

/* Encodes interleaved samples v (already shifted right by the point transform). */
static void encode_ll(bitw *w, const ll_plan *p, const uint16_t *v)
{
    uint8_t soi[2] = { 0xFF, 0xD8 }, eoi[2] = { 0xFF, 0xD9 };
    uint8_t sof[10 + 3 * 4] = { 0xFF, 0xC3, 0, (uint8_t)(8 + 3 * p->ncomp),
                                (uint8_t)p->precision, (uint8_t)(p->rows >> 8),
                                (uint8_t)p->rows, (uint8_t)(p->cols >> 8), (uint8_t)p->cols,
                                (uint8_t)p->ncomp };
    uint8_t dri[] = { 0xFF, 0xDD, 0, 4, (uint8_t)(p->ri >> 8), (uint8_t)p->ri };

    for (unsigned c = 0; c < p->ncomp; c++) {
        sof[10 + 3 * c] = (uint8_t)(c + 1);
        sof[11 + 3 * c] = 0x11;
        sof[12 + 3 * c] = 0;
    }
    bw_bytes(w, soi, 2);
    bw_bytes(w, sof, 10 + 3 * p->ncomp);
    put_dht(w);
    if (p->ri)
        bw_bytes(w, dri, sizeof dri);
    if (p->interleaved) {
        ll_scan(w, p, v, 0, p->ncomp);
    } else {
        for (unsigned c = 0; c < p->ncomp; c++)
            ll_scan(w, p, v, c, 1);
    }
    bw_bytes(w, eoi, 2);
}

static void encode_sv1(bitw *w, const uint16_t *v, uint32_t rows, uint32_t cols,
                       unsigned precision, uint32_t ri)
{
    ll_plan p = { rows, cols, 1, precision, 1, 0, ri, true };

    encode_ll(w, &p, v);
}

/*
 * Three components, interleaved or in three scans, every predictor, a
 * point transform and restart intervals, against what the encoder was given.
 */
static void test_jpeg_lossless_components(void **state)
{
    enum { ROWS = 6, COLS = 7, N = ROWS * COLS * 3 };
    uint16_t v[N], shifted[N];

    (void)state;
    for (unsigned predictor = 1; predictor <= 7; predictor++) {
        for (int variant = 0; variant < 4; variant++) {
            ll_plan p = { ROWS, COLS, 3, 12, predictor, variant == 3 ? 3u : 0u,
                          variant == 2 ? 4u : 0u, variant % 2 == 0 };
            px_image img = small_image(ROWS, COLS, 3, 16, "1.2.840.10008.1.2.4.57");
            bitw w = { CP_BUF_INIT, 0, 0 };
            px_frame frame;
            cp_error err;

            img.bits_stored = 12;
            img.high_bit = 11;
            for (int i = 0; i < N; i++) {
                v[i] = (uint16_t)((i * 2654435761u >> 7) % 4096 / (i % 5 ? 1 : 64));
                shifted[i] = (uint16_t)(v[i] >> p.pt);
            }
            encode_ll(&w, &p, shifted);
            assert_int_equal(px_jpeg_lossless_decode(&img, w.b.data, w.b.len, &frame, &err),
                             CP_OK);
            assert_int_equal(frame.size, sizeof v);
            for (int i = 0; i < N; i++)
                assert_int_equal(((uint16_t *)(void *)frame.data)[i],
                                 (uint16_t)(shifted[i] << p.pt));
            px_frame_clear(&frame);
            cp_buf_free(&w.b);
        }
    }
}

/* Restart intervals of whole rows, of part of a row; SSSS 16; 2 and 16 bits of precision. */
static void test_jpeg_lossless_by_hand(void **state)
{
    static const uint32_t intervals[] = { 0, 5, 10, 7, 1 };
    uint16_t v[50];

    (void)state;
    for (size_t t = 0; t < sizeof intervals / sizeof intervals[0]; t++) {
        for (unsigned precision = 2; precision <= 16; precision += 14) {
            px_image img = small_image(5, 10, 1, precision > 8 ? 16 : 8,
                                       "1.2.840.10008.1.2.4.70");
            bitw w = { CP_BUF_INIT, 0, 0 };
            px_frame frame;
            cp_error err;

            img.bits_stored = (uint16_t)precision;
            for (int i = 0; i < 50; i++)
                v[i] = (uint16_t)((i * 7919u + (i % 3 ? 0 : 32768u)) & ((1u << precision) - 1));
            encode_sv1(&w, v, 5, 10, precision, intervals[t]);
            assert_int_equal(px_jpeg_lossless_decode(&img, w.b.data, w.b.len, &frame, &err),
                             CP_OK);
            for (int i = 0; i < 50; i++) {
                uint32_t got = precision > 8 ? ((uint16_t *)(void *)frame.data)[i]
                                             : frame.data[i];
                assert_int_equal(got, v[i]);
            }
            px_frame_clear(&frame);

            /* Cut before the end of the entropy-coded data: an error, no frame. */
            assert_int_equal(px_jpeg_lossless_decode(&img, w.b.data, w.b.len / 2, &frame,
                                                     &err),
                             CP_ERR_MALFORMED);
            assert_null(frame.data);
            cp_buf_free(&w.b);
        }
    }
}

/* --- every file against its reference --------------------------------------------------- */

static char ref_dir[256];

static int make_references(void **state)
{
    const char *root = getenv("CLOUDPACS_SOURCE_ROOT");
    char cmd[1024];

    (void)state;
    snprintf(ref_dir, sizeof ref_dir, "%s/cloudpacs-pixel-ref.XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(ref_dir) == NULL)
        return -1;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/pixel/make_reference.py %s",
             root != NULL ? root : ".", ref_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_references(void **state)
{
    char cmd[512];

    (void)state;
    if (ref_dir[0] != '\0' && getenv("CLOUDPACS_KEEP_PIXEL_REF") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", ref_dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static uint8_t *load(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long size;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)size + 1);
        if (data != NULL && fread(data, 1, (size_t)size, f) != (size_t)size) {
            free(data);
            data = NULL;
        }
        *len = (size_t)size;
    }
    fclose(f);
    return data;
}

/* A file opened for decoding: its source stays open for frames not loaded. */
typedef struct opened {
    dcm_source *src;
    dcm_file *file;
    px_image img;
} opened;

static cp_status open_image(const char *path, opened *o)
{
    dcm_read_options opts = { 0 };
    cp_error err;
    cp_status st;

    /* Values above 64 bytes stay in the file: frames are read with pread. */
    opts.bulk_threshold = 64;
    memset(o, 0, sizeof *o);
    st = dcm_source_open_file(path, &o->src, &err);
    if (st == CP_OK)
        st = dcm_file_read(o->src, &opts, &o->file, &err);
    if (st == CP_OK)
        st = px_image_init(&o->img, o->file, o->src, &err);
    if (st != CP_OK)
        print_error("%s: %s\n", path, err.detail);
    return st;
}

static void close_image(opened *o)
{
    px_image_clear(&o->img);
    dcm_file_destroy(o->file);
    dcm_source_destroy(o->src);
}

/* Cuts and flips the codestream of one frame: each a clean error or a frame. */
static void damage(const px_image *img, const uint8_t *bytes, size_t len)
{
    static const unsigned cuts[] = { 10, 30, 50, 70, 90 };
    uint8_t *copy = malloc(len + 1);
    px_frame frame;
    cp_error err;

    assert_non_null(copy);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t at = len * cuts[i] / 100;
        cp_status st = px_decode_frame(img, bytes, at, &frame, &err);

        assert_int_equal(st, CP_ERR_MALFORMED);
        assert_null(frame.data);
    }
    for (size_t i = 0; i < 24; i++) {
        memcpy(copy, bytes, len);
        copy[(i * 7919 + 13) % len] ^= (uint8_t)(1u << (i % 8));
        if (px_decode_frame(img, copy, len, &frame, &err) == CP_OK)
            px_frame_clear(&frame);
        else
            assert_null(frame.data);
    }
    free(copy);
}

static void check_file(const char *id, uint32_t frames, size_t frame_bytes, const char *path,
                       unsigned *compressed)
{
    char ref_path[512];
    size_t ref_len = 0;
    uint8_t *ref;
    opened o;

    snprintf(ref_path, sizeof ref_path, "%s/%s.bin", ref_dir, id);
    ref = load(ref_path, &ref_len);
    assert_non_null(ref);
    assert_int_equal(ref_len, (size_t)frames * frame_bytes);
    assert_int_equal(open_image(path, &o), CP_OK);
    assert_int_equal(o.img.frames, frames);

    for (uint32_t k = 0; k < frames; k++) {
        cp_buf bytes = CP_BUF_INIT;
        px_frame frame;
        cp_error err;
        cp_status st = px_frame_bytes(&o.img, o.src, k, &bytes, &err);

        if (st == CP_OK)
            st = px_decode_frame(&o.img, bytes.data, bytes.len, &frame, &err);
        if (st != CP_OK)
            print_error("%s (%s) frame %u: %s\n", path, id, k, err.detail);
        assert_int_equal(st, CP_OK);
        if (frame.size != frame_bytes || memcmp(frame.data, ref + k * frame_bytes,
                                                 frame_bytes) != 0)
            print_error("%s (%s) frame %u differs from its reference\n", path, id, k);
        assert_int_equal(frame.size, frame_bytes);
        assert_memory_equal(frame.data, ref + k * frame_bytes, frame_bytes);
        px_frame_clear(&frame);
        if (o.img.transfer_syntax->encapsulated && k == 0) {
            damage(&o.img, bytes.data, bytes.len);
            (*compressed)++;
        }
        cp_buf_free(&bytes);
    }
    close_image(&o);
    free(ref);
}

/* pydicom's palettes, moved into a 1x1 PALETTE COLOR image, as pydicom expands them. */
static void check_palette(const char *id, uint32_t entries, const char *path)
{
    static const uint32_t tags[] = {
        DCM_RedPaletteColorLookupTableDescriptor, DCM_GreenPaletteColorLookupTableDescriptor,
        DCM_BluePaletteColorLookupTableDescriptor, DCM_RedPaletteColorLookupTableData,
        DCM_GreenPaletteColorLookupTableData, DCM_BluePaletteColorLookupTableData,
        DCM_SegmentedRedPaletteColorLookupTableData,
        DCM_SegmentedGreenPaletteColorLookupTableData,
        DCM_SegmentedBluePaletteColorLookupTableData,
    };
    geometry g = { 1, 1, 1, 8, 8, 0, 0, "PALETTE COLOR", NULL };
    fixture f = { 0 };
    dcm_file *pal = NULL;
    char ref_path[512];
    size_t ref_len = 0;
    uint8_t *ref, px = 0;
    cp_error err;

    snprintf(ref_path, sizeof ref_path, "%s/%s.bin", ref_dir, id);
    ref = load(ref_path, &ref_len);
    assert_non_null(ref);
    assert_int_equal(ref_len, 6 * (size_t)entries);
    assert_int_equal(dcm_file_read_path(path, NULL, &pal, &err), CP_OK);

    image_module(&f.d, &g);
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        const dcm_element *el = dcm_dataset_get(pal->dataset, tags[i]);

        if (el != NULL)
            el_raw(&f.d, tags[i], dcm_vr_name(el->vr), el->value, (size_t)el->value_length);
    }
    el_raw(&f.d, DCM_PixelData, "OB", &px, 1);
    assert_int_equal(fixture_read(&f, EXPLICIT_LE), CP_OK);
    assert_true(f.img.has_palette);
    assert_memory_equal(f.img.palette.red, ref, 2 * (size_t)entries);
    assert_memory_equal(f.img.palette.green, ref + 2 * (size_t)entries, 2 * (size_t)entries);
    assert_memory_equal(f.img.palette.blue, ref + 4 * (size_t)entries, 2 * (size_t)entries);
    fixture_clear(&f);
    dcm_file_destroy(pal);
    free(ref);
}

static void test_reference_palettes(void **state)
{
    char path[512], line[1024];
    unsigned count = 0;
    FILE *list;

    (void)state;
    snprintf(path, sizeof path, "%s/palettes.txt", ref_dir);
    list = fopen(path, "r");
    assert_non_null(list);
    while (fgets(line, sizeof line, list) != NULL) {
        char id[64], file[800];
        unsigned entries;

        if (sscanf(line, "%63s %u %799[^\n]", id, &entries, file) != 3)
            continue;
        check_palette(id, entries, file);
        count++;
    }
    fclose(list);
    assert_true(count >= 8);
}

static void test_reference_files(void **state)
{
    char path[512], line[1024];
    unsigned files = 0, compressed = 0;
    FILE *manifest;

    (void)state;
    snprintf(path, sizeof path, "%s/manifest.txt", ref_dir);
    manifest = fopen(path, "r");
    assert_non_null(manifest);
    while (fgets(line, sizeof line, manifest) != NULL) {
        char id[64], file[800];
        unsigned frames;
        size_t frame_bytes;

        if (sscanf(line, "%63s %u %zu %799[^\n]", id, &frames, &frame_bytes, file) != 4)
            continue;
        check_file(id, frames, frame_bytes, file, &compressed);
        files++;
    }
    fclose(manifest);
    print_message("%u files decoded as their references, %u codestreams damaged\n", files,
                  compressed);
    /* pydicom's library alone has some sixty; dcmcjpeg adds some forty. */
    assert_true(files >= 80);
    assert_true(compressed >= 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_photometric_names),
        cmocka_unit_test(test_one_bit_frames),
        cmocka_unit_test(test_signed_12_in_16),
        cmocka_unit_test(test_planar_rgb),
        cmocka_unit_test(test_ybr_full_422),
        cmocka_unit_test(test_big_endian_frames),
        cmocka_unit_test(test_odd_length),
        cmocka_unit_test(test_float_pixels),
        cmocka_unit_test(test_inconsistent_attributes),
        cmocka_unit_test(test_segmented_palette),
        cmocka_unit_test(test_palette_8bit_words),
        cmocka_unit_test(test_bad_segmented_palettes),
        cmocka_unit_test(test_fragments),
        cmocka_unit_test(test_deflated_frames),
        cmocka_unit_test(test_rle_segments),
        cmocka_unit_test(test_jpeg_lossless_by_hand),
        cmocka_unit_test(test_jpeg_lossless_components),
        cmocka_unit_test(test_reference_files),
        cmocka_unit_test(test_reference_palettes),
    };

    return cmocka_run_group_tests(tests, make_references, remove_references);
}
