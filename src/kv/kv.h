/*
 * kv.h - the Redis client of cloudpacs (hiredis underneath): the fast,
 * shared, rebuildable state (sessions, counters, locks, later the reading
 * pool). Redis is never the truth for anything the SQL index holds.
 *
 * A kv is a small pool of connections shared by every thread: a call takes
 * an idle connection (or opens one, up to KV_POOL_MAX), runs its command and
 * gives the connection back. A connection that fails is dropped; the next
 * call reconnects, with back-off (KV_RECONNECT_MIN_MS doubling to
 * KV_RECONNECT_MAX_MS) shared by the whole pool, so that a Redis that is away
 * costs each caller one quick CP_ERR_UNAVAILABLE instead of a hang. Every
 * command has a timeout (KV_COMMAND_TIMEOUT_MS).
 *
 * Commands are given as argument vectors (binary-safe, never formatted into
 * a command string), so no value coming from a user can change a command.
 * Keys are prefixed by the kv's namespace ("cp:" by default) by the caller's
 * use of kv_key(); the client itself sends what it is given.
 */
#ifndef CP_KV_KV_H
#define CP_KV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct kv kv;

typedef struct kv_config {
    /*
     * "redis://[:password@]host[:port][/db]", "unix:///path/to/redis.sock"
     * (also "unix:/path"), or a bare socket path starting with '/'.
     */
    const char *url;
    const char *prefix;             /* key namespace; NULL: "cp:" */
    unsigned pool_max;              /* 0: KV_POOL_MAX */
    unsigned timeout_ms;            /* per command; 0: KV_COMMAND_TIMEOUT_MS */
} kv_config;

/* What a command answered, reduced to what cloudpacs uses. */
typedef enum kv_reply_type {
    KV_REPLY_NIL,
    KV_REPLY_INTEGER,
    KV_REPLY_STRING,                /* bulk and status strings */
    KV_REPLY_ARRAY,
} kv_reply_type;

/*
 * A reply, owned by the caller and freed with kv_reply_free. An error reply
 * from Redis is not a kv_reply: the call returns CP_ERR_INVALID with the
 * message in err->detail.
 */
typedef struct kv_reply {
    kv_reply_type type;
    long long integer;
    char *str;                      /* NUL-terminated; len excludes the NUL */
    size_t len;
    struct kv_reply **elements;
    size_t count;
} kv_reply;

/*
 * Creates a client for cfg (copied). Does not connect yet: the first
 * command does, so a client can be made before its Redis is up.
 * CP_ERR_CONFIG when the URL is not understood.
 */
cp_status kv_create(const kv_config *cfg, kv **out, cp_error *err);

/* Closes every connection and frees the client. NULL is fine. */
void kv_destroy(kv *k);

/*
 * Runs one command: argv[i] of argl[i] bytes (argl NULL: strlen each).
 * On success *reply (when reply is not NULL) gets the answer, which the
 * caller frees. CP_ERR_UNAVAILABLE when Redis cannot be reached or the
 * connection broke (the pool reconnects on a later call); CP_ERR_INVALID
 * for an error reply.
 */
cp_status kv_command(kv *k, size_t argc, const char *const *argv, const size_t *argl,
                     kv_reply **reply, cp_error *err);

/* kv_command with NUL-terminated arguments given inline, ending with NULL. */
cp_status kv_commandv(kv *k, kv_reply **reply, cp_error *err, ...)
    __attribute__((sentinel));

/*
 * Runs a Lua script (EVALSHA, loading it with SCRIPT LOAD once per
 * connection and again after NOSCRIPT, so a Redis restart is survived).
 * keys and args are NUL-terminated strings.
 */
cp_status kv_eval(kv *k, const char *script, size_t nkeys, const char *const *keys,
                  size_t nargs, const char *const *args, kv_reply **reply, cp_error *err);

/*
 * Builds "<prefix><a>[:<b>]" into out (b may be NULL). CP_ERR_LIMIT when it
 * does not fit.
 */
cp_status kv_key(const kv *k, char *out, size_t cap, const char *a, const char *b);

/* PING: CP_OK when Redis answers now. */
cp_status kv_ping(kv *k, cp_error *err);

/* Whether the last command reached Redis (for health pages); never blocks. */
bool kv_available(const kv *k);

void kv_reply_free(kv_reply *r);

#endif
