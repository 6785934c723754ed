/*
 * store.h - the blob store: where the bytes of instances, reports and
 * rendered images live, addressed by key.
 *
 * A key is a relative path ("studies/1.2.3/4.5.6.dcm"): bytes 0-9, A-Z, a-z,
 * '.', '_', '-' and '/' separators, no empty, "." or ".." component, at most
 * STORE_KEY_MAX bytes. The store does not interpret keys; the archive
 * chooses them.
 *
 * Blobs are written by streaming: begin, write any number of chunks, then
 * commit. Commit is the durability point: when it returns CP_OK the blob is
 * on stable storage under its key, whole, and survives a crash; before it
 * returns, a crash leaves nothing visible under the key (at most a temporary
 * file that store_repair removes). Abort throws a blob away.
 *
 * A store is a small table of functions (store_backend) over an
 * implementation: the local filesystem (store_fs.c) is the default; an
 * S3-compatible object store is another backend behind the same table.
 * A store is safe to use from several threads at once; a writer or a reader
 * belongs to one thread at a time.
 */
#ifndef CP_STORE_H
#define CP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define STORE_KEY_MAX 512

typedef struct store store;
typedef struct store_writer store_writer;
typedef struct store_reader store_reader;

enum {
    /* Commit fails with CP_ERR_EXISTS instead of replacing a blob already under the key. */
    STORE_NO_REPLACE = 1u << 0,
};

typedef struct store_repair_report {
    uint64_t temporaries_removed;   /* half-written blobs a crash left behind */
    uint64_t bytes_freed;
} store_repair_report;

/* What a backend implements; `impl` is the backend's own state. */
typedef struct store_backend {
    const char *name;
    cp_status (*begin)(void *impl, const char *key, unsigned flags, store_writer **out,
                       cp_error *err);
    cp_status (*write)(store_writer *w, const void *data, size_t len, cp_error *err);
    cp_status (*commit)(store_writer *w, cp_error *err);
    void (*abort)(store_writer *w);
    cp_status (*open)(void *impl, const char *key, store_reader **out, cp_error *err);
    cp_status (*read)(store_reader *r, void *buf, size_t len, size_t *got, cp_error *err);
    cp_status (*pread)(store_reader *r, uint64_t offset, void *buf, size_t len, size_t *got,
                       cp_error *err);
    uint64_t (*size)(const store_reader *r);
    int (*fd)(const store_reader *r);
    void (*close)(store_reader *r);
    cp_status (*stat)(void *impl, const char *key, uint64_t *size, cp_error *err);
    cp_status (*remove)(void *impl, const char *key, cp_error *err);
    cp_status (*repair)(void *impl, int64_t min_age_seconds, store_repair_report *report,
                        cp_error *err);
    void (*destroy)(void *impl);
} store_backend;

/*
 * A store over a backend; the store owns impl and calls backend->destroy on
 * it. NULL on OOM (impl is destroyed then too).
 */
store *store_create(const store_backend *backend, void *impl);

/*
 * The filesystem store rooted at `root` (created if missing, with its
 * parents). Blobs are files under root named by their key.
 */
cp_status store_open_fs(const char *root, store **out, cp_error *err);

void store_destroy(store *st);

/* The backend's name ("fs"). */
const char *store_backend_name(const store *st);

/* Whether key is a valid key (see above). */
bool store_key_is_valid(const char *key);

/*
 * Backends embed these as the first member of their writers and readers, so
 * that the front dispatches on them without knowing the backend's structures.
 */
struct store_writer {
    const store_backend *backend;
};

struct store_reader {
    const store_backend *backend;
};

/* Starts a blob under key; nothing is visible under key until commit. */
cp_status store_begin(store *st, const char *key, unsigned flags, store_writer **out,
                      cp_error *err);

/* Appends len bytes to the blob. */
cp_status store_write(store_writer *w, const void *data, size_t len, cp_error *err);

/*
 * Makes the blob durable under its key and frees the writer, whatever the
 * outcome. On failure nothing is visible under the key (a blob already
 * there stays as it was).
 */
cp_status store_commit(store_writer *w, cp_error *err);

/* Throws the blob away and frees the writer. NULL is allowed. */
void store_abort(store_writer *w);

/* Opens the blob under key for reading; CP_ERR_NOT_FOUND if there is none. */
cp_status store_open(store *st, const char *key, store_reader **out, cp_error *err);

/* Reads up to len bytes from the current position; *got < len only at the end. */
cp_status store_read(store_reader *r, void *buf, size_t len, size_t *got, cp_error *err);

/* Reads up to len bytes at offset without moving the position. */
cp_status store_pread(store_reader *r, uint64_t offset, void *buf, size_t len, size_t *got,
                      cp_error *err);

/* The blob's size in bytes. */
uint64_t store_reader_size(const store_reader *r);

/* A file descriptor for zero-copy sending (sendfile), or -1 when the backend has none. */
int store_reader_fd(const store_reader *r);

/* Closes the reader. NULL is allowed. */
void store_close(store_reader *r);

/* The size of the blob under key; CP_ERR_NOT_FOUND if there is none. */
cp_status store_stat(store *st, const char *key, uint64_t *size, cp_error *err);

/* Removes the blob under key durably; CP_ERR_NOT_FOUND if there is none. */
cp_status store_remove(store *st, const char *key, cp_error *err);

/*
 * Removes what interrupted writes left behind: temporaries older than
 * min_age_seconds (0 at a start-up where no other process shares the store;
 * longer when several processes write to it). report may be NULL.
 */
cp_status store_repair(store *st, int64_t min_age_seconds, store_repair_report *report,
                       cp_error *err);

#endif
