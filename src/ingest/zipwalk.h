/*
 * zipwalk.h - the entries of a ZIP archive (APPNOTE.TXT, through libzip),
 * one after the other, each read in chunks so that an entry is never held
 * whole in memory. Clinics send studies zipped; the intake unpacks them
 * entry by entry into the archive pipeline.
 *
 * Guards: at most INGEST_ZIP_ENTRIES_MAX entries are visited, and an entry
 * whose inflated bytes pass INGEST_ZIP_ENTRY_MAX (declared or actual) fails
 * with CP_ERR_LIMIT, so that a ZIP bomb costs no more than its limit.
 */
#ifndef CP_INGEST_ZIPWALK_H
#define CP_INGEST_ZIPWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct zipwalk_reader zipwalk_reader;

typedef struct zipwalk_entry {
    const char *name;           /* as stored in the archive, '/'-separated */
    uint64_t index;
    uint64_t size;              /* declared inflated size */
} zipwalk_entry;

/*
 * Called per file entry (folders left out), with a reader for its bytes.
 * A status other than CP_OK stops the walk and is returned.
 */
typedef cp_status (*zipwalk_fn)(void *ctx, const zipwalk_entry *entry, zipwalk_reader *r);

/* Whether the first bytes of a file are a ZIP local file header ("PK\3\4"). */
bool zipwalk_is_zip(const void *head, size_t len);

/* Reads the next up to len bytes of the entry; *got is 0 at its end. */
cp_status zipwalk_read(zipwalk_reader *r, void *buf, size_t len, size_t *got, cp_error *err);

/* Walks the archive in the file at path. CP_ERR_MALFORMED when it is not a readable ZIP. */
cp_status zipwalk_file(const char *path, zipwalk_fn fn, void *ctx, cp_error *err);

#endif
