/*
 * fuzz_multipart.c - libFuzzer target for the streaming multipart reader
 * (RFC 2046 5.1, PS3.18 8.6).
 *
 * The first byte gives the boundary's length, the bytes after it the
 * boundary, the next byte a seed for the sizes of the pieces the rest (the
 * body) is fed in. The body is read twice, whole and in those pieces, and
 * the two readings must agree exactly: same status, same events, same
 * bytes. That is the reader's one promise about chunking.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cp_status on_begin(void *ctx, const http_multipart_part *part)
{
    cp_buf *log = ctx;

    cp_buf_appendf(log, "<%zu:%zu>", part->index, part->header_count);
    for (size_t i = 0; i < part->header_count; i++)
        cp_buf_appendf(log, "%s=%s;", part->headers[i].name, part->headers[i].value);
    return CP_OK;
}

static cp_status on_data(void *ctx, const uint8_t *d, size_t len)
{
    if (len == 0)
        abort();
    return cp_buf_append(ctx, d, len);
}

static cp_status on_end(void *ctx)
{
    return cp_buf_append_str(ctx, "</>");
}

/* Reads body in pieces from seed (0: whole); returns the status, events in log. */
static cp_status read_all(const char *boundary, const uint8_t *body, size_t len,
                          unsigned seed, cp_buf *log)
{
    static const http_multipart_callbacks cb = { on_begin, on_data, on_end };
    http_multipart_limits lim = { .max_parts = 16, .max_headers = 4, .max_header_bytes = 200 };
    http_multipart_reader *r;
    cp_status st;
    size_t pos = 0;

    if (http_multipart_reader_create(boundary, &lim, &cb, log, &r, NULL) != CP_OK)
        abort();
    while (pos < len) {
        size_t n = len - pos;

        if (seed) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 23;
            if (n > len - pos)
                n = len - pos;
        }
        st = http_multipart_feed(r, body + pos, n, NULL);
        if (st != CP_OK)
            goto done;
        pos += n;
    }
    st = http_multipart_finish(r, NULL);

done:
    http_multipart_reader_destroy(r);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char boundary[20];
    size_t blen;
    cp_buf a = CP_BUF_INIT, b = CP_BUF_INIT;
    cp_status sa, sb;
    unsigned seed;

    if (size < 2)
        return 0;
    blen = 1 + data[0] % 16;
    if (size < 2 + blen)
        return 0;
    for (size_t i = 0; i < blen; i++)
        boundary[i] = data[1 + i] >= 0x20 && data[1 + i] < 0x7f ? (char)data[1 + i] : 'b';
    boundary[blen] = 0;
    seed = data[1 + blen] | 1u;
    data += 2 + blen;
    size -= 2 + blen;

    sa = read_all(boundary, data, size, 0, &a);
    sb = read_all(boundary, data, size, seed, &b);
    if (sa != sb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
        abort();
    cp_buf_free(&a);
    cp_buf_free(&b);
    return 0;
}
