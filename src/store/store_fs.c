/*
 * store_fs.c - the filesystem backend of the blob store.
 *
 * A blob with key "a/b/c.dcm" is the file ROOT/a/b/c.dcm. It is written as
 * ROOT/a/b/.tmp-c.dcm-XXXXXX, fsynced, renamed into place and the directory
 * fsynced, in that order, so that after a crash the key holds either the
 * whole old blob, the whole new one, or nothing; never a part. Directories
 * created on the way are fsynced into their parents too. Temporaries start
 * with ".tmp-", which no valid key component can produce as a final name
 * because repair removes them.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

#define FS_TMP_PREFIX ".tmp-"

typedef struct fs_store {
    char *root;
    int root_fd;
} fs_store;

typedef struct fs_writer {
    store_writer base;
    fs_store *fs;
    int fd;
    unsigned flags;
    char *path;         /* final path, relative to root */
    char *tmp_path;     /* temporary path, relative to root */
} fs_writer;

typedef struct fs_reader {
    store_reader base;
    int fd;
    uint64_t size;
} fs_reader;

static const store_backend fs_backend;

static cp_status fs_errno(cp_error *err, const char *call, const char *path, int code)
{
    cp_status st = code == ENOENT ? CP_ERR_NOT_FOUND : code == EEXIST ? CP_ERR_EXISTS
                                                                      : CP_ERR_IO;

    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s(\"%s\") failed: %s",
                        call, path, strerror(code));
}

/* fsync on a directory, relative to the store's root. */
static cp_status fs_sync_dir(fs_store *fs, const char *dir, cp_error *err)
{
    int fd = openat(fs->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return fs_errno(err, "open", dir, errno);
    rc = fsync(fd);
    close(fd);
    if (rc != 0)
        return fs_errno(err, "fsync", dir, errno);
    return CP_OK;
}

/* The directory part of a relative path ("." for none), in out. */
static void fs_dirname(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        snprintf(out, size, ".");
        return;
    }
    snprintf(out, size, "%.*s", (int)(slash - path), path);
}

/*
 * Creates the directories leading to a key, fsyncing each new one into its
 * parent so that the blob's directory entry cannot vanish in a crash.
 */
static cp_status fs_make_parents(fs_store *fs, const char *key, cp_error *err)
{
    char path[STORE_KEY_MAX + 1], parent[STORE_KEY_MAX + 1];
    cp_status st;

    snprintf(path, sizeof path, "%s", key);
    for (char *p = strchr(path, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdirat(fs->root_fd, path, 0750) == 0) {
            fs_dirname(path, parent, sizeof parent);
            st = fs_sync_dir(fs, parent, err);
            if (st != CP_OK)
                return st;
        } else if (errno != EEXIST) {
            return fs_errno(err, "mkdir", path, errno);
        }
        *p = '/';
    }
    return CP_OK;
}

static char *fs_tmp_name(const char *key)
{
    const char *slash = strrchr(key, '/');
    size_t dir_len = slash != NULL ? (size_t)(slash - key + 1) : 0;
    size_t size = strlen(key) + sizeof FS_TMP_PREFIX + 8;
    char *tmp = cp_malloc(size);

    if (tmp == NULL)
        return NULL;
    snprintf(tmp, size, "%.*s" FS_TMP_PREFIX "%s-XXXXXX", (int)dir_len, key, key + dir_len);
    return tmp;
}

static cp_status fs_begin(void *impl, const char *key, unsigned flags, store_writer **out,
                          cp_error *err)
{
    fs_store *fs = impl;
    fs_writer *w = cp_calloc(1, sizeof *w);
    cp_status st;
    char full[PATH_MAX];

    if (w == NULL)
        return CP_ERR_NOMEM;
    w->base.backend = &fs_backend;
    w->fs = fs;
    w->fd = -1;
    w->flags = flags;
    w->path = cp_strdup(key);
    w->tmp_path = fs_tmp_name(key);
    if (w->path == NULL || w->tmp_path == NULL) {
        st = CP_ERR_NOMEM;
        goto fail;
    }

    st = fs_make_parents(fs, key, err);
    if (st != CP_OK)
        goto fail;

    /* mkstemp wants a full path; the name it picks is kept relative to root. */
    if ((size_t)snprintf(full, sizeof full, "%s/%s", fs->root, w->tmp_path) >= sizeof full) {
        st = cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "blob path too long");
        goto fail;
    }
    w->fd = mkostemp(full, O_CLOEXEC);
    if (w->fd < 0) {
        st = fs_errno(err, "mkstemp", w->tmp_path, errno);
        goto fail;
    }
    memcpy(w->tmp_path + strlen(w->tmp_path) - 6, full + strlen(full) - 6, 6);
    *out = &w->base;
    return CP_OK;

fail:
    cp_free(w->path);
    cp_free(w->tmp_path);
    cp_free(w);
    return st;
}

static cp_status fs_write(store_writer *base, const void *data, size_t len, cp_error *err)
{
    fs_writer *w = (fs_writer *)base;
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = write(w->fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fs_errno(err, "write", w->tmp_path, errno);
        }
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

static void fs_writer_free(fs_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    cp_free(w->path);
    cp_free(w->tmp_path);
    cp_free(w);
}

static void fs_abort(store_writer *base)
{
    fs_writer *w = (fs_writer *)base;

    unlinkat(w->fs->root_fd, w->tmp_path, 0);
    fs_writer_free(w);
}

static cp_status fs_commit(store_writer *base, cp_error *err)
{
    fs_writer *w = (fs_writer *)base;
    char dir[STORE_KEY_MAX + 1];
    cp_status st;
    int rc;

    if (fsync(w->fd) != 0) {
        st = fs_errno(err, "fsync", w->tmp_path, errno);
        goto fail;
    }
    rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) {
        st = fs_errno(err, "close", w->tmp_path, errno);
        goto fail;
    }

    if (w->flags & STORE_NO_REPLACE)
        rc = renameat2(w->fs->root_fd, w->tmp_path, w->fs->root_fd, w->path, RENAME_NOREPLACE);
    else
        rc = renameat(w->fs->root_fd, w->tmp_path, w->fs->root_fd, w->path);
    if (rc != 0) {
        st = fs_errno(err, "rename", w->path, errno);
        goto fail;
    }

    fs_dirname(w->path, dir, sizeof dir);
    st = fs_sync_dir(w->fs, dir, err);
    fs_writer_free(w);
    return st;

fail:
    fs_abort(base);
    return st;
}

static cp_status fs_open(void *impl, const char *key, store_reader **out, cp_error *err)
{
    fs_store *fs = impl;
    fs_reader *r;
    struct stat sb;
    int fd = openat(fs->root_fd, key, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return fs_errno(err, "open", key, errno);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "\"%s\" is not a blob", key);
    }
    r = cp_calloc(1, sizeof *r);
    if (r == NULL) {
        close(fd);
        return CP_ERR_NOMEM;
    }
    r->base.backend = &fs_backend;
    r->fd = fd;
    r->size = (uint64_t)sb.st_size;
    *out = &r->base;
    return CP_OK;
}

static cp_status fs_read(store_reader *base, void *buf, size_t len, size_t *got, cp_error *err)
{
    fs_reader *r = (fs_reader *)base;
    size_t total = 0;

    while (total < len) {
        ssize_t n = read(r->fd, (uint8_t *)buf + total, len - total);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fs_errno(err, "read", "blob", errno);
        }
        if (n == 0)
            break;
        total += (size_t)n;
    }
    *got = total;
    return CP_OK;
}

static cp_status fs_pread(store_reader *base, uint64_t offset, void *buf, size_t len,
                          size_t *got, cp_error *err)
{
    fs_reader *r = (fs_reader *)base;
    size_t total = 0;

    while (total < len) {
        ssize_t n = pread(r->fd, (uint8_t *)buf + total, len - total, (off_t)(offset + total));

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fs_errno(err, "pread", "blob", errno);
        }
        if (n == 0)
            break;
        total += (size_t)n;
    }
    *got = total;
    return CP_OK;
}

static uint64_t fs_size(const store_reader *base)
{
    return ((const fs_reader *)base)->size;
}

static int fs_fd(const store_reader *base)
{
    return ((const fs_reader *)base)->fd;
}

static void fs_close(store_reader *base)
{
    fs_reader *r = (fs_reader *)base;

    close(r->fd);
    cp_free(r);
}

static cp_status fs_stat(void *impl, const char *key, uint64_t *size, cp_error *err)
{
    fs_store *fs = impl;
    struct stat sb;

    if (fstatat(fs->root_fd, key, &sb, 0) != 0)
        return fs_errno(err, "stat", key, errno);
    if (!S_ISREG(sb.st_mode))
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "\"%s\" is not a blob", key);
    *size = (uint64_t)sb.st_size;
    return CP_OK;
}

static cp_status fs_remove(void *impl, const char *key, cp_error *err)
{
    fs_store *fs = impl;
    char dir[STORE_KEY_MAX + 1];

    if (unlinkat(fs->root_fd, key, 0) != 0)
        return fs_errno(err, "unlink", key, errno);
    fs_dirname(key, dir, sizeof dir);
    return fs_sync_dir(fs, dir, err);
}

/* Walks one directory (fd owned here), removing old temporaries; recursion is by depth of keys. */
static cp_status fs_repair_dir(int dir_fd, time_t cutoff, store_repair_report *report,
                               unsigned depth, cp_error *err)
{
    DIR *dir = fdopendir(dir_fd);
    struct dirent *ent;
    struct stat sb;
    cp_status st = CP_OK;

    if (dir == NULL) {
        close(dir_fd);
        return fs_errno(err, "opendir", "store", errno);
    }

    while ((ent = readdir(dir)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(dir), ent->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            continue;

        if (S_ISDIR(sb.st_mode) && depth < STORE_KEY_MAX / 2) {
            int child = openat(dirfd(dir), ent->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

            if (child < 0)
                continue;
            st = fs_repair_dir(child, cutoff, report, depth + 1, err);
            if (st != CP_OK)
                break;
        } else if (S_ISREG(sb.st_mode) &&
                   strncmp(ent->d_name, FS_TMP_PREFIX, sizeof FS_TMP_PREFIX - 1) == 0 &&
                   sb.st_mtime <= cutoff) {
            if (unlinkat(dirfd(dir), ent->d_name, 0) == 0) {
                report->temporaries_removed++;
                report->bytes_freed += (uint64_t)sb.st_size;
            }
        }
    }
    closedir(dir);
    return st;
}

static cp_status fs_repair(void *impl, int64_t min_age_seconds, store_repair_report *report,
                           cp_error *err)
{
    fs_store *fs = impl;
    int fd = openat(fs->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return fs_errno(err, "open", fs->root, errno);
    return fs_repair_dir(fd, time(NULL) - (time_t)min_age_seconds, report, 0, err);
}

static void fs_destroy(void *impl)
{
    fs_store *fs = impl;

    if (fs == NULL)
        return;
    if (fs->root_fd >= 0)
        close(fs->root_fd);
    cp_free(fs->root);
    cp_free(fs);
}

static const store_backend fs_backend = {
    .name = "fs",
    .begin = fs_begin,
    .write = fs_write,
    .commit = fs_commit,
    .abort = fs_abort,
    .open = fs_open,
    .read = fs_read,
    .pread = fs_pread,
    .size = fs_size,
    .fd = fs_fd,
    .close = fs_close,
    .stat = fs_stat,
    .remove = fs_remove,
    .repair = fs_repair,
    .destroy = fs_destroy,
};

/* mkdir -p for the root itself, which may be an absolute path outside any store. */
static cp_status fs_make_root(const char *root, cp_error *err)
{
    char path[PATH_MAX];
    size_t len = strlen(root);

    if (len == 0 || len >= sizeof path)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "bad store root");
    memcpy(path, root, len + 1);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return fs_errno(err, "mkdir", path, errno);
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return fs_errno(err, "mkdir", path, errno);
    return CP_OK;
}

cp_status store_open_fs(const char *root, store **out, cp_error *err)
{
    fs_store *fs;
    cp_status st;

    *out = NULL;
    st = fs_make_root(root, err);
    if (st != CP_OK)
        return st;

    fs = cp_calloc(1, sizeof *fs);
    if (fs == NULL)
        return CP_ERR_NOMEM;
    fs->root_fd = -1;
    fs->root = cp_strdup(root);
    if (fs->root == NULL) {
        fs_destroy(fs);
        return CP_ERR_NOMEM;
    }
    fs->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->root_fd < 0) {
        st = fs_errno(err, "open", root, errno);
        fs_destroy(fs);
        return st;
    }

    *out = store_create(&fs_backend, fs);
    return *out != NULL ? CP_OK : CP_ERR_NOMEM;
}
