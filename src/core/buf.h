/*
 * buf.h - growable byte buffers.
 *
 * A cp_buf owns its storage. It is always NUL-terminated past `len` (the NUL
 * is not counted), so text built in it can be used as a C string. Growth is
 * geometric and checked against a caller's limit where one is given.
 */
#ifndef CP_CORE_BUF_H
#define CP_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct cp_buf {
    uint8_t *data;      /* NULL until the first append */
    size_t len;
    size_t cap;
} cp_buf;

#define CP_BUF_INIT { NULL, 0, 0 }

void cp_buf_init(cp_buf *buf);

/* Frees the storage and leaves an empty buffer. */
void cp_buf_free(cp_buf *buf);

/* Empties the buffer, keeping its storage. */
void cp_buf_reset(cp_buf *buf);

/* Makes room for `extra` more bytes (plus the terminating NUL). */
cp_status cp_buf_reserve(cp_buf *buf, size_t extra);

cp_status cp_buf_append(cp_buf *buf, const void *data, size_t len);
cp_status cp_buf_append_byte(cp_buf *buf, uint8_t byte);
cp_status cp_buf_append_str(cp_buf *buf, const char *s);
cp_status cp_buf_appendf(cp_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
cp_status cp_buf_vappendf(cp_buf *buf, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Hands the storage to the caller (to free with cp_free) and empties buf. */
uint8_t *cp_buf_steal(cp_buf *buf, size_t *len);

#endif
