/*
 * share_backend.h - what share.c dispatches on: the table of functions each
 * kind of share implements (share_local.c, share_smb.c). Private to the
 * share module.
 */
#ifndef CP_INGEST_SHARE_BACKEND_H
#define CP_INGEST_SHARE_BACKEND_H

#include "ingest/share.h"

typedef struct share_backend {
    const char *kind;
    cp_status (*check)(void *impl, cp_error *err);
    void (*reset)(void *impl);
    cp_status (*list)(void *impl, const char *path, share_list_fn fn, void *ctx,
                      cp_error *err);
    cp_status (*stat)(void *impl, const char *path, share_entry *out, cp_error *err);
    cp_status (*open)(void *impl, const char *path, bool write, void **file, cp_error *err);
    cp_status (*read)(void *impl, void *file, void *buf, size_t len, size_t *got,
                      cp_error *err);
    cp_status (*write)(void *impl, void *file, const void *buf, size_t len, cp_error *err);
    cp_status (*close)(void *impl, void *file, cp_error *err);
    cp_status (*rename)(void *impl, const char *from, const char *to, cp_error *err);
    cp_status (*unlink)(void *impl, const char *path, cp_error *err);
    cp_status (*mkdir)(void *impl, const char *path, cp_error *err);
    void (*destroy)(void *impl);
} share_backend;

/* A local folder at root (an absolute path). */
cp_status share_local_create(const char *root, const share_backend **backend, void **impl,
                             cp_error *err);

/*
 * An SMB folder: host, port (0: 445), share name and folder inside it
 * (may be ""), with credentials (may be empty).
 */
cp_status share_smb_create(const char *host, unsigned port, const char *share_name,
                           const char *folder, const share_config *cfg,
                           const share_backend **backend, void **impl, cp_error *err);

#endif
