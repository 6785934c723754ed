/*
 * test_dicom_dataset.c - the byte sources (io.c), the pull parser (parser.c)
 * and the data-set reader (dataset.c): every transfer syntax and header form
 * built by hand, sequences, encapsulated pixel data, stop and bulk options,
 * UN and private VR resolution, deflate, malformed input, and every file of
 * pydicom's test data.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/parser.h"

#define PYDICOM_DATA "/usr/lib/python3/dist-packages/pydicom/data"

/* --- building inputs ------------------------------------------------------------ */

typedef struct {
    uint8_t *b;
    size_t n;
    size_t cap;
    bool explicit_vr;
    bool be;
} out_t;

static out_t out_new(bool explicit_vr, bool be)
{
    out_t o = { NULL, 0, 0, explicit_vr, be };

    return o;
}

static void out_free(out_t *o)
{
    free(o->b);
    o->b = NULL;
    o->n = o->cap = 0;
}

static void o_bytes(out_t *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->b = realloc(o->b, o->cap);
        assert_non_null(o->b);
    }
    if (n > 0)
        memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void o_u16(out_t *o, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    if (o->be) {
        b[0] = (uint8_t)(v >> 8);
        b[1] = (uint8_t)v;
    }
    o_bytes(o, b, 2);
}

static void o_u32(out_t *o, uint32_t v)
{
    if (o->be) {
        o_u16(o, (uint16_t)(v >> 16));
        o_u16(o, (uint16_t)v);
    } else {
        o_u16(o, (uint16_t)v);
        o_u16(o, (uint16_t)(v >> 16));
    }
}

static void o_tag(out_t *o, uint32_t tag)
{
    o_u16(o, DCM_TAG_GROUP(tag));
    o_u16(o, DCM_TAG_ELEMENT(tag));
}

/* An element header in o's syntax; vr NULL writes the 8-byte item form. */
static void o_header(out_t *o, uint32_t tag, const char *vr, uint32_t len)
{
    dcm_vr v;

    o_tag(o, tag);
    if (!o->explicit_vr || vr == NULL) {
        o_u32(o, len);
        return;
    }
    o_bytes(o, vr, 2);
    v = dcm_vr_from_bytes((uint8_t)vr[0], (uint8_t)vr[1]);
    if (v == DCM_VR_NONE || dcm_vr_has_long_length(v)) {
        o_u16(o, 0);
        o_u32(o, len);
    } else {
        o_u16(o, (uint16_t)len);
    }
}

static void o_el(out_t *o, uint32_t tag, const char *vr, const void *val, uint32_t len)
{
    o_header(o, tag, vr, len);
    o_bytes(o, val, len);
}

/* A text value padded to even length as its VR wants. */
static void o_str(out_t *o, uint32_t tag, const char *vr, const char *s)
{
    size_t len = strlen(s);
    uint8_t pad = vr != NULL && strcmp(vr, "UI") == 0 ? 0 : ' ';

    o_header(o, tag, vr, (uint32_t)(len + (len & 1)));
    o_bytes(o, s, len);
    if (len & 1)
        o_bytes(o, &pad, 1);
}

static void o_us(out_t *o, uint32_t tag, const char *vr, uint16_t v)
{
    o_header(o, tag, vr, 2);
    o_u16(o, v);
}

static void o_item(out_t *o, uint32_t len)
{
    o_header(o, DCM_TAG_ITEM, NULL, len);
}

static void o_item_end(out_t *o)
{
    o_header(o, DCM_TAG_ITEM_DELIMITATION, NULL, 0);
}

static void o_seq_end(out_t *o)
{
    o_header(o, DCM_TAG_SEQUENCE_DELIMITATION, NULL, 0);
}

/* Preamble, "DICM" and a meta group with its group length and ts_uid. */
static void o_part10(out_t *o, const char *ts_uid)
{
    out_t meta = out_new(true, false);
    uint8_t preamble[128] = { 0 };
    uint8_t version[2] = { 0, 1 };

    o_el(&meta, DCM_TAG(0x0002, 0x0001), "OB", version, 2);
    o_str(&meta, DCM_TAG(0x0002, 0x0002), "UI", "1.2.840.10008.5.1.4.1.1.7");
    o_str(&meta, DCM_TAG(0x0002, 0x0003), "UI", "1.2.3.4");
    o_str(&meta, DCM_TAG_TRANSFER_SYNTAX_UID, "UI", ts_uid);

    o_bytes(o, preamble, sizeof preamble);
    o_bytes(o, "DICM", 4);
    o_bytes(o, "\x02\x00\x00\x00UL\x04\x00", 8);
    o_bytes(o, (uint8_t[4]){ (uint8_t)meta.n, (uint8_t)(meta.n >> 8), 0, 0 }, 4);
    o_bytes(o, meta.b, meta.n);
    out_free(&meta);
}

static cp_status read_out(const out_t *o, const dcm_read_options *opts, dcm_file **f,
                          cp_error *err)
{
    dcm_source *src = dcm_source_from_memory(o->b, o->n);
    cp_status st;

    assert_non_null(src);
    cp_error_clear(err);
    st = dcm_file_read(src, opts, f, err);
    dcm_source_destroy(src);
    return st;
}

/* A source that can only read forward, like a socket or an inflated stream. */
typedef struct {
    const uint8_t *b;
    size_t n;
    size_t pos;
} stream_ctx;

static cp_status stream_read(void *ctx, void *buf, size_t len, size_t *got)
{
    stream_ctx *s = ctx;
    size_t n = s->n - s->pos < len ? s->n - s->pos : len;

    memcpy(buf, s->b + s->pos, n);
    s->pos += n;
    *got = n;
    return CP_OK;
}

static const dcm_source_ops stream_ops = { stream_read, NULL, NULL };

static const dcm_element *get(const dcm_dataset *ds, uint32_t tag)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);

    assert_non_null(el);
    return el;
}

static void assert_string_value(const dcm_element *el, size_t index, const char *expect)
{
    const char *text;
    size_t len;

    assert_int_equal(dcm_element_get_string(el, index, &text, &len), CP_OK);
    assert_int_equal(len, strlen(expect));
    assert_memory_equal(text, expect, len);
}

/* --- sources and sinks --------------------------------------------------------------- */

static void test_memory_source(void **state)
{
    static const uint8_t data[] = "0123456789abcdef";
    dcm_source *src = dcm_source_from_memory(data, 16);
    uint8_t buf[300];
    size_t got;
    uint64_t size;

    (void)state;
    assert_true(dcm_source_can_pread(src));
    assert_true(dcm_source_size(src, &size));
    assert_int_equal(size, 16);
    assert_int_equal(dcm_source_peek(src, buf, 4, &got), CP_OK);
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "0123", 4);
    assert_int_equal(dcm_source_offset(src), 0);
    assert_int_equal(dcm_source_skip(src, 3), CP_OK);
    assert_int_equal(dcm_source_read_exact(src, buf, 3), CP_OK);
    assert_memory_equal(buf, "345", 3);
    assert_int_equal(dcm_source_offset(src), 6);
    assert_int_equal(dcm_source_peek(src, buf, 257, &got), CP_ERR_INVALID);
    assert_int_equal(dcm_source_peek(src, buf, 256, &got), CP_OK);
    assert_int_equal(got, 10);
    assert_int_equal(dcm_source_pread(src, 10, buf, 100, &got), CP_OK);
    assert_int_equal(got, 6);
    assert_memory_equal(buf, "abcdef", 6);
    assert_int_equal(dcm_source_read_exact(src, buf, 11), CP_ERR_TRUNCATED);
    assert_int_equal(dcm_source_skip(src, 1), CP_ERR_TRUNCATED);
    dcm_source_destroy(src);
}

static void test_file_source_and_sinks(void **state)
{
    FILE *tmp = tmpfile();
    char path[64];
    uint8_t *data = malloc(200000), buf[16];
    cp_buf sink_buf = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&sink_buf);
    dcm_source *src;
    cp_error err;
    size_t got;
    uint64_t size;

    (void)state;
    assert_non_null(tmp);
    for (size_t i = 0; i < 200000; i++)
        data[i] = (uint8_t)(i * 7);
    sink = dcm_sink_to_file(tmp);
    assert_int_equal(dcm_sink_write(&sink, data, 200000), CP_OK);
    assert_int_equal(fflush(tmp), 0);
    /* The unnamed temporary file is opened again by its descriptor's name. */
    snprintf(path, sizeof path, "/proc/self/fd/%d", fileno(tmp));

    assert_int_equal(dcm_source_open_file(path, &src, &err), CP_OK);
    assert_true(dcm_source_size(src, &size));
    assert_int_equal(size, 200000);
    assert_int_equal(dcm_source_read_exact(src, buf, 10), CP_OK);
    assert_memory_equal(buf, data, 10);
    assert_int_equal(dcm_source_skip(src, 150000), CP_OK);
    assert_int_equal(dcm_source_offset(src), 150010);
    assert_int_equal(dcm_source_read_exact(src, buf, 16), CP_OK);
    assert_memory_equal(buf, data + 150010, 16);
    assert_int_equal(dcm_source_pread(src, 199990, buf, 16, &got), CP_OK);
    assert_int_equal(got, 10);
    assert_memory_equal(buf, data + 199990, 10);
    assert_int_equal(dcm_source_skip(src, 60000), CP_ERR_TRUNCATED);
    dcm_source_destroy(src);
    fclose(tmp);

    cp_error_clear(&err);
    assert_int_equal(dcm_source_open_file("/nonexistent/x.dcm", &src, &err),
                     CP_ERR_NOT_FOUND);

    sink = dcm_sink_to_buf(&sink_buf);
    assert_int_equal(dcm_sink_write(&sink, "abc", 3), CP_OK);
    assert_int_equal(dcm_sink_write(&sink, "de", 2), CP_OK);
    assert_int_equal(sink_buf.len, 5);
    assert_memory_equal(sink_buf.data, "abcde", 5);
    cp_buf_free(&sink_buf);
    free(data);
}

static void test_stream_source_reads_across_buffer(void **state)
{
    size_t n = 300000;
    uint8_t *data = malloc(n), *buf = malloc(n);
    stream_ctx ctx = { data, n, 0 };
    dcm_source *src;
    size_t got;

    (void)state;
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 13 + 1);
    src = dcm_source_create(&stream_ops, &ctx);
    assert_false(dcm_source_can_pread(src));
    assert_int_equal(dcm_source_pread(src, 0, buf, 1, &got), CP_ERR_UNSUPPORTED);
    assert_int_equal(dcm_source_read_exact(src, buf, 5), CP_OK);
    assert_int_equal(dcm_source_skip(src, 100000), CP_OK);
    assert_int_equal(dcm_source_peek(src, buf, 200, &got), CP_OK);
    assert_memory_equal(buf, data + 100005, 200);
    assert_int_equal(dcm_source_read(src, buf, n, &got), CP_OK);
    assert_int_equal(got, n - 100005);
    assert_memory_equal(buf, data + 100005, got);
    assert_int_equal(dcm_source_offset(src), n);
    dcm_source_destroy(src);
    free(data);
    free(buf);
}

/* --- transfer syntaxes and header forms ------------------------------------------------ */

static void test_explicit_le_part10(void **state)
{
    out_t o = out_new(true, false);
    dcm_file *f;
    cp_error err;
    char text[64];
    uint64_t u;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_str(&o, DCM_TAG(0x0008, 0x0005), "CS", "ISO_IR 100");
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "Doe^John");
    o_us(&o, DCM_TAG(0x0028, 0x0010), "US", 512);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);

    assert_int_equal(f->flags, 0);
    assert_ptr_equal(f->transfer_syntax, &dcm_ts_explicit_le);
    assert_non_null(f->meta);
    assert_int_equal(dcm_dataset_count(f->meta), 5);
    assert_int_equal(dcm_dataset_count(f->dataset), 4);
    assert_int_equal(dcm_dataset_get_string(f->dataset, DCM_TAG(0x0010, 0x0010), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "Doe^John");
    assert_int_equal(dcm_element_get_uint(f->dataset, get(f->dataset, DCM_TAG(0x0028, 0x0010)),
                                          0, &u), CP_OK);
    assert_int_equal(u, 512);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0010, 0x0010))->vr, DCM_VR_PN);
    assert_false(get(f->dataset, DCM_TAG(0x0010, 0x0010))->flags &
                 DCM_ELEMENT_VR_FROM_DICTIONARY);
    assert_int_equal(f->dataset_offset, dcm_dataset_at(f->dataset, 0)->offset - 8);
    assert_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0010, 0x0020)));
    assert_null(dcm_dataset_parent(f->dataset));
    assert_int_equal(dcm_dataset_item_length(f->dataset), 0);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_implicit_le_vr_from_dictionary(void **state)
{
    out_t o = out_new(false, false);
    const dcm_element *el;
    dcm_file *f;
    cp_error err;
    int64_t i;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2");
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "Doe^Jane");
    o_us(&o, DCM_TAG(0x0028, 0x0103), "US", 1);
    o_us(&o, DCM_TAG(0x0028, 0x0106), "US", 0xFFFE);
    o_el(&o, DCM_TAG(0x0029, 0x1001), NULL, "abcd", 4);
    o_el(&o, DCM_TAG(0x7FE0, 0x0010), NULL, "\x01\x02\x03\x04", 4);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);

    assert_ptr_equal(f->transfer_syntax, &dcm_ts_implicit_le);
    el = get(f->dataset, DCM_TAG(0x0010, 0x0010));
    assert_int_equal(el->vr, DCM_VR_PN);
    assert_true(el->flags & DCM_ELEMENT_VR_FROM_DICTIONARY);
    el = get(f->dataset, DCM_TAG(0x0028, 0x0106));
    assert_int_equal(el->vr, DCM_VR_SS);
    assert_int_equal(dcm_element_get_int(f->dataset, el, 0, &i), CP_OK);
    assert_int_equal(i, -2);
    el = get(f->dataset, DCM_TAG(0x0029, 0x1001));
    assert_int_equal(el->vr, DCM_VR_UN);
    assert_false(el->flags & DCM_ELEMENT_VR_FROM_DICTIONARY);
    assert_int_equal(get(f->dataset, DCM_TAG_PIXEL_DATA)->vr, DCM_VR_OW);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_us_or_ss_defaults_to_us(void **state)
{
    out_t o = out_new(false, false);
    dcm_file *f;
    cp_error err;

    (void)state;
    o_us(&o, DCM_TAG(0x0028, 0x0106), "US", 0xFFFE);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_true(f->flags & DCM_FILE_NO_META);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0028, 0x0106))->vr, DCM_VR_US);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_explicit_be(void **state)
{
    out_t o = out_new(true, true);
    out_t all = out_new(true, false);
    const dcm_element *el;
    dcm_file *f;
    cp_error err;
    uint64_t u;
    double d;
    int64_t i;

    (void)state;
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "MR");
    o_us(&o, DCM_TAG(0x0028, 0x0010), "US", 0x1234);
    o_header(&o, DCM_TAG(0x0020, 0x5000), "AT", 4);
    o_u16(&o, 0x0010);
    o_u16(&o, 0x0020);
    o_header(&o, DCM_TAG(0x0018, 0x0088), "FD", 8);
    o_bytes(&o, "\x40\x09\x21\xFB\x54\x44\x2D\x18", 8);
    o_header(&o, DCM_TAG(0x0018, 0x9219), "SS", 2);
    o_u16(&o, 0xFFFF);
    o_part10(&all, "1.2.840.10008.1.2.2");
    o_bytes(&all, o.b, o.n);
    assert_int_equal(read_out(&all, NULL, &f, &err), CP_OK);

    assert_ptr_equal(f->transfer_syntax, &dcm_ts_explicit_be);
    assert_true(dcm_dataset_big_endian(f->dataset));
    el = get(f->dataset, DCM_TAG(0x0028, 0x0010));
    assert_memory_equal(el->value, "\x12\x34", 2);
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_OK);
    assert_int_equal(u, 0x1234);
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 1, &u), CP_ERR_NOT_FOUND);
    el = get(f->dataset, DCM_TAG(0x0020, 0x5000));
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_OK);
    assert_int_equal(u, DCM_TAG(0x0010, 0x0020));
    el = get(f->dataset, DCM_TAG(0x0018, 0x0088));
    assert_int_equal(dcm_element_get_double(f->dataset, el, 0, &d), CP_OK);
    assert_true(d > 3.14159 && d < 3.1416);
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_ERR_INVALID);
    el = get(f->dataset, DCM_TAG(0x0018, 0x9219));
    assert_int_equal(dcm_element_get_int(f->dataset, el, 0, &i), CP_OK);
    assert_int_equal(i, -1);
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_ERR_INVALID);
    el = get(f->dataset, DCM_TAG(0x0008, 0x0060));
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_ERR_INVALID);
    dcm_file_destroy(f);
    out_free(&o);
    out_free(&all);
}

static void test_long_header_vrs(void **state)
{
    out_t o = out_new(true, false);
    const dcm_element *el;
    dcm_file *f;
    cp_error err;
    uint64_t u;
    int64_t i;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_el(&o, DCM_TAG(0x0008, 0x0100), "UC", " A\\B ", 6);
    o_el(&o, DCM_TAG(0x0008, 0x0120), "UR", " http://x ", 10);
    o_el(&o, DCM_TAG(0x0008, 0x0200), "UT", "  text  ", 8);
    o_el(&o, DCM_TAG(0x0009, 0x0010), "LO", "ACME", 4);
    o_el(&o, DCM_TAG(0x0009, 0x1001), "OV", "\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0", 16);
    o_el(&o, DCM_TAG(0x0009, 0x1002), "SV", "\xFE\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 8);
    o_el(&o, DCM_TAG(0x0009, 0x1003), "UV", "\x05\0\0\0\0\0\0\x80", 8);
    o_el(&o, DCM_TAG(0x0009, 0x1004), "OL", "\x07\0\0\0", 4);
    o_el(&o, DCM_TAG(0x0009, 0x1005), "OF", "\0\0\x80\x3F", 4);
    o_el(&o, DCM_TAG(0x0009, 0x1006), "OD", "\0\0\0\0\0\0\xF0\x3F", 8);
    o_el(&o, DCM_TAG(0x0009, 0x1007), "OW", "\x34\x12", 2);
    o_el(&o, DCM_TAG(0x0009, 0x1008), "OB", "\x99\0", 2);
    o_el(&o, DCM_TAG(0x0009, 0x1009), "UN", "\x42\0", 2);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);

    el = get(f->dataset, DCM_TAG(0x0008, 0x0100));
    assert_int_equal(el->vr, DCM_VR_UC);
    assert_int_equal(dcm_element_string_count(el), 2);
    assert_string_value(el, 0, "A");
    assert_string_value(el, 1, "B");
    assert_string_value(get(f->dataset, DCM_TAG(0x0008, 0x0120)), 0, " http://x");
    assert_string_value(get(f->dataset, DCM_TAG(0x0008, 0x0200)), 0, "  text");
    assert_int_equal(dcm_element_string_count(get(f->dataset, DCM_TAG(0x0008, 0x0200))), 1);
    el = get(f->dataset, DCM_TAG(0x0009, 0x1001));
    assert_int_equal(el->vr, DCM_VR_OV);
    assert_int_equal(el->length, 16);
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 1, &u), CP_OK);
    assert_int_equal(u, 2);
    el = get(f->dataset, DCM_TAG(0x0009, 0x1002));
    assert_int_equal(dcm_element_get_int(f->dataset, el, 0, &i), CP_OK);
    assert_int_equal(i, -2);
    el = get(f->dataset, DCM_TAG(0x0009, 0x1003));
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_OK);
    assert_true(u == 0x8000000000000005ull);
    assert_int_equal(dcm_element_get_int(f->dataset, el, 0, &i), CP_ERR_INVALID);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1004))->vr, DCM_VR_OL);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1005))->vr, DCM_VR_OF);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1006))->vr, DCM_VR_OD);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1007))->vr, DCM_VR_OW);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1008))->vr, DCM_VR_OB);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1009))->vr, DCM_VR_UN);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0009, 0x1009))->length, 2);
    {
        double d;

        assert_int_equal(dcm_element_get_double(f->dataset,
                                                get(f->dataset, DCM_TAG(0x0009, 0x1005)), 0,
                                                &d), CP_OK);
        assert_true(d == 1.0);
        assert_int_equal(dcm_element_get_double(f->dataset,
                                                get(f->dataset, DCM_TAG(0x0009, 0x1006)), 0,
                                                &d), CP_OK);
        assert_true(d == 1.0);
    }
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_unknown_vr(void **state)
{
    out_t o = out_new(true, false);
    const dcm_element *el;
    dcm_file *f;
    cp_error err;

    (void)state;
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_el(&o, DCM_TAG(0x0009, 0x1001), "ZZ", "abcd", 4);
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "X");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    el = get(f->dataset, DCM_TAG(0x0009, 0x1001));
    assert_int_equal(el->vr, DCM_VR_UN);
    assert_int_equal(el->length, 4);
    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0010, 0x0010)));
    dcm_file_destroy(f);

    /* Reserved bytes that are not zero: the header cannot be decoded. */
    o.b[10 + 6] = 1;
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_MALFORMED);
    assert_int_equal(err.offset, 10);
    assert_int_equal(err.tag, DCM_TAG(0x0009, 0x1001));
    assert_true(f->flags & DCM_FILE_PARTIAL);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    out_free(&o);
}

/* --- sequences ----------------------------------------------------------------------- */

static void test_nested_sequences(void **state)
{
    out_t o = out_new(true, false);
    const dcm_element *sq, *inner;
    const dcm_dataset *item;
    const uint8_t *cs;
    dcm_file *f;
    cp_error err;
    size_t cs_len;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_str(&o, DCM_TAG(0x0008, 0x0005), "CS", "ISO_IR 192");
    /* Undefined-length sequence: a defined-length item, an empty item, an undefined item. */
    o_header(&o, DCM_TAG(0x0008, 0x1115), "SQ", DCM_UNDEFINED_LENGTH);
    o_item(&o, 10);
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_item(&o, 0);
    o_item(&o, DCM_UNDEFINED_LENGTH);
    /* A defined-length sequence inside: one undefined-length item. */
    o_header(&o, DCM_TAG(0x0008, 0x1140), "SQ", 8 + 14 + 8);
    o_item(&o, DCM_UNDEFINED_LENGTH);
    o_str(&o, DCM_TAG(0x0008, 0x1150), "UI", "1.2.3");
    o_item_end(&o);
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "A^B");
    o_item_end(&o);
    o_seq_end(&o);
    /* An empty sequence of each kind. */
    o_header(&o, DCM_TAG(0x0008, 0x2112), "SQ", 0);
    o_header(&o, DCM_TAG(0x0008, 0x9215), "SQ", DCM_UNDEFINED_LENGTH);
    o_seq_end(&o);
    o_str(&o, DCM_TAG(0x0020, 0x000D), "UI", "1.2.3.4");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);

    sq = get(f->dataset, DCM_TAG(0x0008, 0x1115));
    assert_int_equal(sq->vr, DCM_VR_SQ);
    assert_true(sq->flags & DCM_ELEMENT_UNDEFINED_LENGTH);
    assert_int_equal(sq->item_count, 3);
    assert_null(sq->value);
    assert_int_equal(dcm_dataset_item_length(sq->items[0]), 10);
    assert_int_equal(dcm_dataset_count(sq->items[0]), 1);
    assert_int_equal(dcm_dataset_item_length(sq->items[1]), 0);
    assert_int_equal(dcm_dataset_count(sq->items[1]), 0);
    item = sq->items[2];
    assert_int_equal(dcm_dataset_item_length(item), DCM_UNDEFINED_LENGTH);
    assert_ptr_equal(dcm_dataset_parent(item), f->dataset);
    inner = get(item, DCM_TAG(0x0008, 0x1140));
    assert_int_equal(inner->length, 30);
    assert_int_equal(inner->value_length, 30);
    assert_int_equal(inner->item_count, 1);
    assert_ptr_equal(dcm_dataset_parent(inner->items[0]), item);
    assert_string_value(get(inner->items[0], DCM_TAG(0x0008, 0x1150)), 0, "1.2.3");
    assert_non_null(dcm_dataset_get(item, DCM_TAG(0x0010, 0x0010)));

    dcm_dataset_charset(inner->items[0], &cs, &cs_len);
    assert_int_equal(cs_len, 10);
    assert_memory_equal(cs, "ISO_IR 192", 10);

    assert_int_equal(get(f->dataset, DCM_TAG(0x0008, 0x2112))->item_count, 0);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0008, 0x9215))->item_count, 0);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0008, 0x9215))->value_length, 8);
    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0020, 0x000D)));
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_implicit_sequences(void **state)
{
    out_t o = out_new(false, false);
    const dcm_element *sq;
    dcm_file *f;
    cp_error err;

    (void)state;
    o_header(&o, DCM_TAG(0x0008, 0x1115), NULL, DCM_UNDEFINED_LENGTH);
    o_item(&o, DCM_UNDEFINED_LENGTH);
    o_us(&o, DCM_TAG(0x0028, 0x0010), NULL, 7);
    o_item_end(&o);
    o_seq_end(&o);
    /* An unknown tag with undefined length is a sequence too (PS3.5 6.2.2). */
    o_header(&o, DCM_TAG(0x0009, 0x1010), NULL, DCM_UNDEFINED_LENGTH);
    o_item(&o, 10);
    o_str(&o, DCM_TAG(0x0008, 0x0060), NULL, "CT");
    o_seq_end(&o);
    o_str(&o, DCM_TAG(0x0010, 0x0010), NULL, "Z");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_ptr_equal(f->transfer_syntax, &dcm_ts_implicit_le);
    sq = get(f->dataset, DCM_TAG(0x0008, 0x1115));
    assert_int_equal(sq->vr, DCM_VR_SQ);
    assert_int_equal(sq->item_count, 1);
    assert_int_equal(get(sq->items[0], DCM_TAG(0x0028, 0x0010))->vr, DCM_VR_US);
    sq = get(f->dataset, DCM_TAG(0x0009, 0x1010));
    assert_int_equal(sq->vr, DCM_VR_SQ);
    assert_int_equal(sq->item_count, 1);
    assert_int_equal(get(sq->items[0], DCM_TAG(0x0008, 0x0060))->vr, DCM_VR_CS);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_un_resolution(void **state)
{
    out_t o = out_new(true, false);
    out_t seq = out_new(false, false);
    const dcm_element *el;
    dcm_file *f;
    cp_error err;

    (void)state;
    o_item(&seq, 10);
    o_str(&seq, DCM_TAG(0x0008, 0x1150), NULL, "1.2");

    o_part10(&o, "1.2.840.10008.1.2.1");
    o_el(&o, DCM_TAG(0x0008, 0x1140), "UN", seq.b, (uint32_t)seq.n);
    o_el(&o, DCM_TAG(0x0009, 0x1001), "UN", "ab", 2);
    o_el(&o, DCM_TAG(0x0010, 0x0010), "UN", "Doe ", 4);
    o_header(&o, DCM_TAG(0x0011, 0x1001), "UN", DCM_UNDEFINED_LENGTH);
    o_bytes(&o, seq.b, seq.n);
    o_seq_end(&o);
    o_str(&o, DCM_TAG(0x0020, 0x0010), "SH", "S1");
    o_header(&o, DCM_TAG_PIXEL_DATA, "UN", DCM_UNDEFINED_LENGTH);
    o_item(&o, 0);
    o_item(&o, 2);
    o_bytes(&o, "px", 2);
    o_seq_end(&o);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    el = get(f->dataset, DCM_TAG_PIXEL_DATA);
    assert_int_equal(el->vr, DCM_VR_OB);
    assert_true(el->flags & DCM_ELEMENT_ENCAPSULATED);
    assert_int_equal(el->fragment_count, 2);

    el = get(f->dataset, DCM_TAG(0x0008, 0x1140));
    assert_int_equal(el->vr, DCM_VR_SQ);
    assert_true(el->flags & DCM_ELEMENT_WAS_UN);
    assert_int_equal(el->item_count, 1);
    el = get(el->items[0], DCM_TAG(0x0008, 0x1150));
    assert_int_equal(el->vr, DCM_VR_UI);
    assert_true(el->flags & DCM_ELEMENT_VR_FROM_DICTIONARY);
    el = get(f->dataset, DCM_TAG(0x0009, 0x1001));
    assert_int_equal(el->vr, DCM_VR_UN);
    assert_false(el->flags & DCM_ELEMENT_WAS_UN);
    el = get(f->dataset, DCM_TAG(0x0010, 0x0010));
    assert_int_equal(el->vr, DCM_VR_PN);
    assert_true(el->flags & DCM_ELEMENT_WAS_UN);
    assert_string_value(el, 0, "Doe");
    el = get(f->dataset, DCM_TAG(0x0011, 0x1001));
    assert_int_equal(el->vr, DCM_VR_SQ);
    assert_true(el->flags & DCM_ELEMENT_UNDEFINED_LENGTH);
    assert_int_equal(el->item_count, 1);
    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0020, 0x0010)));
    dcm_file_destroy(f);
    out_free(&o);
    out_free(&seq);
}

static void test_private_creator_lookup(void **state)
{
    out_t o = out_new(false, false);
    const dcm_element *sq;
    dcm_file *f;
    cp_error err;

    (void)state;
    o_str(&o, DCM_TAG(0x0029, 0x0011), NULL, "SIEMENS CSA HEADER");
    o_str(&o, DCM_TAG(0x0029, 0x1008), NULL, "NO CREATOR");
    o_str(&o, DCM_TAG(0x0029, 0x1108), NULL, "IMAGE NUM 4");
    o_el(&o, DCM_TAG(0x0029, 0x1110), NULL, "\x01\x02", 2);
    /* An item does not see its parent's creators. */
    o_header(&o, DCM_TAG(0x0040, 0x0275), NULL, DCM_UNDEFINED_LENGTH);
    o_item(&o, DCM_UNDEFINED_LENGTH);
    o_str(&o, DCM_TAG(0x0029, 0x1108), NULL, "X");
    o_item_end(&o);
    o_seq_end(&o);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);

    assert_int_equal(get(f->dataset, DCM_TAG(0x0029, 0x0011))->vr, DCM_VR_LO);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0029, 0x1008))->vr, DCM_VR_UN);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0029, 0x1108))->vr, DCM_VR_CS);
    assert_true(get(f->dataset, DCM_TAG(0x0029, 0x1108))->flags &
                DCM_ELEMENT_VR_FROM_DICTIONARY);
    assert_int_equal(get(f->dataset, DCM_TAG(0x0029, 0x1110))->vr, DCM_VR_OB);
    sq = get(f->dataset, DCM_TAG(0x0040, 0x0275));
    assert_int_equal(get(sq->items[0], DCM_TAG(0x0029, 0x1108))->vr, DCM_VR_UN);
    dcm_file_destroy(f);
    out_free(&o);
}

/* --- pixel data, stop and bulk ---------------------------------------------------------- */

static void build_encapsulated(out_t *o)
{
    o_part10(o, "1.2.840.10008.1.2.4.50");
    o_str(o, DCM_TAG(0x0008, 0x0060), "CS", "US");
    o_us(o, DCM_TAG(0x0028, 0x0010), "US", 2);
    o_el(o, DCM_TAG_EXTENDED_OFFSET_TABLE, "OV", "\0\0\0\0\0\0\0\0", 8);
    o_header(o, DCM_TAG_PIXEL_DATA, "OB", DCM_UNDEFINED_LENGTH);
    o_item(o, 8);
    o_bytes(o, "\0\0\0\0\x0C\0\0\0", 8);
    o_item(o, 4);
    o_bytes(o, "\xFF\xD8\xFF\xD9", 4);
    o_item(o, 6);
    o_bytes(o, "abcdef", 6);
    o_seq_end(o);
}

static void test_encapsulated_pixel_data(void **state)
{
    out_t o = out_new(true, false);
    dcm_read_options opts = { 0 };
    const dcm_element *px;
    dcm_source *src;
    dcm_file *f;
    cp_error err;
    cp_buf value = CP_BUF_INIT;

    (void)state;
    build_encapsulated(&o);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_true(f->transfer_syntax->encapsulated);
    assert_int_equal(get(f->dataset, DCM_TAG_EXTENDED_OFFSET_TABLE)->vr, DCM_VR_OV);
    px = get(f->dataset, DCM_TAG_PIXEL_DATA);
    assert_true(px->flags & DCM_ELEMENT_ENCAPSULATED);
    assert_true(px->flags & DCM_ELEMENT_UNDEFINED_LENGTH);
    assert_int_equal(px->vr, DCM_VR_OB);
    assert_int_equal(px->fragment_count, 3);
    assert_int_equal(px->fragments[0].length, 8);
    assert_memory_equal(px->fragments[0].data, "\0\0\0\0\x0C\0\0\0", 8);
    assert_int_equal(px->fragments[1].length, 4);
    assert_memory_equal(o.b + px->fragments[1].offset, "\xFF\xD8\xFF\xD9", 4);
    assert_memory_equal(px->fragments[2].data, "abcdef", 6);
    assert_int_equal(px->value_length, 8 + 8 + 8 + 4 + 8 + 6 + 8);
    dcm_file_destroy(f);

    /* Fragments above the threshold stay in the source. */
    opts.bulk_threshold = 5;
    src = dcm_source_from_memory(o.b, o.n);
    assert_int_equal(dcm_file_read(src, &opts, &f, &err), CP_OK);
    px = get(f->dataset, DCM_TAG_PIXEL_DATA);
    assert_null(px->fragments[0].data);
    assert_non_null(px->fragments[1].data);
    assert_null(px->fragments[2].data);
    assert_int_equal(px->fragments[2].length, 6);
    assert_int_equal(dcm_element_read_value(px, src, &value, &err), CP_OK);
    assert_int_equal(value.len, px->value_length);
    assert_memory_equal(value.data + value.len - 14, "abcdef", 6);
    dcm_file_destroy(f);
    dcm_source_destroy(src);
    cp_buf_free(&value);
    out_free(&o);
}

static void test_stop_before_pixel_data(void **state)
{
    out_t o = out_new(true, false);
    dcm_read_options opts = { .stop_before = DCM_TAG_PIXEL_DATA };
    dcm_source *src;
    dcm_file *f;
    cp_error err;
    uint8_t tag[4];

    (void)state;
    build_encapsulated(&o);
    src = dcm_source_from_memory(o.b, o.n);
    assert_int_equal(dcm_file_read(src, &opts, &f, &err), CP_OK);
    assert_true(f->flags & DCM_FILE_STOPPED);
    assert_null(dcm_dataset_get(f->dataset, DCM_TAG_PIXEL_DATA));
    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG_EXTENDED_OFFSET_TABLE));
    assert_int_equal(dcm_source_read_exact(src, tag, 4), CP_OK);
    assert_memory_equal(tag, "\xE0\x7F\x10\x00", 4);
    dcm_file_destroy(f);
    dcm_source_destroy(src);

    opts.stop_before = DCM_TAG(0x0028, 0x0000);
    assert_int_equal(read_out(&o, &opts, &f, &err), CP_OK);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_bulk_threshold_and_read_value(void **state)
{
    out_t o = out_new(true, false);
    dcm_read_options opts = { .bulk_threshold = 16 };
    uint8_t pixels[1000];
    const dcm_element *el;
    cp_buf value = CP_BUF_INIT;
    stream_ctx ctx;
    dcm_source *src;
    dcm_file *f;
    cp_error err;

    (void)state;
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)i;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_el(&o, DCM_TAG_PIXEL_DATA, "OW", pixels, sizeof pixels);

    src = dcm_source_from_memory(o.b, o.n);
    assert_int_equal(dcm_file_read(src, &opts, &f, &err), CP_OK);
    el = get(f->dataset, DCM_TAG_PIXEL_DATA);
    assert_true(el->flags & DCM_ELEMENT_NOT_LOADED);
    assert_null(el->value);
    assert_int_equal(el->value_length, 1000);
    assert_int_equal(dcm_element_read_value(el, src, &value, &err), CP_OK);
    assert_int_equal(value.len, 1000);
    assert_memory_equal(value.data, pixels, 1000);
    el = get(f->dataset, DCM_TAG(0x0008, 0x0060));
    assert_int_equal(dcm_element_read_value(el, src, &value, &err), CP_OK);
    assert_int_equal(value.len, 2);
    dcm_file_destroy(f);
    dcm_source_destroy(src);

    /* A source that cannot read again loads everything. */
    ctx = (stream_ctx){ o.b, o.n, 0 };
    src = dcm_source_create(&stream_ops, &ctx);
    assert_int_equal(dcm_file_read(src, &opts, &f, &err), CP_OK);
    el = get(f->dataset, DCM_TAG_PIXEL_DATA);
    assert_false(el->flags & DCM_ELEMENT_NOT_LOADED);
    assert_memory_equal(el->value, pixels, 1000);
    dcm_file_destroy(f);
    dcm_source_destroy(src);
    cp_buf_free(&value);
    out_free(&o);
}

/* --- deflate ----------------------------------------------------------------------- */

static void deflate_into(out_t *dst, const out_t *src, int window_bits)
{
    z_stream zs;
    uint8_t *buf = malloc(src->n + 1024);

    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    zs.next_in = src->b;
    zs.avail_in = (uInt)src->n;
    zs.next_out = buf;
    zs.avail_out = (uInt)(src->n + 1024);
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    o_bytes(dst, buf, zs.total_out);
    deflateEnd(&zs);
    free(buf);
}

static void test_deflated(void **state)
{
    static const int window_bits[] = { -15, 15 };
    out_t body = out_new(true, false);

    (void)state;
    o_str(&body, DCM_TAG(0x0008, 0x0060), "CS", "OT");
    o_header(&body, DCM_TAG(0x0008, 0x1115), "SQ", DCM_UNDEFINED_LENGTH);
    o_item(&body, DCM_UNDEFINED_LENGTH);
    o_str(&body, DCM_TAG(0x0008, 0x1150), "UI", "1.2.3");
    o_item_end(&body);
    o_seq_end(&body);
    for (int i = 0; i < 300; i++)
        o_str(&body, DCM_TAG(0x0009, 0x1000 + i), "LO", "some repeated text here");
    o_str(&body, DCM_TAG(0x0010, 0x0010), "PN", "Deflated^Patient");

    for (size_t w = 0; w < 2; w++) {
        out_t o = out_new(true, false);
        dcm_read_options opts = { .bulk_threshold = 4 };
        const dcm_element *el;
        dcm_file *f;
        cp_error err;

        o_part10(&o, "1.2.840.10008.1.2.1.99");
        deflate_into(&o, &body, window_bits[w]);
        if (read_out(&o, &opts, &f, &err) != CP_OK) {
            char m[300];
            fail_msg("%s", cp_error_format(&err, m, sizeof m));
        }
        assert_true(f->transfer_syntax->deflated);
        assert_int_equal(dcm_dataset_count(f->dataset), 303);
        el = get(f->dataset, DCM_TAG(0x0010, 0x0010));
        assert_false(el->flags & DCM_ELEMENT_NOT_LOADED);
        assert_true(el->flags & DCM_ELEMENT_INFLATED);
        assert_string_value(el, 0, "Deflated^Patient");
        assert_int_equal(get(f->dataset, DCM_TAG(0x0008, 0x1115))->item_count, 1);
        dcm_file_destroy(f);

        /* Cut the compressed stream: a partial tree and an error. */
        o.n -= 40;
        assert_int_equal(read_out(&o, &opts, &f, &err), CP_ERR_TRUNCATED);
        assert_true(f->flags & DCM_FILE_PARTIAL);
        assert_true(dcm_dataset_count(f->dataset) > 1);
        dcm_file_destroy(f);
        out_free(&o);
    }
    out_free(&body);
}

/* --- meta group and syntax detection --------------------------------------------------- */

static void test_ts_mismatch(void **state)
{
    out_t o = out_new(false, false);
    dcm_file *f;
    cp_error err;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_str(&o, DCM_TAG(0x0008, 0x0060), NULL, "CT");
    o_str(&o, DCM_TAG(0x0010, 0x0010), NULL, "Implicit^Really");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_true(f->flags & DCM_FILE_TS_MISMATCH);
    assert_ptr_equal(f->transfer_syntax, &dcm_ts_implicit_le);
    assert_string_value(get(f->dataset, DCM_TAG(0x0010, 0x0010)), 0, "Implicit^Really");
    dcm_file_destroy(f);
    out_free(&o);

    o = out_new(true, false);
    o_part10(&o, "1.2.840.10008.1.2");
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "Explicit^Really");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_true(f->flags & DCM_FILE_TS_MISMATCH);
    assert_ptr_equal(f->transfer_syntax, &dcm_ts_explicit_le);
    assert_string_value(get(f->dataset, DCM_TAG(0x0010, 0x0010)), 0, "Explicit^Really");
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_bare_datasets(void **state)
{
    static const struct { bool explicit_vr, be; const dcm_transfer_syntax *ts; } cases[] = {
        { false, false, &dcm_ts_implicit_le },
        { true, false, &dcm_ts_explicit_le },
        { true, true, &dcm_ts_explicit_be },
    };

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        out_t o = out_new(cases[i].explicit_vr, cases[i].be);
        dcm_read_options opts = { 0 };
        dcm_file *f;
        cp_error err;

        o_str(&o, DCM_TAG(0x0008, 0x0005), "CS", "ISO_IR 100");
        o_us(&o, DCM_TAG(0x0028, 0x0011), "US", 256);
        assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
        assert_true(f->flags & DCM_FILE_NO_META);
        assert_null(f->meta);
        assert_ptr_equal(f->transfer_syntax, cases[i].ts);
        assert_int_equal(dcm_dataset_count(f->dataset), 2);
        dcm_file_destroy(f);

        opts.no_meta = true;
        opts.assume_ts = cases[i].ts;
        assert_int_equal(read_out(&o, &opts, &f, &err), CP_OK);
        assert_ptr_equal(f->transfer_syntax, cases[i].ts);
        assert_int_equal(dcm_dataset_count(f->dataset), 2);
        dcm_file_destroy(f);
        out_free(&o);
    }
}

static void test_meta_group_too_large(void **state)
{
    out_t o = out_new(true, false);
    uint8_t *blob = calloc(1, DCM_META_GROUP_MAX);
    dcm_file *f;
    cp_error err;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_el(&o, DCM_TAG(0x0002, 0x0102), "OB", blob, DCM_META_GROUP_MAX);
    o_str(&o, DCM_TAG(0x0002, 0x0103), "UI", "1.2");
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_LIMIT);
    assert_int_equal(err.tag, DCM_TAG(0x0002, 0x0103));
    assert_true(f->flags & DCM_FILE_PARTIAL);
    dcm_file_destroy(f);
    free(blob);
    out_free(&o);
}

static void test_meta_variants(void **state)
{
    out_t o = out_new(true, false);
    out_t nopre = out_new(true, false);
    dcm_file *f;
    cp_error err;

    (void)state;
    o_part10(&o, "1.2.840.10008.1.2.1");
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");

    /* "DICM" without a preamble, then the meta group without either. */
    o_bytes(&nopre, o.b + 128, o.n - 128);
    assert_int_equal(read_out(&nopre, NULL, &f, &err), CP_OK);
    assert_true(f->flags & DCM_FILE_NO_PREAMBLE);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    nopre.n = 0;
    o_bytes(&nopre, o.b + 132, o.n - 132);
    assert_int_equal(read_out(&nopre, NULL, &f, &err), CP_OK);
    assert_non_null(f->meta);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);

    /* The group length lies, both ways: the group is read while it is 0002. */
    o.b[140] = 0xF0;
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_int_equal(dcm_dataset_count(f->meta), 5);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    o.b[140] = 2;
    o.b[141] = 0;
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_int_equal(dcm_dataset_count(f->meta), 5);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    out_free(&o);
    out_free(&nopre);
}

/* --- malformed input --------------------------------------------------------------------- */

static void test_truncated_value(void **state)
{
    out_t o = out_new(true, false);
    cp_buf value = CP_BUF_INIT;
    const dcm_element *el;
    stream_ctx ctx;
    dcm_source *src;
    dcm_file *f;
    cp_error err;
    char msg[400];

    (void)state;
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_header(&o, DCM_TAG(0x0010, 0x0010), "PN", 70);
    o_bytes(&o, "Doe^John", 8);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_TRUNCATED);
    assert_int_equal(err.offset, 10);
    assert_int_equal(err.tag, DCM_TAG(0x0010, 0x0010));
    assert_string_equal(err.detail, "value length 70 exceeds the 8 bytes left");
    cp_error_format(&err, msg, sizeof msg);
    assert_non_null(strstr(msg, "(0010,0010)"));
    assert_true(f->flags & DCM_FILE_PARTIAL);
    el = get(f->dataset, DCM_TAG(0x0010, 0x0010));
    assert_true(el->flags & DCM_ELEMENT_TRUNCATED);
    assert_int_equal(el->value_length, 8);
    assert_memory_equal(el->value, "Doe^John", 8);
    cp_error_clear(&err);
    assert_int_equal(dcm_element_read_value(el, NULL, &value, &err), CP_ERR_TRUNCATED);
    assert_int_equal(value.len, 8);
    cp_buf_free(&value);
    dcm_file_destroy(f);

    /* The same from a stream whose size is unknown. */
    ctx = (stream_ctx){ o.b, o.n, 0 };
    src = dcm_source_create(&stream_ops, &ctx);
    cp_error_clear(&err);
    assert_int_equal(dcm_file_read(src, NULL, &f, &err), CP_ERR_TRUNCATED);
    assert_int_equal(err.tag, DCM_TAG(0x0010, 0x0010));
    el = get(f->dataset, DCM_TAG(0x0010, 0x0010));
    assert_true(el->flags & DCM_ELEMENT_TRUNCATED);
    assert_int_equal(el->value_length, 8);
    dcm_file_destroy(f);
    dcm_source_destroy(src);

    /* A header cut short, and the end inside a sequence. */
    o.n = 14;
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_TRUNCATED);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    out_free(&o);

    o = out_new(true, false);
    o_header(&o, DCM_TAG(0x0008, 0x1115), "SQ", DCM_UNDEFINED_LENGTH);
    o_item(&o, DCM_UNDEFINED_LENGTH);
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_TRUNCATED);
    el = get(f->dataset, DCM_TAG(0x0008, 0x1115));
    assert_int_equal(el->item_count, 1);
    assert_int_equal(dcm_dataset_count(el->items[0]), 1);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_length_beyond_limits(void **state)
{
    out_t o = out_new(true, false);
    stream_ctx ctx;
    dcm_source *src;
    dcm_file *f;
    cp_error err;

    (void)state;
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_header(&o, DCM_TAG(0x0009, 0x1001), "OB", DCM_VALUE_LOAD_MAX + 2u);
    o_bytes(&o, "xx", 2);

    /* A forward-only source cannot leave it unloaded: refused before allocating. */
    ctx = (stream_ctx){ o.b, o.n, 0 };
    src = dcm_source_create(&stream_ops, &ctx);
    cp_error_clear(&err);
    assert_int_equal(dcm_file_read(src, NULL, &f, &err), CP_ERR_LIMIT);
    assert_int_equal(err.tag, DCM_TAG(0x0009, 0x1001));
    assert_true(f->flags & DCM_FILE_PARTIAL);
    dcm_file_destroy(f);
    dcm_source_destroy(src);

    /* From memory the length is checked against the bytes left. */
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_TRUNCATED);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_depth_bomb(void **state)
{
    out_t o = out_new(true, false);
    dcm_file *f;
    cp_error err;

    (void)state;
    for (int i = 0; i < 100; i++) {
        o_header(&o, DCM_TAG(0x0008, 0x1115), "SQ", DCM_UNDEFINED_LENGTH);
        o_item(&o, DCM_UNDEFINED_LENGTH);
    }
    for (int i = 0; i < 100; i++) {
        o_item_end(&o);
        o_seq_end(&o);
    }
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_LIMIT);
    assert_non_null(f);
    assert_true(f->flags & DCM_FILE_PARTIAL);
    assert_int_equal(dcm_dataset_count(f->dataset), 1);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_garbage_and_empty(void **state)
{
    out_t o = out_new(true, false);
    uint8_t junk[4096];
    uint32_t seed = 12345;
    dcm_file *f;
    cp_error err;

    (void)state;
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_MALFORMED);
    assert_null(f);

    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)round * 20 % sizeof junk;
        dcm_read_options opts = { .no_meta = round & 1, .bulk_threshold = 8 };

        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = (uint8_t)(seed >> 16);
        }
        o.n = 0;
        o_bytes(&o, junk, n);
        f = NULL;
        read_out(&o, &opts, &f, &err);
        dcm_file_destroy(f);
    }
    out_free(&o);
}

static void test_stray_delimiters(void **state)
{
    out_t o = out_new(true, false);
    dcm_file *f;
    cp_error err;

    (void)state;
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_item_end(&o);
    o_seq_end(&o);
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "A");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);
    assert_true(f->flags & DCM_FILE_STRAY_DELIMITER);
    assert_int_equal(dcm_dataset_count(f->dataset), 2);
    dcm_file_destroy(f);

    o_item(&o, 0);
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_ERR_MALFORMED);
    assert_int_equal(err.tag, DCM_TAG_ITEM);
    dcm_file_destroy(f);
    out_free(&o);
}

static void test_out_of_order_and_strings(void **state)
{
    out_t o = out_new(true, false);
    const dcm_element *el;
    dcm_file *f;
    cp_error err;
    char small[4];
    const char *text;
    size_t len;

    (void)state;
    o_str(&o, DCM_TAG(0x0020, 0x0013), "IS", " 12\\ 7 ");
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_str(&o, DCM_TAG(0x0010, 0x0010), "PN", "Long^Name");
    o_header(&o, DCM_TAG(0x0010, 0x0020), "LO", 0);
    o_str(&o, DCM_TAG(0x0010, 0x0030), "DA", "    ");
    o_el(&o, DCM_TAG(0x0020, 0x000D), "UI", "1.2\0", 4);
    o_str(&o, DCM_TAG(0x0008, 0x0018), "UI", "9.8");
    assert_int_equal(read_out(&o, NULL, &f, &err), CP_OK);

    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0008, 0x0060)));
    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0020, 0x0013)));
    assert_non_null(dcm_dataset_get(f->dataset, DCM_TAG(0x0008, 0x0018)));
    el = get(f->dataset, DCM_TAG(0x0020, 0x0013));
    assert_int_equal(dcm_element_string_count(el), 2);
    assert_string_value(el, 0, "12");
    assert_string_value(el, 1, "7");
    assert_int_equal(dcm_element_get_string(el, 2, &text, &len), CP_ERR_NOT_FOUND);
    assert_string_value(get(f->dataset, DCM_TAG(0x0020, 0x000D)), 0, "1.2");
    assert_int_equal(dcm_element_string_count(get(f->dataset, DCM_TAG(0x0010, 0x0020))), 0);
    assert_int_equal(dcm_element_string_count(get(f->dataset, DCM_TAG(0x0010, 0x0030))), 0);
    assert_int_equal(dcm_dataset_get_string(f->dataset, DCM_TAG(0x0010, 0x0020), small,
                                            sizeof small), CP_ERR_NOT_FOUND);
    assert_int_equal(dcm_dataset_get_string(f->dataset, DCM_TAG(0x0010, 0x0010), small,
                                            sizeof small), CP_OK);
    assert_string_equal(small, "Lon");
    assert_int_equal(dcm_dataset_get_string(f->dataset, DCM_TAG(0x0040, 0x0010), small,
                                            sizeof small), CP_ERR_NOT_FOUND);
    dcm_file_destroy(f);
    out_free(&o);
}

/* --- the pull parser on its own ----------------------------------------------------------- */

static void test_parser_events(void **state)
{
    static const dcm_event_type expect[] = {
        DCM_EVENT_ELEMENT, DCM_EVENT_SEQUENCE_BEGIN, DCM_EVENT_ITEM_BEGIN,
        DCM_EVENT_ELEMENT, DCM_EVENT_ITEM_END, DCM_EVENT_SEQUENCE_END,
        DCM_EVENT_SEQUENCE_BEGIN, DCM_EVENT_FRAGMENT, DCM_EVENT_FRAGMENT,
        DCM_EVENT_SEQUENCE_END, DCM_EVENT_END,
    };
    out_t o = out_new(true, false);
    dcm_parser_options popts = { .explicit_vr = true };
    dcm_parser *p;
    dcm_source *src;
    dcm_event ev;
    cp_error err;
    uint8_t buf[4];
    size_t got;

    (void)state;
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "CT");
    o_header(&o, DCM_TAG(0x0008, 0x1115), "SQ", DCM_UNDEFINED_LENGTH);
    o_item(&o, 10);
    o_str(&o, DCM_TAG(0x0008, 0x0060), "CS", "MR");
    o_seq_end(&o);
    o_header(&o, DCM_TAG_PIXEL_DATA, "OB", DCM_UNDEFINED_LENGTH);
    o_item(&o, 0);
    o_item(&o, 4);
    o_bytes(&o, "wxyz", 4);
    o_seq_end(&o);

    src = dcm_source_from_memory(o.b, o.n);
    assert_int_equal(dcm_parser_create(src, &popts, &p), CP_OK);
    cp_error_clear(&err);
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        assert_int_equal(dcm_parser_next(p, &ev, &err), CP_OK);
        assert_int_equal(ev.type, expect[i]);
        if (i == 3) {
            assert_int_equal(ev.depth, 1);
            assert_int_equal(dcm_parser_read_value(p, buf, 1, &got, &err), CP_OK);
            assert_int_equal(dcm_parser_value_left(p), 1);
        }
        if (i == 8) {
            assert_int_equal(dcm_parser_read_value(p, buf, 4, &got, &err), CP_OK);
            assert_int_equal(got, 4);
            assert_memory_equal(buf, "wxyz", 4);
        }
    }
    assert_int_equal(dcm_parser_next(p, &ev, &err), CP_OK);
    assert_int_equal(ev.type, DCM_EVENT_END);
    dcm_parser_destroy(p);
    dcm_source_destroy(src);
    out_free(&o);
}

/* --- out of memory ---------------------------------------------------------------------- */

static void test_allocation_failures(void **state)
{
    out_t o = out_new(true, false);
    dcm_file *f;
    cp_error err;
    cp_status st;

    (void)state;
    build_encapsulated(&o);
    o_header(&o, DCM_TAG(0xFFFA, 0xFFFA), "SQ", DCM_UNDEFINED_LENGTH);
    o_item(&o, DCM_UNDEFINED_LENGTH);
    o_str(&o, DCM_TAG(0x0009, 0x0010), "LO", "CREATOR");
    o_item_end(&o);
    o_seq_end(&o);

    for (long n = 0; n < 40; n++) {
        dcm_source *src = dcm_source_from_memory(o.b, o.n);

        if (src == NULL)
            continue;
        cp_error_clear(&err);
        cp_alloc_fail_after(n);
        st = dcm_file_read(src, NULL, &f, &err);
        cp_alloc_fail_after(-1);
        assert_true(st == CP_OK || st == CP_ERR_NOMEM);
        dcm_file_destroy(f);
        dcm_source_destroy(src);
    }
    out_free(&o);
}

/* --- pydicom's test files ----------------------------------------------------------------- */

/* Files that are broken on purpose or are not DICOM at all. */
static const char *const known_broken[] = {
    "test_files/MR_truncated.dcm",          /* pixel data cut short */
    "test_files/rtplan_truncated.dcm",      /* cut in the middle of a value */
    "test_files/no_meta.dcm",               /* a stray byte shifts every tag */
    "test_files/dicomdirtests/DICOMDIR-nooffset", /* last item runs past the end */
    "test_files/README.txt",
    "test_files/rtplan.dump",
    "test_files/rtstruct.dump",
    "test_files/test1.json",
    "test_files/test_PN.json",
    "test_files/zipMR.gz",
    "test_files/dicomdirtests/README.txt",
    "test_files/dicomdirtests/TINY_ALPHA/README",
    "charset_files/FileInfo.txt",
};

static bool is_known_broken(const char *rel)
{
    for (size_t i = 0; i < sizeof known_broken / sizeof known_broken[0]; i++) {
        if (strcmp(rel, known_broken[i]) == 0)
            return true;
    }
    return false;
}

static void read_one_pydicom_file(const char *path, const char *rel, unsigned *count)
{
    dcm_read_options opts = { .bulk_threshold = 64 };
    bool broken = is_known_broken(rel);
    dcm_source *src;
    dcm_file *f = NULL;
    cp_error err;
    cp_status st;
    char msg[400];

    cp_error_clear(&err);
    assert_int_equal(dcm_source_open_file(path, &src, &err), CP_OK);
    st = dcm_file_read(src, &opts, &f, &err);
    if (broken && st == CP_OK)
        fail_msg("%s read without error but is known to be broken", rel);
    if (!broken && st != CP_OK)
        fail_msg("%s: %s", rel, cp_error_format(&err, msg, sizeof msg));
    assert_non_null(f);
    assert_non_null(f->dataset);
    if (broken)
        assert_true(f->flags & DCM_FILE_PARTIAL);

    /* Every element can be read back. */
    for (size_t i = 0; i < dcm_dataset_count(f->dataset); i++) {
        const dcm_element *el = dcm_dataset_at(f->dataset, i);
        cp_buf value = CP_BUF_INIT;

        if (el->vr != DCM_VR_SQ) {
            cp_error_clear(&err);
            st = dcm_element_read_value(el, src, &value, &err);
            assert_true(st == CP_OK || (broken && st == CP_ERR_TRUNCATED));
        }
        cp_buf_free(&value);
    }
    dcm_file_destroy(f);
    dcm_source_destroy(src);
    (*count)++;
}

static void read_tree(const char *root, const char *rel, unsigned *count)
{
    char path[1024], child[1024];
    struct dirent *ent;
    struct stat st;
    DIR *dir;

    snprintf(path, sizeof path, "%s/%s", root, rel);
    assert_int_equal(stat(path, &st), 0);
    if (!S_ISDIR(st.st_mode)) {
        read_one_pydicom_file(path, rel, count);
        return;
    }
    dir = opendir(path);
    assert_non_null(dir);
    while ((ent = readdir(dir)) != NULL) {
        if (ent->d_name[0] == '.' || strcmp(ent->d_name, "__pycache__") == 0)
            continue;
        snprintf(child, sizeof child, "%s/%s", rel, ent->d_name);
        read_tree(root, child, count);
    }
    closedir(dir);
}

static void test_pydicom_files(void **state)
{
    unsigned count = 0;
    struct stat st;

    (void)state;
    if (stat(PYDICOM_DATA "/test_files", &st) != 0)
        skip();
    read_tree(PYDICOM_DATA, "test_files", &count);
    read_tree(PYDICOM_DATA, "charset_files", &count);
    assert_true(count > 100);
}

static void test_pydicom_values(void **state)
{
    dcm_read_options opts = { .stop_before = DCM_TAG_PIXEL_DATA };
    const dcm_element *el;
    dcm_file *f;
    cp_error err;
    char text[80];
    uint64_t u;
    double d;

    (void)state;
    cp_error_clear(&err);
    if (dcm_file_read_path(PYDICOM_DATA "/test_files/CT_small.dcm", &opts, &f, &err) != CP_OK)
        skip();
    assert_true(f->flags & DCM_FILE_STOPPED);
    assert_int_equal(dcm_dataset_get_string(f->dataset, DCM_TAG(0x0010, 0x0010), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "CompressedSamples^CT1");
    el = get(f->dataset, DCM_TAG(0x0028, 0x0010));
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_OK);
    assert_int_equal(u, 128);
    dcm_file_destroy(f);

    cp_error_clear(&err);
    assert_int_equal(dcm_file_read_path(PYDICOM_DATA "/test_files/MR_small_bigendian.dcm",
                                        NULL, &f, &err), CP_OK);
    assert_ptr_equal(f->transfer_syntax, &dcm_ts_explicit_be);
    el = get(f->dataset, DCM_TAG(0x0028, 0x0011));
    assert_int_equal(dcm_element_get_uint(f->dataset, el, 0, &u), CP_OK);
    assert_int_equal(u, 64);
    el = get(f->dataset, DCM_TAG(0x0018, 0x0050));
    assert_int_equal(dcm_dataset_get_string(f->dataset, DCM_TAG(0x0018, 0x0050), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "0.8000");
    (void)d;
    dcm_file_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_source),
        cmocka_unit_test(test_file_source_and_sinks),
        cmocka_unit_test(test_stream_source_reads_across_buffer),
        cmocka_unit_test(test_explicit_le_part10),
        cmocka_unit_test(test_implicit_le_vr_from_dictionary),
        cmocka_unit_test(test_us_or_ss_defaults_to_us),
        cmocka_unit_test(test_explicit_be),
        cmocka_unit_test(test_long_header_vrs),
        cmocka_unit_test(test_unknown_vr),
        cmocka_unit_test(test_nested_sequences),
        cmocka_unit_test(test_implicit_sequences),
        cmocka_unit_test(test_un_resolution),
        cmocka_unit_test(test_private_creator_lookup),
        cmocka_unit_test(test_encapsulated_pixel_data),
        cmocka_unit_test(test_stop_before_pixel_data),
        cmocka_unit_test(test_bulk_threshold_and_read_value),
        cmocka_unit_test(test_deflated),
        cmocka_unit_test(test_ts_mismatch),
        cmocka_unit_test(test_bare_datasets),
        cmocka_unit_test(test_meta_variants),
        cmocka_unit_test(test_meta_group_too_large),
        cmocka_unit_test(test_truncated_value),
        cmocka_unit_test(test_length_beyond_limits),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_garbage_and_empty),
        cmocka_unit_test(test_stray_delimiters),
        cmocka_unit_test(test_out_of_order_and_strings),
        cmocka_unit_test(test_parser_events),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_pydicom_files),
        cmocka_unit_test(test_pydicom_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
