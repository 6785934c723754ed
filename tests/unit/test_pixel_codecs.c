/*
 * test_pixel_codecs.c - the library-backed decoders (JPEG baseline and
 * extended, JPEG-LS, JPEG 2000, HTJ2K) against independent decoders, on
 * pydicom's test files and on files made at test time; the HTJ2K lossless
 * encoder by round trip; and corrupt or truncated codestreams, which must
 * fail their frame and never crash.
 *
 * tests/pixel/make_codec_reference.py writes the reference pixels and a
 * manifest (name, file, reference, tolerance, expectation) into the build
 * directory; it needs DCMTK, opj_decompress and OpenJPH's tools.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "dicom/dataset.h"
#include "dicom/ts.h"
#include "pixel/codec.h"
#include "pixel/pixel.h"

#define CASES_MAX 256

typedef struct codec_case {
    char name[96];
    char dicom[512];
    char ref[512];
    int tolerance;
    char expect[16];
} codec_case;

typedef struct fixture {
    char dir[512];
    codec_case cases[CASES_MAX];
    size_t count;
} fixture;

/* A case's file, read and described, with its source kept open for frame bytes. */
typedef struct opened {
    dcm_file *file;
    dcm_source *src;
    px_image img;
} opened;

static int setup(void **state)
{
    const char *src = getenv("CLOUDPACS_SOURCE_ROOT");
    const char *build = getenv("CLOUDPACS_BUILD_ROOT");
    fixture *fx = calloc(1, sizeof *fx);
    char cmd[2048], line[2048], path[600];
    FILE *f;

    if (fx == NULL || src == NULL || build == NULL)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "%s/pixel-codec-ref", build);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/pixel/make_codec_reference.py' '%s' 2>/dev/null", src,
             fx->dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/manifest.tsv", fx->dir);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL && fx->count < CASES_MAX) {
        codec_case *c = &fx->cases[fx->count];

        if (sscanf(line, "%95[^\t]\t%511[^\t]\t%511[^\t]\t%d\t%15s", c->name, c->dicom, c->ref,
                   &c->tolerance, c->expect) == 5)
            fx->count++;
    }
    fclose(f);
    *state = fx;
    return fx->count > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

/* Opens a case; false (with the reason printed) only when `soft` and it cannot be read. */
static bool open_case_soft(const codec_case *c, opened *o, bool soft)
{
    cp_error err;
    cp_status st;

    memset(o, 0, sizeof(*o));
    cp_error_clear(&err);
    st = dcm_file_read_path(c->dicom, NULL, &o->file, &err);
    if (st == CP_OK)
        st = dcm_source_open_file(c->dicom, &o->src, &err);
    if (st == CP_OK)
        st = px_image_init(&o->img, o->file, o->src, &err);
    if (st == CP_OK)
        return true;
    if (!soft)
        fail_msg("%s: %s", c->name, err.detail);
    print_message("  %-36s not read: %s\n", c->name, err.detail);
    dcm_source_destroy(o->src);
    dcm_file_destroy(o->file);
    return false;
}

static void open_case(const codec_case *c, opened *o)
{
    open_case_soft(c, o, false);
}

static void close_case(opened *o)
{
    px_image_clear(&o->img);
    dcm_source_destroy(o->src);
    dcm_file_destroy(o->file);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc(n > 0 ? (size_t)n : 1);
    if (data != NULL && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return data;
}

static int64_t sample_at(const uint8_t *p, px_sample_type type, size_t k)
{
    switch (type) {
    case PX_U8: return p[k];
    case PX_S8: return (int8_t)p[k];
    case PX_U16: return (uint16_t)(p[2 * k] | p[2 * k + 1] << 8);
    case PX_S16: return (int16_t)(uint16_t)(p[2 * k] | p[2 * k + 1] << 8);
    default: return 0;
    }
}

/* Frame samples in native order, read as the same types (little-endian host). */
static int64_t frame_at(const px_frame *f, size_t k)
{
    return sample_at(f->data, f->type, k);
}

/* Decodes every frame of a case and compares it with the reference. */
static void check_case(const codec_case *c)
{
    opened o;
    uint8_t *ref = NULL;
    size_t ref_len = 0, per_frame;
    uint64_t total_diff = 0, samples = 0;
    int64_t worst = 0;

    if (!open_case_soft(c, &o, strcmp(c->expect, "any") == 0))
        return;
    if (strcmp(c->ref, "-") != 0) {
        ref = read_all(c->ref, &ref_len);
        assert_non_null(ref);
    }
    per_frame = (size_t)o.img.rows * o.img.columns * o.img.samples_per_pixel *
                px_sample_size(px_image_sample_type(&o.img));

    for (uint32_t i = 0; i < o.img.frames; i++) {
        cp_buf bytes = CP_BUF_INIT;
        px_frame frame;
        cp_error err;
        cp_status st;

        cp_error_clear(&err);
        st = px_frame_bytes(&o.img, o.src, i, &bytes, &err);
        if (st != CP_OK && strcmp(c->expect, "any") != 0)
            fail_msg("%s frame %u: bytes: %s", c->name, i, err.detail);
        st = st != CP_OK ? st : px_decode_frame(&o.img, bytes.data, bytes.len, &frame, &err);
        cp_buf_free(&bytes);
        if (strcmp(c->expect, "any") == 0) {
            print_message("  %-36s frame %u: %s %s\n", c->name, i, cp_status_name(st),
                          st == CP_OK ? "" : err.detail);
            if (st == CP_OK)
                px_frame_clear(&frame);
            continue;
        }
        if (strcmp(c->expect, "unsupported") == 0) {
            assert_int_equal(st, CP_ERR_UNSUPPORTED);
            continue;
        }
        if (st != CP_OK)
            fail_msg("%s frame %u: decode: %s", c->name, i, err.detail);
        assert_int_equal(frame.rows, o.img.rows);
        assert_int_equal(frame.columns, o.img.columns);
        assert_int_equal(frame.samples_per_pixel, o.img.samples_per_pixel);
        assert_int_equal(frame.type, px_image_sample_type(&o.img));
        if (ref != NULL) {
            size_t n = (size_t)frame.rows * frame.columns * frame.samples_per_pixel;

            assert_true(ref_len >= per_frame * (i + 1));
            for (size_t k = 0; k < n; k++) {
                int64_t d = frame_at(&frame, k) -
                            sample_at(ref + per_frame * i, frame.type, k);

                d = d < 0 ? -d : d;
                worst = d > worst ? d : worst;
                total_diff += (uint64_t)d;
            }
            samples += n;
        }
        px_frame_clear(&frame);
    }

    if (samples > 0)
        print_message("  %-36s max %3lld  mean %.4f  (tolerance %d)\n", c->name,
                      (long long)worst, (double)total_diff / (double)samples, c->tolerance);
    if (worst > c->tolerance)
        fail_msg("%s: a sample differs by %lld (tolerance %d)", c->name, (long long)worst,
                 c->tolerance);
    free(ref);
    close_case(&o);
}

static void test_against_references(void **state)
{
    fixture *fx = *state;
    size_t jpeg = 0, jls = 0, j2k = 0, htj2k = 0;

    for (size_t i = 0; i < fx->count; i++) {
        const char *n = fx->cases[i].name;

        check_case(&fx->cases[i]);
        jls += strncmp(n, "jls_", 4) == 0 || strstr(n, "jpeg_ls") != NULL;
        htj2k += strncmp(n, "htj2k_", 6) == 0;
        j2k += strstr(n, "J2K") != NULL || strstr(n, "jp2k") != NULL;
        jpeg += strstr(n, "_jpeg") != NULL || strstr(n, "JPEG-") != NULL ||
                strstr(n, "JPG") != NULL || strstr(n, "SC_rgb_dcmtk") != NULL;
    }
    print_message("  %zu cases\n", fx->count);
    assert_true(jls >= 10);
    assert_true(htj2k >= 8);
    assert_true(j2k >= 4);
    assert_true(jpeg >= 8);
}

/* Decodes damaged copies of a frame's codestream: any status, no crash, no leak. */
static cp_status decode_damaged(const px_image *img, const uint8_t *data, size_t len)
{
    px_frame frame;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    st = px_decode_frame(img, data, len, &frame, &err);
    if (st == CP_OK)
        px_frame_clear(&frame);
    else
        assert_null(frame.data);
    return st;
}

static void test_damaged_codestreams(void **state)
{
    fixture *fx = *state;
    size_t truncated_failures = 0, truncated_total = 0;

    for (size_t i = 0; i < fx->count; i++) {
        const codec_case *c = &fx->cases[i];
        cp_buf bytes = CP_BUF_INIT;
        uint8_t *copy;
        opened o;

        if (strcmp(c->expect, "ok") != 0)
            continue;
        open_case(c, &o);
        assert_int_equal(px_frame_bytes(&o.img, o.src, 0, &bytes, NULL), CP_OK);
        copy = malloc(bytes.len + 1);
        assert_non_null(copy);

        /* Cut short: a half and an eighth of the codestream, then only its start. */
        for (size_t div = 2; div <= 8; div *= 4) {
            memcpy(copy, bytes.data, bytes.len / div);
            truncated_total++;
            truncated_failures += decode_damaged(&o.img, copy, bytes.len / div) != CP_OK;
        }
        assert_int_not_equal(decode_damaged(&o.img, bytes.data, 12), CP_OK);
        assert_int_not_equal(decode_damaged(&o.img, bytes.data, 0), CP_OK);

        /* Bytes flipped in the header and in the entropy-coded data. */
        for (size_t at = 2; at < bytes.len; at += bytes.len / 7 + 1) {
            memcpy(copy, bytes.data, bytes.len);
            for (size_t k = at; k < at + 6 && k < bytes.len; k++)
                copy[k] ^= 0x5A;
            decode_damaged(&o.img, copy, bytes.len);
        }

        free(copy);
        cp_buf_free(&bytes);
        close_case(&o);
    }
    print_message("  truncated codestreams rejected: %zu of %zu\n", truncated_failures,
                  truncated_total);
    assert_true(truncated_failures * 10 >= truncated_total * 9);
}

/* Encodes each decoded lossless frame with the HTJ2K encoder and decodes it back. */
static void test_htj2k_round_trip(void **state)
{
    fixture *fx = *state;
    const dcm_transfer_syntax *ts = dcm_ts_lookup("1.2.840.10008.1.2.4.201", 23);
    size_t done = 0;

    assert_non_null(ts);
    for (size_t i = 0; i < fx->count; i++) {
        const codec_case *c = &fx->cases[i];
        px_frame frame, back;
        cp_buf bytes = CP_BUF_INIT, code = CP_BUF_INIT;
        px_image img;
        cp_error err;
        opened o;

        if (strcmp(c->expect, "ok") != 0 || c->tolerance != 0)
            continue;
        open_case(c, &o);
        assert_int_equal(px_frame_bytes(&o.img, o.src, 0, &bytes, NULL), CP_OK);
        assert_int_equal(px_decode_frame(&o.img, bytes.data, bytes.len, &frame, NULL), CP_OK);

        cp_error_clear(&err);
        if (px_htj2k_encode_lossless(&frame, &code, &err) != CP_OK)
            fail_msg("%s: HTJ2K encoding: %s", c->name, err.detail);
        img = o.img;
        img.transfer_syntax = ts;
        if (img.samples_per_pixel == 3)
            img.photometric = PX_YBR_RCT;
        if (px_htj2k_decode(&img, code.data, code.len, &back, &err) != CP_OK)
            fail_msg("%s: HTJ2K decoding: %s", c->name, err.detail);
        assert_int_equal(back.size, frame.size);
        assert_memory_equal(back.data, frame.data, frame.size);
        if (img.samples_per_pixel == 3)
            assert_int_equal(back.photometric, PX_RGB);
        done++;

        px_frame_clear(&back);
        px_frame_clear(&frame);
        cp_buf_free(&code);
        cp_buf_free(&bytes);
        close_case(&o);
    }
    print_message("  HTJ2K lossless round trips: %zu\n", done);
    assert_true(done >= 10);
}

/* Our HTJ2K encoder's output decoded by OpenJPH's ojph_expand gives the same samples. */
static void test_htj2k_encoder_vs_ojph_expand(void **state)
{
    fixture *fx = *state;
    px_frame frame;
    cp_buf code = CP_BUF_INIT;
    char j2c[600], out[600], cmd[1400];
    uint8_t *back;
    size_t len;
    FILE *f;

    assert_int_equal(px_frame_alloc(&frame, 37, 53, 1, PX_U16, NULL), CP_OK);
    frame.bits_stored = 12;
    frame.photometric = PX_MONOCHROME2;
    for (size_t k = 0; k < 37 * 53; k++)
        ((uint16_t *)(void *)frame.data)[k] = (uint16_t)((k * 7919u) % 4096u);
    assert_int_equal(px_htj2k_encode_lossless(&frame, &code, NULL), CP_OK);

    snprintf(j2c, sizeof j2c, "%s/ours.j2c", fx->dir);
    snprintf(out, sizeof out, "%s/ours.yuv", fx->dir);
    f = fopen(j2c, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(code.data, 1, code.len, f), code.len);
    fclose(f);
    snprintf(cmd, sizeof cmd, "ojph_expand -i '%s' -o '%s' >/dev/null 2>&1", j2c, out);
    assert_int_equal(system(cmd), 0);
    back = read_all(out, &len);
    assert_non_null(back);
    assert_int_equal(len, frame.size);
    for (size_t k = 0; k < 37 * 53; k++)
        assert_int_equal(sample_at(back, PX_U16, k), frame_at(&frame, k));
    free(back);
    cp_buf_free(&code);
    px_frame_clear(&frame);
}

/* The offset of main-header marker `marker` (FF xx) of a J2K codestream, or 0. */
static size_t find_marker(const uint8_t *p, size_t len, uint8_t marker)
{
    size_t i = 2;

    while (i + 4 <= len && p[i] == 0xFF && p[i + 1] != 0x90) {
        if (p[i + 1] == marker)
            return i;
        i += 2 + (size_t)(p[i + 2] << 8 | p[i + 3]);
    }
    return 0;
}

/*
 * Headers that make Debian's OpenJPH 0.9 crash or abort (a tile grid offset
 * past the image, an unknown progression order, quantization that does not
 * match the decomposition levels) must be refused before it sees them.
 */
static void test_htj2k_hostile_headers(void **state)
{
    fixture *fx = *state;
    const codec_case *c = NULL;
    cp_buf bytes = CP_BUF_INIT;
    uint8_t *copy;
    size_t siz, cod, qcd;
    opened o;

    for (size_t i = 0; i < fx->count; i++)
        if (strcmp(fx->cases[i].name, "htj2k_gray8_lossless") == 0)
            c = &fx->cases[i];
    assert_non_null(c);
    open_case(c, &o);
    assert_int_equal(px_frame_bytes(&o.img, o.src, 0, &bytes, NULL), CP_OK);
    siz = find_marker(bytes.data, bytes.len, 0x51);
    cod = find_marker(bytes.data, bytes.len, 0x52);
    qcd = find_marker(bytes.data, bytes.len, 0x5C);
    assert_true(siz > 0 && cod > 0 && qcd > 0);
    copy = malloc(bytes.len);
    assert_non_null(copy);

    memcpy(copy, bytes.data, bytes.len);
    copy[siz + 4 + 33] = 0x32;      /* YTOsiz past YOsiz */
    assert_int_equal(decode_damaged(&o.img, copy, bytes.len), CP_ERR_MALFORMED);

    memcpy(copy, bytes.data, bytes.len);
    copy[cod + 4 + 1] = 7;          /* progression order */
    assert_int_equal(decode_damaged(&o.img, copy, bytes.len), CP_ERR_MALFORMED);

    memcpy(copy, bytes.data, bytes.len);
    copy[cod + 4 + 5] += 1;         /* one more level than QCD has subbands for */
    assert_int_equal(decode_damaged(&o.img, copy, bytes.len), CP_ERR_MALFORMED);

    memcpy(copy, bytes.data, bytes.len);
    copy[qcd + 4] = (uint8_t)((copy[qcd + 4] & 0xE0) | 1);     /* derived style */
    assert_int_equal(decode_damaged(&o.img, copy, bytes.len), CP_ERR_MALFORMED);

    assert_int_equal(decode_damaged(&o.img, bytes.data, bytes.len), CP_OK);
    free(copy);
    cp_buf_free(&bytes);
    close_case(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_references),
        cmocka_unit_test(test_damaged_codestreams),
        cmocka_unit_test(test_htj2k_round_trip),
        cmocka_unit_test(test_htj2k_encoder_vs_ojph_expand),
        cmocka_unit_test(test_htj2k_hostile_headers),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
