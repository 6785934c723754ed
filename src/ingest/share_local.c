/*
 * share_local.c - the share backend for a local folder (share.h): POSIX
 * calls on paths below the root. Written files are fsynced before close
 * reports success, so that a renamed export is complete on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "ingest/share_backend.h"

typedef struct local_share {
    char root[INGEST_PATH_MAX];
} local_share;

typedef struct local_file {
    int fd;
    bool write;
} local_file;

static cp_status os_error(cp_error *err, const char *call, const char *path)
{
    cp_status st = errno == ENOENT ? CP_ERR_NOT_FOUND
                 : errno == ENOMEM ? CP_ERR_NOMEM
                 : errno == EACCES || errno == EPERM ? CP_ERR_FORBIDDEN : CP_ERR_IO;

    /* Paths below the root may name patients: the detail goes to logs, so not them. */
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s %s: %s", call,
                        path[0] != '\0' ? "(below the root)" : "(the root folder)",
                        strerror(errno));
}

static cp_status full_path(const local_share *ls, const char *path, char *out, size_t size,
                           cp_error *err)
{
    int n = snprintf(out, size, "%s%s%s", ls->root, path[0] != '\0' ? "/" : "", path);

    if (n < 0 || (size_t)n >= size)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "path too long");
    return CP_OK;
}

static int64_t mtime_us(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000 + sb->st_mtim.tv_nsec / 1000;
}

static cp_status local_check(void *impl, cp_error *err)
{
    local_share *ls = impl;
    struct stat sb;

    if (stat(ls->root, &sb) != 0)
        return os_error(err, "stat", "");
    if (!S_ISDIR(sb.st_mode))
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "\"%s\" is not a folder", ls->root);
    return CP_OK;
}

static void local_reset(void *impl)
{
    (void)impl;
}

static cp_status local_list(void *impl, const char *path, share_list_fn fn, void *ctx,
                            cp_error *err)
{
    local_share *ls = impl;
    char dir[INGEST_PATH_MAX];
    DIR *d;
    struct dirent *de;
    cp_status st;

    st = full_path(ls, path, dir, sizeof dir, err);
    if (st != CP_OK)
        return st;
    d = opendir(dir);
    if (d == NULL)
        return os_error(err, "opendir", path);
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        share_entry e;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
            continue;
        e.name = de->d_name;
        e.is_dir = S_ISDIR(sb.st_mode);
        e.size = (uint64_t)sb.st_size;
        e.mtime_us = mtime_us(&sb);
        st = fn(ctx, &e);
        if (st != CP_OK)
            break;
    }
    closedir(d);
    return st;
}

static cp_status local_stat(void *impl, const char *path, share_entry *out, cp_error *err)
{
    char full[INGEST_PATH_MAX];
    struct stat sb;
    cp_status st = full_path(impl, path, full, sizeof full, err);

    if (st != CP_OK)
        return st;
    if (lstat(full, &sb) != 0)
        return os_error(err, "stat", path);
    out->name = NULL;
    out->is_dir = S_ISDIR(sb.st_mode);
    out->size = (uint64_t)sb.st_size;
    out->mtime_us = mtime_us(&sb);
    return CP_OK;
}

static cp_status local_open(void *impl, const char *path, bool write, void **file,
                            cp_error *err)
{
    char full[INGEST_PATH_MAX];
    local_file *f;
    cp_status st = full_path(impl, path, full, sizeof full, err);

    if (st != CP_OK)
        return st;
    f = cp_calloc(1, sizeof *f);
    if (f == NULL)
        return CP_ERR_NOMEM;
    f->write = write;
    f->fd = write ? open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                  : open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f->fd < 0) {
        st = os_error(err, "open", path);
        cp_free(f);
        return st;
    }
    *file = f;
    return CP_OK;
}

static cp_status local_read(void *impl, void *file, void *buf, size_t len, size_t *got,
                            cp_error *err)
{
    local_file *f = file;
    ssize_t n;

    (void)impl;
    do
        n = read(f->fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return os_error(err, "read", "file");
    *got = (size_t)n;
    return CP_OK;
}

static cp_status local_write(void *impl, void *file, const void *buf, size_t len,
                             cp_error *err)
{
    local_file *f = file;
    const char *p = buf;

    (void)impl;
    while (len > 0) {
        ssize_t n = write(f->fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return os_error(err, "write", "file");
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

static cp_status local_close(void *impl, void *file, cp_error *err)
{
    local_file *f = file;
    cp_status st = CP_OK;

    (void)impl;
    if (f->write && fsync(f->fd) != 0)
        st = os_error(err, "fsync", "file");
    if (close(f->fd) != 0 && st == CP_OK)
        st = os_error(err, "close", "file");
    cp_free(f);
    return st;
}

static cp_status local_rename(void *impl, const char *from, const char *to, cp_error *err)
{
    char a[INGEST_PATH_MAX], b[INGEST_PATH_MAX];
    cp_status st = full_path(impl, from, a, sizeof a, err);

    if (st == CP_OK)
        st = full_path(impl, to, b, sizeof b, err);
    if (st != CP_OK)
        return st;
    if (rename(a, b) != 0)
        return os_error(err, "rename", from);
    return CP_OK;
}

static cp_status local_unlink(void *impl, const char *path, cp_error *err)
{
    char full[INGEST_PATH_MAX];
    cp_status st = full_path(impl, path, full, sizeof full, err);

    if (st != CP_OK)
        return st;
    if (unlink(full) != 0 && errno != ENOENT)
        return os_error(err, "unlink", path);
    return CP_OK;
}

static cp_status local_mkdir(void *impl, const char *path, cp_error *err)
{
    char full[INGEST_PATH_MAX];
    cp_status st = full_path(impl, path, full, sizeof full, err);

    if (st != CP_OK)
        return st;
    if (mkdir(full, 0755) != 0 && errno != EEXIST)
        return os_error(err, "mkdir", path);
    return CP_OK;
}

static void local_destroy(void *impl)
{
    cp_free(impl);
}

static const share_backend local_backend = {
    .kind = "local",
    .check = local_check,
    .reset = local_reset,
    .list = local_list,
    .stat = local_stat,
    .open = local_open,
    .read = local_read,
    .write = local_write,
    .close = local_close,
    .rename = local_rename,
    .unlink = local_unlink,
    .mkdir = local_mkdir,
    .destroy = local_destroy,
};

cp_status share_local_create(const char *root, const share_backend **backend, void **impl,
                             cp_error *err)
{
    local_share *ls;
    size_t n = strlen(root);

    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n >= INGEST_PATH_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "folder path too long");
    ls = cp_calloc(1, sizeof *ls);
    if (ls == NULL)
        return CP_ERR_NOMEM;
    memcpy(ls->root, root, n);
    ls->root[n] = '\0';
    *backend = &local_backend;
    *impl = ls;
    return CP_OK;
}
