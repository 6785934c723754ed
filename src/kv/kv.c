/*
 * kv.c - the Redis client of cloudpacs: a pool of hiredis connections shared
 * by every thread, speaking RESP2 (the Redis serialization protocol) with
 * commands given as argument vectors.
 *
 * A call takes an idle connection, or opens one while fewer than pool_max
 * are open, or waits for one to come back. A connection whose command failed
 * at the socket level (reset, timeout, end of file) is freed instead of
 * returned, together with the idle ones, which most likely broke with it.
 * Connects that fail start a back-off window shared by the pool, in which
 * calls fail at once with CP_ERR_UNAVAILABLE; the window doubles with each
 * failed connect and is forgotten after one that succeeds.
 *
 * hiredis writes with write(2), so a write to a socket whose server has gone
 * raises SIGPIPE; every exchange with Redis holds SIGPIPE blocked in the
 * calling thread and consumes one it raised, so that the process's own
 * signal handling is left alone.
 */
#include "kv/kv.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <hiredis/hiredis.h>

#include "core/alloc.h"
#include "core/limits.h"

/* Arguments of one command, so that argc always fits hiredis's int. */
enum { KV_ARGS_MAX = 1 << 20 };

enum kv_transport { KV_TCP, KV_UNIX };

struct kv {
    enum kv_transport transport;
    char *host;                     /* KV_TCP */
    int port;
    char *path;                     /* KV_UNIX */
    char *user;                     /* NULL: AUTH with the password alone */
    char *password;                 /* NULL: no AUTH */
    long db;                        /* SELECT when not 0 */

    char *prefix;
    size_t prefix_len;
    unsigned pool_max;
    unsigned timeout_ms;

    pthread_mutex_t lock;
    pthread_cond_t returned;        /* a connection came back or was dropped */
    redisContext **idle;            /* pool_max slots */
    unsigned idle_count;
    unsigned open_count;            /* idle, in use, and being opened */

    uint64_t retry_at_ms;           /* no connect before this (monotonic) */
    unsigned backoff_ms;            /* 0: the last connect succeeded */
    bool probing;                   /* a connect runs during a back-off */
    char last_error[128];

    atomic_bool available;
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval ms_to_timeval(unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    return tv;
}

/* --- SIGPIPE guard ------------------------------------------------------- */

typedef struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    sigset_t set;
    sigset_t pending;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigemptyset(&pending);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
}

static void sigpipe_restore(sigpipe_guard *g)
{
    sigset_t set;
    sigset_t pending;
    struct timespec zero = { 0, 0 };

    if (!g->was_pending) {
        sigemptyset(&pending);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE) == 1) {
            sigemptyset(&set);
            sigaddset(&set, SIGPIPE);
            while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR) {
            }
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* redisCommandArgv with SIGPIPE held off; errno is hiredis's. */
static redisReply *run_argv(redisContext *c, int argc, const char **argv,
                            const size_t *argl)
{
    sigpipe_guard g;
    redisReply *r;
    int saved;

    sigpipe_block(&g);
    r = redisCommandArgv(c, argc, argv, argl);
    saved = errno;
    sigpipe_restore(&g);
    errno = saved;
    return r;
}

/* --- URL parsing --------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A copy of s[0..len) with %XX escapes decoded; NULL on a bad escape or OOM. */
static char *percent_decode(const char *s, size_t len, bool *bad)
{
    char *out = cp_malloc(len + 1);
    size_t n = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0
            || (s[i + 1] == '0' && s[i + 2] == '0')) {
            *bad = true;
            cp_free(out);
            return NULL;
        }
        out[n++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
        i += 2;
    }
    out[n] = '\0';
    return out;
}

static cp_status parse_unix(kv *k, const char *path, cp_error *err)
{
    struct sockaddr_un sa;
    size_t len = strlen(path);

    if (path[0] != '/')
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis socket path must be absolute");
    if (len >= sizeof(sa.sun_path))
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis socket path is %zu bytes, more than the %zu a "
                            "Unix socket allows", len, sizeof(sa.sun_path) - 1);
    k->transport = KV_UNIX;
    k->path = cp_strdup(path);
    if (k->path == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    return CP_OK;
}

/* Decimal digits s[0..len) into *out, at most max; false when not that. */
static bool parse_decimal(const char *s, size_t len, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 9)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static cp_status parse_userinfo(kv *k, const char *s, size_t len, cp_error *err)
{
    const char *colon = memchr(s, ':', len);
    bool bad = false;

    if (colon == NULL)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis URL: credentials must read [user]:password@");
    if (colon > s) {
        k->user = percent_decode(s, (size_t)(colon - s), &bad);
        if (k->user == NULL)
            goto fail;
    }
    k->password = percent_decode(colon + 1, len - (size_t)(colon + 1 - s), &bad);
    if (k->password == NULL)
        goto fail;
    return CP_OK;

fail:
    if (bad)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis URL: bad %%-escape in the credentials");
    return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "out of memory");
}

/* host[:port] or [v6]:port */
static cp_status parse_hostport(kv *k, const char *s, size_t len, cp_error *err)
{
    const char *host = s;
    size_t host_len;
    const char *rest;
    long port = 6379;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);

        if (close == NULL)
            goto bad;
        host = s + 1;
        host_len = (size_t)(close - host);
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', len);

        host_len = colon != NULL ? (size_t)(colon - s) : len;
        rest = s + host_len;
    }
    if (host_len == 0)
        goto bad;

    if (rest < s + len) {
        if (*rest != ':' || !parse_decimal(rest + 1, (size_t)(s + len - rest - 1),
                                           65535, &port) || port == 0)
            goto bad;
    }

    k->transport = KV_TCP;
    k->port = (int)port;
    k->host = cp_strndup(host, host_len);
    if (k->host == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    return CP_OK;

bad:
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "redis URL: host and port not understood");
}

static cp_status parse_redis_url(kv *k, const char *s, cp_error *err)
{
    size_t auth_len = strcspn(s, "/?#");
    const char *at = NULL;
    cp_status st;

    if (s[auth_len] == '?' || s[auth_len] == '#')
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis URL: query and fragment are not supported");
    for (size_t i = 0; i < auth_len; i++)
        if (s[i] == '@')
            at = s + i;

    if (at != NULL) {
        st = parse_userinfo(k, s, (size_t)(at - s), err);
        if (st != CP_OK)
            return st;
    }
    st = parse_hostport(k, at != NULL ? at + 1 : s,
                        at != NULL ? (size_t)(s + auth_len - at - 1) : auth_len, err);
    if (st != CP_OK)
        return st;

    if (s[auth_len] == '/' && s[auth_len + 1] != '\0') {
        const char *db = s + auth_len + 1;

        if (!parse_decimal(db, strlen(db), INT_MAX, &k->db))
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "redis URL: database must be a number");
    }
    return CP_OK;
}

static cp_status parse_url(kv *k, const char *url, cp_error *err)
{
    if (url == NULL || url[0] == '\0')
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no redis URL");
    if (strncmp(url, "redis://", 8) == 0)
        return parse_redis_url(k, url + 8, err);
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix(k, url + 7, err);
    if (strncmp(url, "unix:", 5) == 0)
        return parse_unix(k, url + 5, err);
    if (url[0] == '/')
        return parse_unix(k, url, err);
    if (strncmp(url, "rediss://", 9) == 0)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis over TLS (rediss://) is not supported");
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "redis URL must start with redis://, unix: or /");
}

/* --- create, destroy ----------------------------------------------------- */

cp_status kv_create(const kv_config *cfg, kv **out, cp_error *err)
{
    pthread_condattr_t attr;
    const char *prefix;
    cp_status st;
    kv *k;

    *out = NULL;
    if (cfg == NULL)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no redis configuration");
    prefix = cfg->prefix != NULL ? cfg->prefix : "cp:";
    if (strlen(prefix) >= KV_KEY_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis key prefix longer than %d bytes", KV_KEY_MAX - 1);

    k = cp_calloc(1, sizeof(*k));
    if (k == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    st = parse_url(k, cfg->url, err);
    if (st != CP_OK)
        goto fail;

    if (cfg->pool_max > KV_POOL_MAX) {
        st = cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redis pool of %u connections, more than %d",
                          cfg->pool_max, KV_POOL_MAX);
        goto fail;
    }
    k->pool_max = cfg->pool_max != 0 ? cfg->pool_max : KV_POOL_MAX;
    k->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : KV_COMMAND_TIMEOUT_MS;
    k->prefix = cp_strdup(prefix);
    k->prefix_len = strlen(prefix);
    k->idle = cp_calloc(k->pool_max, sizeof(*k->idle));
    if (k->prefix == NULL || k->idle == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "out of memory");
        goto fail;
    }

    pthread_mutex_init(&k->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&k->returned, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&k->available, false);
    *out = k;
    return CP_OK;

fail:
    cp_free(k->host);
    cp_free(k->path);
    cp_free(k->user);
    cp_free(k->password);
    cp_free(k->prefix);
    cp_free(k->idle);
    cp_free(k);
    return st;
}

void kv_destroy(kv *k)
{
    if (k == NULL)
        return;
    for (unsigned i = 0; i < k->idle_count; i++)
        redisFree(k->idle[i]);
    pthread_cond_destroy(&k->returned);
    pthread_mutex_destroy(&k->lock);
    if (k->password != NULL)
        memset(k->password, 0, strlen(k->password));
    cp_free(k->host);
    cp_free(k->path);
    cp_free(k->user);
    cp_free(k->password);
    cp_free(k->prefix);
    cp_free(k->idle);
    cp_free(k);
}

/* --- connections ---------------------------------------------------------- */

/* Runs a connect-time command (AUTH, SELECT); any failure fails the connect. */
static cp_status setup_command(redisContext *c, int argc, const char **argv,
                               const char *what, cp_error *err)
{
    redisReply *r = run_argv(c, argc, argv, NULL);
    cp_status st = CP_OK;

    if (r == NULL)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis %s: %s", what, c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redis refused %s: %.*s", what, (int)(r->len > 160 ? 160 : r->len),
                          r->str);
    freeReplyObject(r);
    return st;
}

/* Opens and prepares one connection; no lock held. */
static cp_status conn_open(kv *k, redisContext **out, cp_error *err)
{
    struct timeval ctv = ms_to_timeval(KV_CONNECT_TIMEOUT_MS);
    redisContext *c;
    cp_status st;

    if (k->transport == KV_UNIX)
        c = redisConnectUnixWithTimeout(k->path, ctv);
    else
        c = redisConnectWithTimeout(k->host, k->port, ctv);
    if (c == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    if (c->err != 0) {
        st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redis connect to %s: %s",
                          k->transport == KV_UNIX ? k->path : k->host, c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, ms_to_timeval(k->timeout_ms)) != REDIS_OK) {
        st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redis: cannot set the command timeout: %s", c->errstr);
        goto fail;
    }

    if (k->password != NULL) {
        const char *argv[3] = { "AUTH", k->user, k->password };

        if (k->user == NULL)
            argv[1] = k->password;
        st = setup_command(c, k->user != NULL ? 3 : 2, argv, "AUTH", err);
        if (st != CP_OK)
            goto fail;
    }
    if (k->db != 0) {
        char db[16];
        const char *argv[2] = { "SELECT", db };

        snprintf(db, sizeof(db), "%ld", k->db);
        st = setup_command(c, 2, argv, "SELECT", err);
        if (st != CP_OK)
            goto fail;
    }
    *out = c;
    return CP_OK;

fail:
    redisFree(c);
    return st;
}

static void remember_error(kv *k, const cp_error *err)
{
    snprintf(k->last_error, sizeof(k->last_error), "%.120s",
             err != NULL && err->detail[0] != '\0' ? err->detail : "connect failed");
}

static cp_status wait_returned(kv *k, uint64_t deadline, cp_error *err)
{
    struct timespec ts;
    uint64_t now = now_ms();

    if (now >= deadline)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis: all %u connections stayed busy", k->pool_max);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)((deadline - now) / 1000);
    ts.tv_nsec += (long)((deadline - now) % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&k->returned, &k->lock, &ts);
    return CP_OK;
}

/*
 * Takes a connection: an idle one, a new one, or the next one given back.
 * Fails at once inside the back-off window, and while another caller is
 * already probing a Redis that was away.
 */
static cp_status conn_take(kv *k, redisContext **out, cp_error *err)
{
    uint64_t deadline = now_ms() + k->timeout_ms;
    bool probe;
    cp_status st;
    cp_error local;

    if (err == NULL) {
        cp_error_clear(&local);
        err = &local;
    }

    pthread_mutex_lock(&k->lock);
    for (;;) {
        uint64_t now;

        if (k->idle_count > 0) {
            *out = k->idle[--k->idle_count];
            pthread_mutex_unlock(&k->lock);
            return CP_OK;
        }
        now = now_ms();
        if (k->open_count < k->pool_max && now < k->retry_at_ms) {
            st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET,
                              CP_ERROR_NO_TAG, "redis away, next try in %u ms: %s",
                              (unsigned)(k->retry_at_ms - now), k->last_error);
            goto unlock;
        }
        if (k->open_count < k->pool_max && k->backoff_ms != 0 && k->probing) {
            st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET,
                              CP_ERROR_NO_TAG, "redis away, reconnecting: %s",
                              k->last_error);
            goto unlock;
        }
        if (k->open_count < k->pool_max)
            break;
        st = wait_returned(k, deadline, err);
        if (st != CP_OK)
            goto unlock;
    }
    k->open_count++;
    probe = k->backoff_ms != 0;
    if (probe)
        k->probing = true;
    pthread_mutex_unlock(&k->lock);

    st = conn_open(k, out, err);

    pthread_mutex_lock(&k->lock);
    if (probe)
        k->probing = false;
    if (st == CP_OK) {
        k->backoff_ms = 0;
        k->retry_at_ms = 0;
    } else {
        k->open_count--;
        k->backoff_ms = k->backoff_ms == 0 ? KV_RECONNECT_MIN_MS : k->backoff_ms * 2;
        if (k->backoff_ms > KV_RECONNECT_MAX_MS)
            k->backoff_ms = KV_RECONNECT_MAX_MS;
        k->retry_at_ms = now_ms() + k->backoff_ms;
        remember_error(k, err);
        atomic_store(&k->available, false);
        pthread_cond_broadcast(&k->returned);
    }

unlock:
    pthread_mutex_unlock(&k->lock);
    return st;
}

/*
 * Gives a connection back, or frees it when it broke; a broken one takes
 * the idle ones with it, since they most likely lost the same server.
 * Freeing only closes sockets, so it is done under the lock.
 */
static void conn_give(kv *k, redisContext *c)
{
    pthread_mutex_lock(&k->lock);
    if (c->err == 0) {
        k->idle[k->idle_count++] = c;
        pthread_cond_signal(&k->returned);
        pthread_mutex_unlock(&k->lock);
        return;
    }

    redisFree(c);
    k->open_count--;
    while (k->idle_count > 0) {
        redisFree(k->idle[--k->idle_count]);
        k->open_count--;
    }
    atomic_store(&k->available, false);
    pthread_cond_broadcast(&k->returned);
    pthread_mutex_unlock(&k->lock);
}

/* --- replies -------------------------------------------------------------- */

void kv_reply_free(kv_reply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        kv_reply_free(r->elements[i]);
    cp_free(r->elements);
    cp_free(r->str);
    cp_free(r);
}

static cp_status error_reply(const redisReply *r, cp_error *err)
{
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "redis: %.*s", (int)(r->len > 200 ? 200 : r->len), r->str);
}

/*
 * A deep copy of r. hiredis bounds the nesting of what it parses, so the
 * recursion is bounded too. An error nested in an array (EXEC, a script's
 * table) fails the whole call like a top-level one.
 */
static cp_status reply_copy(const redisReply *r, kv_reply **out, cp_error *err)
{
    kv_reply *c;
    cp_status st;

    *out = NULL;
    if (r->type == REDIS_REPLY_ERROR)
        return error_reply(r, err);
    c = cp_calloc(1, sizeof(*c));
    if (c == NULL)
        goto nomem;

    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        c->type = KV_REPLY_INTEGER;
        c->integer = r->integer;
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        c->type = KV_REPLY_STRING;
        c->str = cp_malloc(r->len + 1);
        if (c->str == NULL)
            goto nomem;
        if (r->len > 0)
            memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
        break;
    case REDIS_REPLY_ARRAY:
        c->type = KV_REPLY_ARRAY;
        if (r->elements == 0)
            break;
        c->elements = cp_calloc(r->elements, sizeof(*c->elements));
        if (c->elements == NULL)
            goto nomem;
        for (size_t i = 0; i < r->elements; i++) {
            st = reply_copy(r->element[i], &c->elements[i], err);
            c->count = i + 1;
            if (st != CP_OK) {
                kv_reply_free(c);
                return st;
            }
        }
        break;
    default:
        c->type = KV_REPLY_NIL;
        break;
    }
    *out = c;
    return CP_OK;

nomem:
    kv_reply_free(c);
    return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "out of memory");
}

/* --- commands ------------------------------------------------------------- */

/* Runs one command on c; *raw gets the reply unless the connection failed. */
static cp_status conn_run(kv *k, redisContext *c, int argc, const char **argv,
                          const size_t *argl, redisReply **raw, cp_error *err)
{
    *raw = run_argv(c, argc, argv, argl);
    if (*raw != NULL) {
        atomic_store(&k->available, true);
        return CP_OK;
    }
    if (c->err == REDIS_ERR_OOM)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory in hiredis");
    if (c->err == 0)
        c->err = REDIS_ERR_OTHER;
    if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis did not answer within %u ms", k->timeout_ms);
    return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "redis connection lost: %s", c->errstr);
}

/* Converts a raw reply (freed here) into *reply when reply is not NULL. */
static cp_status finish_reply(redisReply *raw, kv_reply **reply, cp_error *err)
{
    cp_status st = CP_OK;
    kv_reply *copy = NULL;

    if (reply == NULL) {
        if (raw->type == REDIS_REPLY_ERROR)
            st = error_reply(raw, err);
    } else {
        st = reply_copy(raw, &copy, err);
        *reply = copy;
    }
    freeReplyObject(raw);
    return st;
}

cp_status kv_command(kv *k, size_t argc, const char *const *argv, const size_t *argl,
                     kv_reply **reply, cp_error *err)
{
    redisContext *c;
    redisReply *raw;
    cp_status st;

    if (reply != NULL)
        *reply = NULL;
    if (k == NULL || argc == 0 || argc > KV_ARGS_MAX || argv == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "kv_command: no command");
    for (size_t i = 0; i < argc; i++)
        if (argv[i] == NULL)
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET,
                                CP_ERROR_NO_TAG, "kv_command: argument %zu is NULL", i);

    st = conn_take(k, &c, err);
    if (st != CP_OK)
        return st;
    st = conn_run(k, c, (int)argc, (const char **)argv, argl, &raw, err);
    conn_give(k, c);
    if (st != CP_OK)
        return st;
    return finish_reply(raw, reply, err);
}

cp_status kv_commandv(kv *k, kv_reply **reply, cp_error *err, ...)
{
    const char **argv;
    size_t argc = 0;
    va_list ap;
    cp_status st;

    if (reply != NULL)
        *reply = NULL;
    va_start(ap, err);
    while (argc <= KV_ARGS_MAX && va_arg(ap, const char *) != NULL)
        argc++;
    va_end(ap);
    if (argc == 0 || argc > KV_ARGS_MAX)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "kv_commandv: %s", argc == 0 ? "no command"
                                                         : "too many arguments");

    argv = cp_calloc(argc, sizeof(*argv));
    if (argv == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    va_start(ap, err);
    for (size_t i = 0; i < argc; i++)
        argv[i] = va_arg(ap, const char *);
    va_end(ap);

    st = kv_command(k, argc, argv, NULL, reply, err);
    cp_free(argv);
    return st;
}

/* The SHA1 of a script in hex, as EVALSHA names it. */
static cp_status script_sha(const char *script, char hex[41], cp_error *err)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char sha[20];

    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, script, strlen(script), sha) < 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "SHA1 unavailable for EVALSHA");
    for (size_t i = 0; i < sizeof(sha); i++) {
        hex[2 * i] = digits[sha[i] >> 4];
        hex[2 * i + 1] = digits[sha[i] & 15];
    }
    hex[40] = '\0';
    return CP_OK;
}

static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 8
           && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* EVALSHA on c, then SCRIPT LOAD and EVALSHA again when Redis lacks it. */
static cp_status eval_on(kv *k, redisContext *c, const char *script, int argc,
                         const char **argv, redisReply **raw, cp_error *err)
{
    const char *load[3] = { "SCRIPT", "LOAD", script };
    redisReply *loaded;
    cp_status st;

    st = conn_run(k, c, argc, argv, NULL, raw, err);
    if (st != CP_OK || !is_noscript(*raw))
        return st;
    freeReplyObject(*raw);
    *raw = NULL;

    st = conn_run(k, c, 3, load, NULL, &loaded, err);
    if (st != CP_OK)
        return st;
    st = finish_reply(loaded, NULL, err);
    if (st != CP_OK)
        return st;
    return conn_run(k, c, argc, argv, NULL, raw, err);
}

cp_status kv_eval(kv *k, const char *script, size_t nkeys, const char *const *keys,
                  size_t nargs, const char *const *args, kv_reply **reply, cp_error *err)
{
    char sha[41];
    char numkeys[24];
    const char **argv = NULL;
    redisContext *c;
    redisReply *raw = NULL;
    size_t argc;
    cp_status st;

    if (reply != NULL)
        *reply = NULL;
    if (k == NULL || script == NULL || nkeys > KV_ARGS_MAX || nargs > KV_ARGS_MAX
        || (nkeys > 0 && keys == NULL) || (nargs > 0 && args == NULL))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "kv_eval: bad arguments");
    st = script_sha(script, sha, err);
    if (st != CP_OK)
        return st;

    argc = 3 + nkeys + nargs;
    argv = cp_calloc(argc, sizeof(*argv));
    if (argv == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    snprintf(numkeys, sizeof(numkeys), "%zu", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = numkeys;
    for (size_t i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (size_t i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];
    for (size_t i = 3; i < argc; i++) {
        if (argv[i] == NULL) {
            st = cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "kv_eval: a key or argument is NULL");
            goto done;
        }
    }

    st = conn_take(k, &c, err);
    if (st != CP_OK)
        goto done;
    st = eval_on(k, c, script, (int)argc, argv, &raw, err);
    conn_give(k, c);
    if (st == CP_OK)
        st = finish_reply(raw, reply, err);

done:
    cp_free(argv);
    return st;
}

/* --- small helpers -------------------------------------------------------- */

cp_status kv_key(const kv *k, char *out, size_t cap, const char *a, const char *b)
{
    size_t alen;
    size_t blen;
    size_t need;

    if (k == NULL || out == NULL || a == NULL)
        return CP_ERR_INVALID;
    alen = strlen(a);
    blen = b != NULL ? strlen(b) + 1 : 0;
    need = k->prefix_len + alen + blen + 1;
    if (need > cap || need > KV_KEY_MAX) {
        if (cap > 0)
            out[0] = '\0';
        return CP_ERR_LIMIT;
    }

    memcpy(out, k->prefix, k->prefix_len);
    memcpy(out + k->prefix_len, a, alen);
    if (b != NULL) {
        out[k->prefix_len + alen] = ':';
        memcpy(out + k->prefix_len + alen + 1, b, blen - 1);
    }
    out[need - 1] = '\0';
    return CP_OK;
}

cp_status kv_ping(kv *k, cp_error *err)
{
    kv_reply *r = NULL;
    cp_status st = kv_commandv(k, &r, err, "PING", (const char *)NULL);

    if (st == CP_OK && (r->type != KV_REPLY_STRING || strcmp(r->str, "PONG") != 0))
        st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redis answered PING with something else than PONG");
    kv_reply_free(r);
    return st;
}

bool kv_available(const kv *k)
{
    if (k == NULL)
        return false;
    return atomic_load((atomic_bool *)&k->available);
}
