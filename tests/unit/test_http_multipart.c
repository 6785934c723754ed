/*
 * test_http_multipart.c - the streaming multipart reader and writer
 * (RFC 2046 5.1, RFC 2387, PS3.18 8.6).
 *
 * Every body is read whole, one byte at a time and in random pieces, and
 * the events (part headers, data, part ends) must be the same each time:
 * a delimiter split at any place between two feeds must still be found.
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
#include "core/buf.h"
#include "core/limits.h"
#include "http/multipart.h"

/* Events as text: "[n ct=...]" at a part's start, its data, then "[end]". */
typedef struct recorder {
    cp_buf log;
    size_t data_calls;
    size_t max_chunk;
} recorder;

static cp_status rec_begin(void *ctx, const http_multipart_part *part)
{
    recorder *r = ctx;
    const char *ct = http_multipart_part_header(part, "content-type");

    cp_buf_appendf(&r->log, "[%zu ct=%s h=%zu]", part->index, ct ? ct : "-",
                   part->header_count);
    return CP_OK;
}

static cp_status rec_data(void *ctx, const uint8_t *data, size_t len)
{
    recorder *r = ctx;

    assert_true(len > 0);
    r->data_calls++;
    if (len > r->max_chunk)
        r->max_chunk = len;
    return cp_buf_append(&r->log, data, len);
}

static cp_status rec_end(void *ctx)
{
    recorder *r = ctx;

    return cp_buf_append_str(&r->log, "[end]");
}

static const http_multipart_callbacks rec_cb = { rec_begin, rec_data, rec_end };

/* Reads body in pieces: 0 = whole, 1 = byte by byte, 2 = random sizes. */
static cp_status read_body(const char *boundary, const void *body, size_t len, int mode,
                           const http_multipart_limits *lim, recorder *r)
{
    http_multipart_reader *mr = NULL;
    const uint8_t *p = body;
    size_t pos = 0;
    cp_status st;

    memset(r, 0, sizeof(*r));
    st = http_multipart_reader_create(boundary, lim, &rec_cb, r, &mr, NULL);
    if (st != CP_OK)
        return st;
    while (pos < len) {
        size_t n = mode == 0 ? len - pos : mode == 1 ? 1 : 1 + (size_t)rand() % 97;

        if (n > len - pos)
            n = len - pos;
        st = http_multipart_feed(mr, p + pos, n, NULL);
        if (st != CP_OK)
            goto done;
        pos += n;
    }
    st = http_multipart_finish(mr, NULL);

done:
    http_multipart_reader_destroy(mr);
    return st;
}

/* Reads in every mode; all must give `want_st` and the same events. */
static void check(const char *boundary, const char *body, cp_status want_st,
                  const char *want_log)
{
    recorder r[3];

    for (int mode = 0; mode < 3; mode++) {
        cp_status st = read_body(boundary, body, strlen(body), mode, NULL, &r[mode]);

        assert_int_equal(st, want_st);
        if (want_log)
            assert_string_equal(r[mode].log.data ? (char *)r[mode].log.data : "", want_log);
        if (mode > 0)
            assert_memory_equal(r[mode].log.data, r[0].log.data, r[0].log.len);
    }
    for (int mode = 0; mode < 3; mode++)
        cp_buf_free(&r[mode].log);
}

static void test_two_parts(void **state)
{
    (void)state;
    check("abc",
          "--abc\r\nContent-Type: application/dicom\r\n\r\nDATA1\r\n"
          "--abc\r\nContent-Type: application/dicom\r\nContent-Location: x\r\n\r\n"
          "DATA-2\r\n--abc--\r\n",
          CP_OK,
          "[0 ct=application/dicom h=1]DATA1[end]"
          "[1 ct=application/dicom h=2]DATA-2[end]");
}

static void test_preamble_epilogue_padding(void **state)
{
    (void)state;
    check("b",
          "This is a preamble.\r\n--b  \t\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
          "--b--   \r\nthe epilogue --b\r\n",
          CP_OK, "[0 ct=text/plain h=1]hi[end]");
}

static void test_lookalike_boundaries(void **state)
{
    (void)state;
    /* "--b" not at a line start, and "--bx" at a line start, are data. */
    check("b",
          "--b\r\nContent-Type: a/b\r\n\r\nx--b\r\n--bx\r\n--b -\r\n\r\n-\r\n--b--",
          CP_OK, "[0 ct=a/b h=1]x--b\r\n--bx\r\n--b -\r\n\r\n-[end]");
}

static void test_lf_only_and_empty(void **state)
{
    (void)state;
    check("sep",
          "--sep\nContent-Type: a/b\n\nline1\nline2\n--sep\nContent-Type: c/d\n\n\n--sep--\n",
          CP_OK, "[0 ct=a/b h=1]line1\nline2[end][1 ct=c/d h=1][end]");
    /* A part without headers, data right after the blank line. */
    check("z", "--z\r\n\r\n\r\n\r\n--z--", CP_OK, "[0 ct=- h=0]\r\n[end]");
}

static void test_folded_header(void **state)
{
    (void)state;
    check("q", "--q\r\nContent-Type: multipart/x;\r\n type=y\r\n\r\nd\r\n--q--\r\n", CP_OK,
          "[0 ct=multipart/x; type=y h=1]d[end]");
}

static void test_truncated(void **state)
{
    (void)state;
    /* The complete part is delivered, then the error. */
    check("b", "--b\r\n\r\none\r\n--b\r\nContent-Type: x/y\r\n\r\ntwo and mo", CP_ERR_TRUNCATED,
          NULL);
    check("b", "--b\r\n\r\none\r\n--b", CP_ERR_TRUNCATED, NULL);
    check("b", "--b\r\nContent-Ty", CP_ERR_TRUNCATED, NULL);
    check("b", "--b\r\n\r\none\r\n--b\r\n", CP_ERR_TRUNCATED, NULL);
    check("b", "no delimiter at all", CP_ERR_MALFORMED, NULL);
    check("b", "", CP_ERR_MALFORMED, NULL);

    {
        recorder r;

        assert_int_equal(read_body("b", "--b\r\n\r\none\r\n--b\r\n\r\ntw", 21, 1, NULL, &r),
                         CP_ERR_TRUNCATED);
        assert_non_null(strstr((char *)r.log.data, "one[end]"));
        cp_buf_free(&r.log);
    }
}

static void test_limits(void **state)
{
    http_multipart_limits lim = { .max_parts = 2 };
    const char *three = "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--";
    char big[HTTP_MULTIPART_HEADER_BYTES_MAX + 64];
    recorder r;

    (void)state;
    assert_int_equal(read_body("b", three, strlen(three), 0, &lim, &r), CP_ERR_LIMIT);
    cp_buf_free(&r.log);
    assert_int_equal(read_body("b", three, strlen(three), 1, NULL, &r), CP_OK);
    cp_buf_free(&r.log);

    snprintf(big, sizeof(big), "--b\r\nX-Long: %0*d\r\n\r\nx\r\n--b--",
             (int)HTTP_MULTIPART_HEADER_BYTES_MAX, 7);
    assert_int_equal(read_body("b", big, strlen(big), 2, NULL, &r), CP_ERR_LIMIT);
    cp_buf_free(&r.log);

    lim = (http_multipart_limits){ .max_headers = 2 };
    assert_int_equal(read_body("b", "--b\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\nx\r\n--b--", 33, 0,
                               &lim, &r),
                     CP_ERR_LIMIT);
    cp_buf_free(&r.log);
    assert_int_equal(read_body("b", "--b\r\nno colon\r\n\r\nx\r\n--b--", 25, 1, NULL, &r),
                     CP_ERR_MALFORMED);
    cp_buf_free(&r.log);
}

/* A large binary part full of near-boundaries, in many chunkings. */
static void test_binary_every_split(void **state)
{
    const char *boundary = "0123456789abcdefghij";
    size_t n = 300000, hlen;
    cp_buf body = CP_BUF_INIT, want = CP_BUF_INIT;
    recorder r;

    (void)state;
    cp_buf_appendf(&body, "--%s\r\nContent-Type: application/octet-stream\r\n\r\n", boundary);
    hlen = body.len;
    srand(7);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)rand();

        if (i % 5000 == 0)
            cp_buf_appendf(&want, "\r\n--%s%s", boundary, i % 10000 ? "X" : "-x");
        cp_buf_append_byte(&want, c);
    }
    cp_buf_append(&body, want.data, want.len);
    cp_buf_appendf(&body, "\r\n--%s--\r\n", boundary);

    for (int mode = 0; mode < 3; mode++) {
        assert_int_equal(read_body(boundary, body.data, body.len, mode, NULL, &r), CP_OK);
        assert_true(r.max_chunk <= HTTP_MULTIPART_WINDOW + 1024);
        assert_int_equal(r.log.len, want.len + strlen("[0 ct=application/octet-stream h=1]") +
                                        strlen("[end]"));
        assert_memory_equal(r.log.data + strlen("[0 ct=application/octet-stream h=1]"),
                            want.data, want.len);
        cp_buf_free(&r.log);
    }

    /* Every split point of a small body into two feeds. */
    {
        const char *small = "pre\r\n--xy\r\nA: b\r\n\r\n--x\r\n-\r\n--xy\r\n\r\n\r\n--xy--\r\n";
        size_t slen = strlen(small);

        for (size_t cut = 0; cut <= slen; cut++) {
            http_multipart_reader *mr;
            recorder rr;

            memset(&rr, 0, sizeof(rr));
            assert_int_equal(http_multipart_reader_create("xy", NULL, &rec_cb, &rr, &mr, NULL),
                             CP_OK);
            assert_int_equal(http_multipart_feed(mr, (const uint8_t *)small, cut, NULL), CP_OK);
            assert_int_equal(http_multipart_feed(mr, (const uint8_t *)small + cut, slen - cut,
                                                 NULL),
                             CP_OK);
            assert_int_equal(http_multipart_finish(mr, NULL), CP_OK);
            assert_string_equal((char *)rr.log.data, "[0 ct=- h=1]--x\r\n-[end][1 ct=- h=0][end]");
            http_multipart_reader_destroy(mr);
            cp_buf_free(&rr.log);
        }
    }
    (void)hlen;
    cp_buf_free(&body);
    cp_buf_free(&want);
}

static void test_boundary_parse(void **state)
{
    char b[HTTP_MULTIPART_BOUNDARY_MAX + 1];

    (void)state;
    assert_int_equal(http_multipart_boundary_parse(
                         "multipart/related; type=\"application/dicom\"; boundary=\"a b:c\"",
                         b, sizeof(b)),
                     CP_OK);
    assert_string_equal(b, "a b:c");
    assert_int_equal(http_multipart_boundary_parse(
                         "Multipart/Related;boundary=XyZ;type=application/dicom", b, sizeof(b)),
                     CP_OK);
    assert_string_equal(b, "XyZ");
    assert_int_equal(http_multipart_boundary_parse("multipart/related; boundary=\"\"", b,
                                                   sizeof(b)),
                     CP_ERR_INVALID);
    assert_int_equal(http_multipart_boundary_parse("application/dicom; boundary=x", b,
                                                   sizeof(b)),
                     CP_ERR_INVALID);
    assert_int_equal(http_multipart_boundary_parse("multipart/related; type=x", b, sizeof(b)),
                     CP_ERR_INVALID);
}

static void test_writer_round_trip(void **state)
{
    char boundary[HTTP_MULTIPART_BOUNDARY_LEN + 1], other[sizeof(boundary)];
    cp_buf out = CP_BUF_INIT;
    recorder r;

    (void)state;
    assert_int_equal(http_multipart_boundary_new(boundary, sizeof(boundary)), CP_OK);
    assert_int_equal(http_multipart_boundary_new(other, sizeof(other)), CP_OK);
    assert_int_equal(strlen(boundary), HTTP_MULTIPART_BOUNDARY_LEN);
    assert_string_not_equal(boundary, other);

    assert_int_equal(http_multipart_write_part_start(&out, boundary, true, "application/dicom",
                                                     "Content-Location: /a\r\n"),
                     CP_OK);
    cp_buf_append_str(&out, "one");
    assert_int_equal(http_multipart_write_part_start(&out, boundary, false, "image/jpeg", NULL),
                     CP_OK);
    cp_buf_append_str(&out, "two\r\n");
    assert_int_equal(http_multipart_write_close(&out, boundary), CP_OK);
    assert_memory_equal(out.data, "--", 2);

    assert_int_equal(read_body(boundary, out.data, out.len, 2, NULL, &r), CP_OK);
    assert_string_equal((char *)r.log.data,
                        "[0 ct=application/dicom h=2]one[end][1 ct=image/jpeg h=1]two\r\n[end]");
    cp_buf_free(&r.log);
    cp_buf_free(&out);
}

/* A callback that stops the reader stops it for good. */
static cp_status stop_begin(void *ctx, const http_multipart_part *part)
{
    (void)ctx;
    return part->index == 1 ? CP_ERR_UNSUPPORTED : CP_OK;
}

static void test_callback_stops(void **state)
{
    http_multipart_callbacks cb = { stop_begin, NULL, NULL };
    http_multipart_reader *mr;
    const char *body = "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b--";
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(http_multipart_reader_create("b", NULL, &cb, NULL, &mr, NULL), CP_OK);
    assert_int_equal(http_multipart_feed(mr, (const uint8_t *)body, strlen(body), &err),
                     CP_ERR_STOPPED);
    assert_int_equal(http_multipart_finish(mr, NULL), CP_ERR_STOPPED);
    assert_int_equal(http_multipart_part_count(mr), 2);
    http_multipart_reader_destroy(mr);

    assert_int_equal(http_multipart_reader_create("", NULL, &cb, NULL, &mr, NULL),
                     CP_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_parts),
        cmocka_unit_test(test_preamble_epilogue_padding),
        cmocka_unit_test(test_lookalike_boundaries),
        cmocka_unit_test(test_lf_only_and_empty),
        cmocka_unit_test(test_folded_header),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_binary_every_split),
        cmocka_unit_test(test_boundary_parse),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_callback_stops),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
