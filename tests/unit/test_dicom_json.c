/*
 * test_dicom_json.c - the DICOM JSON writer (json.c, PS3.18 Annex F).
 *
 * Small data sets are built in memory as explicit VR bytes, read back with
 * the data-set reader and written as JSON, whose exact text is checked for
 * each family of VRs. Then every file of pydicom's test data is written and
 * parsed back with jansson, which must accept each document.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/json.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom_bytes.h"

#define PYDICOM_DATA "/usr/lib/python3/dist-packages/pydicom/data/"

/* --- building data sets ------------------------------------------------ */

static uint64_t float_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    return u;
}

static uint64_t double_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

/* --- writing ----------------------------------------------------------- */

static dcm_file *read_bytes(const bytes *b)
{
    dcm_read_options ropts;
    dcm_source *src = dcm_source_from_memory(b->data, b->len);
    dcm_file *file = NULL;
    cp_error err;
    cp_status st;

    assert_non_null(src);
    memset(&ropts, 0, sizeof(ropts));
    ropts.no_meta = true;
    ropts.assume_ts = b->big_endian ? &dcm_ts_explicit_be : &dcm_ts_explicit_le;
    ropts.bulk_threshold = UINT32_MAX;
    cp_error_clear(&err);
    st = dcm_file_read(src, &ropts, &file, &err);
    if (st != CP_OK) {
        char text[400];

        fail_msg("read: %s", cp_error_format(&err, text, sizeof(text)));
    }
    dcm_source_destroy(src);
    return file;
}

/* The JSON of a data set built in b, as a string to cp_free. */
static char *json_of(const bytes *b, const dcm_json_options *opts)
{
    dcm_file *file = read_bytes(b);
    cp_buf out = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&out);
    cp_error err;
    cp_status st;
    size_t len;

    cp_error_clear(&err);
    st = dcm_json_write_dataset(file->dataset, opts, &sink, &err);
    if (st != CP_OK) {
        char text[400];

        fail_msg("json: %s", cp_error_format(&err, text, sizeof(text)));
    }
    dcm_file_destroy(file);
    cp_buf_append_byte(&out, 0);
    return (char *)cp_buf_steal(&out, &len);
}

static void check_json(const bytes *b, const dcm_json_options *opts, const char *expected)
{
    char *json = json_of(b, opts);

    assert_string_equal(json, expected);
    cp_free(json);
}

/* Parses text with jansson; fails the test unless it is one JSON object. */
static void assert_valid_json(const char *name, const char *text, size_t len)
{
    json_error_t error;
    json_t *root;

    root = json_loadb(text, len, 0, &error);
    if (root == NULL)
        fail_msg("%s: invalid JSON at line %d column %d: %s", name, error.line,
                 error.column, error.text);
    assert_true(json_is_object(root));
    json_decref(root);
}

/* --- the VR families --------------------------------------------------- */

static void test_strings(void **state)
{
    bytes b = { .big_endian = false };

    (void)state;
    el_str(&b, 0x0008, 0x0008, "CS", "ORIGINAL\\\\AXIAL");
    el_str(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2");
    el_str(&b, 0x0008, 0x0070, "LO", "  Maker \"A\"  ");
    el_str(&b, 0x0008, 0x0080, "LO", "");
    el_str(&b, 0x0008, 0x0081, "ST", "  line1\r\nline2\ttab\\x ");
    el_str(&b, 0x0010, 0x1000, "LO", "   ");
    el_str(&b, 0x0018, 0x1030, "LO", "\\");
    check_json(&b, NULL,
               "{\"00080008\":{\"vr\":\"CS\",\"Value\":[\"ORIGINAL\",null,\"AXIAL\"]},"
               "\"00080016\":{\"vr\":\"UI\",\"Value\":[\"1.2.840.10008.5.1.4.1.1.2\"]},"
               "\"00080070\":{\"vr\":\"LO\",\"Value\":[\"Maker \\\"A\\\"\"]},"
               "\"00080080\":{\"vr\":\"LO\"},"
               "\"00080081\":{\"vr\":\"ST\",\"Value\":"
               "[\"  line1\\r\\nline2\\ttab\\\\x\"]},"
               "\"00101000\":{\"vr\":\"LO\"},"
               "\"00181030\":{\"vr\":\"LO\",\"Value\":[null,null]}}");
}

static void test_person_name_gb18030(void **state)
{
    static const uint8_t name[] = "Wang^XiaoDong=\xCD\xF5^\xD0\xA1\xB6\xAB=";
    static const uint8_t names[] = "A^B\\\\=\xCD\xF5=ph ";
    bytes b = { .big_endian = false };

    (void)state;
    el_str(&b, 0x0008, 0x0005, "CS", "GB18030");
    el_raw(&b, 0x0010, 0x0010, "PN", name, sizeof(name) - 1);
    el_raw(&b, 0x0010, 0x1001, "PN", names, sizeof(names) - 1);
    check_json(&b, NULL,
               "{\"00080005\":{\"vr\":\"CS\",\"Value\":[\"GB18030\"]},"
               "\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Wang^XiaoDong\","
               "\"Ideographic\":\"\xE7\x8E\x8B^\xE5\xB0\x8F\xE4\xB8\x9C\"}]},"
               "\"00101001\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"A^B\"},null,"
               "{\"Ideographic\":\"\xE7\x8E\x8B\",\"Phonetic\":\"ph\"}]}}");
}

static void test_decimal_and_integer_strings(void **state)
{
    bytes b = { .big_endian = false };

    (void)state;
    el_str(&b, 0x0018, 0x0050, "DS", "1.50\\+.5\\ 007 \\-1.\\2E3\\abc\\1e999\\");
    el_str(&b, 0x0020, 0x0013, "IS", "+12\\-0003\\99999999999999999999 ");
    check_json(&b, NULL,
               "{\"00180050\":{\"vr\":\"DS\",\"Value\":"
               "[1.50,0.5,7,-1,2E3,\"abc\",\"1e999\",null]},"
               "\"00200013\":{\"vr\":\"IS\",\"Value\":[12,-3,\"99999999999999999999\"]}}");
}

static void test_binary_numbers(void **state)
{
    static const uint64_t us[] = { 0, 65535 };
    static const uint64_t ss[] = { 0xFFFF };
    static const uint64_t ul[] = { 4000000000u };
    static const uint64_t sl[] = { 0xFFFFFFFEu };
    static const uint64_t at[] = { 0x00100010, 0x7FE00010 };
    uint64_t fl[] = { float_bits(0.5f), float_bits(0.1f), float_bits(NAN) };
    uint64_t fd[] = { double_bits(1.0 / 3), double_bits(-INFINITY), double_bits(1e300) };
    uint64_t uv[] = { 1ull << 53, (1ull << 53) + 1 };
    uint64_t sv[] = { (uint64_t)-5ll, (uint64_t)-((1ll << 53) + 1) };
    bytes b = { .big_endian = false };

    (void)state;
    el_nums(&b, 0x0018, 0x9219, "SS", 2, ss, 1);
    /* AT values are two 16-bit halves, group first. */
    header(&b, 0x0028, 0x0009, "AT", 8);
    for (size_t i = 0; i < 2; i++) {
        put_uint(&b, at[i] >> 16, 2);
        put_uint(&b, at[i] & 0xFFFF, 2);
    }
    el_nums(&b, 0x0028, 0x0010, "US", 2, us, 2);
    el_nums(&b, 0x0040, 0x9210, "SL", 4, sl, 1);
    el_nums(&b, 0x0040, 0x9211, "UL", 4, ul, 1);
    el_nums(&b, 0x0072, 0x0074, "FD", 8, fd, 3);
    el_nums(&b, 0x0072, 0x0076, "FL", 4, fl, 3);
    el_nums(&b, 0x0072, 0x0082, "SV", 8, sv, 2);
    el_nums(&b, 0x0072, 0x0083, "UV", 8, uv, 2);
    el_nums(&b, 0x0072, 0x0084, "US", 2, us, 0);
    check_json(&b, NULL,
               "{\"00189219\":{\"vr\":\"SS\",\"Value\":[-1]},"
               "\"00280009\":{\"vr\":\"AT\",\"Value\":[\"00100010\",\"7FE00010\"]},"
               "\"00280010\":{\"vr\":\"US\",\"Value\":[0,65535]},"
               "\"00409210\":{\"vr\":\"SL\",\"Value\":[-2]},"
               "\"00409211\":{\"vr\":\"UL\",\"Value\":[4000000000]},"
               "\"00720074\":{\"vr\":\"FD\",\"Value\":"
               "[0.3333333333333333,\"-Infinity\",1e+300]},"
               "\"00720076\":{\"vr\":\"FL\",\"Value\":"
               "[0.5,0.10000000149011612,\"NaN\"]},"
               "\"00720082\":{\"vr\":\"SV\",\"Value\":[-5,\"-9007199254740993\"]},"
               "\"00720083\":{\"vr\":\"UV\",\"Value\":[9007199254740992,"
               "\"9007199254740993\"]},"
               "\"00720084\":{\"vr\":\"US\"}}");
}

static void test_sequences(void **state)
{
    bytes b = { .big_endian = false };

    (void)state;
    seq_begin(&b, 0x0008, 0x1110);
    item_begin(&b);
    el_str(&b, 0x0008, 0x1150, "UI", "1.2.3");
    seq_begin(&b, 0x0040, 0xA730);
    item_begin(&b);
    el_str(&b, 0x0040, 0xA010, "CS", "CONTAINS");
    item_end(&b);
    item_begin(&b);
    item_end(&b);
    seq_end(&b);
    item_end(&b);
    seq_end(&b);
    seq_begin(&b, 0x0008, 0x1115);
    seq_end(&b);
    el_str(&b, 0x0010, 0x0020, "LO", "ID1");
    check_json(&b, NULL,
               "{\"00081110\":{\"vr\":\"SQ\",\"Value\":[{"
               "\"00081150\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]},"
               "\"0040A730\":{\"vr\":\"SQ\",\"Value\":[{"
               "\"0040A010\":{\"vr\":\"CS\",\"Value\":[\"CONTAINS\"]}},{}]}}]},"
               "\"00081115\":{\"vr\":\"SQ\"},"
               "\"00100020\":{\"vr\":\"LO\",\"Value\":[\"ID1\"]}}");
}

static void test_pretty(void **state)
{
    dcm_json_options opts = { .inline_max = 64, .pretty = true, .skip_group_length = true };
    bytes b = { .big_endian = false };

    (void)state;
    seq_begin(&b, 0x0008, 0x1110);
    item_begin(&b);
    el_str(&b, 0x0008, 0x1150, "UI", "1.2");
    item_end(&b);
    item_begin(&b);
    item_end(&b);
    seq_end(&b);
    el_str(&b, 0x0010, 0x0010, "PN", "A^B");
    check_json(&b, &opts,
               "{\n"
               "  \"00081110\": {\n"
               "    \"vr\": \"SQ\",\n"
               "    \"Value\": [\n"
               "      {\n"
               "        \"00081150\": {\n"
               "          \"vr\": \"UI\",\n"
               "          \"Value\": [\n"
               "            \"1.2\"\n"
               "          ]\n"
               "        }\n"
               "      },\n"
               "      {}\n"
               "    ]\n"
               "  },\n"
               "  \"00100010\": {\n"
               "    \"vr\": \"PN\",\n"
               "    \"Value\": [\n"
               "      {\n"
               "        \"Alphabetic\": \"A^B\"\n"
               "      }\n"
               "    ]\n"
               "  }\n"
               "}");
}

static void test_inline_binary(void **state)
{
    static const uint8_t ob[] = { 0x01, 0x02, 0x03, 0x04 };
    static const uint8_t ow[] = { 0x01, 0x02, 0x03, 0x04, 0xFF, 0xFE };
    dcm_json_options opts = { .inline_max = 64, .skip_group_length = true };
    bytes b = { .big_endian = false };

    (void)state;
    el_raw(&b, 0x0009, 0x0010, "LO", "ACME", 4);
    el_raw(&b, 0x0009, 0x1001, "OB", ob, 3 + 1);
    el_raw(&b, 0x0009, 0x1002, "UN", ob, 2);
    el_raw(&b, 0x0009, 0x1003, "OB", ob, 0);
    el_raw(&b, 0x7FE0, 0x0010, "OW", ow, sizeof(ow));
    check_json(&b, &opts,
               "{\"00090010\":{\"vr\":\"LO\",\"Value\":[\"ACME\"]},"
               "\"00091001\":{\"vr\":\"OB\",\"InlineBinary\":\"AQIDBA==\"},"
               "\"00091002\":{\"vr\":\"UN\",\"InlineBinary\":\"AQI=\"},"
               "\"00091003\":{\"vr\":\"OB\"},"
               "\"7FE00010\":{\"vr\":\"OW\",\"InlineBinary\":\"AQIDBP/+\"}}");
}

/* OW and OF values of a big endian data set are inlined in little endian (F.2.7). */
static void test_big_endian_binary(void **state)
{
    static const uint8_t ow_be[] = { 0x01, 0x02, 0x03, 0x04, 0xFF, 0xFE };
    static const uint8_t of_be[] = { 0x3F, 0x80, 0x00, 0x00 };
    static const uint64_t us[] = { 0x0102 };
    bytes b = { .big_endian = true };

    (void)state;
    el_nums(&b, 0x0028, 0x0100, "US", 2, us, 1);
    el_raw(&b, 0x0029, 0x1001, "OB", ow_be, 4);
    el_raw(&b, 0x0029, 0x1002, "OF", of_be, sizeof(of_be));
    el_raw(&b, 0x7FE0, 0x0010, "OW", ow_be, sizeof(ow_be));
    /* 02 01 04 03 FE FF; 00 00 80 3F (1.0f little endian) */
    check_json(&b, NULL,
               "{\"00280100\":{\"vr\":\"US\",\"Value\":[258]},"
               "\"00291001\":{\"vr\":\"OB\",\"InlineBinary\":\"AQIDBA==\"},"
               "\"00291002\":{\"vr\":\"OF\",\"InlineBinary\":\"AACAPw==\"},"
               "\"7FE00010\":{\"vr\":\"OW\",\"InlineBinary\":\"AgEEA/7/\"}}");
}

typedef struct hook_record {
    int calls;
    uint32_t path[8];
    size_t depth;
} hook_record;

static cp_status test_hook(void *ctx, const dcm_element *el, const uint32_t *path,
                           size_t depth, cp_buf *uri)
{
    hook_record *rec = ctx;

    rec->calls++;
    rec->depth = depth;
    memcpy(rec->path, path, depth * sizeof(*path));
    if (el->tag == DCM_TAG(0x0009, 0x1002))
        return CP_ERR_NOT_FOUND;
    return cp_buf_appendf(uri, "https://pacs/bulk/%08X?len=%llu&x=\"y\"", (unsigned)el->tag,
                          (unsigned long long)el->value_length);
}

static void test_bulk_data_hook(void **state)
{
    static const uint8_t ob[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    hook_record rec = { 0 };
    dcm_json_options opts = {
        .inline_max = 4, .bulk_uri = test_hook, .bulk_uri_ctx = &rec,
        .skip_group_length = true,
    };
    bytes b = { .big_endian = false };

    (void)state;
    el_raw(&b, 0x0009, 0x1001, "OB", ob, 4);
    el_raw(&b, 0x0009, 0x1002, "OB", ob, 6);
    seq_begin(&b, 0x0040, 0x0275);
    item_begin(&b);
    el_raw(&b, 0x0042, 0x0011, "OB", ob, 8);
    item_end(&b);
    seq_end(&b);
    check_json(&b, &opts,
               "{\"00091001\":{\"vr\":\"OB\",\"InlineBinary\":\"AQIDBA==\"},"
               "\"00091002\":{\"vr\":\"OB\"},"
               "\"00400275\":{\"vr\":\"SQ\",\"Value\":[{\"00420011\":{\"vr\":\"OB\","
               "\"BulkDataURI\":\"https://pacs/bulk/00420011?len=8&x=\\\"y\\\"\"}}]}}");
    assert_int_equal(rec.calls, 2);
    assert_int_equal(rec.depth, 2);
    assert_int_equal(rec.path[0], DCM_TAG(0x0040, 0x0275));
    assert_int_equal(rec.path[1], DCM_TAG(0x0042, 0x0011));

    /* Without a hook, a value above inline_max is left out. */
    opts.bulk_uri = NULL;
    check_json(&b, &opts,
               "{\"00091001\":{\"vr\":\"OB\",\"InlineBinary\":\"AQIDBA==\"},"
               "\"00091002\":{\"vr\":\"OB\"},"
               "\"00400275\":{\"vr\":\"SQ\",\"Value\":[{\"00420011\":{\"vr\":\"OB\"}}]}}");
}

static void test_group_length(void **state)
{
    static const uint64_t len[] = { 10 };
    dcm_json_options opts = { .inline_max = 64, .skip_group_length = false };
    bytes b = { .big_endian = false };

    (void)state;
    el_nums(&b, 0x0008, 0x0000, "UL", 4, len, 1);
    el_str(&b, 0x0008, 0x0060, "CS", "CT");
    check_json(&b, NULL, "{\"00080060\":{\"vr\":\"CS\",\"Value\":[\"CT\"]}}");
    check_json(&b, &opts,
               "{\"00080000\":{\"vr\":\"UL\",\"Value\":[10]},"
               "\"00080060\":{\"vr\":\"CS\",\"Value\":[\"CT\"]}}");
}

/* An item with its own Specific Character Set decodes with it (PS3.3 C.12.1.1.2). */
static void test_item_charset(void **state)
{
    static const uint8_t latin1[] = "Ren\xE9 ";    /* ISO_IR 100 */
    static const uint8_t gb[] = "\xCD\xF5";       /* GB18030 */
    bytes b = { .big_endian = false };

    (void)state;
    el_str(&b, 0x0008, 0x0005, "CS", "ISO_IR 100");
    seq_begin(&b, 0x0008, 0x1110);
    item_begin(&b);
    el_str(&b, 0x0008, 0x0005, "CS", "GB18030");
    el_raw(&b, 0x0010, 0x0010, "PN", gb, 2);
    item_end(&b);
    seq_end(&b);
    el_raw(&b, 0x0010, 0x0010, "PN", latin1, 6);
    check_json(&b, NULL,
               "{\"00080005\":{\"vr\":\"CS\",\"Value\":[\"ISO_IR 100\"]},"
               "\"00081110\":{\"vr\":\"SQ\",\"Value\":[{"
               "\"00080005\":{\"vr\":\"CS\",\"Value\":[\"GB18030\"]},"
               "\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"\xE7\x8E\x8B\"}]}}]},"
               "\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Ren\xC3\xA9\"}]}}");
}

/*
 * Values above the bulk threshold stay in the source; the writer reads them
 * when it must write them in full (text, numbers, binary up to inline_max),
 * swapping big endian binary on the way, and fails cleanly without a source.
 */
static void test_values_not_loaded(void **state)
{
    static const uint8_t ow_be[] = { 0x01, 0x02, 0x03, 0x04, 0xFF, 0xFE, 0x00, 0x10 };
    static const uint64_t us[] = { 1, 2, 3, 4, 5, 6 };
    dcm_json_options opts = { .inline_max = 64, .skip_group_length = true };
    bytes b = { .big_endian = true };
    dcm_read_options ropts;
    dcm_source *src;
    dcm_file *file = NULL;
    cp_buf out = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&out);
    cp_error err;

    (void)state;
    el_str(&b, 0x0008, 0x0070, "LO", "A maker with a long name");
    el_nums(&b, 0x0028, 0x1101, "US", 2, us, 6);
    el_raw(&b, 0x7FE0, 0x0010, "OW", ow_be, sizeof(ow_be));

    src = dcm_source_from_memory(b.data, b.len);
    assert_non_null(src);
    memset(&ropts, 0, sizeof(ropts));
    ropts.no_meta = true;
    ropts.assume_ts = &dcm_ts_explicit_be;
    ropts.bulk_threshold = 4;
    cp_error_clear(&err);
    assert_int_equal(dcm_file_read(src, &ropts, &file, &err), CP_OK);
    assert_true((dcm_dataset_at(file->dataset, 0)->flags & DCM_ELEMENT_NOT_LOADED) != 0);

    assert_int_equal(dcm_json_write_dataset(file->dataset, &opts, &sink, &err),
                     CP_ERR_INVALID);

    cp_buf_reset(&out);
    opts.source = src;
    assert_int_equal(dcm_json_write_dataset(file->dataset, &opts, &sink, &err), CP_OK);
    assert_string_equal((const char *)out.data,
                        "{\"00080070\":{\"vr\":\"LO\",\"Value\":[\"A maker with a long name\"]},"
                        "\"00281101\":{\"vr\":\"US\",\"Value\":[1,2,3,4,5,6]},"
                        "\"7FE00010\":{\"vr\":\"OW\",\"InlineBinary\":\"AgEEA/7/EAA=\"}}");

    cp_buf_free(&out);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
}

/* A sink that fails after n bytes: the error must come back, not be lost. */
static cp_status failing_write(void *ctx, const void *data, size_t len)
{
    size_t *left = ctx;

    (void)data;
    if (len > *left)
        return CP_ERR_IO;
    *left -= len;
    return CP_OK;
}

static void test_sink_failure(void **state)
{
    size_t left = 10;
    dcm_sink sink = { failing_write, &left };
    bytes b = { .big_endian = false };
    dcm_file *file;
    cp_error err;

    (void)state;
    for (int i = 0; i < 200; i++)
        el_str(&b, 0x0011, (uint16_t)(0x1000 + i), "LO", "a value of some length");
    file = read_bytes(&b);
    cp_error_clear(&err);
    assert_int_equal(dcm_json_write_dataset(file->dataset, NULL, &sink, &err), CP_ERR_IO);
    dcm_file_destroy(file);
}

/* --- pydicom's files --------------------------------------------------- */

static cp_status uri_hook(void *ctx, const dcm_element *el, const uint32_t *path,
                          size_t depth, cp_buf *uri)
{
    (void)ctx;
    (void)path;
    (void)depth;
    return cp_buf_appendf(uri, "file:///x#offset=%llu&length=%llu",
                          (unsigned long long)el->offset,
                          (unsigned long long)el->value_length);
}

/* Reads path with a small bulk threshold and checks its JSON; returns false if unreadable. */
static bool check_file(const char *path, bool pretty, size_t *bytes_out)
{
    dcm_json_options opts = {
        .inline_max = 256, .bulk_uri = uri_hook, .pretty = pretty, .skip_group_length = true,
    };
    dcm_read_options ropts;
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    cp_buf out = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&out);
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    if (dcm_source_open_file(path, &src, &err) != CP_OK)
        return false;
    memset(&ropts, 0, sizeof(ropts));
    ropts.bulk_threshold = 64;
    (void)dcm_file_read(src, &ropts, &file, &err);
    if (file == NULL) {
        dcm_source_destroy(src);
        return false;
    }

    opts.source = src;
    cp_error_clear(&err);
    st = dcm_json_write_dataset(file->dataset, &opts, &sink, &err);
    if (st != CP_OK) {
        char text[400];

        fail_msg("%s: %s", path, cp_error_format(&err, text, sizeof(text)));
    }
    assert_valid_json(path, (const char *)out.data, out.len);
    *bytes_out += out.len;

    cp_buf_free(&out);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return true;
}

static void check_directory(const char *dir, size_t *files, size_t *bytes_out)
{
    DIR *d = opendir(dir);
    struct dirent *entry;

    if (d == NULL)
        return;
    while ((entry = readdir(d)) != NULL) {
        char path[1024];

        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        if (check_file(path, (*files & 1) != 0, bytes_out))
            (*files)++;
    }
    closedir(d);
}

static void test_pydicom_files(void **state)
{
    size_t files = 0, bytes_out = 0;

    (void)state;
    check_directory(PYDICOM_DATA "test_files", &files, &bytes_out);
    check_directory(PYDICOM_DATA "charset_files", &files, &bytes_out);
    if (files == 0)
        skip();
    print_message("%zu files of pydicom written as valid JSON (%zu bytes)\n", files, bytes_out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_person_name_gb18030),
        cmocka_unit_test(test_decimal_and_integer_strings),
        cmocka_unit_test(test_binary_numbers),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_pretty),
        cmocka_unit_test(test_inline_binary),
        cmocka_unit_test(test_big_endian_binary),
        cmocka_unit_test(test_bulk_data_hook),
        cmocka_unit_test(test_group_length),
        cmocka_unit_test(test_item_charset),
        cmocka_unit_test(test_values_not_loaded),
        cmocka_unit_test(test_sink_failure),
        cmocka_unit_test(test_pydicom_files),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
