/*
 * zipstream.c - the streaming ZIP writer (zipstream.h). Layout, as APPNOTE
 * 6.3 section 4.3.6 has it:
 *
 *   [local file header, name, (ZIP64 extra)] [data] [data descriptor]  per entry
 *   [central directory header, name, (ZIP64 extra)]                    per entry
 *   [ZIP64 end of central directory record and locator]                when needed
 *   [end of central directory record]
 *
 * Local headers carry CRC 0 and sizes 0 (0xFFFFFFFF with a ZIP64 extra of
 * zeros, as 4.4.8 and 4.5.3 ask): the real values come in the descriptor,
 * whose sizes are 8 bytes exactly when the local header had the ZIP64 extra
 * (4.3.9.2), and again in the central directory.
 */
#include "film/zipstream.h"

#include <string.h>
#include <time.h>

#include <zlib.h>

#include "core/alloc.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_DESCRIPTOR 0x08074b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_ZIP64_END 0x06064b50u
#define SIG_ZIP64_LOCATOR 0x07064b50u
#define SIG_END 0x06054b50u

#define FLAG_DESCRIPTOR (1u << 3)
#define FLAG_UTF8 (1u << 11)

/* 2.0 (stored, directories), 4.5 (ZIP64). */
#define VERSION_PLAIN 20
#define VERSION_ZIP64 45
/* Made by: Unix (3) so that the external attributes hold a mode, version 4.5. */
#define VERSION_MADE_BY ((3u << 8) | VERSION_ZIP64)
/* A regular file, rw-r--r--. */
#define EXTERNAL_ATTRS (0100644u << 16)

#define ZIP64_EXTRA_ID 0x0001

#define LIMIT32 0xFFFFFFFFull
#define LIMIT16 0xFFFFull

typedef struct zip_entry {
    char *name;
    uint64_t offset;            /* of its local header */
    uint64_t size;
    uint32_t crc;
    bool zip64_local;           /* its local header had the ZIP64 extra */
} zip_entry;

struct film_zip {
    film_zip_sink sink;
    uint64_t limit;             /* values >= limit go to ZIP64 fields */
    uint64_t limit16;           /* counts likewise */
    uint16_t dos_time, dos_date;
    uint64_t offset;
    zip_entry *entries;
    size_t count, cap;
    bool open;                  /* an entry is open: entries[count - 1] */
    bool finished;
    cp_status failed;           /* a sink failure sticks */
};

uint32_t film_zip_crc32(uint32_t crc, const void *data, size_t len)
{
    return (uint32_t)crc32_z(crc, data, len);
}

static void put16(uint8_t *p, uint64_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint64_t v)
{
    put16(p, v);
    put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, v);
    put32(p + 4, v >> 32);
}

static cp_status emit(film_zip *z, const void *data, size_t len, cp_error *err)
{
    cp_status st;

    if (z->failed != CP_OK)
        return cp_error_set(err, z->failed, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the archive failed earlier");
    if (len == 0)
        return CP_OK;
    st = z->sink.write(z->sink.ctx, data, len);
    if (st != CP_OK) {
        z->failed = st;
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the archive's bytes could not be sent");
    }
    z->offset += len;
    return CP_OK;
}

/* MS-DOS date and time (APPNOTE 4.4.6), in UTC: the server's zone means nothing to the patient. */
static void dos_stamp(int64_t t, uint16_t *date, uint16_t *tm_out)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year < 80) {
        *date = (1 << 5) | 1;          /* 1980-01-01, the earliest there is */
        *tm_out = 0;
        return;
    }
    if (tm.tm_year > 207)
        tm.tm_year = 207;
    *date = (uint16_t)(((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
    *tm_out = (uint16_t)((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
}

cp_status film_zip_open(const film_zip_sink *sink, const film_zip_options *opts, film_zip **out,
                        cp_error *err)
{
    film_zip *z;
    int64_t mtime;

    *out = NULL;
    if (sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "an archive needs a sink");
    z = cp_calloc(1, sizeof(*z));
    if (z == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    z->sink = *sink;
    z->limit = opts && opts->zip64_limit ? opts->zip64_limit : LIMIT32;
    z->limit16 = z->limit < LIMIT16 ? z->limit : LIMIT16;
    mtime = opts && opts->mtime_s ? opts->mtime_s : (int64_t)time(NULL);
    dos_stamp(mtime, &z->dos_date, &z->dos_time);
    z->failed = CP_OK;
    *out = z;
    return CP_OK;
}

void film_zip_free(film_zip *z)
{
    if (z == NULL)
        return;
    for (size_t i = 0; i < z->count; i++)
        cp_free(z->entries[i].name);
    cp_free(z->entries);
    cp_free(z);
}

uint64_t film_zip_offset(const film_zip *z)
{
    return z->offset;
}

size_t film_zip_count(const film_zip *z)
{
    return z->count;
}

/* Relative, '/' separated, no empty, "." or ".." component, no backslash or control byte. */
static bool name_ok(const char *name, size_t len)
{
    const char *p = name;

    if (len == 0 || len > FILM_ZIP_NAME_MAX || name[0] == '/')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == '\\' || name[i] == 0x7f)
            return false;
    while (*p) {
        size_t n = strcspn(p, "/");

        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return name[len - 1] != '/';
}

cp_status film_zip_begin(film_zip *z, const char *name, uint64_t size_hint, cp_error *err)
{
    uint8_t h[30 + 20];
    size_t len = name ? strlen(name) : 0;
    zip_entry *e;
    bool zip64;
    cp_status st;

    if (z->open || z->finished || !name_ok(name, len))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a bad entry name, or an entry is still open");
    st = cp_array_grow(&z->entries, &z->cap, z->count, sizeof(*z->entries), 64,
                       FILM_ZIP_ENTRIES_MAX);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "too many entries in one archive");
    e = &z->entries[z->count];
    memset(e, 0, sizeof(*e));
    e->name = cp_strndup(name, len);
    if (e->name == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    z->count++;
    z->open = true;
    e->offset = z->offset;
    zip64 = size_hint >= z->limit;
    e->zip64_local = zip64;

    put32(h, SIG_LOCAL);
    put16(h + 4, zip64 ? VERSION_ZIP64 : VERSION_PLAIN);
    put16(h + 6, FLAG_DESCRIPTOR | FLAG_UTF8);
    put16(h + 8, 0);                            /* stored */
    put16(h + 10, z->dos_time);
    put16(h + 12, z->dos_date);
    put32(h + 14, 0);                           /* CRC: in the descriptor */
    put32(h + 18, zip64 ? LIMIT32 : 0);
    put32(h + 22, zip64 ? LIMIT32 : 0);
    put16(h + 26, len);
    put16(h + 28, zip64 ? 20 : 0);
    if (zip64) {
        put16(h + 30, ZIP64_EXTRA_ID);
        put16(h + 32, 16);
        put64(h + 34, 0);
        put64(h + 42, 0);
    }
    if ((st = emit(z, h, 30, err)) != CP_OK || (st = emit(z, name, len, err)) != CP_OK)
        return st;
    return zip64 ? emit(z, h + 30, 20, err) : CP_OK;
}

cp_status film_zip_write(film_zip *z, const void *data, size_t len, cp_error *err)
{
    zip_entry *e;
    cp_status st;

    if (!z->open)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no entry is open");
    e = &z->entries[z->count - 1];
    if (!e->zip64_local && e->size + len >= LIMIT32) {
        z->failed = CP_ERR_LIMIT;
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "an entry outgrew its size hint past 4 GiB");
    }
    if ((st = emit(z, data, len, err)) != CP_OK)
        return st;
    e->crc = film_zip_crc32(e->crc, data, len);
    e->size += len;
    return CP_OK;
}

cp_status film_zip_end(film_zip *z, cp_error *err)
{
    uint8_t d[24];
    zip_entry *e;

    if (!z->open)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no entry is open");
    e = &z->entries[z->count - 1];
    z->open = false;
    put32(d, SIG_DESCRIPTOR);
    put32(d + 4, e->crc);
    if (e->zip64_local) {
        put64(d + 8, e->size);
        put64(d + 16, e->size);
        return emit(z, d, 24, err);
    }
    put32(d + 8, e->size);
    put32(d + 12, e->size);
    return emit(z, d, 16, err);
}

/* One central directory header with its name and, when needed, its ZIP64 extra. */
static cp_status write_central(film_zip *z, const zip_entry *e, cp_error *err)
{
    uint8_t h[46], x[4 + 24];
    size_t len = strlen(e->name), xlen = 4;
    bool big_size = e->size >= z->limit, big_offset = e->offset >= z->limit;
    bool zip64 = big_size || big_offset || e->zip64_local;
    cp_status st;

    /* 4.5.3: only the fields whose header value is 0xFFFFFFFF, in this order. */
    if (big_size) {
        put64(x + xlen, e->size);
        put64(x + xlen + 8, e->size);
        xlen += 16;
    }
    if (big_offset) {
        put64(x + xlen, e->offset);
        xlen += 8;
    }
    put16(x, ZIP64_EXTRA_ID);
    put16(x + 2, xlen - 4);

    put32(h, SIG_CENTRAL);
    put16(h + 4, VERSION_MADE_BY);
    put16(h + 6, zip64 ? VERSION_ZIP64 : VERSION_PLAIN);
    put16(h + 8, FLAG_DESCRIPTOR | FLAG_UTF8);
    put16(h + 10, 0);
    put16(h + 12, z->dos_time);
    put16(h + 14, z->dos_date);
    put32(h + 16, e->crc);
    put32(h + 20, big_size ? LIMIT32 : e->size);
    put32(h + 24, big_size ? LIMIT32 : e->size);
    put16(h + 28, len);
    put16(h + 30, xlen > 4 ? xlen : 0);
    put16(h + 32, 0);                           /* comment */
    put16(h + 34, 0);                           /* disk */
    put16(h + 36, 0);                           /* internal attributes: binary */
    put32(h + 38, EXTERNAL_ATTRS);
    put32(h + 42, big_offset ? LIMIT32 : e->offset);
    if ((st = emit(z, h, sizeof(h), err)) != CP_OK || (st = emit(z, e->name, len, err)) != CP_OK)
        return st;
    return xlen > 4 ? emit(z, x, xlen, err) : CP_OK;
}

cp_status film_zip_finish(film_zip *z, cp_error *err)
{
    uint8_t r[56], loc[20], end[22];
    uint64_t cd_offset, cd_size, zip64_end;
    bool zip64;
    cp_status st;

    if (z->open || z->finished)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "an entry is still open, or the archive is finished");
    cd_offset = z->offset;
    for (size_t i = 0; i < z->count; i++)
        if ((st = write_central(z, &z->entries[i], err)) != CP_OK)
            return st;
    cd_size = z->offset - cd_offset;
    zip64 = z->count >= z->limit16 || cd_offset >= z->limit || cd_size >= z->limit;
    if (zip64) {
        zip64_end = z->offset;
        put32(r, SIG_ZIP64_END);
        put64(r + 4, sizeof(r) - 12);           /* the record's size after this field */
        put16(r + 12, VERSION_MADE_BY);
        put16(r + 14, VERSION_ZIP64);
        put32(r + 16, 0);                       /* this disk */
        put32(r + 20, 0);                       /* the central directory's disk */
        put64(r + 24, z->count);
        put64(r + 32, z->count);
        put64(r + 40, cd_size);
        put64(r + 48, cd_offset);
        put32(loc, SIG_ZIP64_LOCATOR);
        put32(loc + 4, 0);
        put64(loc + 8, zip64_end);
        put32(loc + 16, 1);                     /* disks */
        if ((st = emit(z, r, sizeof(r), err)) != CP_OK ||
            (st = emit(z, loc, sizeof(loc), err)) != CP_OK)
            return st;
    }
    put32(end, SIG_END);
    put16(end + 4, 0);
    put16(end + 6, 0);
    put16(end + 8, zip64 ? LIMIT16 : z->count);
    put16(end + 10, zip64 ? LIMIT16 : z->count);
    put32(end + 12, zip64 ? LIMIT32 : cd_size);
    put32(end + 16, zip64 ? LIMIT32 : cd_offset);
    put16(end + 20, 0);                         /* comment */
    if ((st = emit(z, end, sizeof(end), err)) != CP_OK)
        return st;
    z->finished = true;
    return CP_OK;
}
