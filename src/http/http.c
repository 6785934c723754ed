/*
 * http.c - the HTTP/1.1 server (RFC 9110, RFC 9112) under DICOMweb (PS3.18
 * 8: the RESTful services' transport), on libmicrohttpd.
 *
 * libmicrohttpd owns the sockets, its thread pool, epoll, keep-alive,
 * chunked transfer coding and sendfile. This file adds what it lacks: a
 * router with path parameters, request limits decided before a body byte is
 * read, streaming bodies handed to handlers, CORS and cross-origin isolation
 * headers, an authentication hook, gzip of JSON, request ids, one access-log
 * line per request (the route pattern, never the URL, which may hold patient
 * data in a query) and Prometheus metrics.
 *
 * A request lives from the URI-log callback (which sees the raw target
 * before it is unescaped) to the completion notice, and owns a small arena
 * for everything derived from it.
 *
 * Server-sent events (the WHATWG HTML "text/event-stream" format) ride on a
 * callback response whose reader hands out what is queued; when the queue
 * is empty the reader suspends the connection (allowed from a content
 * reader, microhttpd.h) and returns 0, and the next event queued, from any
 * thread, resumes it. A suspended stream thus holds no pool thread. One
 * keep-alive thread per server queues a comment line to every stream now
 * and then; the write that follows is what tells a vanished client.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "http/accept.h"

/* Segments of a request path considered for routing; deeper paths are 404. */
#define HTTP_PATH_SEGMENTS_MAX 32

/* The block a streamed body of known length is read into: 64 KiB up to 512 KiB. */
#define HTTP_STREAM_BLOCK_MIN (64u * 1024)
#define HTTP_STREAM_BLOCK_MAX (512u * 1024)

/* TLS certificate or key files larger than this are not PEM files. */
#define HTTP_TLS_FILE_MAX (1024 * 1024)

typedef struct route {
    unsigned methods;
    unsigned flags;
    char *pattern;
    char *label;                /* pattern escaped for a metric label */
    char **segs;                /* literal, "{name}" or a final "*" */
    size_t nseg;
    http_handler_fn handler;
    void *ctx;
} route;

struct http_server {
    http_config cfg;
    char *strings[8];           /* the copies cfg's string fields point to */
    char *tls_cert;
    char *tls_key;
    route *routes;
    size_t nroutes;
    struct MHD_Daemon *daemon;
    uint16_t port;
    uint32_t id_salt;
    atomic_uint_fast64_t next_id;
    bool stopped;
    pthread_mutex_t events_lock;    /* the list below, events_stopping */
    pthread_cond_t events_wake;
    http_events *events;            /* every open event stream */
    bool events_stopping;
    pthread_t events_thread;        /* the keep-alive comments */
    bool events_thread_started;
};

static void events_cond_init(pthread_cond_t *c);

typedef struct arena_block {
    struct arena_block *next;
    size_t used;
    size_t cap;
    max_align_t data[];
} arena_block;

struct http_request {
    http_server *srv;
    struct MHD_Connection *conn;
    arena_block *arena;
    char id[20];
    char *raw_uri;
    char *path;
    http_method method;
    const char *method_name;
    const route *route;
    const char *param_names[HTTP_ROUTE_PARAMS_MAX];
    char *param_values[HTTP_ROUTE_PARAMS_MAX];
    size_t nparams;
    char **query_names;
    char **query_values;
    size_t nquery;
    char peer[INET6_ADDRSTRLEN];
    bool loopback;
    struct timespec start;
    int64_t content_length;
    uint64_t body_limit;
    uint64_t body_received;
    bool started;
    bool begun;
    bool responded;
    int fail_status;            /* a failure met while the body arrives */
    const char *fail_message;
    uint64_t discarded;
    bool reading_body;
    http_body_fn on_body;
    http_complete_fn on_complete;
    void *body_ctx;
    cp_buf extra_headers;       /* "name\0value\0" pairs */
    int status;
    uint64_t bytes;
    void *identity;
    void (*identity_free)(void *);
    void (*cleanup)(void *);
    void *cleanup_ctx;
};

/* --- per-request arena ---------------------------------------------------- */

static void *arena_alloc(http_request *req, size_t size)
{
    arena_block *b = req->arena;
    size_t need = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);

    if (!b || b->cap - b->used < need) {
        size_t cap = need > 4096 ? need : 4096;

        b = cp_malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = req->arena;
        req->arena = b;
    }
    b->used += need;
    return (char *)b->data + b->used - need;
}

static char *arena_strndup(http_request *req, const char *s, size_t n)
{
    char *d = arena_alloc(req, n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes s[0..n) into the arena (RFC 3986 2.1); '+' becomes a space
 * when plus_space (form encoding of query strings). A malformed escape is
 * kept as it is; a decoded NUL makes the whole value invalid (NULL).
 */
static char *decode(http_request *req, const char *s, size_t n, bool plus_space, bool *bad)
{
    char *d = arena_alloc(req, n + 1);
    size_t o = 0;

    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;

        if (s[i] == '%' && i + 2 < n &&
            (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            d[o] = (char)(hi << 4 | lo);
            if (d[o] == 0)
                *bad = true;
            o++;
            i += 2;
        } else {
            d[o++] = plus_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    d[o] = 0;
    return d;
}

/* --- metrics registry ----------------------------------------------------- */

static const double duration_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
#define NBUCKETS (sizeof(duration_buckets) / sizeof(duration_buckets[0]))

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

typedef struct series {
    char *labels;
    double value;               /* counters, gauges; histograms: the sum */
    uint64_t count;             /* histograms */
    uint64_t buckets[NBUCKETS];
} series;

typedef struct family {
    char *name;
    metric_type type;
    series *series;
    size_t n;
    size_t cap;
} family;

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static family *families;
static size_t nfamilies;
static size_t nseries_total;

static bool valid_metric_name(const char *name)
{
    if (!name || !name[0] || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (const char *p = name; *p; p++) {
        if (!(*p == '_' || *p == ':' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            return false;
    }
    return true;
}

/* The series name{labels}, created when new; called with metrics_lock held. */
static series *find_series(const char *name, metric_type type, const char *labels)
{
    family *f = NULL;
    series *s;

    if (!labels)
        labels = "";
    for (size_t i = 0; i < nfamilies; i++) {
        if (strcmp(families[i].name, name) == 0) {
            f = &families[i];
            break;
        }
    }
    if (f && f->type != type)
        return NULL;
    if (f) {
        for (size_t i = 0; i < f->n; i++) {
            if (strcmp(f->series[i].labels, labels) == 0)
                return &f->series[i];
        }
    }
    if (nseries_total >= HTTP_METRICS_SERIES_MAX)
        return NULL;

    if (!f) {
        family *nf = cp_realloc(families, (nfamilies + 1) * sizeof(*nf));
        char *copy = cp_strdup(name);

        if (nf)
            families = nf;
        if (!nf || !copy) {
            cp_free(copy);
            return NULL;
        }
        f = &families[nfamilies++];
        memset(f, 0, sizeof(*f));
        f->name = copy;
        f->type = type;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        series *ns = cp_realloc(f->series, cap * sizeof(*ns));

        if (!ns)
            return NULL;
        f->series = ns;
        f->cap = cap;
    }
    s = &f->series[f->n];
    memset(s, 0, sizeof(*s));
    s->labels = cp_strdup(labels);
    if (!s->labels)
        return NULL;
    f->n++;
    nseries_total++;
    return s;
}

static cp_status metric_update(const char *name, metric_type type, const char *labels,
                               double value)
{
    series *s;

    if (!valid_metric_name(name) || isnan(value))
        return CP_ERR_INVALID;
    pthread_mutex_lock(&metrics_lock);
    s = find_series(name, type, labels);
    if (s && type == METRIC_COUNTER) {
        s->value += value;
    } else if (s && type == METRIC_GAUGE) {
        s->value = value;
    } else if (s) {
        s->value += value;
        s->count++;
        for (size_t i = 0; i < NBUCKETS; i++) {
            if (value <= duration_buckets[i])
                s->buckets[i]++;
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    return s ? CP_OK : CP_ERR_LIMIT;
}

cp_status http_metrics_counter_add(const char *name, const char *labels, double value)
{
    if (value < 0)
        return CP_ERR_INVALID;
    return metric_update(name, METRIC_COUNTER, labels, value);
}

cp_status http_metrics_gauge_set(const char *name, const char *labels, double value)
{
    return metric_update(name, METRIC_GAUGE, labels, value);
}

static cp_status render_histogram(cp_buf *out, const family *f, const series *s)
{
    const char *sep = s->labels[0] ? "," : "";
    cp_status st = CP_OK;

    for (size_t i = 0; i < NBUCKETS && st == CP_OK; i++)
        st = cp_buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name, s->labels, sep,
                            duration_buckets[i], (unsigned long long)s->buckets[i]);
    if (st == CP_OK)
        st = cp_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n%s_sum{%s} %.6f\n"
                            "%s_count{%s} %llu\n", f->name, s->labels, sep,
                            (unsigned long long)s->count, f->name, s->labels, s->value,
                            f->name, s->labels, (unsigned long long)s->count);
    return st;
}

cp_status http_metrics_render(cp_buf *out)
{
    static const char *type_names[] = { "counter", "gauge", "histogram" };
    cp_status st = CP_OK;

    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < nfamilies && st == CP_OK; i++) {
        const family *f = &families[i];

        st = cp_buf_appendf(out, "# TYPE %s %s\n", f->name, type_names[f->type]);
        for (size_t j = 0; j < f->n && st == CP_OK; j++) {
            const series *s = &f->series[j];

            if (f->type == METRIC_HISTOGRAM)
                st = render_histogram(out, f, s);
            else if (s->labels[0])
                st = cp_buf_appendf(out, "%s{%s} %.17g\n", f->name, s->labels, s->value);
            else
                st = cp_buf_appendf(out, "%s %.17g\n", f->name, s->value);
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    return st;
}

/* --- configuration and routes --------------------------------------------- */

static cp_status read_file(const char *path, char **out, cp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    char *data = NULL;
    size_t got = 0;
    cp_status st = CP_OK;

    *out = NULL;
    if (fd < 0)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "open(\"%s\") failed: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || sb.st_size > HTTP_TLS_FILE_MAX) {
        st = cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "\"%s\" is empty or not a PEM file", path);
        goto done;
    }
    data = cp_malloc((size_t)sb.st_size + 1);
    if (!data) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, data + got, (size_t)sb.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "read(\"%s\") failed", path);
            goto done;
        }
        got += (size_t)n;
    }
    data[got] = 0;
    *out = data;
    data = NULL;

done:
    cp_free(data);
    close(fd);
    return st;
}

static cp_status copy_config(http_server *s, const http_config *cfg)
{
    const char **fields[] = {
        &s->cfg.bind_address, &s->cfg.tls_cert_path, &s->cfg.tls_key_path,
        &s->cfg.cors_origins, &s->cfg.isolated_prefix, &s->cfg.static_token,
    };

    s->cfg = *cfg;
    if (!s->cfg.bind_address)
        s->cfg.bind_address = "127.0.0.1";
    if (!s->cfg.isolated_prefix)
        s->cfg.isolated_prefix = "/viewer/";
    if (s->cfg.static_token && !s->cfg.static_token[0])
        s->cfg.static_token = NULL;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (!*fields[i])
            continue;
        s->strings[i] = cp_strdup(*fields[i]);
        if (!s->strings[i])
            return CP_ERR_NOMEM;
        *fields[i] = s->strings[i];
    }
    if (!s->cfg.threads)
        s->cfg.threads = 4;
    if (!s->cfg.max_header_bytes)
        s->cfg.max_header_bytes = HTTP_HEADER_BYTES_MAX;
    if (!s->cfg.max_url_bytes)
        s->cfg.max_url_bytes = HTTP_URL_MAX;
    if (!s->cfg.max_body_small)
        s->cfg.max_body_small = HTTP_BODY_SMALL_MAX;
    if (!s->cfg.max_body_large)
        s->cfg.max_body_large = HTTP_BODY_LARGE_MAX;
    if (!s->cfg.timeout_seconds)
        s->cfg.timeout_seconds = HTTP_CONNECTION_TIMEOUT_S;
    if (!s->cfg.events_keepalive_ms)
        s->cfg.events_keepalive_ms = HTTP_EVENTS_KEEPALIVE_S * 1000;
    return CP_OK;
}

static cp_status metrics_handler(http_request *req, void *ctx)
{
    cp_buf out = CP_BUF_INIT;
    cp_status st;

    (void)ctx;
    st = http_metrics_render(&out);
    if (st == CP_OK)
        st = http_respond_buffer(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                                 out.data ? (const void *)out.data : "", out.len);
    cp_buf_free(&out);
    return st;
}

cp_status http_server_create(const http_config *cfg, http_server **out, cp_error *err)
{
    http_server *s;
    cp_status st;

    *out = NULL;
    s = cp_calloc(1, sizeof(*s));
    if (!s)
        return CP_ERR_NOMEM;
    pthread_mutex_init(&s->events_lock, NULL);
    events_cond_init(&s->events_wake);
    st = copy_config(s, cfg);
    if (st != CP_OK)
        goto fail;

    if (!s->cfg.tls_cert_path != !s->cfg.tls_key_path) {
        st = cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "TLS needs both a certificate and a key");
        goto fail;
    }
    if (s->cfg.tls_cert_path) {
        st = read_file(s->cfg.tls_cert_path, &s->tls_cert, err);
        if (st == CP_OK)
            st = read_file(s->cfg.tls_key_path, &s->tls_key, err);
        if (st != CP_OK)
            goto fail;
    }
    if (getrandom(&s->id_salt, sizeof(s->id_salt), GRND_NONBLOCK) != sizeof(s->id_salt))
        s->id_salt = (uint32_t)time(NULL) ^ (uint32_t)getpid();

    if (!s->cfg.no_metrics_route) {
        st = http_server_route(s, HTTP_GET, "/metrics", 0, metrics_handler, NULL);
        if (st != CP_OK)
            goto fail;
    }
    *out = s;
    return CP_OK;

fail:
    http_server_destroy(s);
    return st;
}

/* Escapes a route pattern for use inside a label value's quotes. */
static char *escape_label(const char *s)
{
    cp_buf b = CP_BUF_INIT;

    for (; *s; s++) {
        cp_status st = *s == '"' || *s == '\\' ? cp_buf_append_byte(&b, '\\') : CP_OK;

        if (st != CP_OK || cp_buf_append_byte(&b, (uint8_t)*s) != CP_OK) {
            cp_buf_free(&b);
            return NULL;
        }
    }
    if (cp_buf_append_byte(&b, 0) != CP_OK) {
        cp_buf_free(&b);
        return NULL;
    }
    return (char *)cp_buf_steal(&b, NULL);
}

static void route_free(route *r)
{
    for (size_t i = 0; i < r->nseg; i++)
        cp_free(r->segs[i]);
    cp_free(r->segs);
    cp_free(r->pattern);
    cp_free(r->label);
}

/* Splits a pattern into segments; rejects bad parameters and misplaced '*'. */
static cp_status route_parse(route *r, const char *pattern)
{
    const char *p = pattern;
    size_t params = 0;

    if (pattern[0] != '/')
        return CP_ERR_INVALID;
    r->segs = cp_calloc(HTTP_PATH_SEGMENTS_MAX, sizeof(*r->segs));
    if (!r->segs)
        return CP_ERR_NOMEM;
    while (*p == '/' && p[1]) {
        const char *end = strchr(p + 1, '/');
        size_t n = end ? (size_t)(end - p - 1) : strlen(p + 1);
        char *seg;

        if (r->nseg == HTTP_PATH_SEGMENTS_MAX || n == 0)
            return CP_ERR_INVALID;
        seg = cp_strndup(p + 1, n);
        if (!seg)
            return CP_ERR_NOMEM;
        r->segs[r->nseg++] = seg;
        if (seg[0] == '{' && (n < 3 || seg[n - 1] != '}' || ++params > HTTP_ROUTE_PARAMS_MAX))
            return CP_ERR_INVALID;
        if (seg[0] == '{')
            seg[n - 1] = 0;     /* kept as "{name": the name starts after the brace */
        if (strcmp(seg, "*") == 0 && end && end[1])
            return CP_ERR_INVALID;
        p += n + 1;
    }
    return CP_OK;
}

cp_status http_server_route(http_server *s, unsigned methods, const char *pattern,
                            unsigned flags, http_handler_fn handler, void *ctx)
{
    route *nr, r;
    cp_status st;

    if (s->daemon || !pattern || !handler || !methods)
        return CP_ERR_INVALID;
    memset(&r, 0, sizeof(r));
    st = route_parse(&r, pattern);
    if (st != CP_OK)
        goto fail;
    r.pattern = cp_strdup(pattern);
    r.label = escape_label(pattern);
    if (!r.pattern || !r.label) {
        st = CP_ERR_NOMEM;
        goto fail;
    }
    nr = cp_realloc(s->routes, (s->nroutes + 1) * sizeof(*nr));
    if (!nr) {
        st = CP_ERR_NOMEM;
        goto fail;
    }
    r.methods = methods;
    r.flags = flags;
    r.handler = handler;
    r.ctx = ctx;
    s->routes = nr;
    s->routes[s->nroutes++] = r;
    return CP_OK;

fail:
    route_free(&r);
    return st;
}

/* --- requests ------------------------------------------------------------- */

static const struct {
    const char *name;
    http_method method;
} method_names[] = {
    { "GET", HTTP_GET }, { "HEAD", HTTP_HEAD }, { "POST", HTTP_POST },
    { "PUT", HTTP_PUT }, { "DELETE", HTTP_DELETE }, { "PATCH", HTTP_PATCH },
    { "OPTIONS", HTTP_OPTIONS },
};

http_method http_request_method(const http_request *req) { return req->method; }
const char *http_request_method_name(const http_request *req) { return req->method_name; }
const char *http_request_path(const http_request *req) { return req->path; }
const char *http_request_peer(const http_request *req) { return req->peer; }
bool http_request_peer_is_loopback(const http_request *req) { return req->loopback; }
const char *http_request_id(const http_request *req) { return req->id; }
int64_t http_request_content_length(const http_request *req) { return req->content_length; }
bool http_request_responded(const http_request *req) { return req->responded; }
void *http_request_identity(const http_request *req) { return req->identity; }
size_t http_request_query_count(const http_request *req) { return req->nquery; }

const char *http_request_route(const http_request *req)
{
    return req->route ? req->route->pattern : "-";
}

const char *http_request_param(const http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++) {
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    }
    return NULL;
}

cp_status http_request_query_at(const http_request *req, size_t i, const char **name,
                                const char **value)
{
    if (i >= req->nquery)
        return CP_ERR_NOT_FOUND;
    *name = req->query_names[i];
    *value = req->query_values[i];
    return CP_OK;
}

const char *http_request_query(const http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nquery; i++) {
        if (strcmp(req->query_names[i], name) == 0)
            return req->query_values[i];
    }
    return NULL;
}

const char *http_request_header(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void http_request_set_identity(http_request *req, void *identity, void (*free_fn)(void *))
{
    if (req->identity_free)
        req->identity_free(req->identity);
    req->identity = identity;
    req->identity_free = free_fn;
}

void http_request_on_cleanup(http_request *req, void (*fn)(void *), void *ctx)
{
    req->cleanup = fn;
    req->cleanup_ctx = ctx;
}

cp_status http_request_base_url(const http_request *req, char *out, size_t cap)
{
    http_forward_info in = {
        .forwarded = http_request_header(req, "Forwarded"),
        .x_forwarded_proto = http_request_header(req, "X-Forwarded-Proto"),
        .x_forwarded_host = http_request_header(req, "X-Forwarded-Host"),
        .x_forwarded_port = http_request_header(req, "X-Forwarded-Port"),
        .x_forwarded_prefix = http_request_header(req, "X-Forwarded-Prefix"),
        .host = http_request_header(req, "Host"),
        .tls = req->srv->tls_cert != NULL,
        .trust_proxy = req->srv->cfg.trust_proxy,
    };

    return http_base_url(&in, out, cap);
}

cp_status http_request_read_body(http_request *req, http_body_fn on_body,
                                 http_complete_fn on_complete, void *ctx)
{
    if (req->responded || req->reading_body || !on_complete)
        return CP_ERR_INVALID;
    req->reading_body = true;
    req->on_body = on_body;
    req->on_complete = on_complete;
    req->body_ctx = ctx;
    return CP_OK;
}

/* Splits the query string into decoded name/value pairs. */
static cp_status parse_query(http_request *req, const char *q)
{
    size_t n = 1, i = 0;
    bool bad = false;

    for (const char *p = q; *p; p++)
        n += *p == '&';
    if (n > HTTP_QUERY_PARAMS_MAX)
        return CP_ERR_LIMIT;
    req->query_names = arena_alloc(req, n * sizeof(char *));
    req->query_values = arena_alloc(req, n * sizeof(char *));
    if (!req->query_names || !req->query_values)
        return CP_ERR_NOMEM;

    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);

        if (len > 0) {
            size_t nlen = eq ? (size_t)(eq - q) : len;

            req->query_names[i] = decode(req, q, nlen, true, &bad);
            req->query_values[i] = eq ? decode(req, eq + 1, len - nlen - 1, true, &bad)
                                      : decode(req, "", 0, true, &bad);
            if (!req->query_names[i] || !req->query_values[i])
                return CP_ERR_NOMEM;
            i++;
        }
        q += len + (amp ? 1 : 0);
    }
    req->nquery = i;
    return bad ? CP_ERR_MALFORMED : CP_OK;
}

/*
 * Splits and decodes the path of the raw target. Segments are decoded one
 * by one so that "%2F" inside a parameter does not split it.
 */
static cp_status parse_target(http_request *req, char **segs, size_t *nseg)
{
    const char *uri = req->raw_uri, *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    const char *p = uri, *end = uri + plen;
    bool bad = false;
    cp_status st;

    *nseg = 0;
    if (plen == 0 || uri[0] != '/')
        return CP_ERR_MALFORMED;
    req->path = decode(req, uri, plen, false, &bad);
    if (!req->path)
        return CP_ERR_NOMEM;
    while (p < end) {
        const char *slash;
        size_t n;

        p++;
        slash = memchr(p, '/', (size_t)(end - p));
        n = slash ? (size_t)(slash - p) : (size_t)(end - p);
        if (n == 0 && !slash)
            break;      /* a trailing slash names the same resource */
        if (*nseg == HTTP_PATH_SEGMENTS_MAX)
            return CP_ERR_NOT_FOUND;
        segs[*nseg] = decode(req, p, n, false, &bad);
        if (!segs[*nseg])
            return CP_ERR_NOMEM;
        (*nseg)++;
        p += n;
    }
    if (bad)
        return CP_ERR_MALFORMED;
    st = q ? parse_query(req, q + 1) : CP_OK;
    return st;
}

static bool route_match(http_request *req, const route *r, char **segs, size_t nseg)
{
    bool star = r->nseg > 0 && strcmp(r->segs[r->nseg - 1], "*") == 0;
    size_t fixed = star ? r->nseg - 1 : r->nseg, np = 0;

    if (star ? nseg < fixed : nseg != fixed)
        return false;
    for (size_t i = 0; i < fixed; i++) {
        const char *pat = r->segs[i];

        if (pat[0] == '{') {
            req->param_names[np] = pat + 1;
            req->param_values[np++] = segs[i];
        } else if (strcmp(pat, segs[i]) != 0) {
            return false;
        }
    }
    req->nparams = np;
    return true;
}

/* --- responses ------------------------------------------------------------ */

int http_status_for(cp_status st)
{
    switch (st) {
    case CP_OK:
        return 200;
    case CP_ERR_NOT_FOUND:
        return 404;
    case CP_ERR_INVALID:
    case CP_ERR_MALFORMED:
    case CP_ERR_TRUNCATED:
    case CP_ERR_CHARSET:
        return 400;
    case CP_ERR_LIMIT:
        return 413;
    case CP_ERR_UNSUPPORTED:
        return 415;
    case CP_ERR_EXISTS:
        return 409;
    case CP_ERR_UNAUTHENTICATED:
        return 401;
    case CP_ERR_FORBIDDEN:
        return 403;
    case CP_ERR_NOMEM:
    case CP_ERR_UNAVAILABLE:
    case CP_ERR_AGAIN:
        return 503;
    default:
        return 500;
    }
}

cp_status http_response_header(http_request *req, const char *name, const char *value)
{
    if (req->responded || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return CP_ERR_INVALID;
    if (cp_buf_append(&req->extra_headers, name, strlen(name) + 1) != CP_OK ||
        cp_buf_append(&req->extra_headers, value, strlen(value) + 1) != CP_OK)
        return CP_ERR_NOMEM;
    return CP_OK;
}

/* The configured origin that allows `origin`, "*", or NULL. */
static const char *cors_allow(const http_server *s, const char *origin)
{
    const char *list = s->cfg.cors_origins, *p;
    size_t n;

    if (!list || !origin)
        return NULL;
    if (strcmp(list, "*") == 0)
        return "*";
    n = strlen(origin);
    for (p = list; *p;) {
        size_t len;

        while (*p == ' ' || *p == ',')
            p++;
        len = strcspn(p, ", ");
        if (len == n && strncasecmp(p, origin, n) == 0)
            return origin;
        p += len;
    }
    return NULL;
}

static bool is_isolated(const http_request *req)
{
    const char *prefix = req->srv->cfg.isolated_prefix;

    if (req->route && (req->route->flags & HTTP_ROUTE_ISOLATED))
        return true;
    return req->path && prefix[0] && strncmp(req->path, prefix, strlen(prefix)) == 0;
}

/* Adds the headers every response carries and queues it. */
static cp_status queue(http_request *req, int status, struct MHD_Response *resp)
{
    const char *origin = http_request_header(req, "Origin");
    const char *allow = cors_allow(req->srv, origin);
    size_t off = 0;
    enum MHD_Result ok;

    while (off < req->extra_headers.len) {
        const char *name = (const char *)req->extra_headers.data + off;
        const char *value = name + strlen(name) + 1;

        MHD_add_response_header(resp, name, value);
        off = (size_t)(value - (const char *)req->extra_headers.data) + strlen(value) + 1;
    }
    MHD_add_response_header(resp, "X-Request-Id", req->id);
    if (allow) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", allow);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "Content-Location, Location, X-Request-Id, Content-Length");
        if (strcmp(allow, "*") != 0)
            MHD_add_response_header(resp, "Vary", "Origin");
    }
    /*
     * A page under COEP require-corp (the viewer) may only embed what says
     * it can be; origins that CORS lets in may embed, others may not.
     */
    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy",
                            allow ? "cross-origin" : "same-origin");
    if (is_isolated(req)) {
        MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
        MHD_add_response_header(resp, "Cross-Origin-Embedder-Policy", "require-corp");
    }

    ok = MHD_queue_response(req->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES)
        return CP_ERR_IO;
    req->responded = true;
    req->status = status;
    return CP_OK;
}

/* True when Accept-Encoding admits gzip (RFC 9110 12.5.3). */
static bool accepts_gzip(const http_request *req)
{
    const char *h = http_request_header(req, "Accept-Encoding");

    while (h && *h) {
        size_t n;
        char q[16];
        bool named;

        h += strspn(h, " \t,");
        n = strcspn(h, " \t;,");
        named = (n == 4 && strncasecmp(h, "gzip", 4) == 0) ||
                (n == 6 && strncasecmp(h, "x-gzip", 6) == 0) || (n == 1 && h[0] == '*');
        if (named) {
            if (http_header_param(h, "q", q, sizeof(q)) != CP_OK || strtod(q, NULL) > 0)
                return true;
        }
        h += strcspn(h, ",");
    }
    return false;
}

static bool is_json(const char *type)
{
    size_t n = strcspn(type, "; ");

    return (n == 16 && strncasecmp(type, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(type + n - 5, "+json", 5) == 0);
}

/* gzip (RFC 1952) of data into a new buffer; NULL when it does not pay. */
static uint8_t *gzip_buffer(const void *data, size_t len, size_t *out_len)
{
    z_stream z;
    uint8_t *out;
    size_t cap;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    cap = deflateBound(&z, (uLong)len);
    out = cp_malloc(cap);
    if (!out || len > UINT32_MAX) {
        deflateEnd(&z);
        cp_free(out);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out >= len) {
        deflateEnd(&z);
        cp_free(out);
        return NULL;
    }
    *out_len = z.total_out;
    deflateEnd(&z);
    return out;
}

cp_status http_respond_buffer(http_request *req, int status, const char *content_type,
                              const void *data, size_t len)
{
    struct MHD_Response *resp;
    uint8_t *gz = NULL;
    size_t gz_len = 0;
    bool json = content_type && is_json(content_type);

    if (req->responded)
        return CP_ERR_INVALID;
    if (json && len >= HTTP_GZIP_MIN_BYTES && accepts_gzip(req))
        gz = gzip_buffer(data, len, &gz_len);
    if (gz)
        resp = MHD_create_response_from_buffer_with_free_callback(gz_len, gz, cp_free);
    else
        resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)data,
                                               MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        cp_free(gz);
        return CP_ERR_NOMEM;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (json)
        MHD_add_response_header(resp, "Vary", "Accept-Encoding");
    if (gz)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    req->bytes = req->method == HTTP_HEAD ? 0 : (gz ? gz_len : len);
    return queue(req, status, resp);
}

cp_status http_respond_fd(http_request *req, int status, const char *content_type, int fd,
                          uint64_t offset, uint64_t length)
{
    struct MHD_Response *resp;

    if (fd < 0)
        return CP_ERR_IO;
    if (req->responded || offset > INT64_MAX || length > INT64_MAX - offset) {
        close(fd);
        return CP_ERR_INVALID;
    }
    resp = MHD_create_response_from_fd_at_offset64(length, fd, offset);
    if (!resp) {
        close(fd);
        return CP_ERR_NOMEM;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    req->bytes = req->method == HTTP_HEAD ? 0 : length;
    return queue(req, status, resp);
}

typedef struct stream_ctx {
    http_request *req;
    http_stream_fn produce;
    void *ctx;
    void (*free_fn)(void *);
} stream_ctx;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_ctx *sc = cls;
    ssize_t n = sc->produce(sc->ctx, pos, (uint8_t *)buf, max);

    if (n == HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n <= 0 || (size_t)n > max)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    sc->req->bytes += (uint64_t)n;
    return n;
}

static void stream_free(void *cls)
{
    stream_ctx *sc = cls;

    if (sc->free_fn)
        sc->free_fn(sc->ctx);
    cp_free(sc);
}

cp_status http_respond_stream(http_request *req, int status, const char *content_type,
                              int64_t size, http_stream_fn produce, void *ctx,
                              void (*free_fn)(void *))
{
    struct MHD_Response *resp;
    stream_ctx *sc;
    size_t block;

    if (req->responded || !produce) {
        if (free_fn)
            free_fn(ctx);
        return CP_ERR_INVALID;
    }
    sc = cp_malloc(sizeof(*sc));
    if (!sc) {
        if (free_fn)
            free_fn(ctx);
        return CP_ERR_NOMEM;
    }
    *sc = (stream_ctx){ req, produce, ctx, free_fn };
    /*
     * A told length is sent from the response's own block, filled per reader
     * call: large blocks for large bodies (a series, a big frame) mean fewer
     * reader calls and sends. A chunked body is framed in the connection's
     * memory pool, whatever the block.
     */
    block = HTTP_STREAM_BLOCK_MIN;
    if (size > (int64_t)HTTP_STREAM_BLOCK_MIN)
        block = size < (int64_t)HTTP_STREAM_BLOCK_MAX ? (size_t)size : HTTP_STREAM_BLOCK_MAX;
    resp = MHD_create_response_from_callback(size < 0 ? MHD_SIZE_UNKNOWN : (uint64_t)size,
                                             block, stream_reader, sc, stream_free);
    if (!resp) {
        stream_free(sc);
        return CP_ERR_NOMEM;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return queue(req, status, resp);
}

/* MHD_ContentReaderFreeCallback over an owner's free function and context. */
typedef struct iovec_owner {
    void (*free_fn)(void *);
    void *ctx;
} iovec_owner;

static void iovec_free(void *cls)
{
    iovec_owner *o = cls;

    if (o->free_fn)
        o->free_fn(o->ctx);
    cp_free(o);
}

cp_status http_respond_iovec(http_request *req, int status, const char *content_type,
                             const http_iovec *parts, size_t n, void (*free_fn)(void *),
                             void *ctx)
{
    struct MHD_IoVec *iov = NULL;
    struct MHD_Response *resp = NULL;
    iovec_owner *o = cp_malloc(sizeof *o);
    uint64_t total = 0;

    if (o)
        *o = (iovec_owner){ free_fn, ctx };
    if (!o || req->responded || n > UINT_MAX || n == 0) {
        cp_free(o);
        if (free_fn)
            free_fn(ctx);
        return o ? CP_ERR_INVALID : CP_ERR_NOMEM;
    }
    iov = cp_calloc(n, sizeof *iov);
    if (iov) {
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = parts[i].base;
            iov[i].iov_len = parts[i].len;
            total += parts[i].len;
        }
        resp = MHD_create_response_from_iovec(iov, (unsigned int)n, iovec_free, o);
    }
    cp_free(iov);
    if (!resp) {
        iovec_free(o);
        return CP_ERR_NOMEM;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    req->bytes = req->method == HTTP_HEAD ? 0 : total;
    return queue(req, status, resp);
}

cp_status http_respond_error(http_request *req, int status, const char *message)
{
    cp_buf b = CP_BUF_INIT;
    cp_status st = cp_buf_append_str(&b, "{\"error\": \"");

    for (const char *p = message ? message : ""; *p && st == CP_OK; p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '"' || c == '\\')
            st = cp_buf_appendf(&b, "\\%c", c);
        else if (c < 0x20)
            st = cp_buf_appendf(&b, "\\u%04x", c);
        else
            st = cp_buf_append_byte(&b, c);
    }
    if (st == CP_OK)
        st = cp_buf_appendf(&b, "\", \"status\": %d}", status);
    if (st == CP_OK)
        st = http_respond_buffer(req, status, "application/json", b.data, b.len);
    cp_buf_free(&b);
    return st;
}

/* --- server-sent events ------------------------------------------------------ */

struct http_events {
    pthread_mutex_t lock;
    http_server *srv;
    struct MHD_Connection *conn;
    http_request *req;          /* for the byte count; valid while the reader runs */
    int fd;                     /* the connection's socket, to cut a client that lags */
    cp_buf queue;               /* bytes not yet handed to the connection */
    size_t head;                /* how many of them were */
    unsigned refs;              /* the response and the owner */
    bool suspended;
    bool closed;                /* the response is gone: the client with it */
    bool dropped;               /* overflowed: the reader cuts the connection */
    bool ending;                /* the owner let go or the server stops */
    void (*on_close)(void *);
    void *close_ctx;
    http_events *prev;          /* in the server's list while the response lives */
    http_events *next;
};

static void events_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

static void events_unref(http_events *ev)
{
    bool last;

    pthread_mutex_lock(&ev->lock);
    last = --ev->refs == 0;
    pthread_mutex_unlock(&ev->lock);
    if (!last)
        return;
    cp_buf_free(&ev->queue);
    pthread_mutex_destroy(&ev->lock);
    cp_free(ev);
}

/* With ev->lock held: lets a suspended connection run again. */
static void events_wake_locked(http_events *ev)
{
    if (!ev->suspended)
        return;
    ev->suspended = false;
    MHD_resume_connection(ev->conn);
}

static ssize_t events_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    http_events *ev = cls;
    size_t n;

    (void)pos;
    pthread_mutex_lock(&ev->lock);
    n = ev->queue.len - ev->head;
    if (ev->dropped || (n == 0 && ev->ending)) {
        bool dropped = ev->dropped;

        pthread_mutex_unlock(&ev->lock);
        return dropped ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (n == 0) {
        /* Returning 0 is only sound with the connection suspended: no busy loop. */
        ev->suspended = true;
        MHD_suspend_connection(ev->conn);
        pthread_mutex_unlock(&ev->lock);
        return 0;
    }
    if (n > max)
        n = max;
    memcpy(buf, ev->queue.data + ev->head, n);
    ev->head += n;
    if (ev->head == ev->queue.len) {
        ev->queue.len = 0;
        ev->head = 0;
    }
    ev->req->bytes += n;
    pthread_mutex_unlock(&ev->lock);
    return (ssize_t)n;
}

/* The response is freed: the connection is done with the stream. */
static void events_response_free(void *cls)
{
    http_events *ev = cls;
    http_server *s = ev->srv;
    void (*fn)(void *);
    void *ctx;

    pthread_mutex_lock(&s->events_lock);
    if (ev->prev)
        ev->prev->next = ev->next;
    else if (s->events == ev)
        s->events = ev->next;
    if (ev->next)
        ev->next->prev = ev->prev;
    ev->prev = ev->next = NULL;
    pthread_cond_broadcast(&s->events_wake);
    pthread_mutex_unlock(&s->events_lock);

    pthread_mutex_lock(&ev->lock);
    ev->closed = true;
    ev->suspended = false;
    ev->req = NULL;
    fn = ev->on_close;
    ctx = ev->close_ctx;
    ev->on_close = NULL;
    pthread_mutex_unlock(&ev->lock);
    if (fn)
        fn(ctx);
    events_unref(ev);
}

/* Queues raw bytes; the caller formatted them. */
static cp_status events_push(http_events *ev, const void *data, size_t len)
{
    cp_status st = CP_OK;

    pthread_mutex_lock(&ev->lock);
    if (ev->closed || ev->dropped || ev->ending) {
        st = CP_ERR_STOPPED;
    } else if (ev->queue.len - ev->head + len > HTTP_EVENTS_QUEUE_MAX) {
        /*
         * A connection blocked on a full socket never asks the reader
         * again: shutting the socket down (never closing it: the fd stays
         * libmicrohttpd's, and it is open until the response is freed,
         * which sets closed) makes its pending send fail.
         */
        ev->dropped = true;
        if (!ev->suspended && ev->fd >= 0)
            shutdown(ev->fd, SHUT_RDWR);
        st = CP_ERR_LIMIT;
    } else {
        if (ev->head > 0 && ev->queue.len + len > ev->queue.cap) {
            memmove(ev->queue.data, ev->queue.data + ev->head, ev->queue.len - ev->head);
            ev->queue.len -= ev->head;
            ev->head = 0;
        }
        st = cp_buf_append(&ev->queue, data, len);
    }
    if (!ev->closed)
        events_wake_locked(ev);
    pthread_mutex_unlock(&ev->lock);
    return st;
}

/* Appends "name: " and value up to its first line break. */
static cp_status events_field(cp_buf *b, const char *name, const char *value, size_t len)
{
    cp_status st = cp_buf_append_str(b, name);

    if (st == CP_OK)
        st = cp_buf_append(b, value, len);
    if (st == CP_OK)
        st = cp_buf_append_byte(b, '\n');
    return st;
}

cp_status http_events_send(http_events *ev, const char *event, const char *data,
                           const char *id)
{
    cp_buf b = CP_BUF_INIT;
    cp_status st = CP_OK;
    const char *p = data ? data : "";

    if (!ev)
        return CP_ERR_INVALID;
    if (id)
        st = events_field(&b, "id: ", id, strcspn(id, "\r\n"));
    if (st == CP_OK && event)
        st = events_field(&b, "event: ", event, strcspn(event, "\r\n"));
    /* Each line of the data is a data field; the client joins them with '\n'. */
    while (st == CP_OK) {
        size_t n = strcspn(p, "\r\n");

        st = events_field(&b, "data: ", p, n);
        p += n;
        if (*p == '\0')
            break;
        p += p[0] == '\r' && p[1] == '\n' ? 2 : 1;
    }
    if (st == CP_OK)
        st = cp_buf_append_byte(&b, '\n');
    if (st == CP_OK && b.len > HTTP_EVENTS_EVENT_MAX)
        st = CP_ERR_LIMIT;
    if (st == CP_OK)
        st = events_push(ev, b.data, b.len);
    cp_buf_free(&b);
    return st;
}

void http_events_on_close(http_events *ev, void (*fn)(void *ctx), void *ctx)
{
    bool now;

    pthread_mutex_lock(&ev->lock);
    now = ev->closed;
    if (!now) {
        ev->on_close = fn;
        ev->close_ctx = ctx;
    }
    pthread_mutex_unlock(&ev->lock);
    if (now && fn)
        fn(ctx);
}

bool http_events_open(const http_events *ev)
{
    http_events *m = (http_events *)ev;
    bool open;

    pthread_mutex_lock(&m->lock);
    open = !m->closed && !m->dropped && !m->ending;
    pthread_mutex_unlock(&m->lock);
    return open;
}

void http_events_release(http_events *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    ev->ending = true;
    ev->on_close = NULL;
    if (!ev->closed)
        events_wake_locked(ev);
    pthread_mutex_unlock(&ev->lock);
    events_unref(ev);
}

cp_status http_respond_events(http_request *req, http_events **out)
{
    static const char hello[] = "retry: 3000\n\n";
    http_server *s = req->srv;
    const union MHD_ConnectionInfo *ci;
    struct MHD_Response *resp;
    http_events *ev;
    cp_status st;

    *out = NULL;
    if (req->responded)
        return CP_ERR_INVALID;
    ev = cp_calloc(1, sizeof(*ev));
    if (!ev)
        return CP_ERR_NOMEM;
    pthread_mutex_init(&ev->lock, NULL);
    ev->srv = s;
    ev->conn = req->conn;
    ev->req = req;
    ev->refs = 2;
    ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    ev->fd = ci ? ci->connect_fd : -1;
    /* A first line at once, so the client sees the stream open. */
    if (cp_buf_append(&ev->queue, hello, sizeof(hello) - 1) != CP_OK) {
        ev->refs = 1;
        events_unref(ev);
        return CP_ERR_NOMEM;
    }
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, events_reader, ev,
                                             events_response_free);
    if (!resp) {
        ev->refs = 1;
        events_unref(ev);
        return CP_ERR_NOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");

    pthread_mutex_lock(&s->events_lock);
    if (s->events_stopping) {
        pthread_mutex_unlock(&s->events_lock);
        MHD_destroy_response(resp);
        events_unref(ev);
        return CP_ERR_UNAVAILABLE;
    }
    ev->next = s->events;
    if (s->events)
        s->events->prev = ev;
    s->events = ev;
    pthread_mutex_unlock(&s->events_lock);

    st = queue(req, 200, resp);
    if (st != CP_OK) {
        http_events_release(ev);
        return st;
    }
    *out = ev;
    return CP_OK;
}

/* Queues a comment to every stream every events_keepalive_ms, until the server stops. */
static void *events_keepalive_main(void *arg)
{
    static const char ping[] = ": keep-alive\n\n";
    http_server *s = arg;
    unsigned ms = s->cfg.events_keepalive_ms;

    pthread_mutex_lock(&s->events_lock);
    while (!s->events_stopping) {
        struct timespec until;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!s->events_stopping &&
               pthread_cond_timedwait(&s->events_wake, &s->events_lock, &until) == 0)
            continue;
        if (s->events_stopping)
            break;
        for (http_events *ev = s->events; ev; ev = ev->next)
            events_push(ev, ping, sizeof(ping) - 1);
    }
    pthread_mutex_unlock(&s->events_lock);
    return NULL;
}

/*
 * Ends every stream and refuses new ones: a suspended connection must be
 * resumed before MHD_stop_daemon (microhttpd.h).
 */
static void events_stop_all(http_server *s)
{
    pthread_mutex_lock(&s->events_lock);
    s->events_stopping = true;
    pthread_cond_broadcast(&s->events_wake);
    for (http_events *ev = s->events; ev; ev = ev->next) {
        pthread_mutex_lock(&ev->lock);
        ev->ending = true;
        events_wake_locked(ev);
        pthread_mutex_unlock(&ev->lock);
    }
    pthread_mutex_unlock(&s->events_lock);
    if (s->events_thread_started) {
        pthread_join(s->events_thread, NULL);
        s->events_thread_started = false;
    }
}

/* Gives the ended streams a moment to leave before the daemon stops. */
static void events_wait_resumed(http_server *s)
{
    for (unsigned waited = 0; waited < 1000; waited += 10) {
        bool busy;

        pthread_mutex_lock(&s->events_lock);
        busy = s->events != NULL;
        pthread_mutex_unlock(&s->events_lock);
        if (!busy)
            return;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
}

/* --- the request cycle ---------------------------------------------------- */

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_server *s = cls;
    http_request *req = cp_calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->srv = s;
    req->conn = conn;
    req->content_length = -1;
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    snprintf(req->id, sizeof(req->id), "%08x%08llx", s->id_salt,
             (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    req->raw_uri = arena_strndup(req, uri, strlen(uri));
    return req;
}

static void set_peer(http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    strcpy(req->peer, "-");
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

        inet_ntop(AF_INET, &in->sin_addr, req->peer, sizeof(req->peer));
        req->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *a = in6->sin6_addr.s6_addr;

        inet_ntop(AF_INET6, &in6->sin6_addr, req->peer, sizeof(req->peer));
        req->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                        (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && a[12] == 127);
    }
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    size_t *total = cls;

    (void)kind;
    *total += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static http_auth_decision default_auth(http_request *req, void *ctx)
{
    const char *token = req->srv->cfg.static_token;
    const char *h = http_request_header(req, "Authorization");
    size_t tlen, hlen;
    unsigned diff = 0;

    (void)ctx;
    if (!token)
        return req->loopback ? HTTP_AUTH_ALLOW : HTTP_AUTH_FORBIDDEN;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return HTTP_AUTH_UNAUTHENTICATED;
    h += 7;
    while (*h == ' ')
        h++;
    tlen = strlen(token);
    hlen = strlen(h);

    /* Compare in time independent of where they differ. */
    diff = (unsigned)(tlen ^ hlen);
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)(i < hlen ? h[i] : 0);
    return diff == 0 ? HTTP_AUTH_ALLOW : HTTP_AUTH_UNAUTHENTICATED;
}

/* Answers a CORS preflight (Fetch standard, CORS protocol). */
static cp_status preflight(http_request *req, unsigned route_methods)
{
    const char *allow = cors_allow(req->srv, http_request_header(req, "Origin"));
    const char *want = http_request_header(req, "Access-Control-Request-Headers");
    char list[128] = "";
    cp_status st = CP_OK;

    if (!allow)
        return http_respond_error(req, 403, "origin not allowed");
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (route_methods & method_names[i].method)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                     list[0] ? ", " : "", method_names[i].name);
    }
    if (want && strspn(want, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789-_, ") != strlen(want))
        want = NULL;
    st = http_response_header(req, "Access-Control-Allow-Methods", list);
    if (st == CP_OK)
        st = http_response_header(req, "Access-Control-Allow-Headers",
                                  want ? want : "Authorization, Content-Type, Accept");
    if (st == CP_OK)
        st = http_response_header(req, "Access-Control-Max-Age", "600");
    if (st == CP_OK)
        st = http_respond_buffer(req, 204, NULL, "", 0);
    return st;
}

static cp_status admit(http_request *req);

/* Checks the request's size, routes it and answers what needs no handler. */
static cp_status begin(http_request *req, const char *method)
{
    http_server *s = req->srv;
    char *segs[HTTP_PATH_SEGMENTS_MAX];
    size_t nseg = 0, header_bytes = 0;
    unsigned allowed = 0;
    cp_status st;

    req->begun = true;
    set_peer(req);
    req->method_name = "OTHER";
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (strcmp(method, method_names[i].name) == 0) {
            req->method = method_names[i].method;
            req->method_name = method_names[i].name;
        }
    }
    if (!req->raw_uri)
        return http_respond_error(req, 503, "out of memory");
    if (strlen(req->raw_uri) > s->cfg.max_url_bytes)
        return http_respond_error(req, 414, "request target too long");
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &header_bytes);
    if (header_bytes + strlen(req->raw_uri) > s->cfg.max_header_bytes)
        return http_respond_error(req, 431, "request headers too large");
    if (!req->method)
        return http_respond_error(req, 501, "method not implemented");

    st = parse_target(req, segs, &nseg);
    if (st == CP_ERR_NOMEM)
        return http_respond_error(req, 503, "out of memory");
    if (st == CP_ERR_LIMIT)
        return http_respond_error(req, 414, "too many query parameters");
    if (st == CP_ERR_MALFORMED)
        return http_respond_error(req, 400, "malformed request target");

    for (size_t i = 0; st == CP_OK && i < s->nroutes; i++) {
        const route *r = &s->routes[i];
        unsigned m = r->methods | ((r->methods & HTTP_GET) ? HTTP_HEAD : 0);

        if (!route_match(req, r, segs, nseg))
            continue;
        allowed |= m;
        if (m & req->method) {
            req->route = r;
            break;
        }
    }
    if (!allowed)
        return http_respond_error(req, 404, "no such resource");
    if (req->method == HTTP_OPTIONS && !req->route) {
        if (http_request_header(req, "Access-Control-Request-Method"))
            return preflight(req, allowed);
        return http_respond_buffer(req, 204, NULL, "", 0);
    }
    if (!req->route) {
        char list[128] = "";

        for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
            if (allowed & method_names[i].method)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         list[0] ? ", " : "", method_names[i].name);
        }
        http_response_header(req, "Allow", list);
        return http_respond_error(req, 405, "method not allowed");
    }

    return admit(req);
}

/* Runs the auth hook and the body limit, then the handler. */
static cp_status admit(http_request *req)
{
    http_server *s = req->srv;
    http_auth_fn auth = s->cfg.auth ? s->cfg.auth : default_auth;
    const char *cl;
    cp_status st;

    if (!(req->route->flags & HTTP_ROUTE_PUBLIC)) {
        http_auth_decision d = auth(req, s->cfg.auth_ctx);

        if (d == HTTP_AUTH_UNAUTHENTICATED) {
            http_response_header(req, "WWW-Authenticate", "Bearer realm=\"cloudpacs\"");
            return http_respond_error(req, 401, "authentication required");
        }
        if (d == HTTP_AUTH_UNAVAILABLE) {
            http_response_header(req, "Retry-After", "5");
            return http_respond_error(req, 503, "identity service unavailable");
        }
        if (d == HTTP_AUTH_RESPONDED)
            return CP_OK;
        if (d != HTTP_AUTH_ALLOW)
            return http_respond_error(req, 403, "forbidden");
    }

    req->body_limit = (req->route->flags & HTTP_ROUTE_LARGE_BODY) ? s->cfg.max_body_large
                                                                  : s->cfg.max_body_small;
    cl = http_request_header(req, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(cl, &end, 10);
        if (errno || end == cl || *end || cl[0] == '-' || v > INT64_MAX)
            return http_respond_error(req, 400, "bad Content-Length");
        req->content_length = (int64_t)v;
        if (v > req->body_limit)
            return http_respond_error(req, 413, "request body too large");
    }

    st = req->route->handler(req, req->route->ctx);
    if (!req->responded && !req->reading_body)
        return http_respond_error(req, st == CP_OK ? 500 : http_status_for(st),
                                  st == CP_OK ? "handler gave no response"
                                              : cp_status_summary(st));
    return CP_OK;
}

/* A chunk of the body: counted against the limit, then handed over. */
static void body_chunk(http_request *req, const char *data, size_t len)
{
    cp_status st;

    req->body_received += len;
    if (req->body_received > req->body_limit) {
        req->fail_status = 413;
        req->fail_message = "request body too large";
        return;
    }
    if (!req->on_body)
        return;
    st = req->on_body(req, (const uint8_t *)data, len, req->body_ctx);
    if (st != CP_OK) {
        req->fail_status = http_status_for(st);
        req->fail_message = cp_status_summary(st);
    }
}

/*
 * A response can be queued only before the body is read (which makes
 * libmicrohttpd close the connection after it) or once the request is
 * complete. So a request without a body is handled at its final call, to
 * keep the connection alive; one with a body is checked and handed to its
 * handler at once, so that a refusal comes before the body is sent; a
 * failure in the middle of a body is answered once the body has ended.
 */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    http_request *req = *con_cls;
    size_t n = *upload_data_size;

    (void)cls;
    (void)url;
    (void)version;
    if (!req)
        return MHD_NO;
    req->conn = conn;
    if (!req->started) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");

        req->started = true;
        if ((cl && strcmp(cl, "0") != 0) ||
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding"))
            begin(req, method);
        return MHD_YES;
    }

    if (n > 0) {
        *upload_data_size = 0;
        if (req->responded)
            return MHD_YES;
        if (!req->fail_status) {
            body_chunk(req, upload_data, n);
            return MHD_YES;
        }
        /* Read and drop the rest of a failed body, within bounds. */
        req->discarded += n;
        if (req->fail_status == 413 && req->discarded > HTTP_BODY_DISCARD_MAX)
            return MHD_NO;
        return req->body_received + req->discarded > req->body_limit + HTTP_BODY_DISCARD_MAX
                   ? MHD_NO : MHD_YES;
    }

    if (!req->begun)
        begin(req, method);
    if (!req->responded && req->fail_status)
        http_respond_error(req, req->fail_status, req->fail_message);
    if (!req->responded && req->reading_body) {
        cp_status st = req->on_complete(req, req->body_ctx);

        if (!req->responded)
            http_respond_error(req, st == CP_OK ? 500 : http_status_for(st),
                               st == CP_OK ? "handler gave no response"
                                           : cp_status_summary(st));
    }
    return req->responded ? MHD_YES : MHD_NO;
}

static void request_free(http_request *req)
{
    if (req->cleanup)
        req->cleanup(req->cleanup_ctx);
    if (req->identity_free)
        req->identity_free(req->identity);
    cp_buf_free(&req->extra_headers);
    while (req->arena) {
        arena_block *next = req->arena->next;

        cp_free(req->arena);
        req->arena = next;
    }
    cp_free(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_request *req = *con_cls;
    http_access_entry e;
    char labels[512];
    const char *route_label;

    (void)conn;
    (void)toe;
    if (!req)
        return;
    *con_cls = NULL;
    route_label = req->route ? req->route->label : "-";
    e = (http_access_entry){
        .request_id = req->id,
        .method = req->method_name ? req->method_name : "-",
        .route = req->route ? req->route->pattern : "-",
        .peer = req->peer[0] ? req->peer : "-",
        .status = req->status,
        .bytes = req->bytes,
        .seconds = seconds_since(&req->start),
    };
    if (s->cfg.access_log)
        s->cfg.access_log(&e, s->cfg.access_log_ctx);
    else
        cp_log_info("http.access", "id=%s method=%s route=%s status=%d bytes=%llu "
                    "ms=%.3f peer=%s", e.request_id, e.method, e.route, e.status,
                    (unsigned long long)e.bytes, e.seconds * 1000.0, e.peer);

    snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"", route_label, e.status);
    http_metrics_counter_add("http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", route_label);
    metric_update("http_request_duration_seconds", METRIC_HISTOGRAM, labels, e.seconds);
    http_metrics_counter_add("http_response_bytes_total", labels, (double)e.bytes);
    request_free(req);
}

/* --- start and stop ------------------------------------------------------- */

static cp_status bind_address(const http_server *s, struct sockaddr_storage *ss,
                              bool *v6, cp_error *err)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    *v6 = false;
    if (inet_pton(AF_INET, s->cfg.bind_address, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(s->cfg.port);
        return CP_OK;
    }
    if (inet_pton(AF_INET6, s->cfg.bind_address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(s->cfg.port);
        *v6 = true;
        return CP_OK;
    }
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "bind address \"%s\" is not an IP address", s->cfg.bind_address);
}

cp_status http_server_start(http_server *s, cp_error *err)
{
    struct sockaddr_storage ss;
    bool v6;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
    size_t mem = HTTP_CONNECTION_MEMORY;
    const union MHD_DaemonInfo *info;
    cp_status st;

    if (s->daemon || s->stopped)
        return CP_ERR_INVALID;
    st = bind_address(s, &ss, &v6, err);
    if (st != CP_OK)
        return st;
    if (mem < 2 * s->cfg.max_header_bytes + 16 * 1024)
        mem = 2 * s->cfg.max_header_bytes + 16 * 1024;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL
                                                                    : MHD_USE_POLL;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (s->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET,
                                CP_ERROR_NO_TAG, "libmicrohttpd was built without TLS");
        flags |= MHD_USE_TLS;
    }

    s->daemon = MHD_start_daemon(flags, s->cfg.port, NULL, NULL, on_access, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)s->cfg.threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->cfg.timeout_seconds,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        s->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
        MHD_OPTION_END);
    if (!s->daemon)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "cannot listen on %s port %u (in use, or TLS key rejected)",
                            s->cfg.bind_address, (unsigned)s->cfg.port);
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->cfg.port;
    s->events_thread_started =
        pthread_create(&s->events_thread, NULL, events_keepalive_main, s) == 0;
    if (!s->events_thread_started)
        cp_log_warn("http.events", "detail=\"no keep-alive thread: idle streams may be cut\"");
    return CP_OK;
}

uint16_t http_server_port(const http_server *s)
{
    return s->port;
}

void http_server_stop(http_server *s, unsigned grace_ms)
{
    MHD_socket lsock;

    if (!s->daemon)
        return;
    lsock = MHD_quiesce_daemon(s->daemon);
    if (lsock != MHD_INVALID_SOCKET)
        close(lsock);
    events_stop_all(s);
    for (unsigned waited = 0; waited < grace_ms; waited += 10) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

        if (!info || info->num_connections == 0)
            break;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    events_wait_resumed(s);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    s->stopped = true;
}

void http_server_destroy(http_server *s)
{
    if (!s)
        return;
    http_server_stop(s, 0);
    for (size_t i = 0; i < s->nroutes; i++)
        route_free(&s->routes[i]);
    cp_free(s->routes);
    for (size_t i = 0; i < sizeof(s->strings) / sizeof(s->strings[0]); i++)
        cp_free(s->strings[i]);
    cp_free(s->tls_cert);
    cp_free(s->tls_key);
    pthread_mutex_destroy(&s->events_lock);
    pthread_cond_destroy(&s->events_wake);
    cp_free(s);
}
