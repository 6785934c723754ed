/*
 * test_pixel_render.c - the rendering pipeline (PS3.3 C.11): window
 * functions at their boundaries, rescale, Modality and VOI LUT sequences,
 * functional groups, MONOCHROME1 and INVERSE, palette colour, YBR to RGB,
 * viewport sizes and the quality of scaling; pictures against DCMTK's
 * dcm2pnm; JPEG and PNG encoding decoded back. Render speed is measured
 * by the benchmarks, not here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <png.h>
#include <turbojpeg.h>

#include "core/alloc.h"
#include "dicom/dataset.h"
#include "dicom/ts.h"
#include "pixel/codec.h"
#include "pixel/pixel.h"
#include "pixel/render.h"

/* ---- Building small data sets (Explicit VR Little Endian) ---- */

typedef struct dsbuf {
    uint8_t b[8192];
    size_t n;
} dsbuf;

static void put16(dsbuf *d, uint16_t v)
{
    d->b[d->n++] = (uint8_t)v;
    d->b[d->n++] = (uint8_t)(v >> 8);
}

static void put32(dsbuf *d, uint32_t v)
{
    put16(d, (uint16_t)v);
    put16(d, (uint16_t)(v >> 16));
}

static void el(dsbuf *d, uint16_t g, uint16_t e, const char *vr, const void *val, uint32_t len)
{
    bool longform = strcmp(vr, "OB") == 0 || strcmp(vr, "OW") == 0 || strcmp(vr, "SQ") == 0;

    put16(d, g);
    put16(d, e);
    d->b[d->n++] = (uint8_t)vr[0];
    d->b[d->n++] = (uint8_t)vr[1];
    if (longform) {
        put16(d, 0);
        put32(d, len);
    } else {
        put16(d, (uint16_t)len);
    }
    if (val != NULL) {
        memcpy(d->b + d->n, val, len);
        d->n += len;
    }
}

static void el_str(dsbuf *d, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    size_t len = strlen(s);
    char tmp[128];

    memcpy(tmp, s, len);
    if (len % 2)
        tmp[len++] = ' ';
    el(d, g, e, vr, tmp, (uint32_t)len);
}

static void el_us3(dsbuf *d, uint16_t g, uint16_t e, uint16_t a, uint16_t b, uint16_t c)
{
    uint16_t v[3] = { a, b, c };

    el(d, g, e, "US", v, 6);
}

static void seq_begin(dsbuf *d, uint16_t g, uint16_t e)
{
    el(d, g, e, "SQ", NULL, 0xFFFFFFFFu);
}

static void item_begin(dsbuf *d)
{
    put16(d, 0xFFFE);
    put16(d, 0xE000);
    put32(d, 0xFFFFFFFFu);
}

static void item_end(dsbuf *d)
{
    put16(d, 0xFFFE);
    put16(d, 0xE00D);
    put32(d, 0);
}

static void seq_end(dsbuf *d)
{
    put16(d, 0xFFFE);
    put16(d, 0xE0DD);
    put32(d, 0);
}

/* The presentation of a hand-built data set for frame `index`. */
static px_presentation *presentation_of(const dsbuf *d, uint32_t index)
{
    dcm_read_options opts = { 0 };
    dcm_source *src = dcm_source_from_memory(d->b, d->n);
    dcm_file *file = NULL;
    px_presentation *pres = NULL;
    cp_error err;

    opts.no_meta = true;
    opts.assume_ts = &dcm_ts_explicit_le;
    cp_error_clear(&err);
    assert_non_null(src);
    if (dcm_file_read(src, &opts, &file, &err) != CP_OK)
        fail_msg("data set: %s", err.detail);
    if (px_presentation_create(file->dataset, src, index, &pres, &err) != CP_OK)
        fail_msg("presentation: %s", err.detail);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return pres;
}

/* ---- Frames and rendering ---- */

static px_frame gray_frame(px_sample_type type, uint32_t rows, uint32_t cols,
                           const int32_t *values)
{
    px_frame f;

    assert_int_equal(px_frame_alloc(&f, rows, cols, 1, type, NULL), CP_OK);
    f.bits_stored = (uint16_t)(px_sample_size(type) * 8);
    f.photometric = PX_MONOCHROME2;
    for (size_t k = 0; values != NULL && k < (size_t)rows * cols; k++) {
        switch (type) {
        case PX_U8: f.data[k] = (uint8_t)values[k]; break;
        case PX_U16: ((uint16_t *)(void *)f.data)[k] = (uint16_t)values[k]; break;
        case PX_S16: ((int16_t *)(void *)f.data)[k] = (int16_t)values[k]; break;
        default: fail();
        }
    }
    return f;
}

static void render_expect(const px_presentation *pres, const px_frame *f,
                          const px_render_params *params, const uint8_t *expected, size_t n)
{
    px_image img;
    px_picture pic;
    cp_error err;

    memset(&img, 0, sizeof(img));
    img.photometric = f->photometric;
    cp_error_clear(&err);
    if (px_render(&img, pres, f, params, &pic, &err) != CP_OK)
        fail_msg("render: %s", err.detail);
    assert_int_equal(pic.width * pic.height * pic.channels, n);
    for (size_t k = 0; k < n; k++) {
        if (pic.data[k] != expected[k])
            fail_msg("byte %zu: %u, expected %u", k, pic.data[k], expected[k]);
    }
    px_picture_clear(&pic);
}

static px_render_params window(double c, double w, px_voi_function fn)
{
    px_render_params p;

    memset(&p, 0, sizeof(p));
    p.has_window = true;
    p.window_center = c;
    p.window_width = w;
    p.voi_function = fn;
    return p;
}

/*
 * LINEAR, c = 100, w = 21: 0 up to x <= 89.5, 255 above 109.5, between
 * ((x - 99.5) / 20 + 0.5) * 255: x = 90 gives 6.375, 99 gives 121.125,
 * 100 gives 133.875, 109 gives 248.625.
 */
static void test_window_linear(void **state)
{
    static const int32_t in[] = { 0, 89, 90, 99, 100, 109, 110, 1000 };
    static const uint8_t out[] = { 0, 0, 6, 121, 134, 249, 255, 255 };
    px_frame f = gray_frame(PX_U16, 1, 8, in);
    px_render_params p = window(100, 21, PX_VOI_LINEAR);

    (void)state;
    render_expect(NULL, &f, &p, out, 8);
    px_frame_clear(&f);
}

/* A width of 1 is a threshold at c - 0.5. */
static void test_window_linear_width_one(void **state)
{
    static const int32_t in[] = { 99, 100 };
    static const uint8_t out[] = { 0, 255 };
    px_frame f = gray_frame(PX_U16, 1, 2, in);
    px_render_params p = window(100, 1, PX_VOI_LINEAR);

    (void)state;
    render_expect(NULL, &f, &p, out, 2);
    px_frame_clear(&f);
}

/* LINEAR_EXACT, c = 100, w = 20: 0 at x <= 90, 255 above 110, ((x - 100) / 20 + 0.5) * 255. */
static void test_window_linear_exact(void **state)
{
    static const int32_t in[] = { 90, 91, 100, 109, 110, 111 };
    static const uint8_t out[] = { 0, 13, 128, 242, 255, 255 };
    px_frame f = gray_frame(PX_U16, 1, 6, in);
    px_render_params p = window(100, 20, PX_VOI_LINEAR_EXACT);

    (void)state;
    render_expect(NULL, &f, &p, out, 6);
    px_frame_clear(&f);
}

/* SIGMOID, c = 100, w = 20: 255 / (1 + exp(-4 (x - 100) / 20)): 30.40, 127.5, 224.60. */
static void test_window_sigmoid(void **state)
{
    static const int32_t in[] = { 90, 100, 110 };
    static const uint8_t out[] = { 30, 128, 225 };
    px_frame f = gray_frame(PX_U16, 1, 3, in);
    px_render_params p = window(100, 20, PX_VOI_SIGMOID);

    (void)state;
    render_expect(NULL, &f, &p, out, 3);
    px_frame_clear(&f);
}

/* No window anywhere: the frame's own range maps to 0-255. */
static void test_min_max(void **state)
{
    static const int32_t in[] = { -30, -20, -10 };
    static const uint8_t out[] = { 0, 128, 255 };
    px_frame f = gray_frame(PX_S16, 1, 3, in);

    (void)state;
    render_expect(NULL, &f, NULL, out, 3);
    px_frame_clear(&f);
}

/* Slope 2, intercept -100; the first of two windows (c 100, w 200). */
static dsbuf rescale_dataset(const char *shape)
{
    dsbuf d = { .n = 0 };

    el_str(&d, 0x0028, 0x1050, "DS", "100\\300");
    el_str(&d, 0x0028, 0x1051, "DS", "200\\50");
    el_str(&d, 0x0028, 0x1052, "DS", "-100");
    el_str(&d, 0x0028, 0x1053, "DS", "2");
    el_str(&d, 0x0028, 0x1054, "LO", "US");
    if (shape != NULL)
        el_str(&d, 0x2050, 0x0020, "CS", shape);
    return d;
}

/*
 * Stored 50, 100, 150 are 0, 100, 200 after rescale; the window gives 0,
 * ((100 - 99.5) / 199 + 0.5) * 255 = 128.14, and 255.
 */
static void test_rescale_and_first_window(void **state)
{
    static const int32_t in[] = { 50, 100, 150 };
    static const uint8_t out[] = { 0, 128, 255 };
    static const uint8_t inverted[] = { 255, 127, 0 };
    dsbuf d = rescale_dataset(NULL);
    px_presentation *pres = presentation_of(&d, 0);
    px_frame f = gray_frame(PX_U16, 1, 3, in);
    px_render_params p;

    (void)state;
    render_expect(pres, &f, NULL, out, 3);

    memset(&p, 0, sizeof(p));
    p.invert = true;
    render_expect(pres, &f, &p, inverted, 3);

    /* MONOCHROME1 is inverted; the request's invert flips it back. */
    f.photometric = PX_MONOCHROME1;
    render_expect(pres, &f, NULL, inverted, 3);
    render_expect(pres, &f, &p, out, 3);

    px_frame_clear(&f);
    px_presentation_destroy(pres);
}

static void test_presentation_lut_inverse(void **state)
{
    static const int32_t in[] = { 50, 100, 150 };
    static const uint8_t inverted[] = { 255, 127, 0 };
    dsbuf d = rescale_dataset("INVERSE");
    px_presentation *pres = presentation_of(&d, 0);
    px_frame f = gray_frame(PX_U16, 1, 3, in);

    (void)state;
    render_expect(pres, &f, NULL, inverted, 3);
    px_frame_clear(&f);
    px_presentation_destroy(pres);
}

/* Modality LUT [1000, 2000, 3000] from 0, then LINEAR_EXACT c 2000 w 2000. */
static void test_modality_lut_sequence(void **state)
{
    static const uint16_t lut[] = { 1000, 2000, 3000 };
    static const int32_t in[] = { 0, 1, 2, 7 };
    static const uint8_t out[] = { 0, 128, 255, 255 };
    dsbuf d = { .n = 0 };
    px_presentation *pres;
    px_frame f = gray_frame(PX_U16, 1, 4, in);
    px_render_params p = window(2000, 2000, PX_VOI_LINEAR_EXACT);

    (void)state;
    seq_begin(&d, 0x0028, 0x3000);
    item_begin(&d);
    el_us3(&d, 0x0028, 0x3002, 3, 0, 16);
    el(&d, 0x0028, 0x3006, "OW", lut, sizeof(lut));
    item_end(&d);
    seq_end(&d);
    pres = presentation_of(&d, 0);
    render_expect(pres, &f, &p, out, 4);
    px_frame_clear(&f);
    px_presentation_destroy(pres);
}

/* VOI LUT [0, 100, 200, 255] of 8 bits from 10: inputs below and above clamp. */
static void test_voi_lut_sequence(void **state)
{
    static const uint16_t lut[] = { 0, 100, 200, 255 };
    static const int32_t in[] = { 9, 10, 11, 12, 13, 14 };
    static const uint8_t out[] = { 0, 0, 100, 200, 255, 255 };
    dsbuf d = { .n = 0 };
    px_presentation *pres;
    px_frame f = gray_frame(PX_U16, 1, 6, in);

    (void)state;
    seq_begin(&d, 0x0028, 0x3010);
    item_begin(&d);
    el_us3(&d, 0x0028, 0x3002, 4, 10, 8);
    el(&d, 0x0028, 0x3006, "OW", lut, sizeof(lut));
    item_end(&d);
    seq_end(&d);
    pres = presentation_of(&d, 0);
    render_expect(pres, &f, NULL, out, 6);
    px_frame_clear(&f);
    px_presentation_destroy(pres);
}

/*
 * Enhanced multi-frame: the shared groups rescale by -1024, each frame has
 * its own window. Stored 1024 is 0: frame 0 (c 0, w 100) gives
 * ((0 + 0.5) / 99 + 0.5) * 255 = 128.79; frame 1 (c 1000) gives 0.
 */
static void test_functional_groups(void **state)
{
    static const int32_t in[] = { 1024 };
    static const uint8_t out0[] = { 129 };
    static const uint8_t out1[] = { 0 };
    dsbuf d = { .n = 0 };
    px_presentation *p0, *p1;
    px_frame f = gray_frame(PX_U16, 1, 1, in);

    (void)state;
    seq_begin(&d, 0x5200, 0x9229);
    item_begin(&d);
    seq_begin(&d, 0x0028, 0x9145);
    item_begin(&d);
    el_str(&d, 0x0028, 0x1052, "DS", "-1024");
    el_str(&d, 0x0028, 0x1053, "DS", "1");
    el_str(&d, 0x0028, 0x1054, "LO", "HU");
    item_end(&d);
    seq_end(&d);
    item_end(&d);
    seq_end(&d);
    seq_begin(&d, 0x5200, 0x9230);
    for (int i = 0; i < 2; i++) {
        item_begin(&d);
        seq_begin(&d, 0x0028, 0x9132);
        item_begin(&d);
        el_str(&d, 0x0028, 0x1050, "DS", i == 0 ? "0" : "1000");
        el_str(&d, 0x0028, 0x1051, "DS", "100");
        item_end(&d);
        seq_end(&d);
        item_end(&d);
    }
    seq_end(&d);

    p0 = presentation_of(&d, 0);
    p1 = presentation_of(&d, 1);
    render_expect(p0, &f, NULL, out0, 1);
    render_expect(p1, &f, NULL, out1, 1);
    px_frame_clear(&f);
    px_presentation_destroy(p0);
    px_presentation_destroy(p1);
}

/* PALETTE COLOR: 16-bit entries keep their high byte; indices outside the table clamp. */
static void test_palette(void **state)
{
    static uint16_t red[] = { 0x0000, 0xFFFF, 0x8000, 0x1234 };
    static uint16_t green[] = { 0x0100, 0x0200, 0x0300, 0x0400 };
    static uint16_t blue[] = { 0xFF00, 0xFE00, 0xFD00, 0xFC00 };
    static const int32_t in[] = { 0, 1, 2, 4, 200 };
    static const uint8_t out[] = { 0x00, 0x01, 0xFF, 0x00, 0x01, 0xFF, 0xFF, 0x02, 0xFE,
                                   0x12, 0x04, 0xFC, 0x12, 0x04, 0xFC };
    px_frame f = gray_frame(PX_U8, 1, 5, in);
    px_image img;
    px_picture pic;

    (void)state;
    memset(&img, 0, sizeof(img));
    img.photometric = PX_PALETTE_COLOR;
    img.has_palette = true;
    img.palette.entries = 4;
    img.palette.first_mapped = 1;
    img.palette.bits = 16;
    img.palette.red = red;
    img.palette.green = green;
    img.palette.blue = blue;
    f.photometric = PX_PALETTE_COLOR;
    assert_int_equal(px_render(&img, NULL, &f, NULL, &pic, NULL), CP_OK);
    assert_int_equal(pic.channels, 3);
    assert_memory_equal(pic.data, out, sizeof(out));
    px_picture_clear(&pic);
    px_frame_clear(&f);
}

/* YBR_FULL (BT.601, full range): grey stays grey; (76, 85, 255) is red; clamping. */
static void test_ybr_full(void **state)
{
    static const uint8_t in[] = { 128, 128, 128, 76, 85, 255, 128, 128, 255 };
    static const uint8_t out[] = { 128, 128, 128, 254, 0, 0, 255, 37, 128 };
    px_frame f;
    px_image img;
    px_picture pic;

    (void)state;
    assert_int_equal(px_frame_alloc(&f, 1, 3, 3, PX_U8, NULL), CP_OK);
    memcpy(f.data, in, sizeof(in));
    f.bits_stored = 8;
    f.photometric = PX_YBR_FULL;
    memset(&img, 0, sizeof(img));
    img.photometric = PX_YBR_FULL;
    assert_int_equal(px_render(&img, NULL, &f, NULL, &pic, NULL), CP_OK);
    assert_int_equal(pic.channels, 3);
    assert_memory_equal(pic.data, out, sizeof(out));
    px_picture_clear(&pic);

    f.photometric = PX_RGB;
    assert_int_equal(px_render(&img, NULL, &f, NULL, &pic, NULL), CP_OK);
    assert_memory_equal(pic.data, in, sizeof(in));
    px_picture_clear(&pic);
    px_frame_clear(&f);
}

static void fitted(uint32_t cols, uint32_t rows, uint32_t vw, uint32_t vh, uint32_t w,
                   uint32_t h)
{
    px_frame f = gray_frame(PX_U8, rows, cols, NULL);
    px_render_params p;
    px_image img;
    px_picture pic;

    memset(f.data, 9, f.size);
    memset(&p, 0, sizeof(p));
    memset(&img, 0, sizeof(img));
    p.viewport_width = vw;
    p.viewport_height = vh;
    assert_int_equal(px_render(&img, NULL, &f, &p, &pic, NULL), CP_OK);
    if (pic.width != w || pic.height != h)
        fail_msg("%ux%u in %ux%u gave %ux%u, expected %ux%u", cols, rows, vw, vh, pic.width,
                 pic.height, w, h);
    px_picture_clear(&pic);
    px_frame_clear(&f);
}

static void test_viewport_sizes(void **state)
{
    (void)state;
    fitted(250, 200, 0, 0, 250, 200);
    fitted(250, 200, 100, 100, 100, 80);
    fitted(250, 200, 1000, 1000, 1000, 800);
    fitted(250, 200, 50, 0, 50, 40);
    fitted(250, 200, 0, 20, 25, 20);
    fitted(2500, 2000, 1024, 1024, 1024, 819);
    fitted(512, 512, 300, 200, 200, 200);
    fitted(1, 1000, 64, 64, 1, 64);
    fitted(7, 3, 1, 1, 1, 1);
    fitted(4000, 3000, 40, 40, 40, 30);
}

static px_picture scaled(const px_frame *f, uint32_t vw, uint32_t vh)
{
    px_render_params p;
    px_image img;
    px_picture pic;

    memset(&p, 0, sizeof(p));
    memset(&img, 0, sizeof(img));
    p.has_window = true;
    p.window_center = 127.5;
    p.window_width = 256;
    p.voi_function = PX_VOI_LINEAR_EXACT;
    p.viewport_width = vw;
    p.viewport_height = vh;
    assert_int_equal(px_render(&img, NULL, f, &p, &pic, NULL), CP_OK);
    return pic;
}

/* Area averaging keeps flat areas flat and averages fine detail; bilinear is monotonic. */
static void test_scaling_quality(void **state)
{
    px_frame flat = gray_frame(PX_U8, 200, 300, NULL);
    px_frame checker = gray_frame(PX_U8, 200, 200, NULL);
    px_frame ramp = gray_frame(PX_U8, 1, 16, NULL);
    px_picture pic;

    (void)state;
    memset(flat.data, 77, flat.size);
    pic = scaled(&flat, 97, 97);
    for (size_t k = 0; k < (size_t)pic.width * pic.height; k++)
        assert_int_equal(pic.data[k], 77);
    px_picture_clear(&pic);
    pic = scaled(&flat, 900, 900);
    for (size_t k = 0; k < (size_t)pic.width * pic.height; k++)
        assert_int_equal(pic.data[k], 77);
    px_picture_clear(&pic);

    for (uint32_t y = 0; y < 200; y++)
        for (uint32_t x = 0; x < 200; x++)
            checker.data[y * 200 + x] = (uint8_t)(((x ^ y) & 1) ? 255 : 0);
    pic = scaled(&checker, 100, 100);
    for (size_t k = 0; k < (size_t)pic.width * pic.height; k++)
        assert_in_range(pic.data[k], 127, 128);
    px_picture_clear(&pic);

    for (uint32_t x = 0; x < 16; x++)
        ramp.data[x] = (uint8_t)(x * 16);
    pic = scaled(&ramp, 160, 10);
    assert_int_equal(pic.width, 160);
    for (uint32_t x = 1; x < pic.width; x++)
        assert_true(pic.data[x] >= pic.data[x - 1]);
    px_picture_clear(&pic);

    px_frame_clear(&flat);
    px_frame_clear(&checker);
    px_frame_clear(&ramp);
}

/* ---- Against dcm2pnm ---- */

static uint8_t *read_pnm(const char *path, uint32_t *w, uint32_t *h, uint16_t *ch)
{
    FILE *f = fopen(path, "rb");
    char magic[3] = { 0 };
    unsigned vals[3];
    uint8_t *data = NULL;
    size_t n;
    int c;

    if (f == NULL || fread(magic, 1, 2, f) != 2)
        goto fail;
    *ch = magic[1] == '6' ? 3 : 1;
    for (int i = 0; i < 3; i++) {
        while ((c = fgetc(f)) != EOF && (c == ' ' || c == '\n' || c == '\r' || c == '#')) {
            if (c == '#')
                while ((c = fgetc(f)) != EOF && c != '\n') {
                }
        }
        ungetc(c, f);
        if (fscanf(f, "%u", &vals[i]) != 1)
            goto fail;
    }
    fgetc(f);
    *w = vals[0];
    *h = vals[1];
    n = (size_t)*w * *h * *ch;
    data = malloc(n);
    if (data == NULL || fread(data, 1, n, f) != n) {
        free(data);
        data = NULL;
    }
fail:
    if (f != NULL)
        fclose(f);
    return data;
}

static void test_against_dcm2pnm(void **state)
{
    const char *srcroot = getenv("CLOUDPACS_SOURCE_ROOT");
    const char *build = getenv("CLOUDPACS_BUILD_ROOT");
    char dir[512], cmd[1400], path[600], line[2048];
    size_t cases = 0;
    FILE *list;

    (void)state;
    assert_non_null(srcroot);
    assert_non_null(build);
    snprintf(dir, sizeof dir, "%s/pixel-render-ref", build);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/pixel/make_codec_reference.py' --render '%s' "
             "2>/dev/null", srcroot, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/render.tsv", dir);
    list = fopen(path, "r");
    assert_non_null(list);

    while (fgets(line, sizeof line, list) != NULL) {
        char name[96], dicom[512], pnm[512], cs[32], ws[32];
        dcm_file *file = NULL;
        dcm_source *src = NULL;
        px_presentation *pres = NULL;
        px_render_params p;
        px_image img;
        px_frame frame;
        px_picture pic;
        cp_buf bytes = CP_BUF_INIT;
        cp_error err;
        uint8_t *ref;
        uint32_t w = 0, h = 0;
        uint16_t ch = 0;
        uint64_t sum = 0;
        int worst = 0;

        if (sscanf(line, "%95[^\t]\t%511[^\t]\t%511[^\t]\t%31[^\t]\t%31s", name, dicom, pnm,
                   cs, ws) != 5)
            continue;
        cp_error_clear(&err);
        if (dcm_file_read_path(dicom, NULL, &file, &err) != CP_OK)
            fail_msg("%s: %s", name, err.detail);
        assert_int_equal(dcm_source_open_file(dicom, &src, &err), CP_OK);
        if (px_image_init(&img, file, src, &err) != CP_OK)
            fail_msg("%s: image: %s", name, err.detail);
        assert_int_equal(px_frame_bytes(&img, src, 0, &bytes, &err), CP_OK);
        if (px_decode_frame(&img, bytes.data, bytes.len, &frame, &err) != CP_OK)
            fail_msg("%s: decode: %s", name, err.detail);
        assert_int_equal(px_presentation_create(file->dataset, src, 0, &pres, &err), CP_OK);
        memset(&p, 0, sizeof(p));
        if (strcmp(cs, "-") != 0) {
            p.has_window = true;
            p.window_center = atof(cs);
            p.window_width = atof(ws);
        }
        if (px_render(&img, pres, &frame, &p, &pic, &err) != CP_OK)
            fail_msg("%s: render: %s", name, err.detail);

        ref = read_pnm(pnm, &w, &h, &ch);
        assert_non_null(ref);
        assert_int_equal(w, pic.width);
        assert_int_equal(h, pic.height);
        assert_int_equal(ch, pic.channels);
        for (size_t k = 0; k < (size_t)w * h * ch; k++) {
            int d = abs((int)pic.data[k] - (int)ref[k]);

            sum += (uint64_t)d;
            worst = d > worst ? d : worst;
        }
        print_message("  %-24s %ux%u x%u  max %d  mean %.4f\n", name, w, h, ch, worst,
                      (double)sum / ((double)w * h * ch));
        assert_true(worst <= 2);
        assert_true((double)sum / ((double)w * h * ch) < 1.0);
        cases++;

        free(ref);
        px_picture_clear(&pic);
        px_presentation_destroy(pres);
        px_frame_clear(&frame);
        cp_buf_free(&bytes);
        px_image_clear(&img);
        dcm_source_destroy(src);
        dcm_file_destroy(file);
    }
    fclose(list);
    assert_true(cases >= 6);
}

/* ---- Encoding ---- */

static px_picture test_picture(uint16_t channels)
{
    px_picture pic;

    pic.width = 97;
    pic.height = 61;
    pic.channels = channels;
    pic.data = cp_malloc((size_t)pic.width * pic.height * channels);
    assert_non_null(pic.data);
    for (uint32_t y = 0; y < pic.height; y++)
        for (uint32_t x = 0; x < pic.width; x++)
            for (uint16_t c = 0; c < channels; c++)
                pic.data[((size_t)y * pic.width + x) * channels + c] =
                    (uint8_t)(x * 2 + y * (c + 1));
    return pic;
}

static void jpeg_check(uint16_t channels, int quality, int want_subsamp)
{
    px_picture pic = test_picture(channels);
    cp_buf out = CP_BUF_INIT;
    tjhandle tj = tjInitDecompress();
    int w, h, subsamp, colorspace;
    uint8_t *back;
    double sum = 0;
    size_t n = (size_t)pic.width * pic.height * channels;

    assert_int_equal(px_encode_jpeg(&pic, quality, &out, NULL), CP_OK);
    assert_int_equal(tjDecompressHeader3(tj, out.data, out.len, &w, &h, &subsamp, &colorspace),
                     0);
    assert_int_equal(w, pic.width);
    assert_int_equal(h, pic.height);
    assert_int_equal(subsamp, want_subsamp);
    back = malloc(n);
    assert_int_equal(tjDecompress2(tj, out.data, out.len, back, w, 0, h,
                                   channels == 1 ? TJPF_GRAY : TJPF_RGB, 0), 0);
    for (size_t k = 0; k < n; k++)
        sum += abs((int)back[k] - (int)pic.data[k]);
    print_message("  JPEG %u channel(s) q%d: %zu bytes, mean abs diff %.3f\n", channels,
                  quality, out.len, sum / (double)n);
    assert_true(sum / (double)n < (quality >= 90 ? 2.0 : 4.0));
    free(back);
    tjDestroy(tj);
    cp_buf_free(&out);
    px_picture_clear(&pic);
}

static void test_encode_jpeg(void **state)
{
    px_picture bad;

    (void)state;
    jpeg_check(1, 90, TJSAMP_GRAY);
    jpeg_check(3, 95, TJSAMP_444);
    jpeg_check(3, 90, TJSAMP_444);
    jpeg_check(3, 75, TJSAMP_420);
    memset(&bad, 0, sizeof(bad));
    assert_int_equal(px_encode_jpeg(&bad, 90, NULL, NULL), CP_ERR_INVALID);
}

static void png_check(uint16_t channels)
{
    px_picture pic = test_picture(channels);
    cp_buf out = CP_BUF_INIT;
    png_image image;
    uint8_t *back;

    assert_int_equal(px_encode_png(&pic, &out, NULL), CP_OK);
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_memory(&image, out.data, out.len));
    assert_int_equal(image.width, pic.width);
    assert_int_equal(image.height, pic.height);
    image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    back = malloc(PNG_IMAGE_SIZE(image));
    assert_true(png_image_finish_read(&image, NULL, back, 0, NULL));
    assert_memory_equal(back, pic.data, (size_t)pic.width * pic.height * channels);
    print_message("  PNG %u channel(s): %zu bytes for %zu\n", channels, out.len,
                  (size_t)pic.width * pic.height * channels);
    free(back);
    cp_buf_free(&out);
    px_picture_clear(&pic);
}

static void test_encode_png(void **state)
{
    (void)state;
    png_check(1);
    png_check(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_linear),
        cmocka_unit_test(test_window_linear_width_one),
        cmocka_unit_test(test_window_linear_exact),
        cmocka_unit_test(test_window_sigmoid),
        cmocka_unit_test(test_min_max),
        cmocka_unit_test(test_rescale_and_first_window),
        cmocka_unit_test(test_presentation_lut_inverse),
        cmocka_unit_test(test_modality_lut_sequence),
        cmocka_unit_test(test_voi_lut_sequence),
        cmocka_unit_test(test_functional_groups),
        cmocka_unit_test(test_palette),
        cmocka_unit_test(test_ybr_full),
        cmocka_unit_test(test_viewport_sizes),
        cmocka_unit_test(test_scaling_quality),
        cmocka_unit_test(test_against_dcm2pnm),
        cmocka_unit_test(test_encode_jpeg),
        cmocka_unit_test(test_encode_png),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
