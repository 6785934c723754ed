/*
 * zipstream.h - a ZIP archive (PKWARE APPNOTE 6.3) written front to back
 * through a sink, for the patient's download of a whole study: nothing is
 * sought back, so the archive can go out over HTTP as it is made.
 *
 * Entries are stored (method 0): DICOM pixel data, mostly compressed or
 * noisy already, gains little from deflate, and storing keeps the CPU free.
 * Each entry's CRC-32 and sizes are counted while its bytes pass and
 * written after them in a data descriptor (general purpose bit 3); names
 * are UTF-8 (bit 11). ZIP64 extra fields and end records are used where a
 * size, an offset or the entry count passes the 32-bit (16-bit) fields, so
 * a study of more than 4 GiB or 65535 files makes a valid archive.
 *
 * What stays in memory is one central directory record per entry (its name
 * and a few numbers), never an entry's bytes.
 */
#ifndef CP_FILM_ZIPSTREAM_H
#define CP_FILM_ZIPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The longest entry name accepted, in bytes. */
#define FILM_ZIP_NAME_MAX 255

/* Entries in one archive at most (the central directory is kept in memory). */
#define FILM_ZIP_ENTRIES_MAX 1000000

/* Where the archive's bytes go, in order; a failure ends the archive. */
typedef struct film_zip_sink {
    cp_status (*write)(void *ctx, const void *data, size_t len);
    void *ctx;
} film_zip_sink;

typedef struct film_zip_options {
    /*
     * Values at or above this go to ZIP64 fields (0: the format's own limit,
     * 0xFFFFFFFF; entry counts 0xFFFF). Tests lower it to make ZIP64
     * archives of a few bytes.
     */
    uint64_t zip64_limit;
    /* The entries' modification time, seconds since 1970 UTC (0: now). */
    int64_t mtime_s;
} film_zip_options;

typedef struct film_zip film_zip;

/* A new archive writing to sink (copied); opts may be NULL. *out is freed by film_zip_free. */
cp_status film_zip_open(const film_zip_sink *sink, const film_zip_options *opts, film_zip **out,
                        cp_error *err);

/*
 * Starts an entry named name (UTF-8, '/' separated, no leading '/', no ".."
 * component). size_hint is the entry's size when known, else UINT64_MAX:
 * an entry that may reach the limit gets ZIP64 sizes in its data
 * descriptor. CP_ERR_INVALID for a bad name or while an entry is open;
 * CP_ERR_LIMIT past FILM_ZIP_ENTRIES_MAX.
 */
cp_status film_zip_begin(film_zip *z, const char *name, uint64_t size_hint, cp_error *err);

/* Appends len bytes to the open entry. CP_ERR_LIMIT when more than size_hint allowed for. */
cp_status film_zip_write(film_zip *z, const void *data, size_t len, cp_error *err);

/* Ends the open entry: its data descriptor is written. */
cp_status film_zip_end(film_zip *z, cp_error *err);

/* Writes the central directory and the end records; the archive is complete. */
cp_status film_zip_finish(film_zip *z, cp_error *err);

/* Bytes written to the sink so far. */
uint64_t film_zip_offset(const film_zip *z);

/* Entries begun so far. */
size_t film_zip_count(const film_zip *z);

void film_zip_free(film_zip *z);

/* CRC-32 (ISO 3309, as ZIP uses it) of len bytes continuing from crc (0 to start). */
uint32_t film_zip_crc32(uint32_t crc, const void *data, size_t len);

#endif
