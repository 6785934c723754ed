/*
 * static.c - static files under a path prefix (static.h): the OHIF viewer's
 * build served beside DICOMweb (PS3.18). The request path is checked
 * segment by segment before it touches the disk, so nothing outside the
 * root is ever opened; the file goes out through http_respond_fd.
 */
#include "http/static.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"

struct http_static {
    char *prefix;
    char *pattern;
    char *root;
    char *fallback;
    char *missing;
};

/* Content types by extension; what browsers insist on is what matters. */
static const struct {
    const char *ext;
    const char *type;
} types[] = {
    { "html", "text/html; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "json", "application/json" },
    { "map", "application/json" },
    { "webmanifest", "application/manifest+json" },
    { "wasm", "application/wasm" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "ico", "image/x-icon" },
    { "webp", "image/webp" },
    { "woff2", "font/woff2" },
    { "woff", "font/woff" },
    { "ttf", "font/ttf" },
    { "otf", "font/otf" },
    { "txt", "text/plain; charset=utf-8" },
    { "xml", "application/xml" },
    { "onnx", "application/octet-stream" },
};

static const char *content_type(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');

    if (dot) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
        }
    }
    return "application/octet-stream";
}

/*
 * Whether rel (the path below the prefix, without its leading '/') names
 * something inside the root: no empty, "." or ".." segment, no hidden
 * file, no control byte (a decoded %00 among them).
 */
static bool rel_is_safe(const char *rel, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n = strcspn(rel + i, "/");

        if (n > len - i)
            n = len - i;
        if (n == 0 || rel[i] == '.')
            return false;
        for (size_t k = 0; k < n; k++) {
            if ((unsigned char)rel[i + k] < 0x20 || rel[i + k] == 0x7f)
                return false;
        }
        i += n + 1;
    }
    return true;
}

/* Opens root/rel as a regular file: the fd, or -1 with errno set. */
static int open_file(const http_static *st, const char *rel)
{
    char path[HTTP_STATIC_PATH_MAX];
    struct stat sb;
    int fd, n;

    n = snprintf(path, sizeof path, "%s/%s", st->root, rel);
    if (n < 0 || (size_t)n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        errno = EISDIR;
        return -1;
    }
    return fd;
}

static cp_status send_file(http_request *req, const char *rel, int fd)
{
    struct stat sb;
    const char *base = strrchr(rel, '/');
    cp_status st;

    base = base ? base + 1 : rel;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return http_respond_error(req, 500, "cannot read the file");
    }

    /* The entry points name the hashed bundles: they must never go stale. */
    st = http_response_header(req, "Cache-Control",
                              strcmp(base, "index.html") == 0 ||
                                      strcmp(base, "app-config.js") == 0
                                  ? "no-cache"
                                  : "public, max-age=3600");
    if (st == CP_OK)
        st = http_response_header(req, "X-Content-Type-Options", "nosniff");
    if (st != CP_OK) {
        close(fd);
        return st;
    }
    return http_respond_fd(req, 200, content_type(rel), fd, 0, (uint64_t)sb.st_size);
}

static cp_status handle(http_request *req, void *ctx)
{
    const http_static *st = ctx;
    const char *path = http_request_path(req);
    const char *rel, *last;
    size_t plen = strlen(st->prefix);
    int fd;

    if (!st->root)
        return http_respond_error(req, 404, st->missing);

    /* The router matched the prefix's segments; the rest is ours. */
    if (strncmp(path, st->prefix, plen) != 0)
        return http_respond_error(req, 404, "no such file");
    rel = path + plen;
    while (*rel == '/')
        rel++;
    if (rel[0] == '\0' && st->fallback)
        rel = st->fallback;
    if (!rel_is_safe(rel, strlen(rel)))
        return http_respond_error(req, 404, "no such file");

    fd = open_file(st, rel);
    if (fd >= 0)
        return send_file(req, rel, fd);

    /* A client-side route has no file and, unlike the build's files, no dot. */
    last = strrchr(rel, '/');
    last = last ? last + 1 : rel;
    if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR) {
        if (st->fallback && !strchr(last, '.')) {
            fd = open_file(st, st->fallback);
            if (fd >= 0)
                return send_file(req, st->fallback, fd);
        }
        return http_respond_error(req, 404, "no such file");
    }
    return http_respond_error(req, errno == EACCES ? 403 : 500, "cannot open the file");
}

void http_static_destroy(http_static *st)
{
    if (!st)
        return;
    cp_free(st->prefix);
    cp_free(st->pattern);
    cp_free(st->root);
    cp_free(st->fallback);
    cp_free(st->missing);
    cp_free(st);
}

/* cp_strdup of s, or NULL for NULL; *ok turns false when memory runs out. */
static char *dup_opt(const char *s, bool *ok)
{
    char *d;

    if (!s)
        return NULL;
    d = cp_strdup(s);
    if (!d)
        *ok = false;
    return d;
}

cp_status http_static_register(http_server *srv, const http_static_config *cfg,
                               http_static **out, cp_error *err)
{
    http_static *st;
    size_t plen;
    bool ok = true, root_prefix;
    cp_status rc;

    *out = NULL;
    /* "/" alone is the root (the console): its files are every path left. */
    root_prefix = cfg->prefix && strcmp(cfg->prefix, "/") == 0;
    if (!cfg->prefix || cfg->prefix[0] != '/' ||
        (!root_prefix && (strlen(cfg->prefix) < 2 ||
                          cfg->prefix[strlen(cfg->prefix) - 1] == '/')))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "static prefix must start, and not end, with '/'");
    st = cp_calloc(1, sizeof *st);
    if (!st)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");

    plen = root_prefix ? 0 : strlen(cfg->prefix);
    st->prefix = dup_opt(root_prefix ? "" : cfg->prefix, &ok);
    st->root = dup_opt(cfg->root, &ok);
    st->fallback = dup_opt(cfg->fallback, &ok);
    st->missing = dup_opt(cfg->missing ? cfg->missing : "not installed", &ok);
    st->pattern = cp_malloc(plen + 3);
    if (!ok || !st->pattern) {
        rc = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "out of memory");
        goto fail;
    }
    memcpy(st->pattern, cfg->prefix, plen);
    memcpy(st->pattern + plen, "/*", 3);

    rc = http_server_route(srv, HTTP_GET, st->pattern,
                           HTTP_ROUTE_PUBLIC | HTTP_ROUTE_ISOLATED, handle, st);
    if (rc != CP_OK) {
        cp_error_set(err, rc, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "cannot register the route %s", st->pattern);
        goto fail;
    }
    *out = st;
    return CP_OK;

fail:
    http_static_destroy(st);
    return rc;
}

/* Whether dir/rel/marker is a regular file; its directory's path in out. */
static bool probe(const char *dir, const char *rel, const char *marker, char *out, size_t cap)
{
    char path[HTTP_STATIC_PATH_MAX];
    struct stat sb;
    int n;

    n = snprintf(path, sizeof path, "%s/%s/%s", dir, rel, marker);
    if (n < 0 || (size_t)n >= sizeof path || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    n = snprintf(out, cap, "%s/%s", dir, rel);
    return n >= 0 && (size_t)n < cap;
}

cp_status http_static_locate(const char *rel, const char *marker, char *out, size_t cap)
{
    char dir[HTTP_STATIC_PATH_MAX];
    ssize_t n;

    if (getcwd(dir, sizeof dir) && probe(dir, rel, marker, out, cap))
        return CP_OK;

    n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return CP_ERR_NOT_FOUND;
    dir[n] = '\0';
    for (int up = 0; up < HTTP_STATIC_SEARCH_UP; up++) {
        char *slash = strrchr(dir, '/');

        if (!slash || slash == dir)
            break;
        *slash = '\0';
        if (probe(dir, rel, marker, out, cap))
            return CP_OK;
    }
    return CP_ERR_NOT_FOUND;
}
