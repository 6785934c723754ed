/*
 * buf.c - growable byte buffers.
 */
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void cp_buf_init(cp_buf *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void cp_buf_free(cp_buf *buf)
{
    cp_free(buf->data);
    cp_buf_init(buf);
}

void cp_buf_reset(cp_buf *buf)
{
    buf->len = 0;
    if (buf->data != NULL)
        buf->data[0] = '\0';
}

cp_status cp_buf_reserve(cp_buf *buf, size_t extra)
{
    size_t need, cap;
    uint8_t *data;

    if (extra > SIZE_MAX - buf->len - 1)
        return CP_ERR_NOMEM;
    need = buf->len + extra + 1;
    if (need <= buf->cap)
        return CP_OK;

    cap = buf->cap < 64 ? 64 : buf->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;

    data = cp_realloc(buf->data, cap);
    if (data == NULL)
        return CP_ERR_NOMEM;
    buf->data = data;
    buf->cap = cap;
    return CP_OK;
}

cp_status cp_buf_append(cp_buf *buf, const void *data, size_t len)
{
    cp_status st = cp_buf_reserve(buf, len);

    if (st != CP_OK)
        return st;
    if (len > 0)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
    return CP_OK;
}

cp_status cp_buf_append_byte(cp_buf *buf, uint8_t byte)
{
    return cp_buf_append(buf, &byte, 1);
}

cp_status cp_buf_append_str(cp_buf *buf, const char *s)
{
    return cp_buf_append(buf, s, strlen(s));
}

cp_status cp_buf_vappendf(cp_buf *buf, const char *fmt, va_list ap)
{
    va_list copy;
    int n;
    cp_status st;

    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return CP_ERR_INVALID;

    st = cp_buf_reserve(buf, (size_t)n);
    if (st != CP_OK)
        return st;
    vsnprintf((char *)buf->data + buf->len, (size_t)n + 1, fmt, ap);
    buf->len += (size_t)n;
    return CP_OK;
}

cp_status cp_buf_appendf(cp_buf *buf, const char *fmt, ...)
{
    va_list ap;
    cp_status st;

    va_start(ap, fmt);
    st = cp_buf_vappendf(buf, fmt, ap);
    va_end(ap);
    return st;
}

uint8_t *cp_buf_steal(cp_buf *buf, size_t *len)
{
    uint8_t *data = buf->data;

    if (len != NULL)
        *len = buf->len;
    cp_buf_init(buf);
    return data;
}
