/*
 * multipart.c - streaming multipart reader and strict writer (RFC 2046 5.1,
 * RFC 2387, PS3.18 8.6).
 *
 * The reader copies what it is fed into a fixed window and works on that:
 * in the preamble it looks for the first delimiter, in a part's headers it
 * collects lines up to the limits, in a part's body it hands over every
 * byte that cannot be the start of a delimiter and keeps the rest (at most
 * a delimiter, its line end and its padding) for the next feed. A boundary
 * split across two feeds is thus always found, whatever the sizes.
 *
 * A delimiter is "--" boundary at the start of a line (the start of the
 * body, or after LF), followed by "--" (the close delimiter) or by optional
 * padding and a line end. The line end before it (CRLF or LF) belongs to it.
 */
#include "http/multipart.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "http/accept.h"

/* What the window must keep beyond its working size: one undecided delimiter. */
#define MP_HOLD (2 * (HTTP_MULTIPART_BOUNDARY_MAX + HTTP_MULTIPART_PADDING_MAX + 8))

typedef enum { MP_PREAMBLE, MP_HEADERS, MP_BODY, MP_EPILOGUE, MP_FAILED } mp_state;

/* What follows a candidate "--boundary". */
typedef enum { DELIM_NOT, DELIM_NEED_MORE, DELIM_PART, DELIM_CLOSE } delim_kind;

struct http_multipart_reader {
    http_multipart_callbacks cb;
    void *ctx;
    http_multipart_limits lim;
    char delim[HTTP_MULTIPART_BOUNDARY_MAX + 3];    /* "--" boundary */
    size_t dlen;

    uint8_t *win;
    size_t cap;
    size_t len;
    bool line_start;        /* win[0] starts a line */
    uint64_t consumed;      /* body offset of win[0], for error offsets */

    mp_state state;
    cp_status failure;
    size_t parts;

    /* The current part's headers: "name\0value\0" pairs and their offsets. */
    cp_buf line;
    cp_buf text;
    size_t (*offsets)[2];
    http_multipart_header *headers;
    size_t header_count;
    size_t header_bytes;
};

static cp_status fail(http_multipart_reader *r, cp_error *err, cp_status st, size_t at,
                      const char *what)
{
    r->state = MP_FAILED;
    r->failure = st;
    return cp_error_set(err, st, (int64_t)(r->consumed + at), CP_ERROR_NO_TAG,
                        "multipart: %s", what);
}

cp_status http_multipart_reader_create(const char *boundary,
                                       const http_multipart_limits *limits,
                                       const http_multipart_callbacks *cb, void *ctx,
                                       http_multipart_reader **out, cp_error *err)
{
    http_multipart_reader *r;
    size_t blen = boundary ? strlen(boundary) : 0;

    *out = NULL;
    if (blen == 0 || blen > HTTP_MULTIPART_BOUNDARY_MAX)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "multipart: boundary of %zu characters", blen);

    r = cp_calloc(1, sizeof(*r));
    if (!r)
        return CP_ERR_NOMEM;
    if (cb)
        r->cb = *cb;
    r->ctx = ctx;
    r->lim.max_parts = HTTP_MULTIPART_PARTS_MAX;
    r->lim.max_headers = HTTP_MULTIPART_HEADERS_MAX;
    r->lim.max_header_bytes = HTTP_MULTIPART_HEADER_BYTES_MAX;
    if (limits && limits->max_parts)
        r->lim.max_parts = limits->max_parts;
    if (limits && limits->max_headers)
        r->lim.max_headers = limits->max_headers;
    if (limits && limits->max_header_bytes)
        r->lim.max_header_bytes = limits->max_header_bytes;

    r->delim[0] = '-';
    r->delim[1] = '-';
    memcpy(r->delim + 2, boundary, blen + 1);
    r->dlen = blen + 2;
    r->line_start = true;
    r->cap = HTTP_MULTIPART_WINDOW + MP_HOLD;
    r->win = cp_malloc(r->cap);
    r->offsets = cp_calloc(r->lim.max_headers, sizeof(*r->offsets));
    r->headers = cp_calloc(r->lim.max_headers + 1, sizeof(*r->headers));
    if (!r->win || !r->offsets || !r->headers) {
        http_multipart_reader_destroy(r);
        return CP_ERR_NOMEM;
    }
    *out = r;
    return CP_OK;
}

void http_multipart_reader_destroy(http_multipart_reader *r)
{
    if (!r)
        return;
    cp_buf_free(&r->line);
    cp_buf_free(&r->text);
    cp_free(r->offsets);
    cp_free(r->headers);
    cp_free(r->win);
    cp_free(r);
}

size_t http_multipart_part_count(const http_multipart_reader *r)
{
    return r->parts;
}

const char *http_multipart_part_header(const http_multipart_part *part, const char *name)
{
    for (size_t i = 0; i < part->header_count; i++) {
        if (strcasecmp(part->headers[i].name, name) == 0)
            return part->headers[i].value;
    }
    return NULL;
}

/* The next "--boundary" at or after `from` that starts a line, or len. */
static size_t find_candidate(const http_multipart_reader *r, size_t from)
{
    while (from + r->dlen <= r->len) {
        const uint8_t *p = memmem(r->win + from, r->len - from, r->delim, r->dlen);
        size_t i;

        if (!p)
            break;
        i = (size_t)(p - r->win);
        if (i == 0 ? r->line_start : r->win[i - 1] == '\n')
            return i;
        from = i + 1;
    }
    return r->len;
}

/* Decides what the candidate at i is; *next is the index after it. */
static delim_kind classify(const http_multipart_reader *r, size_t i, bool final,
                           size_t *next)
{
    const uint8_t *w = r->win;
    size_t j = i + r->dlen, k;

    if (r->len - j < 2) {
        /* At the very end, "--boundary" LF is still a (last) delimiter. */
        if (final && r->len - j == 1 && w[j] == '\n') {
            *next = j + 1;
            return DELIM_PART;
        }
        return DELIM_NEED_MORE;
    }
    if (w[j] == '-' && w[j + 1] == '-') {
        *next = j + 2;
        return DELIM_CLOSE;
    }

    for (k = j; k < r->len && (w[k] == ' ' || w[k] == '\t'); k++) {
        if (k - j >= HTTP_MULTIPART_PADDING_MAX)
            return DELIM_NOT;
    }
    if (k == r->len)
        return DELIM_NEED_MORE;
    if (w[k] == '\n') {
        *next = k + 1;
        return DELIM_PART;
    }
    if (w[k] != '\r')
        return DELIM_NOT;
    if (k + 1 == r->len)
        return DELIM_NEED_MORE;
    if (w[k + 1] != '\n')
        return DELIM_NOT;
    *next = k + 2;
    return DELIM_PART;
}

static void reset_headers(http_multipart_reader *r)
{
    cp_buf_reset(&r->line);
    cp_buf_reset(&r->text);
    r->header_count = 0;
    r->header_bytes = 0;
}

/* Enters a part's headers or the epilogue after a delimiter of `kind`. */
static cp_status after_delimiter(http_multipart_reader *r, delim_kind kind)
{
    cp_status st = CP_OK;

    if (r->state == MP_BODY && r->cb.on_part_end)
        st = r->cb.on_part_end(r->ctx);
    reset_headers(r);
    r->state = kind == DELIM_CLOSE ? MP_EPILOGUE : MP_HEADERS;
    return st;
}

/* Before the first delimiter: everything is skipped. */
static cp_status run_preamble(http_multipart_reader *r, size_t *pos, bool final,
                              cp_error *err)
{
    size_t from = *pos;

    for (;;) {
        size_t i = find_candidate(r, from), next = 0;
        delim_kind kind;

        if (i == r->len) {
            *pos = r->len > r->dlen ? r->len - r->dlen + 1 : *pos;
            if (*pos < from)
                *pos = from;
            return CP_OK;
        }
        kind = classify(r, i, final, &next);
        if (kind == DELIM_NOT) {
            from = i + 1;
            continue;
        }
        *pos = i;
        if (kind == DELIM_NEED_MORE)
            return CP_OK;
        *pos = next;
        if (after_delimiter(r, kind) != CP_OK)
            return fail(r, err, CP_ERR_STOPPED, i, "stopped by the handler");
        return CP_OK;
    }
}

/* One complete header line (without its line end) of the current part. */
static cp_status header_line(http_multipart_reader *r, const char *s, size_t n,
                             size_t at, cp_error *err)
{
    const char *colon;
    size_t name_len, vstart;

    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n > 0 && (s[0] == ' ' || s[0] == '\t') && r->header_count > 0) {
        /* obs-fold (RFC 5322 2.2.3): the line continues the previous value. */
        size_t k = 0;

        while (k < n && (s[k] == ' ' || s[k] == '\t'))
            k++;
        r->text.len--;
        if (cp_buf_append_byte(&r->text, ' ') != CP_OK ||
            cp_buf_append(&r->text, s + k, n - k) != CP_OK ||
            cp_buf_append_byte(&r->text, 0) != CP_OK)
            return fail(r, err, CP_ERR_NOMEM, at, "out of memory");
        return CP_OK;
    }

    colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return fail(r, err, CP_ERR_MALFORMED, at, "part header line without a name");
    name_len = (size_t)(colon - s);
    while (name_len > 0 && (s[name_len - 1] == ' ' || s[name_len - 1] == '\t'))
        name_len--;
    vstart = (size_t)(colon - s) + 1;
    while (vstart < n && (s[vstart] == ' ' || s[vstart] == '\t'))
        vstart++;
    if (r->header_count == r->lim.max_headers)
        return fail(r, err, CP_ERR_LIMIT, at, "too many part headers");

    r->offsets[r->header_count][0] = r->text.len;
    if (cp_buf_append(&r->text, s, name_len) != CP_OK ||
        cp_buf_append_byte(&r->text, 0) != CP_OK)
        return fail(r, err, CP_ERR_NOMEM, at, "out of memory");
    r->offsets[r->header_count][1] = r->text.len;
    if (cp_buf_append(&r->text, s + vstart, n - vstart) != CP_OK ||
        cp_buf_append_byte(&r->text, 0) != CP_OK)
        return fail(r, err, CP_ERR_NOMEM, at, "out of memory");
    r->header_count++;
    return CP_OK;
}

/* The blank line after a part's headers: the part begins. */
static cp_status begin_part(http_multipart_reader *r, size_t at, cp_error *err)
{
    http_multipart_part part;

    if (r->parts == r->lim.max_parts)
        return fail(r, err, CP_ERR_LIMIT, at, "too many parts");
    for (size_t i = 0; i < r->header_count; i++) {
        r->headers[i].name = (const char *)r->text.data + r->offsets[i][0];
        r->headers[i].value = (const char *)r->text.data + r->offsets[i][1];
    }
    part.index = r->parts++;
    part.headers = r->headers;
    part.header_count = r->header_count;
    r->state = MP_BODY;
    if (r->cb.on_part_begin && r->cb.on_part_begin(r->ctx, &part) != CP_OK)
        return fail(r, err, CP_ERR_STOPPED, at, "stopped by the handler");
    return CP_OK;
}

static cp_status run_headers(http_multipart_reader *r, size_t *pos, cp_error *err)
{
    while (*pos < r->len && r->state == MP_HEADERS) {
        const uint8_t *start = r->win + *pos;
        const uint8_t *nl = memchr(start, '\n', r->len - *pos);
        size_t take = nl ? (size_t)(nl - start) + 1 : r->len - *pos;
        size_t n;

        if (r->header_bytes + take > r->lim.max_header_bytes)
            return fail(r, err, CP_ERR_LIMIT, *pos, "part headers too large");
        if (cp_buf_append(&r->line, start, take) != CP_OK)
            return fail(r, err, CP_ERR_NOMEM, *pos, "out of memory");
        r->header_bytes += take;
        *pos += take;
        if (!nl)
            break;

        n = r->line.len - 1;
        if (n > 0 && r->line.data[n - 1] == '\r')
            n--;
        if (n == 0) {
            if (begin_part(r, *pos, err) != CP_OK)
                return r->failure;
        } else if (header_line(r, (const char *)r->line.data, n, *pos, err) != CP_OK) {
            return r->failure;
        }
        cp_buf_reset(&r->line);
    }
    return CP_OK;
}

static cp_status deliver(http_multipart_reader *r, size_t from, size_t to, cp_error *err)
{
    if (to <= from || !r->cb.on_part_data)
        return CP_OK;
    if (r->cb.on_part_data(r->ctx, r->win + from, to - from) != CP_OK)
        return fail(r, err, CP_ERR_STOPPED, from, "stopped by the handler");
    return CP_OK;
}

static cp_status run_body(http_multipart_reader *r, size_t *pos, bool final, cp_error *err)
{
    size_t from = *pos;

    for (;;) {
        size_t i = find_candidate(r, from), next = 0, end;
        delim_kind kind;

        if (i == r->len) {
            /* Keep what could be the CRLF and the start of a delimiter. */
            end = r->len > r->dlen + 1 ? r->len - r->dlen - 1 : *pos;
            if (final || end <= *pos)
                return CP_OK;
            if (deliver(r, *pos, end, err) != CP_OK)
                return r->failure;
            *pos = end;
            return CP_OK;
        }
        kind = classify(r, i, final, &next);
        if (kind == DELIM_NOT) {
            from = i + 1;
            continue;
        }

        end = i;
        if (end > *pos && r->win[end - 1] == '\n')
            end--;
        if (end > *pos && r->win[end - 1] == '\r')
            end--;
        if (kind == DELIM_NEED_MORE) {
            if (!final && deliver(r, *pos, end, err) != CP_OK)
                return r->failure;
            *pos = final ? *pos : end;
            return CP_OK;
        }
        if (deliver(r, *pos, end, err) != CP_OK)
            return r->failure;
        *pos = next;
        if (after_delimiter(r, kind) != CP_OK)
            return fail(r, err, CP_ERR_STOPPED, i, "stopped by the handler");
        return CP_OK;
    }
}

/* Works through the window until nothing more can be decided. */
static cp_status run(http_multipart_reader *r, bool final, cp_error *err)
{
    size_t pos = 0;

    for (;;) {
        mp_state before = r->state;
        size_t at = pos;
        cp_status st = CP_OK;

        switch (r->state) {
        case MP_PREAMBLE:
            st = run_preamble(r, &pos, final, err);
            break;
        case MP_HEADERS:
            st = run_headers(r, &pos, err);
            break;
        case MP_BODY:
            st = run_body(r, &pos, final, err);
            break;
        case MP_EPILOGUE:
            pos = r->len;
            break;
        case MP_FAILED:
            return r->failure;
        }
        if (st != CP_OK)
            return st;
        if (r->state == before && pos == at)
            break;
    }

    if (pos > 0) {
        r->line_start = r->win[pos - 1] == '\n';
        memmove(r->win, r->win + pos, r->len - pos);
        r->len -= pos;
        r->consumed += pos;
    }
    if (r->len >= r->cap)
        return fail(r, err, CP_ERR_MALFORMED, 0, "no progress in the window");
    return CP_OK;
}

cp_status http_multipart_feed(http_multipart_reader *r, const uint8_t *data, size_t len,
                              cp_error *err)
{
    if (r->state == MP_FAILED)
        return r->failure;

    while (len > 0) {
        size_t n = r->cap - r->len;
        cp_status st;

        if (n > len)
            n = len;
        memcpy(r->win + r->len, data, n);
        r->len += n;
        data += n;
        len -= n;
        st = run(r, false, err);
        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

cp_status http_multipart_finish(http_multipart_reader *r, cp_error *err)
{
    cp_status st;

    if (r->state == MP_FAILED)
        return r->failure;
    st = run(r, true, err);
    if (st != CP_OK)
        return st;

    switch (r->state) {
    case MP_EPILOGUE:
        return CP_OK;
    case MP_PREAMBLE:
        if (find_candidate(r, 0) == r->len)
            return fail(r, err, CP_ERR_MALFORMED, r->len, "no boundary delimiter found");
        return fail(r, err, CP_ERR_TRUNCATED, r->len, "body ends in the first delimiter");
    case MP_HEADERS:
        return fail(r, err, CP_ERR_TRUNCATED, r->len, "body ends in a part's headers");
    case MP_BODY:
        return fail(r, err, CP_ERR_TRUNCATED, r->len,
                    "body ends in a part without a close delimiter");
    case MP_FAILED:
        break;
    }
    return r->failure;
}

cp_status http_multipart_boundary_parse(const char *content_type, char *out, size_t cap)
{
    size_t n;

    if (!content_type || strncasecmp(content_type, "multipart/", 10) != 0)
        return CP_ERR_INVALID;
    if (http_header_param(content_type, "boundary", out, cap) != CP_OK)
        return CP_ERR_INVALID;
    n = strlen(out);
    if (n == 0 || n > HTTP_MULTIPART_BOUNDARY_MAX)
        return CP_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];

        if (c < 0x20 || c == 0x7f)
            return CP_ERR_INVALID;
    }
    return CP_OK;
}

/* --- writer -------------------------------------------------------------- */

cp_status http_multipart_boundary_new(char *out, size_t cap)
{
    static const char alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint8_t raw[HTTP_MULTIPART_BOUNDARY_LEN];
    size_t got = 0;

    if (cap < HTTP_MULTIPART_BOUNDARY_LEN + 1)
        return CP_ERR_INVALID;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return CP_ERR_IO;
        got += (size_t)n;
    }

    /* 62 letters: the modulo bias is below 1%, irrelevant for uniqueness. */
    for (size_t i = 0; i < sizeof(raw); i++)
        out[i] = alphabet[raw[i] % 62];
    out[HTTP_MULTIPART_BOUNDARY_LEN] = 0;
    return CP_OK;
}

cp_status http_multipart_write_part_start(cp_buf *out, const char *boundary, bool first,
                                          const char *content_type, const char *extra)
{
    return cp_buf_appendf(out, "%s--%s\r\nContent-Type: %s\r\n%s\r\n", first ? "" : "\r\n",
                          boundary, content_type, extra ? extra : "");
}

cp_status http_multipart_write_close(cp_buf *out, const char *boundary)
{
    return cp_buf_appendf(out, "\r\n--%s--\r\n", boundary);
}
