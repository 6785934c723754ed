/*
 * dicom_bytes.h - builds small DICOM data sets as explicit VR bytes in
 * memory, for the unit tests of the modules that read them (json, dump).
 * Values are written in little endian unless big_endian is set.
 */
#ifndef TEST_DICOM_BYTES_H
#define TEST_DICOM_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dicom/tag.h"

/* Included after <cmocka.h>: put() checks the room with assert_true. */

typedef struct bytes {
    uint8_t data[8192];
    size_t len;
    bool big_endian;
} bytes;

static inline void put(bytes *b, const void *p, size_t n)
{
    assert_true(b->len + n <= sizeof(b->data));
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void put_uint(bytes *b, uint64_t v, size_t size)
{
    uint8_t tmp[8];

    for (size_t i = 0; i < size; i++) {
        size_t shift = 8 * (b->big_endian ? size - 1 - i : i);

        tmp[i] = (uint8_t)(v >> shift);
    }
    put(b, tmp, size);
}

static inline bool long_header(const char *vr)
{
    static const char *const vrs[] = { "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV",
                                       "UC", "UN", "UR", "UT", "UV" };

    for (size_t i = 0; i < sizeof(vrs) / sizeof(vrs[0]); i++)
        if (strcmp(vr, vrs[i]) == 0)
            return true;
    return false;
}

/* An explicit VR element header. */
static inline void header(bytes *b, uint16_t group, uint16_t element, const char *vr, uint32_t len)
{
    put_uint(b, group, 2);
    put_uint(b, element, 2);
    put(b, vr, 2);
    if (long_header(vr)) {
        put_uint(b, 0, 2);
        put_uint(b, len, 4);
    } else {
        put_uint(b, len, 2);
    }
}

/* An element whose value is `len` raw bytes (already in the data set's byte order). */
static inline void el_raw(bytes *b, uint16_t group, uint16_t element, const char *vr,
                   const void *value, size_t len)
{
    header(b, group, element, vr, (uint32_t)len);
    put(b, value, len);
}

/* A string element, padded to even length as the VR wants. */
static inline void el_str(bytes *b, uint16_t group, uint16_t element, const char *vr,
                   const char *text)
{
    size_t len = strlen(text);
    uint8_t pad = strcmp(vr, "UI") == 0 ? 0 : ' ';

    header(b, group, element, vr, (uint32_t)(len + (len & 1)));
    put(b, text, len);
    if (len & 1)
        put(b, &pad, 1);
}

/* A numeric element of `count` values of `size` bytes, in the data set's byte order. */
static inline void el_nums(bytes *b, uint16_t group, uint16_t element, const char *vr, size_t size,
                    const uint64_t *values, size_t count)
{
    header(b, group, element, vr, (uint32_t)(size * count));
    for (size_t i = 0; i < count; i++)
        put_uint(b, values[i], size);
}

static inline void seq_begin(bytes *b, uint16_t group, uint16_t element)
{
    header(b, group, element, "SQ", DCM_UNDEFINED_LENGTH);
}

static inline void delimiter(bytes *b, uint16_t element, uint32_t len)
{
    put_uint(b, 0xFFFE, 2);
    put_uint(b, element, 2);
    put_uint(b, len, 4);
}

static inline void item_begin(bytes *b)
{
    delimiter(b, 0xE000, DCM_UNDEFINED_LENGTH);
}

static inline void item_end(bytes *b)
{
    delimiter(b, 0xE00D, 0);
}

static inline void seq_end(bytes *b)
{
    delimiter(b, 0xE0DD, 0);
}

#endif
