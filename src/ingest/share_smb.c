/*
 * share_smb.c - the share backend for a folder of a Windows (SMB2/3) share,
 * as a client through libsmbclient (MS-SMB2). One libsmbclient context per
 * share, made at the first call and freed by reset, so that a server that
 * went away and came back is reached through a fresh connection rather
 * than a cached dead one. Paths are percent-encoded into smb:// URLs, since
 * libsmbclient decodes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <libsmbclient.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "ingest/share_backend.h"

/* Milliseconds a request may take before libsmbclient gives up. */
#define SMB_TIMEOUT_DEFAULT_MS 20000

typedef struct smb_share {
    SMBCCTX *ctx;
    unsigned port;
    int timeout_ms;
    char base[INGEST_PATH_MAX];     /* smb://host/share[/folder], encoded */
    char user[256];
    char password[256];
    char domain[256];
} smb_share;

/*
 * libsmbclient keeps process-wide state (its loadparm, talloc stack frames)
 * that this build cannot make thread-safe (smbc_thread_posix is not
 * exported), so every call into it is made under this one lock. A call
 * moves at most one chunk, so sources and exports take turns fairly.
 */
static pthread_mutex_t smb_lock = PTHREAD_MUTEX_INITIALIZER;

static void smb_quiet(void *ctx, int level, const char *msg)
{
    /* libsmbclient's own diagnostics; the caller reports failures itself. */
    (void)ctx;
    (void)level;
    (void)msg;
}

/* libsmbclient asks for the credentials of each server it connects to. */
static void smb_auth(SMBCCTX *c, const char *server, const char *share_name, char *workgroup,
                     int wg_len, char *user, int user_len, char *password, int pw_len)
{
    const smb_share *ss = smbc_getOptionUserData(c);

    (void)server;
    (void)share_name;
    if (ss == NULL)
        return;
    if (ss->domain[0] != '\0')
        snprintf(workgroup, (size_t)wg_len, "%s", ss->domain);
    snprintf(user, (size_t)user_len, "%s", ss->user[0] != '\0' ? ss->user : "guest");
    snprintf(password, (size_t)pw_len, "%s", ss->password);
}

static cp_status smb_error(cp_error *err, const char *call, const char *path)
{
    int e = errno;
    cp_status st;

    switch (e) {
    case ENOENT:
        st = CP_ERR_NOT_FOUND;
        break;
    case ENOMEM:
        st = CP_ERR_NOMEM;
        break;
    case EACCES:
    case EPERM:
        st = CP_ERR_FORBIDDEN;
        break;
    case ECONNREFUSED:
    case ECONNRESET:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EPIPE:
    case ENOTCONN:
        st = CP_ERR_UNAVAILABLE;
        break;
    default:
        st = CP_ERR_IO;
        break;
    }
    /* Paths below the root may name patients: the detail goes to logs, so not them. */
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s %s: %s", call,
                        path[0] != '\0' ? "(below the root)" : "(the root folder)",
                        strerror(e));
}

/* Appends s to out percent-encoded, keeping '/' when keep_slash. */
static bool encode(char *out, size_t size, size_t *pos, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                     c == '~' || (keep_slash && c == '/');

        if (*pos + 4 >= size)
            return false;
        if (plain) {
            out[(*pos)++] = (char)c;
        } else {
            out[(*pos)++] = '%';
            out[(*pos)++] = hex[c >> 4];
            out[(*pos)++] = hex[c & 15];
        }
    }
    out[*pos] = '\0';
    return true;
}

static cp_status url_of(const smb_share *ss, const char *path, char *out, size_t size,
                        cp_error *err)
{
    size_t pos = strlen(ss->base);

    if (pos + 1 >= size)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "path too long");
    memcpy(out, ss->base, pos + 1);
    if (path[0] != '\0') {
        out[pos++] = '/';
        out[pos] = '\0';
        if (!encode(out, size, &pos, path, true))
            return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "path too long");
    }
    return CP_OK;
}

/* The context, made on first use after a reset. */
static cp_status smb_ctx(smb_share *ss, SMBCCTX **out, cp_error *err)
{
    SMBCCTX *c;

    if (ss->ctx != NULL) {
        *out = ss->ctx;
        return CP_OK;
    }
    c = smbc_new_context();
    if (c == NULL)
        return CP_ERR_NOMEM;
    smbc_setDebug(c, 0);
    smbc_setLogCallback(c, NULL, smb_quiet);
    smbc_setTimeout(c, ss->timeout_ms);
    if (ss->port != 0)
        smbc_setPort(c, (uint16_t)ss->port);
    smbc_setOptionUseKerberos(c, 0);
    smbc_setOptionFallbackAfterKerberos(c, 1);
    smbc_setOptionNoAutoAnonymousLogin(c, ss->user[0] != '\0');
    smbc_setOptionUserData(c, ss);
    smbc_setFunctionAuthDataWithContext(c, smb_auth);
    if (smbc_init_context(c) == NULL) {
        smbc_free_context(c, 1);
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "libsmbclient could not be initialised");
    }
    smbc_setOptionProtocols(c, "SMB2_02", "SMB3");
    ss->ctx = c;
    *out = c;
    return CP_OK;
}

static void smb_reset_unlocked(void *impl)
{
    smb_share *ss = impl;

    if (ss->ctx != NULL)
        smbc_free_context(ss->ctx, 1);
    ss->ctx = NULL;
}

static cp_status smb_list_unlocked(void *impl, const char *path, share_list_fn fn, void *ctx,
                          cp_error *err)
{
    smb_share *ss = impl;
    char url[INGEST_PATH_MAX * 3];
    SMBCCTX *c;
    SMBCFILE *dir;
    const struct libsmb_file_info *info;
    struct stat sb;
    cp_status st;

    st = url_of(ss, path, url, sizeof url, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    dir = smbc_getFunctionOpendir(c)(c, url);
    if (dir == NULL)
        return smb_error(err, "opendir", path);
    while ((info = smbc_getFunctionReaddirPlus2(c)(c, dir, &sb)) != NULL) {
        share_entry e;

        if (info->name == NULL || strcmp(info->name, ".") == 0 ||
            strcmp(info->name, "..") == 0)
            continue;
        e.name = info->name;
        e.is_dir = S_ISDIR(sb.st_mode);
        e.size = info->size;
        e.mtime_us = (int64_t)sb.st_mtim.tv_sec * 1000000 + sb.st_mtim.tv_nsec / 1000;
        st = fn(ctx, &e);
        if (st != CP_OK)
            break;
    }
    smbc_getFunctionClosedir(c)(c, dir);
    return st;
}

static cp_status smb_check_unlocked(void *impl, cp_error *err)
{
    smb_share *ss = impl;
    char url[INGEST_PATH_MAX * 3];
    SMBCCTX *c;
    SMBCFILE *dir;
    cp_status st;

    st = url_of(ss, "", url, sizeof url, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    dir = smbc_getFunctionOpendir(c)(c, url);
    if (dir == NULL)
        return smb_error(err, "opendir", "");
    smbc_getFunctionClosedir(c)(c, dir);
    return CP_OK;
}

static cp_status smb_stat_unlocked(void *impl, const char *path, share_entry *out, cp_error *err)
{
    smb_share *ss = impl;
    char url[INGEST_PATH_MAX * 3];
    struct stat sb;
    SMBCCTX *c;
    cp_status st;

    st = url_of(ss, path, url, sizeof url, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    if (smbc_getFunctionStat(c)(c, url, &sb) != 0)
        return smb_error(err, "stat", path);
    out->name = NULL;
    out->is_dir = S_ISDIR(sb.st_mode);
    out->size = (uint64_t)sb.st_size;
    out->mtime_us = (int64_t)sb.st_mtim.tv_sec * 1000000 + sb.st_mtim.tv_nsec / 1000;
    return CP_OK;
}

static cp_status smb_open_unlocked(void *impl, const char *path, bool write, void **file,
                          cp_error *err)
{
    smb_share *ss = impl;
    char url[INGEST_PATH_MAX * 3];
    SMBCCTX *c;
    SMBCFILE *f;
    cp_status st;

    st = url_of(ss, path, url, sizeof url, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    f = smbc_getFunctionOpen(c)(c, url, write ? O_WRONLY | O_CREAT | O_TRUNC : O_RDONLY,
                                0644);
    if (f == NULL)
        return smb_error(err, "open", path);
    *file = f;
    return CP_OK;
}

static cp_status smb_read_unlocked(void *impl, void *file, void *buf, size_t len, size_t *got,
                          cp_error *err)
{
    smb_share *ss = impl;
    ssize_t n;

    errno = 0;
    n = smbc_getFunctionRead(ss->ctx)(ss->ctx, file, buf, len);
    if (n < 0)
        return smb_error(err, "read", "file");
    *got = (size_t)n;
    return CP_OK;
}

static cp_status smb_write_unlocked(void *impl, void *file, const void *buf, size_t len,
                           cp_error *err)
{
    smb_share *ss = impl;
    const char *p = buf;

    while (len > 0) {
        ssize_t n;

        errno = 0;
        n = smbc_getFunctionWrite(ss->ctx)(ss->ctx, file, p, len);
        if (n <= 0)
            return smb_error(err, "write", "file");
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

static cp_status smb_close_unlocked(void *impl, void *file, cp_error *err)
{
    smb_share *ss = impl;

    errno = 0;
    if (ss->ctx == NULL)
        return CP_OK;
    if (smbc_getFunctionClose(ss->ctx)(ss->ctx, file) != 0)
        return smb_error(err, "close", "file");
    return CP_OK;
}

static cp_status smb_unlink_unlocked(void *impl, const char *path, cp_error *err)
{
    smb_share *ss = impl;
    char url[INGEST_PATH_MAX * 3];
    SMBCCTX *c;
    cp_status st;

    st = url_of(ss, path, url, sizeof url, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    if (smbc_getFunctionUnlink(c)(c, url) != 0 && errno != ENOENT)
        return smb_error(err, "unlink", path);
    return CP_OK;
}

static cp_status smb_rename_unlocked(void *impl, const char *from, const char *to, cp_error *err)
{
    smb_share *ss = impl;
    char a[INGEST_PATH_MAX * 3], b[INGEST_PATH_MAX * 3];
    SMBCCTX *c;
    cp_status st;

    st = url_of(ss, from, a, sizeof a, err);
    if (st == CP_OK)
        st = url_of(ss, to, b, sizeof b, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    if (smbc_getFunctionRename(c)(c, a, c, b) == 0)
        return CP_OK;
    /* SMB renames do not replace: a file already at `to` goes first. */
    if (errno != EEXIST)
        return smb_error(err, "rename", from);
    st = smb_unlink_unlocked(impl, to, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    if (smbc_getFunctionRename(c)(c, a, c, b) != 0)
        return smb_error(err, "rename", from);
    return CP_OK;
}

static cp_status smb_mkdir_unlocked(void *impl, const char *path, cp_error *err)
{
    smb_share *ss = impl;
    char url[INGEST_PATH_MAX * 3];
    SMBCCTX *c;
    cp_status st;

    st = url_of(ss, path, url, sizeof url, err);
    if (st == CP_OK)
        st = smb_ctx(ss, &c, err);
    if (st != CP_OK)
        return st;
    errno = 0;
    if (smbc_getFunctionMkdir(c)(c, url, 0755) != 0 && errno != EEXIST)
        return smb_error(err, "mkdir", path);
    return CP_OK;
}

static void smb_destroy_unlocked(void *impl)
{
    smb_share *ss = impl;

    smb_reset_unlocked(ss);
    explicit_bzero(ss->password, sizeof ss->password);
    cp_free(ss);
}

/* --- the locked entry points ---------------------------------------------- */

static void smb_reset(void *impl)
{
    pthread_mutex_lock(&smb_lock);
    smb_reset_unlocked(impl);
    pthread_mutex_unlock(&smb_lock);
}

static void smb_destroy(void *impl)
{
    pthread_mutex_lock(&smb_lock);
    smb_destroy_unlocked(impl);
    pthread_mutex_unlock(&smb_lock);
}

#define SMB_LOCKED(name, params, args)              \
    static cp_status name params                    \
    {                                               \
        cp_status st;                               \
                                                    \
        pthread_mutex_lock(&smb_lock);              \
        st = name##_unlocked args;                  \
        pthread_mutex_unlock(&smb_lock);            \
        return st;                                  \
    }

SMB_LOCKED(smb_check, (void *impl, cp_error *err), (impl, err))
SMB_LOCKED(smb_list, (void *impl, const char *path, share_list_fn fn, void *ctx,
                      cp_error *err), (impl, path, fn, ctx, err))
SMB_LOCKED(smb_stat, (void *impl, const char *path, share_entry *out, cp_error *err),
           (impl, path, out, err))
SMB_LOCKED(smb_open, (void *impl, const char *path, bool write, void **file, cp_error *err),
           (impl, path, write, file, err))
SMB_LOCKED(smb_read, (void *impl, void *file, void *buf, size_t len, size_t *got,
                      cp_error *err), (impl, file, buf, len, got, err))
SMB_LOCKED(smb_write, (void *impl, void *file, const void *buf, size_t len, cp_error *err),
           (impl, file, buf, len, err))
SMB_LOCKED(smb_close, (void *impl, void *file, cp_error *err), (impl, file, err))
SMB_LOCKED(smb_unlink, (void *impl, const char *path, cp_error *err), (impl, path, err))
SMB_LOCKED(smb_rename, (void *impl, const char *from, const char *to, cp_error *err),
           (impl, from, to, err))
SMB_LOCKED(smb_mkdir, (void *impl, const char *path, cp_error *err), (impl, path, err))

static const share_backend smb_backend = {
    .kind = "smb",
    .check = smb_check,
    .reset = smb_reset,
    .list = smb_list,
    .stat = smb_stat,
    .open = smb_open,
    .read = smb_read,
    .write = smb_write,
    .close = smb_close,
    .rename = smb_rename,
    .unlink = smb_unlink,
    .mkdir = smb_mkdir,
    .destroy = smb_destroy,
};

static bool copy_field(char *dst, size_t size, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;

    if (n >= size)
        return false;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return true;
}

cp_status share_smb_create(const char *host, unsigned port, const char *share_name,
                           const char *folder, const share_config *cfg,
                           const share_backend **backend, void **impl, cp_error *err)
{
    smb_share *ss = cp_calloc(1, sizeof *ss);
    size_t pos;

    if (ss == NULL)
        return CP_ERR_NOMEM;
    ss->port = port;
    ss->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : SMB_TIMEOUT_DEFAULT_MS;
    pos = (size_t)snprintf(ss->base, sizeof ss->base, "smb://%s/", host);
    if (pos >= sizeof ss->base || !encode(ss->base, sizeof ss->base, &pos, share_name, false) ||
        (folder[0] != '\0' && (pos + 1 >= sizeof ss->base ||
                               (ss->base[pos++] = '/', ss->base[pos] = '\0',
                                !encode(ss->base, sizeof ss->base, &pos, folder, true)))) ||
        !copy_field(ss->user, sizeof ss->user, cfg->user) ||
        !copy_field(ss->password, sizeof ss->password, cfg->password) ||
        !copy_field(ss->domain, sizeof ss->domain, cfg->domain)) {
        explicit_bzero(ss->password, sizeof ss->password);
        cp_free(ss);
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "SMB URL or credentials too long");
    }
    *backend = &smb_backend;
    *impl = ss;
    return CP_OK;
}
