/*
 * store.c - the blob store's front: key checks, then the backend's table.
 */
#include "store/store.h"

#include <string.h>

#include "core/alloc.h"

struct store {
    const store_backend *backend;
    void *impl;
};

store *store_create(const store_backend *backend, void *impl)
{
    store *st = cp_calloc(1, sizeof *st);

    if (st == NULL) {
        backend->destroy(impl);
        return NULL;
    }
    st->backend = backend;
    st->impl = impl;
    return st;
}

void store_destroy(store *st)
{
    if (st == NULL)
        return;
    st->backend->destroy(st->impl);
    cp_free(st);
}

const char *store_backend_name(const store *st)
{
    return st->backend->name;
}

static bool key_char_ok(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           c == '.' || c == '_' || c == '-';
}

bool store_key_is_valid(const char *key)
{
    size_t len, start = 0;

    if (key == NULL)
        return false;
    len = strnlen(key, STORE_KEY_MAX + 1);
    if (len == 0 || len > STORE_KEY_MAX)
        return false;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && key[i] != '/') {
            if (!key_char_ok(key[i]))
                return false;
            continue;
        }
        /* A component ends here: it must not be empty, "." or "..". */
        size_t clen = i - start;
        if (clen == 0 || (clen == 1 && key[start] == '.') ||
            (clen == 2 && key[start] == '.' && key[start + 1] == '.'))
            return false;
        start = i + 1;
    }
    return true;
}

static cp_status store_check_key(const char *key, cp_error *err)
{
    if (store_key_is_valid(key))
        return CP_OK;
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "invalid blob key");
}

cp_status store_begin(store *st, const char *key, unsigned flags, store_writer **out,
                      cp_error *err)
{
    cp_status rc = store_check_key(key, err);

    *out = NULL;
    if (rc != CP_OK)
        return rc;
    return st->backend->begin(st->impl, key, flags, out, err);
}

cp_status store_write(store_writer *w, const void *data, size_t len, cp_error *err)
{
    if (len == 0)
        return CP_OK;
    return w->backend->write(w, data, len, err);
}

cp_status store_commit(store_writer *w, cp_error *err)
{
    return w->backend->commit(w, err);
}

void store_abort(store_writer *w)
{
    if (w != NULL)
        w->backend->abort(w);
}

cp_status store_open(store *st, const char *key, store_reader **out, cp_error *err)
{
    cp_status rc = store_check_key(key, err);

    *out = NULL;
    if (rc != CP_OK)
        return rc;
    return st->backend->open(st->impl, key, out, err);
}

cp_status store_read(store_reader *r, void *buf, size_t len, size_t *got, cp_error *err)
{
    return r->backend->read(r, buf, len, got, err);
}

cp_status store_pread(store_reader *r, uint64_t offset, void *buf, size_t len, size_t *got,
                      cp_error *err)
{
    return r->backend->pread(r, offset, buf, len, got, err);
}

uint64_t store_reader_size(const store_reader *r)
{
    return r->backend->size(r);
}

int store_reader_fd(const store_reader *r)
{
    return r->backend->fd != NULL ? r->backend->fd(r) : -1;
}

void store_close(store_reader *r)
{
    if (r != NULL)
        r->backend->close(r);
}

cp_status store_stat(store *st, const char *key, uint64_t *size, cp_error *err)
{
    cp_status rc = store_check_key(key, err);

    if (rc != CP_OK)
        return rc;
    return st->backend->stat(st->impl, key, size, err);
}

cp_status store_remove(store *st, const char *key, cp_error *err)
{
    cp_status rc = store_check_key(key, err);

    if (rc != CP_OK)
        return rc;
    return st->backend->remove(st->impl, key, err);
}

cp_status store_repair(store *st, int64_t min_age_seconds, store_repair_report *report,
                       cp_error *err)
{
    store_repair_report local = { 0, 0 };

    return st->backend->repair(st->impl, min_age_seconds, report != NULL ? report : &local,
                               err);
}
