/*
 * zipwalk.c - walks the entries of a ZIP archive (zipwalk.h) with libzip,
 * which inflates each entry as it is read (APPNOTE.TXT 4.3). Encrypted
 * entries cannot be read without a password and fail their read.
 */
#include <string.h>
#include <zip.h>

#include "core/limits.h"
#include "ingest/zipwalk.h"

struct zipwalk_reader {
    zip_file_t *file;
    uint64_t done;
};

bool zipwalk_is_zip(const void *head, size_t len)
{
    return len >= 4 && memcmp(head, "PK\003\004", 4) == 0;
}

cp_status zipwalk_read(zipwalk_reader *r, void *buf, size_t len, size_t *got, cp_error *err)
{
    zip_int64_t n = zip_fread(r->file, buf, len);

    *got = 0;
    if (n < 0)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "zip entry: %s", zip_file_strerror(r->file));
    if (r->done + (uint64_t)n > INGEST_ZIP_ENTRY_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "zip entry inflates past %llu bytes",
                            (unsigned long long)INGEST_ZIP_ENTRY_MAX);
    r->done += (uint64_t)n;
    *got = (size_t)n;
    return CP_OK;
}

static cp_status walk_entry(zip_t *za, zip_uint64_t i, zipwalk_fn fn, void *ctx,
                            cp_error *err)
{
    zip_stat_t zs;
    zipwalk_entry e;
    zipwalk_reader r;
    size_t len;
    cp_status st;

    zip_stat_init(&zs);
    if (zip_stat_index(za, i, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_NAME))
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "zip entry %llu: %s", (unsigned long long)i, zip_strerror(za));
    len = strlen(zs.name);
    if (len == 0 || zs.name[len - 1] == '/')
        return CP_OK;
    if ((zs.valid & ZIP_STAT_SIZE) && zs.size > INGEST_ZIP_ENTRY_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "zip entry declares %llu bytes", (unsigned long long)zs.size);

    r.done = 0;
    r.file = zip_fopen_index(za, i, 0);
    if (r.file == NULL)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "zip entry %llu: %s", (unsigned long long)i, zip_strerror(za));
    e.name = zs.name;
    e.index = i;
    e.size = (zs.valid & ZIP_STAT_SIZE) ? zs.size : 0;
    st = fn(ctx, &e, &r);
    zip_fclose(r.file);
    return st;
}

cp_status zipwalk_file(const char *path, zipwalk_fn fn, void *ctx, cp_error *err)
{
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &zerr);
    zip_int64_t count;
    cp_status st = CP_OK;

    if (za == NULL) {
        zip_error_t ze;

        zip_error_init_with_code(&ze, zerr);
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "zip: %s", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    count = zip_get_num_entries(za, 0);
    if (count < 0 || (zip_uint64_t)count > INGEST_ZIP_ENTRIES_MAX) {
        st = cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "zip archive with %lld entries", (long long)count);
        goto done;
    }
    for (zip_uint64_t i = 0; i < (zip_uint64_t)count && st == CP_OK; i++)
        st = walk_entry(za, i, fn, ctx, err);

done:
    zip_discard(za);
    return st;
}
