/*
 * multipart.h - streaming reader and strict writer of multipart bodies
 * (RFC 2046 5.1, multipart/related of RFC 2387, as DICOMweb uses them in
 * PS3.18 8.6: STOW-RS requests, WADO-RS responses).
 *
 * The reader never holds a whole body or a whole part: it is fed the body in
 * pieces of any size and hands each part's bytes to a callback as soon as it
 * knows they are not the start of a delimiter. It keeps at most one window
 * of HTTP_MULTIPART_WINDOW bytes plus a delimiter's length.
 *
 * Leniency (a strict writer, a lenient reader): the boundary may be quoted
 * or not; lines may end in CRLF or in a bare LF (the CR before a delimiter's
 * LF belongs to the delimiter when present); transport padding after a
 * boundary is skipped; a line that starts with "--boundary" but goes on with
 * anything other than "--", padding and a line end is part data, not a
 * delimiter. A body that ends before the close delimiter is CP_ERR_TRUNCATED
 * once the parts that were complete have been delivered.
 */
#ifndef CP_HTTP_MULTIPART_H
#define CP_HTTP_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

/* One header of a part; name and value are NUL-terminated, value trimmed. */
typedef struct http_multipart_header {
    const char *name;
    const char *value;
} http_multipart_header;

/* A part as its headers are complete; valid during on_part_begin only. */
typedef struct http_multipart_part {
    size_t index;                   /* 0 for the first part */
    const http_multipart_header *headers;
    size_t header_count;
} http_multipart_part;

/*
 * What the reader calls. Any callback may be NULL. A callback returning
 * anything but CP_OK stops the reader, which returns that status from
 * http_multipart_feed (and every later call).
 */
typedef struct http_multipart_callbacks {
    cp_status (*on_part_begin)(void *ctx, const http_multipart_part *part);
    cp_status (*on_part_data)(void *ctx, const uint8_t *data, size_t len);
    cp_status (*on_part_end)(void *ctx);
} http_multipart_callbacks;

/* Limits of one reader; zero fields take the defaults of core/limits.h. */
typedef struct http_multipart_limits {
    size_t max_parts;               /* HTTP_MULTIPART_PARTS_MAX */
    size_t max_headers;             /* HTTP_MULTIPART_HEADERS_MAX per part */
    size_t max_header_bytes;        /* HTTP_MULTIPART_HEADER_BYTES_MAX per part */
} http_multipart_limits;

typedef struct http_multipart_reader http_multipart_reader;

/*
 * A reader for a body whose boundary is `boundary` (as in the Content-Type,
 * unquoted, without the leading "--"). limits may be NULL. cb is copied.
 */
cp_status http_multipart_reader_create(const char *boundary,
                                       const http_multipart_limits *limits,
                                       const http_multipart_callbacks *cb, void *ctx,
                                       http_multipart_reader **out, cp_error *err);

/* Feeds the next `len` bytes of the body. */
cp_status http_multipart_feed(http_multipart_reader *r, const uint8_t *data, size_t len,
                              cp_error *err);

/*
 * Says the body has ended. CP_OK when the close delimiter was seen;
 * CP_ERR_TRUNCATED when the body stopped in a part, its headers or before
 * the first delimiter was complete; CP_ERR_MALFORMED when no delimiter at
 * all was found.
 */
cp_status http_multipart_finish(http_multipart_reader *r, cp_error *err);

/* Number of parts whose headers were complete so far. */
size_t http_multipart_part_count(const http_multipart_reader *r);

void http_multipart_reader_destroy(http_multipart_reader *r);

/* The value of a part's header (case-insensitive name), or NULL. */
const char *http_multipart_part_header(const http_multipart_part *part, const char *name);

/*
 * The boundary parameter of a multipart Content-Type, unquoted, into out.
 * CP_ERR_INVALID when the type is not multipart/ or has no usable boundary
 * (empty, longer than HTTP_MULTIPART_BOUNDARY_MAX or than cap - 1).
 */
cp_status http_multipart_boundary_parse(const char *content_type, char *out, size_t cap);

/* --- writer -------------------------------------------------------------- */

/* Characters of a generated boundary, NUL excluded. */
#define HTTP_MULTIPART_BOUNDARY_LEN 32

/*
 * A fresh random boundary of HTTP_MULTIPART_BOUNDARY_LEN characters from
 * [0-9a-zA-Z] (out must hold one more for the NUL). The kernel's random
 * source makes it unguessable, so no part's data can contain it by design.
 */
cp_status http_multipart_boundary_new(char *out, size_t cap);

/*
 * Appends the delimiter that opens a part and the part's headers:
 * "\r\n--B\r\nContent-Type: type\r\n" + extra + "\r\n". `first` leaves out
 * the leading CRLF of the first part. extra is NULL or header lines that
 * each end in CRLF (for example "Content-Location: ...\r\n").
 */
cp_status http_multipart_write_part_start(cp_buf *out, const char *boundary, bool first,
                                          const char *content_type, const char *extra);

/* Appends the close delimiter "\r\n--B--\r\n". */
cp_status http_multipart_write_close(cp_buf *out, const char *boundary);

#endif
